"""`bentoml build` packs the serving service with the core it imports and pinned requirements."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chaintrade.settings import PROJECT_ROOT

pytestmark = pytest.mark.integration


def test_bentoml_build_makes_a_bento_with_service_core_and_feature_repo(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}
    bentoml = Path(sys.executable).parent / "bentoml"
    proc = subprocess.run(
        [str(bentoml), "build", "."], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    (bento,) = (tmp_path / "bentoml" / "bentos" / "chaintrade").glob("*/bento.yaml")
    src = bento.parent / "src"
    for path in ("serving/service.py", "chaintrade/ensemble.py", "feature_repo/definitions.py"):
        assert (src / path).exists(), path
    assert not (src / "var").exists() and not (src / ".venv").exists()
    requirements = (bento.parent / "env" / "python" / "requirements.txt").read_text()
    assert "bentoml==1.4.40" in requirements and "xgboost==" in requirements
    assert "serving.service:ChaintradeService" in bento.read_text()
