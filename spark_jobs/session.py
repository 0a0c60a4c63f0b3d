"""The one place Spark sessions are configured (local by default, any master by setting)."""

from __future__ import annotations

import os
import sys

from pyspark.sql import SparkSession

from chaintrade.java import ensure_java


def spark_session(
    app_name: str, master: str | None = "local[2]", conf: dict[str, str] | None = None
) -> SparkSession:
    """A session with UTC time, microsecond Parquet timestamps and workers on this interpreter.

    ``conf`` adds or overrides settings (e.g. ``spark.driver.memory`` for large local runs;
    it only takes effect when this call starts the JVM). ``master=None`` keeps the one
    spark-submit set (``local[*]`` when there is none).
    """
    ensure_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    settings = {
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.ui.showConsoleProgress": "false",
        "spark.ui.enabled": "false",
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.sql.shuffle.partitions": "4",
        **(conf or {}),
    }
    builder = SparkSession.builder.appName(app_name)
    if master is not None:
        builder = builder.master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
