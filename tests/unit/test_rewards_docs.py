"""docs/rewards.md is generated from the registry; it must be current, and every example a valid config."""

from __future__ import annotations

import yaml

from retrain.core.config import TrainingConfig
from retrain.rewards import docs

BASE = {"model_to_train": "retrain:tiny", "data": {"source": "rows.jsonl", "answer_column": "answer"}}


def test_rewards_md_is_current():
    assert docs.OUTPUT.read_text(encoding="utf-8") == docs.render(), (
        "docs/rewards.md is stale: run `python -m retrain.rewards.docs`"
    )


def test_every_builtin_is_documented_with_an_example_that_validates():
    documented = docs.builtin_docs()
    families = {doc.family for doc in documented}
    missing = families ^ set(docs.FAMILIES)
    assert not missing, f"families without built-ins, or built-ins outside the documented families: {missing}"
    for doc in documented:
        snippet = yaml.safe_load(doc.example)
        assert doc.name in doc.example, f"{doc.name}: its example does not use it"
        config = TrainingConfig.from_data({**BASE, **snippet}, source=f"example of {doc.name}")
        names = [v.rule for v in config.verifiers] + [r.function for r in config.rewards.functions]
        names += [c.type for c in config.rewards.constraints]
        assert doc.name in names, doc.name


def test_check_mode_reports_staleness(tmp_path, monkeypatch, capsys):
    stale = tmp_path / "rewards.md"
    stale.write_text("old\n")
    monkeypatch.setattr(docs, "OUTPUT", stale)
    assert docs.main(["--check"]) == 1
    assert "stale" in capsys.readouterr().err
    assert docs.main([]) == 0 and docs.main(["--check"]) == 0
