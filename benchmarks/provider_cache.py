"""How much the shared TTL cache saves: N concurrent async askers for one zone vs HTTP requests made.

Serves the recorded NESO `/intensity` response from a real HTTP server on 127.0.0.1 and prints one JSON
document: requests made, wall time per batch, per-call latency cached vs uncached (sync and async), and
ten threads asking together while the upstream fails (500, the default retries): requests and slowest wait.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from pytest_httpserver import HTTPServer

from carbon_sensors.errors import ProviderUnavailableError
from carbon_sensors.providers.cache import TTLCache
from carbon_sensors.providers.uk import UKCarbonIntensityProvider

RECORDED = (
    Path(__file__).resolve().parents[1]
    / "tests"
    / "fixtures"
    / "api"
    / "uk-carbonintensity"
    / "intensity.json"
)
NOW = pd.Timestamp("2018-01-20T12:10Z")


def provider(url: str, cache: TTLCache, ttl: timedelta = timedelta(minutes=5)) -> UKCarbonIntensityProvider:
    return UKCarbonIntensityProvider(base_url=url, cache=cache, ttl=ttl, clock=lambda: NOW)


def concurrent_batch(server: HTTPServer, url: str, askers: int) -> dict[str, Any]:
    server.clear_log()
    cache = TTLCache()
    providers = [provider(url, cache) for _ in range(askers)]

    async def run() -> None:
        await asyncio.gather(*(p.alatest("GB") for p in providers))

    began = time.perf_counter()
    asyncio.run(run())
    wall = time.perf_counter() - began
    return {"askers": askers, "http_requests": len(server.log), "wall_s": round(wall, 4)}


def latency(url: str, *, cached: bool, calls: int = 50) -> dict[str, float]:
    uk = provider(url, TTLCache(), ttl=timedelta(minutes=5) if cached else timedelta(0))
    uk.latest("GB")
    began = time.perf_counter()
    for _ in range(calls):
        uk.latest("GB")
    sync_us = (time.perf_counter() - began) / calls * 1e6

    async def run() -> float:
        await uk.alatest("GB")
        start = time.perf_counter()
        for _ in range(calls):
            await uk.alatest("GB")
        return (time.perf_counter() - start) / calls * 1e6

    return {"sync_us_per_call": round(sync_us, 1), "async_us_per_call": round(asyncio.run(run()), 1)}


def failing_upstream(threads: int = 10) -> dict[str, Any]:
    """One fetch alone, then `threads` threads at once, against a server answering 500 (default retries)."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        server.expect_request("/intensity").respond_with_data("down", status=500)
        url = server.url_for("/").rstrip("/")

        def timed_ask(cache: TTLCache, waits: list[float]) -> None:
            began = time.perf_counter()
            try:
                provider(url, cache).latest("GB")
            except ProviderUnavailableError:
                waits.append(time.perf_counter() - began)

        alone: list[float] = []
        timed_ask(TTLCache(), alone)
        one_fetch_requests = len(server.log)
        server.clear_log()
        waits: list[float] = []
        cache = TTLCache()
        workers = [threading.Thread(target=timed_ask, args=(cache, waits)) for _ in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        return {
            "threads": threads,
            "one_fetch_requests": one_fetch_requests,
            "one_fetch_s": round(alone[0], 2),
            "upstream_requests": len(server.log),
            "slowest_wait_s": round(max(waits), 2),
            "failed_asks": len(waits),
        }
    finally:
        server.stop()


def main() -> None:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    try:
        server.expect_request("/intensity").respond_with_json(json.loads(RECORDED.read_text()))
        url = server.url_for("/").rstrip("/")
        doc = {
            "benchmark": "provider_cache",
            "what": "concurrent async latest() for one zone through the shared TTL cache, loopback HTTP",
            "batches": [concurrent_batch(server, url, n) for n in (1, 100, 1000, 10000)],
            "cached_latency": latency(url, cached=True),
            "uncached_latency": latency(url, cached=False),
            "failing_upstream": failing_upstream(),
        }
    finally:
        server.stop()
    print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
