"""A backend retrain has never seen — plain-PyTorch REINFORCE in tests/reference_backend, registered
only through an entry point — passes the conformance kit."""

from __future__ import annotations

from retrain.core.registry import BUILTIN_BACKENDS, available_backends
from retrain.testing import BackendConformance


def test_the_reference_backend_is_found_only_through_its_entry_point():
    assert "reference" not in BUILTIN_BACKENDS
    assert available_backends()["reference"] == "tests.reference_backend:backend"


class TestReferenceBackend(BackendConformance):
    backend = "reference"
    rejected_options = [({"algorithm": {"updates_per_batch": 2}}, "algorithm.updates_per_batch")]
