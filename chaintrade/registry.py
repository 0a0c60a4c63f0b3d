"""The MLflow model registry: the champion ensemble, the promotion gate, comparisons.

Models are addressed by alias (``models:/<name>@champion``), never by version number.
A new version becomes ``challenger``; only :func:`promote_if_better` moves ``champion``,
after scoring both on the same out-of-sample window, and it records why on the version.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from chaintrade.ensemble import Ensemble
from chaintrade.errors import ModelNotFound
from chaintrade.settings import Settings

if TYPE_CHECKING:
    from chaintrade.training import TrainConfig

CHAMPION = "champion"
CHALLENGER = "challenger"


@dataclass(frozen=True)
class GateDecision:
    """What the promotion gate decided and why."""

    promoted: bool
    reason: str
    challenger_version: str
    champion_version: str | None
    scores: dict[str, float]


def _client(settings: Settings) -> Any:
    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(settings.mlflow_uri)
    return MlflowClient(settings.mlflow_uri)


def alias_version(settings: Settings, alias: str) -> str | None:
    """The version holding ``alias``, or None."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(settings).get_model_version_by_alias(settings.model_name, alias).version)
    except MlflowException:
        return None


def load_ensemble(settings: Settings, ref: str) -> Ensemble:
    """An ensemble by alias (``@champion``) or version (``3``) as native boosters."""
    import mlflow.pyfunc
    from mlflow.exceptions import MlflowException

    uri = (
        f"models:/{settings.model_name}/{ref}"
        if ref.isdigit()
        else (f"models:/{settings.model_name}{ref if ref.startswith('@') else '@' + ref}")
    )
    _client(settings)
    try:
        model = mlflow.pyfunc.load_model(uri)
    except MlflowException as exc:
        raise ModelNotFound(
            f"no model at {uri} in {settings.mlflow_uri}; train one first "
            "(make demo, or chaintrade train)"
        ) from exc
    try:
        ensemble: Ensemble = model.unwrap_python_model().ensemble
    except (MlflowException, AttributeError) as exc:
        raise ModelNotFound(f"{uri} is not a Chaintrade ensemble (an older model format?)") from exc
    return ensemble


def promote_if_better(
    settings: Settings,
    version: str,
    window: pd.DataFrame,
    config: TrainConfig,
    *,
    min_auc_gain: float = 0.0,
) -> GateDecision:
    """Score the challenger and the champion on the same out-of-sample ``window``; move
    ``champion`` only if the challenger is at least as good on AUC (plus ``min_auc_gain``)
    and on the backtest's Sharpe. The decision and its reason are tagged on the version."""
    from chaintrade.training import score

    client = _client(settings)
    champion_version = alias_version(settings, CHAMPION)
    challenger = load_ensemble(settings, version)
    ch_eval, _ = score(challenger, window, config)
    scores = {
        "challenger_auc": ch_eval.classification["auc"],
        "challenger_sharpe": ch_eval.strategy["sharpe"],
    }
    if champion_version is None:
        promoted, reason = True, "no champion yet"
    elif champion_version == version:
        promoted, reason = True, "already champion"
    else:
        try:
            champion: Ensemble | None = load_ensemble(settings, champion_version)
        except ModelNotFound:
            champion = None
        missing = set(champion.features) - set(window.columns) if champion else set()
        if champion is None:
            promoted, reason = True, f"champion v{champion_version} is not a loadable ensemble"
        elif missing:
            promoted = True
            reason = f"champion v{champion_version} cannot be scored on this feature set"
        else:
            cp_eval, _ = score(champion, window, config)
            scores |= {
                "champion_auc": cp_eval.classification["auc"],
                "champion_sharpe": cp_eval.strategy["sharpe"],
            }
            auc_ok = scores["challenger_auc"] >= scores["champion_auc"] + min_auc_gain
            sharpe_ok = scores["challenger_sharpe"] >= scores["champion_sharpe"]
            promoted = auc_ok and sharpe_ok
            verdict = "better" if promoted else "not better"
            reason = (
                f"{verdict} than champion v{champion_version} on the same window: "
                f"AUC {scores['challenger_auc']:.4f} vs {scores['champion_auc']:.4f} "
                f"(needs +{min_auc_gain}), Sharpe {scores['challenger_sharpe']:.2f} vs "
                f"{scores['champion_sharpe']:.2f}"
            )
    window_span = f"{window['event_timestamp'].min()} .. {window['event_timestamp'].max()}"
    tags = {
        "gate.decision": "promoted" if promoted else "refused",
        "gate.reason": reason,
        "gate.window": window_span,
        "gate.champion_version": champion_version or "",
        "validation_status": "passed" if promoted else "failed",
        **{f"gate.{k}": f"{v:.6f}" for k, v in scores.items()},
    }
    for key, value in tags.items():
        client.set_model_version_tag(settings.model_name, version, key, value)
    if promoted:
        client.set_registered_model_alias(settings.model_name, CHAMPION, version)
    return GateDecision(promoted, reason, version, champion_version, scores)


def compare(settings: Settings) -> pd.DataFrame:
    """Every version of the model with its aliases, test metrics and gate decision."""
    client = _client(settings)
    aliases: dict[str, list[str]] = {}
    for alias, version in client.get_registered_model(settings.model_name).aliases.items():
        aliases.setdefault(str(version), []).append(alias)
    rows = []
    for mv in client.search_model_versions(f"name = '{settings.model_name}'"):
        tags = mv.tags or {}
        rows.append(
            {
                "version": int(mv.version),
                "aliases": ",".join(sorted(aliases.get(str(mv.version), []))),
                "test_auc": float(tags.get("test_auc", "nan")),
                "test_sharpe": float(tags.get("test_sharpe", "nan")),
                "confidence": float(tags.get("confidence", "nan")),
                "gate": tags.get("gate.decision", ""),
                "reason": tags.get("gate.reason", ""),
                "run_id": mv.run_id,
            }
        )
    return pd.DataFrame(rows).sort_values("version", ascending=False).reset_index(drop=True)
