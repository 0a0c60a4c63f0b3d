"""One bar validator shared by batch ingest and the live agent: every rejection has a reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from chaintrade.domain import BAR_FRAME_COLUMNS

PRICE_COLUMNS = ("open", "high", "low", "close")


class Reason:
    """Reason codes for rejected bars (stable strings; they are counted and stored)."""

    MISSING_VALUE = "missing_value"
    NON_POSITIVE_PRICE = "non_positive_price"
    OHLC_INCONSISTENT = "ohlc_inconsistent"
    NEGATIVE_VOLUME = "negative_volume"
    DUPLICATE_TIME = "duplicate_time"
    OUT_OF_ORDER = "out_of_order"


@dataclass(frozen=True)
class ValidationResult:
    """Good rows go on; rejected rows are kept in ``quarantine`` with a ``reason`` column."""

    good: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return len(self.quarantine)


def validate_bars(bars: pd.DataFrame) -> ValidationResult:
    """Check bars of any number of symbols; the first failing rule gives a row its reason."""
    missing = [c for c in BAR_FRAME_COLUMNS if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}; expected {list(BAR_FRAME_COLUMNS)}")
    df = bars.reset_index(drop=True)
    reason = pd.Series(pd.NA, index=df.index, dtype="object")

    def mark(mask: pd.Series | np.ndarray, code: str) -> None:
        reason[np.asarray(mask) & reason.isna().to_numpy()] = code

    mark(df[list(BAR_FRAME_COLUMNS)].isna().any(axis=1), Reason.MISSING_VALUE)
    prices = df[list(PRICE_COLUMNS)]
    mark((prices <= 0).any(axis=1), Reason.NON_POSITIVE_PRICE)
    body_high = prices[["open", "close"]].max(axis=1)
    body_low = prices[["open", "close"]].min(axis=1)
    mark((df["high"] < body_high) | (df["low"] > body_low), Reason.OHLC_INCONSISTENT)
    mark((df["tick_volume"] < 0) | (df["real_volume"] < 0), Reason.NEGATIVE_VOLUME)
    keys = ["symbol", "timeframe", "time"]
    mark(df.duplicated(keys, keep="first"), Reason.DUPLICATE_TIME)
    # A bar is out of order when its time is not after the latest earlier bar of its series.
    running_max = df.groupby(["symbol", "timeframe"], sort=False)["time"].cummax()
    previous_max = running_max.groupby([df["symbol"], df["timeframe"]], sort=False).shift(1)
    mark(previous_max.notna() & (df["time"] < previous_max), Reason.OUT_OF_ORDER)

    bad = reason.notna()
    quarantine = df[bad].assign(reason=reason[bad].astype(str))
    counts = {str(k): int(v) for k, v in quarantine["reason"].value_counts().items()}
    return ValidationResult(
        df[~bad].reset_index(drop=True), quarantine.reset_index(drop=True), counts
    )
