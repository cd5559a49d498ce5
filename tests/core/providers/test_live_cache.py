"""The shared TTL cache: many askers for one zone cost one HTTP call per TTL, sync and async alike."""

from __future__ import annotations

import asyncio
import gc
import threading
import tracemalloc
from datetime import timedelta

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.errors import ProviderUnavailableError
from carbon_sensors.providers.cache import TTLCache, shared_cache
from carbon_sensors.providers.http import AsyncTransport, RetryPolicy, SyncTransport
from carbon_sensors.providers.uk import UKCarbonIntensityProvider
from carbon_sensors.strategies import ThresholdStrategy

from .live_api_support import ask, options, recorded, url_of

NOW = "2018-01-20T12:10Z"


def serve_intensity(server: HTTPServer) -> None:
    server.expect_request("/intensity").respond_with_json(recorded("uk-carbonintensity", "intensity"))


def test_1000_concurrent_async_asks_for_one_zone_make_one_request(api: HTTPServer) -> None:
    """As 1,000 Airflow triggers in one event loop would: each builds its own provider, all share the cache."""
    serve_intensity(api)
    cache = TTLCache()
    base = options(url_of(api), NOW)
    providers = [UKCarbonIntensityProvider(**{**base, "cache": cache}) for _ in range(1000)]

    async def all_at_once() -> list[float]:
        readings = await asyncio.gather(*(p.alatest("GB") for p in providers))
        return [r.value for r in readings]

    values = asyncio.run(all_at_once())
    assert values == [263.0] * 1000
    assert len(api.log) == 1
    assert cache.stats.misses == 1 and cache.stats.hits == 999


def test_sync_and_async_callers_share_entries(api: HTTPServer) -> None:
    serve_intensity(api)
    uk = UKCarbonIntensityProvider(**options(url_of(api), NOW))
    assert uk.latest("GB").value == 263.0
    assert asyncio.run(uk.alatest("GB")).value == 263.0
    assert len(api.log) == 1


