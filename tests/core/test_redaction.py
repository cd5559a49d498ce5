"""No credential in any text that leaves the process, even where the text is cut short.

A 40-character token (and a `https://user:pass@host` base URL with a 40-character password) goes through
every output path of the core: provider errors from a real loopback API that echoes the credential at
offsets where the message excerpts (80, 120, 300 characters) cut through it, the log records those failures
write, a strategy's fallback `Decision.reason`, `repr` of the provider, and `short_repr`. No 6-character
piece of the credential may survive in any of them.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pandas as pd
import pytest
from pytest_httpserver import HTTPServer

from carbon_sensors.decision import Decision
from carbon_sensors.errors import ProviderError
from carbon_sensors.providers.cache import TTLCache
from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.providers.http import AsyncTransport, RetryPolicy, SyncTransport
from carbon_sensors.redact import clip, redact
from carbon_sensors.strategies import ThresholdStrategy
from carbon_sensors.validation import short_repr

TOKEN = "Zq9xLmN4pQ7rT2vW8yB3cD6fG1hJ5kL0mN9pR4sT"
PASSWORD = "Hk3mW9qZ2xV7nB4cT8yL1pR6sD0fG5jQ2wE9rT3u"
NOW = "2024-06-18T18:40:00Z"
FAST = RetryPolicy(retries=1, backoff=0.01)
# Paddings that put each excerpt's cut (80, 120 and 300 characters) inside the credential, at several places.
PADS = [limit - back for limit in (80, 120, 300) for back in (38, 25, 12, 3)]


def leaked(text: str, secret: str) -> list[str]:
    """Every 6-character piece of `secret` found in `text` (none may be)."""
    return [secret[i : i + 6] for i in range(len(secret) - 5) if secret[i : i + 6] in text]


def provider(url: str) -> ElectricityMapsProvider:
    return ElectricityMapsProvider(
        token=TOKEN,
        base_url=url,
        transport=SyncTransport(retry=FAST, timeout=5.0),
        async_transport=AsyncTransport(retry=FAST, timeout=5.0),
        cache=TTLCache(),
        clock=lambda: pd.Timestamp(NOW),
    )


def outputs_of_a_failure(em: ElectricityMapsProvider, caplog: pytest.LogCaptureFixture) -> list[str]:
    """The error's text, repr and args, the strategy's fallback decision, and every log record written."""
    with pytest.raises(ProviderError) as raised:
        em.latest("DE")
    strategy = ThresholdStrategy(em, "DE", pause_above=300, resume_below=200, max_pause=timedelta(hours=1))
    decision = strategy.decide(pd.Timestamp(NOW), remaining_work=timedelta(hours=1), deadline=None)
    assert decision.fallback
    logs = [record.getMessage() for record in caplog.records]
    return [str(raised.value), repr(raised.value), *map(str, raised.value.args), decision.reason,
            str(decision.to_dict()), repr(em), *logs]  # fmt: skip


@pytest.mark.parametrize("pad", PADS)
def test_a_token_echoed_by_the_api_never_survives_a_cut(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture, pad: int
) -> None:
    echoed = "x" * pad + TOKEN + " is not a valid token for this zone"
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_json(
        {"status": "error", "message": echoed}, status=401
    )
    caplog.set_level(logging.INFO)
    texts = outputs_of_a_failure(provider(httpserver.url_for("/").rstrip("/")), caplog)
    assert "credentials refused" in texts[0]
    assert all(leaked(t, TOKEN) == [] for t in texts), [t for t in texts if leaked(t, TOKEN)]


@pytest.mark.parametrize("pad", PADS)
def test_a_token_in_a_non_json_body_never_survives_a_cut(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture, pad: int
) -> None:
    body = "<html>" + "y" * pad + TOKEN + "</html>"
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(body, status=400)
    caplog.set_level(logging.INFO)
    texts = outputs_of_a_failure(provider(httpserver.url_for("/").rstrip("/")), caplog)
    assert "request rejected" in texts[0]
    assert all(leaked(t, TOKEN) == [] for t in texts)
    httpserver.clear()
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data(body, status=200)
    with pytest.raises(ProviderError, match="malformed JSON") as raised:
        provider(httpserver.url_for("/").rstrip("/")).latest("DE")
    assert leaked(str(raised.value), TOKEN) == []


def test_a_user_password_base_url_never_shows_its_password(
    httpserver: HTTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    httpserver.expect_request("/v3/carbon-intensity/latest").respond_with_data("down", status=503)
    base = f"http://carbonuser:{PASSWORD}@{httpserver.host}:{httpserver.port}"  # loopback: no TLS
    caplog.set_level(logging.INFO)
    texts = outputs_of_a_failure(provider(base), caplog)
    assert any("retrying" in t for t in texts), "the transport's retry warning is among the logs checked"
    assert f"http://***@{httpserver.host}:" in texts[0]
    assert all(leaked(t, PASSWORD) == [] for t in texts), [t for t in texts if leaked(t, PASSWORD)]
    assert httpserver.log[0][0].authorization is not None  # the password still went to its own host


@pytest.mark.parametrize("pad", PADS)
def test_cut_texts_built_in_our_code_are_redacted_before_the_cut(pad: int) -> None:
    url = f"https://carbonuser:{PASSWORD}@api.example/v3"
    for secret, text in ((TOKEN, "z" * pad + f"token={TOKEN} rest"), (PASSWORD, "z" * pad + url)):
        limit = pad + 20  # the cut falls inside the credential
        outputs = [
            clip(text, limit),
            short_repr(text),
            Decision.run(text).reason,
            Decision.run(clip(text, limit)).reason,
            redact(text),
        ]
        assert all(leaked(o, secret) == [] for o in outputs), outputs


def test_log_records_are_redacted_where_they_are_made(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    logging.getLogger("some.library").info(
        "calling %s with Authorization: Bearer %s", "https://u:pw-9876543210@h/x", TOKEN
    )
    [record] = [r for r in caplog.records if r.name == "some.library"]
    assert leaked(record.getMessage(), TOKEN) == [] and "pw-9876543210" not in record.getMessage()
    assert record.getMessage().startswith("calling https://***@h/x with Authorization: ")
