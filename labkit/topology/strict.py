"""The base of every topology model: unknown keys are errors, fields by name or alias."""

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
