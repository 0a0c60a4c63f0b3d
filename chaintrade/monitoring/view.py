"""What people look at (dashboard, Telegram, run report): one read of the platform's state."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from chaintrade.db import connect
from chaintrade.monitoring import store
from chaintrade.monitoring.collect import (
    ChainStats,
    DataQuality,
    ServiceHealth,
    chain_stats,
    data_quality,
    scrape,
)
from chaintrade.monitoring.events import AlertRaised
from chaintrade.monitoring.trades import (
    Fill,
    bar_chains,
    equity_curve,
    fills_of,
    pair_fills,
    trades_frame,
)

CONTRACT_SIZE = 100_000.0  # FX standard lot: PnL in the quote currency


@dataclass(frozen=True)
class PlatformView:
    taken_at: datetime
    since: datetime
    chains: pd.DataFrame
    stats: ChainStats | None
    trades: pd.DataFrame
    open_fills: tuple[Fill, ...]
    equity: pd.DataFrame
    critical_path: dict[str, Any] | None
    alerts: tuple[AlertRaised, ...]
    live_metrics: dict[tuple[str, str], dict[str, float]]
    data: DataQuality | None
    services: tuple[ServiceHealth, ...]
    trading_state: str
    models: tuple[dict[str, Any], ...] = ()
    errors: tuple[str, ...] = field(default=())

    @property
    def realized_pnl(self) -> float:
        return float(self.trades["pnl"].sum()) if not self.trades.empty else 0.0

    @property
    def recent_orders(self) -> list[dict[str, Any]]:
        out = []
        for row in self.chains.iloc[::-1].to_dict("records"):
            for o in row["orders"] or ():
                out.append({"at": row["at"], "symbol": row["symbol"], "action": row["action"], **o})
            if len(out) >= 20:
                break
        return out[:20]


def trading_state(kill_file: Path | None, state_dir: Path | None) -> str:
    """HALTED when the kill file exists or the persisted protections say so, else ACTIVE."""
    if kill_file is not None and kill_file.exists():
        return "HALTED (kill file)"
    if state_dir is not None and (state_dir / "protections.json").exists():
        try:
            state = json.loads((state_dir / "protections.json").read_text())
        except (OSError, ValueError):
            return "UNKNOWN (protections unreadable)"
        if state.get("drawdown_halted"):
            return "HALTED (drawdown)"
        manual = state.get("manual")
        if manual:
            return f"{str(manual).upper()} ({state.get('manual_reason') or 'manual'})"
    return "ACTIVE"


def load_view(
    db_url: str,
    *,
    since: datetime | None = None,
    data_docs_dir: Path | None = None,
    quarantine_dir: Path | None = None,
    scrape_targets: dict[str, str] | None = None,
    kill_file: Path | None = None,
    state_dir: Path | None = None,
    models: tuple[dict[str, Any], ...] = (),
) -> PlatformView:
    """Read chains, trades, alerts, live metrics and data quality since ``since`` (7 days)."""
    from chaintrade.chain_query import analyze_chain

    now = datetime.now(UTC)
    since = since or now - timedelta(days=7)
    errors: list[str] = []
    services = [scrape(n, u) for n, u in (scrape_targets or {}).items()]
    with connect(db_url) as conn:
        chains = bar_chains(conn, since, now + timedelta(seconds=1))
        stats = chain_stats(conn, since, now + timedelta(seconds=1))
        critical = None
        complete = chains[chains["orders"].map(bool)] if not chains.empty else chains
        pick = complete if not complete.empty else chains
        if not pick.empty:
            try:
                critical = analyze_chain(conn, pick["chain_id"].iloc[-1]).as_dict()
            except Exception as exc:  # shown on the page, never a crash of the page
                errors.append(f"critical path: {exc}")
        data = data_quality(
            conn, data_docs_dir or Path("/nonexistent"), quarantine_dir or Path("/nonexistent")
        )
    services.append(ServiceHealth("database", True, "ok"))
    closed, still_open = pair_fills(fills_of(chains))
    trades = trades_frame(closed, CONTRACT_SIZE)
    return PlatformView(
        taken_at=now,
        since=since,
        chains=chains,
        stats=stats,
        trades=trades,
        open_fills=tuple(still_open),
        equity=equity_curve(trades),
        critical_path=critical,
        alerts=tuple(store.recent_alerts(db_url, 30)),
        live_metrics=store.latest_live_metrics(db_url),
        data=data,
        services=tuple(services),
        trading_state=trading_state(kill_file, state_dir),
        models=models,
        errors=tuple(errors),
    )


def champion_models(settings: Any) -> tuple[dict[str, Any], ...]:
    """Registered versions of the model with aliases and validation metrics (MLflow)."""
    from chaintrade.registry import _client

    uri = str(settings.mlflow_uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return ()  # no local MLflow store yet: nothing registered (and none is created here)
    client = _client(settings)
    out = []
    try:
        versions = client.search_model_versions(f"name = '{settings.model_name}'")
    except Exception as exc:  # MLflow store missing or unreachable
        return ({"error": f"MLflow: {type(exc).__name__}: {exc}"},)
    for v in sorted(versions, key=lambda v: int(v.version), reverse=True)[:5]:
        metrics: dict[str, float] = {}
        if v.run_id:
            try:
                metrics = dict(client.get_run(v.run_id).data.metrics)
            except Exception:
                metrics = {}
        out.append(
            {
                "name": v.name,
                "version": str(v.version),
                "aliases": list(client.get_model_version(v.name, v.version).aliases or []),
                "validation": {
                    k: metrics[k]
                    for k in ("valid_auc", "valid_accuracy", "valid_precision", "valid_recall")
                    if k in metrics
                },
                "status": (v.tags or {}).get("validation_status", ""),
            }
        )
    return tuple(out)


class ViewStatus:
    """The read-only Telegram commands, answered from :func:`load_view`."""

    def __init__(self, db_url: str, *, kill_file: Path | None, state_dir: Path | None) -> None:
        self.db_url, self.kill_file, self.state_dir = db_url, kill_file, state_dir

    def _view(self) -> PlatformView:
        return load_view(self.db_url, kill_file=self.kill_file, state_dir=self.state_dir)

    def status(self) -> str:
        v = self._view()
        s = v.stats
        lines = [f"Trading: {v.trading_state}"]
        if s is not None:
            last = s.last_chain_at.isoformat(timespec="seconds") if s.last_chain_at else "never"
            lines.append(f"Chains (7 d): {s.chains}, with errors {s.error_chains}; last {last}")
            pred = s.latency_ms.get("prediction")
            if pred is not None:
                lines.append(
                    f"Prediction p50/p95/p99: {pred.p50:.1f}/{pred.p95:.1f}/{pred.p99:.1f} ms"
                )
        lines += [f"Alert: {a.severity.value} {a.reason.value} · {a.subject}" for a in v.alerts[:3]]
        return "\n".join(lines)

    def positions(self) -> str:
        v = self._view()
        if not v.open_fills:
            return "No open positions."
        return "\n".join(
            f"{f.symbol} {f.action} {f.volume:g} @ {f.price:.5f} (model v{f.model_version})"
            for f in v.open_fills
        )

    def pnl(self) -> str:
        v = self._view()
        t = v.trades
        if t.empty:
            return "No closed trades yet."
        wins = int((t["pnl"] > 0).sum())
        return f"Realized PnL {v.realized_pnl:+.2f} over {len(t)} trades ({wins} won)"
