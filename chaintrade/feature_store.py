"""The Feast feature store of a deployment: open, apply, materialize, training sets.

Feast is imported inside functions so that importing chaintrade stays light.
"""

from __future__ import annotations

import os
import sys
from contextlib import chdir
from datetime import datetime
from typing import TYPE_CHECKING

import pandas as pd

from chaintrade.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureStore

FEATURE_SERVICE = "direction_v1"
PUSH_SOURCE = "bar_features_push"


def open_store(settings: Settings) -> FeatureStore:
    """The store of ``settings.feature_repo``, with its state under ``settings.home``."""
    from feast import FeatureStore

    os.environ["CHAINTRADE_HOME"] = str(settings.home)
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    return FeatureStore(repo_path=str(settings.feature_repo))


def apply(settings: Settings) -> None:
    """What ``feast apply`` does: register entities, sources, views and services."""
    from feast.repo_config import load_repo_config
    from feast.repo_operations import apply_total

    os.environ["CHAINTRADE_HOME"] = str(settings.home)
    settings.feast_dir.mkdir(parents=True, exist_ok=True)
    repo = settings.feature_repo
    config = load_repo_config(repo, repo / "feature_store.yaml")
    if str(repo) not in sys.path:  # feast imports the definition files as top-level modules
        sys.path.insert(0, str(repo))
    with chdir(repo):  # apply_total changes the working directory; give it back
        apply_total(config, repo, skip_source_validation=False)


def materialize(settings: Settings, start: datetime, end: datetime) -> None:
    """Load the offline features with event times in [start, end] into the online store."""
    open_store(settings).materialize(start_date=start, end_date=end)


def training_frame(settings: Settings, entity_df: pd.DataFrame) -> pd.DataFrame:
    """Point-in-time join of the feature service onto ``entity_df`` (symbol, event_timestamp)."""
    store = open_store(settings)
    service = store.get_feature_service(FEATURE_SERVICE)
    job = store.get_historical_features(entity_df=entity_df, features=service)
    return job.to_df()
