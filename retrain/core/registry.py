"""One registry for rewards, verifiers and backends.

A name resolves, in order, to: a function registered with `@reward` / `@verifier` (built-ins are
registered this way in `retrain.rewards`), or a `module:attribute` import path. Backends resolve
to built-ins or to the `retrain.backends` entry-point group, so third parties can add one.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import inspect
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from retrain.core.backend import Backend

Kind = Literal["reward", "verifier"]
Bounds = tuple[float, float]


@dataclass
class ScoringFunction:
    """A user or built-in function with what retrain needs to call it.

    `batched` functions receive lists (one entry per completion) under the same argument names
    and return a list; others are called once per completion. `bounds` is the range of a
    reward's values, `(low, high)`, or a function of the config `params` that returns it; the
    Scorer needs it to rank failed completions below passing ones (`rewards.gate: floor`).
    `preflight(params)`, when given, runs when a config using the function is validated: it raises
    ValueError (with what to do) when the function cannot run here with those params, and returns a
    line for `retrain validate` and the run's start to show (or None).
    """

    name: str
    fn: Callable[..., Any]
    kind: Kind
    batched: bool = False
    bounds: Bounds | Callable[[dict[str, Any]], Bounds | None] | None = None
    description: str = ""
    preflight: Callable[[dict[str, Any]], str | None] | None = None
    is_async: bool = field(init=False)
    parameters: tuple[str, ...] = field(init=False)
    required_parameters: tuple[str, ...] = field(init=False)
    accepts_any: bool = field(init=False)

    def __post_init__(self) -> None:
        # Read the signature once: the Scorer injects arguments for every completion of every step.
        self.is_async = inspect.iscoroutinefunction(self.fn)
        named = [
            p for p in inspect.signature(self.fn).parameters.values() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        ]
        self.parameters = tuple(p.name for p in named)
        self.required_parameters = tuple(p.name for p in named if p.default is p.empty)
        self.accepts_any = any(p.kind is p.VAR_KEYWORD for p in inspect.signature(self.fn).parameters.values())
        if not self.description:
            self.description = (inspect.getdoc(self.fn) or "").split("\n\n")[0].replace("\n", " ")

    def bounds_for(self, params: dict[str, Any]) -> Bounds | None:
        if callable(self.bounds):
            return self.bounds(params)
        return self.bounds


_FUNCTIONS: dict[Kind, dict[str, ScoringFunction]] = {"reward": {}, "verifier": {}}
_BUILTINS_LOADED = False


def _load_builtins() -> None:
    global _BUILTINS_LOADED
    if not _BUILTINS_LOADED:
        _BUILTINS_LOADED = True
        importlib.import_module("retrain.rewards")


def _is_builtin(function: ScoringFunction) -> bool:
    return getattr(function.fn, "__module__", "").startswith("retrain.rewards.")


def register(function: ScoringFunction) -> None:
    existing = _FUNCTIONS[function.kind].get(function.name)
    if existing is not None and _is_builtin(existing) != _is_builtin(function):
        # A name in YAML (`rule: correct_answer`) means the built-in in every config of the process,
        # whichever was imported first; the user's function stays reachable by its import path.
        user = existing if _is_builtin(function) else function
        warnings.warn(
            f"@{user.kind} '{user.name}' in {user.fn.__module__} has the name of a built-in, which the name keeps "
            f"meaning: refer to yours as '{user.fn.__module__}:{user.fn.__name__}' or register it under another "
            f"name (@{user.kind}(name=...))",
            stacklevel=4,
        )
        if user is function:
            return
    _FUNCTIONS[function.kind][function.name] = function


def registered_names(kind: Kind) -> list[str]:
    _load_builtins()
    return sorted(_FUNCTIONS[kind])


def _decorator(kind: Kind):
    def decorator(
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        batched: bool = False,
        bounds: Bounds | Callable[[dict[str, Any]], Bounds | None] | None = None,
        preflight: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> Any:
        def wrap(inner: Callable[..., Any]) -> Callable[..., Any]:
            function = ScoringFunction(name or inner.__name__, inner, kind, batched=batched, bounds=bounds,
                                       preflight=preflight)
            register(function)
            inner.__retrain__ = function  # type: ignore[attr-defined]
            return inner

        return wrap(fn) if fn is not None else wrap

    return decorator


reward = _decorator("reward")
reward.__doc__ = """Register a reward: `@reward` or `@reward(name="...", batched=True, bounds=(0, 1))`.

