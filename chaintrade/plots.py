"""Figures people would rather look at than read (matplotlib, headless)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from chaintrade.ensemble import Ensemble
from chaintrade.evaluation import BacktestResult


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def importance(ensemble: Ensemble) -> Any:
    """Total gain per feature, summed over members and weighted by their confidence."""
    plt = _pyplot()
    totals: dict[str, float] = {}
    for m in ensemble.members:
        gains = m.booster.get_score(importance_type="total_gain")
        norm = sum(gains.values()) or 1.0
        for name, gain in gains.items():
            totals[name] = totals.get(name, 0.0) + m.confidence * gain / norm
    names = sorted(totals, key=totals.__getitem__)
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(names) + 1.2))
    ax.barh(names, [totals[n] for n in names], color="#3b6ea8")
    ax.set_title("Feature importance (total gain, confidence-weighted)")
    fig.tight_layout()
    plt.close(fig)
    return fig


def calibration(y: np.ndarray, proba: np.ndarray, bins: int = 10) -> Any:
    """Observed frequency of up-moves against predicted P(up), per probability bin."""
    plt = _pyplot()
    edges = np.quantile(proba, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, proba, side="right") - 1, 0, bins - 1)
    mean_p = [proba[which == b].mean() for b in range(bins) if np.any(which == b)]
    freq = [y[which == b].mean() for b in range(bins) if np.any(which == b)]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "--", color="grey", label="perfect")
    ax.plot(mean_p, freq, "o-", label="ensemble")
    lo, hi = float(min(proba.min(), 0.4)), float(max(proba.max(), 0.6))
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("predicted P(up)")
    ax.set_ylabel("observed frequency of up")
    ax.set_title("Calibration on the test window")
    ax.legend()
    fig.tight_layout()
    plt.close(fig)
    return fig


def equity(result: BacktestResult, test: pd.DataFrame) -> Any:
    """Cumulative net log return and drawdown of the strategy over the test window."""
    plt = _pyplot()
    times = np.sort(test["event_timestamp"].unique())[: len(result.returns)]
    curve = result.equity
    drawdown = curve - np.maximum.accumulate(np.concatenate([[0.0], curve]))[1:]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 5), sharex=True, height_ratios=[3, 1])
    top.plot(times, curve * 1e4, color="#2a7d2a")
    top.set_ylabel("net return (bps)")
    top.set_title("Equity curve on the test window (after costs)")
    bottom.fill_between(times, drawdown * 1e4, 0, color="#b03a2e")
    bottom.set_ylabel("drawdown (bps)")
    fig.autofmt_xdate()
    fig.tight_layout()
    plt.close(fig)
    return fig
