"""Credential blocks: saved to and loaded from a real Prefect server, secrets never shown."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from prefect.blocks.core import Block
from prefect.client.orchestration import get_client
from pydantic import SecretStr
from pytest_httpserver import HTTPServer

import carbon_flows
from carbon_flows.credentials import ElectricityMapsCredentials, WattTimeCredentials
from carbon_flows.sources import load_credentials, resolve_source
from carbon_sensors.errors import InvalidInputError, MissingCredentialsError, StaleDataError
from carbon_sensors.providers.trace import TraceProvider

TOKEN = "em-token-7f3a9c-do-not-print"
PASSWORD = "wt-password-42-do-not-print"
API_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "api"


def test_blocks_save_load_roundtrip() -> None:
    ElectricityMapsCredentials(api_token=SecretStr(TOKEN), base_url="http://127.0.0.1:9/v3").save(
        "roundtrip", overwrite=True
    )
    WattTimeCredentials(username="alice", password=SecretStr(PASSWORD)).save("roundtrip", overwrite=True)

    em = ElectricityMapsCredentials.load("roundtrip")
    wt = Block.load("watttime-credentials/roundtrip")

    assert isinstance(em, ElectricityMapsCredentials)
    assert em.api_token.get_secret_value() == TOKEN
    assert em.base_url == "http://127.0.0.1:9/v3"
    assert isinstance(wt, WattTimeCredentials)
    assert (wt.username, wt.password.get_secret_value()) == ("alice", PASSWORD)
    assert isinstance(load_credentials("electricity-maps-credentials/roundtrip"), ElectricityMapsCredentials)


def test_secrets_never_printed(caplog: pytest.LogCaptureFixture) -> None:
    em = ElectricityMapsCredentials(api_token=SecretStr(TOKEN))
    wt = WattTimeCredentials(username="alice", password=SecretStr(PASSWORD))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("carbon_flows.test").info("blocks: %s %r %s %r", em, em, wt, wt)
        em.save("printing", overwrite=True)
    shown = " ".join(
        [str(em), repr(em), str(wt), repr(wt), em.model_dump_json(), wt.model_dump_json(), caplog.text]
    )
    assert TOKEN not in shown and PASSWORD not in shown
    assert "alice" in shown  # the username is not a secret


def test_server_stores_secret_masked() -> None:
    ElectricityMapsCredentials(api_token=SecretStr(TOKEN)).save("masked", overwrite=True)
    with get_client(sync_client=True) as client:
        document = client.read_block_document_by_name(
            "masked", "electricity-maps-credentials", include_secrets=False
        )
    assert TOKEN not in str(document.data)
    assert document.data["api_token"] == "********"


def test_collection_registers_block_types() -> None:
    # The `prefect.collections` entry point imports carbon_flows, which must import the blocks module.
    assert carbon_flows.ElectricityMapsCredentials is ElectricityMapsCredentials
    from importlib.metadata import entry_points

    (entry,) = [e for e in entry_points(group="prefect.collections") if e.name == "carbon_flows"]
    assert entry.load() is carbon_flows


def test_missing_block_is_a_clear_error() -> None:
    with pytest.raises(
        MissingCredentialsError, match=r"no electricity-maps-credentials block named 'nope'.*save"
    ):
        resolve_source("electricity-maps-credentials/nope")


@pytest.mark.parametrize("spec", ["electricitymap", "unknown-type/x", "electricity-maps-credentials/"])
def test_unknown_source_name_lists_valid_forms(spec: str) -> None:
    with pytest.raises(InvalidInputError, match=r"'trace'.*watttime-credentials/<name>"):
        resolve_source(spec)


def test_trace_sources() -> None:
    default = resolve_source("trace")
    neso = resolve_source("trace:neso-2023")
    assert isinstance(default, TraceProvider) and default.dataset is None
    assert isinstance(neso, TraceProvider) and neso.dataset == "neso-2023"
    assert neso.signal("GB").resolution.total_seconds() == 1800


def test_block_builds_provider_that_sends_the_token(httpserver: HTTPServer) -> None:
    body = json.loads((API_FIXTURES / "electricitymaps" / "carbon-intensity_forecast.json").read_text())
    httpserver.expect_request(
        "/v3/carbon-intensity/forecast", query_string={"zone": "DE"}, headers={"auth-token": TOKEN}
    ).respond_with_json(body)
    ElectricityMapsCredentials(api_token=SecretStr(TOKEN), base_url=httpserver.url_for("/").rstrip("/")).save(
        "live", overwrite=True
    )

    source = resolve_source("electricity-maps-credentials/live")
    # The recording is from 2018, so the provider (rightly) calls it stale; what matters here is that the
    # block's token reached the API and stays out of every message.
    with pytest.raises(StaleDataError) as caught:
        source.forecast("DE")

    ((request, _),) = httpserver.log
    assert request.headers["auth-token"] == TOKEN
    assert TOKEN not in repr(source) and TOKEN not in str(caught.value)
