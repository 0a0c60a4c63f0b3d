"""MLflow registry: an ensemble per parent run, challenger on registration, and a promotion
gate that moves `champion` for a better challenger and refuses a worse one."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from chaintrade.features import feature_columns
from chaintrade.registry import compare, load_ensemble, promote_if_better
from chaintrade.settings import Settings
from chaintrade.training import TrainConfig, fit_ensemble, log_ensemble

pytestmark = pytest.mark.integration

CONFIG = TrainConfig(horizon_bars=1, num_boost_round=80, early_stopping_rounds=15)


def signal_frame(n: int = 3000, seed: int = 1, shuffle_labels: bool = False) -> pd.DataFrame:
    """Features with a modest real signal (no single one beyond the leak limit)."""
    rng = np.random.default_rng(seed)
    columns = feature_columns("H1")
    frame = pd.DataFrame(rng.normal(size=(n, len(columns))), columns=columns)
    latent = 0.3 * frame[columns[2]] + 0.3 * frame[columns[8]] + rng.normal(size=n)
    label = (latent > 0).astype(int).to_numpy()
    step = np.abs(rng.normal(0, 1e-3, n))
    returns = np.where(label == 1, step, -step)  # what the bar after each row earns
    frame["ret_1_H1"] = np.concatenate([[0.0], returns[:-1]])
    frame["symbol"] = "SIG"
    frame["event_timestamp"] = pd.date_range("2023-01-02", periods=n, freq="h", tz="UTC")
    frame["label"] = rng.permutation(label) if shuffle_labels else label
    frame["forward_return"] = returns
    frame["next_open_return"] = returns  # what the backtest earns: the agent's next-open fill
    return frame


@pytest.fixture
def settings(tmp_path: Path) -> Iterator[Settings]:
    yield Settings(home=tmp_path / "var", model_name="test-direction")
    mlflow.set_tracking_uri(None)


def _train(settings: Settings, *, shuffle: bool) -> tuple[str, pd.DataFrame]:
    trained = fit_ensemble(signal_frame(shuffle_labels=shuffle), CONFIG)
    _, version = log_ensemble(settings, trained, cutoff=datetime(2024, 1, 1, tzinfo=UTC))
    return version, trained.splits.test


def test_gate_promotes_better_and_refuses_worse(settings: Settings) -> None:
    client = MlflowClient(settings.mlflow_uri)
    weak, _ = _train(settings, shuffle=True)
    first = promote_if_better(settings, weak, _train_window(), CONFIG)
    assert first.promoted and first.reason == "no champion yet"

    strong, window = _train(settings, shuffle=False)
    assert client.get_model_version_by_alias("test-direction", "challenger").version == int(strong)
    second = promote_if_better(settings, strong, window, CONFIG)
    assert second.promoted, second.reason
    assert second.scores["challenger_auc"] > second.scores["champion_auc"] + 0.05
    assert client.get_model_version_by_alias("test-direction", "champion").version == int(strong)

    worse, _ = _train(settings, shuffle=True)
    third = promote_if_better(settings, worse, window, CONFIG)
    assert not third.promoted and "not better" in third.reason
    assert client.get_model_version_by_alias("test-direction", "champion").version == int(strong)
    tags = client.get_model_version("test-direction", worse).tags
    assert tags["gate.decision"] == "refused" and tags["validation_status"] == "failed"

    table = compare(settings)
    assert table["version"].tolist() == [int(worse), int(strong), int(weak)]
    assert table.loc[table["version"] == int(strong), "aliases"].item() == "champion"


def _train_window() -> pd.DataFrame:
    from chaintrade.training import add_label_end

    return add_label_end(signal_frame(seed=9), 1, "H1")


def test_ensemble_run_has_children_plots_and_a_loadable_model(settings: Settings) -> None:
    trained = fit_ensemble(signal_frame(), CONFIG)
    run_id, version = log_ensemble(settings, trained, cutoff=datetime(2024, 1, 1, tzinfo=UTC))
    client = MlflowClient(settings.mlflow_uri)
    run = client.get_run(run_id)
    assert run.data.metrics["test_auc"] > 0.58
    assert {"test_bt_sharpe", "test_baseline_random_sharpe", "valid_brier"} <= set(run.data.metrics)
    children = client.search_runs([run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'")
    assert {c.info.run_name for c in children} == {m.spec.name for m in trained.ensemble.members}
    artifacts = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert artifacts == {
        "plots/feature_importance.png",
        "plots/calibration.png",
        "plots/equity_drawdown.png",
    }
    loaded = load_ensemble(settings, version)
    test = trained.splits.test
    np.testing.assert_allclose(loaded.predict(test), trained.ensemble.predict(test), rtol=1e-6)
    pyfunc = mlflow.pyfunc.load_model(f"models:/test-direction/{version}")
    np.testing.assert_allclose(
        pyfunc.predict(test[list(loaded.features)]), loaded.predict(test), rtol=1e-6
    )
