"""Throughput on a GPU: the same GRPO job on each generation engine and backend, one child process each.

    python benchmarks/gpu_throughput.py [--model retrain:smollm2-135m-instruct] [--steps 6]
                                        [--variants trl-transformers,trl-vllm,verl-vllm] [--out results.json]

Each variant trains `--steps` steps of the cat poem (64 prompts x 8 completions of <= 256 tokens per step)
through `retrain.run` in a fresh child process, while the parent samples the GPU's used memory with
nvidia-smi every half second. From the run's metrics.jsonl it reports, dropping the first step (warm-up,
vLLM's CUDA graphs): median step time, generated tokens per second (completion tokens / step time), and
peak GPU memory. It prints a table and the ratios to the first variant, and writes them as JSON.

Variants whose library is missing (vllm, verl) are reported as skipped, not failed. Needs a CUDA GPU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

VARIANTS = {
    "trl-transformers": {"backend": "trl", "rollout": {"engine": "transformers"}},
    "trl-vllm": {"backend": "trl", "rollout": {"engine": "vllm", "gpu_memory_utilization": 0.3}},
    "verl-vllm": {"backend": "verl", "rollout": {"engine": "vllm", "gpu_memory_utilization": 0.3}},
}
NEEDS = {"trl-vllm": ["vllm"], "verl-vllm": ["vllm", "verl"]}
PROMPTS = [f"Write a short, happy poem about a cat named {name}." for name in (
    "Miso", "Tofu", "Pixel", "Biscuit", "Nova", "Pepper", "Socks", "Luna")]


def job(model: str, steps: int, variant: str, out: str) -> dict:
    return {
        "model_to_train": model,
        "example_prompts": PROMPTS * 8,
        "verifiers": [{"rule": "mentions_a_cat"}],
        "rewards": {"constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s",
                                     "penalty_score": -1.0}]},
        "algorithm": {"group_size": 8, "prompts_per_step": 64, "max_steps": steps, "max_completion_tokens": 256,
                      "learning_rate": 1e-6},
        "training": {"output_dir": out, "save_every": 10_000, "samples_per_step": 0},
        "resources": {"gpus_per_node": 1},
        **VARIANTS[variant],
    }


def child(model: str, steps: int, variant: str, out: str) -> None:
    """Train, then leave the run's records in OUT/result.json (stdout is the libraries' to use)."""
    from rich.console import Console

    from retrain.core.run import run_sync

    summary = run_sync(job(model, steps, variant, out), console=Console(stderr=True), show_progress=False)
    records = [json.loads(line) for line in Path(summary["run_dir"], "metrics.jsonl").read_text().splitlines()]
    Path(out, "result.json").write_text(json.dumps({"status": summary["status"], "records": records}))


class MemorySampler(threading.Thread):
    """The most GPU memory in use (MiB, all processes) while it runs, from nvidia-smi."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_mib = 0
        self.baseline_mib = self.used()
        self.stopped = threading.Event()

    @staticmethod
    def used() -> int:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, check=True).stdout
        return int(out.split()[0])

    def run(self) -> None:
        while not self.stopped.wait(0.5):
            self.peak_mib = max(self.peak_mib, self.used())


def measure(model: str, steps: int, variant: str) -> dict:
    import importlib.util

    missing = [name for name in NEEDS.get(variant, []) if importlib.util.find_spec(name) is None]
    if missing:
        return {"variant": variant, "skipped": f"not installed: {', '.join(missing)}"}
    with tempfile.TemporaryDirectory() as out:
        sampler = MemorySampler()
        sampler.start()
        started = time.time()
        done = subprocess.run([sys.executable, __file__, "--child", variant, "--model", model, "--steps", str(steps),
                               "--out", out], capture_output=True, text=True)
        sampler.stopped.set()
        sampler.join()
        if done.returncode != 0:
            return {"variant": variant, "failed": done.stderr[-2000:]}
        records = json.loads(Path(out, "result.json").read_text())["records"][1:]  # the first step warms up
    return {
        "variant": variant,
        "step_seconds": statistics.median(r["step_seconds"] for r in records),
        "tokens_per_second": statistics.median(r["tokens_per_second"] for r in records),
        "peak_gpu_memory_gib": (sampler.peak_mib - sampler.baseline_mib) / 1024,
        "wall_seconds": time.time() - started,
        "steps_measured": len(records),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="retrain:smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--out", default=None, help="JSON results file (default: print only)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be at least 2: the first step (warm-up) is not measured")
    if args.child:
        child(args.model, args.steps, args.child, args.out)
        return 0
    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU: this benchmark measures the GPU paths", file=sys.stderr)
        return 2
    device = torch.cuda.get_device_name(0)
    results = []
    for variant in args.variants.split(","):
        print(f"{variant}: {args.steps} steps of {args.model} ...", file=sys.stderr, flush=True)
        results.append(measure(args.model, args.steps, variant))
    base = next((r for r in results if "step_seconds" in r), None)
    print(f"\n{args.model} on {device}, {args.steps} steps (first dropped), 512 completions of <= 256 tokens/step\n")
    print("| variant | step time (s) | tokens/s | peak GPU memory (GiB) | step time vs first |")
    print("|---|---|---|---|---|")
    for r in results:
        if "step_seconds" not in r:
            print(f"| {r['variant']} | {r.get('skipped') or 'failed: see JSON'} | | | |")
            continue
        ratio = r["step_seconds"] / base["step_seconds"] if base else float("nan")
        print(f"| {r['variant']} | {r['step_seconds']:.2f} | {r['tokens_per_second']:.0f} | "
              f"{r['peak_gpu_memory_gib']:.1f} | {ratio:.2f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "device": device, "results": results}, indent=2))
    return 0 if all("failed" not in r for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
