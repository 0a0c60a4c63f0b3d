from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaintrade.domain import BAR_FRAME_COLUMNS
from chaintrade.market_data import (
    RATES_DTYPE,
    TICKS_DTYPE,
    load_bars,
    load_mt5_bars_csv,
    load_ohlcv_csv,
    load_ticks,
    rates_frame,
    read_bars_csv,
    sniff_delimiter,
    synthetic_bars,
    synthetic_market,
    synthetic_ticks,
    ticks_frame,
    to_rates,
)
from chaintrade.validation import validate_bars

DATA = Path(__file__).resolve().parents[2] / "data" / "EURUSD_H1_2017-04_2018-02.csv"
DTYPES = {
    "symbol": "object",
    "timeframe": "object",
    "time": "datetime64[ns, UTC]",
    "open": "float64",
    "high": "float64",
    "low": "float64",
    "close": "float64",
    "tick_volume": "int64",
    "spread": "int64",
    "real_volume": "int64",
}


def assert_bar_frame(bars: pd.DataFrame) -> None:
    assert tuple(bars.columns) == BAR_FRAME_COLUMNS
    assert {c: str(t) for c, t in bars.dtypes.items()} == DTYPES
    assert bars.equals(bars.sort_values(["symbol", "time"], kind="stable").reset_index(drop=True))


# --------------------------------------------------------------------------- CSV


def test_real_eurusd_csv_loads_as_a_valid_bar_frame() -> None:
    bars = load_ohlcv_csv(DATA, symbol="EURUSD", timeframe="H1", spread_points=7)

    assert_bar_frame(bars)
    assert len(bars) == 5000
    first = bars.iloc[0]
    # 2017-04-19 09:00:00,1.0716,1.0722,1.07083,1.07219,1413 (first data line of the file)
    assert first["time"] == pd.Timestamp("2017-04-19 09:00", tz="UTC")
    assert (first["open"], first["high"], first["low"], first["close"]) == (
        1.0716,
        1.0722,
        1.07083,
        1.07219,
    )
    assert first["tick_volume"] == 1413
    assert set(bars["symbol"]) == {"EURUSD"}
    assert set(bars["timeframe"]) == {"H1"}
    assert set(bars["spread"]) == {7}
    assert set(bars["real_volume"]) == {0}
    assert validate_bars(bars).rejected == 0


def test_csv_headers_are_case_insensitive_and_local_time_becomes_utc(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "TIME,open,HIGH,Low,CLOSE,VoLuMe,Spread\n"
        "2024-07-01 10:00:00,1.1,1.2,1.0,1.15,10,12\n"
        "2024-07-01 09:00:00,1.0,1.1,0.9,1.05,5,11\n"
    )
    bars = load_ohlcv_csv(path, symbol="EURUSD", timeframe="H1", tz="Europe/Berlin")

    assert_bar_frame(bars)
    # Berlin is UTC+2 in July; rows come back sorted by time
    assert list(bars["time"]) == [
        pd.Timestamp("2024-07-01 07:00", tz="UTC"),
        pd.Timestamp("2024-07-01 08:00", tz="UTC"),
    ]
    assert list(bars["tick_volume"]) == [5, 10]
    assert list(bars["spread"]) == [11, 12]


