"""The prediction cache: 30 s TTL, keyed by symbol, model version and the feature vector."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class CachedPrediction:
    """What the ensemble answered for one vector: P(up) and the members' P(up)s."""

    p_up: float
    members: tuple[float, ...]


def cache_key(symbol: str, timeframe: str, model_version: str, vector: np.ndarray) -> Hashable:
    """Equal only for the same symbol, timeframe, model version and bit-identical features."""
    return (symbol, timeframe, model_version, np.ascontiguousarray(vector, np.float64).tobytes())


class PredictionCache:
    """A bounded LRU with a time-to-live; thread-safe. ``ttl_s == 0`` disables it."""

    def __init__(
        self,
        ttl_s: float = 30.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._clock = clock
        self._items: OrderedDict[Hashable, tuple[float, CachedPrediction]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> CachedPrediction | None:
        now = self._clock()
        with self._lock:
            item = self._items.get(key)
            if item is None or item[0] <= now:
                if item is not None:
                    del self._items[key]
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[1]

    def put(self, key: Hashable, value: CachedPrediction) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._items[key] = (self._clock() + self.ttl_s, value)
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __len__(self) -> int:
        return len(self._items)
