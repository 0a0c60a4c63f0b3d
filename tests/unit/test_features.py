from __future__ import annotations

import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from chaintrade.features import (
    FEATURE_TIMEFRAMES,
    FEATURE_VIEWS,
    LOOKBACK_BARS,
    MAX_WARMUP_BARS,
    WARMUP_BARS,
    compute_features,
    compute_features_by_symbol,
    feature_columns,
    latest_features,
)
from chaintrade.market_data import load_ohlcv_csv, synthetic_bars

DATA = Path(__file__).resolve().parents[2] / "data" / "EURUSD_H1_2017-04_2018-02.csv"

EXPECTED_H1_COLUMNS = [
    "ret_1_H1",
    "ret_5_H1",
    "price_change_1_H1",
    "momentum_10_H1",
    "hl_range_H1",
    "hour_sin_H1",
    "hour_cos_H1",
    "session_asia_H1",
    "session_london_H1",
    "session_new_york_H1",
    "close_sma_12_H1",
    "close_sma_20_H1",
    "close_sma_26_H1",
    "close_sma_50_H1",
    "close_ema_12_H1",
    "close_ema_20_H1",
    "close_ema_26_H1",
    "close_ema_50_H1",
    "ema_ratio_12_26_H1",
    "macd_H1",
    "macd_signal_H1",
    "rsi_14_H1",
    "atr_14_H1",
    "bb_pos_20_H1",
    "volatility_20_H1",
    "volume_ratio_20_H1",
    "volume_change_H1",
    "spread_H1",
    "spread_ratio_20_H1",
    "spread_volatility_20_H1",
]


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    real = load_ohlcv_csv(DATA, symbol="EURUSD", timeframe="H1", spread_points=0)
    # the CSV has no spreads: give it a varying one so spread features are exercised
    real["spread"] = (8 + (np.arange(len(real)) * 7919) % 13).astype(np.int64)
    return real


@pytest.fixture(scope="module")
def features(bars: pd.DataFrame) -> pd.DataFrame:
    return compute_features(bars, "H1")


# --------------------------------------------------------------------------- layout


def test_feature_columns_are_named_feature_timeframe_and_grouped_in_views() -> None:
    assert feature_columns("H1") == EXPECTED_H1_COLUMNS
    assert feature_columns("M15", "volume_features") == [
        "volume_ratio_20_M15",
        "volume_change_M15",
        "spread_M15",
        "spread_ratio_20_M15",
        "spread_volatility_20_M15",
    ]
    assert set(FEATURE_VIEWS) == {"price_features", "technical_features", "volume_features"}
    assert sum(len(feature_columns("M1", v)) for v in FEATURE_VIEWS) == len(EXPECTED_H1_COLUMNS)
    assert set(WARMUP_BARS) == {c.removesuffix("_H1") for c in EXPECTED_H1_COLUMNS}
    with pytest.raises(ValueError, match="unknown feature view"):
        feature_columns("H1", "nope")
    with pytest.raises(ValueError, match="unknown timeframe"):
        feature_columns("H7")


def test_one_row_per_bar_keyed_by_bar_close(bars: pd.DataFrame, features: pd.DataFrame) -> None:
    assert list(features.columns) == [
        "symbol",
        "time",
        "event_timestamp",
        "warmup",
        *EXPECTED_H1_COLUMNS,
    ]
    assert len(features) == len(bars)
    assert str(features["time"].dtype) == "datetime64[ns, UTC]"
    assert str(features["event_timestamp"].dtype) == "datetime64[ns, UTC]"
    assert (features["time"] == bars["time"]).all()
    assert (features["event_timestamp"] == bars["time"] + pd.Timedelta(hours=1)).all()
    assert features["warmup"].dtype == bool
    # the slowest warm-up is SMA/EMA(50): bars 0..48 are flagged, none after
    assert MAX_WARMUP_BARS == 49
    assert features["warmup"].sum() == 49 and features["warmup"].iloc[:49].all()


