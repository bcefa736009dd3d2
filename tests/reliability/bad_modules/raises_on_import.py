"""A reward module that raises when imported (tests/reliability/bad_configs/import_raises_on_import.yaml)."""

raise RuntimeError("this module is broken on purpose")


def score(completion: str) -> float:  # never reached
    return 0.0
