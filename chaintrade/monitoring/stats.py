"""Small statistics of monitoring: PSI, classification and trade metrics."""

from __future__ import annotations

import math

import numpy as np


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index of ``current`` against ``reference`` (quantile bins of the
    reference; < 0.1 stable, 0.1–0.25 moderate, > 0.25 a shift)."""
    ref = np.asarray(reference, dtype=float)
    cur = np.asarray(current, dtype=float)
    ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
    if not len(ref) or not len(cur):
        return float("nan")
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant reference: compare the share equal to it
        same_ref, same_cur = 1.0, float(np.mean(cur == ref[0]))
        sa = np.array([same_ref, 1 - same_ref]) + eps
        sb = np.array([same_cur, 1 - same_cur]) + eps
        return float(np.sum((sb - sa) * np.log(sb / sa)))
    inner = edges[1:-1]
    a = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=len(edges) - 1)
    b = np.bincount(np.searchsorted(inner, cur, side="right"), minlength=len(edges) - 1)
    pa = a / a.sum() + eps
    pb = b / b.sum() + eps
    return float(np.sum((pb - pa) * np.log(pb / pa)))


def classification(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy, precision and recall of the "up" class (1) from 0/1 arrays."""
    y, p = np.asarray(y_true, dtype=int), np.asarray(y_pred, dtype=int)
    tp = int(np.sum((p == 1) & (y == 1)))
    fp = int(np.sum((p == 1) & (y == 0)))
    fn = int(np.sum((p == 0) & (y == 1)))
    n = len(y)
    return {
        "accuracy": float(np.mean(y == p)) if n else float("nan"),
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
        "predictions": float(n),
    }


def trade_metrics(pnls: np.ndarray) -> dict[str, float]:
    """Profit factor, per-trade Sharpe (mean / std), hit rate and total of closed trades."""
    x = np.asarray(pnls, dtype=float)
    if not len(x):
        return {"trades": 0.0}
    gains, losses = float(x[x > 0].sum()), float(-x[x < 0].sum())
    pf = gains / losses if losses > 0 else math.inf if gains > 0 else float("nan")
    std = float(x.std(ddof=1)) if len(x) > 1 else 0.0
    return {
        "trades": float(len(x)),
        "profit_factor": pf,
        "sharpe": float(x.mean() / std) if std > 0 else float("nan"),
        "hit_rate": float(np.mean(x > 0)),
        "pnl": float(x.sum()),
    }
