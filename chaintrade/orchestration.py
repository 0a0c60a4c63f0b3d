"""What the Airflow DAGs call: one function per task, plus their shared defaults and alerts.

The DAG files (``dags/``) stay thin: they declare schedules, assets and params and call
into this module (or submit one Spark job). Importing this module is light (standard
library and settings only), so DAG files parse fast; heavy imports happen inside functions.

Assets link the DAGs (data-aware scheduling)::

    chaintrade_ingest ──bars──▶ chaintrade_features ──features──▶ chaintrade_training
    chaintrade_feedback (periodic) ──TriggerDagRunOperator (when degraded)──▶ chaintrade_training
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from chaintrade.settings import PROJECT_ROOT, Settings, get_settings

log = logging.getLogger(__name__)

BARS_ASSET = "chaintrade://lake/bars"
FEATURES_ASSET = "chaintrade://offline/features"
TRAINING_DAG = "chaintrade_training"
SPARK_CONN_ID = "spark_default"
FEATURES_JOB = PROJECT_ROOT / "spark_jobs" / "build_features.py"
DEFAULT_SOURCE = PROJECT_ROOT / "data" / "EURUSD_H1_2017-04_2018-02.csv"


# --------------------------------------------------------------------------- defaults
def notify_failure(context: Mapping[str, Any]) -> None:
    """``on_failure_callback`` of every task: log the failure, then alert through
    :mod:`chaintrade.alerts` when that module is installed. Never raises."""
    ti = context.get("task_instance") or context.get("ti")
    exc = context.get("exception")
    where = (
        f"{getattr(ti, 'dag_id', '?')}.{getattr(ti, 'task_id', '?')} "
        f"run {getattr(ti, 'run_id', '?')} try {getattr(ti, 'try_number', '?')}"
    )
    log.error("chaintrade task failed: %s: %s", where, exc)
    try:
        from chaintrade import alerts
    except ImportError:
        return
    try:
        alerts.notify_failure(context)
    except Exception:  # an alert that cannot be sent must not hide the task's own failure
        log.exception("chaintrade.alerts.notify_failure failed for %s", where)


def default_args(
    *, retries: int = 2, execution_timeout: timedelta = timedelta(minutes=30)
) -> dict[str, Any]:
    """Retries with backoff, a timeout and the failure alert: every DAG's ``default_args``."""
    return {
        "owner": "chaintrade",
        "retries": retries,
        "retry_delay": timedelta(seconds=30),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(minutes=10),
        "execution_timeout": execution_timeout,
        "on_failure_callback": notify_failure,
    }


def airflow_env(settings: Settings, *, spark_master: str | None = None) -> dict[str, str]:
    """Environment for an Airflow whose state lives under ``var/airflow`` and whose Spark
    connection (``spark_default``) points at ``spark_master`` (default: the setting)."""
    return {
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        **spark_connection_env(spark_master or settings.spark_master),
    }


def spark_connection_env(master: str) -> dict[str, str]:
    """``AIRFLOW_CONN_SPARK_DEFAULT`` for a master URL (``local[2]``, ``spark://host:7077``)."""
    conn = {"conn_type": "spark", "host": master, "extra": {"deploy-mode": "client"}}
    return {f"AIRFLOW_CONN_{SPARK_CONN_ID.upper()}": json.dumps(conn)}


def run_standalone(settings: Settings | None = None) -> int:
    """``airflow standalone`` with every DAG visible, unpaused and runnable: state in
    ``var/airflow``, the database from the settings (else an embedded PostgreSQL, like the
    demo), the Spark connection from ``spark_master``. Blocks until Ctrl-C; stops the whole
    process group (scheduler, api-server, workers) on the way out."""
    import signal
    import subprocess
    from contextlib import suppress
    from urllib.parse import urlsplit

    from chaintrade.db import database_url

    settings = settings or get_settings()
    settings.airflow_home.mkdir(parents=True, exist_ok=True)
    port = urlsplit(settings.airflow_url).port or 8080
    with database_url(settings) as url:
        env = {
            **os.environ,
            **airflow_env(settings),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__API__PORT": str(port),
            "CHAINTRADE_HOME": str(settings.home),
            "CHAINTRADE_DB_URL": url,
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
            ),
        }
        proc = subprocess.Popen(
            [str(Path(sys.executable).parent / "airflow"), "standalone"],
            env=env,
            start_new_session=True,
        )
        try:
            return proc.wait()
        except KeyboardInterrupt:
            return 0
        finally:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)


