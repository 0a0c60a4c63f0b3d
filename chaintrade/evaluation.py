"""Honest evaluation: classification metrics, a cost-aware backtest of the seed decision rule,
baselines and bootstrap confidence intervals. Pure numpy/pandas."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

BARS_PER_YEAR = {"M1": 260 * 1440, "M5": 260 * 288, "M15": 260 * 96, "H1": 260 * 24}


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """AUC, log loss, accuracy, precision, recall and Brier score of P(up) against labels."""
    from sklearn.metrics import (
        accuracy_score,
        brier_score_loss,
        log_loss,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    y = np.asarray(y).astype(int)
    predicted = (np.asarray(proba) > 0.5).astype(int)
    return {
        "auc": float(roc_auc_score(y, proba)) if len(np.unique(y)) > 1 else 0.5,
        "log_loss": float(log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, zero_division=0)),
        "recall": float(recall_score(y, predicted, zero_division=0)),
        "brier": float(brier_score_loss(y, proba)),
    }


@dataclass(frozen=True)
class Costs:
    """Trading costs in basis points of price, paid on every unit of position change."""

    spread_bps: float = 1.0
    commission_bps: float = 0.4
    slippage_bps: float = 0.2

    @property
    def per_unit(self) -> float:
        # entering or leaving pays half the spread, the commission and the slippage
        return (self.spread_bps / 2 + self.commission_bps + self.slippage_bps) * 1e-4


@dataclass(frozen=True)
class Rule:
    """The seed decision rule on strength = 2·P(up) − 1."""

    buy: float = 0.7
    sell: float = -0.7
    close_band: float = 0.3


def positions_from_strength(strength: np.ndarray, rule: Rule) -> np.ndarray:
    """Position held after each bar: +1 BUY, −1 SELL, 0 after a CLOSE, else unchanged."""
    positions = np.zeros(len(strength))
    current = 0.0
    for i, s in enumerate(strength):
        if s > rule.buy:
            current = 1.0
        elif s < rule.sell:
            current = -1.0
        elif abs(s) < rule.close_band:
            current = 0.0
        positions[i] = current
    return positions


@dataclass(frozen=True, slots=True)
class Trade:
    """One round trip of a backtest: consecutive bars holding the same non-zero position."""

    symbol: str
    side: int  # +1 long, -1 short
    entry_time: Any  # the decision bar that opened it (a value of the ``times`` given)
    exit_time: Any | None  # the decision bar that closed or reversed it; None: open at the end
    log_return: float  # net of costs, summed over the bars it was held

    @property
    def closed(self) -> bool:
        return self.exit_time is not None


@dataclass(frozen=True)
class BacktestResult:
    """Per-bar net returns of a strategy, its round trips and its summary statistics."""

    returns: np.ndarray
    positions: np.ndarray
    stats: dict[str, float]
    trades: tuple[Trade, ...] = ()

    @property
    def equity(self) -> np.ndarray:
        return np.cumsum(self.returns)


def round_trips(positions: np.ndarray) -> list[tuple[int, int, float]]:
    """``(first bar, bar after the last, side)`` of each run of one non-zero position; a trade
    still open at the end runs to ``len(positions)``."""
    trips: list[tuple[int, int, float]] = []
    start, current = 0, 0.0
    for i, p in enumerate(np.asarray(positions, dtype=np.float64)):
        if p != current:
            if current != 0:
                trips.append((start, i, current))
            start, current = i, float(p)
    if current != 0:
        trips.append((start, len(positions), current))
    return trips


def backtest(
    positions: np.ndarray,
    bar_returns: np.ndarray,
    *,
    costs: Costs,
    bars_per_year: int,
    symbol: str = "",
    times: np.ndarray | None = None,
) -> BacktestResult:
    """The position held after bar t earns ``bar_returns[t]``, net of costs on every change.

    Conventions: ``positions`` are units (+1 long, -1 short, 0 flat, a reversal is one change of
    2); returns are log returns; costs are basis points of price per unit changed; a NaN return
    (the next bar does not exist yet) earns 0. With the labels' ``next_open_return``
    (:func:`chaintrade.labels.next_open_returns`) a position is filled at the next bar's open,
    as the agent trades; :func:`strategy_backtest` is the one backtest of training and paper
    parity. ``times`` (default: bar numbers) name the trades' decision bars."""
    positions = np.asarray(positions, dtype=np.float64)
    earned = np.nan_to_num(np.asarray(bar_returns, dtype=np.float64), nan=0.0)
    changes = np.abs(np.diff(np.concatenate([[0.0], positions])))
    net = positions * earned - changes * costs.per_unit
    when = np.arange(len(positions)) if times is None else np.asarray(times)
    trades = tuple(
        Trade(
            symbol,
            int(side),
            when[a],
            when[b] if b < len(positions) else None,
            float(np.sum(net[a:b])),
        )
        for a, b, side in round_trips(positions)
    )
    stats = strategy_stats(net, positions, changes, bars_per_year, trades)
    return BacktestResult(net, positions, stats, trades)


