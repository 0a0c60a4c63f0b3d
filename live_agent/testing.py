"""Support for tests and dry runs: synthetic bars, a list sink and a scripted predictor.

``ScriptedServing`` stands where :class:`~live_agent.serving_client.ServingClient` stands (same
``predict`` signature) and answers from a script: a strength, an exception to raise (serving
down, slow or returning garbage) or a callable.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.chain import ChainContext, ChainEvent, StepTrace
from chaintrade.schemas import BarIn, Prediction

Script = float | BaseException | Callable[[BarIn], Prediction]


class ListSink:
    """An event sink that keeps every event in a list."""

    def __init__(self) -> None:
        self.events: list[ChainEvent] = []

    def emit(self, event: ChainEvent) -> None:
        self.events.append(event)

    def chains(self) -> dict[Any, list[ChainEvent]]:
        out: dict[Any, list[ChainEvent]] = {}
        for e in self.events:
            out.setdefault(e.chain_id, []).append(e)
        return out


def prediction_for(bar: BarIn, strength: float, confidence: float = 0.8) -> Prediction:
    """A valid prediction of ``strength`` for ``bar``."""
    return Prediction.model_validate(
        {
            "symbol": bar.symbol,
            "prediction": (strength + 1) / 2,
            "strength": strength,
            "confidence": confidence,
            "model_name": "scripted",
            "model_version": "0",
            "feature_timestamp": bar.time,
            "timings_ms": {"total": 0.0},
        }
    )


class ScriptedServing:
    """Answers ``predict`` from ``script`` in order; the last entry repeats."""

    def __init__(self, script: Sequence[Script]) -> None:
        if not script:
            raise ValueError("script is empty")
        self._script = list(script)
        self.calls: list[BarIn] = []

    def predict(self, bar: BarIn, chain: ChainContext, trace: StepTrace) -> Prediction:
        self.calls.append(bar)
        item = self._script.pop(0) if len(self._script) > 1 else self._script[0]
        with trace.dependency("serving", "/predict"):
            if isinstance(item, BaseException):
                raise item
            if callable(item):
                return item(bar)
            return prediction_for(bar, float(item))

    def close(self) -> None:
        pass


def synthetic_bars(
    symbols: Sequence[str] = ("EURUSD",),
    n: int = 200,
    *,
    seed: int = 7,
    start: datetime = datetime(2024, 1, 1, tzinfo=UTC),
    timeframe: str = "H1",
    spread: int = 10,
    vol: float = 0.0012,
) -> pd.DataFrame:
    """A seeded random walk of valid OHLC bars per symbol (hourly by default)."""
    rng = np.random.default_rng(seed)
    minutes = {"M1": 1, "M5": 5, "M15": 15, "M30": 30, "H1": 60, "H4": 240, "D1": 1440}[timeframe]
    frames = []
    for i, symbol in enumerate(symbols):
        base = 1.1 + 0.2 * i if "JPY" not in symbol else 150.0
        steps = rng.normal(0.0, vol * base, n)
        close = base + np.cumsum(steps)
        open_ = np.concatenate([[base], close[:-1]])
        wiggle = np.abs(rng.normal(0.0, vol * base * 0.5, (2, n)))
        digits = 3 if "JPY" in symbol else 5
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "timeframe": timeframe,
                    "time": [start + timedelta(minutes=minutes * k) for k in range(n)],
                    "open": np.round(open_, digits),
                    "high": np.round(np.maximum(open_, close) + wiggle[0], digits),
                    "low": np.round(np.minimum(open_, close) - wiggle[1], digits),
                    "close": np.round(close, digits),
                    "tick_volume": rng.integers(50, 500, n),
                    "spread": spread,
                    "real_volume": 0,
                }
            )
        )
    return pd.concat(frames, ignore_index=True)