def test_csv_without_close_and_volume_names_the_missing_columns(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("time,open,high,low\n2024-01-01 00:00:00,1,1,1\n")
    with pytest.raises(ValueError, match=r"\['close', 'volume'\]"):
        load_ohlcv_csv(path, symbol="EURUSD", timeframe="H1")


def test_unknown_timeframe_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown timeframe"):
        load_ohlcv_csv(DATA, symbol="EURUSD", timeframe="H2")


# --------------------------------------------------------------------------- synthetic


@pytest.fixture(scope="module")
def m15() -> pd.DataFrame:
    return synthetic_bars("EURUSD", timeframe="M15", start="2024-01-03 10:07", n=60_000, seed=7)


def test_synthetic_bars_are_a_valid_bar_frame(m15: pd.DataFrame) -> None:
    assert_bar_frame(m15)
    assert len(m15) == 60_000
    assert validate_bars(m15).rejected == 0
    assert (m15["low"] > 0).all()
    assert (m15["high"] >= m15[["open", "close"]].max(axis=1)).all()
    assert (m15["low"] <= m15[["open", "close"]].min(axis=1)).all()
    assert (m15["spread"] > 0).all() and (m15["tick_volume"] >= 0).all()


def test_synthetic_bars_start_on_the_grid_and_skip_weekends(m15: pd.DataFrame) -> None:
    # 10:07 is not on the 15-minute grid: the first bar opens at 10:15
    assert m15["time"].iloc[0] == pd.Timestamp("2024-01-03 10:15", tz="UTC")
    assert not m15["time"].dt.dayofweek.isin([5, 6]).any()
    step = m15["time"].diff().iloc[1:]
    # within the week bars are exactly 15 minutes apart; the only jumps are Fri 23:45 -> Mon 00:00
    jumps = m15.loc[step.index[step != pd.Timedelta(minutes=15)]]
    assert (step[step != pd.Timedelta(minutes=15)] == pd.Timedelta(days=2, minutes=15)).all()
    assert (jumps["time"].dt.dayofweek == 0).all()
    assert (jumps["time"].dt.hour == 0).all() and (jumps["time"].dt.minute == 0).all()
    assert len(jumps) > 100


def test_synthetic_bars_starting_on_saturday_begin_on_monday() -> None:
    bars = synthetic_bars("EURUSD", timeframe="H1", start="2024-01-06 13:00", n=3, seed=1)
    assert list(bars["time"]) == list(
        pd.date_range("2024-01-08 00:00", periods=3, freq="h", tz="UTC")
    )


def test_synthetic_bars_are_deterministic_per_seed_and_symbol() -> None:
    kw = {"timeframe": "H1", "start": "2024-01-01", "n": 500}
    a = synthetic_bars("EURUSD", seed=1, **kw)
    assert a.equals(synthetic_bars("EURUSD", seed=1, **kw))
    assert not np.allclose(a["close"], synthetic_bars("EURUSD", seed=2, **kw)["close"])
    assert not np.allclose(a["close"], synthetic_bars("GBPUSD", seed=1, **kw)["close"])


def test_synthetic_volatility_clusters_and_follows_the_session(m15: pd.DataFrame) -> None:
    same_day = m15["time"].diff() == pd.Timedelta(minutes=15)
    ret = np.log(m15["close"]).diff()[same_day]
    abs_ret = ret.abs()
    # clustering: |r| is autocorrelated while r itself is not
    assert abs_ret.autocorr(1) > 0.1  # real EURUSD H1: about 0.16
    assert abs(ret.autocorr(1)) < 0.05
    # intraday seasonality: the NY/London overlap moves far more than the late-evening lull
    hour = m15.loc[ret.index, "time"].dt.hour
    assert abs_ret[hour == 14].mean() > 1.5 * abs_ret[hour == 22].mean()  # real: about 2.4
    assert m15.loc[ret.index][hour == 14]["tick_volume"].mean() > 2.0 * (
        m15.loc[ret.index][hour == 22]["tick_volume"].mean()
    )


def test_synthetic_weekend_opens_with_a_gap(m15: pd.DataFrame) -> None:
    after_weekend = m15["time"].diff() > pd.Timedelta(days=1)
    gap = (m15["open"] - m15["close"].shift(1))[after_weekend].abs()
    within = (m15["open"] - m15["close"].shift(1))[~after_weekend].iloc[1:].abs()
    assert within.max() < 1e-9  # within the week a bar opens at the previous close
    assert (gap > 0).mean() > 0.9


def test_synthetic_million_bars_in_a_few_seconds() -> None:
    started = time.perf_counter()
    bars = synthetic_bars("EURUSD", timeframe="M1", start="2020-01-01", n=1_000_000, seed=3)
    elapsed = time.perf_counter() - started
    assert len(bars) == 1_000_000
    assert elapsed < 10.0, f"1 M synthetic bars took {elapsed:.1f} s"


# --------------------------------------------------------------------------- MT5 exports

MT5_BARS = (
    "<DATE>\t<TIME>\t<OPEN>\t<HIGH>\t<LOW>\t<CLOSE>\t<TICKVOL>\t<VOL>\t<SPREAD>\n"
    "2024.01.02\t00:00:00\t1.10374\t1.10395\t1.10351\t1.10383\t312\t7\t12\n"
    "2024.01.02\t01:00:00\t1.10383\t1.10410\t1.10370\t1.10401\t298\t0\t11\n"
    "2024.01.02\t02:00:00\t1.10401\t1.10402\t1.10300\t1.10322\t401\t0\t10\n"
)
MT5_TICKS = (
    "<DATE>\t<TIME>\t<BID>\t<ASK>\t<LAST>\t<VOLUME>\t<FLAGS>\n"
    "2024.01.02\t00:00:00.123\t1.10374\t1.10390\t\t\t6\n"
    "2024.01.02\t00:00:00.456\t1.10375\t\t\t\t2\n"
    "2024.01.02\t00:00:01.007\t\t1.10388\t\t\t4\n"
)


def test_mt5_bars_export_loads_in_the_server_time_zone(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_H1_202401020000_202401020200.csv"
    path.write_text(MT5_BARS)
    bars = load_mt5_bars_csv(path, symbol="EURUSD", tz="Europe/Athens")
    assert_bar_frame(bars)
    # Athens is UTC+2 in January: 00:00 server time is 22:00 UTC the day before
    assert bars["time"].iloc[0] == pd.Timestamp("2024-01-01 22:00", tz="UTC")
    assert bars["timeframe"].tolist() == ["H1"] * 3  # inferred from the 1-hour steps
    assert bars.iloc[0][["open", "high", "low", "close"]].tolist() == [
        1.10374,
        1.10395,
        1.10351,
        1.10383,
    ]
    assert bars["tick_volume"].tolist() == [312, 298, 401]
    assert bars["real_volume"].tolist() == [7, 0, 0]
    assert bars["spread"].tolist() == [12, 11, 10]
    assert bars.attrs == {"symbol": "EURUSD", "digits": 5, "point": 1e-5}
    # the dispatcher reads symbol and timeframe from MT5's file name
    again = load_bars(path, tz="Europe/Athens")
    assert again.equals(bars)


def test_mt5_ticks_export_carries_unchanged_prices_forward(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_ticks.csv"
    path.write_text(MT5_TICKS)
    ticks = load_ticks(path)
    assert list(ticks.columns) == [
        "symbol",
        "time_msc",
        "time",
        "bid",
        "ask",
        "last",
        "volume",
        "flags",
    ]
    assert ticks["symbol"].tolist() == ["EURUSD"] * 3
    # 2024-01-02 00:00:00 UTC = 1704153600 s
    assert ticks["time_msc"].tolist() == [1704153600123, 1704153600456, 1704153601007]
    assert ticks["bid"].tolist() == [1.10374, 1.10375, 1.10375]
    assert ticks["ask"].tolist() == [1.10390, 1.10390, 1.10388]
    assert ticks["flags"].tolist() == [6, 2, 4]
    assert ticks["time"].iloc[1] == pd.Timestamp("2024-01-02 00:00:00.456", tz="UTC")


# --------------------------------------------------------------------------- generic CSV


def test_generic_csv_detects_delimiter_day_first_dates_and_offsets(tmp_path: Path) -> None:
    semi = tmp_path / "semi.csv"
    semi.write_text(
        "Date;Open;High;Low;Close;Vol\n"
        "13/01/2024 10:00;1.1;1.2;1.0;1.15;5\n"
        "13/01/2024 10:15;1.15;1.25;1.1;1.2;6\n"
    )
    bars = read_bars_csv(semi, symbol="X")
    assert bars["time"].tolist() == [
        pd.Timestamp("2024-01-13 10:00", tz="UTC"),
        pd.Timestamp("2024-01-13 10:15", tz="UTC"),
    ]
    assert bars["timeframe"].iloc[0] == "M15"
    offsets = tmp_path / "offsets.csv"
    offsets.write_text(
        "timestamp,open,high,low,close,volume\n"
        "2024-01-02T10:00:00+02:00,1,1,1,1,1\n"
        "2024-01-02T11:00:00+02:00,1,1,1,1,1\n"
    )
    assert read_bars_csv(offsets, symbol="X")["time"].iloc[0] == pd.Timestamp(
        "2024-01-02 08:00", tz="UTC"
    )


def test_ambiguous_dates_and_delimiters_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "amb.csv"
    path.write_text("time,open,high,low,close,volume\n02/01/2024 10:00,1,1,1,1,1\n")
    with pytest.raises(ValueError, match=r"ambiguous date order.*date_format"):
        read_bars_csv(path, symbol="X", timeframe="H1")
    # told the order, it loads: 2 January
    bars = read_bars_csv(path, symbol="X", timeframe="H1", date_format="%d/%m/%Y %H:%M")
    assert bars["time"].iloc[0] == pd.Timestamp("2024-01-02 10:00", tz="UTC")
    odd = tmp_path / "odd.csv"
    odd.write_text("a,b;c\n1,2;3\n")
    with pytest.raises(ValueError, match="ambiguous delimiter"):
        sniff_delimiter(odd)


# --------------------------------------------------------------------------- numpy and Parquet


def test_mt5_rates_and_ticks_arrays_become_frames() -> None:
    from live_agent.mt5_types import RATES_DTYPE as AGENT_RATES

    assert RATES_DTYPE == AGENT_RATES
    rates = np.zeros(2, dtype=RATES_DTYPE)
    rates["time"] = [1704153600, 1704157200]
    rates["open"], rates["high"], rates["low"], rates["close"] = 1.1, 1.2, 1.0, 1.15
    rates["tick_volume"], rates["spread"], rates["real_volume"] = [3, 4], 9, 0
    bars = rates_frame(rates, symbol="EURUSD", timeframe="H1")
    assert_bar_frame(bars)
    assert bars["time"].tolist() == [
        pd.Timestamp("2024-01-02 00:00", tz="UTC"),
        pd.Timestamp("2024-01-02 01:00", tz="UTC"),
    ]
    assert bars.attrs["digits"] == 2
    back = to_rates(bars)
    assert back.tolist() == rates.tolist()

    ticks = np.zeros(2, dtype=TICKS_DTYPE)
    ticks["time_msc"] = [1704153600123, 1704153600100]  # out of order: kept as given
    ticks["bid"], ticks["ask"], ticks["flags"] = [1.1, 1.2], [1.3, 1.4], 6
    frame = ticks_frame(ticks, symbol="EURUSD")
    assert frame["time_msc"].tolist() == [1704153600123, 1704153600100]
    assert frame["ask"].tolist() == [1.3, 1.4]


def test_parquet_bars_round_trip(tmp_path: Path) -> None:
    bars = synthetic_bars("EURUSD", timeframe="M5", start="2024-01-02", n=50, seed=1)
    bars.to_parquet(tmp_path / "b.parquet")
    loaded = load_bars(tmp_path / "b.parquet")
    assert_bar_frame(loaded)
    pd.testing.assert_frame_equal(loaded, bars)
    naive = bars.drop(columns=["symbol", "timeframe"]).assign(
        time=bars["time"].dt.tz_localize(None)
    )
    naive.to_parquet(tmp_path / "n.parquet")
    pd.testing.assert_frame_equal(load_bars(tmp_path / "n.parquet", symbol="EURUSD"), bars)


# --------------------------------------------------------------------------- generator at scale


def test_synthetic_market_has_many_distinct_symbols() -> None:
    market = synthetic_market(4, timeframe="M1", n=1000, seed=9)
    assert market["symbol"].unique().tolist() == ["SYN000", "SYN001", "SYN002", "SYN003"]
    closes = market.groupby("symbol")["close"].first()
    assert closes.nunique() == 4
    assert market.equals(synthetic_market(4, timeframe="M1", n=1000, seed=9))


def test_synthetic_ticks_skip_weekends_and_keep_ask_above_bid() -> None:
    ticks = synthetic_ticks("EURUSD", start="2024-01-05 20:00", n=50_000, seed=2)
    assert not ticks["time"].dt.dayofweek.isin([5, 6]).any()
    assert (ticks["ask"] > ticks["bid"]).all()
    assert ticks["time_msc"].is_monotonic_increasing
    assert ticks["time"].iloc[0] == pd.Timestamp("2024-01-05 20:00", tz="UTC")
    assert ticks.equals(synthetic_ticks("EURUSD", start="2024-01-05 20:00", n=50_000, seed=2))
