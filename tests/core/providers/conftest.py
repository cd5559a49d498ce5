"""Fixtures of the live-provider tests: a real HTTP server on 127.0.0.1, and sync/async modes.

(This folder is a package so that mypy tells this conftest from tests/airflow's.)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pytest_httpserver import HTTPServer


@pytest.fixture(scope="session")
def api_server() -> Iterator[HTTPServer]:
    """A real HTTP server on 127.0.0.1 (ephemeral port); stopping one takes 0.5 s, so it is shared."""
    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def api(api_server: HTTPServer) -> Iterator[HTTPServer]:
    """The shared server with no expectations and an empty log, for one test."""
    api_server.clear()
    yield api_server
    api_server.clear()


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run a test through the requests transport and through the httpx one."""
    return str(request.param)
