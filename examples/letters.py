"""Letter-counting rewards for the regression example (examples/rare_letters.yaml)."""

from __future__ import annotations

from retrain import reward


@reward(bounds=(-1.0, 0.0))
def avoid_letters(completion: str, letters: str = "etaoinsr") -> float:
    """Minus the share of the completion's characters that are among `letters` (either case): -1 when every
    character is one of them, 0 when none is. The default is English's eight commonest letters, about half of
    ordinary text: a reward that starts low and has far to rise."""
    if not completion:
        return 0.0
    avoided = set(letters.lower())
    return -sum(1 for c in completion.lower() if c in avoided) / len(completion)
