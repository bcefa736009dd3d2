"""Errors meant for people: what went wrong, where, and what to do."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a config: the dotted field path, the YAML line, and the message."""

    field: str | None
    line: int | None
    message: str

    def render(self, source: str | None = None) -> str:
        where = []
        if source and self.line:
            where.append(f"{source}:{self.line}")
        elif source:
            where.append(source)
        elif self.line:
            where.append(f"line {self.line}")
        if self.field:
            where.append(self.field)
        prefix = ", ".join(where)
        return f"{prefix}: {self.message}" if prefix else self.message


class RetrainError(Exception):
    """Base class for errors retrain reports to the user without a traceback."""


class ConfigError(RetrainError):
    """A config that cannot run. Carries every issue found, each with its field and line."""

    def __init__(self, issues: list[ConfigIssue], source: str | None = None):
        self.issues = sorted(issues, key=lambda issue: issue.line or 0)
        self.source = source
        super().__init__(self.render())

    def render(self) -> str:
        head = f"invalid config ({len(self.issues)} problem{'s' if len(self.issues) != 1 else ''})"
        body = "\n".join(f"  - {issue.render(self.source)}" for issue in self.issues)
        return f"{head}:\n{body}"


class RewardError(RetrainError):
    """A reward or verifier raised (or timed out) and the config says to fail the run."""


class BackendError(RetrainError):
    """The backend could not be found, loaded or started."""


class ModelError(RetrainError):
    """The model could not be resolved or loaded."""


class TrainingFailed(RetrainError):
    """The backend raised while training; the traceback is kept in the run directory."""
