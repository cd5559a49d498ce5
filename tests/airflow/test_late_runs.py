"""A run that starts after its deadline (cleared, retried, backfilled) runs at once and says so, on every
operator, as the training's deadline guard does; it is not refused as bad input."""

from __future__ import annotations

from typing import Any

import pytest
from airflow_fixtures import ReplayAt

from carbon_operators.sensors import CarbonIntensitySensor
from carbon_operators.triggers import DEADLINE
from carbon_operators.window import CarbonWindowOperator

NO_CONTEXT: Any = {}


def test_a_late_window_hold_releases_at_once(replay_at: ReplayAt, caplog: pytest.LogCaptureFixture) -> None:
    replay_at("2023-06-05T17:00Z")
    hold = CarbonWindowOperator(task_id="hold", zone="DE", duration="3h", deadline="2023-06-05T19:00Z")
    released = hold.execute(NO_CONTEXT)  # 3 h of work no longer fits before 19:00: no hold, no failure
    assert released["status"] == "released" and released["fallback"] is True
    assert (
        released["reason"].startswith("late run: 3:00:00 of work") and "running at once" in released["reason"]
    )


def test_a_late_sensor_follows_its_deadline_policy(replay_at: ReplayAt) -> None:
    replay_at("2023-06-05T04:00Z")  # DE 337 gCO2eq/kWh: dirty, and the deadline has passed
    sensor = CarbonIntensitySensor(
        task_id="green", zone="DE", max_intensity=250.0, deadline="2023-06-05T01:00Z"
    )
    assert sensor.execute(NO_CONTEXT)["status"] == DEADLINE  # on_deadline="run": released, not refused
