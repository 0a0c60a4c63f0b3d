"""Train the direction model on a point-in-time training set from Feast; register it in MLflow.

Heavy libraries (xgboost, mlflow, sklearn, matplotlib) are imported inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from chaintrade import feature_store
from chaintrade.errors import DataValidationError
from chaintrade.features import feature_columns
from chaintrade.settings import Settings

EXPERIMENT = "chaintrade-direction"
CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class TrainResult:
    """What one training run produced."""

    run_id: str
    model_name: str
    model_version: str
    metrics: dict[str, float]
    train_rows: int
    validation_rows: int
    confidence: float


def labels_before(labels: pd.DataFrame, cutoff: datetime, horizon_bars: int) -> pd.DataFrame:
    """Labels whose whole forward window closes before ``cutoff`` (purges the last ``horizon``)."""
    kept = labels[labels["time"] < pd.Timestamp(cutoff)].sort_values(["symbol", "time"])
    from_end = kept.groupby("symbol").cumcount(ascending=False)
    return kept[from_end >= horizon_bars]


def walk_forward_split(
    frame: pd.DataFrame, *, validation_fraction: float, purge_bars: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time-ordered split per symbol with ``purge_bars`` dropped between train and validation."""
    train, valid = [], []
    for _, g in frame.sort_values("event_timestamp").groupby("symbol"):
        cut = int(len(g) * (1 - validation_fraction))
        train.append(g.iloc[: max(cut - purge_bars, 0)])
        valid.append(g.iloc[cut:])
    return pd.concat(train), pd.concat(valid)


def build_training_set(
    settings: Settings, *, cutoff: datetime, horizon_bars: int, timeframe: str
) -> pd.DataFrame:
    """Labels before ``cutoff`` joined point-in-time with the feature service from Feast."""
    labels = pd.read_parquet(settings.offline_dir / "bar_labels")
    labels["time"] = pd.to_datetime(labels["time"], utc=True)
    labels["event_timestamp"] = pd.to_datetime(labels["event_timestamp"], utc=True)
    entity_df = labels_before(labels, cutoff, horizon_bars)[
        ["symbol", "event_timestamp", "label", "forward_return"]
    ].reset_index(drop=True)
    frame = feature_store.training_frame(settings, entity_df)
    columns = feature_columns(timeframe)
    complete = frame.dropna(subset=columns)
    if len(complete) < 100:
        raise DataValidationError(
            f"only {len(complete)} complete training rows before {cutoff}; ingest more history",
            counts={"incomplete_rows": len(frame) - len(complete)},
        )
    return complete.sort_values(["event_timestamp", "symbol"]).reset_index(drop=True)


def evaluate(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

    return {
        "auc": float(roc_auc_score(y, proba)) if len(np.unique(y)) > 1 else 0.5,
        "accuracy": float(accuracy_score(y, proba > 0.5)),
        "log_loss": float(log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "brier": float(brier_score_loss(y, proba)),
    }


def train_and_register(
    settings: Settings,
    *,
    cutoff: datetime,
    horizon_bars: int,
    timeframe: str = "H1",
    params: dict[str, Any] | None = None,
) -> TrainResult:
    """Fit XGBoost on data before ``cutoff``, log it, register it and give it the champion alias."""
    import mlflow
    import xgboost as xgb
    from mlflow.models import infer_signature
    from mlflow.tracking import MlflowClient

    columns = feature_columns(timeframe)
    frame = build_training_set(
        settings, cutoff=cutoff, horizon_bars=horizon_bars, timeframe=timeframe
    )
    train, valid = walk_forward_split(frame, validation_fraction=0.2, purge_bars=horizon_bars)
    model_params: dict[str, Any] = {
        "n_estimators": 300,
        "max_depth": 4,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "tree_method": "hist",
        "n_jobs": 2,
        "random_state": 7,
        "eval_metric": "logloss",
    }
    model_params.update(params or {})
    model = xgb.XGBClassifier(**model_params)
    model.fit(
        train[columns], train["label"], eval_set=[(valid[columns], valid["label"])], verbose=False
    )
    proba = model.predict_proba(valid[columns])[:, 1]
    metrics = evaluate(valid["label"].to_numpy(), proba)
    # Weight of this member in the serving ensemble: its skill above chance on validation.
    confidence = float(np.clip(2.0 * (metrics["auc"] - 0.5), 0.05, 1.0))
    metrics["confidence"] = confidence

    mlflow.set_tracking_uri(settings.mlflow_uri)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        settings.mlflow_artifacts.mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(EXPERIMENT, artifact_location=settings.mlflow_artifacts.as_uri())
    mlflow.set_experiment(EXPERIMENT)
    with mlflow.start_run(run_name=f"xgb-{timeframe}-h{horizon_bars}") as run:
        mlflow.log_params({**model_params, "horizon_bars": horizon_bars, "timeframe": timeframe})
        mlflow.log_params({"cutoff": pd.Timestamp(cutoff).isoformat(), "features": len(columns)})
        mlflow.log_metrics({f"val_{k}": v for k, v in metrics.items()})
        mlflow.log_metrics({"train_rows": len(train), "validation_rows": len(valid)})
        mlflow.log_figure(_importance_figure(model, columns), "feature_importance.png")
        signature = infer_signature(valid[columns].head(50), proba[:50])
        info = mlflow.xgboost.log_model(
            model,
            name="model",
            registered_model_name=settings.model_name,
            signature=signature,
            input_example=valid[columns].head(3),
            pip_requirements=[f"xgboost=={xgb.__version__}"],
            metadata={"confidence": confidence, "timeframe": timeframe, "features": columns},
        )
        version = str(info.registered_model_version)
    client = MlflowClient(settings.mlflow_uri)
    client.set_model_version_tag(settings.model_name, version, "confidence", f"{confidence:.6f}")
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version)
    # Walking skeleton: the newest model becomes champion (a promotion gate comes with issue 5).
    client.set_registered_model_alias(settings.model_name, CHAMPION, version)
    return TrainResult(
        run.info.run_id, settings.model_name, version, metrics, len(train), len(valid), confidence
    )


def _importance_figure(model: Any, columns: list[str]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(model.feature_importances_)
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(columns) + 1))
    ax.barh(np.array(columns)[order], model.feature_importances_[order])
    ax.set_title("XGBoost feature importance (gain)")
    fig.tight_layout()
    plt.close(fig)
    return fig
