"""Feast from feature_repo/ in both configurations: apply, materialize, online and point-in-time.

embedded: DuckDB over Parquet + SQLite; production: Spark offline store + the real Redis
(``CHAINTRADE_REDIS_URL``, default redis://127.0.0.1:6379). Symbols are random per run so
that a shared Redis is not disturbed.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from chaintrade import feature_store
from chaintrade.features import compute_features, feature_columns
from chaintrade.market_data import synthetic_bars
from chaintrade.settings import Settings

pytestmark = pytest.mark.integration

REDIS_URL = os.environ.get("CHAINTRADE_REDIS_URL", feature_store.DEFAULT_REDIS_URL)


def _redis_answers(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def _write_offline(features: pd.DataFrame, home: Path, timeframe: str) -> None:
    """The Spark job's layout: bar_features/timeframe=<TF>/*.parquet, UTC microseconds."""
    folder = home / "offline" / "bar_features" / f"timeframe={timeframe}"
    folder.mkdir(parents=True, exist_ok=True)
    columns = ["symbol", "time", "event_timestamp", *feature_columns(timeframe)]
    features.loc[~features["warmup"], columns].to_parquet(
        folder / "part-0.parquet", index=False, coerce_timestamps="us"
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, object]]:
    home = tmp_path_factory.mktemp("feast") / "var"
    tag = uuid.uuid4().hex[:6].upper()
    symbols = [f"T{tag}A", f"T{tag}B"]
    h1 = {
        s: compute_features(
            synthetic_bars(s, timeframe="H1", start="2024-01-01", n=300, seed=i), "H1"
        )
        for i, s in enumerate(symbols)
    }
    m15_bars = synthetic_bars(symbols[0], timeframe="M15", start="2024-01-01", n=300, seed=5)
    m15 = compute_features(m15_bars, "M15")
    _write_offline(pd.concat(h1.values(), ignore_index=True), home, "H1")
    _write_offline(m15, home, "M15")
    saved = {k: os.environ.get(k) for k in ("CHAINTRADE_HOME", "CHAINTRADE_FEAST_ENV")}
    yield {"home": home, "symbols": symbols, "h1": h1, "m15": m15}
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _settings(world: dict[str, object]) -> Settings:
    return Settings(home=world["home"], redis_url=REDIS_URL, spark_master="local[2]")  # type: ignore[arg-type]


def _check_store(world: dict[str, object], env: str) -> None:
    settings = _settings(world)
    symbols: list[str] = world["symbols"]  # type: ignore[assignment]
    h1: dict[str, pd.DataFrame] = world["h1"]  # type: ignore[assignment]
    m15: pd.DataFrame = world["m15"]  # type: ignore[assignment]
    feature_store.apply(settings, env=env)
    store = feature_store.open_store(settings, env=env)
    assert {v.name for v in store.list_feature_views()} >= {
        "price_features",
        "technical_features",
        "volume_features",
        "price_features_m15",
    }
    # direction_v1 holds exactly the H1 features, in the contract's three views
    service = store.get_feature_service("direction_v1")
    names = [f.name for p in service.feature_view_projections for f in p.features]
    assert sorted(names) == sorted(feature_columns("H1"))

    done = feature_store.materialize(
        settings, pd.Timestamp("2023-12-01", tz="UTC"), pd.Timestamp("2025-01-01", tz="UTC"),
        env=env,
    )  # fmt: skip
    assert len(done) == 6  # H1 and M15 have data; M1 and M5 were never built: skipped

    # online = the last offline row of each symbol, exactly
    online = store.get_online_features(
        features=service, entity_rows=[{"symbol": s} for s in symbols]
    ).to_df()
    for i, s in enumerate(symbols):
        last = h1[s].iloc[-1]
        np.testing.assert_array_equal(
            online.loc[i, feature_columns("H1")].to_numpy(float),
            last[feature_columns("H1")].to_numpy(float),
        )
    m15_online = store.get_online_features(
        features=store.get_feature_service("direction_m15_v1"),
        entity_rows=[{"symbol": symbols[0]}],
    ).to_df()
    np.testing.assert_array_equal(
        m15_online[feature_columns("M15")].to_numpy(float)[0],
        m15.iloc[-1][feature_columns("M15")].to_numpy(float),
    )

    # point in time: at a bar's close its own row; a minute before, the previous bar's row
    f = h1[symbols[0]]
    at = f["event_timestamp"].iloc[[100, 200]]
    entity_df = pd.DataFrame(
        {
            "symbol": symbols[0],
            "event_timestamp": list(at) + list(at - pd.Timedelta(minutes=1)),
        }
    )
    frame = feature_store.training_frame(settings, entity_df, env=env)
    frame["event_timestamp"] = pd.to_datetime(frame["event_timestamp"], utc=True)
    frame = frame.set_index("event_timestamp").loc[entity_df["event_timestamp"]]
    expected = f.iloc[[100, 200, 99, 199]][feature_columns("H1")].to_numpy(float)
    np.testing.assert_allclose(frame[feature_columns("H1")].to_numpy(float), expected, atol=0)

    # the push source updates the online store (what serving does for each closed bar)
    from feast.data_source import PushMode

    row = f.iloc[[-1]][["symbol", "event_timestamp", *feature_columns("H1")]].copy()
    row["event_timestamp"] += pd.Timedelta(hours=1)
    row["rsi_14_H1"] = 12.5
    store.push(feature_store.PUSH_SOURCE, row, to=PushMode.ONLINE)
    pushed = store.get_online_features(
        features=service, entity_rows=[{"symbol": symbols[0]}]
    ).to_dict()
    assert pushed["rsi_14_H1"] == [12.5]


def test_embedded_store_applies_materializes_and_serves(world: dict[str, object]) -> None:
    _check_store(world, "embedded")


def test_production_store_on_spark_and_redis(world: dict[str, object]) -> None:
    if not _redis_answers(REDIS_URL):
        pytest.skip(f"no Redis answers at {REDIS_URL} (set CHAINTRADE_REDIS_URL)")
    _check_store(world, "production")


def test_redis_url_becomes_a_feast_connection_string() -> None:
    assert feature_store.redis_connection_string("redis://127.0.0.1:6379") == "127.0.0.1:6379"
    assert (
        feature_store.redis_connection_string("rediss://:pw@cache:6380/2")
        == "cache:6380,db=2,password=pw,ssl=true"
    )
    with pytest.raises(ValueError, match="Feast environment"):
        feature_store.feast_env("staging")
