"""Bars into market_data against a real PostgreSQL, with the real EURUSD H1 sample."""

from __future__ import annotations

import pandas as pd
import pytest

from chaintrade.db import connect
from chaintrade.errors import DataValidationError
from chaintrade.market_store import load_bars, read_bars
from chaintrade.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration

SAMPLE = PROJECT_ROOT / "data" / "EURUSD_H1_2017-04_2018-02.csv"


@pytest.fixture(scope="module")
def eurusd_h1() -> pd.DataFrame:
    raw = pd.read_csv(SAMPLE, index_col=0, parse_dates=[0])
    return pd.DataFrame(
        {
            "symbol": "EURUSD",
            "timeframe": "H1",
            "time": pd.DatetimeIndex(raw.index).tz_localize("UTC"),
            "open": raw["Open"].to_numpy(),
            "high": raw["High"].to_numpy(),
            "low": raw["Low"].to_numpy(),
            "close": raw["Close"].to_numpy(),
            "tick_volume": raw["Volume"].to_numpy(),
            "spread": 0,
            "real_volume": 0,
        }
    )


def _count(url: str) -> int:
    with connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM market_data").fetchone()
    return int(row[0]) if row else 0


def test_loading_the_same_bars_twice_leaves_the_same_rows(
    clean_db: str, eurusd_h1: pd.DataFrame
) -> None:
    assert load_bars(clean_db, eurusd_h1) == 5000
    assert load_bars(clean_db, eurusd_h1) == 0
    assert _count(clean_db) == 5000

    stored = read_bars(clean_db, "EURUSD", "H1")
    assert stored["time"].iloc[0] == pd.Timestamp("2017-04-19 09:00", tz="UTC")
    assert stored.iloc[0][["open", "high", "low", "close", "tick_volume"]].tolist() == [
        1.0716,
        1.0722,
        1.07083,
        1.07219,
        1413,
    ]
    assert stored["close"].tolist() == eurusd_h1["close"].tolist()


def test_a_corrected_bar_is_updated_in_place(clean_db: str, eurusd_h1: pd.DataFrame) -> None:
    load_bars(clean_db, eurusd_h1)
    fixed = eurusd_h1.copy()
    fixed.loc[10, "close"] = 1.5
    assert load_bars(clean_db, fixed) == 0
    assert _count(clean_db) == 5000
    assert read_bars(clean_db, "EURUSD", "H1")["close"].iloc[10] == 1.5


def test_overlapping_loads_insert_only_new_bars(clean_db: str, eurusd_h1: pd.DataFrame) -> None:
    assert load_bars(clean_db, eurusd_h1.iloc[:3000]) == 3000
    assert load_bars(clean_db, eurusd_h1.iloc[2000:]) == 2000
    assert _count(clean_db) == 5000


def test_duplicate_bars_in_one_frame_keep_the_last(clean_db: str, eurusd_h1: pd.DataFrame) -> None:
    head = eurusd_h1.iloc[:3].copy()
    again = head.iloc[[1]].assign(close=9.0)
    assert load_bars(clean_db, pd.concat([head, again], ignore_index=True)) == 3
    assert read_bars(clean_db, "EURUSD", "H1")["close"].tolist()[1] == 9.0


def test_naive_times_are_refused_with_a_reason(clean_db: str, eurusd_h1: pd.DataFrame) -> None:
    naive = eurusd_h1.iloc[:5].assign(time=eurusd_h1["time"].iloc[:5].dt.tz_localize(None))
    with pytest.raises(DataValidationError, match="timezone-aware") as info:
        load_bars(clean_db, naive)
    assert info.value.counts == {"naive_time": 5}
    assert _count(clean_db) == 0


def test_unknown_timeframe_is_refused(clean_db: str, eurusd_h1: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="unknown timeframe"):
        load_bars(clean_db, eurusd_h1.iloc[:5].assign(timeframe="H2"))


def test_binary_copy_carries_every_field_of_mixed_series(clean_db: str) -> None:
    times = pd.to_datetime(["2024-01-02 00:00:00", "2024-01-02 00:01:00"], utc=True)
    frame = pd.DataFrame(
        {
            "symbol": ["EURUSD", "XAUUSD.m"],
            "timeframe": ["M1", "H1"],
            "time": times,
            "open": [1.10001, 2050.12],
            "high": [1.10011, 2051.5],
            "low": [1.09991, 2049.0],
            "close": [1.10005, 2050.99],
            "tick_volume": [12, 2**40],
            "spread": [7, 35],
            "real_volume": [0, 5],
        }
    )
    assert load_bars(clean_db, frame) == 2
    gold = read_bars(clean_db, "XAUUSD.m", "H1")
    assert gold.iloc[0].tolist() == [
        "XAUUSD.m",
        "H1",
        pd.Timestamp("2024-01-02 00:01", tz="UTC"),
        2050.12,
        2051.5,
        2049.0,
        2050.99,
        2**40,
        35,
        5,
    ]
    assert read_bars(clean_db, "EURUSD", "M1")["close"].tolist() == [1.10005]
