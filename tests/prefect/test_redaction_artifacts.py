"""No credential in a Prefect artifact: the report and epoch table, written to and read back from the server.

The texts put in are cut where they hold a 40-character token or a `https://user:pass@host` URL's
40-character password (as an error excerpt would be); no 6-character piece of either may reach the artifact.
"""

from __future__ import annotations

from typing import Any

import pytest
from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from carbon_flows.artifacts import publish_epoch_table, publish_markdown
from carbon_sensors.decision import Decision
from carbon_sensors.providers.http import Secret

TOKEN = "Pw4eR7tY1uI9oA2sD5fG8hJ3kL6zX0cV4bN7mQ2w"
PASSWORD = "Jm5nB8vC2xZ6lK9jH3gF7dS1aP4oI0uY8tR2eW5q"


def leaked(text: str, secret: str) -> list[str]:
    return [secret[i : i + 6] for i in range(len(secret) - 5) if secret[i : i + 6] in text]


def read_back(key: str) -> str:
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])))
    return str(artifact.data)


@pytest.mark.parametrize("cut", [10, 25, 38])
def test_report_and_epoch_table_artifacts_hold_no_credential(cut: int) -> None:
    Secret(TOKEN)  # the provider's credential, as a live provider holds it
    url = f"https://carbonuser:{PASSWORD}@api.example/v3"
    cut_token = f"HTTP 401: invalid token {TOKEN}"[: 24 + cut]  # an excerpt that ends inside the token
    summary: dict[str, Any] = {
        "decision": Decision.run(f"fallback: carbon data unavailable ({cut_token})").reason,
        "error": cut_token,
        "source": url,
    }
    epochs = [{"epoch": 1, "intensity_source": url, "steps": 4, "energy_kwh": 0.1, "emissions_g": 30.0,
               "avg_intensity": 300.0}]  # fmt: skip

    @flow(name=f"carbon-redaction-artifacts-{cut}")
    def publish() -> None:
        publish_markdown(
            "Report", summary, [("token", TOKEN, "")], key=f"redact-report-{cut}", description="x"
        )
        publish_epoch_table(epochs, key=f"redact-epochs-{cut}", description="x")

    publish()
    for key in (f"redact-report-{cut}", f"redact-epochs-{cut}"):
        text = read_back(key)
        assert "carbonuser" not in text and "api.example" in text
        for secret in (TOKEN, PASSWORD):
            assert leaked(text, secret) == [], text
