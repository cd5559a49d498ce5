"""The plugin's upstream guard on a real loopback NESO API: normalised questions, negative cache, a bound.

Requests count as a logged-in user's (the login dependency is overridden, as in tests/airflow/test_plugin.py);
the real login check runs against a real api-server in test_plugin_auth.py.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from pytest_httpserver import HTTPServer
from uk_replay import UKReplayServer

from carbon_operators import plugin_source
from carbon_operators.plugin import PROVIDER_ENV, REQUIRE_LOGIN, app
from carbon_sensors.providers.cache import shared_cache


@pytest.fixture(autouse=True)
def logged_in() -> Iterator[None]:
    app.dependency_overrides[REQUIRE_LOGIN] = lambda: None
    shared_cache().clear()
    yield
    shared_cache().clear()
    app.dependency_overrides.clear()


@pytest.fixture
def uk(monkeypatch: pytest.MonkeyPatch) -> Iterator[UKReplayServer]:
    server = UKReplayServer().start()
    monkeypatch.setenv(PROVIDER_ENV, "uk")
    monkeypatch.setenv("CARBON_AWARE_UK_URL", server.url)
    yield server
    server.stop()


def test_distinct_hours_and_deadlines_share_one_upstream_call(uk: UKReplayServer) -> None:
    client = TestClient(app)
    for i in range(60):
        hours = 0.3 + i * 0.37  # 0.3 .. 22.1 h, every value different
        response = client.get("/api/forecast", params={"zone": "GB", "hours": hours})
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == math.ceil(hours)  # the blend is hourly
        if i == 0:
            history_calls = uk.calls_to["history"]  # our model's history (NESO serves 14 days a call)
            assert response.json()["source"].startswith("blend of uk"), "NESO's forecast and our model"
    assert uk.calls_to["forecast"] == 1
    assert uk.calls_to["history"] == history_calls, "the model's history is one question per hour"
    now = pd.Timestamp.now("UTC")
    for deadline in [(now + pd.Timedelta(hours=2 + i * 0.61)).isoformat() for i in range(20)]:
        assert client.get(
            "/api/plan", params={"zone": "GB", "deadline": deadline, "duration": "1h"}
        ).is_success
    assert uk.calls_to["forecast"] == 1, "plans up to 24 h ahead ask the same 24 h forecast"
    assert uk.calls_to["history"] == history_calls


def test_a_failed_upstream_call_is_remembered_briefly(
    httpserver: HTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    httpserver.expect_request("/v3/carbon-intensity/forecast").respond_with_json(
        {"status": "error", "message": "Invalid auth-token"}, status=401
    )
    monkeypatch.setenv(PROVIDER_ENV, "electricitymaps")
    monkeypatch.setenv("ELECTRICITYMAPS_API_TOKEN", "em-negative-cache-token")
    monkeypatch.setenv("CARBON_AWARE_ELECTRICITYMAPS_URL", httpserver.url_for("/"))
    client = TestClient(app)
    for hours in (1, 2.5, 7, 20):
        response = client.get("/api/forecast", params={"zone": "DE", "hours": hours})
        assert response.status_code == 502 and response.json()["error"] == "AuthenticationError"
    assert len(httpserver.log) == 1


def test_concurrent_upstream_calls_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    slow = UKReplayServer(delay=0.6).start()
    monkeypatch.setenv(PROVIDER_ENV, "uk")
    monkeypatch.setenv("CARBON_AWARE_UK_URL", slow.url)
    starts = [f"2023-03-{day:02d}T12:00Z" for day in range(1, 13)]  # 12 distinct questions
    try:
        statuses = asyncio.run(_ask_all(starts))
    finally:
        slow.stop()
    assert statuses == [200] * 12
    assert slow.calls_to["forecast"] == 12 and slow.most_in_flight == plugin_source.MAX_UPSTREAM


def test_a_question_that_cannot_start_soon_is_refused_not_queued(monkeypatch: pytest.MonkeyPatch) -> None:
    slow = UKReplayServer(delay=1.5).start()
    monkeypatch.setenv(PROVIDER_ENV, "uk")
    monkeypatch.setenv("CARBON_AWARE_UK_URL", slow.url)
    monkeypatch.setattr(plugin_source, "QUEUE_SECONDS", 0.3)
    starts = [f"2023-03-{day:02d}T12:00Z" for day in range(1, 9)]
    try:
        statuses = asyncio.run(_ask_all(starts))
    finally:
        slow.stop()
    assert sorted(statuses) == [200] * 4 + [502] * 4  # the refused asked no history either: no slot
    assert slow.calls_to["forecast"] == plugin_source.MAX_UPSTREAM


async def _ask_all(starts: list[str]) -> list[int]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://carbon", timeout=60) as client:
        answers = await asyncio.gather(
            *(client.get("/api/forecast", params={"zone": "GB", "hours": 3, "start": s}) for s in starts)
        )
    return [a.status_code for a in answers]
