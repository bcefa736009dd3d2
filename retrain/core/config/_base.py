"""What every config section shares: strict models, and an error that names its field."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class _FieldValueError(ValueError):
    """A ValueError about one field, raised where pydantic cannot tell which (a mode="before" validator)."""

    def __init__(self, loc: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.loc = loc


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)
