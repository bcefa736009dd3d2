"""Answers: the completion's final answer against the dataset's reference answer (`data.answer_column`).

Three strengths of "the same answer": `exact_match` (after normalising case, punctuation, articles
and spaces), `numeric_match` (as numbers, within a tolerance) and `math_equivalent` (mathematically
equal, with `math-verify`: LaTeX, fractions, `\\boxed{}`, sets, intervals). The final answer is taken
from the completion by `retrain.rewards.format.extract_answer` (`extract:` param).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import importlib.util
import json
import os
import queue
import re
import select
import string
import subprocess
import sys
import threading
from fractions import Fraction
from typing import Any

from retrain.core.registry import reward, verifier
from retrain.rewards.format import Extract, extract_answer, extract_last_number

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.IGNORECASE)
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def _reference(answer: Any, reward_name: str) -> str:
    if answer is None:
        raise ValueError(
            f"{reward_name} compares with the reference answer, and this sample has none: "
            "set `data.answer_column` to the column that holds it"
        )
    return str(answer)


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles (a, an, the), single spaces (as SQuAD scores answers)."""
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION))
    return " ".join(text.split())


@reward(bounds=(0.0, 1.0))
def exact_match(
    completion: str, answer: Any, extract: Extract = "auto", tag: str = "answer", normalize: bool = True
) -> float:
    """1.0 when the completion's final answer equals the reference answer (normalised), else 0.0.

    Example:
        rewards:
          functions:
            - function: exact_match
              params: {extract: tag, tag: answer}
    """
    reference = _reference(answer, "exact_match")
    found = extract_answer(completion, extract, tag)
    if found is None:
        return 0.0
    if normalize:
        return float(normalize_text(found) == normalize_text(reference))
    return float(found.strip() == reference.strip())


def parse_number(text: str) -> float | None:
    """A number written as 1234, 1,234, -3.5, .5, 3/4 or 50% (as 0.5); None when `text` is not one."""
    cleaned = text.strip().replace(",", "").replace("$", "").rstrip(".")
    percent = cleaned.endswith("%")
    cleaned = cleaned.rstrip("%").strip()
    try:
        value = float(Fraction(cleaned))
    except (ValueError, ZeroDivisionError):
        return None
    return value / 100 if percent else value


@reward(bounds=(0.0, 1.0))
def numeric_match(
    completion: str,
    answer: Any,
    rel_tol: float = 1e-6,
    abs_tol: float = 1e-9,
    extract: Extract = "auto",
    tag: str = "answer",
) -> float:
    """1.0 when the completion's final number is within tolerance of the reference number, else 0.0.

    The final answer is extracted (`extract`), then its last number is read (`1,234`, `-3.5`, `3/4`,
    `50%`); `|found - answer| <= max(rel_tol * |answer|, abs_tol)`.

    Example:
        rewards:
          functions:
            - function: numeric_match
              params: {rel_tol: 0.01}
    """
    reference = parse_number(_reference(answer, "numeric_match"))
    if reference is None:
        raise ValueError(f"numeric_match: the reference answer {str(answer)[:80]!r} is not a number")
    found = extract_answer(completion, extract, tag)
    number = parse_number(found) if found is not None else None
    if number is None and found is not None:
        last = extract_last_number(found)
        number = parse_number(last) if last is not None else None
    if number is None:
        return 0.0
    return float(abs(number - reference) <= max(rel_tol * abs(reference), abs_tol))


# -- math-verify, in worker processes ---------------------------------------------------------------
# math-verify bounds its sympy work with signal.alarm, which works only in a process's main thread;
# the Scorer calls rewards from threads. So comparisons run in a few worker processes
# (retrain.rewards.math_worker), where a pathological expression (10^10^10^10) times out instead of
# pinning a thread of the trainer forever; a worker that overruns even that is killed and replaced.


class _MathWorker:
    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "retrain.rewards.math_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
        )
        self._read(timeout=120)  # "ready": math-verify and sympy imported

    def _read(self, timeout: float) -> Any:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            self.stop()
            raise TimeoutError("math-verify did not finish" if ready == [] else "math-verify's worker exited")
        return json.loads(line)

    def compare(self, found: str, reference: str, timeout_seconds: int) -> tuple[bool, str]:
        assert self.process.stdin is not None
        request = {"found": found, "reference": reference, "timeout": timeout_seconds}
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        equal, why = self._read(timeout=3 * timeout_seconds + 10)
        return bool(equal), str(why)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


