"""The Scorer: the one place rewards are computed, for every backend.

For each completion: every verifier runs; if all pass, the weighted rewards are summed; if any
fails, the failed verifiers' penalties replace the rewards (and their reasons are recorded).
Constraints are added in both cases. With `gate: floor` (the default) a failed completion is
also placed below the lowest total any passing completion can get, computed from the rewards'
bounds, so that no constraint can make failing pay (an empty answer dodges every "avoid this
text" penalty, but it is not a poem). Every total depends on its own completion only: the same
completion gets the same breakdown in any batch, on any backend.

All functions of a batch run concurrently, each call under a timeout; a function that raises
or times out either fails the run (naming the function and the rollout) or scores that
completion with `error_penalty`, as the config says.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from retrain.core.errors import RewardError
from retrain.core.registry import ScoringFunction, resolve_function
from retrain.core.reward import coerce_score
from retrain.core.rollout import RewardBreakdown, Rollout, VerifierOutcome
from retrain.core.verifier import coerce_outcome

if TYPE_CHECKING:
    from retrain.core.config import TrainingConfig

Role = Literal["verifier", "reward", "constraint"]
_NOT_YET = object()
_SYNC_RUNS = 8  # threads per sync rule and batch


@dataclass
class ScoringComponent:
    """A function bound to its config: name in metrics, role, params, weight or penalty, bounds."""

    name: str
    role: Role
    function: ScoringFunction
    params: dict[str, Any]
    weight: float = 1.0
    penalty: float = 0.0
    bounds: tuple[float, float] | None = None


def component_bounds(
    reference: str, params: dict[str, Any], configured: tuple[float, float] | None
) -> tuple[float, float] | None:
    """A reward's range: from the config if given, else as its function declares it."""
    if configured is not None:
        return configured
    return resolve_function(reference, "reward").bounds_for(params)


def lowest_passing_total(components: list[ScoringComponent]) -> float | None:
    """The lowest total a completion that passes every verifier can get; None if a range is unknown.
    An abstaining reward adds 0, so each reward contributes at most down to 0 from above."""
    floor = 0.0
    for component in components:
        if component.role == "verifier":
            continue
        if component.bounds is None:
            return None
        low, high = component.bounds
        floor += min(0.0, component.weight * low, component.weight * high)
    return floor


