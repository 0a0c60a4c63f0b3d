"""The prediction path, free of BentoML.

``predict(bar)``: the bar advances the symbol's incremental feature state
(``chaintrade.features.OnlineFeatures``, derived from and held equal to the one batch
implementation) → the ensemble. The feature row is handed to a writer process that pushes
it to the Feast online store, so the request never waits on Feast (nor shares the GIL
with it) and the online store stays current for ``predict_symbol``.

``predict_symbol(symbol)``: the latest online features from Feast (for callers that do not
send bars), refused when missing, not finite, inconsistent or older than allowed.

Both refuse before the model is called when a feature is missing or not finite, cache the
ensemble's answer for 30 s by (symbol, timeframe, model version, feature vector), and use
the ``champion`` model held by :class:`ModelHolder`, which follows the alias (hot reload).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from chaintrade.chain import ChainContext, StepTrace
from chaintrade.ensemble import Ensemble
from chaintrade.errors import FatalError, ModelNotFound, RetryableError
from chaintrade.feature_store import FEATURE_SERVICES, open_store
from chaintrade.features import (
    LOOKBACK_BARS,
    OnlineFeatures,
    feature_columns,
    to_timeframe,
)
from chaintrade.lake import read_bars
from chaintrade.registry import CHAMPION, alias_version, load_ensemble
from chaintrade.schemas import BarIn, Prediction
from chaintrade.settings import Settings
from serving import metrics
from serving.cache import CachedPrediction, PredictionCache, cache_key
from serving.feast_writer import FeastPushProcess
from serving.settings import ServingSettings

log = logging.getLogger(__name__)

SERVICE_NAME = "serving"
CLOCK_SKEW_NS = 60 * 10**9  # a closed bar may look up to this far (1 min) in the future
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


class NotEnoughHistory(FatalError):
    """The symbol has fewer closed bars than the features' warm-up needs."""

    reason = "not_enough_history"


class StaleFeatures(FatalError):
    """The online features are older than allowed or inconsistent between views."""

    reason = "stale_features"


class NoOnlineFeatures(FatalError):
    """The online store holds no features for the symbol."""

    reason = "no_online_features"


class BarOutOfOrder(FatalError):
    """The bar is older than the last bar seen for its symbol."""

    reason = "bar_out_of_order"


class InvalidFeatures(FatalError):
    """A feature is missing or not finite; the model is not called."""

    reason = "invalid_features"


class BarNotClosed(FatalError):
    """The bar's close lies in the future (or outside the representable range)."""

    reason = "bar_not_closed"


class TimeframeMismatch(FatalError):
    """The request's timeframe is not the one the champion was trained on."""

    reason = "timeframe_mismatch"


class ModelUnavailable(RetryableError):
    """No champion could be loaded (yet)."""

    reason = "model_unavailable"


@dataclass(frozen=True)
class ChampionModel:
    """The ensemble behind the ``champion`` alias: native boosters, weights, column indices."""

    name: str
    version: str
    ensemble: Ensemble
    columns: tuple[np.ndarray, ...] = field(default=())  # per member, indices into ``features``
    weights: tuple[float, ...] = ()  # per member: its validation confidence
    # ``features`` as indices into an ``OnlineFeatures`` row; None if one is not computed there.
    online_index: np.ndarray | None = None
    confidence: float = 0.0  # the ensemble's (mean of the members'), computed once

    @classmethod
    def from_ensemble(cls, name: str, version: str, ensemble: Ensemble) -> ChampionModel:
        index = {f: i for i, f in enumerate(ensemble.features)}
        columns = tuple(
            np.array([index[f] for f in m.spec.features], dtype=np.intp) for m in ensemble.members
        )
        weights = tuple(float(m.confidence) for m in ensemble.members)
        computed = {f: i for i, f in enumerate(feature_columns(ensemble.timeframe))}
        online_index = (
            np.array([computed[f] for f in ensemble.features], dtype=np.intp)
            if all(f in computed for f in ensemble.features)
            else None
        )
        return cls(name, version, ensemble, columns, weights, online_index, ensemble.confidence)

    @classmethod
    def load(cls, settings: Settings) -> ChampionModel:
        version = alias_version(settings, CHAMPION)
        if version is None:
            raise ModelNotFound(
                f"no '{CHAMPION}' version of model '{settings.model_name}' at "
                f"{settings.mlflow_uri}; train one first (make demo or chaintrade train)"
            )
        return cls.from_ensemble(settings.model_name, version, load_ensemble(settings, version))

    def combine(self, probabilities: list[float]) -> float:
        """``chaintrade.ensemble.combine`` for one row, in Python floats (same order of
        operations, so the same float), without numpy's per-call overhead."""
        total = 0.0
        for p, w in zip(probabilities, self.weights, strict=True):
            total += w * p
        weight = sum(self.weights)
        if weight <= 0:
            raise ModelUnavailable(f"champion v{self.version}: member confidences sum to zero")
        return total / weight

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.ensemble.features

    @property
    def timeframe(self) -> str:
        return self.ensemble.timeframe


