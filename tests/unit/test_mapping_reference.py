"""docs/mappings.md is generated from the adapters' ownership tables, the metric definitions and the declared
differences; it must be current."""

from __future__ import annotations

from retrain import mapping_reference


def test_mappings_md_is_current():
    assert mapping_reference.OUTPUT.read_text(encoding="utf-8") == mapping_reference.render(), (
        "docs/mappings.md is stale: run `python -m retrain.mapping_reference`"
    )