# --------------------------------------------------------------------------- ingest
@dataclass(frozen=True)
class IngestParams:
    """What ``chaintrade_ingest`` loads (its Airflow params of the same names)."""

    source: str = str(DEFAULT_SOURCE)  # a bar file or folder: MT5 export, CSV or Parquet
    symbols: tuple[str, ...] = ()  # keep only these; empty: every symbol of the source
    synthetic_symbols: tuple[str, ...] = ("SYNTHUSD",)  # generated over the same period
    timeframe: str = "H1"
    start_date: str | None = None  # inclusive, UTC
    end_date: str | None = None  # exclusive, UTC
    max_bars: int | None = None  # only the last N bars per symbol (tiny runs)
    seed: int = 42

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> IngestParams:
        known = {k: v for k, v in (values or {}).items() if k in cls.__dataclass_fields__}
        for name in ("symbols", "synthetic_symbols"):
            if name in known:
                known[name] = tuple(known[name] or ())
        return cls(**known)


def load_source_bars(params: IngestParams) -> Any:
    """Bars of the source, cut to the symbols, dates and size asked for, plus synthetic ones."""
    import pandas as pd

    from chaintrade.errors import DataValidationError
    from chaintrade.market_data import load_bars, synthetic_bars

    path = Path(params.source)
    if not path.exists():
        raise DataValidationError(f"source {path} does not exist", counts={"missing_source": 1})
    bars = load_bars(path, timeframe=params.timeframe)
    if params.symbols:
        unknown = sorted(set(params.symbols) - set(bars["symbol"].unique()))
        if unknown:
            raise DataValidationError(
                f"symbols {unknown} are not in {path}", counts={"unknown_symbol": len(unknown)}
            )
        bars = bars[bars["symbol"].isin(params.symbols)]
    if params.start_date:
        bars = bars[bars["time"] >= pd.Timestamp(params.start_date, tz="UTC")]
    if params.end_date:
        bars = bars[bars["time"] < pd.Timestamp(params.end_date, tz="UTC")]
    if params.max_bars:
        bars = bars.groupby("symbol", group_keys=False).tail(params.max_bars)
    if bars.empty:
        raise DataValidationError(f"no bars in {path} for {params}", counts={"no_bars": 1})
    frames = [bars]
    for symbol in params.synthetic_symbols:
        frames.append(
            synthetic_bars(
                symbol,
                timeframe=params.timeframe,
                start=bars["time"].min(),
                n=int(bars.groupby("symbol").size().max()),
                seed=params.seed,
            )
        )
    return pd.concat(frames, ignore_index=True).sort_values(["symbol", "time"])


def ingest_market_data(conf: Mapping[str, Any] | None, *, run_name: str) -> dict[str, Any]:
    """Task ``ingest``: load, validate (rules + Great Expectations), write lake and database."""
    from chaintrade.chain_definitions import register_builtin_definitions
    from chaintrade.db import migrate
    from chaintrade.pipeline import ingest_bars, require_db_url

    settings = get_settings()
    params = IngestParams.from_mapping(conf)
    url = require_db_url(settings)
    migrate(url)
    register_builtin_definitions(url)
    _, result = ingest_bars(settings, load_source_bars(params), db_url=url, run_name=run_name)
    return {"params": asdict(params), **result}


