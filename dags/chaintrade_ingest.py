"""
### Chaintrade ingest: market data → rules + Great Expectations → lake and market_data

Loads bars from `source` (an MT5 export, CSV or Parquet file or folder; by default the
repository's EURUSD H1 history) plus seeded synthetic symbols over the same period, keeps
the `symbols` and dates asked for, validates them (rule checks with reason codes, then a
Great Expectations suite with Data Docs), quarantines rejected rows and writes the accepted
ones to the lake and the `market_data` table.

Updates the **bars** asset, which schedules `chaintrade_features`.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import Asset, Param, dag, get_current_context, task

from chaintrade.orchestration import BARS_ASSET, DEFAULT_SOURCE, default_args


@dag(
    dag_id="chaintrade_ingest",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    doc_md=__doc__,
    tags=["chaintrade", "data"],
    default_args=default_args(),
    params={
        "source": Param(str(DEFAULT_SOURCE), type="string", description="bar file or folder"),
        "symbols": Param([], type="array", items={"type": "string"}, description="empty: all"),
        "synthetic_symbols": Param(["SYNTHUSD"], type="array", items={"type": "string"}),
        "timeframe": Param("H1", enum=["M1", "M5", "M15", "M30", "H1", "H4", "D1"]),
        "start_date": Param(None, type=["null", "string"], format="date"),
        "end_date": Param(None, type=["null", "string"], format="date"),
        "max_bars": Param(None, type=["null", "integer"], minimum=1),
    },
)
def chaintrade_ingest() -> None:
    @task(outlets=[Asset(name="chaintrade_bars", uri=BARS_ASSET)])
    def ingest() -> dict[str, Any]:
        from chaintrade.orchestration import ingest_market_data

        ctx = get_current_context()
        return ingest_market_data(dict(ctx["params"]), run_name=ctx["run_id"])

    ingest()


chaintrade_ingest()
