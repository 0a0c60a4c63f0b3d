"""The feedback loop: completed trades and labelled predictions give per-model live metrics
(accuracy, precision, recall, profit factor, Sharpe) written to PostgreSQL and MLflow; feature
drift (PSI) against the bars the model was trained on; degradation rules; a retraining run
triggered through the Airflow REST API; live feature importance logged.

:func:`assess` is the pure part (measure and decide, nothing stored or triggered); the
``chaintrade_feedback`` DAG calls it and triggers training itself, :func:`run_feedback` (the
``chaintrade feedback`` command) adds storage, alert sinks, MLflow and the REST trigger.

Labels come from ``market_data``: a prediction for the bar opened at ``t`` was right when the
next bar closed above (P(up) > 0.5) or below that bar's close.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.db import connect
from chaintrade.errors import ChaintradeError
from chaintrade.market_store import read_bars
from chaintrade.monitoring import store
from chaintrade.monitoring.events import AlertRaised, AlertReason, AlertSink, Severity
from chaintrade.monitoring.settings import MonitorSettings
from chaintrade.monitoring.stats import classification, psi, trade_metrics
from chaintrade.monitoring.trades import bar_chains, fills_of, pair_fills, trades_frame
from chaintrade.monitoring.view import CONTRACT_SIZE
from chaintrade.settings import Settings

log = logging.getLogger(__name__)
REFERENCE_BARS = 2000
MIN_REFERENCE_ROWS, MIN_LIVE_ROWS = 200, 30  # PSI on fewer rows is noise


@dataclass(frozen=True)
class Assessment:
    """What the live window says, before anything is stored, sent or triggered."""

    since: datetime
    until: datetime
    metrics: dict[tuple[str, str], dict[str, float]]
    per_symbol: dict[str, dict[str, float]]
    drift: dict[str, float]
    importance: dict[str, float]
    alerts: tuple[AlertRaised, ...]
    retrain: bool
    reason: str
    symbols: tuple[str, ...]  # the degraded symbols, else every symbol of the window

    @property
    def conf(self) -> dict[str, Any]:
        """The training DAG's conf for this retraining."""
        return {"reason": self.reason, "symbols": list(self.symbols)}


@dataclass(frozen=True)
class FeedbackResult:
    """What one feedback run measured and did."""

    since: datetime
    until: datetime
    metrics: dict[tuple[str, str], dict[str, float]]
    drift: dict[str, float] = field(default_factory=dict)
    importance: dict[str, float] = field(default_factory=dict)
    alerts: tuple[AlertRaised, ...] = ()
    retrain_run_id: str | None = None
    mlflow_run_ids: tuple[str, ...] = ()


def labelled_predictions(url: str, chains: pd.DataFrame, timeframe: str) -> pd.DataFrame:
    """Predictions with their realized direction (``label``; NaN where the next bar is
    unknown) and ``predicted`` (1 = up)."""
    preds = chains.dropna(subset=["prediction", "bar_time", "symbol"]).copy()
    if preds.empty:
        return preds.assign(label=[], predicted=[])
    parts = []
    for symbol, group in preds.groupby("symbol"):
        start = group["bar_time"].min().to_pydatetime()
        end = group["bar_time"].max().to_pydatetime() + timedelta(days=7)
        bars = read_bars(url, str(symbol), timeframe, start, end)
        nxt = bars.assign(next_close=bars["close"].shift(-1))[["time", "close", "next_close"]]
        parts.append(group.merge(nxt, left_on="bar_time", right_on="time", how="left"))
    out = pd.concat(parts, ignore_index=True)
    out["label"] = np.where(
        out["next_close"].notna() & out["close"].notna(),
        (out["next_close"] > out["close"]).astype(float),
        np.nan,
    )
    out["predicted"] = (out["prediction"].astype(float) > 0.5).astype(int)
    return out


def live_metrics(
    labelled: pd.DataFrame, trades: pd.DataFrame
) -> dict[tuple[str, str], dict[str, float]]:
    """Per (model name, version): classification metrics and trade metrics."""
    out: dict[tuple[str, str], dict[str, float]] = {}
    known = labelled.dropna(subset=["label"])
    for (name, version), group in known.groupby(["model_name", "model_version"]):
        out[(str(name), str(version))] = classification(
            group["label"].to_numpy(int), group["predicted"].to_numpy(int)
        )
    if not trades.empty:
        for (name, version), group in trades.groupby(["model_name", "model_version"]):
            key = (str(name), str(version))
            out.setdefault(key, {}).update(trade_metrics(group["pnl"].to_numpy()))
    return out


