"""Pydantic request/response models shared by serving and the live agent (the HTTP contract)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

MT5_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # MT5 stamps bars in seconds since the epoch


class BarIn(BaseModel):
    """One closed bar as MT5's ``copy_rates_*`` gives it, plus symbol and timeframe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str = Field(min_length=1, max_length=32, examples=["EURUSD"])
    timeframe: str = Field(pattern=r"^(M1|M5|M15|M30|H1|H4|D1)$", examples=["H1"])
    # constraints in pydantic-core, not Python validators: half the cost per bar
    time: AwareDatetime = Field(ge=MT5_EPOCH, description="Bar open time, UTC (MT5: from 1970).")
    open: float = Field(gt=0, allow_inf_nan=False)
    high: float = Field(gt=0, allow_inf_nan=False)
    low: float = Field(gt=0, allow_inf_nan=False)
    close: float = Field(gt=0, allow_inf_nan=False)
    tick_volume: int = Field(ge=0)
    spread: int = Field(ge=0, description="Spread in points.")
    real_volume: int = Field(default=0, ge=0)


class Prediction(BaseModel):
    """The ensemble's answer for one symbol at one feature timestamp."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    symbol: str
    prediction: float = Field(ge=0.0, le=1.0, description="P(next move is up).")
    strength: float = Field(ge=-1.0, le=1.0, description="2·prediction − 1.")
    confidence: float = Field(ge=0.0, le=1.0)
    model_name: str
    model_version: str
    feature_timestamp: datetime
    members: dict[str, float] = Field(default_factory=dict, description="P(up) per member.")
    timings_ms: dict[str, float] = Field(default_factory=dict)
    direction: Literal["up", "down"] | None = Field(
        default=None, description="The more likely next move."
    )
    direction_probability: float | None = Field(
        default=None, ge=0.5, le=1.0, description="P(direction) = max(prediction, 1 − prediction)."
    )
    model_versions: dict[str, str] = Field(
        default_factory=dict, description="Registered model version behind each member."
    )
    cached: bool = Field(default=False, description="Answered from the 30 s prediction cache.")


class SymbolIn(BaseModel):
    """A request for the latest online features of a symbol (no bar sent)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str = Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._#-]+$")
    timeframe: str | None = Field(
        default=None, pattern=r"^(M1|M5|M15|M30|H1|H4|D1)$", description="Default: the model's."
    )
