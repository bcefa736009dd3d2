"""retrain's overhead over plain verl: the same tiny GRPO job through `retrain run` and through
`python -m verl.trainer.main_ppo` given the identical composed config that retrain wrote.

Each variant runs in its own child process tree (its own local Ray), alternating A/B/A/B so that
machine noise hits both. Step time is verl's own `timing_s/step` from its file logger in both (the
first step, warm-up, is dropped); wall time is the whole process, start to exit (retrain's also
includes composing and validating the config and exporting the final model, which plain verl does
not do).

    python benchmarks/overhead_verl.py [--steps 6] [--repeats 2] [--model retrain:tiny]

Prints the median step time and wall time of each, and the ratios (target: step time <= 1.03).
On a CPU machine this runs verl through retrain's CPU plugin in both variants.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPTS = ["Compose a joyful feline lyric.", "Draft a cheerful ode to a purring companion."]
GROUP, PROMPTS_PER_STEP, MAX_TOKENS, LR, SEED = 8, 2, 32, 1e-4, 7


def step_seconds(raw_metrics: Path) -> list[float]:
    lines = raw_metrics.read_text().splitlines()
    return [json.loads(line)["data"]["timing_s/step"] for line in lines]


def run_retrain(model: str, steps: int, out: Path) -> dict:
    """`retrain run` in this child process; returns verl's step times and where the composed config is."""
    from rich.console import Console

    from retrain.core.run import run_sync

    config = {
        "backend": "verl",
        "model_to_train": model,
        "example_prompts": PROMPTS,
        "verifiers": [{"rule": "mentions_a_cat"}],
        "rewards": {"constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s", "penalty_score": -1.0}]},
        "algorithm": {"group_size": GROUP, "prompts_per_step": PROMPTS_PER_STEP, "max_steps": steps,
                      "max_completion_tokens": MAX_TOKENS, "learning_rate": LR},
        "training": {"output_dir": str(out), "seed": SEED, "save_every": 10_000, "samples_per_step": 0},
    }
    summary = run_sync(config, console=Console(file=open(os.devnull, "w")), show_progress=False)  # noqa: SIM115
    run_dir = Path(summary["run_dir"])
    return {"step_seconds": step_seconds(run_dir / "verl" / "metrics.raw.jsonl"), "run_dir": str(run_dir)}


def run_plain_verl(reference_run: Path, out: Path) -> dict:
    """verl's own entry point on retrain's composed config; only this run's output paths differ."""
    from omegaconf import OmegaConf

    from retrain.backends.verl.launch import CPU_PLUGIN

    composed = reference_run / "verl" / "composed.yaml"
    raw = out / "metrics.raw.jsonl"
    env = {**os.environ, "VERL_FILE_LOGGER_PATH": str(raw), "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    if OmegaConf.load(composed).trainer.device == "cpu":  # the same CPU plugin retrain's run used
        env |= {"VERL_PLATFORM": "cpu", "VERL_USE_EXTERNAL_MODULES": CPU_PLUGIN, "VERL_ENGINE_DEVICE": "cuda"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")])
    kwargs = (f"{{config_path:'{reference_run / 'config.yaml'}',breakdowns_path:'{out / 'breakdowns.jsonl'}',"
              f"errors_path:'{out / 'reward_errors.log'}'}}")
    command = [
        sys.executable, "-m", "verl.trainer.main_ppo", f"--config-path={composed.parent}", "--config-name=composed",
        f"trainer.default_local_dir={out / 'checkpoints'}", "trainer.resume_mode=disable",
        f"reward.custom_reward_function.reward_kwargs={kwargs}",
        f"ray_kwargs.ray_init.runtime_env.env_vars.VERL_FILE_LOGGER_PATH={raw}",
        f"hydra.run.dir={out / 'hydra'}",
    ]
    with (out / "main_ppo.log").open("w") as log:
        subprocess.run(command, env=env, cwd=out, stdout=log, stderr=subprocess.STDOUT, check=True)
    return {"step_seconds": step_seconds(raw)}


def child(variant: str, model: str, steps: int, reference_run: str | None, out: str) -> None:
    started = time.monotonic()
    if variant == "retrain":
        result = run_retrain(model, steps, Path(out))
    else:
        result = run_plain_verl(Path(reference_run or ""), Path(out))
    result["wall_seconds"] = time.monotonic() - started
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--model", default="retrain:tiny")
    parser.add_argument("--child", choices=["retrain", "verl"])
    parser.add_argument("--reference-run")
    parser.add_argument("--out")
    options = parser.parse_args()
    if options.child:
        child(options.child, options.model, options.steps, options.reference_run, options.out)
        return
    results: dict[str, list[dict]] = {"retrain": [], "verl": []}
    with tempfile.TemporaryDirectory(prefix="overhead-verl-") as root:
        reference_run = None
        for repeat in range(options.repeats):
            for variant in ("verl", "retrain") if repeat % 2 and reference_run else ("retrain", "verl"):
                out = Path(root) / f"{variant}-{repeat}"
                out.mkdir()
                command = [sys.executable, __file__, "--child", variant, "--steps", str(options.steps),
                           "--model", options.model, "--out", str(out)]
                if variant == "verl":
                    command += ["--reference-run", str(reference_run)]
                output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
                result = json.loads(next(line for line in output.splitlines() if line.startswith("RESULT "))[7:])
                reference_run = reference_run or result.get("run_dir")
                results[variant].append(result)
                assert len(result["step_seconds"]) == options.steps, f"{variant} ran {len(result['step_seconds'])}"
                median = statistics.median(result["step_seconds"][1:])
                print(f"  {variant:8s} run {repeat + 1}: median step {median:.3f}s  wall {result['wall_seconds']:.1f}s",
                      flush=True)
    step = {v: statistics.median(s for r in rs for s in r["step_seconds"][1:]) for v, rs in results.items()}
    wall = {v: statistics.median(r["wall_seconds"] for r in rs) for v, rs in results.items()}
    print(f"\nmodel {options.model}, {options.steps} steps x {options.repeats} runs each "
          f"({GROUP * PROMPTS_PER_STEP} completions of <= {MAX_TOKENS} tokens per step)")
    print(f"{'':10s}{'median step (s)':>18s}{'median wall (s)':>18s}")
    for variant in ("verl", "retrain"):
        print(f"{variant:10s}{step[variant]:>18.3f}{wall[variant]:>18.1f}")
    print(f"{'ratio':10s}{step['retrain'] / step['verl']:>18.3f}{wall['retrain'] / wall['verl']:>18.3f}"
          "   (retrain / plain verl; target step ratio <= 1.03)")


if __name__ == "__main__":
    main()
