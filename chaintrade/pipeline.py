"""The batch steps the DAGs call, one function per task (IO at the edges, results as dicts)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from chaintrade.settings import PROJECT_ROOT, Settings

DEFAULT_CSV = PROJECT_ROOT / "data" / "EURUSD_H1_2017-04_2018-02.csv"


@dataclass(frozen=True)
class DemoParams:
    """The knobs of the demo pipeline (Airflow params of the same names)."""

    csv_path: str = str(DEFAULT_CSV)
    symbol: str = "EURUSD"
    synthetic_symbol: str = "SYNTHUSD"
    timeframe: str = "H1"
    holdout_bars: int = 300
    horizon_bars: int = 1
    synthetic_seed: int = 42
    max_bars: int | None = None  # keep only the last N bars per symbol (tiny runs, tests)
    # The seed rule trades at |strength| > 0.7; an honest H1 direction model never gets
    # there, so by default (None) the demo trades the model's most confident decile on its
    # test window (90th percentile of |strength|) and closes below the median.
    buy_threshold: float | None = None
    close_band: float | None = None

    @classmethod
    def from_mapping(cls, values: dict[str, Any] | None) -> DemoParams:
        known = {k: v for k, v in (values or {}).items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def load_demo_bars(params: DemoParams) -> pd.DataFrame:
    """The real EURUSD history plus a synthetic symbol over the same period."""
    from chaintrade.market_data import load_ohlcv_csv, synthetic_bars

    real = load_ohlcv_csv(
        params.csv_path, symbol=params.symbol, timeframe=params.timeframe, spread_points=10
    )
    if params.max_bars:
        real = real.tail(params.max_bars)
    synthetic = synthetic_bars(
        params.synthetic_symbol,
        timeframe=params.timeframe,
        start=real["time"].iloc[0],
        n=len(real),
        seed=params.synthetic_seed,
    )
    return pd.concat([real, synthetic], ignore_index=True).sort_values(["symbol", "time"])


def write_lake(bars: pd.DataFrame, lake_dir: Path) -> list[Path]:
    """Bars into ``bars/symbol=<S>/date=<D>/part.parquet``: re-ingest merges, never doubles."""
    from chaintrade.lake import write_bars

    return write_bars(bars, lake_dir)


def ingest_bars(
    settings: Settings, bars: pd.DataFrame, *, db_url: str, run_name: str
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Validate (rules + Great Expectations), then write the lake and market_data.

    Returns the accepted bars and what happened; rejected rows are kept in the quarantine
    with their reason, never dropped silently.
    """
    from chaintrade.market_store import load_bars
    from chaintrade.quality import validate_bars_with_ge
    from chaintrade.validation import validate_bars

    checked = validate_bars(bars)
    report = validate_bars_with_ge(checked.good, run_name=run_name, docs_dir=settings.data_docs_dir)
    report.raise_for_failure()
    quarantine = None
    if checked.rejected:  # nothing is lost: rejected rows are kept with their reason
        folder = settings.lake_dir / "quarantine" / "bars"
        folder.mkdir(parents=True, exist_ok=True)
        quarantine = folder / f"{_safe(run_name)}.parquet"
        checked.quarantine.to_parquet(quarantine, index=False)
    write_lake(checked.good, settings.lake_dir)
    loaded = load_bars(db_url, checked.good)
    good = checked.good
    return good, {
        "bars": len(bars),
        "rejected": checked.rejected,
        "rejected_by_reason": checked.counts,
        "quarantine": str(quarantine) if quarantine else None,
        "rows_loaded": loaded,
        "symbols": sorted(good["symbol"].unique().tolist()),
        "first_time": good["time"].min().isoformat(),
        "last_time": good["time"].max().isoformat(),
        "data_docs": str(report.docs_index),
        "ge_success": report.success,
    }


def ingest(settings: Settings, params: DemoParams, *, db_url: str, run_name: str) -> dict[str, Any]:
    """The demo's bars through :func:`ingest_bars`, plus where its hold-out starts."""
    good, result = ingest_bars(settings, load_demo_bars(params), db_url=db_url, run_name=run_name)
    holdout_start = (
        good.groupby("symbol")["time"].apply(lambda t: t.iloc[-params.holdout_bars]).min()
    )
    return {**result, "holdout_start": pd.Timestamp(holdout_start).isoformat()}


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def require_db_url(settings: Settings) -> str:
    from chaintrade.errors import ConfigError

    if not settings.db_url:
        raise ConfigError(
            "CHAINTRADE_DB_URL is not set: point it at PostgreSQL/TimescaleDB, "
            "or run through `chaintrade demo`, which starts an embedded PostgreSQL"
        )
    return settings.db_url


