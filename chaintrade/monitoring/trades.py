"""Trades as the chain store recorded them: one row per bar chain (collector, prediction,
decision, execution metadata), fills paired first-in first-out into closed trades.

The agent's chains are the durable record shared by paper and live trading; positions the
broker closes by itself (SL/TP) have no closing chain and stay open here until a CLOSE.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg

_SQL = """
SELECT chain_id, service_name, "timestamp", duration_ms, metadata
FROM chain_history
WHERE service_name IN ('collector', 'prediction', 'decision', 'execution')
  AND event_type = 'complete' AND "timestamp" >= %s AND "timestamp" < %s
ORDER BY "timestamp"
"""
_OPEN = {"BUY": 1, "SELL": -1}


@dataclass(frozen=True, slots=True)
class Fill:
    at: datetime
    bar_time: datetime | None
    symbol: str
    action: str  # BUY / SELL opens, CLOSE closes
    price: float
    volume: float
    client_order_id: str
    model_name: str | None
    model_version: str | None
    strength: float | None


@dataclass(frozen=True, slots=True)
class ClosedTrade:
    symbol: str
    side: int  # 1 long, -1 short
    volume: float
    entry_price: float
    exit_price: float
    opened_at: datetime
    closed_at: datetime
    model_name: str | None
    model_version: str | None
    strength: float | None

    def pnl(self, contract_size: float) -> float:
        return (self.exit_price - self.entry_price) * self.side * self.volume * contract_size


def bar_chains(conn: psycopg.Connection[Any], since: datetime, until: datetime) -> pd.DataFrame:
    """One row per chain: time, symbol, bar_time, strength, prediction, model, action,
    prediction latency, orders (list of dicts)."""
    chains: dict[Any, dict[str, Any]] = {}
    for chain_id, service, ts, duration, meta in conn.execute(_SQL, (since, until)):
        row = chains.setdefault(chain_id, {"chain_id": chain_id, "at": ts, "orders": []})
        meta = meta or {}
        if service == "collector":
            row["symbol"] = meta.get("symbol")
            row["bar_time"] = meta.get("bar_time")
        elif service == "prediction":
            row.update(
                strength=meta.get("strength"),
                prediction=meta.get("prediction"),
                model_name=meta.get("model_name"),
                model_version=meta.get("model_version"),
                prediction_ms=duration,
            )
        elif service == "decision":
            row["action"] = meta.get("action")
        elif service == "execution":
            row["orders"] = meta.get("orders") or []
    columns = ["chain_id", "at", "symbol", "bar_time", "strength", "prediction", "model_name"]
    columns += ["model_version", "prediction_ms", "action", "orders"]
    frame = pd.DataFrame(list(chains.values()), columns=columns)
    frame["bar_time"] = frame["bar_time"].map(_bar_time).astype("datetime64[ns, UTC]")
    return frame


def _bar_time(value: Any) -> pd.Timestamp | None:
    """The collector records the bar's open time as epoch seconds (MT5) or ISO text."""
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if isinstance(value, int | float):
        return pd.Timestamp(int(value), unit="s", tz="UTC")
    return pd.Timestamp(value).tz_convert("UTC")


def fills_of(chains: pd.DataFrame) -> list[Fill]:
    out = []
    for row in chains.to_dict("records"):
        for order in row["orders"] or ():
            if not order.get("filled"):
                continue
            out.append(
                Fill(
                    at=row["at"],
                    bar_time=_opt(row["bar_time"]),
                    symbol=str(row["symbol"]),
                    action=str(row["action"]),
                    price=float(order["price"]),
                    volume=float(order["volume"]),
                    client_order_id=str(order["client_order_id"]),
                    model_name=_opt(row["model_name"], str),
                    model_version=_opt(row["model_version"], str),
                    strength=_opt(row["strength"], float),
                )
            )
    return out


def _opt(value: Any, kind: Any = None) -> Any:
    """None for missing values; timestamps as datetimes; else ``kind(value)``."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    return kind(value) if kind is not None else value


def pair_fills(fills: list[Fill]) -> tuple[list[ClosedTrade], list[Fill]]:
    """Closed trades (a CLOSE fill closes the oldest open fill of its symbol) and what is
    still open."""
    open_by_symbol: dict[str, deque[Fill]] = {}
    closed: list[ClosedTrade] = []
    for f in fills:
        if f.action in _OPEN:
            open_by_symbol.setdefault(f.symbol, deque()).append(f)
        elif f.action == "CLOSE" and open_by_symbol.get(f.symbol):
            entry = open_by_symbol[f.symbol].popleft()
            closed.append(
                ClosedTrade(
                    f.symbol,
                    _OPEN[entry.action],
                    entry.volume,
                    entry.price,
                    f.price,
                    entry.at,
                    f.at,
                    entry.model_name,
                    entry.model_version,
                    entry.strength,
                )
            )
    still_open = [f for q in open_by_symbol.values() for f in q]
    return closed, still_open


def trades_frame(closed: list[ClosedTrade], contract_size: float) -> pd.DataFrame:
    columns = ["symbol", "side", "volume", "entry_price", "exit_price", "opened_at"]
    columns += ["closed_at", "model_name", "model_version", "strength", "pnl"]
    rows = [
        (t.symbol, t.side, t.volume, t.entry_price, t.exit_price, t.opened_at, t.closed_at,
         t.model_name, t.model_version, t.strength, t.pnl(contract_size))
        for t in closed
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def equity_curve(trades: pd.DataFrame) -> pd.DataFrame:
    """Cumulative realized PnL over closed trades and its drawdown from the running peak."""
    if trades.empty:
        return pd.DataFrame({"closed_at": [], "equity": [], "drawdown": []})
    t = trades.sort_values("closed_at")
    equity = t["pnl"].cumsum().to_numpy()
    peak = pd.Series(equity).cummax().clip(lower=0.0).to_numpy()
    return pd.DataFrame(
        {"closed_at": t["closed_at"].to_numpy(), "equity": equity, "drawdown": equity - peak}
    )
