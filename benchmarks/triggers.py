"""Trigger scale: N polling `CarbonIntensityTrigger`s on one zone in one event loop, as a triggerer runs them.

A local HTTP server on 127.0.0.1 serves the recorded Electricity Maps `latest` response and counts requests.
The grid never turns green (threshold below the recorded value), so every trigger keeps polling. Prints JSON:
requests_per_interval (target 1: the shared per-process cache), loop_lag_p99_ms (target < 100: how late a
10 ms timer fires while all triggers run) and bytes_per_trigger (tracemalloc, steady state).

    python benchmarks/triggers.py [--triggers 10000] [--poll-seconds 2] [--intervals 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RECORDED = REPO / "tests" / "fixtures" / "api" / "electricitymaps" / "carbon-intensity_latest.json"
CONN_ID = "carbon_bench"


class RecordedServer:
    """Serves one recorded JSON body on every GET and counts the requests."""

    def __init__(self, body: bytes) -> None:
        self.requests = 0
        lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with lock:
                    outer.requests += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordedServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


async def lag_monitor(samples: list[float], stop: asyncio.Event, tick: float = 0.01) -> None:
    """Record how late a `tick`-second sleep wakes up: the event loop's responsiveness."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(tick)
        samples.append((time.perf_counter() - start - tick) * 1000.0)


async def run_until_first_event(trigger: Any) -> dict[str, Any]:
    async for event in trigger.run():
        return dict(event.payload)
    raise RuntimeError("a trigger ended without an event")


async def bench(n: int, poll: float, intervals: int, server: RecordedServer) -> dict[str, Any]:
    from carbon_operators.triggers import CarbonIntensityTrigger
    from carbon_sensors.providers.cache import shared_cache
    from carbon_sensors.timeutil import utcnow

    max_setup = 120.0

    deadline = (utcnow() + timedelta(hours=1)).isoformat()  # ended by cancellation after the measurement
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    started = time.perf_counter()
    triggers = [
        CarbonIntensityTrigger(
            zone="DE", max_intensity=1.0, deadline=deadline, poll_seconds=poll, carbon_conn_id=CONN_ID
        )
        for _ in range(n)
    ]
    tasks = [asyncio.create_task(run_until_first_event(t)) for t in triggers]
    cache = shared_cache()
    while cache.stats.hits + cache.stats.misses < 2 * n:  # until every trigger has its connection and a poll
        if time.perf_counter() - started > max_setup:
            raise RuntimeError(
                f"only {cache.stats.hits + cache.stats.misses} of {n} triggers polled in {max_setup}s"
            )
        await asyncio.sleep(0.1)
    setup = time.perf_counter() - started
    await asyncio.sleep(poll)  # one more interval: steady state
    bytes_per_trigger = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()

    samples: list[float] = []
    stop = asyncio.Event()
    monitor = asyncio.create_task(lag_monitor(samples, stop))
    lookups_before = cache.stats.hits + cache.stats.misses
    requests_before, window_start = server.requests, time.perf_counter()
    await asyncio.sleep(intervals * poll)
    requests_in_window, window = server.requests - requests_before, time.perf_counter() - window_start
    polls_in_window = cache.stats.hits + cache.stats.misses - lookups_before
    stop.set()
    await monitor
    for task in tasks:
        task.cancel()  # as the triggerer cancels triggers whose task went away
    ended = await asyncio.gather(*tasks, return_exceptions=True)
    samples.sort()
    return {
        "triggers": n,
        "zone": "DE",
        "poll_seconds": poll,
        "intervals_measured": round(window / poll, 2),
        "requests_in_window": requests_in_window,
        "requests_per_interval": round(requests_in_window / (window / poll), 3),
        "requests_total": server.requests,
        "loop_lag_p50_ms": round(statistics.median(samples), 2),
        "loop_lag_p99_ms": round(samples[int(0.99 * (len(samples) - 1))], 2),
        "loop_lag_max_ms": round(samples[-1], 2),
        "lag_samples": len(samples),
        "bytes_per_trigger": round(bytes_per_trigger),
        "setup_seconds": round(setup, 1),
        "polls_in_window": polls_in_window,
        "polls_per_trigger_per_interval": round(polls_in_window / n / (window / poll), 3),
        "ended_early": sum(not isinstance(e, asyncio.CancelledError) for e in ended),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triggers", type=int, default=10_000)
    parser.add_argument("--poll-seconds", type=float, default=2.0)
    parser.add_argument("--intervals", type=int, default=5)
    args = parser.parse_args()
    os.environ.setdefault("AIRFLOW_HOME", tempfile.mkdtemp(prefix="carbon-bench-airflow-"))
    with RecordedServer(RECORDED.read_bytes()) as server:
        os.environ[f"AIRFLOW_CONN_{CONN_ID.upper()}"] = json.dumps(
            {
                "conn_type": "carbon_intensity",
                "host": server.url,
                "password": "bench-token",
                # the recorded response is from 2018: allow its age; one API call per poll interval
                "extra": {
                    "provider": "electricitymaps",
                    "max_age": "10000d",
                    "cache_ttl": f"{args.poll_seconds}s",
                },
            }
        )
        # Airflow logs to stdout; keep stdout for the JSON document alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = asyncio.run(bench(args.triggers, args.poll_seconds, args.intervals, server))
    result.update(
        python=platform.python_version(),
        cpu_count=os.cpu_count(),
        load_average_1m=round(os.getloadavg()[0], 2),  # other processes competing for the CPUs
        platform=sys.platform,
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
