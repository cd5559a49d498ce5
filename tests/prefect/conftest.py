"""One Prefect test server (SQLite, subprocess) for the whole session, and helpers to read what runs left.

Starting the server takes ~15 s on this machine, so every Prefect test shares it.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator

# Keep Prefect's home (profiles, local storage) out of the user's ~/.prefect and skip telemetry.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="carbon-flows-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import pytest
from prefect.events import Event
from prefect.events.clients import AssertingPassthroughEventsClient
from prefect.events.worker import EventsWorker
from prefect.testing.utilities import prefect_test_harness


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def emitted_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], list[Event]]]:
    """Events still reach the server; Prefect's passthrough test client also keeps a copy to assert on."""
    AssertingPassthroughEventsClient.reset()
    worker = EventsWorker.instance(AssertingPassthroughEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)

    def drained() -> list[Event]:
        worker.drain()
        return [e for c in AssertingPassthroughEventsClient.all for e in c.events]

    yield drained
    worker.drain()


@pytest.fixture(scope="session")
def httpserver_listen_address() -> tuple[str, int]:
    return ("127.0.0.1", 0)
