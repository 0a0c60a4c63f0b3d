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
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
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

    from chaintrade.errors import DataValidationError

    settings = get_settings()
    params = TrainingParams.from_mapping(conf)
    labels_dir = settings.offline_dir / "bar_labels" / f"timeframe={params.timeframe}"
    if not labels_dir.is_dir():
        raise DataValidationError(
            f"no labels for {params.timeframe} in {labels_dir}: run chaintrade_features first",
            counts={"missing_labels": 1},
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
@dataclass(frozen=True)
class FeedbackParams:
    """Thresholds of the feedback loop (``chaintrade_feedback`` params)."""

    window_hours: float = 24.0
    min_predictions: int = 50
    min_accuracy: float = 0.5  # live direction hit rate below this: retrain
    max_error_rate: float = 0.05  # share of chains with an error above this: unhealthy
    timeframe: str = "H1"

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> FeedbackParams:
        known = {k: v for k, v in (values or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)


@dataclass(frozen=True)
class FeedbackDecision:
    """What the feedback loop measured and whether it asks for retraining."""

    retrain: bool
    reason: str
    symbols: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    per_symbol: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        conf = {"reason": self.reason, "symbols": list(self.symbols)}
        return {**asdict(self), "symbols": list(self.symbols), "conf": conf}


_PREDICTIONS_SQL = """
SELECT c.metadata->>'symbol' AS symbol, (c.metadata->>'bar_time')::timestamptz AS bar_time,
       (p.metadata->>'strength')::double precision AS strength
FROM chain_history c JOIN chain_history p ON p.chain_id = c.chain_id
WHERE c.service_name = 'collector' AND p.service_name = 'prediction'
  AND c.event_type = 'complete' AND p.event_type = 'complete'
  AND p."timestamp" >= %(since)s AND p."timestamp" < %(until)s
  AND p.metadata ? 'strength'
"""
_HEALTH_SQL = """
SELECT count(DISTINCT chain_id) AS chains,
       count(DISTINCT chain_id) FILTER (WHERE event_type = 'error' OR error_context IS NOT NULL)
FROM chain_history WHERE "timestamp" >= %(since)s AND "timestamp" < %(until)s
"""
_CLOSES_SQL = """
SELECT symbol, time, close FROM market_data
WHERE timeframe = %(tf)s AND symbol = ANY(%(symbols)s) AND time >= %(since)s
ORDER BY symbol, time
"""


def assess_live_performance(
    db_url: str, params: FeedbackParams, *, until: datetime | None = None
) -> FeedbackDecision:
    """Live direction hit rate per symbol (each prediction's sign against the next bar's
    close in ``market_data``) and chain health (share of chains with an error), over the
    last ``window_hours``; asks for retraining of the symbols whose hit rate fell below
    ``min_accuracy`` on at least ``min_predictions`` predictions."""
    import numpy as np
    import pandas as pd

    from chaintrade.db import connect

    until = until or datetime.now(UTC)
    since = until - timedelta(hours=params.window_hours)
    window = {"since": since, "until": until}
    with connect(db_url) as conn:
        chains, failed = conn.execute(_HEALTH_SQL, window).fetchone() or (0, 0)
        preds = pd.DataFrame(
            conn.execute(_PREDICTIONS_SQL, window).fetchall(),
            columns=["symbol", "bar_time", "strength"],
        )
        symbols = sorted(preds["symbol"].dropna().unique().tolist())
        earliest = preds["bar_time"].min() if len(preds) else since
        closes = pd.DataFrame(
            conn.execute(
                _CLOSES_SQL, {"tf": params.timeframe, "symbols": symbols, "since": earliest}
            ).fetchall(),
            columns=["symbol", "time", "close"],
        )
    error_rate = float(failed) / chains if chains else 0.0
    metrics = {"chains": float(chains), "chain_error_rate": error_rate, "predictions": 0.0}
    per_symbol: dict[str, dict[str, float]] = {}
    if len(preds) and len(closes):
        closes["time"] = pd.to_datetime(closes["time"], utc=True)
        closes["next_close"] = closes.groupby("symbol")["close"].shift(-1)
        preds["bar_time"] = pd.to_datetime(preds["bar_time"], utc=True)
        joined = preds.merge(
            closes, left_on=["symbol", "bar_time"], right_on=["symbol", "time"], how="inner"
        ).dropna(subset=["next_close", "strength"])
        joined = joined[(joined["strength"] != 0) & (joined["next_close"] != joined["close"])]
        joined["hit"] = np.sign(joined["strength"]) == np.sign(
            joined["next_close"] - joined["close"]
        )
        for symbol, group in joined.groupby("symbol"):
            per_symbol[str(symbol)] = {
                "predictions": float(len(group)),
                "accuracy": float(group["hit"].mean()),
            }
        metrics["predictions"] = float(len(joined))
        if len(joined):
            metrics["accuracy"] = float(joined["hit"].mean())
    degraded = tuple(
        s
        for s, m in sorted(per_symbol.items())
        if m["predictions"] >= params.min_predictions and m["accuracy"] < params.min_accuracy
    )
    if degraded:
        detail = ", ".join(f"{s} {per_symbol[s]['accuracy']:.3f}" for s in degraded)
        reason = f"live accuracy below {params.min_accuracy} ({detail})"
    elif error_rate > params.max_error_rate:
        reason = (
            f"chain error rate {error_rate:.3f} above {params.max_error_rate}: not a model issue"
        )
    else:
        reason = "healthy"
    return FeedbackDecision(bool(degraded), reason, degraded, metrics, per_symbol)


def assess_feedback(conf: Mapping[str, Any] | None) -> dict[str, Any]:
    """Task ``assess``: live model metrics and chain health → retrain or not."""
    from chaintrade.pipeline import require_db_url

    params = FeedbackParams.from_mapping(conf)
    decision = assess_live_performance(require_db_url(get_settings()), params)
    log.info("feedback: retrain=%s (%s) %s", decision.retrain, decision.reason, decision.metrics)
    return decision.as_dict()
