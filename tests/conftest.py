"""Shared fixtures. Training tests use the real TRL on `retrain:tiny` (a ~3M random Llama)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

CAT_POEM = textwrap.dedent("""\
    backend: trl
    model_to_train: retrain:smollm2-135m-instruct
    learning_task: "Write happy cat poems, specifically avoiding the letter 's'."
    example_prompts:
      - "Compose a joyful feline lyric."
      - "Draft a cheerful ode to a purring companion."
    verifiers:
      - rule: is_actually_a_poem
      - rule: mentions_a_cat
    rewards:
      goal: "Poem is happy, creative, and about a cat."
      constraints:
        - type: penalize_text_containing
          text_to_avoid: "s"
          penalty_score: -100.0
    """)


@pytest.fixture
def write_config(tmp_path: Path):
    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cat_poem_path(write_config) -> Path:
    return write_config(CAT_POEM, "cat_poem.yaml")
