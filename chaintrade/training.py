"""Train the direction ensemble honestly: point-in-time data from Feast, purged and embargoed
walk-forward splits, a leak check, XGBoost members weighted by validation skill, metrics and a
cost-aware backtest beside baselines (filled at the next bar's open, as the agent trades — the
one backtest :mod:`live_agent.parity` holds equal to paper trading), everything logged to
MLflow; the new version becomes ``challenger`` and only the promotion gate
(:mod:`chaintrade.registry`) makes it ``champion``.

Heavy libraries (xgboost, mlflow, matplotlib) are imported inside functions.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from chaintrade import feature_store
from chaintrade.domain import Timeframe
from chaintrade.ensemble import Ensemble, Member, MemberSpec, confidence_from_auc
from chaintrade.errors import DataValidationError, FatalError
from chaintrade.evaluation import BacktestResult, Costs, Evaluation, Rule, evaluate
from chaintrade.features import feature_columns
from chaintrade.labels import NEXT_OPEN_RETURN
from chaintrade.settings import Settings

EXPERIMENT = "chaintrade-direction"
CHAMPION = "champion"
CHALLENGER = "challenger"
LABEL = "label"
NO_GAP = pd.Timedelta(0)


class LeakageSuspected(FatalError):
    """A feature predicts the label too well to be honest: it probably sees the future."""

    reason = "leakage_suspected"


def default_members(timeframe: str) -> tuple[MemberSpec, ...]:
    """Three members that differ in feature subsets, seeds and depth."""
    everything = tuple(feature_columns(timeframe))
    price_tech = tuple(
        feature_columns(timeframe, "price_features")
        + feature_columns(timeframe, "technical_features")
    )
    tech_volume = tuple(
        feature_columns(timeframe, "technical_features")
        + feature_columns(timeframe, "volume_features")
    )
    return (
        MemberSpec("all_d4", everything, seed=7, params={"max_depth": 4}),
        MemberSpec("price_tech_d3", price_tech, seed=11, params={"max_depth": 3}),
        MemberSpec("tech_volume_d5", tech_volume, seed=13, params={"max_depth": 5, "eta": 0.03}),
    )


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does; every field is logged as an MLflow parameter."""

    timeframe: str = "H1"
    horizon_bars: int = 1
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15)  # train / validation / test
    embargo_bars: int | None = None  # None: the label horizon
    members: tuple[MemberSpec, ...] = ()
    costs: Costs = field(default_factory=Costs)
    rule: Rule = field(default_factory=Rule)
    leak_auc_limit: float = 0.65  # a single feature above this AUC is refused as a leak
    num_boost_round: int = 400
    early_stopping_rounds: int = 30
    min_rows: int = 100
    symbols: tuple[str, ...] = ()  # train on these symbols only; empty: every symbol

    @property
    def embargo(self) -> pd.Timedelta:
        bars = self.horizon_bars if self.embargo_bars is None else self.embargo_bars
        return pd.Timedelta(minutes=bars * Timeframe[self.timeframe].minutes)

    def member_specs(self) -> tuple[MemberSpec, ...]:
        return self.members or default_members(self.timeframe)


# --------------------------------------------------------------------------- splits
@dataclass(frozen=True)
class Splits:
    """Time-ordered, purged and embargoed train / validation / test sets."""

    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame


def add_label_end(frame: pd.DataFrame, horizon_bars: int, timeframe: str) -> pd.DataFrame:
    """``label_end``: when the label becomes known (the close of bar t+h of the same symbol)."""
    out = frame.sort_values(["symbol", "event_timestamp"]).copy()
    ahead = out.groupby("symbol")["event_timestamp"].shift(-horizon_bars)
    fallback = out["event_timestamp"] + pd.Timedelta(
        minutes=horizon_bars * Timeframe[timeframe].minutes
    )
    out["label_end"] = ahead.fillna(fallback)
    return out


def _purged(
    frame: pd.DataFrame, start: pd.Timestamp | None, end: pd.Timestamp | None
) -> pd.DataFrame:
    """Rows whose features come at or after ``start`` and whose label is known before ``end``."""
    keep = np.ones(len(frame), dtype=bool)
    if start is not None:
        keep &= (frame["event_timestamp"] >= start).to_numpy()
    if end is not None:
        keep &= (frame["label_end"] < end).to_numpy()
    return frame[keep]


def walk_forward_split(
    frame: pd.DataFrame,
    *,
    fractions: tuple[float, float, float] = (0.70, 0.15, 0.15),
    embargo: pd.Timedelta = NO_GAP,
) -> Splits:
    """Split by time: no training label window reaches the validation window, none of the
    validation reaches the test window, and ``embargo`` is left out after each boundary."""
    if "label_end" not in frame:
        raise ValueError("frame needs label_end (see add_label_end)")
    times = np.sort(frame["event_timestamp"].to_numpy())
    t1 = pd.Timestamp(times[int(len(times) * fractions[0])])
    t2 = pd.Timestamp(times[min(int(len(times) * (fractions[0] + fractions[1])), len(times) - 1)])
    return Splits(
        train=_purged(frame, None, t1),
        validation=_purged(frame, t1 + embargo, t2),
        test=_purged(frame, t2 + embargo, None),
    )