def symbol_metrics(labelled: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Per symbol: classification metrics of its labelled predictions (every model)."""
    known = labelled.dropna(subset=["label"])
    return {
        str(symbol): classification(group["label"].to_numpy(int), group["predicted"].to_numpy(int))
        for symbol, group in known.groupby("symbol")
    }


def _degraded(m: Mapping[str, float], s: MonitorSettings) -> bool:
    """The one rule of live accuracy degradation: enough predictions, accuracy too low."""
    return int(m.get("predictions", 0)) >= s.min_samples and m["accuracy"] < s.min_live_accuracy


def feature_drift(
    url: str, labelled: pd.DataFrame, timeframe: str
) -> tuple[dict[str, float], pd.DataFrame]:
    """PSI per feature of the live window's bars against the bars before it (the training
    distribution); also the live feature rows (for importance)."""
    from chaintrade.features import compute_features, feature_columns

    columns = feature_columns(timeframe)
    ref_parts, live_parts = [], []
    for symbol, group in labelled.groupby("symbol"):
        start = group["bar_time"].min()
        end = group["bar_time"].max() + pd.Timedelta(seconds=1)
        bars = read_bars(url, str(symbol), timeframe, None, end.to_pydatetime())
        if len(bars) < 50:
            continue
        feats = compute_features(bars.tail(REFERENCE_BARS + len(group) * 2), timeframe)
        feats = feats[~feats["warmup"]]
        ref_parts.append(feats[feats["time"] < start])
        live_parts.append(feats[feats["time"] >= start])
    if not ref_parts:
        return {}, pd.DataFrame()
    ref, live = pd.concat(ref_parts), pd.concat(live_parts)
    if len(ref) < MIN_REFERENCE_ROWS or len(live) < MIN_LIVE_ROWS:
        return {}, live
    drift = {c: psi(ref[c].to_numpy(), live[c].to_numpy()) for c in columns}
    return {k: round(v, 4) for k, v in drift.items() if np.isfinite(v)}, live


def live_importance(labelled: pd.DataFrame, live_features: pd.DataFrame) -> dict[str, float]:
    """|AUC − 0.5| of each feature for the realized direction on the live window."""
    from sklearn.metrics import roc_auc_score

    if live_features.empty:
        return {}
    known = labelled.dropna(subset=["label"])[["symbol", "bar_time", "label"]]
    frame = known.merge(live_features, left_on=["symbol", "bar_time"], right_on=["symbol", "time"])
    if frame["label"].nunique() < 2:
        return {}
    cols = [
        c for c in live_features.columns if c not in {"symbol", "time", "event_timestamp", "warmup"}
    ]
    out = {}
    for c in cols:
        x = frame[c].to_numpy(float)
        ok = np.isfinite(x)
        if ok.sum() > 5 and len(np.unique(frame["label"][ok])) == 2:
            out[c] = round(abs(float(roc_auc_score(frame["label"][ok], x[ok])) - 0.5), 4)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]))


def _accuracy_alert(subject: str, m: Mapping[str, float], s: MonitorSettings) -> AlertRaised:
    return AlertRaised(
        AlertReason.MODEL_DEGRADED,
        Severity.CRITICAL,
        subject,
        f"live accuracy {m['accuracy']:.2f} over {int(m['predictions'])} predictions "
        f"(limit {s.min_live_accuracy:.2f})",
        value=m["accuracy"],
        threshold=s.min_live_accuracy,
        details={k: v for k, v in m.items() if np.isfinite(v)},
    )


def degradation_alerts(
    metrics: dict[tuple[str, str], dict[str, float]],
    drift: dict[str, float],
    s: MonitorSettings,
    per_symbol: Mapping[str, Mapping[str, float]] | None = None,
) -> list[AlertRaised]:
    """Critical alerts for each model version and each symbol whose live accuracy degraded,
    warnings for a low profit factor, one warning for drifted features."""
    out = []
    for (name, version), m in sorted(metrics.items()):
        subject = f"{name} v{version}"
        if "accuracy" in m and _degraded(m, s):
            out.append(_accuracy_alert(subject, m, s))
        trades = int(m.get("trades", 0))
        pf = m.get("profit_factor", float("nan"))
        if trades >= s.min_trades and pf < s.min_profit_factor:
            out.append(
                AlertRaised(
                    AlertReason.MODEL_DEGRADED,
                    Severity.WARNING,
                    f"{subject} trades",
                    f"live profit factor {pf:.2f} over {trades} trades "
                    f"(limit {s.min_profit_factor:.2f})",
                    value=pf,
                    threshold=s.min_profit_factor,
                )
            )
    for symbol, sm in sorted((per_symbol or {}).items()):
        if _degraded(sm, s):
            out.append(_accuracy_alert(symbol, sm, s))
    drifted = {k: v for k, v in drift.items() if v > s.drift_psi}
    if drifted:
        top = sorted(drifted.items(), key=lambda kv: -kv[1])[:5]
        out.append(
            AlertRaised(
                AlertReason.FEATURE_DRIFT,
                Severity.WARNING,
                "features",
                f"{len(drifted)} features drifted (PSI > {s.drift_psi}): "
                + ", ".join(f"{k} {v:.2f}" for k, v in top),
                value=top[0][1],
                threshold=s.drift_psi,
                details=dict(top),
            )
        )
    return out


def log_to_mlflow(
    settings: Settings,
    metrics: dict[tuple[str, str], dict[str, float]],
    drift: dict[str, float],
    importance: dict[str, float],
    window: tuple[datetime, datetime],
) -> list[str]:
    """One MLflow run per model version (experiment ``chaintrade-live``), and ``live.*`` tags on
    the registered version where it exists."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(settings.mlflow_uri)
    client = MlflowClient(settings.mlflow_uri)
    experiment = client.get_experiment_by_name("chaintrade-live")
    if experiment is None:
        settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        experiment_id = client.create_experiment(
            "chaintrade-live", artifact_location=settings.mlflow_artifacts.as_uri()
        )
    else:
        experiment_id = experiment.experiment_id
    run_ids = []
    for (name, version), m in metrics.items():
        finite = {f"live_{k}": float(v) for k, v in m.items() if np.isfinite(v)}
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"live-{name}-v{version}"
        ) as run:
            mlflow.set_tags(
                {
                    "chaintrade.kind": "live_feedback",
                    "model_name": name,
                    "model_version": version,
                    "window_start": window[0].isoformat(),
                    "window_end": window[1].isoformat(),
                }
            )
            mlflow.log_metrics(finite)
            mlflow.log_dict(drift, "drift_psi.json")
            mlflow.log_dict(importance, "live_feature_importance.json")
            run_ids.append(run.info.run_id)
        try:
            for k, v in finite.items():
                client.set_model_version_tag(name, version, k.replace("_", ".", 1), f"{v:.6g}")
            client.set_model_version_tag(name, version, "live.feedback_run", run.info.run_id)
        except MlflowException:
            log.info("model %s v%s is not registered; live metrics kept in the run", name, version)
    return run_ids


