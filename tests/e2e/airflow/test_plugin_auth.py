"""The /carbon plugin behind Airflow's login, on a real api-server (simple auth manager, not all-admins).

One api-server serves every test here (a module fixture). Its carbon source is a real loopback NESO API
replaying a recorded 48 h forecast (`uk_replay.UKReplayServer`), so upstream calls can be counted.
Anonymous callers get 401 on every route and cost no upstream call; a logged-in session (the `_token`
cookie Airflow's login page sets) gets the page and the JSON; many distinct `hours` cost a few upstream
calls; and an upstream that hangs for 30 s does not starve the api-server. The api-server is stopped by its
process group, then by PID.

The same check under the FAB auth manager: test_plugin_auth_fab.py.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from plugin_api_server import PLUGIN_ROUTES, airflow_env, login
from plugin_api_server import served as api_server
from uk_replay import UKReplayServer

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
USER, PASSWORD = "carbon-viewer", "carbon-viewer-password-e2e"


@dataclass
class Served:
    base: str
    upstream: UKReplayServer


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    home = tmp_path_factory.mktemp("plugin-auth-home")
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}), encoding="utf-8")
    upstream = UKReplayServer().start()
    env = airflow_env(
        home,
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS="False",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=f"{USER}:viewer",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE=str(home / "passwords.json"),
        CARBON_AWARE_PROVIDER="uk",
        CARBON_AWARE_UK_URL=upstream.url,
    )
    try:
        with api_server(home, env) as base:
            yield Served(base, upstream)
    finally:
        upstream.stop()


def session(served: Served) -> httpx.Client:
    """A browser-like session: log in as Airflow's login page does and keep the `_token` cookie."""
    token = login(served.base, USER, PASSWORD)
    return httpx.Client(base_url=served.base, cookies={"_token": token}, timeout=30)


def forecasts_with_distinct_hours(client: httpx.Client, count: int) -> list[int]:
    """`count` forecast requests, 8 at a time, with `hours` 0.25, 1.05, 1.85, ... (every value different)."""

    def ask(i: int) -> int:
        params: dict[str, str | float] = {"zone": "GB", "hours": 0.25 + i * 0.8}
        return client.get("/carbon/api/forecast", params=params).status_code

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(ask, range(count)))


def test_anonymous_callers_get_401_on_every_route_and_cost_no_upstream_call(served: Served) -> None:
    before = served.upstream.calls
    with httpx.Client(base_url=served.base, timeout=30) as anonymous:
        assert anonymous.get("/api/v2/dags").status_code == 401  # the core API, for comparison
        for route in PLUGIN_ROUTES:
            response = anonymous.get(route)
            assert response.status_code == 401, (route, response.text)
            assert response.json() == {"detail": "Not authenticated"}
        statuses = forecasts_with_distinct_hours(anonymous, 200)
    assert statuses == [401] * 200
    assert served.upstream.calls == before


def test_a_logged_in_session_gets_the_page_the_json_and_the_nav_entry(served: Served) -> None:
    with session(served) as browser:
        page = browser.get("/carbon/", params={"zone": "GB"})
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html")
        assert "Carbon intensity: GB" in page.text and "<table>" in page.text
        forecast = browser.get("/carbon/api/forecast", params={"zone": "GB", "hours": 6})
        assert forecast.status_code == 200 and forecast.json()["zone"] == "GB"
        assert len(forecast.json()["data"]) == 6  # hourly: NESO's forecast blended with our model
        assert forecast.json()["source"].startswith("blend of uk")
        deadline = (pd.Timestamp.now("UTC") + pd.Timedelta(hours=12)).isoformat()
        plan = browser.get("/carbon/api/plan", params={"zone": "GB", "duration": "2h", "deadline": deadline})
        assert plan.status_code == 200, plan.text
        assert pd.Timestamp(plan.json()["end"]) <= pd.Timestamp(deadline)

        # The nav entry: Airflow lists it for this user, its UI route serves the app shell, and the page it
        # embeds (href) opens with the same session.
        plugins = browser.get("/api/v2/plugins").json()["plugins"]
        [ours] = [p for p in plugins if p["name"] == "carbon_aware_trainer"]
        [view] = [v for v in ours["external_views"] if v["destination"] == "nav"]
        assert view["destination"] == "nav" and view["url_route"] == "carbon-intensity"
        assert view["href"] == "/carbon/"
        shell = browser.get(f"/plugin/{view['url_route']}")
        assert shell.status_code == 200 and "<html" in shell.text.lower()
        # The page opens at its default zone, DE, which NESO does not serve: our page, with that error.
        opened = browser.get(view["href"])
        assert opened.status_code == 404 and "<h1>Carbon intensity: DE</h1>" in opened.text
        assert "UnknownProviderZoneError" in opened.text


def test_distinct_hours_from_logged_in_users_cost_a_handful_of_upstream_calls(served: Served) -> None:
    before = served.upstream.calls_to["forecast"]
    with session(served) as browser:
        statuses = forecasts_with_distinct_hours(browser, 200)
    assert statuses == [200] * 200
    calls = served.upstream.calls_to["forecast"] - before
    print(
        json.dumps({"authenticated_requests": 200, "distinct_hours": 200, "upstream_forecast_calls": calls})
    )
    assert calls <= 4  # one per horizon tier (24, 48, 72, 169 h); our model's history: one question an hour


def test_a_hanging_upstream_does_not_starve_the_api_server(served: Served) -> None:
    served.upstream.delay = 30.0
    with session(served) as browser:
        cookies = dict(browser.cookies)

    def hold(i: int) -> None:  # distinct starts: 60 questions the cache cannot share
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(
                f"{served.base}/carbon/api/forecast",
                params={"zone": "GB", "hours": 3, "start": f"2023-0{1 + i // 28}-{1 + i % 28:02d}T12:00Z"},
                cookies=cookies,
                timeout=httpx.Timeout(5.0, read=45.0),
            )

    holders = [threading.Thread(target=hold, args=(i,), daemon=True) for i in range(60)]
    for thread in holders:
        thread.start()
    try:
        deadline = time.monotonic() + 20
        while served.upstream.in_flight < 4 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert served.upstream.in_flight == 4, "the plugin should hold exactly its bound of upstream calls"
        time.sleep(2.0)  # let the api-server take in the burst (login checks of 60 requests), then ask
        timings = []
        for _ in range(3):
            started = time.monotonic()
            health = httpx.get(f"{served.base}/api/v2/monitor/health", timeout=10)
            timings.append(time.monotonic() - started)
            assert health.status_code == 200
            time.sleep(0.5)
        alive = sum(t.is_alive() for t in holders)
        upstream_calls = served.upstream.in_flight
        print(json.dumps({"plugin_requests_in_flight": alive, "upstream_in_flight": upstream_calls,
                          "health_seconds": timings}))  # fmt: skip
        assert alive >= 50, "the plugin requests should still be in flight while health is asked"
        assert max(timings) < 1.0, timings
        assert upstream_calls == 4
    finally:
        served.upstream.delay = 0.0
