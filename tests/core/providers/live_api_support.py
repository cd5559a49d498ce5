"""Helpers for the live-provider tests: recorded API responses, fixed clocks, provider options, both modes."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pytest_httpserver import HTTPServer

from carbon_sensors.providers.cache import TTLCache
from carbon_sensors.providers.http import AsyncTransport, RetryPolicy, SyncTransport

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "api"
FAST_RETRY = RetryPolicy(retries=2, backoff=0.01, max_wait=5.0)


def recorded(provider: str, name: str) -> Any:
    """A recorded response from tests/fixtures/api/<provider>/<name>.json, parsed."""
    return json.loads((FIXTURES / provider / f"{name}.json").read_text(encoding="utf-8"))


def clock(moment: str) -> Callable[[], pd.Timestamp]:
    """A fixed 'now' (the recordings are from the past, so freshness is judged at their time)."""
    fixed = pd.Timestamp(moment)
    return lambda: fixed


def url_of(server: HTTPServer) -> str:
    return server.url_for("/").rstrip("/")


def options(url: str, now: str, **extra: Any) -> dict[str, Any]:
    """Constructor keywords for a provider at `url`, with its own cache, fast retries and a fixed clock."""
    return {
        "base_url": url,
        "transport": SyncTransport(retry=FAST_RETRY, timeout=5.0),
        "async_transport": AsyncTransport(retry=FAST_RETRY, timeout=5.0),
        "cache": TTLCache(),
        "clock": clock(now),
        **extra,
    }


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def ask(mode: str, provider: Any, method: str, *args: Any) -> Any:
    """Call `method` (sync) or its `a`-prefixed twin (async, in a fresh event loop)."""
    if mode == "sync":
        return getattr(provider, method)(*args)
    return asyncio.run(getattr(provider, "a" + method)(*args))