def trigger_retraining(
    settings: Settings, s: MonitorSettings, db_url: str, reason: str, symbols: Sequence[str]
) -> AlertRaised | None:
    """Queue the training DAG through Airflow's REST API unless one was queued within the
    cool-down; the returned alert records the run id."""
    from chaintrade.airflow_api import AirflowClient

    last = store.last_alert_at(db_url, AlertReason.RETRAINING_TRIGGERED)
    if last is not None and datetime.now(UTC) - last < timedelta(seconds=s.retrain_cooldown_s):
        log.info("retraining not triggered: one was queued at %s (cool-down)", last)
        return None
    conf = {"reason": reason, "symbols": sorted(symbols)}
    run_id = AirflowClient.from_settings(settings).trigger(s.retrain_dag_id, conf)
    return AlertRaised(
        AlertReason.RETRAINING_TRIGGERED,
        Severity.INFO,
        s.retrain_dag_id,
        f"retraining queued: {s.retrain_dag_id} run {run_id} ({reason})",
        details={"dag_run_id": run_id, **conf},
    )


def retrain_decision(
    alerts: Sequence[AlertRaised],
    per_symbol: Mapping[str, Mapping[str, float]],
    window_symbols: Sequence[str],
    s: MonitorSettings,
    *,
    on_drift: bool = True,
) -> tuple[bool, str, tuple[str, ...]]:
    """Retrain on a critical alert (degraded live accuracy) or, with ``on_drift``, feature
    drift: for the degraded symbols, or every symbol of the window when none degraded on
    its own."""
    retrain_for = [
        a
        for a in alerts
        if a.severity == Severity.CRITICAL or (on_drift and a.reason == AlertReason.FEATURE_DRIFT)
    ]
    if not retrain_for:
        return False, "healthy", ()
    degraded = tuple(sym for sym, m in sorted(per_symbol.items()) if _degraded(m, s))
    return True, retrain_for[0].message, degraded or tuple(sorted(window_symbols))


