"""Server-side SVG figures (matplotlib, Agg) for the dashboard and the run report."""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.plots import _pyplot

_HEADER = re.compile(r"^.*?(<svg\b)", re.S)


def _svg(fig: Any) -> str:
    """The figure as an inline ``<svg>`` element (no XML prolog, no external references)."""
    plt = _pyplot()
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return _HEADER.sub(r"\1", buf.getvalue(), count=1)


def _empty(title: str, note: str) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 1.6))
    ax.axis("off")
    ax.set_title(title)
    ax.text(0.5, 0.4, note, ha="center", va="center", color="#666")
    return _svg(fig)


def _time_axis(ax: Any) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def equity_drawdown(equity: pd.DataFrame) -> str:
    """Cumulative realized PnL and its drawdown, over closed trades."""
    if equity.empty:
        return _empty("Equity and drawdown", "no closed trades yet")
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(8, 4), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    x = pd.to_datetime(equity["closed_at"], utc=True)
    top.plot(x, equity["equity"], color="#2563eb", lw=1.5)
    top.axhline(0, color="#999", lw=0.6)
    top.set_ylabel("realized PnL")
    top.set_title("Equity (closed trades) and drawdown")
    bottom.fill_between(x, equity["drawdown"], 0, color="#dc2626", alpha=0.4, step="post")
    bottom.set_ylabel("drawdown")
    _time_axis(bottom)
    return _svg(fig)


def step_latency(latency: dict[str, Any]) -> str:
    """p50 / p95 / p99 per chain step (ms), from :class:`Percentiles` per service."""
    if not latency:
        return _empty("Step latency", "no chains in the window")
    plt = _pyplot()
    names = sorted(latency)
    idx = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(8, 3))
    for k, (q, color) in enumerate((("p50", "#60a5fa"), ("p95", "#2563eb"), ("p99", "#1e3a8a"))):
        ax.bar(idx + (k - 1) * 0.27, [getattr(latency[n], q) for n in names], 0.27, label=q,
               color=color)  # fmt: skip
    ax.set_xticks(idx, names)
    ax.set_ylabel("ms")
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_ylim(0, max(latency[n].p99 for n in names) * 2.0 + 1.0)
    ax.set_title("Chain step latency percentiles")
    ax.legend(fontsize=8)
    return _svg(fig)


def prediction_latency(chains: pd.DataFrame) -> str:
    """Prediction step duration per chain over time."""
    data = chains.dropna(subset=["prediction_ms"]) if not chains.empty else chains
    if data.empty:
        return _empty("Prediction latency", "no predictions in the window")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.plot(pd.to_datetime(data["at"], utc=True), data["prediction_ms"], ".", ms=3, color="#7c3aed")
    ax.set_ylabel("ms")
    ax.set_title("Prediction step duration per chain")
    _time_axis(ax)
    return _svg(fig)


def strengths(chains: pd.DataFrame) -> str:
    """Histogram of prediction strengths."""
    data = chains["strength"].dropna().astype(float) if not chains.empty else pd.Series([])
    if data.empty:
        return _empty("Prediction strength", "no predictions in the window")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 2.6))
    ax.hist(data, bins=30, range=(-1, 1), color="#059669")
    ax.set_title("Prediction strength")
    return _svg(fig)
