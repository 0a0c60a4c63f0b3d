"""Leakage guards and honest splits for training."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from chaintrade.errors import DataValidationError
from chaintrade.evaluation import Costs, Rule, positions_from_strength
from chaintrade.features import compute_features, feature_columns
from chaintrade.labels import direction_labels
from chaintrade.market_data import synthetic_bars
from chaintrade.training import (
    LeakageSuspected,
    TrainConfig,
    add_label_end,
    fit_ensemble,
    leak_check,
    rolling_windows,
    score,
    walk_forward_split,
)


def synthetic_training_frame(n: int = 2500, seed: int = 5) -> pd.DataFrame:
    bars = synthetic_bars("SYN", timeframe="H1", start="2024-01-01", n=n, seed=seed)
    features = compute_features(bars, "H1")
    labels = direction_labels(bars, horizon_bars=3)
    frame = features.merge(labels, on=["symbol", "time", "event_timestamp"])
    return frame[~frame["warmup"]].dropna(subset=feature_columns("H1")).reset_index(drop=True)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return synthetic_training_frame()


def test_no_training_label_window_overlaps_validation_or_test(frame: pd.DataFrame) -> None:
    config = TrainConfig(horizon_bars=3, embargo_bars=2)
    labelled = add_label_end(frame, 3, "H1")
    splits = walk_forward_split(labelled, fractions=config.fractions, embargo=config.embargo)
    assert splits.train["label_end"].max() < splits.validation["event_timestamp"].min()
    assert splits.validation["label_end"].max() < splits.test["event_timestamp"].min()
    # the embargo leaves at least two bars between the windows
    gap = splits.test["event_timestamp"].min() - splits.validation["label_end"].max()
    assert gap >= pd.Timedelta(hours=2)
    # label_end is the close of the bar three bars later (not three hours: weekends)
    row = labelled.iloc[10]
    assert row["label_end"] == labelled["event_timestamp"].iloc[13]
    total = len(splits.train) + len(splits.validation) + len(splits.test)
    assert len(labelled) - total <= 2 * (3 + 2) + 2  # only purged and embargoed rows are lost


def test_rolling_and_expanding_windows_walk_forward(frame: pd.DataFrame) -> None:
    labelled = add_label_end(frame, 3, "H1")
    for expanding in (True, False):
        windows = list(
            rolling_windows(labelled, n_windows=3, test_fraction=0.1, expanding=expanding)
        )
        assert len(windows) == 3
        starts = [test["event_timestamp"].min() for _, test in windows]
        assert starts == sorted(starts)
        for train, test in windows:
            assert train["label_end"].max() < test["event_timestamp"].min()
        sizes = [len(train) for train, _ in windows]
        assert (sizes[0] < sizes[-1]) if expanding else (max(sizes) - min(sizes) <= 5)


def test_honest_features_pass_the_leak_check(frame: pd.DataFrame) -> None:
    assert leak_check(frame, feature_columns("H1"), limit=0.65) == {}


def test_a_planted_future_leak_is_flagged_and_training_refuses(frame: pd.DataFrame) -> None:
    rng = np.random.default_rng(0)
    leaky = frame.assign(ret_1_H1=frame["forward_return"] + rng.normal(0, 2e-4, len(frame)))
    flagged = leak_check(leaky, feature_columns("H1"), limit=0.65)
    assert list(flagged) == ["ret_1_H1"] and flagged["ret_1_H1"] > 0.8
    with pytest.raises(LeakageSuspected, match="ret_1_H1"):
        fit_ensemble(leaky, TrainConfig(horizon_bars=3))


def test_the_training_backtest_fills_at_the_next_open(frame: pd.DataFrame) -> None:
    """score() earns each row's next_open_return (open of t+1 to open of t+2), not the
    close-to-close return of the bar after; a frame without the column is refused."""
    config = TrainConfig(
        horizon_bars=3, num_boost_round=20, early_stopping_rounds=5, costs=Costs(0, 0, 0)
    )
    trained = fit_ensemble(frame, config)
    test = trained.splits.test.sort_values("event_timestamp").reset_index(drop=True)
    strength = 2.0 * trained.ensemble.predict(test) - 1.0
    buy, band = np.quantile(np.abs(strength), [0.7, 0.3])
    rule = Rule(buy=float(buy), sell=-float(buy), close_band=float(band))
    _, result = score(trained.ensemble, test, replace(config, rule=rule))

    positions = positions_from_strength(strength, rule)
    assert 0 < np.abs(positions).sum() < len(positions)
    earned = test["next_open_return"].fillna(0.0).to_numpy()
    np.testing.assert_allclose(result.returns, positions * earned, rtol=0, atol=1e-15)
    close_to_close = test["ret_1_H1"].shift(-1).fillna(0.0).to_numpy()
    assert np.abs(result.returns - positions * close_to_close).max() > 1e-5
    with pytest.raises(DataValidationError, match="next_open_return"):
        fit_ensemble(frame.drop(columns="next_open_return"), config)