def test_warmup_rows_are_nan_not_filled_and_match_warmup_bars(features: pd.DataFrame) -> None:
    for name, warmup in WARMUP_BARS.items():
        values = features[f"{name}_H1"]
        assert values.iloc[:warmup].isna().all(), name
        assert values.iloc[warmup:].notna().all(), name
    assert features.loc[~features["warmup"], EXPECTED_H1_COLUMNS].notna().all().all()


# --------------------------------------------------------------------------- TA-Lib parity


def _ta_reference(bars: pd.DataFrame) -> dict[str, np.ndarray]:
    c = bars["close"].to_numpy()
    h = bars["high"].to_numpy()
    low = bars["low"].to_numpy()
    v = bars["tick_volume"].to_numpy(np.float64)
    s = bars["spread"].to_numpy(np.float64)
    macd, signal, _ = talib.MACD(c, 12, 26, 9)
    upper, _, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    log_ret = np.r_[np.nan, np.diff(np.log(c))]
    return {
        "ema_ratio_12_26": talib.EMA(c, 12) / talib.EMA(c, 26) - 1.0,
        "macd": macd / c,
        "macd_signal": signal / c,
        "rsi_14": talib.RSI(c, 14),
        "atr_14": talib.ATR(h, low, c, 14) / c,
        "bb_pos_20": (c - lower) / (upper - lower),
        "close_sma_20": c / talib.SMA(c, 20) - 1.0,
        "volatility_20": talib.STDDEV(log_ret, 20, 1.0),
        "volume_ratio_20": v / talib.SMA(v, 20),
        "ret_1": log_ret,
        "ret_5": np.log(talib.ROCR(c, 5)),  # ROCR = close / close[t-5]
        "price_change_1": talib.MOM(c, 1),
        "momentum_10": talib.ROCR(c, 10) - 1.0,
        "spread_volatility_20": talib.STDDEV(s, 20, 1.0),
        **{f"close_sma_{n}": c / talib.SMA(c, n) - 1.0 for n in (12, 26, 50)},
        **{f"close_ema_{n}": c / talib.EMA(c, n) - 1.0 for n in (12, 20, 26, 50)},
    }


# Absolute tolerances on the feature scale (prices normalized by close are ~1e-3).
# bb_pos: TA-Lib's running-sum variance carries ~1e-12 of rounding; ours is window-local.
TOLERANCE = {
    "rsi_14": 1e-9,
    "bb_pos_20": 1e-10,
    "volume_ratio_20": 1e-12,
    "spread_volatility_20": 1e-9,  # points, ~10: TA-Lib's running sums again
}


@pytest.mark.parametrize(
    "name",
    [
        "ema_ratio_12_26",
        "macd",
        "macd_signal",
        "rsi_14",
        "atr_14",
        "bb_pos_20",
        "close_sma_20",
        "volatility_20",
        "volume_ratio_20",
        "ret_1",
        "ret_5",
        "price_change_1",
        "momentum_10",
        "spread_volatility_20",
        "close_sma_12",
        "close_sma_26",
        "close_sma_50",
        "close_ema_12",
        "close_ema_20",
        "close_ema_26",
        "close_ema_50",
    ],
)
def test_feature_equals_talib_from_its_first_valid_row(
    name: str, bars: pd.DataFrame, features: pd.DataFrame
) -> None:
    expected = _ta_reference(bars)[name]
    ours = features[f"{name}_H1"].to_numpy()
    # same warm-up: NaN exactly where TA-Lib has no value yet
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(expected))
    valid = ~np.isnan(expected)
    np.testing.assert_allclose(
        ours[valid], expected[valid], rtol=0, atol=TOLERANCE.get(name, 1e-13)
    )


def test_rsi_of_a_flat_market_is_zero_like_talib() -> None:
    flat = synthetic_bars("EURUSD", timeframe="H1", start="2024-01-01", n=60, seed=1)
    flat[["open", "high", "low", "close"]] = 1.1
    rsi = compute_features(flat, "H1")["rsi_14_H1"].to_numpy()
    np.testing.assert_array_equal(rsi[14:], talib.RSI(flat["close"].to_numpy(), 14)[14:])
    assert (rsi[14:] == 0.0).all()


# --------------------------------------------------------------------------- hand-computed