def strategy_stats(
    net: np.ndarray,
    positions: np.ndarray,
    changes: np.ndarray,
    bars_per_year: int,
    trades: tuple[Trade, ...],
) -> dict[str, float]:
    equity = np.cumsum(net)
    drawdown = equity - np.maximum.accumulate(np.concatenate([[0.0], equity]))[1:]
    downside = net[net < 0]
    gains, losses = net[net > 0].sum(), -net[net < 0].sum()
    pnls = np.array([t.log_return for t in trades])
    down_std = np.sqrt(np.mean(downside**2)) if len(downside) else 0.0
    return {
        "total_return": float(equity[-1]) if len(equity) else 0.0,
        "sharpe": sharpe(net, bars_per_year),
        "sortino": float(net.mean() / down_std * np.sqrt(bars_per_year)) if down_std > 0 else 0.0,
        "max_drawdown": float(-drawdown.min()) if len(drawdown) else 0.0,
        "profit_factor": _ratio(gains, losses),
        "hit_rate": float(np.mean(pnls > 0)) if len(pnls) else 0.0,
        "trades": float(len(pnls)),
        "turnover": float(changes.mean()) if len(changes) else 0.0,
        "exposure": float(np.mean(positions != 0)) if len(positions) else 0.0,
    }


def _ratio(gains: float, losses: float) -> float:
    if losses > 0:
        return float(gains / losses)
    return float("inf") if gains > 0 else 0.0


def _by_symbol(symbols: np.ndarray, times: np.ndarray) -> Iterator[tuple[str, np.ndarray]]:
    """Each symbol with the indices of its rows in time order."""
    for symbol in pd.unique(symbols):
        idx = np.flatnonzero(symbols == symbol)
        yield str(symbol), idx[np.argsort(times[idx], kind="stable")]


def portfolio_backtest(
    positions: np.ndarray,
    bar_returns: np.ndarray,
    symbols: np.ndarray,
    times: np.ndarray,
    *,
    costs: Costs,
    bars_per_year: int,
) -> BacktestResult:
    """Backtest each symbol on its own bars, then hold them equally weighted in time; the
    trades are every symbol's round trips."""
    symbols, times = np.asarray(symbols), np.asarray(times)
    positions, bar_returns = np.asarray(positions), np.asarray(bar_returns)
    frames = []
    trades: list[Trade] = []
    for symbol, idx in _by_symbol(symbols, times):
        pos = positions[idx]
        result = backtest(
            pos,
            bar_returns[idx],
            costs=costs,
            bars_per_year=bars_per_year,
            symbol=symbol,
            times=times[idx],
        )
        changes = np.abs(np.diff(np.concatenate([[0.0], pos])))
        frames.append(
            pd.DataFrame(
                {"t": times[idx], "net": result.returns, "pos": pos, "chg": changes}
            ).assign(symbol=symbol)
        )
        trades.extend(result.trades)
    table = pd.concat(frames).pivot_table(index="t", columns="symbol", values=["net", "pos", "chg"])
    table = table.fillna(0.0)
    net = table["net"].to_numpy().mean(axis=1)
    exposure = np.abs(table["pos"].to_numpy()).mean(axis=1)
    changes = table["chg"].to_numpy().mean(axis=1)
    stats = strategy_stats(net, exposure, changes, bars_per_year, tuple(trades))
    return BacktestResult(net, exposure, stats, tuple(trades))


def rule_positions(
    strength: np.ndarray, symbols: np.ndarray, times: np.ndarray, rule: Rule
) -> np.ndarray:
    """The seed rule's position after each row, its state kept per symbol in time order; a NaN
    strength (no prediction) holds."""
    strength, symbols, times = np.asarray(strength), np.asarray(symbols), np.asarray(times)
    positions = np.zeros(len(strength))
    for _, idx in _by_symbol(symbols, times):
        positions[idx] = positions_from_strength(strength[idx], rule)
    return positions


