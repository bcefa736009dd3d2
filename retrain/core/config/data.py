"""`data`: where the prompts come from."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from retrain.core.config._base import _Strict


class DataConfig(_Strict):
    """Where prompts come from: inline, or a JSONL/parquet file or a Hugging Face dataset."""

    prompts: list[str] | None = Field(None, description="Inline prompts.")
    source: str | list[str] | None = Field(
        None,
        description="A .jsonl/.json/.parquet file, or 'hf:<dataset name>' for a Hugging Face dataset; a list of "
        "them trains on all their rows together.",
    )
    split: str = Field("train", description="Dataset split (for 'hf:' sources).")
    prompt_column: str = Field("prompt", description="Column holding the prompt text.")
    answer_column: str | None = Field(
        None, description="Column holding the reference answer, passed to rewards as `answer`; a dotted name reads "
        "inside a mapping column (reward_model.ground_truth, in verl's datasets)."
    )
    system_prompt: str | None = Field(
        None, description="A system message put before every prompt (an error for rows that start with their own)."
    )
    max_prompt_tokens: int | None = Field(
        None, gt=0,
        description="The longest prompt, in tokens after the chat template; unset: the longest in the data. No "
        "backend truncates a prompt: a longer one is handled by overlong_prompts.",
    )
    overlong_prompts: Literal["error", "filter"] = Field(
        "error",
        description="A prompt longer than max_prompt_tokens: 'error' stops before training, naming the row; "
        "'filter' leaves it out (the count is printed).",
    )
    chat_template_kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments for the tokenizer's chat template (e.g. enable_thinking: false).",
    )

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

    @field_validator("source")
    @classmethod
    def _sources_not_empty(cls, source: str | list[str] | None) -> str | list[str] | None:
        if isinstance(source, list) and not source:
            raise ValueError("the source list is empty; give at least one file or 'hf:' dataset")
        return source

    @property
    def sources(self) -> list[str]:
        """Every data source, in order."""
        if self.source is None:
            return []
        return [self.source] if isinstance(self.source, str) else list(self.source)

    @model_validator(mode="after")
    def _one_source(self) -> DataConfig:
        if self.prompts is None and self.source is None:
            raise ValueError("no prompts: set `data.prompts` (or `example_prompts`) or `data.source`")
        if self.prompts is not None and self.source is not None:
            raise ValueError("set either `data.prompts` or `data.source`, not both")
        return self
