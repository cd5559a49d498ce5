"""Prefect events this collection emits, so automations can react to carbon windows and training pauses.

Every event concerns the grid zone (`carbon.zone.<ZONE>`); Prefect relates it to the current flow/task run.
"""

from __future__ import annotations

from typing import Any

from prefect.events import Event, emit_event

WINDOW_OPENED = "carbon.window.opened"
RUN_RESCHEDULED = "carbon.run.rescheduled"
PAUSE_STARTED = "carbon.training.paused"
RUN_ENDED = "carbon.training.finished"


def emit_carbon_event(event: str, zone: str, payload: dict[str, Any]) -> Event | None:
    """Emit `event` about `zone` with a JSON payload; None when no events client is configured."""
    return emit_event(
        event=event,
        resource={"prefect.resource.id": f"carbon.zone.{zone}", "prefect.resource.name": zone},
        payload=payload,
    )
