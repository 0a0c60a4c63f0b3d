"""``live-agent`` command line (also ``python -m live_agent``)."""

from __future__ import annotations

import json
import os
import tomllib
from datetime import datetime
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from chaintrade.errors import ConfigError
from chaintrade.lake import read_bars
from chaintrade.settings import get_settings
from live_agent.agent import Agent, ReplaySummary, summarize
from live_agent.settings import AgentSettings
from live_agent.simulator import Mt5Simulator
from live_agent.terminals import TERMINAL_KINDS, load_terminal

app = typer.Typer(help="The Chaintrade live agent for MetaTrader 5.", no_args_is_help=True)


@app.callback()
def _main() -> None:
    """The Chaintrade live agent for MetaTrader 5."""


def lake_bars(lake_dir: Path, symbols: list[str], timeframe: str, start: datetime) -> pd.DataFrame:
    """Bars of ``symbols`` from the raw lake: the last bar before ``start`` and all after it."""
    bars = read_bars(lake_dir, symbols=symbols, timeframe=timeframe)
    missing = sorted(set(symbols) - set(bars["symbol"]))
    if missing:
        raise ConfigError(f"no {timeframe} bars for {missing} in {lake_dir}; run the ingest first")
    when = pd.Timestamp(start)
    before = bars[bars["time"] < when].groupby("symbol").tail(1)
    return pd.concat([before, bars[bars["time"] >= when]], ignore_index=True)


def summary_dict(summary: ReplaySummary, written: int) -> dict[str, object]:
    latencies = np.asarray(summary.prediction_latencies_ms, dtype=float)
    return {
        "bars": summary.bars,
        "orders_sent": summary.orders_sent,
        "orders_filled": summary.orders_filled,
        "rejects": summary.rejects,
        "realized_pnl": summary.realized_pnl,
        "predictions": int(latencies.size),
        "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
        "chain_events_written": written,
    }


@app.command()
def replay(
    start: Annotated[datetime, typer.Option(help="First bar (UTC) to replay.")],
    symbol: Annotated[list[str], typer.Option(help="Symbols to trade (repeat).")],
    serving_url: Annotated[str | None, typer.Option(help="Serving base URL.")] = None,
    timeframe: Annotated[str, typer.Option()] = "H1",
    out: Annotated[Path | None, typer.Option(help="Write the summary JSON here.")] = None,
) -> None:
    """Paper-trade recorded bars through the simulator, the real serving and the chain store."""
    from chaintrade.chain_store import ChainWriter

    settings = get_settings()
    if not settings.db_url:
        raise ConfigError("set CHAINTRADE_DB_URL: chain events go to PostgreSQL/TimescaleDB")
    overrides = {"serving_url": serving_url} if serving_url else {}
    agent_settings = AgentSettings(timeframe=timeframe, **overrides)  # type: ignore[arg-type]
    bars = lake_bars(settings.lake_dir, symbol, timeframe, start)
    sim = Mt5Simulator(bars, start_bar=1)
    prepare_chain_tables(settings.db_url, settings.spool_dir / "agent")
    with ChainWriter(settings.db_url, spool_dir=settings.spool_dir / "agent") as writer:
        agent = Agent.from_settings(sim, writer, agent_settings)
        agent.start()
        with _replay_progress() as shown:
            task = shown.add_task(f"replay {', '.join(symbol)}", total=sim.steps_left)
            result = agent.run_replay(
                symbol,
                n_bars=sim.steps_left,
                progress=lambda done: shown.update(task, completed=done),
            )
        writer.flush(timeout=60)
        written = writer.stats.written
    summary = summary_dict(result, written)
    typer.echo(json.dumps(summary, indent=2))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(summary, indent=2))


