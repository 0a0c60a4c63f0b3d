"""The MLflow pyfunc flavour of an ensemble (imported only where MLflow is installed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from chaintrade.ensemble import Ensemble


class EnsemblePyfunc(PythonModel):
    """``mlflow.pyfunc.load_model(uri).predict(frame)`` gives the ensemble's P(up) per row."""

    def load_context(self, context: Any) -> None:
        self.ensemble = Ensemble.load(Path(context.artifacts["ensemble"]))

    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        return self.ensemble.predict(model_input)
