"""B3: a malformed payload made `CarbonIntensityTrigger` raise (OverflowError, RecursionError) instead of
emitting its error event. Real HTTP on 127.0.0.1 serving the recorded Electricity Maps reading, broken."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from airflow_fixtures import DefineConnection
from pytest_httpserver import HTTPServer
from test_triggers_http import TOKEN, first_events, recorded, trigger

from carbon_sensors.providers.cache import shared_cache


@pytest.fixture(autouse=True)
def empty_shared_cache() -> Iterator[None]:
    shared_cache().clear()
    yield
    shared_cache().clear()


def latest_with(value: str) -> bytes:
    text = json.dumps(recorded("electricitymaps/carbon-intensity_latest.json"))
    return text.replace('"carbonIntensity": 302', f'"carbonIntensity": {value}').encode()


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (latest_with("1" + "0" * 400), ("carbonIntensity", "10000")),  # was OverflowError
        (latest_with("-3"), ("carbonIntensity", "-3", ">= 0")),
        (latest_with("Infinity"), ("carbonIntensity", "inf")),
        (b"[" * 100_000, ("nested too deeply",)),  # was RecursionError
    ],
    ids=["10**400", "negative", "Infinity", "deep-nesting"],
)
def test_a_malformed_reading_ends_in_an_error_event(
    httpserver: HTTPServer, carbon_conn: DefineConnection, body: bytes, words: tuple[str, ...]
) -> None:
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(
        body, content_type="application/json"
    )
    conn = carbon_conn(
        "carbon_em_broken",
        provider="electricitymaps",
        host=httpserver.url_for("/"),
        password=TOKEN,
        max_age="10000d",
    )
    [event] = asyncio.run(first_events([trigger(conn, threshold=350)]))
    assert event["status"] == "error", event
    assert event["polls"] == 3  # max_errors polls in a row
    for word in ("electricitymaps", *words):
        assert word in event["message"], event["message"]
    assert len(httpserver.log) == 1, "the failure is kept for failure_ttl: one request for all three polls"
