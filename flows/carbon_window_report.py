"""Example: a batch job held until a low-carbon window, then reporting what the window was worth.

Deployed from `prefect.yaml`. On a dirty grid the first run schedules a run of this deployment at the planned
window and ends as 'Rescheduled' (no worker idles); that run finds the window open, does the work and
publishes a markdown report. Try it offline with replayed real data: set CARBON_AWARE_REPLAY_START.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd
from prefect import flow, task
from prefect.client.schemas.objects import State

from carbon_flows.artifacts import publish_markdown, window_rows
from carbon_flows.sources import clock_of, resolve_source
from carbon_flows.wait import PREFECT_RESUME_OVERHEAD, wait_for_low_carbon
from carbon_sensors.worth import DEFAULT_MAX_REPLANS, DEFAULT_MIN_SAVINGS


@task
def daily_intensity_summary(zone: str, source: str, days: int = 7) -> pd.DataFrame:
    """The batch work: daily mean/min/max grid intensity of the past `days` days (a small pandas job).

    Args:
        zone: the grid zone (e.g. "DE").
        source: where the carbon data comes from ("trace": recorded real data, offline).
        days: how many days back to summarise (default 7).
    """
    intensity_source = resolve_source(source)
    now = clock_of(intensity_source).now()
    values = intensity_source.history(zone, now - timedelta(days=days), now).values
    return values.resample("1D").agg(["mean", "min", "max"]).round(1)


@flow(name="carbon-window-report")
def carbon_window_report(
    zone: str = "DE",
    duration: str = "1h",
    deadline: str | None = None,
    within: str = "12h",
    source: str = "trace",
    max_in_process_wait: str = "2min",
    resume_overhead: str = PREFECT_RESUME_OVERHEAD,
    min_savings: float = DEFAULT_MIN_SAVINGS,
    max_replans: int = DEFAULT_MAX_REPLANS,
) -> dict[str, Any] | State[Any]:
    """Wait for the greenest window finishing by the deadline, then summarise the past week's grid.

    Args:
        zone: the grid zone (e.g. "DE").
        duration: how long the batch work runs ('1h'): the window's length.
        deadline: finish-by time (aware ISO string, grid time); wins over `within`.
        within: the deadline as a span from the first run's start ('12h').
        source: where the carbon data comes from ("trace": recorded real data, offline).
        max_in_process_wait: a wait up to this long sleeps in-process ('2min'); a longer one reschedules.
        resume_overhead: wall time from a rescheduled run's start to the work (default 30 s), kept as a
            margin before the deadline.
        min_savings: the least expected saving, in percent against running now, worth a hold (default 1).
        max_replans: how many times a run woken at its window may hold again for a better one (default 3).
    """
    window = wait_for_low_carbon(
        zone,
        duration=duration,
        deadline=deadline,
        within=None if deadline else within,
        source=source,
        max_in_process_wait=max_in_process_wait,
        min_savings=min_savings,
        max_replans=max_replans,
        resume_overhead=resume_overhead,
    )
    if window.rescheduled:
        return window.final_state()
    summary = daily_intensity_summary(zone, source)
    facts = window.to_dict()
    publish_markdown(
        f"Carbon window report: {zone}",
        {"decision": window.reason, "days summarised": len(summary)},
        window_rows(facts),
        key="carbon-window-report",
        description=f"Low-carbon window used in {zone}",
    )
    return facts


if __name__ == "__main__":
    carbon_window_report()
