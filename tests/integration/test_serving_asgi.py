"""The service in-process over ASGI (``to_asgi()``), on a champion trained at tiny size.

The fixture runs the real pipeline steps (ingest → Spark features → Feast → XGBoost/MLflow)
into a temporary CHAINTRADE_HOME, then serves the champion with BentoML's ASGI app.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

TOKEN = "test-token"


_SHARED: dict[str, dict[str, Any]] = {}


def _restore(saved: dict[str, str | None]) -> None:
    """Put back only the variables a fixture set (libraries such as Feast set their own)."""
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def trained_champion(request: pytest.FixtureRequest) -> dict[str, Any]:
    """One tiny trained champion per test session, shared by the serving test tiers.

    ``env`` holds the variables a process serving it needs (home, database, token).
    """
    if "home" in _SHARED:
        return _SHARED["home"]
    from chaintrade.db import connect, migrate, with_database
    from chaintrade.errors import ServiceUnavailable
    from chaintrade.pipeline import DemoParams, ingest, publish_features_step, train_step
    from chaintrade.settings import get_settings
    from spark_jobs.build_features import run

    pg_url: str = request.getfixturevalue("pg_url")
    factory: pytest.TempPathFactory = request.getfixturevalue("tmp_path_factory")
    home = factory.mktemp("serving") / "var"
    name = "ct_serving_" + os.urandom(4).hex()
    with connect(pg_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')

    def drop() -> None:  # after the session's fixtures: an embedded server may be gone
        with suppress(ServiceUnavailable), connect(pg_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    request.config.add_cleanup(drop)
    url = with_database(pg_url, name)
    env = {"CHAINTRADE_HOME": str(home), "CHAINTRADE_DB_URL": url,
           "CHAINTRADE_SERVING_TOKEN": TOKEN}  # fmt: skip
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    try:
        settings = get_settings()
        migrate(url)
        params = DemoParams(max_bars=900, holdout_bars=60)
        info = {"params": params.as_dict(), **ingest(settings, params, db_url=url, run_name="t")}
        run(str(settings.lake_dir / "bars"), str(settings.offline_dir), timeframe="H1",
            horizon_bars=1, master=settings.spark_master)  # fmt: skip
        publish_features_step(info)
        trained = train_step(info)
    finally:
        _restore(saved)
        get_settings.cache_clear()
    _SHARED["home"] = {"settings": settings, "info": info, "trained": trained, "db_url": url,
                       "env": env}  # fmt: skip
    return _SHARED["home"]


@pytest.fixture(scope="module")
def trained_home(request: pytest.FixtureRequest) -> dict[str, Any]:
    return trained_champion(request)


@pytest.fixture(scope="module")
def client(trained_home: dict[str, Any]) -> Iterator[Any]:
    import importlib

    from starlette.testclient import TestClient

    from chaintrade.settings import get_settings
    from serving import service, settings

    env = {**trained_home["env"], "CHAINTRADE_SERVING_RELOAD_INTERVAL_S": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    settings.get_serving_settings.cache_clear()
    try:
        importlib.reload(service)  # picks up the token of this module's environment
        app = service.ChaintradeService.to_asgi()  # type: ignore[attr-defined]
        with TestClient(app) as c:
            yield c
    finally:
        _restore(saved)
        get_settings.cache_clear()
        settings.get_serving_settings.cache_clear()


def holdout_bars(
    trained_home: dict[str, Any], symbol: str = "EURUSD", n: int = 5
) -> list[dict[str, Any]]:
    lake = pd.read_parquet(trained_home["settings"].lake_dir / "bars" / f"symbol={symbol}")
    lake = lake.sort_values("time")
    start = pd.Timestamp(trained_home["info"]["holdout_start"])
    rows = lake[pd.to_datetime(lake["time"], utc=True) >= start].head(n)
    out = []
    for r in rows.to_dict("records"):
        out.append(
            {
                "symbol": symbol,
                "timeframe": "H1",
                "time": pd.Timestamp(r["time"]).isoformat(),
                "open": float(r["open"]),
                "high": float(r["high"]),
                "low": float(r["low"]),
                "close": float(r["close"]),
                "tick_volume": int(r["tick_volume"]),
                "spread": int(r["spread"]),
            }
        )
    return out


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_predict_answers_with_strength_confidence_and_versions(
    client: Any, trained_home: dict[str, Any]
) -> None:
    bar = holdout_bars(trained_home)[0]
    r = client.post("/predict", json={"bar": bar}, headers=AUTH)
    assert r.status_code == 200, r.text
    body = r.json()
    assert 0.0 <= body["prediction"] <= 1.0 and -1.0 <= body["strength"] <= 1.0
    assert math.isclose(body["strength"], 2 * body["prediction"] - 1, abs_tol=1e-12)
    assert body["direction_probability"] == max(body["prediction"], 1 - body["prediction"])
    assert body["model_version"] == trained_home["trained"]["model_version"]
    assert set(body["model_versions"]) == set(body["members"])
    assert pd.Timestamp(body["feature_timestamp"]) == pd.Timestamp(bar["time"]) + pd.Timedelta(
        hours=1
    )
    again = client.post("/predict", json={"bar": bar}, headers=AUTH).json()
    assert again["cached"] and again["prediction"] == body["prediction"]


def test_without_token_401_and_oversized_body_413(
    client: Any, trained_home: dict[str, Any]
) -> None:
    bar = holdout_bars(trained_home)[0]
    assert client.post("/predict", json={"bar": bar}).status_code == 401
    big = client.post("/predict", content=b"{" + b" " * 20_000 + b"}", headers=AUTH)
    assert big.status_code == 413
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_bad_input_gets_4xx_with_a_reason(client: Any, trained_home: dict[str, Any]) -> None:
    bar = holdout_bars(trained_home)[0]
    nan = client.post(
        "/predict",
        content=('{"bar": ' + str({**bar, "close": "NaN"}).replace("'", '"') + "}").encode(),
        headers={**AUTH, "content-type": "application/json"},
    )
    assert 400 <= nan.status_code < 500
    missing = {k: v for k, v in bar.items() if k != "close"}
    assert 400 <= client.post("/predict", json={"bar": missing}, headers=AUTH).status_code < 500
    new_symbol = {**bar, "symbol": "NOHIST"}
    r = client.post("/predict", json={"bar": new_symbol}, headers=AUTH)
    assert r.status_code == 409 and "not_enough_history" in r.text
    tf = client.post("/predict", json={"bar": {**bar, "timeframe": "M5"}}, headers=AUTH)
    assert tf.status_code == 422 and "timeframe_mismatch" in tf.text


def test_symbol_endpoint_refuses_historical_features_as_stale(client: Any) -> None:
    r = client.post("/predict_symbol", json={"request": {"symbol": "EURUSD"}}, headers=AUTH)
    assert r.status_code == 409 and "stale_features" in r.text, r.text
    r = client.post("/predict_symbol", json={"request": {"symbol": "UNKNOWN"}}, headers=AUTH)
    assert r.status_code == 409 and "no_online_features" in r.text, r.text


def test_metrics_show_latency_cache_and_model_version(client: Any) -> None:
    text = client.get("/metrics").text
    assert "chaintrade_serving_stage_seconds" in text
    assert "chaintrade_serving_cache_total" in text
    assert "chaintrade_serving_model_version" in text