The function's arguments are injected by name: `prompt`, `completion`, `messages`, `answer`,
`rollout`, any dataset column, and the `params:` given in the config. It returns a float, or
None to abstain. Sync and async functions both work. `bounds` (the range of its values) lets a
failed verifier rank a completion below every passing one (`rewards.gate: floor`)."""

verifier = _decorator("verifier")
verifier.__doc__ = """Register a verifier: `@verifier` or `@verifier(name="...")`.

Arguments are injected as for `@reward`. It returns a bool, a `(bool, reason)` pair, or a
`VerifierOutcome`. A failed verifier replaces the completion's reward with its penalty."""


def resolve_function(reference: str, kind: Kind) -> ScoringFunction:
    """Find a reward or verifier by registered name or `module:attribute`; ValueError if not found."""
    _load_builtins()
    registered = _FUNCTIONS[kind]
    if reference in registered:
        return registered[reference]
    if ":" not in reference:
        close = difflib.get_close_matches(reference, list(registered), n=1, cutoff=0.5)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise ValueError(
            f"unknown {kind} '{reference}'; {hint}built-ins: {', '.join(sorted(registered))}; "
            f"or give an import path 'package.module:function'"
        )
    target = import_attribute(reference, what=kind)
    if not callable(target):
        raise ValueError(f"'{reference}' is a {type(target).__name__}, not a function")
    attached = getattr(target, "__retrain__", None)
    if isinstance(attached, ScoringFunction):
        return attached
    return ScoringFunction(reference.rsplit(":", 1)[-1], target, kind)


def import_attribute(reference: str, what: str) -> Any:
    """Import 'package.module:attribute'. Raises ValueError saying what went wrong."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"'{reference}' is not an import path; write it as 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ValueError(
            f"cannot import module '{module_name}' for {what} '{reference}': {exc}; "
            "check the name and that it is on PYTHONPATH (run from the folder that holds it)"
        ) from None
    except Exception as exc:  # user code raising on import: say which and why
        raise ValueError(
            f"importing module '{module_name}' for {what} '{reference}' raised "
            f"{type(exc).__name__}: {exc}; fix the module (`python -c 'import {module_name}'` shows where)"
        ) from None
    try:
        return getattr(module, attribute)
    except AttributeError:
        names = [n for n in dir(module) if not n.startswith("_")]
        close = difflib.get_close_matches(attribute, names, n=1)
        hint = f"did you mean '{close[0]}'?" if close else "check the name after the ':'"
        raise ValueError(f"module '{module_name}' has no attribute '{attribute}'; {hint}") from None


# -- backends ------------------------------------------------------------------------------

BUILTIN_BACKENDS: dict[str, str] = {
    "trl": "retrain.backends.trl:backend",
    "verl": "retrain.backends.verl:backend",
}
ENTRY_POINT_GROUP = "retrain.backends"


def available_backends() -> dict[str, str]:
    """Backend name -> import path, built-ins first, then the `retrain.backends` entry points."""
    found = dict(BUILTIN_BACKENDS)
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(entry_point.name, entry_point.value)
    return found


def check_backend_name(name: str) -> None:
    backends = available_backends()
    if name in backends:
        return
    close = difflib.get_close_matches(name, list(backends), n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise ValueError(
        f"unknown backend '{name}'; {hint}available: {', '.join(sorted(backends))} "
        f"(third-party backends register under the '{ENTRY_POINT_GROUP}' entry-point group)"
    )


def load_backend(name: str) -> Backend:
    """Load the backend object. Loading must be cheap: heavy imports happen in train/translate."""
    check_backend_name(name)
    backend = import_attribute(available_backends()[name], what="backend")
    return backend() if isinstance(backend, type) else backend
