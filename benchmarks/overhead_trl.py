"""retrain's overhead over hand-written TRL: the same tiny GRPO job both ways, in one process tree.

Each variant runs in its own child process (fresh memory accounting), alternating A/B/A/B so that
machine noise hits both. Step time is measured the same way in both (a callback timing
on_step_begin -> on_step_end) and the first step (warm-up) is dropped.

    python benchmarks/overhead_trl.py [--steps 8] [--repeats 2] [--model retrain:tiny]

Prints the median step time and peak RSS of each, and the ratios (target: step time <= 1.03).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

PROMPTS = ["Compose a joyful feline lyric.", "Draft a cheerful ode to a purring companion."]
GROUP, PROMPTS_PER_STEP, MAX_TOKENS, LR, SEED = 8, 2, 32, 1e-4, 7


def run_retrain(model: str, steps: int, out: str) -> dict:
    from rich.console import Console

    from retrain.core.run import run_sync

    config = {
        "model_to_train": model,
        "example_prompts": PROMPTS,
        "verifiers": [{"rule": "mentions_a_cat"}],
        "rewards": {"constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s", "penalty_score": -1.0}]},
        "algorithm": {"group_size": GROUP, "prompts_per_step": PROMPTS_PER_STEP, "max_steps": steps,
                      "max_completion_tokens": MAX_TOKENS, "learning_rate": LR},
        "training": {"output_dir": out, "seed": SEED, "save_every": 10_000, "samples_per_step": 0},
    }
    summary = run_sync(config, console=Console(file=open("/dev/null", "w")), show_progress=False)  # noqa: SIM115
    with open(f"{summary['run_dir']}/metrics.jsonl") as f:
        return {"step_seconds": [json.loads(line)["step_seconds"] for line in f]}


def run_hand_written_trl(model: str, steps: int, out: str) -> dict:
    import re
    import time

    from datasets import Dataset
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from retrain.models import resolve_model  # only to find the offline weights

    hf_logging.set_verbosity_error()
    path = resolve_model(model)
    cat = re.compile(r"\b(cat|cats|kitten|kitty|feline|purr|purring|meow|paws?)\b", re.IGNORECASE)

    def reward(completions, **kwargs):
        totals = []
        for completion in completions:
            text = completion[0]["content"]
            gate = 0.0 if cat.search(text) else -1.0
            totals.append(gate - text.lower().count("s"))
        return totals

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.monotonic()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.monotonic() - self.started)

    timer = StepTimer()
    args = GRPOConfig(
        output_dir=out, num_generations=GROUP, per_device_train_batch_size=GROUP * PROMPTS_PER_STEP,
        gradient_accumulation_steps=1, max_steps=steps, learning_rate=LR, lr_scheduler_type="constant",
        warmup_steps=0, beta=0.0, epsilon=0.2, epsilon_high=0.2, loss_type="dapo", scale_rewards="group",
        num_iterations=1, temperature=1.0, top_p=1.0, max_completion_length=MAX_TOKENS, seed=SEED,
        save_strategy="steps", save_steps=10_000, logging_steps=1, gradient_checkpointing=False, report_to="none",
        disable_tqdm=True, log_completions=False, use_cpu=True, bf16=False, fp16=False,
        model_init_kwargs={"dtype": "float32"},
    )
    tokenizer = AutoTokenizer.from_pretrained(path)
    dataset = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS])
    trainer = GRPOTrainer(model=path, reward_funcs=[reward], args=args, train_dataset=dataset,
                          processing_class=tokenizer, callbacks=[timer])
    trainer.remove_callback(PrinterCallback)
    trainer.train()
    trainer.save_model(f"{out}/model")  # retrain saves the final model too
    return {"step_seconds": timer.seconds}


def child(variant: str, model: str, steps: int) -> None:
    import resource

    with tempfile.TemporaryDirectory() as out:
        result = (run_retrain if variant == "retrain" else run_hand_written_trl)(model, steps, out)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="retrain:tiny")
    parser.add_argument("--child", choices=["retrain", "trl"])
    options = parser.parse_args()
    if options.child:
        child(options.child, options.model, options.steps)
        return
    results: dict[str, list[dict]] = {"retrain": [], "trl": []}
    for repeat in range(options.repeats):
        for variant in ("trl", "retrain") if repeat % 2 else ("retrain", "trl"):
            output = subprocess.run(
                [sys.executable, __file__, "--child", variant, "--steps", str(options.steps), "--model", options.model],
                capture_output=True, text=True, check=True,
            ).stdout
            result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
            results[variant].append(result)
            print(f"  {variant:8s} run {repeat + 1}: median step {statistics.median(result['step_seconds'][1:]):.3f}s"
                  f"  peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    step = {v: statistics.median(s for r in rs for s in r["step_seconds"][1:]) for v, rs in results.items()}
    memory = {v: max(r["peak_rss_mb"] for r in rs) for v, rs in results.items()}
    print(f"\nmodel {options.model}, {options.steps} steps x {options.repeats} runs each "
          f"({GROUP * PROMPTS_PER_STEP} completions of <= {MAX_TOKENS} tokens per step)")
    print(f"{'':10s}{'median step (s)':>18s}{'peak RSS (MB)':>16s}")
    for variant in ("trl", "retrain"):
        print(f"{variant:10s}{step[variant]:>18.3f}{memory[variant]:>16.0f}")
    print(f"{'ratio':10s}{step['retrain'] / step['trl']:>18.3f}{memory['retrain'] / memory['trl']:>16.3f}"
          "   (retrain / hand-written TRL; target step ratio <= 1.03)")


if __name__ == "__main__":
    main()
