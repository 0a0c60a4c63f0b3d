"""Ticks → M1 and M1 → M5/H1 with hand-computed bars; partial bars are never returned."""

from __future__ import annotations

import pandas as pd
import pytest

from chaintrade.market_data import synthetic_bars
from chaintrade.resample import resample_bars, ticks_to_bars

T0 = 1_704_189_600_000  # 2024-01-02 10:00:00 UTC in ms


def _ticks(rows: list[tuple[int, float, float, int]]) -> pd.DataFrame:
    """(ms after 10:00, bid, ask, volume)."""
    frame = pd.DataFrame(
        {
            "symbol": "EURUSD",
            "time_msc": [T0 + r[0] for r in rows],
            "bid": [r[1] for r in rows],
            "ask": [r[2] for r in rows],
            "last": 0.0,
            "volume": [r[3] for r in rows],
            "flags": 6,
        }
    )
    frame["time"] = pd.to_datetime(frame["time_msc"], unit="ms", utc=True)
    frame.attrs["digits"] = 5
    return frame


def test_ticks_become_m1_bars_with_first_max_min_last_and_counts() -> None:
    ticks = _ticks(
        [
            (100, 1.10000, 1.10010, 1),  # 10:00 bar
            (20_000, 1.10050, 1.10058, 2),
            (40_000, 1.09980, 1.09992, 0),
            (59_999, 1.10020, 1.10030, 1),
            (61_000, 1.10030, 1.10045, 5),  # 10:01 bar
            (125_000, 1.10040, 1.10050, 1),  # 10:02 bar: still open at the last tick
        ]
    )
    bars = ticks_to_bars(ticks, "M1")
    assert bars["time"].tolist() == [
        pd.Timestamp("2024-01-02 10:00", tz="UTC"),
        pd.Timestamp("2024-01-02 10:01", tz="UTC"),
    ]
    first = bars.iloc[0]
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        1.10000,
        1.10050,
        1.09980,
        1.10020,
    )
    assert first["tick_volume"] == 4
    assert first["real_volume"] == 4
    assert first["spread"] == 8  # the lowest ask - bid in points
    assert bars.iloc[1]["tick_volume"] == 1 and bars.iloc[1]["close"] == 1.10030
    # once the clock passes 10:03 the 10:02 bar is closed too
    later = ticks_to_bars(ticks, "M1", now="2024-01-02 10:03")
    assert len(later) == 3 and later.iloc[2]["open"] == 1.10040


def _m1(rows: list[tuple[str, float, float, float, float, int]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": "EURUSD",
            "timeframe": "M1",
            "time": pd.to_datetime([r[0] for r in rows], utc=True),
            "open": [r[1] for r in rows],
            "high": [r[2] for r in rows],
            "low": [r[3] for r in rows],
            "close": [r[4] for r in rows],
            "tick_volume": [r[5] for r in rows],
            "spread": [7, 5, 6, 9, 8, 4, 3][: len(rows)],
            "real_volume": 0,
        }
    )


def test_m1_to_m5_sums_volumes_and_drops_the_unfinished_bar() -> None:
    m1 = _m1(
        [
            ("2024-01-02 10:00", 1.0, 1.3, 0.9, 1.1, 10),
            ("2024-01-02 10:01", 1.1, 1.2, 0.8, 1.0, 20),
            ("2024-01-02 10:03", 1.0, 1.1, 1.0, 1.05, 30),  # 10:02 missing: still one bar
            ("2024-01-02 10:04", 1.05, 1.4, 1.0, 1.2, 40),
            ("2024-01-02 10:05", 1.2, 1.25, 1.15, 1.2, 50),  # 10:05 bar: open at data end
        ]
    )
    m5 = resample_bars(m1, "M5")
    assert len(m5) == 1
    bar = m5.iloc[0]
    assert bar["time"] == pd.Timestamp("2024-01-02 10:00", tz="UTC")
    assert bar["timeframe"] == "M5"
    assert (bar["open"], bar["high"], bar["low"], bar["close"]) == (1.0, 1.4, 0.8, 1.2)
    assert bar["tick_volume"] == 100
    assert bar["spread"] == 5
    # with the clock at 10:10 the 10:05 bar (one M1 bar) is complete
    assert len(resample_bars(m1, "M5", now="2024-01-02 10:10")) == 2


def test_m1_to_h1_matches_a_synthetic_day_computed_by_hand() -> None:
    m1 = synthetic_bars("EURUSD", timeframe="M1", start="2024-01-02", n=180, seed=4)
    h1 = resample_bars(m1, "H1")
    assert len(h1) == 3
    for k in range(3):
        hour = m1.iloc[60 * k : 60 * (k + 1)]
        row = h1.iloc[k]
        assert row["open"] == hour["open"].iloc[0]
        assert row["close"] == hour["close"].iloc[-1]
        assert row["high"] == hour["high"].max()
        assert row["low"] == hour["low"].min()
        assert row["tick_volume"] == hour["tick_volume"].sum()


def test_resampling_to_a_smaller_timeframe_is_refused() -> None:
    h1 = synthetic_bars("EURUSD", timeframe="H1", start="2024-01-02", n=5, seed=1)
    with pytest.raises(ValueError, match="whole multiple"):
        resample_bars(h1, "M15")