def prepare_chain_tables(url: str, spool_dir: Path) -> bool:
    """Create or upgrade the chain tables (idempotent migrations). The agent trades on when
    that fails (database down, no DDL rights): chain events spool until the tables exist."""
    from chaintrade.db import describe, migrate

    try:
        migrate(url)
    except Exception as exc:  # any failure here only delays the chain events
        typer.echo(
            f"warning: could not create the chain tables in {describe(url)} ({exc}); chain "
            f"events spool to {spool_dir} and are sent once chain_history exists (apply "
            "infra/migrations with chaintrade.db.migrate, or check CHAINTRADE_DB_URL)",
            err=True,
        )
        return False
    return True


def _replay_progress() -> Progress:
    """Clock steps replayed, on stderr (stdout keeps the JSON summary)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:,}/{task.total:,} bars"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
    )


def load_agent_settings(path: Path | None, **overrides: object) -> AgentSettings:
    """Settings from a TOML/JSON file (``[agent]`` table or top level), the environment
    (``CHAINTRADE_AGENT_*`` wins over the file) and explicit ``overrides`` (win over both)."""
    values: dict[str, object] = {}
    if path is not None:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
        values = dict(data.get("agent", data))
    values = {k: v for k, v in values.items() if f"CHAINTRADE_AGENT_{k.upper()}" not in os.environ}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return AgentSettings(**values)  # type: ignore[arg-type]


@app.command()
def run(
    symbol: Annotated[list[str], typer.Option(help="Symbols to trade (repeat).")],
    terminal: Annotated[str, typer.Option(help=f"One of {', '.join(TERMINAL_KINDS)}.")] = "sim",
    config: Annotated[Path | None, typer.Option(help="TOML/JSON settings file.")] = None,
    host: Annotated[str, typer.Option(help="Bridge (mt5linux) host.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Bridge (mt5linux) port.")] = 18812,
    start: Annotated[datetime | None, typer.Option(help="sim: first bar (UTC) to replay.")] = None,
    bars: Annotated[Path | None, typer.Option(help="sim: a CSV/Parquet bar file.")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve /metrics on this port.")] = None,
    poll_s: Annotated[float, typer.Option(help="Seconds between polls (live).")] = 1.0,
    max_bars: Annotated[int | None, typer.Option(help="Stop after this many chains.")] = None,
) -> None:
    """Trade on a terminal: the simulator (paper), MetaTrader5 (Windows) or an mt5linux bridge."""
    import asyncio

    from chaintrade.chain_store import ChainWriter
    from live_agent.runner import AgentMetrics, Runner, serve_metrics

    settings = get_settings()
    if not settings.db_url:
        raise ConfigError("set CHAINTRADE_DB_URL: chain events go to PostgreSQL/TimescaleDB")
    agent_settings = load_agent_settings(config)
    if agent_settings.state_dir is None:
        agent_settings = agent_settings.model_copy(
            update={"state_dir": settings.home / "agent" / terminal}
        )
    if terminal == "sim":
        frame = _read_bars(bars) if bars is not None else None
        if frame is None:
            if start is None:
                raise ConfigError("--terminal sim needs --bars or --start (bars from the lake)")
            frame = lake_bars(settings.lake_dir, symbol, agent_settings.timeframe, start)
        term = load_terminal("sim", bars=frame, start_bar=1)
    else:
        term = load_terminal(terminal, host=host, port=port)
    metrics = AgentMetrics()
    if metrics_port is not None:
        serve_metrics(metrics, metrics_port)
    prepare_chain_tables(settings.db_url, settings.spool_dir / "agent")
    with ChainWriter(settings.db_url, spool_dir=settings.spool_dir / "agent") as writer:
        agent = Agent.from_settings(term, writer, agent_settings)
        runner = Runner(agent, symbol, poll_s=poll_s, metrics=metrics, max_bars=max_bars)
        outcomes = asyncio.run(runner.run())
        writer.flush(timeout=60)
        written = writer.stats.written
    summary = summary_dict(summarize(outcomes, agent.realized_pnl()), written)
    typer.echo(json.dumps(summary, indent=2))


def _read_bars(path: Path) -> pd.DataFrame:
    frame = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    frame["time"] = pd.to_datetime(frame["time"], utc=True)
    return frame
