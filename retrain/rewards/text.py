"""Text rules: poems, mentions, contains / not-contains, regex, length (hard and soft), repetition, and
penalties on text."""

from __future__ import annotations

import re

from retrain.core.registry import reward, verifier
from retrain.core.rollout import Rollout

CAT_WORDS = (
    "cat", "cats", "kitten", "kittens", "kitty", "kitties", "feline", "felines", "purr", "purrs",
    "purring", "meow", "meows", "tabby", "tomcat", "whisker", "whiskers", "paw", "paws", "mew",
)


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", text)


def _found(completion: str, word: str, case_sensitive: bool, whole_word: bool) -> bool:
    if whole_word:
        return re.search(rf"\b{re.escape(word)}\b", completion, 0 if case_sensitive else re.IGNORECASE) is not None
    return word in completion if case_sensitive else word.lower() in completion.lower()


def _as_list(text: str | list[str]) -> list[str]:
    return [text] if isinstance(text, str) else list(text)


@verifier
def is_actually_a_poem(
    completion: str, min_lines: int = 3, max_words_per_line: int = 14, min_short_line_fraction: float = 0.75
) -> tuple[bool, str]:
    """Line structure of a poem: at least `min_lines` non-empty lines, most of them short.

    Example:
        verifiers:
          - rule: is_actually_a_poem
            params: {min_lines: 4}
    """
    lines = [line.strip() for line in completion.splitlines() if line.strip()]
    if len(lines) < min_lines:
        return False, f"{len(lines)} non-empty line(s); a poem needs at least {min_lines}"
    short = [line for line in lines if 1 <= len(_words(line)) <= max_words_per_line]
    fraction = len(short) / len(lines)
    if fraction < min_short_line_fraction:
        return False, (
            f"only {fraction:.0%} of lines have 1-{max_words_per_line} words; "
            f"prose, not verse (need {min_short_line_fraction:.0%})"
        )
    return True, f"{len(lines)} lines, {fraction:.0%} short"


@verifier
def mentions(completion: str, words: list[str], case_sensitive: bool = False) -> tuple[bool, str]:
    """Passes when the completion contains any of `words` as a whole word.

    Example:
        verifiers:
          - rule: mentions
            params: {words: [moon, stars]}
    """
    for word in words:
        if _found(completion, word, case_sensitive, whole_word=True):
            return True, f"mentions '{word}'"
    return False, f"mentions none of {list(words)[:6]}"


@verifier
def mentions_a_cat(completion: str) -> tuple[bool, str]:
    """Passes when the completion mentions a cat (cat, kitten, feline, purr, meow, paws, ...).

    Example:
        verifiers:
          - rule: mentions_a_cat
    """
    return mentions(completion, list(CAT_WORDS))


@reward(bounds=(0.0, 1.0))
def contains(
    completion: str,
    text: str | list[str],
    case_sensitive: bool = False,
    whole_word: bool = False,
    match: str = "any",
) -> float:
    """1.0 when the completion contains `text` (one string or a list: `match` 'any' or 'all'), else 0.0.

    Example:
        rewards:
          functions:
            - function: contains
              params: {text: [sun, moon], match: all, whole_word: true}
    """
    found = [_found(completion, word, case_sensitive, whole_word) for word in _as_list(text)]
    if match not in ("any", "all"):
        raise ValueError(f"unknown match {match!r}; use 'any' or 'all'")
    return float(any(found) if match == "any" else all(found))


@reward(bounds=(0.0, 1.0))
def not_contains(
    completion: str, text: str | list[str], case_sensitive: bool = False, whole_word: bool = False
) -> float:
    """1.0 when the completion contains none of `text` (one string or a list), else 0.0.

    Example:
        rewards:
          functions:
            - function: not_contains
              params: {text: ["As an AI", "I cannot"]}
    """
    return float(not any(_found(completion, word, case_sensitive, whole_word) for word in _as_list(text)))


@reward(bounds=(0.0, 1.0))
def regex(completion: str, pattern: str, full_match: bool = False) -> float:
    """1.0 when `pattern` matches the completion (anywhere, or the whole of it), else 0.0.

    Example:
        rewards:
          functions:
            - function: regex
              params: {pattern: '^Answer: \\d+$'}
    """
    matcher = re.fullmatch if full_match else re.search
    return float(matcher(pattern, completion, re.DOTALL | re.MULTILINE) is not None)


@verifier
def matches_regex(
    completion: str, pattern: str, full_match: bool = False, description: str | None = None
) -> tuple[bool, str]:
    """Passes when `pattern` matches the completion (anywhere, or the whole of it); `description` names it in reasons.

    Multi-line: `^` and `$` match at each line. Case-insensitive with `(?i)` at the pattern's start.

    Example:
        verifiers:
          - rule: matches_regex
            params: {pattern: '(?i)answer\\s*(is)?\\s*:?\\s*-?\\d', description: a final numeric answer}
    """
    matcher = re.fullmatch if full_match else re.search
    what = description or f"/{pattern}/"
    if matcher(pattern, completion, re.DOTALL | re.MULTILINE) is None:
        return False, f"no {what}"
    return True, f"has {what}"


