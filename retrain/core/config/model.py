"""`model`: the policy to train, how it is loaded, LoRA."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from retrain.core.config._base import _FieldValueError, _Strict


class LoraConfig(_Strict):
    """Low-rank adapters: train a few small matrices instead of every weight."""

    r: int = Field(16, gt=0, description="Rank of the adapter matrices.")
    alpha: int = Field(32, gt=0, description="Scaling numerator (effective scale is alpha / r).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on the adapter input (peft's default, 0).")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="Module names to adapt, or 'all-linear'."
    )


class ModelConfig(_Strict):
    """The policy model to train."""

    name: str = Field(
        description="A Hugging Face hub id (org/name), a local folder, or a built-in "
        "('retrain:smollm2-135m-instruct', 'retrain:tiny').",
        min_length=1,
    )
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights dtype; 'auto' is bfloat16 on a GPU that supports it, else float32."
    )
    lora: LoraConfig | None = Field(None, description="Train LoRA adapters instead of the full model.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit).")
    loader: Literal["transformers", "unsloth"] = Field(
        "transformers",
        description="What loads the model: 'transformers', or 'unsloth' (its patched kernels; TRL backend; "
        "`pip install 'retrain[unsloth]'`).",
    )

    @model_validator(mode="after")
    def _revision_of_a_hub_model(self) -> ModelConfig:
        from retrain.models import is_hub_id

        if self.revision is not None and not is_hub_id(self.name):
            raise _FieldValueError(
                ("revision",),
                f"a revision picks a version of a hub model, and '{self.name}' is not a hub id; remove it",
            )
        return self

    @field_validator("name")
    @classmethod
    def _name_resolvable(cls, name: str) -> str:
        from retrain.models import check_model_reference  # no ML imports: a path/name check only

        problem = check_model_reference(name)
        if problem:
            raise ValueError(problem)
        return name
