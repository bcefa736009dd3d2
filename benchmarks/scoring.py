"""How fast the built-in rewards score, against what they have to keep up with.

    python benchmarks/scoring.py [--batch 1024] [--trl-steps 3] [--programs 64] [--judged 64]

1. Rule-based scoring: a batch of `--batch` completions through 5 rules (a verifier, 3 rewards and
   a constraint) with the real Scorer, against one tiny-model TRL training step on a batch of the
   same size (retrain:tiny, 16 tokens per completion; the median of the steps after the first).
   Target: scoring under 1% of the step.
2. Code reward: `--programs` small programs, 3 assert tests each, in the sandbox, serially
   (max_workers=1) and in the default pool (one worker per CPU). Target: speed-up near the cores.
3. LLM judge: `--judged` completions judged by a local OpenAI-compatible server that answers after
   100 ms, one at a time (max_concurrency 1) and all at once (64). Target: wall under 1/10 of serial.

Everything is measured in this one run; the table at the end gives the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time


def completions(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = "the a cat sat on mat happy sun purr soft paw moon answer is 42 bright warm".split()
    texts = []
    for _ in range(count):
        lines = [" ".join(rng.choices(words, k=rng.randint(3, 9))) for _ in range(rng.randint(1, 6))]
        texts.append("<think>" + "\n".join(lines) + f"</think><answer>{rng.randint(0, 99)}</answer>")
    return texts


def rule_config() -> dict:
    return {
        "model_to_train": "retrain:tiny",
        "example_prompts": ["Write something."],
        "verifiers": [{"rule": "has_tags", "params": {"tags": ["think", "answer"]}}],
        "rewards": {
            "functions": [
                {"function": "contains", "params": {"text": ["cat", "purr"]}},
                {"function": "length_penalty", "params": {"max_words": 40, "scale": 40}},
                {"function": "repetition_penalty"},
            ],
            "constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s", "penalty_score": -1.0}],
        },
    }


def bench_rules(batch: int) -> float:
    from retrain.core.config import TrainingConfig
    from retrain.core.rollout import Message, Rollout
    from retrain.core.scoring import Scorer

    scorer = Scorer.from_config(TrainingConfig.from_data(rule_config()))
    rollouts = [
        Rollout([Message("user", "Write something.")], [Message("assistant", text)], rollout_id=str(i))
        for i, text in enumerate(completions(batch))
    ]
    scorer.score_sync(rollouts[:8])  # warm-up
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        scorer.score_sync(rollouts)
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def bench_trl_step(batch: int, steps: int) -> float:
    from rich.console import Console

    from retrain.core.run import run_sync

    group = 16
    config = {
        **rule_config(),
        "example_prompts": [f"Write something about the number {i}." for i in range(batch // group)],
        "algorithm": {"group_size": group, "prompts_per_step": batch // group, "max_steps": steps,
                      "max_completion_tokens": 16},
        "training": {"output_dir": tempfile.mkdtemp(prefix="bench-scoring-"), "save_every": 10_000,
                     "samples_per_step": 0},
    }
    with open(os.devnull, "w") as devnull:
        summary = run_sync(config, console=Console(file=devnull), show_progress=False)
    with open(f"{summary['run_dir']}/metrics.jsonl") as f:
        seconds = [json.loads(line)["step_seconds"] for line in f]
    return statistics.median(seconds[1:] or seconds)


PROGRAM = """```python
def solve(n):
    total = 0
    for i in range(n):
        total += i * {k}
    return total
```"""


def bench_code(programs: int) -> tuple[float, float, int]:
    from retrain.rewards.code import extract_code, parse_tests, run_tests_batch

    codes = [extract_code(PROGRAM.format(k=k)) for k in range(programs)]
    tests = [parse_tests([f"assert solve(10) == {45 * k}", "assert solve(0) == 0", f"assert solve(3) == {3 * k}"])
             for k in range(programs)]
    run_tests_batch(codes[:2], tests[:2])  # warm-up (page cache, interpreter)
    started = time.perf_counter()
    serial = run_tests_batch(codes, tests, max_workers=1)
    serial_seconds = time.perf_counter() - started
    started = time.perf_counter()
    parallel = run_tests_batch(codes, tests)
    parallel_seconds = time.perf_counter() - started
    assert all(r.fraction == 1.0 for r in serial + parallel), "a benchmark program failed its tests"
    return serial_seconds, parallel_seconds, os.cpu_count() or 1


def bench_judge(judged: int) -> tuple[float, float]:
    import asyncio

    from retrain.rewards.judge import clear_cache, llm_judge
    from retrain.testing.openai_server import serve

    async def judge_all(base_url: str, concurrency: int, tag: str) -> list[float | None]:
        return await asyncio.gather(*(
            llm_judge(f"prompt {i}", f"{tag} completion {i}", base_url=base_url, model="slow:0.1",
                      max_concurrency=concurrency, cache=False)
            for i in range(judged)
        ))

    with serve(model=None) as base_url:
        clear_cache()
        started = time.perf_counter()
        asyncio.run(judge_all(base_url, 1, "serial"))
        serial = time.perf_counter() - started
        started = time.perf_counter()
        asyncio.run(judge_all(base_url, judged, "concurrent"))
        concurrent = time.perf_counter() - started
    return serial, concurrent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--trl-steps", type=int, default=3)
    parser.add_argument("--programs", type=int, default=64)
    parser.add_argument("--judged", type=int, default=64)
    args = parser.parse_args()

    print(f"1/3 rule scoring: {args.batch} completions, 5 rules ...", flush=True)
    rules = bench_rules(args.batch)
    print(f"    {rules * 1000:.1f} ms; now a tiny-model TRL step on the same batch ({args.trl_steps} steps) ...",
          flush=True)
    step = bench_trl_step(args.batch, args.trl_steps)
    print(f"2/3 code reward: {args.programs} programs x 3 tests, serial then parallel ...", flush=True)
    serial_code, parallel_code, cores = bench_code(args.programs)
    print(f"3/3 judge: {args.judged} completions at 100 ms each, serial then concurrent ...", flush=True)
    serial_judge, concurrent_judge = bench_judge(args.judged)

    rows = [
        ("rule scoring / tiny TRL step", f"{rules * 1000:.1f} ms / {step:.2f} s", f"{rules / step:.2%}", "< 1%"),
        ("code reward serial / parallel", f"{serial_code:.2f} s / {parallel_code:.2f} s",
         f"{serial_code / parallel_code:.2f}x", f"near {cores}x ({cores} CPUs)"),
        ("judge concurrent / serial", f"{concurrent_judge:.2f} s / {serial_judge:.2f} s",
         f"{concurrent_judge / serial_judge:.3f}", "< 0.1"),
    ]
    print(f"\n{'measure':32} {'measured':24} {'ratio':>8}  target")
    for name, measured, ratio, target in rows:
        print(f"{name:32} {measured:24} {ratio:>8}  {target}")
    print(f"\nrule scoring throughput: {args.batch / rules:,.0f} completions/s; code reward: "
          f"{args.programs / parallel_code:.1f} programs/s (3 tests each) in parallel")


if __name__ == "__main__":
    main()
