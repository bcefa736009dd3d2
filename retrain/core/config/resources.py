"""`resources`: the hardware a run may use."""

from __future__ import annotations

from pydantic import Field

from retrain.core.config._base import _Strict


class ResourcesConfig(_Strict):
    """Hardware the run may use. Scale-out is done by the backend's own engine."""

    nodes: int = Field(1, gt=0, description="Number of machines.")
    gpus_per_node: int = Field(0, ge=0, description="GPUs per machine (0: CPU).")
    ray_address: str | None = Field(
        None,
        description="An existing Ray cluster to run on ('auto', or the head's 'host:port'), for backends that "
        "run on Ray (verl). Unset: the run starts a local Ray and stops it at the end. A cluster it did not "
        "start is left running; only this run's actors end with it.",
    )
