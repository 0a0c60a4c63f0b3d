"""``chaintrade`` command line: the demo and the platform's batch steps."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from chaintrade.cli_data import data_app
from chaintrade.cli_monitor import monitor_app
from chaintrade.settings import PROJECT_ROOT, Settings, get_settings

app = typer.Typer(help="Chaintrade: an ML trading platform for MetaTrader 5.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(monitor_app)
console = Console()


@app.callback()
def _main() -> None:
    """Chaintrade: an ML trading platform for MetaTrader 5."""


def run_demo_dag(settings: Settings, conf: dict[str, Any]) -> tuple[str, dict[str, float]]:
    """``dag.test()`` of the demo DAG in this process; returns its state and task durations."""
    from chaintrade.orchestration import airflow_env

    os.environ.update(airflow_env(settings))
    os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    # Library deprecation chatter (ibis, SQLAlchemy, …) buries the demo's own output.
    os.environ.setdefault("PYTHONWARNINGS", "ignore::DeprecationWarning")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(Path(sys.executable).parent / "airflow"), "db", "migrate"],
        check=True,
        stdout=subprocess.DEVNULL,
        env=os.environ,
    )
    sys.path.insert(0, str(PROJECT_ROOT / "dags"))
    from chaintrade_demo import chaintrade_demo

    dag = chaintrade_demo()
    run = dag.test(run_conf=conf)
    durations = {}
    for ti in run.get_task_instances():
        durations[ti.task_id] = float(ti.duration or 0.0)
    return str(run.state), durations


@app.command()
def demo(
    max_bars: Annotated[int | None, typer.Option(help="Use only the last N real bars.")] = None,
    holdout_bars: Annotated[int, typer.Option(help="Bars per symbol replayed live.")] = 300,
    buy_threshold: Annotated[
        float | None,
        typer.Option(help="|strength| that opens a trade; default: the model's top decile."),
    ] = None,
    close_band: Annotated[
        float | None,
        typer.Option(help="|strength| below which trades close; default: the model's median."),
    ] = None,
) -> None:
    """Run the whole platform once, end to end, on one machine (about 5 minutes)."""
    from chaintrade.db import database_url

    started = time.perf_counter()
    settings = get_settings()
    with database_url(settings) as url:
        os.environ["CHAINTRADE_DB_URL"] = url
        get_settings.cache_clear()
        settings = get_settings()
        conf = {
            "holdout_bars": holdout_bars,
            "max_bars": max_bars,
            "buy_threshold": buy_threshold,
            "close_band": close_band,
        }
        console.print(
            f"[bold]Chaintrade demo[/] — state in {settings.home}, database {_redact(url)}"
        )
        state, durations = run_demo_dag(settings, conf)
        summary_path = settings.home / "demo" / "summary.json"
        if state != "success" or not summary_path.exists():
            console.print(f"[red]The demo DAG ended in state {state}.[/] See the task logs above.")
            raise typer.Exit(1)
        print_summary(json.loads(summary_path.read_text()), durations)
    console.print(
        f"Total {time.perf_counter() - started:.0f} s. Every process started was stopped."
    )


models_app = typer.Typer(help="The model registry (MLflow).", no_args_is_help=True)
app.add_typer(models_app, name="models")


@app.command()
def train(
    cutoff: Annotated[
        datetime | None, typer.Option(help="Train on labels known before this (UTC); default: all.")
    ] = None,
    timeframe: Annotated[str, typer.Option()] = "H1",
    horizon_bars: Annotated[int, typer.Option(help="Label horizon in bars.")] = 1,
) -> None:
    """Train an ensemble from the offline store, register it, and run the promotion gate."""
    from chaintrade.training import TrainConfig, train_and_register

    settings = get_settings()
    when = pd.Timestamp(cutoff or datetime.now(UTC))
    when = when.tz_localize("UTC") if when.tzinfo is None else when
    with console.status("training (Feast point-in-time set → XGBoost members → MLflow)"):
        result = train_and_register(
            settings,
            cutoff=when.to_pydatetime(),
            config=TrainConfig(timeframe=timeframe, horizon_bars=horizon_bars),
        )
    verdict = "[green]promoted to champion[/]" if result.promoted else "[yellow]not promoted[/]"
    console.print(
        f"{result.model_name} v{result.model_version}: test AUC {result.metrics['auc']:.3f}, "
        f"{verdict} — {result.gate_reason}"
    )


@models_app.command("compare")
def models_compare() -> None:
    """Every registered version: aliases, test metrics and the gate's decision."""
    from chaintrade.registry import compare

    settings = get_settings()
    table = Table(title=f"{settings.model_name} at {settings.mlflow_uri}")
    frame = compare(settings)
    for column in ("version", "aliases", "test_auc", "test_sharpe", "confidence", "gate", "reason"):
        table.add_column(column, overflow="fold")
    for row in frame.to_dict("records"):
        table.add_row(
            str(row["version"]),
            str(row["aliases"]),
            f"{row['test_auc']:.4f}",
            f"{row['test_sharpe']:.2f}",
            f"{row['confidence']:.3f}",
            str(row["gate"]),
            str(row["reason"]),
        )
    console.print(table)


def _redact(url: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password:
        return url.replace(parts.password, "***")
    return url


def print_summary(summary: dict[str, Any], durations: dict[str, float]) -> None:
    steps = Table(title="Steps (Airflow task durations)")
    steps.add_column("task")
    steps.add_column("seconds", justify="right")
    for task_id, seconds in durations.items():
        steps.add_row(task_id, f"{seconds:.1f}")
    console.print(steps)
    ingest, model, replay = summary["ingest"], summary["model"], summary["replay"]
    table = Table(title="Demo summary")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("bars ingested (rejected)", f"{ingest['bars']} ({ingest['rejected']})")
    table.add_row("symbols", ", ".join(ingest["symbols"]))
    alias = "@champion" if model["promoted"] else "@challenger (champion kept)"
    table.add_row("model trained", f"{model['model_name']} v{model['model_version']} {alias}")
    table.add_row("test AUC (ensemble)", f"{model['metrics']['auc']:.3f}")
    table.add_row("promotion gate", "promoted" if model["promoted"] else "refused")
    table.add_row("bars replayed", str(replay["bars"]))
    table.add_row(
        "demo thresholds |strength| (open / close)",
        f"{replay['buy_threshold']:.4f} / {replay['close_band']:.4f}",
    )
    table.add_row("orders sent / filled", f"{replay['orders_sent']} / {replay['orders_filled']}")
    table.add_row("realized PnL", f"{replay['realized_pnl']:.2f}")
    table.add_row(
        "chains written (this run / in table)",
        f"{summary['chains_this_run']} / {summary['chains_in_db']}",
    )
    table.add_row(
        "prediction call p50 / p99",
        f"{replay['latency_p50_ms']:.2f} / {replay['latency_p99_ms']:.2f} ms",
    )
    console.print(table)
    for name, where in summary["artifacts"].items():
        console.print(f"[bold]{name}[/]: {where}")


if __name__ == "__main__":
    app()
