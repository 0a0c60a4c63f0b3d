"""Chaintrade's Feast repository, top-down: project → entity → sources → views → services.

Feature values come from the one implementation in :mod:`chaintrade.features`, written to
the offline store by ``spark_jobs/build_features.py`` and pushed online by serving.
"""

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64

from chaintrade.features import FEATURE_VIEWS, feature_columns
from chaintrade.settings import get_settings

TIMEFRAME = "H1"
FEATURES_PATH = str(get_settings().offline_dir / "bar_features" / "*.parquet")

symbol = Entity(
    name="symbol",
    join_keys=["symbol"],
    value_type=ValueType.STRING,
    description="A tradable MT5 symbol, e.g. EURUSD.",
)

bar_features_source = FileSource(
    name="bar_features_source",
    path=FEATURES_PATH,
    timestamp_field="event_timestamp",
    file_format=ParquetFormat(),
    description="Features per closed bar; event_timestamp is the bar's close time.",
)

# Serving pushes the features of each newly closed bar here (online store only).
bar_features_push = PushSource(name="bar_features_push", batch_source=bar_features_source)


def _view(name: str) -> FeatureView:
    return FeatureView(
        name=name,
        entities=[symbol],
        ttl=timedelta(days=4),  # covers a weekend gap; serving checks freshness itself
        schema=[Field(name=c, dtype=Float64) for c in feature_columns(TIMEFRAME, name)],
        source=bar_features_push,
        online=True,
        tags={"timeframe": TIMEFRAME},
    )


price_features = _view("price_features")
technical_features = _view("technical_features")
volume_features = _view("volume_features")
assert set(FEATURE_VIEWS) == {"price_features", "technical_features", "volume_features"}

direction_v1 = FeatureService(
    name="direction_v1",
    features=[price_features, technical_features, volume_features],
    description="Every feature of the H1 direction model, version 1.",
)
