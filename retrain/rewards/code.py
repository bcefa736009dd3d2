"""Code rules: run the completion's Python against the dataset's tests in a sandbox.

The tests come from a dataset column (default `tests`), one of two shapes:

- assert snippets, a list of strings (`["assert add(1, 2) == 3", ...]`): the code runs once,
  then each snippet in its namespace (with the real builtins restored first); a snippet passes
  when it runs to its end. The code sees `__name__ == "solution"`, so an
  `if __name__ == "__main__":` demo block does not run.
- stdin/stdout cases, a list of `{"input": str, "output": str}` (or the APPS form
  `{"inputs": [...], "outputs": [...]}`): the code runs once per case as `__main__`, with `input`
  as its standard input; a case passes when the program exits 0 in time and its output equals
  `output` after whitespace normalisation (each line's words, blank lines at both ends ignored).

Either shape may also be given as a JSON string. Each run is sandboxed (`retrain.rewards.sandbox`),
and runs go in parallel in a bounded thread pool. Only the Python standard library is available.
Assert snippets run in a judge process, apart from the code: the names they use that they do not
define are the program's, reached over a pipe; values cross as plain data, so the comparison is
the judge's (see the sandbox's docstring for what that changes for a test).

On a machine that gives the sandbox no OS isolation (no root: no separate uid, no namespaces) the
rules refuse to run at validation unless `allow_in_process_sandbox_only: true` is in their params.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from retrain.core.registry import reward, verifier
from retrain.rewards.sandbox import SandboxError, SandboxLimits, SandboxResult, check_isolation, run_python

__all__ = [
    "IOCase",
    "TestOutcome",
    "TestReport",
    "code_passes_tests",
    "code_tests",
    "extract_code",
    "outputs_match",
    "parse_tests",
    "run_tests",
    "run_tests_batch",
]

_FENCE = re.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PYTHON_TAGS = {"python", "py", "python3", "py3"}


def extract_code(completion: str) -> str:
    """The code in a completion: the last ```python fenced block, else the last untagged ``` block,
    else the whole completion. An unclosed last fence (a cut-off generation) counts up to the end."""
    blocks = [(tag.lower(), body) for tag, body in _FENCE.findall(completion)]
    for wanted in (lambda tag: tag in _PYTHON_TAGS, lambda tag: tag == ""):
        chosen = [body for tag, body in blocks if wanted(tag)]
        if chosen:
            return chosen[-1].strip("\n")
    return completion.strip() if not blocks else ""


@dataclass(frozen=True)
class IOCase:
    """A stdin/stdout test: the program gets `input` and must print `output`."""

    input: str
    output: str


Tests = list[str] | list[IOCase]


def _shape_error(column: str, got: str) -> ValueError:
    return ValueError(
        f"dataset column '{column}' must hold the tests as a list of assert snippets (['assert f(1) == 2', ...]) "
        f"or a list of stdin/stdout cases ([{{'input': '1 2', 'output': '3'}}, ...], or "
        f"{{'inputs': [...], 'outputs': [...]}}), possibly as a JSON string; got {got}"
    )


def parse_tests(value: Any, column: str = "tests") -> Tests:
    """Validate a row's tests: a list of assert snippets or of `IOCase`s. ValueError naming `column` if not."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _shape_error(column, f"a string that is not JSON: {value[:80]!r}") from None
    if isinstance(value, Mapping) and set(value) >= {"inputs", "outputs"}:
        inputs, outputs = value["inputs"], value["outputs"]
        if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
            raise _shape_error(column, "an 'inputs'/'outputs' mapping whose values are not two lists of one length")
        value = [{"input": i, "output": o} for i, o in zip(inputs, outputs, strict=True)]
    if not isinstance(value, list | tuple):
        raise _shape_error(column, f"a {type(value).__name__}")
    if not value:
        raise _shape_error(column, "an empty list (a row needs at least one test)")
    if all(isinstance(test, str) for test in value):
        return list(value)
    cases = []
    for index, test in enumerate(value):
        if isinstance(test, IOCase):
            cases.append(test)
        elif (isinstance(test, Mapping) and set(test) == {"input", "output"}
              and isinstance(test["input"], str) and isinstance(test["output"], str)):
            cases.append(IOCase(test["input"], test["output"]))
        else:
            raise _shape_error(column, f"item {index} = {test!r:.80}")
    return cases