def _count(completion: str, unit: str) -> int:
    if unit == "words":
        return len(completion.split())
    if unit == "chars":
        return len(completion)
    if unit == "lines":
        return len([line for line in completion.splitlines() if line.strip()])
    raise ValueError(f"unknown unit {unit!r}; use 'words', 'chars' or 'lines'")


@reward(bounds=(0.0, 1.0))
def length(completion: str, min_words: int = 0, max_words: int | None = None, unit: str = "words") -> float:
    """1.0 when the completion's length (in `unit`: words, chars or lines) is within [min_words, max_words].

    Example:
        rewards:
          functions:
            - function: length
              params: {min_words: 20, max_words: 80}
    """
    count = _count(completion, unit)
    return float(count >= min_words and (max_words is None or count <= max_words))


@reward(bounds=(-1.0, 0.0))
def length_penalty(
    completion: str, min_words: int = 0, max_words: int | None = None, scale: float = 50.0, unit: str = "words"
) -> float:
    """0 inside [min_words, max_words], falling linearly outside: -(distance / scale), at most -1.

    A soft bound: unlike `length`, a completion 5 words too long scores better than one 500 too long.

    Example:
        rewards:
          functions:
            - function: length_penalty
              params: {max_words: 100, scale: 100}
    """
    if scale <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    count = _count(completion, unit)
    distance = max(0, min_words - count) + (max(0, count - max_words) if max_words is not None else 0)
    return -min(1.0, distance / scale)


def _overlong_bounds(params: dict) -> tuple[float, float]:
    return (-abs(float(params.get("penalty", 1.0))), 0.0)


@reward(bounds=_overlong_bounds)
def overlong_penalty(rollout: Rollout, max_tokens: int, buffer_tokens: int, penalty: float = 1.0) -> float:
    """DAPO's soft overlong punishment, on the tokens the model generated: 0 up to max_tokens - buffer_tokens,
    then falling linearly to -penalty at max_tokens (verl's DAPO reward manager's formula).

    `algorithm.name: dapo` adds it as the reward component 'overlong' (`algorithm.overlong_buffer`), so it is
    computed by retrain, the same on every backend, and shown in the breakdown.

    Example:
        rewards:
          functions:
            - function: overlong_penalty
              params: {max_tokens: 512, buffer_tokens: 128}
    """
    if buffer_tokens <= 0 or buffer_tokens > max_tokens:
        raise ValueError(f"buffer_tokens must be in 1..max_tokens ({max_tokens}), got {buffer_tokens}")
    if not rollout.completion_token_ids:
        raise ValueError("the rollout carries no completion token ids to count (the backend did not pass them)")
    generated = sum(rollout.trainable_mask) if rollout.trainable_mask else len(rollout.completion_token_ids)
    exceed = generated - (max_tokens - buffer_tokens)
    return min(-exceed / buffer_tokens * penalty, 0.0)


def _repetition_bounds(params: dict) -> tuple[float, float]:
    penalty = float(params.get("max_penalty", -1.0))
    return (min(penalty, 0.0), max(penalty, 0.0))


@reward(bounds=_repetition_bounds)
def repetition_penalty(completion: str, ngram_size: int = 3, max_penalty: float = -1.0) -> float:
    """`max_penalty` x the share of repeated word n-grams: 0 for text that never repeats itself.

    Share = 1 - distinct n-grams / all n-grams (as in Open-R1's repetition penalty); a completion
    shorter than one n-gram scores 0.

    Example:
        rewards:
          functions:
            - function: repetition_penalty
              params: {ngram_size: 3, max_penalty: -1.0}
    """
    if ngram_size < 1:
        raise ValueError(f"ngram_size must be at least 1, got {ngram_size}")
    words = completion.lower().split()
    ngrams = [tuple(words[i : i + ngram_size]) for i in range(len(words) - ngram_size + 1)]
    if not ngrams:
        return 0.0
    return max_penalty * (1 - len(set(ngrams)) / len(ngrams))


def _penalty_bounds(params: dict) -> tuple[float, float] | None:
    if params.get("mode", "frequency") == "count":
        return None  # grows with length: no lower bound
    penalty = float(params["penalty_score"])
    return (min(penalty, 0.0), max(penalty, 0.0))


@reward(bounds=_penalty_bounds)
def penalize_text_containing(
    completion: str,
    text_to_avoid: str,
    penalty_score: float,
    mode: str = "frequency",
    case_sensitive: bool = False,
) -> float:
    """`penalty_score` scaled by how much of the completion is `text_to_avoid`.

    mode 'frequency' (default): penalty x (characters covered by occurrences / all characters), so a
    completion made only of the avoided text gets the full penalty and writing less earns nothing;
    'count': penalty per occurrence; 'once': penalty if it appears at all.

    Example:
        rewards:
          constraints:
            - type: penalize_text_containing
              text_to_avoid: "s"
              penalty_score: -100.0
    """
    haystack, needle = (completion, text_to_avoid) if case_sensitive else (completion.lower(), text_to_avoid.lower())
    count = haystack.count(needle)
    if mode == "count":
        return penalty_score * count
    if mode == "once":
        return penalty_score * min(count, 1)
    if mode == "frequency":
        return penalty_score * count * len(needle) / len(haystack) if haystack else 0.0
    raise ValueError(f"unknown mode {mode!r}; use 'frequency', 'count' or 'once'")