# --------------------------------------------------------------------------- features
def feature_job(
    timeframes: Sequence[str], horizon_bars: int | None, settings: Settings | None = None
) -> dict[str, Any]:
    """Task ``plan_features``: arguments and environment of the feature job's spark-submit.

    The master comes from the Spark connection; the job does not override it.
    """
    settings = settings or get_settings()
    args = ["--bars", str(settings.lake_dir / "bars"), "--out", str(settings.offline_dir)]
    args += ["--timeframes", *timeframes]
    if horizon_bars is not None:
        args += ["--horizon-bars", str(int(horizon_bars))]
    from chaintrade.java import ensure_java

    ensure_java()
    python = sys.executable
    env = {
        "PATH": os.pathsep.join([str(Path(python).parent), os.environ.get("PATH", "")]),
        "PYSPARK_PYTHON": python,
        "PYSPARK_DRIVER_PYTHON": python,
        "PYTHONPATH": os.pathsep.join(
            filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])
        ),
        "CHAINTRADE_HOME": str(settings.home),
        "SPARK_LOCAL_IP": "127.0.0.1",
    }
    if os.environ.get("JAVA_HOME"):
        env["JAVA_HOME"] = os.environ["JAVA_HOME"]
    return {"args": args, "env": env}


def spark_conf() -> dict[str, str]:
    """spark-submit ``--conf`` of the feature job (executors on this interpreter)."""
    return {
        "spark.pyspark.python": sys.executable,
        "spark.pyspark.driver.python": sys.executable,
        "spark.driver.host": "127.0.0.1",
        "spark.executorEnv.PYTHONPATH": str(PROJECT_ROOT),
        "spark.log.level": "WARN",
    }


def publish_features(timeframes: Sequence[str]) -> dict[str, Any]:
    """Task ``publish_features``: ``feast apply``, then materialize every offline feature row
    of ``timeframes`` into the online store."""
    import pandas as pd

    from chaintrade import feature_store
    from chaintrade.errors import DataValidationError

    settings = get_settings()
    times = []
    for tf in timeframes:
        folder = settings.offline_dir / "bar_features" / f"timeframe={tf}"
        if not folder.is_dir():
            raise DataValidationError(f"no features for {tf} in {folder}", counts={tf: 0})
        frame = pd.read_parquet(folder, columns=["event_timestamp"])
        times.append(pd.to_datetime(frame["event_timestamp"], utc=True))
    stamps = pd.concat(times)
    if stamps.empty:
        raise DataValidationError("the feature job wrote no rows", counts={"features": 0})
    feature_store.apply(settings)
    start, end = stamps.min().to_pydatetime(), stamps.max().to_pydatetime()
    views = feature_store.materialize(settings, start, end + timedelta(seconds=1))
    return {"views": views, "rows": len(stamps), "start": start.isoformat(), "end": end.isoformat()}


# --------------------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainingParams:
    """What ``chaintrade_training`` does (its params; the feedback loop adds reason/symbols)."""

    timeframe: str = "H1"
    horizon_bars: int = 1
    cutoff: str | None = None  # train on labels known before this (UTC); None: now
    symbols: tuple[str, ...] = ()  # must be in the offline store; empty: all
    reason: str = "scheduled"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> TrainingParams:
        known = {
            k: v
            for k, v in (values or {}).items()
            if k in cls.__dataclass_fields__ and v is not None
        }
        if "symbols" in known:
            known["symbols"] = tuple(known["symbols"])
        if "horizon_bars" in known:
            known["horizon_bars"] = int(known["horizon_bars"])
        return cls(**known)


