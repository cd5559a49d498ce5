"""The /carbon plugin behind Airflow's login under the FAB auth manager, on a real api-server.

FAB (`apache-airflow-providers-fab`) keeps its users in the metadata database: a Viewer is created with
`airflow users create`, logs in through FAB's own `POST /auth/token`, and gets the page and the JSON, by
session cookie and by bearer token; anonymous callers get 401 on every route. The source is the embedded
real traces at an explicit start (no upstream, no replay needed).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from plugin_api_server import PLUGIN_ROUTES, airflow_env, login, served

pytestmark = pytest.mark.slow

FAB = "airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager"
USER, PASSWORD = "carbon-fab-viewer", "carbon-fab-viewer-password-e2e"
START = "2023-03-01T12:00Z"


@pytest.fixture(scope="module")
def fab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("plugin-auth-fab-home")
    env = airflow_env(home, AIRFLOW__CORE__AUTH_MANAGER=FAB)
    viewer = ["users", "create", "--username", USER, "--password", PASSWORD, "--role", "Viewer",
              "--email", "viewer@example.com", "--firstname", "Carbon", "--lastname", "Viewer"]  # fmt: skip
    with served(home, env, setup=[viewer]) as base:
        yield base


def test_anonymous_callers_get_401_under_fab(fab: str) -> None:
    with httpx.Client(base_url=fab, timeout=30) as anonymous:
        assert anonymous.get("/api/v2/dags").status_code == 401
        for route in PLUGIN_ROUTES:
            assert anonymous.get(route).status_code == 401, route


def test_a_fab_viewer_gets_the_page_and_the_json_by_cookie_and_by_token(fab: str) -> None:
    token = login(fab, USER, PASSWORD)
    for client in (
        httpx.Client(base_url=fab, cookies={"_token": token}, timeout=30),
        httpx.Client(base_url=fab, headers={"Authorization": f"Bearer {token}"}, timeout=30),
    ):
        with client:
            page = client.get("/carbon/", params={"zone": "DE", "hours": 3, "start": START})
            assert page.status_code == 200, page.text
            assert "Carbon intensity: DE" in page.text and "no current reading" in page.text
            forecast = client.get("/carbon/api/forecast", params={"zone": "DE", "hours": 3, "start": START})
            assert forecast.status_code == 200, forecast.text
            assert [row["timestamp"][:13] for row in forecast.json()["data"]] == [
                "2023-03-01T12", "2023-03-01T13", "2023-03-01T14"
            ]  # fmt: skip
