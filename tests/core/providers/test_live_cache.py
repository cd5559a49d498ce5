"""The shared TTL cache: many askers for one zone cost one HTTP call per TTL, sync and async alike."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.errors import ProviderUnavailableError
from carbon_sensors.providers.cache import TTLCache, shared_cache
from carbon_sensors.providers.http import AsyncTransport, RetryPolicy, SyncTransport
from carbon_sensors.providers.uk import UKCarbonIntensityProvider

from .live_api_support import options, recorded, url_of

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


def test_errors_are_not_cached(api: HTTPServer) -> None:
    api.expect_oneshot_request("/intensity").respond_with_data("down", status=500)
    serve_intensity(api)
    no_retry = RetryPolicy(retries=0)
    uk = UKCarbonIntensityProvider(
        **{
            **options(url_of(api), NOW),
            "transport": SyncTransport(retry=no_retry),
            "async_transport": AsyncTransport(retry=no_retry),
        }
    )
    with pytest.raises(ProviderUnavailableError):
        uk.latest("GB")
    assert uk.latest("GB").value == 263.0


def test_concurrent_async_askers_all_get_the_error_and_the_next_ask_retries(api: HTTPServer) -> None:
    api.expect_oneshot_request("/intensity").respond_with_data("down", status=500)
    serve_intensity(api)
    no_retry = RetryPolicy(retries=0)
    uk = UKCarbonIntensityProvider(
        **{**options(url_of(api), NOW), "async_transport": AsyncTransport(retry=no_retry)}
    )

    async def many() -> list[object]:
        return list(await asyncio.gather(*(uk.alatest("GB") for _ in range(50)), return_exceptions=True))

    outcomes = asyncio.run(many())
    assert all(isinstance(o, ProviderUnavailableError) for o in outcomes)
    assert len(api.log) == 1
    assert asyncio.run(uk.alatest("GB")).value == 263.0


def test_providers_use_the_process_wide_cache_by_default() -> None:
    uk = UKCarbonIntensityProvider(base_url="http://127.0.0.1:9")
    assert uk.cache is shared_cache()
