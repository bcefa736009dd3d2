"""docs/config.md is generated from the schema; it must be current and list every field."""

from __future__ import annotations

from retrain import config_reference
from retrain.core.config import TrainingConfig


def test_config_md_is_current():
    assert config_reference.OUTPUT.read_text(encoding="utf-8") == config_reference.render(), (
        "docs/config.md is stale: run `python -m retrain.config_reference`"
    )


def test_every_field_of_every_section_is_listed():
    text = config_reference.render()
    for prefix, model in config_reference._sections(TrainingConfig):
        assert f"## `{prefix.rstrip('.')}`" in text or not prefix
        for name in model.model_fields:
            assert f"| `{name}` |" in text, f"{prefix}{name}"


def test_fields_a_backend_cannot_honour_say_so():
    text = config_reference.render()
    assert "| `nodes` |" in text and "trl: 1 only; verl: yes" in text
    assert "| `ray_address` |" in text and "trl: no; verl: yes" in text