def _tiny_bars() -> pd.DataFrame:
    times = pd.date_range("2024-03-04 06:00", periods=3, freq="h", tz="UTC")
    return pd.DataFrame(
        {
            "symbol": "EURUSD",
            "timeframe": "H1",
            "time": times,
            "open": [1.0, 1.0, 2.0],
            "high": [1.5, 2.5, 2.0],
            "low": [0.5, 1.0, 1.0],
            "close": [1.0, 2.0, 1.0],
            "tick_volume": [0, 3, 0],
            "spread": [0, 0, 0],
            "real_volume": [0, 0, 0],
        }
    )


def test_simple_features_on_a_hand_made_series() -> None:
    f = compute_features(_tiny_bars(), "H1")

    np.testing.assert_allclose(f["ret_1_H1"].iloc[1:], [math.log(2.0), math.log(0.5)])
    np.testing.assert_allclose(f["hl_range_H1"], [1.0, 0.75, 1.0])
    # 06:00 UTC is a quarter of the day: sin = 1, cos = 0; 07:00 -> 105 degrees
    np.testing.assert_allclose(
        f["hour_sin_H1"], [1.0, math.sin(math.radians(105)), math.sin(math.radians(120))]
    )
    np.testing.assert_allclose(
        f["hour_cos_H1"], [0.0, math.cos(math.radians(105)), -0.5], atol=1e-15
    )
    # volume_change = log((v + 1) / (v_prev + 1)): 0 -> 3 -> 0
    np.testing.assert_allclose(f["volume_change_H1"].iloc[1:], [math.log(4.0), math.log(0.25)])
    np.testing.assert_array_equal(f["spread_H1"], [0.0, 0.0, 0.0])
    assert f["warmup"].all()
    assert f["ret_5_H1"].isna().all() and f["rsi_14_H1"].isna().all()


def test_zero_spreads_and_volumes_give_neutral_ratios() -> None:
    b = synthetic_bars("EURUSD", timeframe="M5", start="2024-01-01", n=40, seed=3)
    b["spread"] = 0
    b["tick_volume"] = 0
    f = compute_features(b, "M5")
    assert (f["spread_ratio_20_M5"].iloc[19:] == 1.0).all()
    assert (f["volume_ratio_20_M5"].iloc[19:] == 1.0).all()


def test_bad_input_is_refused_with_a_reason(bars: pd.DataFrame) -> None:
    two = pd.concat([bars.iloc[:50], bars.iloc[:50].assign(symbol="GBPUSD")])
    with pytest.raises(ValueError, match="ONE symbol"):
        compute_features(two, "H1")
    with pytest.raises(ValueError, match="strictly increasing"):
        compute_features(bars.iloc[:50].iloc[::-1], "H1")
    with pytest.raises(ValueError, match="timeframe"):
        compute_features(bars.iloc[:50], "M15")
    with pytest.raises(ValueError, match="missing"):
        compute_features(bars.iloc[:50].assign(close=np.nan), "H1")


# --------------------------------------------------------------------------- causality and parity


@settings(max_examples=40, deadline=None)
@given(
    t=st.integers(min_value=0, max_value=298),
    scale=st.floats(min_value=0.5, max_value=2.0),
    volume=st.integers(min_value=0, max_value=100_000),
    spread=st.integers(min_value=0, max_value=500),
)
def test_perturbing_future_bars_leaves_past_features_unchanged(
    t: int, scale: float, volume: int, spread: int
) -> None:
    bars = load_ohlcv_csv(DATA, symbol="EURUSD", timeframe="H1").iloc[:300]
    before = compute_features(bars, "H1")
    future = bars.copy()
    after_t = future.index > t
    future.loc[after_t, ["open", "high", "low", "close"]] *= scale
    future.loc[after_t, "high"] *= 1.01
    future.loc[after_t, "tick_volume"] = volume
    future.loc[after_t, "spread"] = spread
    after = compute_features(future, "H1")

    pd.testing.assert_frame_equal(after.iloc[: t + 1], before.iloc[: t + 1], check_exact=True)
    if scale != 1.0:  # the perturbation is real: features after t did move
        assert not after.iloc[t + 1 :].equals(before.iloc[t + 1 :])


