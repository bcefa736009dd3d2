"""What the backend training tests share: one tiny cat-poem run config (the conformance kit in
retrain.testing checks the reward bridge of every backend)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rich.console import Console

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115
BATCH = 8  # 2 prompts x 4 completions


def tiny_config(tmp_path: Path, backend: str = "trl", penalty: float = -1.0, **overrides) -> dict:
    base = {
        "backend": backend,
        "model_to_train": "retrain:tiny",
        "example_prompts": ["Compose a joyful feline lyric.", "Draft a cheerful ode to a purring companion."],
        "verifiers": [{"rule": "mentions_a_cat"}],
        "rewards": {"goal": "Poem is happy, creative, and about a cat.",
                    "constraints": [{"type": "penalize_text_containing", "text_to_avoid": "s",
                                     "penalty_score": penalty}]},
        "algorithm": {"group_size": 4, "prompts_per_step": 2, "max_steps": 2, "max_completion_tokens": 16,
                      "learning_rate": 1e-3},
        "training": {"output_dir": str(tmp_path / "runs"), "samples_per_step": BATCH, "save_every": 1},
    }
    base.update(overrides)
    return base


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# For the paths a machine without a GPU takes for real (CI's machines); a GPU machine cannot reach them.
no_gpu = pytest.mark.skipif(_cuda(), reason="checks what happens without a GPU")


def stand_in_package(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make `name` look installed to importlib.util.find_spec (what validation and the engine choice ask),
    for a package these machines cannot run (vLLM, Unsloth need CUDA): importing it still fails."""
    package = tmp_path / "stand_in" / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(f'raise ImportError("a test stand-in for {name}; it cannot be imported")\n')
    monkeypatch.syspath_prepend(str(tmp_path / "stand_in"))