def rolling_windows(
    frame: pd.DataFrame,
    *,
    n_windows: int,
    test_fraction: float,
    expanding: bool,
    embargo: pd.Timedelta = NO_GAP,
) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
    """Walk-forward (train, test) windows: each test window follows its training window;
    the training window grows (``expanding``) or slides with a fixed length (rolling)."""
    times = np.sort(frame["event_timestamp"].unique())
    n = len(times)
    test_len = max(int(n * test_fraction), 1)
    first_test = n - n_windows * test_len
    if first_test <= 0:
        raise ValueError("not enough data for that many windows")
    for k in range(n_windows):
        start = first_test + k * test_len
        test_start, test_end = (
            pd.Timestamp(times[start]),
            pd.Timestamp(times[min(start + test_len, n - 1)]),
        )
        train_start = None if expanding else pd.Timestamp(times[max(start - first_test, 0)])
        train = _purged(frame, train_start, test_start)
        end = None if k == n_windows - 1 else test_end
        yield train, _purged(frame, test_start + embargo, end)


# --------------------------------------------------------------------------- checks
def leak_check(frame: pd.DataFrame, columns: list[str], limit: float) -> dict[str, float]:
    """Features whose single-feature AUC for the label is beyond ``limit`` (either way)."""
    from sklearn.metrics import roc_auc_score

    y = frame[LABEL].to_numpy()
    if len(np.unique(y)) < 2:
        return {}
    flagged = {}
    for column in columns:
        auc = float(roc_auc_score(y, frame[column].to_numpy()))
        if max(auc, 1.0 - auc) > limit:
            flagged[column] = auc
    return flagged


# --------------------------------------------------------------------------- fitting
@dataclass(frozen=True)
class TrainedEnsemble:
    """An ensemble and everything measured about it."""

    ensemble: Ensemble
    splits: Splits
    member_metrics: dict[str, dict[str, float]]
    validation: Evaluation
    test: Evaluation
    test_backtest: BacktestResult
    config: TrainConfig


def fit_member(spec: MemberSpec, splits: Splits, config: TrainConfig) -> Member:
    """Fit one booster with early stopping on validation log loss; weight = validation skill."""
    import xgboost as xgb

    from chaintrade.evaluation import classification_metrics

    params: dict[str, Any] = {
        "objective": "binary:logistic",
        "eval_metric": "logloss",
        "tree_method": "hist",
        "eta": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 5,
        "nthread": 2,
        "seed": spec.seed,
        **spec.params,
    }
    features = list(spec.features)
    dtrain = xgb.DMatrix(splits.train[features], label=splits.train[LABEL], feature_names=features)
    dvalid = xgb.DMatrix(
        splits.validation[features], label=splits.validation[LABEL], feature_names=features
    )
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=config.num_boost_round,
        evals=[(dvalid, "validation")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )
    # keep only the trees early stopping chose, so inplace_predict needs no iteration_range
    booster = booster[: booster.best_iteration + 1]
    proba = booster.inplace_predict(splits.validation[features].to_numpy(dtype=np.float64))
    auc = classification_metrics(splits.validation[LABEL].to_numpy(), proba)["auc"]
    return Member(spec, booster, confidence_from_auc(auc))


def fit_ensemble(frame: pd.DataFrame, config: TrainConfig) -> TrainedEnsemble:
    """Split, check for leaks, fit every member, evaluate on validation and test."""
    from chaintrade.evaluation import classification_metrics

    if NEXT_OPEN_RETURN not in frame:
        raise DataValidationError(
            f"the training frame has no {NEXT_OPEN_RETURN} (the backtest's fill at the next "
            "bar's open); rebuild the labels (spark_jobs/build_features.py)",
            counts={"missing_columns": 1},
        )
    frame = add_label_end(frame, config.horizon_bars, config.timeframe)
    splits = walk_forward_split(frame, fractions=config.fractions, embargo=config.embargo)
    for name, part in asdict(splits).items():
        if len(part) < config.min_rows // 5:
            raise DataValidationError(f"{name} split has {len(part)} rows; ingest more history")
    used = sorted({f for spec in config.member_specs() for f in spec.features})
    leaks = leak_check(splits.train, used, config.leak_auc_limit)
    if leaks:
        detail = ", ".join(f"{k} (AUC {v:.3f})" for k, v in sorted(leaks.items()))
        raise LeakageSuspected(
            f"features predict the label too well to be honest — do they see the future? {detail}. "
            f"Check how they are computed, or raise leak_auc_limit ({config.leak_auc_limit}) "
            "if you are sure."
        )
    members = tuple(fit_member(spec, splits, config) for spec in config.member_specs())
    ensemble = Ensemble(members, config.timeframe, config.horizon_bars)
    member_metrics = {}
    for m in members:
        member_metrics[m.spec.name] = {
            **{
                f"valid_{k}": v
                for k, v in classification_metrics(
                    splits.validation[LABEL].to_numpy(), m.predict(splits.validation)
                ).items()
            },
            **{
                f"test_{k}": v
                for k, v in classification_metrics(
                    splits.test[LABEL].to_numpy(), m.predict(splits.test)
                ).items()
            },
            "confidence": m.confidence,
            "trees": float(m.booster.num_boosted_rounds()),
        }
    valid_eval, _ = score(ensemble, splits.validation, config)
    test_eval, test_bt = score(ensemble, splits.test, config)
    return TrainedEnsemble(ensemble, splits, member_metrics, valid_eval, test_eval, test_bt, config)


