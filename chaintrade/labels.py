"""Training labels: the only columns that look into the future.

A label row is keyed like the feature row of the same bar (``symbol``, ``time``,
``event_timestamp`` = bar close), so features and labels join at the same instant.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from chaintrade.domain import Timeframe

LABEL_COLUMNS = ("symbol", "time", "event_timestamp", "forward_return", "label")


def _durations(timeframes: pd.Series) -> pd.Series:
    names = timeframes.astype(str).str.upper()
    unknown = sorted(set(names) - {t.name for t in Timeframe})
    if unknown:
        raise ValueError(f"unknown timeframe(s) {unknown}")
    minutes = names.map({t.name: t.minutes for t in Timeframe}).astype("int64")
    return pd.to_timedelta(minutes, unit="min")


def direction_labels(bars: pd.DataFrame, *, horizon_bars: int) -> pd.DataFrame:
    """Direction labels for bars of any number of symbols.

    ``forward_return = log(close[t + h] / close[t])`` within each symbol (h = ``horizon_bars``
    bars ahead), ``label = 1`` if it is > 0 else 0. The last ``horizon_bars`` bars of each
    symbol have no future yet and are dropped. ``event_timestamp`` is the close of bar t
    (time + timeframe), the instant its features become known.
    """
    if horizon_bars < 1:
        raise ValueError(f"horizon_bars must be >= 1, got {horizon_bars}")
    missing = [c for c in ("symbol", "timeframe", "time", "close") if c not in bars.columns]
    if missing:
        raise ValueError(f"bars lack columns {missing}")
    df = bars[["symbol", "timeframe", "time", "close"]].sort_values(
        ["symbol", "time"], kind="stable"
    )
    df = df.reset_index(drop=True)
    log_close = pd.Series(np.log(df["close"].to_numpy(np.float64)), index=df.index)
    future = log_close.groupby(df["symbol"], sort=False).shift(-horizon_bars)
    forward_return = future - log_close
    time = df["time"].dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    out = pd.DataFrame(
        {
            "symbol": df["symbol"].astype(object),
            "time": time,
            "event_timestamp": time + _durations(df["timeframe"]),
            "forward_return": forward_return,
            "label": (forward_return > 0).astype("int64"),
        }
    )
    return out[future.notna()].reset_index(drop=True)
