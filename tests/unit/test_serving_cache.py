"""The prediction cache and the ensemble arithmetic the service relies on."""

from __future__ import annotations

import numpy as np
import pytest

from chaintrade.ensemble import combine
from serving.cache import CachedPrediction, PredictionCache, cache_key


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_hit_within_ttl_and_miss_after_it() -> None:
    clock = FakeClock()
    cache = PredictionCache(ttl_s=30.0, clock=clock)
    key = cache_key("EURUSD", "H1", "3", np.array([0.1, 0.2]))
    cache.put(key, CachedPrediction(0.6, (0.55, 0.65)))
    clock.now += 29.9
    assert cache.get(key) == CachedPrediction(0.6, (0.55, 0.65))
    clock.now += 0.2
    assert cache.get(key) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_cache_key_separates_symbol_version_and_any_feature_bit() -> None:
    v = np.array([0.1, 0.2])
    base = cache_key("EURUSD", "H1", "3", v)
    assert base == cache_key("EURUSD", "H1", "3", v.copy())
    assert base != cache_key("GBPUSD", "H1", "3", v)
    assert base != cache_key("EURUSD", "H1", "4", v)  # a hot reload never serves old answers
    assert base != cache_key("EURUSD", "H1", "3", np.nextafter(v, 1.0))


def test_cache_is_bounded_least_recently_used_first() -> None:
    cache = PredictionCache(ttl_s=30.0, max_entries=2)
    for i in range(3):
        cache.put(i, CachedPrediction(0.5, ()))
    assert len(cache) == 2 and cache.get(0) is None and cache.get(2) is not None


def test_zero_ttl_disables_the_cache() -> None:
    cache = PredictionCache(ttl_s=0.0)
    cache.put("k", CachedPrediction(0.5, ()))
    assert cache.get("k") is None


def test_combine_is_the_confidence_weighted_mean_of_the_seed() -> None:
    # 0.8*0.6 + 0.4*0.2 + 0.2*0.9 = 0.74, over 1.2
    p = combine(np.array([[0.8], [0.4], [0.2]]), np.array([0.6, 0.2, 0.9]))
    assert p[0] == pytest.approx((0.8 * 0.6 + 0.4 * 0.2 + 0.2 * 0.9) / 1.7)
    assert combine(np.array([[0.3], [0.7]]), np.array([1.0, 1.0]))[0] == pytest.approx(0.5)


def test_combine_refuses_when_no_member_may_vote() -> None:
    with pytest.raises(ValueError, match="sum to zero"):
        combine(np.array([[0.5]]), np.array([0.0]))
