"""Chaintrade's Feast repository, top-down: project → entity → sources → views → services.

Feature values come from the one implementation in :mod:`chaintrade.features`, written to
the offline store by ``spark_jobs/build_features.py`` (``bar_features/timeframe=<TF>/``) and
pushed online by serving. One source, push source and three views per timeframe:

* H1 (the demo's timeframe): views ``price_features``, ``technical_features``,
  ``volume_features``, push source ``bar_features_push``;
* M1, M5, M15: views ``price_features_m1`` … ``volume_features_m15``, push sources
  ``bar_features_m1_push`` …

Every view carries the tags ``group`` (the contract's view name) and ``timeframe``.
The offline source class follows the environment (``CHAINTRADE_FEAST_ENV``, set by
``chaintrade.feature_store.open_store``): ``FileSource`` for the embedded default (DuckDB
offline store), ``SparkSource`` for production (Spark offline store).
"""

import os
from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.data_source import DataSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource
from feast.types import Float64

from chaintrade.features import FEATURE_TIMEFRAMES, FEATURE_VIEWS, feature_columns
from chaintrade.settings import Settings

DEMO_TIMEFRAME = "H1"
ENV = os.environ.get("CHAINTRADE_FEAST_ENV", "embedded")
# Read the environment afresh (not the cached get_settings()): open_store sets CHAINTRADE_HOME.
OFFLINE_DIR = Settings().offline_dir
TTL = {"M1": timedelta(days=4), "M5": timedelta(days=4), "M15": timedelta(days=4)}

# --------------------------------------------------------------------------- entity

symbol = Entity(
    name="symbol",
    join_keys=["symbol"],
    value_type=ValueType.STRING,
    description="A tradable MT5 symbol, e.g. EURUSD.",
)

# --------------------------------------------------------------------------- sources


def _suffix(timeframe: str) -> str:
    return "" if timeframe == DEMO_TIMEFRAME else f"_{timeframe.lower()}"


def _batch_source(timeframe: str) -> DataSource:
    folder = OFFLINE_DIR / "bar_features" / f"timeframe={timeframe}"
    name = f"bar_features{_suffix(timeframe)}_source"
    description = f"{timeframe} features per closed bar; event_timestamp is the bar's close."
    if ENV == "production":
        return SparkSource(
            name=name,
            path=str(folder),
            file_format="parquet",
            timestamp_field="event_timestamp",
            description=description,
        )
    return FileSource(
        name=name,
        path=str(folder / "*.parquet"),
        timestamp_field="event_timestamp",
        file_format=ParquetFormat(),
        description=description,
    )


batch_sources = {tf: _batch_source(tf) for tf in FEATURE_TIMEFRAMES}

# Serving pushes the features of each newly closed bar here (online store only).
push_sources = {
    tf: PushSource(name=f"bar_features{_suffix(tf)}_push", batch_source=batch_sources[tf])
    for tf in FEATURE_TIMEFRAMES
}
bar_features_push = push_sources[DEMO_TIMEFRAME]

# --------------------------------------------------------------------------- feature views


def _view(group: str, timeframe: str) -> FeatureView:
    return FeatureView(
        name=f"{group}{_suffix(timeframe)}",
        entities=[symbol],
        # covers a weekend gap; serving checks freshness itself
        ttl=TTL.get(timeframe, timedelta(days=4)),
        schema=[Field(name=c, dtype=Float64) for c in feature_columns(timeframe, group)],
        source=push_sources[timeframe],
        online=True,
        tags={"group": group, "timeframe": timeframe},
    )


views = {(g, tf): _view(g, tf) for tf in FEATURE_TIMEFRAMES for g in FEATURE_VIEWS}
price_features = views[("price_features", DEMO_TIMEFRAME)]
technical_features = views[("technical_features", DEMO_TIMEFRAME)]
volume_features = views[("volume_features", DEMO_TIMEFRAME)]
price_features_m1 = views[("price_features", "M1")]
technical_features_m1 = views[("technical_features", "M1")]
volume_features_m1 = views[("volume_features", "M1")]
price_features_m5 = views[("price_features", "M5")]
technical_features_m5 = views[("technical_features", "M5")]
volume_features_m5 = views[("volume_features", "M5")]
price_features_m15 = views[("price_features", "M15")]
technical_features_m15 = views[("technical_features", "M15")]
volume_features_m15 = views[("volume_features", "M15")]

# --------------------------------------------------------------------------- feature services
# Versioned: a model names the service it was trained on; a changed feature set is a new
# version, never an edit of a published one.


def _service(timeframe: str, name: str) -> FeatureService:
    return FeatureService(
        name=name,
        features=[views[(g, timeframe)] for g in FEATURE_VIEWS],
        description=f"Every {timeframe} feature of the direction model, version 1.",
        tags={"timeframe": timeframe, "version": "1"},
    )


direction_v1 = _service(DEMO_TIMEFRAME, "direction_v1")
direction_m1_v1 = _service("M1", "direction_m1_v1")
direction_m5_v1 = _service("M5", "direction_m5_v1")
direction_m15_v1 = _service("M15", "direction_m15_v1")
direction_mtf_v1 = FeatureService(
    name="direction_mtf_v1",
    features=list(views.values()),
    description="Every feature of every timeframe (M1, M5, M15, H1), joined point in time.",
    tags={"timeframe": "M1,M5,M15,H1", "version": "1"},
)
