"""Every config field reaches a run: retrain applies it itself, or each built-in backend honours, rejects
or notes it (the probe in retrain.testing.fields; the conformance kit runs it per backend)."""

from __future__ import annotations

from retrain.testing.fields import PROBES, RETRAIN_SIDE, leaf_fields, retrain_side_reason


def test_every_field_of_the_schema_has_a_probe_or_is_applied_by_retrain():
    fields = leaf_fields()
    unaccounted = [f for f in fields if f not in PROBES and retrain_side_reason(f) is None]
    assert not unaccounted, f"new config fields {unaccounted}: add a probe value to retrain.testing.fields.PROBES " \
        "(or, if retrain applies it the same way for every backend, a RETRAIN_SIDE entry)"
    assert not [p for p in PROBES if p not in fields], "PROBES names fields the schema no longer has"
    assert not [p for p in PROBES if retrain_side_reason(p)], "a field is both probed and retrain-side"
    assert all(any(f == r or f.startswith(f"{r}.") for f in fields) for r in RETRAIN_SIDE)
