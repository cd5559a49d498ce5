"""Cloud region -> grid zone: AWS, GCP and Azure regions to Electricity Maps zones, WattTime and NESO regions.

The mapping is data (`data/cloud_regions.json`), so it can be checked and corrected without code changes.
Where the WattTime region is not recorded, the entry's coordinates let `WattTimeProvider.region_from_location`
ask the API (WattTime's boundaries move; it asks users to re-check monthly).
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from importlib import resources

from carbon_sensors.errors import InvalidInputError, UnknownZoneError

CLOUDS = ("aws", "gcp", "azure")
PROVIDERS = ("electricitymaps", "watttime", "uk")


@dataclass(frozen=True)
class CloudRegion:
    """One cloud region, where it is, and the grid zone each provider calls it."""

    cloud: str
    region: str
    location: str
    latitude: float
    longitude: float
    electricitymaps: str
    watttime: str | None
    uk: str | None

    def zone_for(self, provider: str) -> str:
        """The zone name `provider` knows this region by; UnknownZoneError when it has none."""
        if provider not in PROVIDERS:
            raise InvalidInputError(f"provider={provider!r} is not valid; use one of {list(PROVIDERS)}")
        zone: str | None = getattr(self, provider)
        if zone is None:
            hint = (
                f"resolve it with WattTimeProvider.region_from_location({self.latitude}, {self.longitude})"
                if provider == "watttime"
                else "the NESO API covers Great Britain only"
            )
            raise UnknownZoneError(
                f"{self.cloud} {self.region} ({self.location}) has no {provider} zone on record; {hint}"
            )
        return zone


@functools.cache
def all_regions() -> tuple[CloudRegion, ...]:
    """Every region in the shipped mapping."""
    text = resources.files("carbon_sensors.data").joinpath("cloud_regions.json").read_text(encoding="utf-8")
    return tuple(
        CloudRegion(
            cloud=row["cloud"],
            region=row["region"],
            location=row["location"],
            latitude=float(row["lat"]),
            longitude=float(row["lon"]),
            electricitymaps=row["electricitymaps"],
            watttime=row.get("watttime"),
            uk=row.get("uk"),
        )
        for row in json.loads(text)["regions"]
    )


def lookup(cloud: str, region: str) -> CloudRegion:
    """The entry for `region` of `cloud` (case-insensitive); a clear error with close names when unknown."""
    provider = cloud.strip().lower()
    if provider not in CLOUDS:
        raise InvalidInputError(f"cloud={cloud!r} is not valid; use one of {list(CLOUDS)}")
    name = region.strip().lower()
    known = {r.region: r for r in all_regions() if r.cloud == provider}
    if name in known:
        return known[name]
    close = difflib.get_close_matches(name, list(known), n=3, cutoff=0.6)
    hint = (
        f"did you mean {', '.join(close)}?"
        if close
        else f"known {provider} regions: {', '.join(sorted(known))}"
    )
    raise UnknownZoneError(f"unknown {provider} region {region!r}; {hint}")


def zone_for(cloud: str, region: str, provider: str = "electricitymaps") -> str:
    """Shortcut: the grid zone of a cloud region for one provider, e.g. ('aws', 'eu-west-1') -> 'IE'."""
    return lookup(cloud, region).zone_for(provider)
