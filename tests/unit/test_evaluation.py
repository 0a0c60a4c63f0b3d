"""Evaluation math on hand-made series with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from chaintrade.ensemble import combine, confidence_from_auc
from chaintrade.evaluation import (
    Costs,
    Rule,
    backtest,
    bootstrap_ci,
    evaluate,
    positions_from_strength,
    sharpe,
    strategy_backtest,
)


def test_seed_rule_positions() -> None:
    strength = np.array([0.8, 0.5, 0.2, -0.75, -0.5, 0.1, 0.0])
    # BUY, hold, close, SELL, hold, close, stay flat
    assert positions_from_strength(strength, Rule()).tolist() == [1, 1, 0, -1, -1, 0, 0]


def test_backtest_pays_costs_on_every_change() -> None:
    costs = Costs(spread_bps=2.0, commission_bps=0.0, slippage_bps=0.0)  # 1 bp per change
    result = backtest(
        np.array([1.0, 1.0, -1.0, 0.0]),
        np.array([0.001, -0.002, -0.003, 0.004]),
        costs=costs,
        bars_per_year=100,
    )
    # +0.001 -1bp, -0.002, +0.003 -2bp (long to short), 0 -1bp (short to flat)
    np.testing.assert_allclose(result.returns, [0.0009, -0.002, 0.0028, -0.0001])
    assert result.stats["max_drawdown"] == pytest.approx(0.002)  # peak 0.0009 to -0.0011
    assert result.stats["trades"] == 2  # one long, one short round trip
    assert result.stats["hit_rate"] == pytest.approx(0.5)


def test_ensemble_formula_is_confidence_weighted_mean() -> None:
    probs = np.array([[0.9, 0.2], [0.5, 0.4]])
    np.testing.assert_allclose(combine(probs, np.array([0.6, 0.2])), [0.8, 0.25])
    assert confidence_from_auc(0.75) == pytest.approx(0.5)
    assert confidence_from_auc(0.40) == pytest.approx(0.05)  # floored, never negative


def test_bootstrap_interval_covers_the_sample_sharpe() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(0.001, 0.01, 2000)
    lo, hi = bootstrap_ci(values, lambda v: sharpe(v, 100), seed=1)
    assert lo < sharpe(values, 100) < hi


def test_baselines_beside_the_strategy() -> None:
    rng = np.random.default_rng(0)
    n = 500
    returns = rng.normal(0, 0.001, n)
    proba = np.where(returns > 0, 0.95, 0.05)  # a perfect forecaster of the next bar
    y = (returns > 0).astype(int)
    ev, _ = evaluate(
        y, proba, returns, np.array(["A"] * n), np.arange(n), timeframe="H1", costs=Costs(0, 0, 0)
    )
    assert ev.classification["auc"] == 1.0
    assert ev.strategy["sharpe"] > 10 > ev.baselines["random"]["sharpe"]
    assert ev.baselines["flat"]["total_return"] == 0.0
    assert ev.baselines["buy_and_hold"]["total_return"] == pytest.approx(returns.sum())


def test_strategy_backtest_keeps_the_rule_per_symbol_and_lists_its_trades() -> None:
    """Rows of two symbols interleaved: the rule's state and the trades stay per symbol, a NaN
    strength (no prediction) holds, a NaN return (no next bar yet) earns 0."""
    symbols = np.array(["B", "A", "B", "A", "B", "A", "A"])
    times = np.array([1, 1, 2, 2, 3, 3, 4])
    strength = np.array([-0.8, 0.9, np.nan, 0.5, 0.1, -0.9, -0.5])
    returns = np.array([0.002, 0.001, 0.003, 0.004, 0.005, -0.002, np.nan])
    result = strategy_backtest(
        strength,
        returns,
        symbols,
        times,
        costs=Costs(spread_bps=2.0, commission_bps=0.0, slippage_bps=0.0),  # 1 bp per unit
        rule=Rule(),
        bars_per_year=100,
    )
    # B: short at 1, held through the NaN strength at 2, closed at 3 (|0.1| < 0.3)
    # A: long at 1 and 2, reversed to short at 3 (2 units), still short at 4 (return unknown)
    trades = [(t.symbol, t.side, t.entry_time, t.exit_time) for t in result.trades]
    assert trades == [("B", -1, 1, 3), ("A", 1, 1, 3), ("A", -1, 3, None)]
    pnl = [t.log_return for t in result.trades]
    np.testing.assert_allclose(pnl, [-0.002 - 0.003 - 1e-4, 0.001 + 0.004 - 1e-4, 0.002 - 2e-4])
    assert result.stats["trades"] == 3
    assert result.stats["hit_rate"] == pytest.approx(2 / 3)
    assert [t.closed for t in result.trades] == [True, True, False]
