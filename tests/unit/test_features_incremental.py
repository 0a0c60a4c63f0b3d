"""The incremental online path (``OnlineFeatures``) against the batch implementation.

The expected rows come from ``compute_features`` (the batch path Spark and training use),
never from the code under test.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chaintrade.features import (
    BASE_FEATURES,
    LOOKBACK_BARS,
    OnlineFeatures,
    compute_features,
    feature_columns,
    latest_features,
)
from chaintrade.market_data import load_ohlcv_csv

DATA = Path(__file__).resolve().parents[2] / "data" / "EURUSD_H1_2017-04_2018-02.csv"


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return load_ohlcv_csv(DATA, symbol="EURUSD", timeframe="H1")


def _raw(bars: pd.DataFrame) -> list[tuple[int, float, float, float, float, float]]:
    time_ns = bars["time"].to_numpy(dtype="datetime64[ns]").astype(np.int64).tolist()
    cols = [bars[c].to_numpy(np.float64).tolist() for c in ("high", "low", "close")]
    cols += [bars[c].to_numpy(np.float64).tolist() for c in ("tick_volume", "spread")]
    return list(zip(time_ns, *cols, strict=True))


def _step_through(online: OnlineFeatures, bars: pd.DataFrame) -> np.ndarray:
    rows = [online.update(*bar) for bar in _raw(bars)]
    assert all(r is not None for r in rows)
    return np.vstack([r for r in rows if r is not None])


def _assert_parity(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal to the batch values within the platform's parity contract (1e-9)."""
    assert got.shape == expected.shape
    assert np.isfinite(got).all()
    scale = np.maximum(np.abs(expected), 1.0)
    worst = np.abs(got - expected) / scale
    where = np.unravel_index(int(worst.argmax()), worst.shape)
    assert worst.max() <= 1e-9, f"{BASE_FEATURES[where[1]]} differs at row {where[0]}"


def test_every_incremental_row_equals_the_batch_row_on_real_bars(bars: pd.DataFrame) -> None:
    expected = compute_features(bars, "H1")[feature_columns("H1")].to_numpy()
    online = OnlineFeatures.from_bars(bars.iloc[:LOOKBACK_BARS], "H1")
    got = _step_through(online, bars.iloc[LOOKBACK_BARS:])
    _assert_parity(got, expected[LOOKBACK_BARS:])
    # Seeded at the start of the history, the same arithmetic gives the same bits.
    assert np.array_equal(got, expected[LOOKBACK_BARS:])


def test_state_seeded_mid_history_converges_to_the_full_history_batch(bars: pd.DataFrame) -> None:
    """Seeded from bars 1000..1699 only, later rows still equal the batch over all 5,000."""
    expected = compute_features(bars, "H1")[feature_columns("H1")].to_numpy()
    online = OnlineFeatures.from_bars(bars.iloc[1000 : 1000 + LOOKBACK_BARS], "H1")
    got = _step_through(online, bars.iloc[1000 + LOOKBACK_BARS :])
    _assert_parity(got, expected[1000 + LOOKBACK_BARS :])


def test_no_row_before_lookback_bars_then_the_batch_row_of_the_window(bars: pd.DataFrame) -> None:
    online = OnlineFeatures("H1")
    raw = _raw(bars.iloc[:LOOKBACK_BARS])
    assert all(online.update(*bar) is None for bar in raw[:-1])
    assert not online.ready
    row = online.update(*raw[-1])
    assert row is not None and online.ready
    window = latest_features(bars.iloc[:LOOKBACK_BARS], "H1")[feature_columns("H1")]
    assert np.array_equal(row, window.to_numpy()[0])


