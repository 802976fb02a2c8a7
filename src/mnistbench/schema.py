"""The building blocks of params.yaml's schema, shared by config.py and every model's own params.

The schema says what a value may be; params.yaml is the one home of every value. So fields have no
defaults here, except where absence has a meaning of its own (no budget, no thread count).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt

# Seeds go to Python, NumPy and torch; NumPy takes 0 <= seed < 2**32.
Seed = Annotated[int, Field(ge=0, lt=2**32)]


class Section(BaseModel):
    # extra="forbid" turns a typo into an error instead of a silently ignored key; no NaN or infinity
    # passes for a number (an infinite warm-up or learning rate is never what was meant).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ModelSection(Section):
    """One model's section, models.<name>: its architecture's knobs (in a subclass), its budget, its recipe."""

    max_params: PositiveInt | None = None  # a parameter budget, checked when the model is built; None: none
    train: dict[str, Any]  # overrides of the shared train section, for this model only ({} for none)
