"""Test support for retrain backends: the adapter conformance kit.

    from retrain.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mine"          # the name your package registers under `retrain.backends`

Run it with pytest; see docs/writing-an-adapter.md. Needs `pytest` and `psutil` (`retrain[dev]`).
"""

from retrain.testing.conformance import (
    BackendConformance,
    TrainedRun,
    assert_trained_on_the_scorer,
    broken_reward,
    conformance_config,
    new_child_processes,
)

__all__ = [
    "BackendConformance",
    "TrainedRun",
    "assert_trained_on_the_scorer",
    "broken_reward",
    "conformance_config",
    "new_child_processes",
]