def _in_daemon_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
    """Run a sync function in a daemon thread. Unlike asyncio.to_thread, a call that never returns
    (a rule stuck in a loop) holds neither `asyncio.run` nor the interpreter's exit: it is abandoned."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Callable[[], None]) -> None:
        if not future.done():
            outcome()

    def target() -> None:
        try:
            value = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the awaiting coroutine
            error = exc
            with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
                loop.call_soon_threadsafe(settle, lambda: future.set_exception(error))
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(settle, lambda: future.set_result(value))

    thread = threading.Thread(target=target, name=f"retrain-rule-{getattr(fn, '__name__', 'call')}", daemon=True)
    _RULE_THREADS.add(thread)
    thread.start()
    return future


_RULE_THREADS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def wait_for_running_rules(timeout: float = 30.0, settle: float = 0.5) -> bool:
    """Wait (at most `timeout` seconds) until no rule is running and none started for `settle` seconds; True
    if so. For a process about to exit after Ctrl-C: a rule still computing in native code (a model's forward)
    while the interpreter finalizes can abort the process ("terminate called without an active exception")
    instead of exiting cleanly. A rule stuck in a loop is abandoned after the timeout, as before."""
    deadline = time.monotonic() + timeout
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        alive = [thread for thread in list(_RULE_THREADS) if thread.is_alive()]
        if alive:
            alive[0].join(min(0.5, max(0.0, deadline - time.monotonic())))
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= settle:
            return True
        else:
            time.sleep(0.05)
    return False


@dataclass
class _SyncRun:
    """One thread's pass over its share of a batch (see `Scorer._run_sync_in_runs`)."""

    call_started: float = math.inf  # when the call in progress started; inf between calls
    abandoned: bool = False  # set once its call overran: later results of this thread are dropped


class _Failure(Exception):
    def __init__(self, message: str):
        self.message = message

    @classmethod
    def raised(cls, exc: Exception) -> _Failure:
        return cls(f"raised {type(exc).__name__}: {exc}")


def _injected_arguments(function: ScoringFunction, params: dict[str, Any], rollout: Rollout) -> dict[str, Any]:
    available: dict[str, Any] = {
        **rollout.metadata,
        "prompt": rollout.prompt,
        "completion": rollout.completion,
        "messages": rollout.messages,
        "tool_calls": rollout.tool_calls,
        "rollout": rollout,
        "metadata": rollout.metadata,
        "answer": rollout.metadata.get("answer"),
        **params,
    }
    if function.accepts_any:
        return available
    missing = [name for name in function.required_parameters if name not in available]
    if missing:
        raise _Failure(
            f"needs argument(s) {missing} that are neither injectable (prompt, completion, messages, answer, "
            f"rollout, metadata, dataset columns: {sorted(rollout.metadata)}) nor given in `params:`"
        )
    return {name: available[name] for name in function.parameters if name in available}


def _batched_arguments(
    function: ScoringFunction, params: dict[str, Any], rollouts: Sequence[Rollout]
) -> dict[str, Any]:
    """Per-completion arguments as lists (one entry per completion); `params` stay scalars."""
    per_rollout = [_injected_arguments(function, params, rollout) for rollout in rollouts]
    names = [name for name in per_rollout[0] if name not in params] if per_rollout else []
    return {**{name: [args[name] for args in per_rollout] for name in names}, **params}


class Scorer:
    """Scores batches of rollouts into `RewardBreakdown`s. Built once per run from the config."""

    def __init__(
        self,
        components: list[ScoringComponent],
        *,
        timeout_seconds: float = 60.0,
        on_error: Literal["fail", "penalize"] = "fail",
        error_penalty: float = -1.0,
        gate: Literal["floor", "penalty"] = "floor",
    ):
        self.components = components
        self.gate = gate
        self.gate_floor: float | None = None
        if gate == "floor" and any(c.role == "verifier" for c in components):
            self.gate_floor = lowest_passing_total(components)
            if self.gate_floor is None:
                unbounded = [c.name for c in components if c.role != "verifier" and c.bounds is None]
                raise ValueError(f"gate 'floor' needs the range of {unbounded}; give bounds or use gate 'penalty'")
        self.timeout_seconds = timeout_seconds
        self.on_error = on_error
        self.error_penalty = error_penalty

    @classmethod
    def from_config(cls, config: TrainingConfig) -> Scorer:
        components: list[ScoringComponent] = []
        for verifier in config.verifiers:
            function = resolve_function(verifier.rule, "verifier")
            components.append(ScoringComponent(
                verifier.display_name, "verifier", function, verifier.params, penalty=verifier.penalty
            ))
        rewards = config.rewards
        for spec in config.scored_specs():
            components.append(ScoringComponent(
                spec.name, spec.role, resolve_function(spec.reference, "reward"), spec.params, weight=spec.weight,
                bounds=component_bounds(spec.reference, spec.params, spec.bounds),
            ))
        return cls(
            components,
            timeout_seconds=rewards.timeout_seconds,
            on_error=rewards.on_error,
            error_penalty=rewards.error_penalty,
            gate=rewards.gate,
        )

    def names(self, role: Role) -> list[str]:
        return [c.name for c in self.components if c.role == role]

    # -- scoring -------------------------------------------------------------------------------

    async def _call(self, component: ScoringComponent, arguments: dict[str, Any]) -> Any:
        function = component.function
        if function.is_async:
            call = function.fn(**arguments)
        else:
            call = _in_daemon_thread(function.fn, **arguments)
        try:
            return await asyncio.wait_for(call, timeout=self.timeout_seconds)
        except TimeoutError:
            raise _Failure(f"timed out after {self.timeout_seconds:g}s (rewards.timeout_seconds)") from None
        except _Failure:
            raise
        except Exception as exc:
            raise _Failure.raised(exc) from exc

    def _coerce(self, component: ScoringComponent, value: Any) -> float | VerifierOutcome | None:
        try:
            if component.role == "verifier":
                return coerce_outcome(value, component.name)
            return coerce_score(value, component.name)
        except (TypeError, ValueError) as exc:
            raise _Failure(str(exc)) from None

    async def _run_component(
        self, component: ScoringComponent, rollouts: Sequence[Rollout]
    ) -> list[float | VerifierOutcome | None | _Failure]:
        if component.function.batched:
            try:
                values = await self._call(component, _batched_arguments(component.function, component.params, rollouts))
                if not isinstance(values, list | tuple) or len(values) != len(rollouts):
                    raise _Failure(f"batched function returned {type(values).__name__} of the wrong length; "
                                   f"return a list with one value per completion ({len(rollouts)})")
                return [self._coerce(component, value) for value in values]
            except _Failure as failure:
                return [failure] * len(rollouts)

        if not component.function.is_async:
            return await self._run_sync_in_runs(component, rollouts)

        async def one(rollout: Rollout) -> float | VerifierOutcome | None | _Failure:
            try:
                arguments = _injected_arguments(component.function, component.params, rollout)
                return self._coerce(component, await self._call(component, arguments))
            except _Failure as failure:
                return failure

        return list(await asyncio.gather(*(one(rollout) for rollout in rollouts)))

    async def _run_sync_in_runs(
        self, component: ScoringComponent, rollouts: Sequence[Rollout]
    ) -> list[float | VerifierOutcome | None | _Failure]:
        """A sync per-completion function, called for many completions per thread hop.

        A hop costs ~100 us, more than most rules take; so each thread works through its share of
        the batch in turn, and stops starting new calls after half the timeout. A call that runs
        past `timeout_seconds` fails alone (its thread is abandoned: Python cannot stop it) and
        the completions after it go on in a new run.
        """
        results: list[Any] = [_NOT_YET] * len(rollouts)
        pending = list(range(len(rollouts)))
        runs = max(1, min(_SYNC_RUNS, len(pending)))
        queues = [pending[i::runs] for i in range(runs)]
        lock = threading.Lock()  # an abandoned thread whose call returns late must not overwrite the timeout

        def work(indices: list[int], state: _SyncRun) -> None:
            started = time.monotonic()
            for index in indices:
                if time.monotonic() - started > self.timeout_seconds / 2:
                    return
                state.call_started = time.monotonic()
                try:
                    arguments = _injected_arguments(component.function, component.params, rollouts[index])
                    value: Any = self._coerce(component, component.function.fn(**arguments))
                except _Failure as failure:
                    value = failure
                except Exception as exc:
                    value = _Failure.raised(exc)
                with lock:
                    if state.abandoned:
                        return
                    results[index] = value
                state.call_started = math.inf

        async def run(indices: list[int]) -> None:
            while indices:
                state = _SyncRun()
                thread = asyncio.ensure_future(_in_daemon_thread(work, indices, state))
                while not thread.done():
                    await asyncio.wait([thread], timeout=min(1.0, self.timeout_seconds))
                    if not thread.done() and time.monotonic() - state.call_started > self.timeout_seconds:
                        break  # the call in progress overran: fail it, go on without this thread
                with lock:
                    unfinished = [i for i in indices if results[i] is _NOT_YET]
                    if not thread.done() and unfinished:
                        state.abandoned = True
                        results[unfinished[0]] = _Failure(
                            f"timed out after {self.timeout_seconds:g}s (rewards.timeout_seconds)"
                        )
                        unfinished = unfinished[1:]
                indices = unfinished

        await asyncio.gather(*(run(q) for q in queues))
        return results

    async def score(self, rollouts: Sequence[Rollout]) -> list[RewardBreakdown]:
        """Score a batch; all components and completions run concurrently."""
        results = await asyncio.gather(*(self._run_component(c, rollouts) for c in self.components))
        breakdowns = []
        for index, rollout in enumerate(rollouts):
            breakdown = RewardBreakdown(rollout_id=rollout.rollout_id or str(index), total=0.0)
            for component, values in zip(self.components, results, strict=True):
                value = values[index]
                if isinstance(value, _Failure):
                    if self.on_error == "fail":
                        raise RewardError(
                            f"{component.role} '{component.name}' {value.message} on rollout "
                            f"{breakdown.rollout_id} (prompt: {rollout.prompt[:80]!r}, completion: "
                            f"{rollout.completion[:80]!r}); fix it, or set `rewards.on_error: penalize` "
                            "to score such samples with `rewards.error_penalty`"
                        )
                    breakdown.errors[component.name] = value.message
                    if component.role == "verifier":
                        breakdown.verifiers[component.name] = VerifierOutcome(False, f"error: {value.message}")
                    elif component.role == "reward":
                        breakdown.rewards[component.name] = None
                    continue
                if component.role == "verifier":
                    assert isinstance(value, VerifierOutcome)
                    breakdown.verifiers[component.name] = value
                elif component.role == "reward":
                    breakdown.rewards[component.name] = value  # type: ignore[assignment]
                else:
                    breakdown.constraints[component.name] = 0.0 if value is None else float(value)  # type: ignore[arg-type]
            breakdowns.append(breakdown)
        self._set_totals(breakdowns)
        return breakdowns

    def _set_totals(self, breakdowns: list[RewardBreakdown]) -> None:
        by_name = {c.name: c for c in self.components}
        for b in breakdowns:
            if b.errors:
                b.total = self.error_penalty
            elif b.gate_passed:
                b.total = sum(by_name[n].weight * v for n, v in b.rewards.items() if v is not None)
                b.total += sum(b.constraints.values())
            else:
                penalties = sum(by_name[n].penalty for n, outcome in b.verifiers.items() if not outcome.passed)
                if self.gate_floor is None:
                    b.total = penalties + sum(b.constraints.values())
                else:
                    # Below every passing total; among failures, constraints still rank (fewer 's' is better).
                    b.total = self.gate_floor + penalties + sum(min(0.0, v) for v in b.constraints.values())
                    b.gate_floor = self.gate_floor

    def score_sync(self, rollouts: Sequence[Rollout]) -> list[RewardBreakdown]:
        """`score` for callers without an event loop."""
        return asyncio.run(self.score(rollouts))

    # -- metrics -------------------------------------------------------------------------------

    def summarize(self, breakdowns: Sequence[RewardBreakdown]) -> dict[str, float]:
        """Batch metrics in the neutral names: reward, each reward, each verifier, each constraint."""
        if not breakdowns:
            return {}
        totals = [b.total for b in breakdowns]
        mean = sum(totals) / len(totals)
        metrics: dict[str, float] = {
            "reward/mean": mean,
            "reward/std": math.sqrt(sum((t - mean) ** 2 for t in totals) / max(len(totals) - 1, 1)),
            "reward/gate_pass_rate": sum(b.gate_passed for b in breakdowns) / len(breakdowns),
        }
        for component in self.components:
            name = component.name
            if component.role == "verifier":
                metrics[f"verifiers/{name}/pass_rate"] = sum(b.verifiers[name].passed for b in breakdowns) / len(
                    breakdowns
                )
            elif component.role == "reward":
                values = [b.rewards[name] for b in breakdowns if b.rewards.get(name) is not None]
                metrics[f"rewards/{name}/mean"] = sum(values) / len(values) if values else math.nan  # type: ignore[arg-type]
            else:
                values_c = [b.constraints[name] for b in breakdowns if name in b.constraints]
                metrics[f"constraints/{name}/mean"] = sum(values_c) / len(values_c) if values_c else math.nan
            errors = sum(name in b.errors for b in breakdowns)
            if errors or self.on_error == "penalize":
                metrics[f"errors/{name}/count"] = float(errors)
        return metrics
