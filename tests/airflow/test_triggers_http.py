"""CarbonIntensityTrigger against a real HTTP server on 127.0.0.1 serving recorded API responses.

Electricity Maps' recorded `latest` example is from 2018, so the connections allow old data (`max_age`);
everything else (auth header, parsing, the shared cache) is the production path.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from airflow_fixtures import DefineConnection
from pytest_httpserver import HTTPServer

from carbon_operators.triggers import CarbonIntensityTrigger
from carbon_sensors.providers.cache import shared_cache
from carbon_sensors.timeutil import utcnow

API = Path(__file__).resolve().parents[1] / "fixtures" / "api"
TOKEN = "em-test-token-4f1c9a"


def recorded(name: str) -> Any:
    return json.loads((API / name).read_text())


@pytest.fixture(autouse=True)
def empty_shared_cache() -> Iterator[None]:
    shared_cache().clear()
    yield
    shared_cache().clear()


@pytest.fixture
def em_conn(httpserver: HTTPServer, carbon_conn: DefineConnection) -> str:
    httpserver.expect_request(
        "/v3/carbon-intensity/latest", query_string="zone=DE", headers={"auth-token": TOKEN}
    ).respond_with_json(recorded("electricitymaps/carbon-intensity_latest.json"))
    return carbon_conn(
        "carbon_em",
        provider="electricitymaps",
        host=httpserver.url_for("/"),
        password=TOKEN,
        max_age="10000d",
    )


def trigger(
    conn_id: str, threshold: float, deadline_s: float = 30, zone: str = "DE", poll_s: float = 0.05
) -> CarbonIntensityTrigger:
    deadline = (utcnow() + timedelta(seconds=deadline_s)).isoformat()
    return CarbonIntensityTrigger(
        zone=zone, max_intensity=threshold, deadline=deadline, poll_seconds=poll_s, carbon_conn_id=conn_id
    )


async def first_events(triggers: list[CarbonIntensityTrigger]) -> list[dict[str, Any]]:
    async def first(t: CarbonIntensityTrigger) -> dict[str, Any]:
        async for event in t.run():
            return dict(event.payload)
        raise AssertionError("trigger ended without an event")

    return await asyncio.wait_for(asyncio.gather(*(first(t) for t in triggers)), 30)


def test_green_from_the_recorded_electricity_maps_reading(httpserver: HTTPServer, em_conn: str) -> None:
    [event] = asyncio.run(first_events([trigger(em_conn, threshold=350)]))
    assert event["status"] == "green"
    assert event["reading"]["value"] == 302  # the recorded carbonIntensity
    assert event["reading"]["period_start"] == "2018-04-25T18:07:00.350000+00:00"
    assert event["reading"]["source"] == "electricitymaps"
    assert TOKEN not in json.dumps(event)
    assert len(httpserver.log) == 1


def test_many_triggers_on_one_zone_cost_one_request_per_interval(
    httpserver: HTTPServer, em_conn: str
) -> None:
    # 300 deferred tasks, dirty grid (302 > 100): every one polls several times until its deadline.
    triggers = [trigger(em_conn, threshold=100, deadline_s=2.5, poll_s=0.2) for _ in range(300)]
    events = asyncio.run(first_events(triggers))
    assert {e["status"] for e in events} == {"deadline"}
    assert sum(e["polls"] for e in events) >= 3 * 300
    assert len(httpserver.log) == 1  # the provider's 5-minute TTL: one call for all of them


def test_uk_national_reading_from_the_recorded_response(
    httpserver: HTTPServer, carbon_conn: DefineConnection
) -> None:
    httpserver.expect_request("/intensity").respond_with_json(recorded("uk-carbonintensity/intensity.json"))
    conn = carbon_conn("carbon_uk", provider="uk", host=httpserver.url_for("/"), max_age="10000d")
    [event] = asyncio.run(first_events([trigger(conn, threshold=300, zone="GB")]))
    assert event["status"] == "green"
    assert event["reading"]["value"] == 263  # the recorded actual (forecast was 266)


def test_server_errors_end_in_an_error_event(httpserver: HTTPServer, carbon_conn: DefineConnection) -> None:
    httpserver.expect_request("/intensity").respond_with_json(
        recorded("uk-carbonintensity/error_500.json"), status=500
    )
    conn = carbon_conn("carbon_uk_down", provider="uk", host=httpserver.url_for("/"), max_age="10000d")
    t = trigger(conn, threshold=300, zone="GB")
    t.max_errors = 1  # each poll already retried the 500 with backoff inside the transport
    [event] = asyncio.run(first_events([t]))
    assert event["status"] == "error"
    assert "HTTP 500" in event["message"]
    assert event["polls"] == 1
    assert len(httpserver.log) == 4  # one request and the transport's three retries


def test_a_refused_token_is_reported_at_once(httpserver: HTTPServer, carbon_conn: DefineConnection) -> None:
    # No recorded Electricity Maps 401 body exists; this one is written here.
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"status": "error", "message": "Invalid auth-token"}, status=401
    )
    conn = carbon_conn(
        "carbon_em_bad", provider="electricitymaps", host=httpserver.url_for("/"), password=TOKEN
    )
    [event] = asyncio.run(first_events([trigger(conn, threshold=300)]))
    assert event["status"] == "error"
    assert "credentials refused" in event["message"]
    assert TOKEN not in event["message"]
    assert event["polls"] == 1
