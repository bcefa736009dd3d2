"""`data`: where the prompts come from."""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from retrain.core.config._base import _Strict


class DataConfig(_Strict):
    """Where prompts come from: inline, or a JSONL/parquet file or a Hugging Face dataset."""

    prompts: list[str] | None = Field(None, description="Inline prompts.")
    source: str | None = Field(
        None,
        description="A .jsonl/.json/.parquet file, or 'hf:<dataset name>' for a Hugging Face dataset.",
    )
    split: str = Field("train", description="Dataset split (for 'hf:' sources).")
    prompt_column: str = Field("prompt", description="Column holding the prompt text.")
    answer_column: str | None = Field(
        None, description="Column holding the reference answer, passed to rewards as `answer`."
    )
    system_prompt: str | None = Field(None, description="A system message put before every prompt.")

    @field_validator("prompts")
    @classmethod
    def _prompts_not_empty(cls, prompts: list[str] | None) -> list[str] | None:
        if prompts is not None:
            if not prompts:
                raise ValueError("the prompt list is empty; give at least one prompt")
            for i, prompt in enumerate(prompts):
                if not prompt.strip():
                    raise ValueError(f"prompt {i} is blank; remove it or write the prompt")
        return prompts

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.prompts is None and self.source is None:
            raise ValueError("no prompts: set `data.prompts` (or `example_prompts`) or `data.source`")
        if self.prompts is not None and self.source is not None:
            raise ValueError("set either `data.prompts` or `data.source`, not both")
        return self
