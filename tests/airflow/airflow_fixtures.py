"""Types shared by the Airflow unit tests (their fixtures live in conftest.py)."""

from __future__ import annotations

from collections.abc import Callable

from carbon_sensors.replay import Replay

ReplayAt = Callable[..., Replay]
"""replay_at(trace_start, speed=1.0, wall_start=None): make recorded data 'now' in this process."""
DefineConnection = Callable[..., str]
"""carbon_conn(conn_id, provider=..., zone=..., host=..., password=...): a connection in the environment."""