class _MathPool:
    """Up to `size` workers, started on demand; each comparison borrows one."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle: queue.Queue[_MathWorker] = queue.Queue()
        self.workers: list[_MathWorker] = []
        self.lock = threading.Lock()
        self.threads = concurrent.futures.ThreadPoolExecutor(size, thread_name_prefix="retrain-math")

    def _borrow(self) -> _MathWorker:
        with self.lock:
            if self.idle.empty() and len(self.workers) < self.size:
                worker = _MathWorker()
                self.workers.append(worker)
                return worker
        return self.idle.get()

    def _compare(self, found: str, reference: str, timeout_seconds: int) -> tuple[bool, str]:
        worker = self._borrow()
        try:
            result = worker.compare(found, reference, timeout_seconds)
        except (TimeoutError, OSError, ValueError) as exc:
            with self.lock:
                self.workers.remove(worker)
            worker.stop()
            return False, str(exc)
        self.idle.put(worker)
        return result

    def map(self, pairs: list[tuple[str, str]], timeout_seconds: int) -> list[tuple[bool, str]]:
        futures = [self.threads.submit(self._compare, found, ref, timeout_seconds) for found, ref in pairs]
        return [future.result() for future in futures]

    def stop(self) -> None:
        with self.lock:
            for worker in self.workers:
                worker.stop()
            self.workers.clear()
        self.threads.shutdown(wait=False, cancel_futures=True)


_POOL: _MathPool | None = None
_POOL_LOCK = threading.Lock()


def _math_pool() -> _MathPool:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            if importlib.util.find_spec("math_verify") is None:
                raise ImportError("math_equivalent needs math-verify: pip install 'retrain[rewards]'")
            _POOL = _MathPool(max(1, min(4, os.cpu_count() or 1)))
            atexit.register(stop_math_workers)
        return _POOL


def stop_math_workers() -> None:
    """Stop the worker processes (at exit, or to free their memory); the next comparison starts new ones."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL.stop()
            _POOL = None


def _delimited(text: str) -> str:
    """math-verify finds LaTeX by its delimiters: a bare `\\frac{1}{2}` or `[0, 1)` gets `$...$`."""
    if any(marker in text for marker in ("$", "\\(", "\\[", "\\boxed", "\\fbox")):
        return text
    return f"${text}$"


def _parse(text: str, timeout_seconds: int) -> list[Any]:
    from math_verify import parse

    return parse(_delimited(text), parsing_timeout=timeout_seconds) or parse(text, parsing_timeout=timeout_seconds)


def verify_math(found: str, reference: str, timeout_seconds: int = 5, float_rounding: int = 6) -> tuple[bool, str]:
    """(equal, why) for two answers with math-verify, in this process; used by the worker processes."""
    from math_verify import verify

    gold = _parse(reference, timeout_seconds)
    if not gold:
        return False, f"the reference answer {reference[:80]!r} does not parse as mathematics"
    target = _parse(found, timeout_seconds)
    if not target:
        return False, f"{found[:80]!r} does not parse as mathematics"
    equal = verify(gold, target, float_rounding=float_rounding, timeout_seconds=timeout_seconds)
    return bool(equal), f"{target[0]} {'=' if equal else '!='} {gold[0]}"


def _verify_many(pairs: list[tuple[str | None, str]], timeout_seconds: int) -> list[tuple[bool, str]]:
    todo = [(index, found, reference) for index, (found, reference) in enumerate(pairs) if found is not None]
    results: list[tuple[bool, str]] = [(False, "no final answer found")] * len(pairs)
    compared = _math_pool().map([(found, reference) for _, found, reference in todo], timeout_seconds) if todo else []
    for (index, _, _), result in zip(todo, compared, strict=True):
        results[index] = result
    return results


def _math_pairs(completion: list[str], answer: list[Any], extract: Extract, tag: str) -> list[tuple[str | None, str]]:
    found = [extract_answer(text, extract, tag) for text in completion]
    return [(f, _reference(a, "math_equivalent")) for f, a in zip(found, answer, strict=True)]


@reward(batched=True, bounds=(0.0, 1.0))
def math_equivalent(
    completion: list[str], answer: list[Any], extract: Extract = "auto", tag: str = "answer", timeout_seconds: int = 5
) -> list[float]:
    """1.0 when the final answer is mathematically equal to the reference (math-verify), else 0.0.

    Handles LaTeX (`\\frac{1}{2}`, `0.5`, `\\boxed{\\frac12}` are equal), sets, intervals and plain
    numbers. With `extract: auto` the answer is the `<answer>` tag, else the last `\\boxed{}`, else
    the whole completion (math-verify then finds the last expression in it). Runs in worker
    processes, each comparison under `timeout_seconds`.

    Example:
        rewards:
          functions:
            - function: math_equivalent
              params: {extract: auto}
    """
    pairs = _math_pairs(completion, answer, extract, tag)
    return [float(equal) for equal, _ in _verify_many(pairs, timeout_seconds)]


@verifier(batched=True)
def correct_answer(
    completion: list[str],
    answer: list[Any],
    method: str = "math",
    extract: Extract = "auto",
    tag: str = "answer",
    timeout_seconds: int = 5,
) -> list[tuple[bool, str]]:
    """Passes when the final answer matches the reference: `method` 'math' (math-verify), 'numeric' or 'exact'.

    Example:
        verifiers:
          - rule: correct_answer
            params: {method: math, extract: tag}
    """
    if method == "math":
        return _verify_many(_math_pairs(completion, answer, extract, tag), timeout_seconds)
    if method not in ("numeric", "exact"):
        raise ValueError(f"unknown method {method!r}; use 'math', 'numeric' or 'exact'")
    check = numeric_match if method == "numeric" else exact_match
    outcomes = []
    for text, reference in zip(completion, answer, strict=True):
        found = extract_answer(text, extract, tag)
        passed = bool(check(text, reference, extract=extract, tag=tag))
        outcomes.append((passed, f"{(found or '')[:60]!r} {'matches' if passed else 'does not match'} "
                                 f"{str(reference)[:60]!r}"))
    return outcomes
