"""`rollout`: the engine that generates completions."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from retrain.core.config._base import _FieldValueError, _Strict


class RolloutConfig(_Strict):
    """What generates the completions. On GPUs vLLM is much faster than transformers' generate()."""

    engine: Literal["auto", "transformers", "vllm"] = Field(
        "auto",
        description="'auto': vLLM on GPUs when it is installed (and the backend can use it), else transformers; "
        "'vllm' or 'transformers' to insist (`pip install 'retrain[vllm]'`).",
    )
    vllm_mode: Literal["colocate", "server"] = Field(
        "colocate",
        description="'colocate': vLLM shares the training GPUs; 'server': generate on a separately started "
        "vLLM server (`trl vllm-serve`, TRL backend).",
    )
    server_url: str | None = Field(
        None,
        description="For vllm_mode 'server': the server's base URL; unset: http://localhost:8000.",
    )
    gpu_memory_utilization: float | None = Field(
        None, gt=0, le=1, description="Share of each GPU's memory vLLM may take; unset: the backend's own default."
    )
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one vLLM engine is split across.")
    importance_sampling_correction: bool = Field(
        False,
        description="Weight each token's loss by pi_train / pi_vllm (truncated at importance_sampling_cap), "
        "correcting for vLLM's numerics differing from the trainer's. Only where vLLM generates.",
    )
    importance_sampling_cap: float = Field(
        2.0, gt=1, description="The upper bound of the truncated importance weight."
    )

    def vllm_settings(self) -> list[str]:
        """The fields set that only vLLM uses (unused, or a mistake, where transformers generates)."""
        return [f"rollout.{name}" for name, given in (
            ("gpu_memory_utilization", self.gpu_memory_utilization is not None),
            ("tensor_parallel_size", self.tensor_parallel_size > 1),
            ("importance_sampling_correction", self.importance_sampling_correction),
            ("importance_sampling_cap", self.importance_sampling_cap != 2.0)) if given]

    @field_validator("server_url")
    @classmethod
    def _url(cls, url: str | None) -> str | None:
        if url is not None and not url.startswith(("http://", "https://")):
            raise ValueError(f"'{url}' is not an http(s) URL; write it like http://host:8000")
        return url

    @model_validator(mode="after")
    def _server_fields(self) -> RolloutConfig:
        if self.vllm_mode == "server" and self.engine == "transformers":
            raise _FieldValueError(("vllm_mode",), "'server' generates with vLLM; set engine: vllm (or auto)")
        if self.server_url is not None and self.vllm_mode != "server":
            raise _FieldValueError(
                ("server_url",), "only used with vllm_mode: server; set that, or remove server_url"
            )
        return self
