"""`model.loader: unsloth`: load the policy through Unsloth's FastLanguageModel for the TRL backend.

Unsloth patches transformers and TRL when it is imported, so `import_unsloth()` runs before anything
imports them (TRLBackend.train calls it first). The model it returns is handed to TRL's GRPOTrainer
as an instance; LoRA adapters come from Unsloth's own `get_peft_model`, not from `peft_config`.

Mapping (the keyword arguments are shown by `retrain translate`):

| retrain                        | Unsloth                                                          |
|--------------------------------|------------------------------------------------------------------|
| model.name (resolved locally)  | from_pretrained(model_name=...)                                  |
| model.dtype                    | dtype (None on 'auto': Unsloth picks bf16 where supported)       |
| model.revision                 | revision                                                         |
| model.lora (absent)            | full_finetuning=True                                             |
| model.lora.r/alpha/dropout     | get_peft_model(r, lora_alpha, lora_dropout)                      |
| model.lora.target_modules      | target_modules ('all-linear': Unsloth's default projections)     |
| training.gradient_checkpointing| use_gradient_checkpointing ("unsloth" or False)                  |
| training.seed                  | random_state                                                     |
| rollout engine vllm            | fast_inference=True (+ gpu_memory_utilization)                   |
| algorithm.max_completion_tokens| max_seq_length = max(2048, 512 + max_completion_tokens)          |

Weights load in 16 bits (`load_in_4bit=False`, where Unsloth's default is 4-bit QLoRA): retrain has no
quantisation setting, and the same config must mean the same model on every backend.
"""

from __future__ import annotations

import sys
from typing import Any

from retrain.core.config import TrainingConfig
from retrain.core.errors import ModelError

PROMPT_ROOM = 512  # tokens of prompt the sequence length leaves room for (as verl's prompt_length)


def import_unsloth() -> None:
    """Import Unsloth before transformers/TRL so that its patches apply to them."""
    import logging
    import warnings

    if "unsloth" in sys.modules:
        return
    late = [name for name in ("trl", "transformers", "peft") if name in sys.modules]
    # Noise on import that says nothing to a retrain user: torch's pytree deprecations raised by
    # torchao, and bitsandbytes missing an optional 4-bit CPU kernel (retrain loads 16-bit weights).
    logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message=".*is an Enum subclass and is now natively supported.*")
    try:
        import unsloth  # noqa: F401
    except ImportError as exc:
        raise ModelError(
            f"model.loader is 'unsloth' but it cannot be imported ({exc}): `pip install 'retrain[unsloth]'`"
        ) from None
    if late:
        warnings.warn(
            f"unsloth was imported after {', '.join(late)}; some of its speed-ups may not apply", stacklevel=2
        )


def from_pretrained_kwargs(config: TrainingConfig, model_path: str, engine: str) -> dict[str, Any]:
    """FastLanguageModel.from_pretrained's arguments (plain data; dtype as a name)."""
    kwargs: dict[str, Any] = {
        "model_name": model_path,
        "max_seq_length": max(2048, PROMPT_ROOM + config.algorithm.max_completion_tokens),
        "dtype": None if config.model.dtype == "auto" else config.model.dtype,
        "load_in_4bit": False,
        "full_finetuning": config.model.lora is None,
        "random_state": config.training.seed,
        "fast_inference": engine == "vllm",
    }
    if config.model.revision:
        kwargs["revision"] = config.model.revision
    if config.model.lora is not None:
        kwargs["max_lora_rank"] = config.model.lora.r
    if engine == "vllm" and config.rollout.gpu_memory_utilization is not None:
        kwargs["gpu_memory_utilization"] = config.rollout.gpu_memory_utilization
    return kwargs


def get_peft_model_kwargs(config: TrainingConfig) -> dict[str, Any] | None:
    """FastLanguageModel.get_peft_model's arguments, or None to train the full model."""
    lora = config.model.lora
    if lora is None:
        return None
    kwargs: dict[str, Any] = {
        "r": lora.r,
        "lora_alpha": lora.alpha,
        "lora_dropout": lora.dropout,
        "use_gradient_checkpointing": "unsloth" if config.training.gradient_checkpointing else False,
        "random_state": config.training.seed,
    }
    if lora.target_modules != "all-linear":
        kwargs["target_modules"] = list(lora.target_modules)
    return kwargs


def load(config: TrainingConfig, model_path: str, engine: str) -> tuple[Any, Any]:
    """The (model, tokenizer) Unsloth loads, with LoRA adapters when the config asks for them."""
    import torch
    from unsloth import FastLanguageModel

    kwargs = from_pretrained_kwargs(config, model_path, engine)
    if kwargs["dtype"] is not None:
        kwargs["dtype"] = getattr(torch, kwargs["dtype"])
    try:
        model, tokenizer = FastLanguageModel.from_pretrained(**kwargs)
    except (OSError, ValueError, NotImplementedError) as exc:
        raise ModelError(f"unsloth cannot load model '{config.model.name}': {exc}") from None
    peft = get_peft_model_kwargs(config)
    if peft is not None:
        model = FastLanguageModel.get_peft_model(model, **peft)
    return model, tokenizer
