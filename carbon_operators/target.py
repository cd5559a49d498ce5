"""What every carbon-aware task resolves first: its source, zone(s), clock and finish-by deadline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import pandas as pd

from carbon_operators.hooks import CarbonIntensityHook, build_source
from carbon_operators.policy import resolve_deadline
from carbon_sensors.errors import InvalidInputError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.replay import GridClock


@dataclass(frozen=True)
class CarbonTarget:
    """A task's resolved carbon setting; `deadline` is in grid time."""

    source: IntensitySource
    zones: tuple[str, ...]
    clock: GridClock
    deadline: pd.Timestamp

    @property
    def zone(self) -> str:
        return self.zones[0]

    @property
    def wall_deadline(self) -> pd.Timestamp:
        return self.clock.to_wall(self.deadline)


def zones_of(zone: str | Sequence[str] | None, default: str | None) -> tuple[str, ...]:
    """The zone list from an operator argument (one name, a list, or a comma-separated string)."""
    if zone is None or zone == "" or (not isinstance(zone, str) and not zone):
        if default is None:
            raise InvalidInputError(
                "no zone given: pass zone='DE' (or a list of zones) or set the connection's default zone"
            )
        return (default,)
    names = zone.split(",") if isinstance(zone, str) else list(zone)
    cleaned = tuple(dict.fromkeys(str(n).strip() for n in names if str(n).strip()))
    if not cleaned:
        raise InvalidInputError(f"zone={zone!r} names no zone; pass e.g. 'DE' or ['DE', 'FR']")
    return cleaned


class CarbonTask(Protocol):
    """The (templated) settings every carbon-aware operator of this provider has."""

    carbon_conn_id: str | None
    zone: Any
    deadline: datetime | str | None
    deadline_allowance: timedelta | str | None


def resolve_target(context: Mapping[str, Any], task: CarbonTask) -> CarbonTarget:
    """Source from the connection (or the offline default), zones, replay-aware clock and deadline."""
    settings = CarbonIntensityHook(task.carbon_conn_id).get_settings()
    clock = GridClock.from_env()
    return CarbonTarget(
        source=build_source(settings),
        zones=zones_of(task.zone, settings.zone),
        clock=clock,
        deadline=resolve_deadline(
            context, deadline=task.deadline, allowance=task.deadline_allowance, clock=clock
        ),
    )
