"""No credential in a task's XCom or log: a failing provider's error, cut where it echoes the token, fails open.

The connection carries a 40-character token and a base URL with a 40-character `user:password@`; the loopback
API answers 400 with the token at offsets where the error excerpts (120 and 300 characters) cut through it.
The sensor fails open and returns the error message in its XCom payload: no 6-character piece survives.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from airflow_fixtures import DefineConnection
from pytest_httpserver import HTTPServer

from carbon_operators.sensors import CarbonIntensitySensor
from carbon_sensors.providers.cache import shared_cache

TOKEN = "Vb7nM2xQ9kL4pR8sT1wY6zA3cF5hJ0gD2eK7mN4q"
PASSWORD = "Tq8wE3rY6uI1oP4aS7dF0gH2jK5lZ9xC3vB6nM1q"


def leaked(text: str, secret: str) -> list[str]:
    return [secret[i : i + 6] for i in range(len(secret) - 5) if secret[i : i + 6] in text]


@pytest.mark.parametrize("pad", [90, 110, 270, 290])
def test_the_xcom_payload_and_the_log_of_a_failed_open_sensor_hold_no_credential(
    httpserver: HTTPServer, carbon_conn: DefineConnection, caplog: pytest.LogCaptureFixture, pad: int
) -> None:
    shared_cache().clear()
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(
        "w" * pad + TOKEN + " was refused for this request", status=400
    )
    conn = carbon_conn(
        "carbon_redact",
        provider="electricitymaps",
        host=f"http://carbonuser:{PASSWORD}@{httpserver.host}:{httpserver.port}/",
        password=TOKEN,
        max_age="10000d",
    )
    caplog.set_level(logging.INFO)
    sensor = CarbonIntensitySensor(
        task_id="green", zone="DE", max_intensity=250.0, carbon_conn_id=conn, mode="poke", poke_interval=1
    )
    result: Any = sensor.execute({})
    assert result["status"] == "error" and "request rejected" in result["message"]
    payload = json.dumps(result)
    logs = "\n".join(record.getMessage() for record in caplog.records)
    for secret in (TOKEN, PASSWORD):
        assert leaked(payload, secret) == [], payload
        assert leaked(logs, secret) == [], logs
    assert httpserver.log[0][0].headers.get("auth-token") == TOKEN  # it did go to the configured host