def ingest_step(conf: dict[str, Any] | None, run_name: str) -> dict[str, Any]:
    """DAG task: ingest and validate the demo's bars."""
    from chaintrade.chain_definitions import register_builtin_definitions
    from chaintrade.db import migrate
    from chaintrade.settings import get_settings

    settings = get_settings()
    params = DemoParams.from_mapping(conf)
    url = require_db_url(settings)
    migrate(url)
    register_builtin_definitions(url)
    started_at = pd.Timestamp.now(tz="UTC").isoformat()
    result = ingest(settings, params, db_url=url, run_name=run_name)
    return {"params": params.as_dict(), "started_at": started_at, **result}


def publish_features_step(info: dict[str, Any]) -> dict[str, Any]:
    """DAG task: ``feast apply``, then materialize the features known before the hold-out."""
    from chaintrade import feature_store
    from chaintrade.settings import get_settings

    settings = get_settings()
    feature_store.apply(settings)
    start = pd.Timestamp(info["first_time"]).to_pydatetime()
    end = pd.Timestamp(info["holdout_start"]).to_pydatetime()
    feature_store.materialize(settings, start, end)
    return {"materialized_until": end.isoformat()}


def train_step(info: dict[str, Any]) -> dict[str, Any]:
    """DAG task: train the ensemble on Feast's point-in-time set; register; promotion gate."""
    from chaintrade.settings import get_settings
    from chaintrade.training import TrainConfig, train_and_register

    params = DemoParams.from_mapping(info["params"])
    result = train_and_register(
        get_settings(),
        cutoff=pd.Timestamp(info["holdout_start"]).to_pydatetime(),
        config=TrainConfig(timeframe=params.timeframe, horizon_bars=params.horizon_bars),
    )
    return asdict(result)


def replay_step(info: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """DAG task: ``bentoml serve`` the champion and replay the hold-out through the agent."""
    from chaintrade.demo import bentoml_serve, run_agent_replay
    from chaintrade.settings import get_settings

    settings = get_settings()
    params = DemoParams.from_mapping(info["params"])
    runs = settings.home / "demo"
    buy = params.buy_threshold if params.buy_threshold is not None else model["strength_q90"]
    close = params.close_band if params.close_band is not None else model["strength_q50"]
    buy, close = round(float(buy), 6), round(min(float(close), float(buy)), 6)
    with bentoml_serve(settings, log_path=runs / "bentoml.log") as url:
        summary = run_agent_replay(
            settings,
            serving_url=url,
            start=info["holdout_start"],
            symbols=info["symbols"],
            timeframe=params.timeframe,
            out_path=runs / "agent_summary.json",
            agent_env={
                "CHAINTRADE_AGENT_BUY_THRESHOLD": str(buy),
                "CHAINTRADE_AGENT_SELL_THRESHOLD": str(-buy),
                "CHAINTRADE_AGENT_CLOSE_BAND": str(close),
            },
        )
    return {**summary, "buy_threshold": buy, "close_band": close}


def summary_step(
    info: dict[str, Any], features: dict[str, Any], model: dict[str, Any], replay: dict[str, Any]
) -> dict[str, Any]:
    """DAG task: what landed where, for people to read (written to ``var/demo/summary.json``)."""
    import json

    from chaintrade.chain_store import count_chains
    from chaintrade.settings import get_settings

    settings = get_settings()
    summary = {
        "ingest": {k: v for k, v in info.items() if k != "params"},
        "params": info["params"],
        "features": features,
        "model": model,
        "replay": replay,
        "chains_in_db": count_chains(require_db_url(settings)),
        "chains_this_run": count_chains(
            require_db_url(settings), since=pd.Timestamp(info["started_at"]).to_pydatetime()
        ),
        "artifacts": {
            "data_docs": info["data_docs"],
            "mlflow": f"mlflow ui --backend-store-uri {settings.mlflow_uri}",
            "airflow": "make airflow (every DAG, state in var/airflow)",
        },
    }
    from chaintrade.report import write_run_report

    report = write_run_report(
        require_db_url(settings),
        settings.home / "demo" / "report.html",
        since=pd.Timestamp(info["started_at"]).to_pydatetime(),
        title="Chaintrade demo run",
        summary=summary,
        settings=settings,
    )
    summary["artifacts"]["report"] = str(report)
    out = settings.home / "demo" / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2, default=str))
    return summary