class ModelHolder:
    """Holds the champion; a watcher thread swaps in a new one when the alias moves.

    Requests take ``holder.model`` once and use that object to the end, so a swap never
    drops or mixes a request; the old boosters are freed when the last request ends.
    """

    def __init__(self, settings: Settings, model: ChampionModel | None = None) -> None:
        self.settings = settings
        self.model = model or ChampionModel.load(settings)
        self._publish(None, self.model)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def reload(self) -> bool:
        """Load the champion if the alias moved; True when a new version is now served."""
        try:
            version = alias_version(self.settings, CHAMPION)
            if version is None or version == self.model.version:
                return False
            new = ChampionModel.from_ensemble(
                self.settings.model_name, version, load_ensemble(self.settings, version)
            )
        except Exception as exc:  # keep serving the old champion
            self.last_error = f"{type(exc).__name__}: {exc}"
            metrics.RELOADS.labels("error").inc()
            log.warning("champion reload failed, still serving v%s: %s", self.model.version, exc)
            return False
        old, self.model = self.model, new
        self._publish(old, new)
        metrics.RELOADS.labels("ok").inc()
        log.info("champion moved: serving v%s (was v%s)", new.version, old.version)
        return True

    def start(self, interval_s: float) -> None:
        if interval_s <= 0 or self._thread is not None:
            return

        def watch() -> None:
            while not self._stop.wait(interval_s):
                self.reload()

        self._thread = threading.Thread(target=watch, name="champion-watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    @staticmethod
    def _publish(old: ChampionModel | None, new: ChampionModel) -> None:
        if old is not None:
            metrics.MODEL_VERSION.labels(old.name, old.version).set(0)
        metrics.MODEL_VERSION.labels(new.name, new.version).set(1)


class _NullTrace(StepTrace):
    pass


@contextmanager
def _stage(
    chain: ChainContext | None, name: str, timings: dict[str, float], endpoint: str
) -> Iterator[StepTrace]:
    """Time one stage; with a chain, record it as a ``serving`` event named ``name``."""
    started = time.perf_counter()
    if chain is None:
        yield _NullTrace()
    else:
        with chain.step(SERVICE_NAME, name) as trace:
            yield trace
    elapsed = time.perf_counter() - started
    timings[name] = elapsed * 1e3
    metrics.observe_stage(endpoint, name.split(":")[0], elapsed)


class Predictor:
    """Per-symbol bar buffers, the champion, the cache and the background Feast writer."""

    def __init__(
        self,
        settings: Settings,
        serving: ServingSettings | None = None,
        *,
        model: ChampionModel | None = None,
    ) -> None:
        self.settings = settings
        self.serving = serving or ServingSettings()
        self.holder = ModelHolder(settings, model)
        self.store = open_store(settings)
        self.cache = PredictionCache(self.serving.cache_ttl_s, self.serving.cache_max_entries)
        self.writer = (
            FeastPushProcess(settings, self.serving) if self.serving.push_to_feast else None
        )
        self._online: dict[tuple[str, str], OnlineFeatures] = {}
        self._locks: dict[tuple[str, str], threading.Lock] = {}
        self._locks_lock = threading.Lock()
        # The first online read costs ~0.5 s (registry load): pay it at start-up.
        self.store.get_online_features(
            features=self.store.get_feature_service(FEATURE_SERVICES[self.model.timeframe]),
            entity_rows=[{"symbol": "__warmup__"}],
        )
        self.holder.start(self.serving.reload_interval_s)

    @property
    def model(self) -> ChampionModel:
        return self.holder.model

    def close(self) -> None:
        self.holder.stop()
        if self.writer is not None:
            self.writer.close()

    # -- the two entry points ---------------------------------------------------------

    def predict(self, bar: BarIn, chain: ChainContext | None = None) -> Prediction:
        """The ensemble's answer for the bar that just closed (features computed here)."""
        started = time.perf_counter()
        model = self.model
        self._check_timeframe(bar.timeframe, model)
        open_ns, close_ns = self._check_closed(bar)
        timings: dict[str, float] = {}
        with _stage(chain, "features", timings, "/predict") as trace:
            with self._lock(bar.symbol, bar.timeframe):
                row, n_bars = self._advance(bar, open_ns)
            if row is None:
                # Recursive indicators (EMA, Wilder) equal the batch values only after this.
                raise NotEnoughHistory(
                    f"{bar.symbol} has {n_bars} closed {bar.timeframe} bars; the features "
                    f"need {LOOKBACK_BARS} to equal the batch values — send more history first"
                )
            feature_ts = pd.Timestamp(close_ns, tz="UTC")
            vector = self._vector_from_row(row, model)
            if chain is not None:
                trace.metadata.update(symbol=bar.symbol, feature_timestamp=feature_ts.isoformat())
        if self.writer is not None:
            self.writer.submit(bar.symbol, bar.timeframe, close_ns, row)
        return self._answer(
            bar.symbol, bar.timeframe, model, vector, feature_ts, timings, started, chain,
            "/predict",
        )  # fmt: skip

    def predict_symbol(
        self, symbol: str, timeframe: str | None = None, chain: ChainContext | None = None
    ) -> Prediction:
        """The ensemble's answer from the latest online features of ``symbol`` in Feast."""
        started = time.perf_counter()
        model = self.model
        timeframe = timeframe or model.timeframe
        self._check_timeframe(timeframe, model)
        timings: dict[str, float] = {}
        with _stage(chain, "feature_read", timings, "/predict_symbol") as trace:
            with trace.dependency("feast", FEATURE_SERVICES[timeframe]):
                online = self.store.get_online_features(
                    features=self.store.get_feature_service(FEATURE_SERVICES[timeframe]),
                    entity_rows=[{"symbol": symbol}],
                ).to_dict(include_event_timestamps=True)
            vector, feature_ts = self._vector_from_online(online, model, symbol, timeframe)
            trace.metadata.update(symbol=symbol, feature_timestamp=feature_ts.isoformat())
        return self._answer(
            symbol, timeframe, model, vector, feature_ts, timings, started, chain,
            "/predict_symbol",
        )  # fmt: skip

    # -- ensemble ---------------------------------------------------------------------

    def _answer(
        self,
        symbol: str,
        timeframe: str,
        model: ChampionModel,
        vector: np.ndarray,
        feature_ts: pd.Timestamp,
        timings: dict[str, float],
        started: float,
        chain: ChainContext | None,
        endpoint: str,
    ) -> Prediction:
        key = cache_key(symbol, timeframe, model.version, vector)
        hit = self.cache.get(key)
        cached = hit is not None
        metrics.CACHE.labels("hit" if cached else "miss").inc()
        if hit is None:
            hit = self._ensemble(model, vector, timings, chain, endpoint)
            self.cache.put(key, hit)
        total = time.perf_counter() - started
        timings["total"] = total * 1e3
        metrics.observe_stage(endpoint, "total", total)
        if not math.isfinite(hit.p_up):
            raise ModelUnavailable(f"champion v{model.version} answered {hit.p_up} for {symbol}")
        p_up = min(max(hit.p_up, 0.0), 1.0)
        # Every field is built in range here (clipped), so skip re-validating the response.
        return Prediction.model_construct(
            symbol=symbol,
            prediction=p_up,
            strength=float(np.clip(2.0 * p_up - 1.0, -1.0, 1.0)),
            confidence=float(np.clip(model.confidence, 0.0, 1.0)),
            direction="up" if p_up >= 0.5 else "down",
            direction_probability=max(p_up, 1.0 - p_up),
            model_name=model.name,
            model_version=model.version,
            model_versions={m.spec.name: model.version for m in model.ensemble.members},
            feature_timestamp=feature_ts.to_pydatetime(),
            members={
                m.spec.name: p for m, p in zip(model.ensemble.members, hit.members, strict=True)
            },
            cached=cached,
            timings_ms=timings,
        )

    def _ensemble(
        self,
        model: ChampionModel,
        vector: np.ndarray,
        timings: dict[str, float],
        chain: ChainContext | None,
        endpoint: str,
    ) -> CachedPrediction:
        members = model.ensemble.members
        if chain is None:  # no per-member events to record: one timed stage for the model
            with _stage(None, "model", timings, endpoint):
                probs = [
                    m.predict_row(vector[cols])
                    for m, cols in zip(members, model.columns, strict=True)
                ]
                p_up = model.combine(probs)
            return CachedPrediction(p_up, tuple(probs))
        probs = []
        for member, cols in zip(members, model.columns, strict=True):
            with _stage(chain, f"member:{member.spec.name}", timings, endpoint) as trace:
                p = member.predict_row(vector[cols])
                trace.metadata.update(member=member.spec.name, model_version=model.version, p_up=p)
            probs.append(p)
        with _stage(chain, "ensemble", timings, endpoint) as trace:
            p_up = model.combine(probs)
            trace.metadata.update(model_version=model.version, p_up=p_up)
        return CachedPrediction(p_up, tuple(probs))

    # -- features ---------------------------------------------------------------------

    @staticmethod
    def _check_closed(bar: BarIn) -> tuple[int, int]:
        """Only closed bars (a future bar would move the symbol's state for good): the bar's
        open and close as UTC nanoseconds, in integers (pandas costs ~0.1 ms here)."""
        open_ns = (bar.time - _EPOCH) // _MICROSECOND * 1000
        close_ns = open_ns + to_timeframe(bar.timeframe).minutes * 60 * 10**9
        if close_ns > time.time_ns() + CLOCK_SKEW_NS:  # also every time beyond pandas' range
            raise BarNotClosed(
                f"the {bar.timeframe} bar at {bar.time.isoformat()} closes in the future"
            )
        return open_ns, close_ns

    @staticmethod
    def _check_timeframe(timeframe: str, model: ChampionModel) -> None:
        if timeframe != model.timeframe:
            raise TimeframeMismatch(
                f"champion v{model.version} predicts {model.timeframe} bars, got {timeframe}"
            )

    @staticmethod
    def _vector_from_row(row: np.ndarray, model: ChampionModel) -> np.ndarray:
        if model.online_index is None:
            computed = set(feature_columns(model.timeframe))
            missing = [f for f in model.feature_names if f not in computed]
            raise InvalidFeatures(f"features {missing} are not computed; the model was not called")
        vector = row[model.online_index]
        if not np.isfinite(vector).all():
            bad = [
                f for f, v in zip(model.feature_names, vector, strict=True) if not math.isfinite(v)
            ]
            raise InvalidFeatures(f"features {bad} are not finite; the model was not called")
        return vector

    def _vector_from_online(
        self, online: dict[str, list[Any]], model: ChampionModel, symbol: str, timeframe: str
    ) -> tuple[np.ndarray, pd.Timestamp]:
        values: list[float] = []
        stamps: set[int] = set()
        for name in model.feature_names:
            value = online.get(name, [None])[0]
            seen = online.get(f"{name}__ts", [None])[0]
            if value is None or seen is None:
                raise NoOnlineFeatures(
                    f"the online store has no {name} for {symbol}; send bars to /predict first "
                    "or materialize the features"
                )
            if not math.isfinite(float(value)):
                raise InvalidFeatures(f"feature {name} is {value!r}; the model was not called")
            values.append(float(value))
            stamps.add(int(seen.timestamp()) if isinstance(seen, datetime) else int(seen))
        if len(stamps) != 1:
            raise StaleFeatures(
                f"online features of {symbol} come from {len(stamps)} different bars; "
                "a push is in flight or a view is behind"
            )
        feature_ts = pd.Timestamp(datetime.fromtimestamp(stamps.pop(), UTC))
        max_age = to_timeframe(timeframe).duration * self.serving.max_feature_age_bars
        age = pd.Timestamp.now(tz="UTC") - feature_ts
        if age > max_age:
            raise StaleFeatures(
                f"online features of {symbol} are from {feature_ts.isoformat()}, {age} old "
                f"(the limit is {max_age}); the model was not called"
            )
        return np.asarray(values, dtype=np.float64), feature_ts

    # -- bar buffers ------------------------------------------------------------------

    def needs_history(self, symbol: str, timeframe: str) -> bool:
        """True until the symbol's feature state exists: its next bar reads the lake first."""
        return (symbol, timeframe) not in self._online

    def _lock(self, symbol: str, timeframe: str) -> threading.Lock:
        key = (symbol, timeframe)
        lock = self._locks.get(key)
        if lock is None:
            with self._locks_lock:
                lock = self._locks.setdefault(key, threading.Lock())
        return lock

    def _advance(self, bar: BarIn, open_ns: int) -> tuple[np.ndarray | None, int]:
        """The bar joins its symbol's online feature state: (its feature row or None, bars held)."""
        key = (bar.symbol, bar.timeframe)
        online = self._online.get(key)
        if online is None:
            online = self._online[key] = self._lake_history(bar)
        try:
            row = online.update(
                open_ns, bar.high, bar.low, bar.close,
                float(bar.tick_volume), float(bar.spread),
            )  # fmt: skip
        except ValueError as exc:
            raise BarOutOfOrder(f"bar at {bar.time} refused: {exc}") from exc
        return row, len(online.bars)

    def _lake_history(self, bar: BarIn) -> OnlineFeatures:
        """The state of the closed bars before ``bar`` in the raw lake (empty when it has none)."""
        history = read_bars(
            self.settings.lake_dir, symbols=[bar.symbol], timeframe=bar.timeframe, end=bar.time
        )
        if len(history):
            history = history[history["time"] < pd.Timestamp(bar.time)]
        if not len(history):
            return OnlineFeatures(bar.timeframe)
        return OnlineFeatures.from_bars(history.tail(LOOKBACK_BARS - 1), bar.timeframe)
