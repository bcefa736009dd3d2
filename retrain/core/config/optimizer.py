"""`optimizer`: AdamW and its learning-rate schedule, given the same values on every backend.

The libraries' own defaults differ (verl's AdamW decays weights by 0.01, transformers' by 0), so every
value here is passed explicitly; `retrain translate --backends trl,verl` reads them back from each
library's composed config.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from retrain.core.config._base import _FieldValueError, _Strict


class OptimizerConfig(_Strict):
    """AdamW (the peak learning rate is `algorithm.learning_rate`) and the learning-rate schedule."""

    weight_decay: float = Field(0.0, ge=0, description="AdamW's decoupled weight decay.")
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW's beta1 and beta2.")
    eps: float = Field(1e-8, gt=0, description="AdamW's epsilon.")
    max_grad_norm: float = Field(1.0, gt=0, description="Clip the gradient's global norm to this before each update.")
    lr_scheduler: Literal["constant", "linear", "cosine"] = Field(
        "constant",
        description="The schedule after warmup: 'constant', 'linear' decay to 0, or 'cosine' decay to "
        "min_lr_ratio x the peak.",
    )
    warmup_steps: int = Field(0, ge=0, description="Steps of linear warmup from 0 to the peak learning rate.")
    warmup_ratio: float | None = Field(
        None, ge=0, lt=1,
        description="Warmup as a share of algorithm.max_steps (rounded down), instead of warmup_steps.",
    )
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="For 'cosine': the floor, as a share of the peak.")

    @model_validator(mode="after")
    def _one_warmup(self) -> OptimizerConfig:
        if self.warmup_ratio is not None and self.warmup_steps:
            raise _FieldValueError(("warmup_ratio",), "set warmup_steps or warmup_ratio, not both")
        if self.min_lr_ratio and self.lr_scheduler != "cosine":
            raise _FieldValueError(("min_lr_ratio",), "only the 'cosine' schedule has a floor; remove min_lr_ratio")
        for beta in self.betas:
            if not 0 <= beta < 1:
                raise _FieldValueError(("betas",), f"got {beta}: each beta is in [0, 1)")
        return self

    def warmup_for(self, max_steps: int) -> int:
        """Warmup in steps: one rounding, made here, so every backend warms up for the same steps."""
        if self.warmup_ratio is not None:
            return int(self.warmup_ratio * max_steps)
        return self.warmup_steps