def _normalise(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def outputs_match(actual: str, expected: str) -> bool:
    """Equal after whitespace normalisation: the words of each line, ignoring blank lines at both ends."""
    return _normalise(actual) == _normalise(expected)


@dataclass
class TestOutcome:
    """One test: the assert snippet (or 'stdin case i'), whether it passed, and why not."""

    __test__ = False  # not a pytest class

    test: str
    passed: bool
    detail: str = ""


@dataclass
class TestReport:
    """Per-test outcomes of one completion, with the (truncated) output of its first failing run
    (or of its last run when all passed)."""

    __test__ = False

    outcomes: list[TestOutcome]
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False
    runs: list[SandboxResult] = field(default_factory=list, repr=False)

    @property
    def passed(self) -> int:
        return sum(outcome.passed for outcome in self.outcomes)

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def fraction(self) -> float:
        return self.passed / self.total if self.total else 0.0

    @property
    def all_passed(self) -> bool:
        return bool(self.outcomes) and self.passed == self.total

    @property
    def first_failure(self) -> TestOutcome | None:
        return next((outcome for outcome in self.outcomes if not outcome.passed), None)

    def summary(self) -> str:
        """'3/5 tests passed; first failure: `assert f(2) == 4`: AssertionError'."""
        text = f"{self.passed}/{self.total} tests passed"
        failure = self.first_failure
        if failure is not None:
            text += f"; first failure: `{_clip(failure.test, 120)}`: {_clip(failure.detail, 300)}"
        return text


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


# -- running ----------------------------------------------------------------------------------------------


@dataclass
class _Job:
    report: int  # index of the completion
    code: str
    stdin: str | None
    checks: tuple[str, ...]
    module_name: str


def _plan(index: int, code: str, tests: Tests) -> list[_Job]:
    if not code.strip():
        return []
    if tests and isinstance(tests[0], IOCase):
        return [_Job(index, code, case.input, (), "__main__") for case in tests if isinstance(case, IOCase)]
    return [_Job(index, code, None, tuple(t for t in tests if isinstance(t, str)), "solution")]


def _assemble(code: str, tests: Tests, results: list[SandboxResult], max_output_chars: int) -> TestReport:
    if not code.strip():
        return TestReport([TestOutcome(_describe_test(test, i), False, "no code in the completion")
                           for i, test in enumerate(_items(tests))])
    outcomes: list[TestOutcome] = []
    if tests and isinstance(tests[0], IOCase):
        for i, (case, result) in enumerate(zip(tests, results, strict=True)):
            assert isinstance(case, IOCase)
            outcomes.append(TestOutcome(_describe_test(case, i), *_judge_io(case, result)))
    else:
        (result,) = results
        for i, (test, check) in enumerate(zip(_items(tests), result.checks, strict=True)):
            outcomes.append(TestOutcome(_describe_test(test, i), check.passed, check.error))
    failing = next((r for o, r in zip(outcomes, results if len(results) > 1 else results * len(outcomes),
                                      strict=False) if not o.passed), results[-1])
    return TestReport(outcomes, stdout=_clip(failing.stdout, max_output_chars),
                      stderr=_clip(failing.stderr, max_output_chars),
                      timed_out=any(r.timed_out for r in results), runs=results)


def _items(tests: Tests) -> list[str | IOCase]:
    return list(tests)


def _describe_test(test: str | IOCase, index: int) -> str:
    if isinstance(test, IOCase):
        return f"stdin case {index}: {test.input[:60]!r}"
    return test.strip()


def _judge_io(case: IOCase, result: SandboxResult) -> tuple[bool, str]:
    if result.timed_out:
        return False, "timed out"
    if result.output_limit_exceeded:
        return False, "output limit exceeded"
    if result.returncode != 0:
        return False, f"exit status {result.returncode}: {result.code_error or result.stderr[-200:]}".rstrip(": ")
    if not outputs_match(result.stdout, case.output):
        expected, got = _clip(case.output.strip(), 100), _clip(result.stdout.strip(), 100)
        return False, f"wrong output: expected {expected!r}, got {got!r}"
    return True, ""


def _default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def run_tests_batch(
    codes: Sequence[str],
    tests: Sequence[Tests],
    limits: SandboxLimits | None = None,
    *,
    max_workers: int | None = None,
    max_output_chars: int = 1000,
    executor: Executor | None = None,
) -> list[TestReport]:
    """`run_tests` for many programs: every run of every program in one bounded pool."""
    limits = limits or SandboxLimits()
    plans = [_plan(i, code, row) for i, (code, row) in enumerate(zip(codes, tests, strict=True))]
    jobs = [job for plan in plans for job in plan]
    results: list[SandboxResult] = []
    if jobs:
        def run(job: _Job) -> SandboxResult:
            return run_python(job.code, stdin=job.stdin, checks=job.checks, limits=limits,
                              module_name=job.module_name)

        if executor is not None:
            results = list(executor.map(run, jobs))
        else:
            workers = min(max_workers or _default_workers(), len(jobs))
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="retrain-code") as pool:
                results = list(pool.map(run, jobs))
    reports = []
    position = 0
    for code, row, plan in zip(codes, tests, plans, strict=True):
        reports.append(_assemble(code, row, results[position:position + len(plan)], max_output_chars))
        position += len(plan)
    return reports