def test_concurrent_threads_wait_for_the_one_fetch(api: HTTPServer) -> None:
    serve_intensity(api)
    uk = UKCarbonIntensityProvider(**options(url_of(api), NOW))
    values: list[float] = []
    threads = [threading.Thread(target=lambda: values.append(uk.latest("GB").value)) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert values == [263.0] * 20
    assert len(api.log) == 1


def test_entries_expire_after_the_ttl(api: HTTPServer) -> None:
    serve_intensity(api)
    ticks = [0.0]
    cache = TTLCache(clock=lambda: ticks[0])
    uk = UKCarbonIntensityProvider(
        **{**options(url_of(api), NOW), "cache": cache, "ttl": timedelta(minutes=5)}
    )
    uk.latest("GB")
    ticks[0] = 299.0
    uk.latest("GB")
    assert len(api.log) == 1
    ticks[0] = 301.0
    uk.latest("GB")
    assert len(api.log) == 2


def failing_uk(
    server: HTTPServer, ticks: list[float], retries: int = 0, failure_ttl: float = 30.0
) -> UKCarbonIntensityProvider:
    """NESO provider on `server` with a settable cache clock, `retries` quick retries, failures kept."""
    retry = RetryPolicy(retries=retries, backoff=0.05)
    return UKCarbonIntensityProvider(
        **{
            **options(url_of(server), NOW),
            "transport": SyncTransport(retry=retry),
            "async_transport": AsyncTransport(retry=retry),
            "cache": TTLCache(clock=lambda: ticks[0]),
            "failure_ttl": timedelta(seconds=failure_ttl),
        }
    )


def test_a_failure_is_kept_for_failure_ttl_then_tried_again(api: HTTPServer, mode: str) -> None:
    """A failing provider blocked training: every decision repeated the whole retry sequence."""
    api.expect_oneshot_request("/intensity").respond_with_data("down", status=500)
    serve_intensity(api)
    ticks = [0.0]
    uk = failing_uk(api, ticks)
    for _ in range(3):
        with pytest.raises(ProviderUnavailableError, match="HTTP 500"):
            ask(mode, uk, "latest", "GB")
    assert len(api.log) == 1, "a kept failure must not ask upstream again"
    ticks[0] = 31.0
    assert ask(mode, uk, "latest", "GB").value == 263.0
    assert len(api.log) == 2


def test_failure_ttl_zero_keeps_no_failure(api: HTTPServer) -> None:
    api.expect_oneshot_request("/intensity").respond_with_data("down", status=500)
    serve_intensity(api)
    uk = failing_uk(api, [0.0], failure_ttl=0.0)
    with pytest.raises(ProviderUnavailableError):
        uk.latest("GB")
    assert uk.latest("GB").value == 263.0


def test_threads_and_async_askers_share_one_attempt_per_failure_period(api: HTTPServer) -> None:
    """B11: ten threads against a failing upstream made 40 requests. Now 10 threads and 50 tasks of an
    event loop in another thread, asking together, cost one attempt (1 request + 2 retries) per period."""
    api.expect_request("/intensity").respond_with_data("down", status=500)
    ticks = [0.0]
    uk = failing_uk(api, ticks, retries=2)

    def one_period() -> list[object]:
        outcomes: list[object] = []
        start = threading.Barrier(11)

        def sync_asker() -> None:
            start.wait()
            try:
                outcomes.append(uk.latest("GB"))
            except ProviderUnavailableError as exc:
                outcomes.append(exc)

        async def async_askers() -> None:
            start.wait()
            outcomes.extend(
                await asyncio.gather(*(uk.alatest("GB") for _ in range(50)), return_exceptions=True)
            )

        threads = [threading.Thread(target=sync_asker) for _ in range(10)]
        threads.append(threading.Thread(target=lambda: asyncio.run(async_askers())))
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        return outcomes

    first = one_period()
    assert len(first) == 60 and all(isinstance(o, ProviderUnavailableError) for o in first), first
    assert len(api.log) == 3, f"{len(api.log)} requests: expected one attempt with its 2 retries"
    assert len({id(o) for o in first}) == 60, "each asker gets its own copy of the error"
    assert len(one_period()) == 60 and len(api.log) == 3, "within failure_ttl nobody asks upstream"
    ticks[0] = 31.0
    assert len(one_period()) == 60 and len(api.log) == 6, "the next period makes one new attempt"


def test_memory_per_key_returns_to_baseline_after_clear() -> None:
    """B11: per-key locks grew without bound (20k keys: 5.1 MB) and clear() kept them."""
    cache = TTLCache(max_entries=50_000)
    keys = [("latest", f"ZONE-{i}") for i in range(20_000)]
    value = object()
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        for key in keys:
            cache.get_or_fetch(key, 300.0, lambda: value)
        grown = tracemalloc.get_traced_memory()[0] - baseline
        cache.clear()
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert len(cache) == 0
    assert grown > 500_000, f"the entries should have cost memory ({grown} bytes)"
    assert left < 50_000, f"{left} bytes still held after clear() (grew {grown})"


def test_concurrent_async_askers_all_get_the_error_and_it_is_kept(api: HTTPServer) -> None:
    api.expect_oneshot_request("/intensity").respond_with_data("down", status=500)
    serve_intensity(api)
    ticks = [0.0]
    uk = failing_uk(api, ticks)

    async def many() -> list[object]:
        return list(await asyncio.gather(*(uk.alatest("GB") for _ in range(50)), return_exceptions=True))

    outcomes = asyncio.run(many())
    assert all(isinstance(o, ProviderUnavailableError) for o in outcomes)
    assert len(api.log) == 1
    ticks[0] = 31.0
    assert asyncio.run(uk.alatest("GB")).value == 263.0


def test_providers_use_the_process_wide_cache_by_default() -> None:
    uk = UKCarbonIntensityProvider(base_url="http://127.0.0.1:9")
    assert uk.cache is shared_cache()


def test_a_failing_provider_costs_one_attempt_per_period_not_one_per_decision(api: HTTPServer) -> None:
    """A failing provider blocked training: each decision repeated the whole retry sequence (3.5 s)."""
    api.expect_request("/intensity/2018-01-20T12:10Z/pt24h").respond_with_data("down", status=500)
    ticks = [0.0]
    uk = failing_uk(api, ticks, retries=3)
    strategy = ThresholdStrategy(
        uk, "GB", pause_above=300, resume_below=200, max_pause=timedelta(hours=1), on_error="run"
    )
    decisions = [
        strategy.decide(pd.Timestamp(NOW), remaining_work=timedelta(hours=1), deadline=None)
        for _ in range(10)
    ]
    assert all(d.fallback and "fail open" in d.reason for d in decisions), decisions
    assert len(api.log) == 4, (
        f"{len(api.log)} requests for 10 decisions: expected one attempt (1 + 3 retries)"
    )
