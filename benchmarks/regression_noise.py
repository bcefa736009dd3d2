"""The backends' learning curves over several seeds: the cross-backend comparison one run each cannot make.

Trains examples/rare_letters.yaml with several seeds on each backend (each run in its own `retrain run`
process), smooths each curve over a window of steps, and compares the backends' mean curves against how far
runs of one backend spread from seed to seed (the step-wise gap of every seed pair). Results on
2026-12-02 are in docs/benchmarks.md; tests/parity/test_regression.py says why CI does not compare single
curves.

    python benchmarks/regression_noise.py [--seeds 1 2 3] [--backends trl verl] [--out noise.json]

Prints, per backend, each seed's first and last smoothed reward, the spread (standard deviation across
seeds) per step, the largest step-wise gap between two seeds of one backend and between a run of each,
and the gap between the backends' mean curves; writes everything to --out.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "rare_letters.yaml"
WINDOW = 5  # steps in the smoothing window (a trailing mean)


def smoothed(values: list[float], window: int = WINDOW) -> list[float]:
    """The trailing mean over `window` steps at each step from the window-th on."""
    return [statistics.fmean(values[i - window + 1: i + 1]) for i in range(window - 1, len(values))]


def train(backend: str, seed: int, folder: Path) -> list[float]:
    override = folder / f"{backend}-{seed}.yaml"
    text = CONFIG.read_text(encoding="utf-8").replace("training:\n", f"training:\n  seed: {seed}\n", 1)
    override.write_text(text, encoding="utf-8")
    out = folder / f"runs-{backend}-{seed}"
    done = subprocess.run([sys.executable, "-m", "retrain.cli", "run", str(override), "--backend", backend,
                           "--output-dir", str(out)], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{backend} seed {seed} failed:\n{done.stderr[-3000:]}")
    (run_dir,) = out.iterdir()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [record["reward/mean"] for record in records]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--backends", nargs="+", default=["trl", "verl"])
    parser.add_argument("--out", default="regression_noise.json")
    args = parser.parse_args()
    curves: dict[str, dict[int, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends:
            for seed in args.seeds:
                rewards = train(backend, seed, Path(tmp))
                curves.setdefault(backend, {})[seed] = rewards
                print(f"{backend} seed {seed}: {rewards[0]:.3f} -> {rewards[-1]:.3f} "
                      f"(smoothed {smoothed(rewards)[0]:.3f} -> {smoothed(rewards)[-1]:.3f})", flush=True)
    report: dict[str, object] = {"config": str(CONFIG.relative_to(ROOT)), "window": WINDOW, "curves": curves}
    spreads = {}
    means = {}
    for backend, runs in curves.items():
        smooth = [smoothed(rewards) for rewards in runs.values()]
        spreads[backend] = [statistics.stdev(step) for step in zip(*smooth, strict=True)]
        means[backend] = [statistics.fmean(step) for step in zip(*smooth, strict=True)]
        spread = spreads[backend]
        print(f"{backend}: spread across seeds (std of the smoothed reward) median {statistics.median(spread):.4f}, "
              f"max {max(spread):.4f}")
    report |= {"spread": spreads, "mean": means}
    # The largest step-wise gap between two runs of the same backend (different seeds): what the same
    # training can differ by. A cross-backend gap beyond it is not explained by seeds alone.
    pair_gaps = {}
    for backend, runs in curves.items():
        smooth = {seed: smoothed(rewards) for seed, rewards in runs.items()}
        pair_gaps[backend] = {f"{a}-{b}": max(abs(x - y) for x, y in zip(smooth[a], smooth[b], strict=True))
                              for a, b in itertools.combinations(sorted(smooth), 2)}
        print(f"{backend}: largest step-wise gap between two seeds {max(pair_gaps[backend].values()):.4f} "
              f"({pair_gaps[backend]})")
    report["pair_gaps"] = pair_gaps
    if len(curves) == 2:
        first, second = list(curves)
        cross = {f"{a}-{b}": max(abs(x - y) for x, y in zip(smoothed(curves[first][a]), smoothed(curves[second][b]),
                                                               strict=True))
                 for a in curves[first] for b in curves[second]}
        report["cross_gaps"] = cross
        print(f"{first} vs {second}: largest step-wise gap of a run pair, median "
              f"{statistics.median(cross.values()):.4f}, max {max(cross.values()):.4f}")
    if len(curves) == 2:
        first, second = list(curves)
        gaps = [abs(a - b) for a, b in zip(means[first], means[second], strict=True)]
        pooled = statistics.fmean(spreads[first] + spreads[second])
        # Two independent runs, one per backend: their difference has std sqrt(2) x the per-run spread.
        band = 3 * (2 ** 0.5) * pooled
        report |= {"gap_of_means": gaps, "pooled_spread": pooled, "band": band}
        print(f"gap between the backends' mean curves: median {statistics.median(gaps):.4f}, max {max(gaps):.4f}")
        print(f"pooled per-run spread {pooled:.4f} -> band for one run per backend (3 sigma of a difference): "
              f"{band:.4f}")
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
