"""Pydantic request/response models shared by serving and the live agent (the HTTP contract)."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

MT5_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)  # MT5 stamps bars in seconds since the epoch
_TIMEFRAMES = frozenset({"M1", "M5", "M15", "M30", "H1", "H4", "D1"})  # BarIn.timeframe's pattern
_INF = math.inf
_new_object = object.__new__
_set_slot = object.__setattr__


class BarIn(BaseModel):
    """One closed bar as MT5's ``copy_rates_*`` gives it, plus symbol and timeframe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    symbol: str = Field(min_length=1, max_length=32, examples=["EURUSD"])
    timeframe: str = Field(pattern=r"^(M1|M5|M15|M30|H1|H4|D1)$", examples=["H1"])
    time: AwareDatetime = Field(description="Bar open time, UTC.")
    open: float = Field(gt=0)
    high: float = Field(gt=0)
    low: float = Field(gt=0)
    close: float = Field(gt=0)
    tick_volume: int = Field(ge=0)
    spread: int = Field(ge=0, description="Spread in points.")
    real_volume: int = Field(default=0, ge=0)

    @field_validator("time")
    @classmethod
    def _mt5_epoch(cls, value: datetime) -> datetime:
        if value < MT5_EPOCH:
            raise ValueError("MT5 bar times start at 1970-01-01T00:00:00Z")
        return value

    @field_validator("open", "high", "low", "close")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("price must be finite")
        return value

    @classmethod
    def checked(
        cls,
        symbol: str,
        timeframe: str,
        time: datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        tick_volume: int,
        spread: int,
        real_volume: int,
    ) -> BarIn:
        """``BarIn(...)`` with every field given, for a hot path: plain values (``str``,
        ``float``, ``int``, an aware ``datetime``) that pass every rule above are checked here
        in Python and set as they are (what the validator returns for them, ~5x cheaper);
        anything else goes through the validator and raises as ``BarIn(...)`` does."""
        if (
            type(symbol) is str
            and 0 < len(symbol) <= 32
            and type(timeframe) is str
            and timeframe in _TIMEFRAMES
            and type(time) is datetime
            and time.utcoffset() is not None
            and time >= MT5_EPOCH
            and type(open) is float
            and type(high) is float
            and type(low) is float
            and type(close) is float
            and 0.0 < open < _INF
            and 0.0 < high < _INF
            and 0.0 < low < _INF
            and 0.0 < close < _INF
            and type(tick_volume) is int
            and type(spread) is int
            and type(real_volume) is int
            and tick_volume >= 0
            and spread >= 0
            and real_volume >= 0
        ):
            bar = _new_object(cls)
            _set_slot(
                bar,
                "__dict__",
                {
                    "symbol": symbol,
                    "timeframe": timeframe,
                    "time": time,
                    "open": open,
                    "high": high,
                    "low": low,
                    "close": close,
                    "tick_volume": tick_volume,
                    "spread": spread,
                    "real_volume": real_volume,
                },
            )
            _set_slot(bar, "__pydantic_fields_set__", set(_BAR_FIELDS))
            _set_slot(bar, "__pydantic_extra__", None)
            _set_slot(bar, "__pydantic_private__", None)
            return bar
        return cls(
            symbol=symbol,
            timeframe=timeframe,
            time=time,
            open=open,
            high=high,
            low=low,
            close=close,
            tick_volume=tick_volume,
            spread=spread,
            real_volume=real_volume,
        )


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


_BAR_FIELDS = frozenset(BarIn.model_fields)
