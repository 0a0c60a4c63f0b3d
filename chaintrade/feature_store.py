"""The Feast feature store of a deployment: open, apply, materialize, training sets.

Two configurations of the one repository (``settings.feature_repo``):

* ``embedded`` (default): ``feature_store.yaml`` — Parquet read by DuckDB, SQLite online;
* ``production``: ``feature_store.production.yaml`` — Spark offline store (master from
  ``CHAINTRADE_SPARK_MASTER``), Redis online store (``CHAINTRADE_REDIS_URL``, default
  ``redis://127.0.0.1:6379``).

Pick one with the ``env`` argument or ``CHAINTRADE_FEAST_ENV``. Feast is imported inside
functions so that importing chaintrade stays light.
"""

from __future__ import annotations

import os
import sys
from contextlib import chdir
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal
from urllib.parse import urlsplit

import pandas as pd

from chaintrade.java import ensure_java
from chaintrade.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

FeastEnv = Literal["embedded", "production"]

FEATURE_SERVICE: Final = "direction_v1"
PUSH_SOURCE: Final = "bar_features_push"
FEATURE_SERVICES: Final = {
    "H1": "direction_v1",
    "M1": "direction_m1_v1",
    "M5": "direction_m5_v1",
    "M15": "direction_m15_v1",
}
PUSH_SOURCES: Final = {
    "H1": "bar_features_push",
    "M1": "bar_features_m1_push",
    "M5": "bar_features_m5_push",
    "M15": "bar_features_m15_push",
}
YAML: Final[dict[str, str]] = {
    "embedded": "feature_store.yaml",
    "production": "feature_store.production.yaml",
}
DEFAULT_REDIS_URL: Final = "redis://127.0.0.1:6379"


def feast_env(env: str | None = None) -> FeastEnv:
    """The configuration in use: ``env``, else the ``feast_env`` setting (embedded)."""
    from chaintrade.settings import get_settings

    value = env or get_settings().feast_env
    if value not in YAML:
        raise ValueError(f"unknown Feast environment {value!r}; expected one of {list(YAML)}")
    return value  # type: ignore[return-value]


def redis_connection_string(url: str) -> str:
    """``redis://[:password@]host:port[/db]`` as Feast's ``host:port[,db=N][,password=..]``."""
    parts = urlsplit(url)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(f"not a redis URL: {url!r}")
    out = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    db = parts.path.strip("/")
    if db:
        out += f",db={int(db)}"
    if parts.password:
        out += f",password={parts.password}"
    if parts.scheme == "rediss":
        out += ",ssl=true"
    return out


def _prepare(settings: Settings, env: str | None) -> tuple[FeastEnv, Path]:
    chosen = feast_env(env)
    os.environ["CHAINTRADE_HOME"] = str(settings.home)
    os.environ["CHAINTRADE_FEAST_ENV"] = chosen  # read by feature_repo/definitions.py
    if chosen == "production":
        url = settings.redis_url or DEFAULT_REDIS_URL
        os.environ["CHAINTRADE_FEAST_REDIS"] = redis_connection_string(url)
        os.environ["CHAINTRADE_FEAST_SPARK_MASTER"] = settings.spark_master
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
        ensure_java()
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return chosen, settings.feature_repo / YAML[chosen]


def open_store(settings: Settings, env: str | None = None) -> FeatureStore:
    """The store of ``settings.feature_repo``, with its state under ``settings.home``."""
    from feast import FeatureStore

    _, yaml = _prepare(settings, env)
    return FeatureStore(repo_path=str(settings.feature_repo), fs_yaml_file=yaml)


def apply(settings: Settings, env: str | None = None) -> None:
    """What ``feast apply`` does: register entities, sources, views and services."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    chosen, yaml = _prepare(settings, env)
    repo = settings.feature_repo
    config = load_repo_config(repo, yaml)
    # Spark validates a source by reading it: a timeframe not built yet would refuse the
    # whole apply. Its views stay registered and are skipped by materialize().
    skip_validation = chosen == "production"
    if str(repo) not in sys.path:  # feast imports the definition files as top-level modules
        sys.path.insert(0, str(repo))
    sys.modules.pop("definitions", None)  # its sources depend on the environment: re-import
    with chdir(repo):  # apply_total changes the working directory; give it back
        apply_total(config, repo, skip_source_validation=skip_validation)


def _views_with_data(settings: Settings, store: FeatureStore) -> list[str]:
    """Feature views whose timeframe has Parquet files in the offline store."""
    root = settings.offline_dir / "bar_features"
    names = []
    for view in store.list_feature_views():
        folder = root / f"timeframe={view.tags.get('timeframe', '')}"
        if folder.is_dir() and any(folder.glob("*.parquet")):
            names.append(view.name)
    return names


def materialize(
    settings: Settings,
    start: datetime,
    end: datetime,
    *,
    env: str | None = None,
    feature_views: list[str] | None = None,
) -> list[str]:
    """Load offline features with event times in [start, end] into the online store.

    By default every view whose timeframe has offline data (a timeframe never built is
    skipped, not an error). Returns the views materialized.
    """
    store = open_store(settings, env)
    names = feature_views if feature_views is not None else _views_with_data(settings, store)
    if names:
        store.materialize(start_date=start, end_date=end, feature_views=names)
    return names


def training_frame(
    settings: Settings,
    entity_df: pd.DataFrame,
    *,
    service: str = FEATURE_SERVICE,
    env: str | None = None,
) -> pd.DataFrame:
    """Point-in-time join of a feature service onto ``entity_df`` (symbol, event_timestamp).

    Each row gets the latest feature values with ``event_timestamp <=`` its own (never later).
    """
    store = open_store(settings, env)
    job = store.get_historical_features(
        entity_df=entity_df, features=store.get_feature_service(service)
    )
    return job.to_df()