def score(
    ensemble: Ensemble, frame: pd.DataFrame, config: TrainConfig
) -> tuple[Evaluation, BacktestResult]:
    """Metrics and backtest of ``ensemble`` on ``frame``: the decision of each row's bar is
    filled at the next bar's open, as the agent trades (the labels' ``next_open_return``)."""
    return evaluate(
        frame[LABEL].to_numpy(),
        ensemble.predict(frame),
        frame[NEXT_OPEN_RETURN].to_numpy(dtype=np.float64),
        frame["symbol"].to_numpy(),
        frame["event_timestamp"].to_numpy(),
        timeframe=config.timeframe,
        costs=config.costs,
        rule=config.rule,
    )


# --------------------------------------------------------------------------- data
def labels_before(labels: pd.DataFrame, cutoff: datetime, horizon_bars: int) -> pd.DataFrame:
    """Labels whose whole forward window closes before ``cutoff`` (purges the last ``horizon``)."""
    kept = labels[labels["time"] < pd.Timestamp(cutoff)].sort_values(["symbol", "time"])
    from_end = kept.groupby("symbol").cumcount(ascending=False)
    return kept[from_end >= horizon_bars]


def build_training_set(
    settings: Settings, *, cutoff: datetime, config: TrainConfig
) -> pd.DataFrame:
    """Labels before ``cutoff`` joined point-in-time with the feature service from Feast."""
    labels = pd.read_parquet(settings.offline_dir / "bar_labels" / f"timeframe={config.timeframe}")
    labels["time"] = pd.to_datetime(labels["time"], utc=True)
    labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    if config.symbols:
        labels = labels[labels["symbol"].isin(config.symbols)]
    if NEXT_OPEN_RETURN not in labels:
        raise DataValidationError(
            f"the labels of {config.timeframe} have no {NEXT_OPEN_RETURN}: they were built by "
            "an older job; rebuild them (chaintrade_features DAG or spark_jobs/build_features.py)",
            counts={"missing_columns": 1},
        )
    entity_df = labels_before(labels, cutoff, config.horizon_bars)[
        ["symbol", "event_timestamp", LABEL, "forward_return", NEXT_OPEN_RETURN]
    ].reset_index(drop=True)
    frame = feature_store.training_frame(settings, entity_df)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    columns = feature_columns(config.timeframe)
    complete = frame.dropna(subset=columns)
    if len(complete) < config.min_rows:
        raise DataValidationError(
            f"only {len(complete)} complete training rows before {cutoff}; ingest more history",
            counts={"incomplete_rows": len(frame) - len(complete)},
        )
    return complete.sort_values(["event_timestamp", "symbol"]).reset_index(drop=True)


# --------------------------------------------------------------------------- MLflow
@dataclass(frozen=True)
class TrainResult:
    """What one training run produced and what the promotion gate decided."""

    run_id: str
    model_name: str
    model_version: str
    metrics: dict[str, float]
    train_rows: int
    validation_rows: int
    test_rows: int
    confidence: float
    promoted: bool
    gate_reason: str
    strength_q50: float  # |2·P(up) − 1| on the test window: median ...
    strength_q90: float  # ... and 90th percentile (the demo trades its most confident decile)


