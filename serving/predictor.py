"""The prediction path, free of BentoML: bar → one feature implementation → Feast online → model."""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from chaintrade.ensemble import Ensemble
from chaintrade.errors import FatalError, ModelNotFound
from chaintrade.feature_store import FEATURE_SERVICE, PUSH_SOURCE, open_store
from chaintrade.features import LOOKBACK_BARS, compute_features, feature_columns
from chaintrade.registry import CHAMPION, alias_version, load_ensemble
from chaintrade.schemas import BarIn, Prediction
from chaintrade.settings import Settings


class NotEnoughHistory(FatalError):
    """The symbol has fewer closed bars than the features' warm-up needs."""

    reason = "not_enough_history"


class StaleFeatures(FatalError):
    """The online store does not hold the features of the bar just received."""

    reason = "stale_features"


class BarOutOfOrder(FatalError):
    """The bar is older than the last bar seen for its symbol."""

    reason = "bar_out_of_order"


class InvalidFeatures(FatalError):
    """A feature is missing or not finite; the model is not called."""

    reason = "invalid_features"


@dataclass(frozen=True)
class ChampionModel:
    """The ensemble behind the ``champion`` alias: native boosters and their weights."""

    name: str
    version: str
    ensemble: Ensemble

    @classmethod
    def load(cls, settings: Settings) -> ChampionModel:
        version = alias_version(settings, CHAMPION)
        if version is None:
            raise ModelNotFound(
                f"no '{CHAMPION}' version of model '{settings.model_name}' at "
                f"{settings.mlflow_uri}; train one first (make demo or chaintrade train)"
            )
        return cls(settings.model_name, version, load_ensemble(settings, version))

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.ensemble.features

    @property
    def confidence(self) -> float:
        return self.ensemble.confidence


class Predictor:
    """Keeps the last closed bars per symbol and answers one prediction per closed bar."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.model = ChampionModel.load(settings)
        self.store = open_store(settings)
        self.service = self.store.get_feature_service(FEATURE_SERVICE)
        self._bars: dict[str, pd.DataFrame] = {}
        self._lock = threading.Lock()
        # The first online read costs ~0.5 s (registry load): pay it at start-up.
        self.store.get_online_features(
            features=self.service, entity_rows=[{"symbol": "__warmup__"}]
        )

    def predict(self, bar: BarIn) -> Prediction:
        started = time.perf_counter()
        with self._lock:
            history = self._append(bar)
        if len(history) < LOOKBACK_BARS:
            # Recursive indicators (EMA, Wilder) match the batch values only after this many.
            raise NotEnoughHistory(
                f"{bar.symbol} has {len(history)} closed {bar.timeframe} bars; the features need "
                f"{LOOKBACK_BARS} to equal the batch values — send more history first"
            )
        features = compute_features(history, bar.timeframe).iloc[-1]
        t_features = time.perf_counter()
        columns = feature_columns(bar.timeframe)
        row = features[["symbol", "event_timestamp", *columns]].to_frame().T
        row["event_timestamp"] = pd.to_datetime(row["event_timestamp"], utc=True)
        row[columns] = row[columns].astype("float64")
        from feast.data_source import PushMode

        self.store.push(PUSH_SOURCE, row, to=PushMode.ONLINE)
        t_push = time.perf_counter()
        online = self.store.get_online_features(
            features=self.service, entity_rows=[{"symbol": bar.symbol}]
        ).to_dict(include_event_timestamps=True)
        t_read = time.perf_counter()
        expected = pd.Timestamp(features["event_timestamp"])
        vector = self._vector(online, expected)
        p_up, members = self.model.ensemble.predict_vector(vector)
        done = time.perf_counter()
        return Prediction(
            symbol=bar.symbol,
            prediction=p_up,
            strength=float(np.clip(2.0 * p_up - 1.0, -1.0, 1.0)),
            confidence=self.model.confidence,
            model_name=self.model.name,
            model_version=self.model.version,
            feature_timestamp=expected.to_pydatetime(),
            members={
                m.spec.name: p for m, p in zip(self.model.ensemble.members, members, strict=True)
            },
            timings_ms={
                "features": (t_features - started) * 1e3,
                "feast_push": (t_push - t_features) * 1e3,
                "feast_read": (t_read - t_push) * 1e3,
                "model": (done - t_read) * 1e3,
                "total": (done - started) * 1e3,
            },
        )

    def _vector(self, online: dict[str, list[object]], expected: pd.Timestamp) -> np.ndarray:
        values = []
        for name in self.model.feature_names:
            value = online.get(name, [None])[0]
            if value is None or not math.isfinite(float(value)):  # type: ignore[arg-type]
                raise InvalidFeatures(f"feature {name} is {value!r}; the model was not called")
            seen = online.get(f"{name}__ts", [0])[0]
            if datetime.fromtimestamp(int(seen), UTC) != expected:  # type: ignore[call-overload]
                raise StaleFeatures(
                    f"online {name} is from {datetime.fromtimestamp(int(seen), UTC)}, "  # type: ignore[call-overload]
                    f"expected {expected}; is another writer pushing this symbol?"
                )
            values.append(float(value))  # type: ignore[arg-type]
        return np.asarray(values, dtype=np.float64)

    def _append(self, bar: BarIn) -> pd.DataFrame:
        history = self._bars.get(bar.symbol)
        if history is None:
            history = self._lake_history(bar)
        new = pd.DataFrame([bar.model_dump()])
        new["time"] = pd.to_datetime(new["time"], utc=True)
        if len(history):
            last = history["time"].iloc[-1]
            if new["time"].iloc[0] < last:
                raise BarOutOfOrder(f"bar at {bar.time} is older than the last bar {last}")
            if new["time"].iloc[0] == last:  # the same bar again: idempotent
                history = history.iloc[:-1]
        history = pd.concat([history, new], ignore_index=True).tail(LOOKBACK_BARS)
        self._bars[bar.symbol] = history.reset_index(drop=True)
        return self._bars[bar.symbol]

    def _lake_history(self, bar: BarIn) -> pd.DataFrame:
        """Closed bars before ``bar`` from the raw lake (empty when the lake has none)."""
        path = self.settings.lake_dir / "bars" / f"symbol={bar.symbol}"
        columns = ["symbol", "timeframe", "time", "open", "high", "low", "close"]
        columns += ["tick_volume", "spread", "real_volume"]
        if not path.exists():
            return pd.DataFrame(columns=columns)
        lake = pd.read_parquet(path)
        lake["symbol"] = bar.symbol
        lake["time"] = pd.to_datetime(lake["time"], utc=True)
        lake = lake[(lake["timeframe"] == bar.timeframe) & (lake["time"] < pd.Timestamp(bar.time))]
        return lake.sort_values("time")[columns].tail(LOOKBACK_BARS - 1).reset_index(drop=True)
