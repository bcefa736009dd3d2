"""Text rules: poems, mentions, contains, regex, length, and penalties on text."""

from __future__ import annotations

import re

from retrain.core.registry import reward, verifier

CAT_WORDS = (
    "cat", "cats", "kitten", "kittens", "kitty", "kitties", "feline", "felines", "purr", "purrs",
    "purring", "meow", "meows", "tabby", "tomcat", "whisker", "whiskers", "paw", "paws", "mew",
)


def _words(text: str) -> list[str]:
    return re.findall(r"[A-Za-z']+", text)


@verifier
def is_actually_a_poem(
    completion: str, min_lines: int = 3, max_words_per_line: int = 14, min_short_line_fraction: float = 0.75
) -> tuple[bool, str]:
    """Line structure of a poem: at least `min_lines` non-empty lines, most of them short."""
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
    """Passes when the completion contains any of `words` as a whole word."""
    flags = 0 if case_sensitive else re.IGNORECASE
    for word in words:
        if re.search(rf"\b{re.escape(word)}\b", completion, flags):
            return True, f"mentions '{word}'"
    return False, f"mentions none of {list(words)[:6]}"


@verifier
def mentions_a_cat(completion: str) -> tuple[bool, str]:
    """Passes when the completion mentions a cat (cat, kitten, feline, purr, meow, paws, ...)."""
    return mentions(completion, list(CAT_WORDS))


@reward(bounds=(0.0, 1.0))
def contains(completion: str, text: str, case_sensitive: bool = False) -> float:
    """1.0 when the completion contains `text`, else 0.0."""
    if case_sensitive:
        return float(text in completion)
    return float(text.lower() in completion.lower())


@reward(bounds=(0.0, 1.0))
def regex(completion: str, pattern: str, full_match: bool = False) -> float:
    """1.0 when `pattern` matches the completion (anywhere, or the whole of it), else 0.0."""
    matcher = re.fullmatch if full_match else re.search
    return float(matcher(pattern, completion, re.DOTALL) is not None)


@reward(bounds=(0.0, 1.0))
def length(completion: str, min_words: int = 0, max_words: int | None = None) -> float:
    """1.0 when the completion's word count is within [min_words, max_words], else 0.0."""
    count = len(completion.split())
    return float(count >= min_words and (max_words is None or count <= max_words))


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