def train_and_register(
    settings: Settings, *, cutoff: datetime, config: TrainConfig | None = None
) -> TrainResult:
    """Build the set from Feast, fit, log, register as ``challenger``, run the promotion gate."""
    from chaintrade.registry import promote_if_better

    config = config or TrainConfig()
    frame = build_training_set(settings, cutoff=cutoff, config=config)
    trained = fit_ensemble(frame, config)
    run_id, version = log_ensemble(settings, trained, cutoff=cutoff)
    decision = promote_if_better(settings, version, trained.splits.test, config)
    strength = np.abs(2.0 * trained.ensemble.predict(trained.splits.test) - 1.0)
    metrics = {
        **trained.validation.flat_metrics("valid"),
        **trained.test.flat_metrics("test"),
        "auc": trained.test.classification["auc"],
    }
    return TrainResult(
        run_id,
        settings.model_name,
        version,
        metrics,
        len(trained.splits.train),
        len(trained.splits.validation),
        len(trained.splits.test),
        trained.ensemble.confidence,
        decision.promoted,
        decision.reason,
        float(np.quantile(strength, 0.5)),
        float(np.quantile(strength, 0.9)),
    )


def ensure_experiment(settings: Settings) -> None:
    import mlflow

    mlflow.set_tracking_uri(settings.mlflow_uri)
    if mlflow.get_experiment_by_name(EXPERIMENT) is None:
        settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(EXPERIMENT, artifact_location=settings.mlflow_artifacts.as_uri())
    mlflow.set_experiment(EXPERIMENT)


def log_ensemble(
    settings: Settings, trained: TrainedEnsemble, *, cutoff: datetime
) -> tuple[str, str]:
    """A parent run for the ensemble, a child run per member; registers the ensemble."""
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    from chaintrade import plots
    from chaintrade.mlflow_model import EnsemblePyfunc

    config, ensemble, splits = trained.config, trained.ensemble, trained.splits
    ensure_experiment(settings)
    with mlflow.start_run(run_name=f"ensemble-{config.timeframe}-h{config.horizon_bars}") as run:
        mlflow.set_tags({"chaintrade.kind": "ensemble", "timeframe": config.timeframe})
        mlflow.log_params(
            {
                "timeframe": config.timeframe,
                "horizon_bars": config.horizon_bars,
                "fractions": "/".join(map(str, config.fractions)),
                "embargo": str(config.embargo),
                "cutoff": pd.Timestamp(cutoff).isoformat(),
                "members": ",".join(m.spec.name for m in ensemble.members),
                "costs_bps": json.dumps(asdict(config.costs)),
                "backtest_fill": "next_open",
                "rule": json.dumps(asdict(config.rule)),
                "leak_auc_limit": config.leak_auc_limit,
                "symbols": ",".join(config.symbols) or "all",
                "train_rows": len(splits.train),
                "validation_rows": len(splits.validation),
                "test_rows": len(splits.test),
            }
        )
        mlflow.log_metrics(trained.validation.flat_metrics("valid"))
        mlflow.log_metrics(trained.test.flat_metrics("test"))
        mlflow.log_metric("confidence", ensemble.confidence)
        mlflow.log_dict(trained.test.as_dict(), "evaluation/test.json")
        mlflow.log_dict(trained.validation.as_dict(), "evaluation/validation.json")
        test_proba = ensemble.predict(splits.test)
        mlflow.log_figure(plots.importance(ensemble), "plots/feature_importance.png")
        mlflow.log_figure(
            plots.calibration(splits.test[LABEL].to_numpy(), test_proba), "plots/calibration.png"
        )
        mlflow.log_figure(
            plots.equity(trained.test_backtest, splits.test), "plots/equity_drawdown.png"
        )
        for m in ensemble.members:
            with mlflow.start_run(run_name=m.spec.name, nested=True):
                mlflow.set_tags({"chaintrade.kind": "member"})
                mlflow.log_params(
                    {"features": len(m.spec.features), "seed": m.spec.seed, **m.spec.params}
                )
                mlflow.log_metrics(trained.member_metrics[m.spec.name])
                mlflow.log_text("\n".join(m.spec.features), "features.txt")
        example = splits.test[list(ensemble.features)].head(3)
        with tempfile.TemporaryDirectory() as tmp:
            folder = ensemble.save(Path(tmp) / "ensemble")
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=EnsemblePyfunc(),
                artifacts={"ensemble": str(folder)},
                signature=infer_signature(example, test_proba[:3]),
                input_example=example,
                registered_model_name=settings.model_name,
                pip_requirements=[f"xgboost=={xgb.__version__}", f"mlflow=={mlflow.__version__}"],
                metadata={"timeframe": config.timeframe, "horizon_bars": config.horizon_bars},
            )
        version = str(info.registered_model_version)
    client = MlflowClient(settings.mlflow_uri)
    for key, value in {
        "confidence": f"{ensemble.confidence:.6f}",
        "timeframe": config.timeframe,
        "horizon_bars": str(config.horizon_bars),
        "test_auc": f"{trained.test.classification['auc']:.6f}",
        "test_sharpe": f"{trained.test.strategy['sharpe']:.6f}",
        "members": ",".join(m.spec.name for m in ensemble.members),
    }.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
    return run.info.run_id, version
