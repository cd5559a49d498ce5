"""NESO Carbon Intensity API (carbonintensity.org.uk): GB operational average intensity, no key needed.

Zones: `GB` is the national series (forecast and actual); `GB-<id>` is a regional area by NESO region id
(1-17 as documented, 18 = GB in regional responses) and `GB-<outward postcode>` (e.g. `GB-RG10`) the area of
that postcode. Regional data is forecast only. Ranges are split into the API's 14-day limit.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pandas as pd

from carbon_sensors.errors import UnknownProviderZoneError
from carbon_sensors.providers.http import Exchange, Request
from carbon_sensors.providers.live import LiveProvider, windows
from carbon_sensors.signal import IntensityReading, IntensitySignal, SignalKind

RANGE_LIMIT = timedelta(days=14)
FORWARD = timedelta(hours=48)
PAST_DAY = timedelta(hours=24)
HALF_HOUR = pd.Timedelta(minutes=30)
_REGION_ID = re.compile(r"^GB-(\d{1,2})$")
_POSTCODE = re.compile(r"^GB-([A-Z]{1,2}\d[A-Z\d]?)$")
ZONE_HELP = (
    "use GB (national), GB-<region id 1-18> (e.g. GB-13, London) or GB-<outward postcode> (e.g. GB-RG10)"
)

REGIONAL_FIELDS = ("data[].data[].from", "data[].data[].intensity.forecast")

Rows = Callable[[Any], list[tuple[Any, Any]]]


def _national(column: str) -> Rows:
    return lambda body: [(row["from"], row["intensity"][column]) for row in body["data"]]


def _regional(body: Any) -> list[tuple[Any, Any]]:
    """Rows of a one-region answer; NESO sends `data` as a list of one region or as the region itself."""
    data = body["data"]
    region = data[0] if isinstance(data, list) else data
    return [(row["from"], row["intensity"]["forecast"]) for row in region["data"]]


def _path_time(moment: pd.Timestamp) -> str:
    return moment.tz_convert("UTC").strftime("%Y-%m-%dT%H:%MZ")


class UKCarbonIntensityProvider(LiveProvider):
    """NESO's national and regional carbon intensity through the `IntensitySource` protocol."""

    name = "uk"
    kind = SignalKind.AVERAGE
    url_env = "CARBON_AWARE_UK_URL"
    default_url = "https://api.carbonintensity.org.uk"

    def normalise_zone(self, zone: str) -> str:
        z = super().normalise_zone(zone).upper().replace(" ", "")
        if z in ("GB", "UK"):
            return "GB"
        match = _REGION_ID.match(z)
        if match and 1 <= int(match[1]) <= 18:
            return f"GB-{int(match[1])}"
        if _POSTCODE.match(z):
            return z
        self.fail(UnknownProviderZoneError, zone, f"not a zone the NESO API serves; {ZONE_HELP}")

    def _suffix(self, zone: str) -> str:
        """The regional path tail of a zone: /regionid/13 or /postcode/RG10 ('' for national)."""
        if zone == "GB":
            return ""
        tail = zone.removeprefix("GB-")
        return f"/regionid/{tail}" if tail.isdigit() else f"/postcode/{tail}"

    def _ask(self, zone: str, path: str) -> Exchange[Any]:
        response = yield Request("GET", self.base_url + path)
        return self.check(response, zone)

    def latest_exchange(self, zone: str, now: pd.Timestamp) -> Exchange[IntensityReading]:
        if zone == "GB":
            body = yield from self._ask(zone, "/intensity")
            moment, actual, forecast = self.field(
                zone,
                "data[0]",
                lambda: (
                    body["data"][0]["from"],
                    body["data"][0]["intensity"]["actual"],
                    body["data"][0]["intensity"]["forecast"],
                ),
            )
            column = "actual" if actual is not None else "forecast"
            return self.reading(
                zone,
                actual if actual is not None else forecast,
                moment,
                now,
                fields=("from", f"intensity.{column}"),
                source=f"{self.name} ({column})",
            )
        body = yield from self._ask(zone, "/regional" + self._suffix(zone))
        moment, value = self.field(zone, "data[0]", lambda: _regional(body)[0])
        return self.reading(
            zone, value, moment, now, fields=REGIONAL_FIELDS, source=f"{self.name} regional (forecast)"
        )

    def history_exchange(
        self, zone: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> Exchange[IntensitySignal]:
        national = zone == "GB"
        prefix = "/intensity" if national else "/regional/intensity"
        if end - start <= PAST_DAY:
            paths = [f"{prefix}/{_path_time(end)}/pt24h{self._suffix(zone)}"]
        else:
            paths = [
                f"{prefix}/{_path_time(lo)}/{_path_time(hi)}{self._suffix(zone)}"
                for lo, hi in windows(start, end, RANGE_LIMIT)
            ]
        parse = _national("actual") if national else _regional
        points: list[tuple[Any, Any]] = []
        for path in paths:
            body = yield from self._ask(zone, path)
            points += self.field(zone, "data", functools.partial(parse, body))
        notes: tuple[str, ...] = (
            ("regional values are NESO forecasts (the API has no regional actuals)",) if not national else ()
        )
        return self.clip(zone, self._signal(zone, points, "history", national, notes), start, end)

    def forecast_exchange(
        self, zone: str, start: pd.Timestamp | None, horizon: timedelta, now: pd.Timestamp
    ) -> Exchange[IntensitySignal]:
        begin = start if start is not None else now.floor("30min")
        national = zone == "GB"
        prefix = "/intensity" if national else "/regional/intensity"
        body = yield from self._ask(zone, f"{prefix}/{_path_time(begin)}/fw48h{self._suffix(zone)}")
        points = self.field(zone, "data", lambda: (_national("forecast") if national else _regional)(body))
        notes = ("NESO forecasts reach 48 h",) if horizon > FORWARD else ()
        sig = self._signal(zone, points, "forecast", national, notes)
        return self.clip(zone, sig, begin, begin + horizon, forecast=True)

    def _signal(
        self, zone: str, points: list[tuple[Any, Any]], what: str, national: bool, notes: tuple[str, ...]
    ) -> IntensitySignal:
        """Half-hourly points as a signal: national history holds actuals, everything else forecasts."""
        column = "actual" if national and what == "history" else "forecast"
        return self.signal(
            zone,
            points,
            what=what,
            fields=("from", f"intensity.{column}") if national else REGIONAL_FIELDS,
            resolution=HALF_HOUR,
            source=self.name if national else f"{self.name} regional",
            notes=notes,
        )