def assess(
    db_url: str,
    s: MonitorSettings,
    *,
    since: datetime,
    until: datetime | None = None,
    timeframe: str = "H1",
    retrain_on_drift: bool = False,
) -> Assessment:
    """Measure the chains in ``[since, until)`` and decide on retraining; stores nothing."""
    until = until or datetime.now(UTC)
    with connect(db_url) as conn:
        chains = bar_chains(conn, since, until)
    labelled = labelled_predictions(db_url, chains, timeframe)
    closed, _ = pair_fills(fills_of(chains))
    metrics = live_metrics(labelled, trades_frame(closed, CONTRACT_SIZE))
    per_symbol = symbol_metrics(labelled) if len(labelled) else {}
    drift, live_feats = (
        feature_drift(db_url, labelled, timeframe) if len(labelled) else ({}, pd.DataFrame())
    )
    importance = live_importance(labelled, live_feats)
    alerts = degradation_alerts(metrics, drift, s, per_symbol)
    window_symbols = sorted(str(x) for x in chains["symbol"].dropna().unique())
    decision = retrain_decision(alerts, per_symbol, window_symbols, s, on_drift=retrain_on_drift)
    return Assessment(
        since, until, metrics, per_symbol, drift, importance, tuple(alerts), *decision
    )


def run_feedback(
    settings: Settings,
    s: MonitorSettings,
    db_url: str,
    *,
    since: datetime,
    until: datetime | None = None,
    timeframe: str = "H1",
    sinks: Sequence[AlertSink] = (),
    use_mlflow: bool = True,
) -> FeedbackResult:
    """:func:`assess` the chains in ``[since, until)``, then store, alert, and trigger
    retraining through Airflow's REST API."""
    a = assess(db_url, s, since=since, until=until, timeframe=timeframe)
    now = datetime.now(UTC)
    store.write_live_metrics(
        db_url,
        [
            store.LiveMetric(
                name, version, k, now, float(v), a.since, a.until, int(m.get("predictions", 0))
            )
            for (name, version), m in a.metrics.items()
            for k, v in m.items()
            if np.isfinite(v)
        ],
    )
    alerts = list(a.alerts)
    retrain_run_id = None
    if a.retrain and s.trigger_retraining:
        try:
            queued = trigger_retraining(settings, s, db_url, a.reason, a.symbols)
        except ChaintradeError as exc:
            queued = None
            alerts.append(
                AlertRaised(
                    AlertReason.TASK_FAILED,
                    Severity.CRITICAL,
                    s.retrain_dag_id,
                    f"retraining could not be triggered: {exc}",
                )
            )
        if queued is not None:
            alerts.append(queued)
            retrain_run_id = str(queued.details["dag_run_id"])
    store.write_alerts(db_url, alerts)
    for alert in alerts:
        for sink in sinks:
            try:
                sink.send(alert)
            except Exception:
                log.exception("alert sink %s failed", type(sink).__name__)
    run_ids = (
        log_to_mlflow(settings, a.metrics, a.drift, a.importance, (a.since, a.until))
        if use_mlflow and a.metrics
        else []
    )
    return FeedbackResult(
        a.since,
        a.until,
        a.metrics,
        a.drift,
        a.importance,
        tuple(alerts),
        retrain_run_id,
        tuple(run_ids),
    )