def test_feature_row_at_t_ignores_bar_t_plus_one() -> None:
    """The last row of a prefix equals the row at the same bar in a longer history."""
    bars = synthetic_bars("EURUSD", timeframe="M15", start="2024-01-01", n=400, seed=11)
    full = compute_features(bars, "M15")
    for t in (0, 20, 33, 150, 398):
        prefix = compute_features(bars.iloc[: t + 1], "M15")
        pd.testing.assert_frame_equal(prefix.iloc[[-1]], full.iloc[[t]], check_exact=True)


@pytest.mark.parametrize("end", [LOOKBACK_BARS, 1234, 3000, 5000])
def test_online_window_of_lookback_bars_equals_full_history(
    end: int, bars: pd.DataFrame, features: pd.DataFrame
) -> None:
    online = latest_features(bars.iloc[:end], "H1")
    batch = features.iloc[[end - 1]].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        online[["symbol", "time", "event_timestamp"]], batch[["symbol", "time", "event_timestamp"]]
    )
    np.testing.assert_allclose(
        online[EXPECTED_H1_COLUMNS].to_numpy(float),
        batch[EXPECTED_H1_COLUMNS].to_numpy(float),
        rtol=1e-9,
        atol=1e-15,
    )


def test_a_window_much_shorter_than_lookback_does_not_reach_parity(
    bars: pd.DataFrame, features: pd.DataFrame
) -> None:
    """Shows the parity test has teeth: seeds are still visible after only 120 bars."""
    short = compute_features(bars.iloc[-120:], "H1").iloc[-1][EXPECTED_H1_COLUMNS].to_numpy(float)
    full = features.iloc[-1][EXPECTED_H1_COLUMNS].to_numpy(float)
    assert not np.allclose(short, full, rtol=1e-9, atol=1e-15)


def test_online_path_refuses_too_little_history(bars: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=str(LOOKBACK_BARS)):
        latest_features(bars.iloc[: LOOKBACK_BARS - 1], "H1")


def test_by_symbol_equals_per_symbol_computation() -> None:
    a = synthetic_bars("EURUSD", timeframe="M5", start="2024-01-01", n=200, seed=1)
    b = synthetic_bars(
        "USDJPY", timeframe="M5", start="2024-01-01", n=150, seed=1, base_price=150.0, digits=3
    )
    both = compute_features_by_symbol(pd.concat([b, a], ignore_index=True), "M5")
    expected = pd.concat([compute_features(a, "M5"), compute_features(b, "M5")], ignore_index=True)
    pd.testing.assert_frame_equal(both, expected, check_exact=True)


# --------------------------------------------------------------------------- speed and weight


def test_compute_features_on_a_million_bars_is_fast() -> None:
    bars = synthetic_bars("EURUSD", timeframe="M1", start="2020-01-01", n=1_000_000, seed=5)
    started = time.perf_counter()
    f = compute_features(bars, "M1")
    elapsed = time.perf_counter() - started
    assert len(f) == 1_000_000
    assert elapsed < 5.0, f"compute_features on 1 M bars took {elapsed:.2f} s"


