"""Counts for the reliability suite, printed at the end of the test run (CI logs show them)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass
class Tally:
    """How many cases ran, and how many of them showed the user a traceback (must stay 0)."""

    cases: int = 0
    tracebacks: list[str] = field(default_factory=list)

    def record(self, name: str, output: str) -> None:
        self.cases += 1
        if "Traceback" in output:
            self.tracebacks.append(name)


TALLIES: dict[str, Tally] = {}


@pytest.fixture(scope="session")
def tally():
    """`tally("bad-config corpus").record(case, output)`: one line per kind in the terminal summary."""
    return lambda kind: TALLIES.setdefault(kind, Tally())


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    for kind, counts in TALLIES.items():
        line = f"{kind}: {counts.cases} cases, {len(counts.tracebacks)} tracebacks"
        if counts.tracebacks:
            line += f" ({', '.join(counts.tracebacks[:10])})"
        terminalreporter.write_line(line)
