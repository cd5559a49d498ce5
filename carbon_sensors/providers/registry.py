"""Build a source by name, e.g. from a CLI flag, an Airflow connection or a Prefect block.

Arguments not given fall back to the environment inside each provider (base URL, credentials); the trace
source picks up replay from CARBON_AWARE_REPLAY_* unless given one.
"""

from __future__ import annotations

from typing import Any

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.electricitymaps import ElectricityMapsProvider
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.providers.uk import UKCarbonIntensityProvider
from carbon_sensors.providers.watttime import WattTimeProvider
from carbon_sensors.replay import Replay

LIVE_PROVIDERS: dict[str, type[ElectricityMapsProvider | WattTimeProvider | UKCarbonIntensityProvider]] = {
    "electricitymaps": ElectricityMapsProvider,
    "watttime": WattTimeProvider,
    "uk": UKCarbonIntensityProvider,
}
SOURCE_NAMES = ("trace", *LIVE_PROVIDERS)


def make_source(name: str, **options: Any) -> IntensitySource:
    """A source by name ("trace", "electricitymaps", "watttime", "uk") with its constructor's keywords."""
    key = name.strip().lower()
    if key == "trace":
        options.setdefault("replay", Replay.from_env())
        return TraceProvider(**options)
    if key not in LIVE_PROVIDERS:
        raise InvalidInputError(f"source {name!r} is not known; use one of {list(SOURCE_NAMES)}")
    try:
        return LIVE_PROVIDERS[key](**options)
    except TypeError as exc:  # an option the provider does not take: say which provider and what it takes
        raise InvalidInputError(f"source {key!r}: {exc}") from None