def test_core_modules_import_without_heavy_dependencies() -> None:
    code = (
        "import sys\n"
        "import chaintrade.market_data, chaintrade.features\n"
        "import chaintrade.labels, chaintrade.quality\n"
        "heavy = {'talib', 'great_expectations', 'pyspark', 'scipy'} & set(sys.modules)\n"
        "print(sorted(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_empty_and_short_histories_are_all_warmup() -> None:
    bars = synthetic_bars("EURUSD", timeframe="H1", start="2024-01-01", n=10, seed=1)
    assert compute_features(bars.iloc[:0], "H1").empty
    short = compute_features(bars, "H1")
    assert short["warmup"].all() and short["rsi_14_H1"].isna().all()


# --------------------------------------------------------------------------- published references

# Wilder RSI(14) worked example published by StockCharts ("cs-rsi" spreadsheet): closes and
# the RSI from the 15th close on, rounded to 2 decimals as published.
STOCKCHARTS_CLOSES = [
    44.3389, 44.0902, 44.1497, 43.6124, 44.3278, 44.8264, 45.0955, 45.4245, 45.8433, 46.0826,
    45.8931, 46.0328, 45.6140, 46.2820, 46.2820, 46.0028, 46.0328, 46.4116, 46.2222, 45.6439,
    46.2122, 46.2521, 45.7137, 46.4515, 45.7835, 45.3548, 44.0288, 44.1783, 44.2181, 44.5672,
    43.4205, 42.6628, 43.1314,
]  # fmt: skip
STOCKCHARTS_RSI = [
    70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93, 63.26, 56.06, 62.38, 54.71, 50.42, 39.99,
    41.46, 41.87, 45.46, 37.30, 33.08, 37.77,
]  # fmt: skip


def _series_bars(closes: list[float], timeframe: str = "H1") -> pd.DataFrame:
    tf = {"M1": "1min", "M5": "5min", "M15": "15min", "H1": "h"}[timeframe]
    times = pd.date_range("2024-03-04 00:00", periods=len(closes), freq=tf, tz="UTC")
    return pd.DataFrame(
        {
            "symbol": "REF",
            "timeframe": timeframe,
            "time": times,
            "open": closes,
            "high": closes,
            "low": closes,
            "close": closes,
            "tick_volume": 1,
            "spread": 0,
            "real_volume": 0,
        }
    )


def test_rsi_equals_the_published_wilder_example() -> None:
    rsi = compute_features(_series_bars(STOCKCHARTS_CLOSES), "H1")["rsi_14_H1"].to_numpy()
    assert np.isnan(rsi[:14]).all()
    np.testing.assert_allclose(rsi[14:], STOCKCHARTS_RSI, rtol=0, atol=0.005 + 1e-9)


def test_moving_averages_of_a_linear_series_have_closed_forms() -> None:
    """On close[t] = t + 1, SMA(n) at t is t + 1 - (n - 1) / 2, and so is EMA(n) (seeded by
    the SMA, an EMA of a straight line lags it by (n - 1) / 2 exactly)."""
    closes = [float(i + 1) for i in range(120)]
    f = compute_features(_series_bars(closes), "H1")
    t = np.arange(120)
    for n in (12, 20, 26, 50):
        ma = t + 1 - (n - 1) / 2
        expected = (t + 1) / ma - 1.0
        np.testing.assert_allclose(f[f"close_sma_{n}_H1"].iloc[n - 1 :], expected[n - 1 :])
        np.testing.assert_allclose(f[f"close_ema_{n}_H1"].iloc[n - 1 :], expected[n - 1 :])
    np.testing.assert_allclose(f["momentum_10_H1"].iloc[10:], 10 / (t[10:] - 9))
    np.testing.assert_allclose(f["price_change_1_H1"].iloc[1:], 1.0)


def test_session_flags_follow_the_utc_hour_of_the_bar_open() -> None:
    f = compute_features(_series_bars([1.0] * 24), "H1")  # 00:00 .. 23:00 UTC
    hours = np.arange(24)
    np.testing.assert_array_equal(f["session_asia_H1"], (hours < 9).astype(float))
    np.testing.assert_array_equal(f["session_london_H1"], ((hours >= 7) & (hours < 16)) * 1.0)
    np.testing.assert_array_equal(f["session_new_york_H1"], ((hours >= 12) & (hours < 21)) * 1.0)


@pytest.mark.parametrize("timeframe", FEATURE_TIMEFRAMES)
def test_every_timeframe_gets_its_own_named_columns(timeframe: str) -> None:
    bars = synthetic_bars("EURUSD", timeframe=timeframe, start="2024-01-01", n=200, seed=4)
    f = compute_features(bars, timeframe)
    assert list(f.columns[4:]) == [c.replace("_H1", f"_{timeframe}") for c in EXPECTED_H1_COLUMNS]
    minutes = {"M1": 1, "M5": 5, "M15": 15, "H1": 60}[timeframe]
    assert (f["event_timestamp"] - f["time"] == pd.Timedelta(minutes=minutes)).all()
    assert f.loc[~f["warmup"], f.columns[4:]].notna().all().all()