def test_a_bar_sent_twice_replaces_the_last_and_an_older_one_is_refused(
    bars: pd.DataFrame,
) -> None:
    online = OnlineFeatures.from_bars(bars.iloc[: LOOKBACK_BARS + 5], "H1")
    raw = _raw(bars.iloc[LOOKBACK_BARS + 5 : LOOKBACK_BARS + 7])
    first = online.update(*raw[0])
    revised = (raw[0][0], raw[0][1] + 0.001, raw[0][2], raw[0][3] + 0.0005, raw[0][4], raw[0][5])
    replaced = online.update(*revised)
    assert first is not None and replaced is not None and not np.array_equal(first, replaced)
    assert len(online.bars) == LOOKBACK_BARS
    # The replacement is what the batch gives for the revised history.
    edited = bars.iloc[6 : LOOKBACK_BARS + 6].copy()
    edited.loc[edited.index[-1], ["high", "close"]] = [revised[1], revised[3]]
    batch = latest_features(edited, "H1")[feature_columns("H1")].to_numpy()[0]
    assert np.array_equal(replaced, batch)
    # ...and the next bar continues from the revised state.
    after = online.update(*raw[1])
    assert after is not None
    edited = pd.concat([edited, bars.iloc[LOOKBACK_BARS + 6 : LOOKBACK_BARS + 7]])
    _assert_parity(
        np.atleast_2d(after),
        compute_features(edited, "H1")[feature_columns("H1")].to_numpy()[-1:],
    )
    with pytest.raises(ValueError, match="older than the last bar"):
        online.update(raw[0][0] - 1, *raw[0][1:])
    with pytest.raises(ValueError, match="non-finite"):
        online.update(raw[1][0] + 1, float("nan"), *raw[1][2:])


@st.composite
def _bar_frames(draw: st.DrawFn) -> pd.DataFrame:
    n = LOOKBACK_BARS + draw(st.integers(1, 60))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    flat = draw(st.floats(0.0, 0.6))  # share of unchanged closes (RSI/EMA edge cases)
    steps = rng.normal(0.0, draw(st.sampled_from([1e-5, 1e-3, 2e-2])), n)
    steps[rng.random(n) < flat] = 0.0
    close = 1.1 * np.exp(np.cumsum(steps))
    spread_hi = draw(st.sampled_from([1, 30]))  # 1: all-zero spreads
    volume_hi = draw(st.sampled_from([1, 5_000]))  # 1: all-zero volumes
    minutes = draw(st.sampled_from([1, 15, 60]))
    gaps = np.cumsum(rng.integers(1, 4, n))  # missing bars happen
    return pd.DataFrame(
        {
            "symbol": "TEST",
            "time": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(gaps * minutes, "min"),
            "open": close,
            "high": close * (1 + rng.uniform(0, 1e-3, n)),
            "low": close * (1 - rng.uniform(0, 1e-3, n)),
            "close": close,
            "tick_volume": rng.integers(0, volume_hi, n),
            "spread": rng.integers(0, spread_hi, n),
        }
    )


@settings(max_examples=30, deadline=None)
@given(frame=_bar_frames())
def test_incremental_rows_equal_batch_on_generated_bars(frame: pd.DataFrame) -> None:
    expected = compute_features(frame, "M1")[feature_columns("M1")].to_numpy()
    online = OnlineFeatures("M1")
    rows = [online.update(*bar) for bar in _raw(frame)]
    assert all(r is None for r in rows[: LOOKBACK_BARS - 1])
    got = np.vstack([r for r in rows[LOOKBACK_BARS - 1 :] if r is not None])
    _assert_parity(got, expected[LOOKBACK_BARS - 1 :])


def test_the_same_bar_resent_gives_the_same_row_bit_for_bit(bars: pd.DataFrame) -> None:
    """An idempotent resend (agent retry) must not move the row (the cache keys on its bits)."""
    online = OnlineFeatures.from_bars(bars.iloc[:LOOKBACK_BARS], "H1")
    raw = _raw(bars.iloc[LOOKBACK_BARS : LOOKBACK_BARS + 3])
    for bar in raw:
        first = online.update(*bar)
        again = online.update(*bar)
        assert first is not None and again is not None and first.tobytes() == again.tobytes()