def run_tests(
    code: str,
    tests: Any,
    limits: SandboxLimits | None = None,
    *,
    max_output_chars: int = 1000,
    max_workers: int | None = None,
) -> TestReport:
    """Run `code` against `tests` (any shape `parse_tests` accepts) in the sandbox; per-test outcomes."""
    return run_tests_batch([code], [parse_tests(tests)], limits, max_workers=max_workers,
                           max_output_chars=max_output_chars)[0]


def _sandbox_preflight(params: dict[str, Any]) -> str:
    """The sandbox's layers on this machine, for `retrain validate` and the run's start; ValueError
    (with what to do) when they include no OS isolation and in-process-only was not allowed."""
    allow = params.get("allow_in_process_sandbox_only", False)
    if not isinstance(allow, bool):
        raise ValueError(f"allow_in_process_sandbox_only must be true or false, got {allow!r}")
    try:
        layers = check_isolation(SandboxLimits(allow_in_process_sandbox_only=allow))
    except SandboxError as exc:
        raise ValueError(str(exc)) from None
    return "code sandbox layers: " + ", ".join(layers)


def _reports(
    completion: list[str], metadata: list[dict], tests_column: str, timeout_seconds: float, memory_mb: int,
    max_workers: int | None, max_output_chars: int, allow_in_process_sandbox_only: bool,
) -> list[TestReport]:
    rows = []
    for i, row in enumerate(metadata):
        if tests_column not in row:
            raise ValueError(f"code tests need the dataset column '{tests_column}' (params.tests_column); "
                             f"completion {i} has columns {sorted(row)}")
        rows.append(parse_tests(row[tests_column], tests_column))
    limits = SandboxLimits(timeout_seconds=timeout_seconds, memory_mb=memory_mb,
                           allow_in_process_sandbox_only=allow_in_process_sandbox_only)
    return run_tests_batch([extract_code(text) for text in completion], rows, limits, max_workers=max_workers,
                           max_output_chars=max_output_chars)


@reward(batched=True, bounds=(0.0, 1.0), preflight=_sandbox_preflight)
def code_tests(
    completion: list[str],
    metadata: list[dict],
    tests_column: str = "tests",
    timeout_seconds: float = 5.0,
    memory_mb: int = 512,
    max_workers: int | None = None,
    max_output_chars: int = 1000,
    allow_in_process_sandbox_only: bool = False,
) -> list[float]:
    """Fraction of the dataset's tests that the completion's Python code passes, run in a sandbox.

    The code is the completion's last ```python block (else the last ``` block, else all of it); no
    code scores 0. The column holds assert snippets or stdin/stdout cases (see `retrain.rewards.code`).
    Each run is limited to `timeout_seconds` of wall clock and `memory_mb` of address space, has no
    network and sees no file outside its own temporary directory; `max_workers` runs go at once
    (default: the number of CPUs). Raise `rewards.timeout_seconds` for large batches of slow tests.
    The tests' verdicts are made outside the code's process. Without root (no separate uid, no
    namespaces) the rule is refused unless `allow_in_process_sandbox_only: true`.

    Example:
        rewards:
          functions:
            - function: code_tests
              params: {tests_column: tests, timeout_seconds: 5}
    """
    reports = _reports(completion, metadata, tests_column, timeout_seconds, memory_mb, max_workers,
                       max_output_chars, allow_in_process_sandbox_only)
    return [report.fraction for report in reports]


@verifier(batched=True, preflight=_sandbox_preflight)
def code_passes_tests(
    completion: list[str],
    metadata: list[dict],
    tests_column: str = "tests",
    timeout_seconds: float = 5.0,
    memory_mb: int = 512,
    max_workers: int | None = None,
    max_output_chars: int = 1000,
    allow_in_process_sandbox_only: bool = False,
) -> list[tuple[bool, str]]:
    """Passes when the completion's Python code passes all of the dataset's tests, run in a sandbox.

    The same code, tests and sandbox as the `code_tests` reward; the reason says how many tests
    passed and the first failure, e.g. "3/5 tests passed; first failure: `assert f(2) == 4`: AssertionError".

    Example:
        verifiers:
          - rule: code_passes_tests
            params: {tests_column: tests, timeout_seconds: 5}
    """
    reports = _reports(completion, metadata, tests_column, timeout_seconds, memory_mb, max_workers,
                       max_output_chars, allow_in_process_sandbox_only)
    return [(report.all_passed, report.summary()) for report in reports]