def check_training_inputs(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """Task ``check_inputs``: labels and features of the timeframe exist and hold the
    symbols asked for; fails with a reason code before any training starts."""
    import pandas as pd
    import pyarrow.parquet as pq

    from chaintrade.errors import DataValidationError
    from chaintrade.labels import NEXT_OPEN_RETURN

    settings = get_settings()
    params = TrainingParams.from_mapping(conf)
    labels_dir = settings.offline_dir / "bar_labels" / f"timeframe={params.timeframe}"
    if not labels_dir.is_dir():
        raise DataValidationError(
            f"no labels for {params.timeframe} in {labels_dir}: run chaintrade_features first",
            counts={"missing_labels": 1},
        )
    columns = pq.ParquetDataset(labels_dir).schema.names
    if NEXT_OPEN_RETURN not in columns:
        raise DataValidationError(
            f"the labels in {labels_dir} have no {NEXT_OPEN_RETURN} (built before the backtest "
            "filled at the next open): run chaintrade_features again to rebuild them",
            counts={"missing_columns": 1},
        )
    symbols = sorted(pd.read_parquet(labels_dir, columns=["symbol"])["symbol"].astype(str).unique())
    unknown = sorted(set(params.symbols) - set(symbols))
    if unknown:
        raise DataValidationError(
            f"symbols {unknown} have no labels for {params.timeframe} (known: {symbols})",
            counts={"unknown_symbol": len(unknown)},
        )
    return {**asdict(params), "available_symbols": symbols}


def train_model(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """Task ``train``: walk-forward split, fit, evaluate, register as challenger and run the
    promotion gate (:func:`chaintrade.training.train_and_register`)."""
    import pandas as pd

    from chaintrade.training import TrainConfig, train_and_register

    params = TrainingParams.from_mapping(conf)
    cutoff = pd.Timestamp(params.cutoff or datetime.now(UTC))
    cutoff = cutoff.tz_localize("UTC") if cutoff.tzinfo is None else cutoff
    result = train_and_register(
        get_settings(),
        cutoff=cutoff.to_pydatetime(),
        config=TrainConfig(
            timeframe=params.timeframe,
            horizon_bars=params.horizon_bars,
            symbols=params.symbols,
        ),
    )
    log.info(
        "trained %s v%s (%s): %s — %s",
        result.model_name,
        result.model_version,
        params.reason,
        "promoted" if result.promoted else "not promoted",
        result.gate_reason,
    )
    return {**asdict(result), "reason": params.reason, "symbols": list(params.symbols)}


# --------------------------------------------------------------------------- feedback
#: ``chaintrade_feedback`` params → the monitoring settings they override.
FEEDBACK_THRESHOLDS = {"min_predictions": "min_samples", "min_accuracy": "min_live_accuracy"}


def feedback_decision(
    db_url: str, conf: Mapping[str, Any] | None, *, until: datetime | None = None
) -> dict[str, Any]:
    """The monitoring package's live assessment (:func:`chaintrade.monitoring.feedback.assess`)
    of the last ``window_hours``, with the DAG's thresholds; nothing is stored or triggered.
    Drifted features ask for retraining only with ``retrain_on_drift`` (the DAG has no
    cool-down, unlike :func:`~chaintrade.monitoring.feedback.run_feedback`).

    Returns ``retrain``, ``reason``, ``symbols`` and ``conf`` (the training DAG's conf), plus
    the finite live metrics per model version and per symbol, and the PSI per feature."""
    from chaintrade.monitoring.feedback import assess
    from chaintrade.monitoring.settings import MonitorSettings

    values = dict(conf or {})
    thresholds = {f: values[p] for p, f in FEEDBACK_THRESHOLDS.items() if values.get(p) is not None}
    until = until or datetime.now(UTC)
    since = until - timedelta(hours=float(values.get("window_hours") or 24.0))
    a = assess(
        db_url,
        MonitorSettings(**thresholds),
        since=since,
        until=until,
        timeframe=str(values.get("timeframe") or "H1"),
        retrain_on_drift=bool(values.get("retrain_on_drift", False)),
    )

    def finite(m: Mapping[str, float]) -> dict[str, float]:
        return {k: float(v) for k, v in m.items() if math.isfinite(v)}

    return {
        "retrain": a.retrain,
        "reason": a.reason,
        "symbols": list(a.symbols),
        "conf": a.conf,
        "metrics": {f"{n} v{v}": finite(m) for (n, v), m in sorted(a.metrics.items())},
        "per_symbol": {s: finite(m) for s, m in sorted(a.per_symbol.items())},
        "drift": dict(a.drift),
    }


def assess_feedback(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """Task ``assess``: live model metrics → retrain or not (the DAG triggers training)."""
    from chaintrade.pipeline import require_db_url

    decision = feedback_decision(require_db_url(get_settings()), conf)
    log.info("feedback: retrain=%s (%s)", decision["retrain"], decision["reason"])
    return decision
