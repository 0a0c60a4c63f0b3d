"""Domain types and enums shared by every component (the contracts of DESIGN.md)."""

from __future__ import annotations

from datetime import timedelta
from enum import IntEnum, StrEnum
from typing import Final


class Timeframe(IntEnum):
    """MT5 timeframes with the values of the real MetaTrader5 package."""

    M1 = 1
    M5 = 5
    M15 = 15
    M30 = 30
    H1 = 1 | 0x4000
    H4 = 4 | 0x4000
    D1 = 24 | 0x4000

    @property
    def minutes(self) -> int:
        return _MINUTES[self]

    @property
    def duration(self) -> timedelta:
        return timedelta(minutes=self.minutes)

    @property
    def pandas_freq(self) -> str:
        return f"{self.minutes}min"


def to_timeframe(timeframe: str | int | Timeframe) -> Timeframe:
    """``"H1"``, MT5's value (``16385``) or a ``Timeframe`` as the enum; ValueError otherwise."""
    if isinstance(timeframe, Timeframe):
        return timeframe
    try:
        if isinstance(timeframe, str) and not timeframe.isdigit():
            return Timeframe[timeframe.upper()]
        return Timeframe(int(timeframe))
    except (KeyError, ValueError):
        names = [t.name for t in Timeframe]
        raise ValueError(f"unknown timeframe {timeframe!r}; expected one of {names}") from None


_MINUTES: Final = {
    Timeframe.M1: 1,
    Timeframe.M5: 5,
    Timeframe.M15: 15,
    Timeframe.M30: 30,
    Timeframe.H1: 60,
    Timeframe.H4: 240,
    Timeframe.D1: 1440,
}


class Action(StrEnum):
    """What the decision rule asks for."""

    BUY = "BUY"
    SELL = "SELL"
    CLOSE = "CLOSE"
    HOLD = "HOLD"


# The bar contract: MT5's copy_rates_* record plus symbol and timeframe.
BAR_COLUMNS: Final = (
    "time",
    "open",
    "high",
    "low",
    "close",
    "tick_volume",
    "spread",
    "real_volume",
)
BAR_FRAME_COLUMNS: Final = ("symbol", "timeframe", *BAR_COLUMNS)
# The tick contract: MT5's copy_ticks_* record.
TICK_COLUMNS: Final = ("time_msc", "bid", "ask", "last", "volume", "flags")

# HTTP headers that carry a chain from one service to the next.
HEADER_CHAIN_ID: Final = "X-Chain-ID"
HEADER_REQUEST_ID: Final = "X-Request-ID"
HEADER_SOURCE_SERVICE: Final = "X-Source-Service"