def strategy_backtest(
    strength: np.ndarray,
    bar_returns: np.ndarray,
    symbols: np.ndarray,
    times: np.ndarray,
    *,
    costs: Costs,
    rule: Rule,
    bars_per_year: int,
) -> BacktestResult:
    """The signal backtest of training, the promotion gate and paper parity: the seed rule on
    ``strength`` (= 2·P(up) − 1) per symbol, each position earning ``bar_returns`` — the
    labels' ``next_open_return``, a fill at the next bar's open as the agent gets — net of
    ``costs``."""
    positions = rule_positions(strength, symbols, times, rule)
    return portfolio_backtest(
        positions, bar_returns, symbols, times, costs=costs, bars_per_year=bars_per_year
    )


def random_positions(n: int, change_rate: float, rng: np.random.Generator) -> np.ndarray:
    """Random long/flat/short positions changing as often as the strategy's."""
    out = np.zeros(n)
    current = 0.0
    for i in range(n):
        if rng.random() < change_rate:
            current = float(rng.choice([-1.0, 0.0, 1.0]))
        out[i] = current
    return out


def bootstrap_ci(
    values: np.ndarray,
    statistic: Any,
    *,
    n_resamples: int = 500,
    block: int = 24,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float]:
    """Moving-block bootstrap interval of ``statistic(values)`` (keeps serial correlation)."""
    values = np.asarray(values, dtype=np.float64)
    n = len(values)
    if n < 2 * block:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    starts_per_sample = int(np.ceil(n / block))
    stats = np.empty(n_resamples)
    offsets = np.arange(block)
    for k in range(n_resamples):
        starts = rng.integers(0, n - block + 1, size=starts_per_sample)
        sample = values[(starts[:, None] + offsets).ravel()[:n]]
        stats[k] = statistic(sample)
    lo, hi = np.quantile(stats, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def sharpe(values: np.ndarray, bars_per_year: int) -> float:
    """Annualized mean over standard deviation of per-bar returns (0 when flat)."""
    std = values.std(ddof=1) if len(values) > 1 else 0.0
    return float(values.mean() / std * np.sqrt(bars_per_year)) if std > 0 else 0.0


@dataclass(frozen=True)
class Evaluation:
    """Everything measured on one out-of-sample window."""

    classification: dict[str, float]
    strategy: dict[str, float]
    sharpe_ci: tuple[float, float]
    baselines: dict[str, dict[str, float]]

    def flat_metrics(self, prefix: str) -> dict[str, float]:
        """Finite metrics named for MLflow, e.g. ``test_auc``, ``test_bt_sharpe``."""
        out = {f"{prefix}_{k}": v for k, v in self.classification.items()}
        out |= {f"{prefix}_bt_{k}": v for k, v in self.strategy.items()}
        out[f"{prefix}_bt_sharpe_ci_low"], out[f"{prefix}_bt_sharpe_ci_high"] = self.sharpe_ci
        for name, stats in self.baselines.items():
            out[f"{prefix}_baseline_{name}_sharpe"] = stats["sharpe"]
        return {k: float(v) for k, v in out.items() if np.isfinite(v)}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    y: np.ndarray,
    proba: np.ndarray,
    bar_returns: np.ndarray,
    symbols: np.ndarray,
    times: np.ndarray,
    *,
    timeframe: str,
    costs: Costs | None = None,
    rule: Rule | None = None,
    seed: int = 0,
) -> tuple[Evaluation, BacktestResult]:
    """Classification metrics and the cost-aware backtest of the decision rule
    (:func:`strategy_backtest`) beside the flat, buy-and-hold and random baselines, on one
    out-of-sample window."""
    costs = costs or Costs()
    rule = rule or Rule()
    per_year = BARS_PER_YEAR.get(timeframe, 260 * 24)
    symbols, times = np.asarray(symbols), np.asarray(times)
    strength = 2.0 * np.asarray(proba) - 1.0
    result = strategy_backtest(
        strength, bar_returns, symbols, times, costs=costs, rule=rule, bars_per_year=per_year
    )

    def run(pos: np.ndarray) -> BacktestResult:
        return portfolio_backtest(
            pos, bar_returns, symbols, times, costs=costs, bars_per_year=per_year
        )

    rng = np.random.default_rng(seed)
    change_rate = float(result.stats["turnover"])
    base = {
        "flat": run(np.zeros(len(proba))).stats,
        "buy_and_hold": run(np.ones(len(proba))).stats,
        "random": run(random_positions(len(proba), change_rate, rng)).stats,
    }
    ci = bootstrap_ci(result.returns, lambda v: sharpe(v, per_year), seed=seed)
    return Evaluation(classification_metrics(y, proba), result.stats, ci, base), result
