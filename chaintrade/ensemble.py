"""The ensemble: XGBoost members, each weighted by its validation confidence.

prediction = Σ pᵢ·cᵢ / Σ cᵢ over the members, confidence = mean cᵢ (the seed's formula).
Members are native boosters (``inplace_predict``), never a DMatrix on the hot path; one
row (serving) goes straight to XGBoost's C prediction call (:meth:`Member.predict_row`).
"""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

MANIFEST = "manifest.json"
# What ``Booster.inplace_predict`` sends by default: values (not margins), every tree.
_PREDICT_ARGS = json.dumps(
    {
        "type": 0,
        "training": False,
        "iteration_begin": 0,
        "iteration_end": 0,
        "missing": float("nan"),
        "strict_shape": False,
        "cache_id": 0,
    }
).encode()


@dataclass(frozen=True)
class MemberSpec:
    """How one member differs from the others: features, seed and hyper-parameters."""

    name: str
    features: tuple[str, ...]
    seed: int = 7
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Member:
    """A fitted member: its booster, its inputs and its weight in the ensemble."""

    spec: MemberSpec
    booster: Any  # xgboost.Booster
    confidence: float

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame[list(self.spec.features)].to_numpy(dtype=np.float64)
        return np.asarray(self.booster.inplace_predict(values), dtype=np.float64)

    def predict_row(self, row: np.ndarray) -> float:
        """P(up) for one row (``spec.features`` order), equal to ``inplace_predict``'s.

        The same C call ``inplace_predict`` ends in, without its per-call Python work
        (input type dispatch, a class built per call, JSON of the arguments): ~3x cheaper
        on one row. Thread-safe like ``inplace_predict`` (the output buffer is per thread).
        """
        from xgboost import core

        data = np.ascontiguousarray(row, dtype=np.float64)
        if data.ndim != 1 or data.shape[0] != len(self.spec.features):
            raise ValueError(
                f"{self.spec.name} takes {len(self.spec.features)} features, got {data.shape}"
            )
        interface = (
            b'{"data":[%d,true],"shape":[1,%d],"strides":null,"typestr":"<f8","version":3}'
            % (data.ctypes.data, data.shape[0])
        )
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        preds = ctypes.POINTER(ctypes.c_float)()
        core._check_call(
            core._LIB.XGBoosterPredictFromDense(
                self.booster.handle,
                interface,
                _PREDICT_ARGS,
                None,
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(preds),
            )
        )
        if dims.value != 1 or shape[0] != 1:  # one probability per row (binary:logistic)
            raise ValueError(f"{self.spec.name} answered shape {list(shape[: dims.value])}")
        return float(preds[0])


def combine(probabilities: np.ndarray, confidences: np.ndarray) -> np.ndarray:
    """Σ pᵢ·cᵢ / Σ cᵢ per row: ``probabilities`` is (members, rows), ``confidences`` (members,)."""
    weights = np.asarray(confidences, dtype=np.float64)
    if weights.sum() <= 0:
        raise ValueError("ensemble confidences sum to zero: no member may vote")
    return np.asarray((weights[:, None] * probabilities).sum(axis=0) / weights.sum())


def confidence_from_auc(auc: float, floor: float = 0.05) -> float:
    """A member's weight: its validation skill above chance, 2·(AUC − 0.5), floored."""
    return float(np.clip(2.0 * (auc - 0.5), floor, 1.0))


@dataclass(frozen=True)
class Ensemble:
    """Members plus what serving must know: the timeframe and the label horizon."""

    members: tuple[Member, ...]
    timeframe: str
    horizon_bars: int

    @property
    def features(self) -> tuple[str, ...]:
        """Every input any member reads, in first-seen order."""
        seen: dict[str, None] = {}
        for member in self.members:
            seen.update(dict.fromkeys(member.spec.features))
        return tuple(seen)

    @property
    def confidence(self) -> float:
        return float(np.mean([m.confidence for m in self.members]))

    def member_probabilities(self, frame: pd.DataFrame) -> np.ndarray:
        return np.vstack([m.predict(frame) for m in self.members])

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(up) of the ensemble for every row of ``frame``."""
        confidences = np.array([m.confidence for m in self.members])
        return combine(self.member_probabilities(frame), confidences)

    def predict_vector(self, vector: Sequence[float] | np.ndarray) -> tuple[float, list[float]]:
        """One row in ``features`` order → (ensemble P(up), member P(up)s): the serving path."""
        row = np.asarray(vector, dtype=np.float64).reshape(1, -1)
        index = {name: i for i, name in enumerate(self.features)}
        probs = [m.predict_row(row[0, [index[f] for f in m.spec.features]]) for m in self.members]
        weights = np.array([m.confidence for m in self.members])
        return float(combine(np.array(probs)[:, None], weights)[0]), probs

    def save(self, folder: Path) -> Path:
        """Write member boosters (UBJSON) and a manifest; returns the folder."""
        folder.mkdir(parents=True, exist_ok=True)
        members = []
        for m in self.members:
            path = folder / f"{m.spec.name}.ubj"
            m.booster.save_model(str(path))
            members.append({**asdict(m.spec), "file": path.name, "confidence": m.confidence})
        manifest = {"timeframe": self.timeframe, "horizon_bars": self.horizon_bars}
        manifest["members"] = members
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
        return folder

    @classmethod
    def load(cls, folder: Path) -> Ensemble:
        import xgboost as xgb

        manifest = json.loads((folder / MANIFEST).read_text())
        members = []
        for entry in manifest["members"]:
            booster = xgb.Booster()
            booster.load_model(str(folder / entry["file"]))
            # One row at a time on the hot path: OpenMP threads cost more than they give
            # (measured 15 ms vs 0.2 ms per inplace_predict on a busy 2-core machine).
            booster.set_param({"nthread": 1})
            spec = MemberSpec(
                entry["name"], tuple(entry["features"]), entry["seed"], entry["params"]
            )
            members.append(Member(spec, booster, float(entry["confidence"])))
        return cls(tuple(members), manifest["timeframe"], int(manifest["horizon_bars"]))
