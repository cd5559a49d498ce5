"""Electricity Maps API v3: consumption-based average intensity (gCO2eq/kWh) by zone key, e.g. DE, GB.

Latest and the last-24-hours history are on the free tier; past-range and forecast need a commercial plan.
Auth: the `auth-token` header.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pandas as pd

from carbon_sensors.errors import AuthenticationError, InvalidInputError
from carbon_sensors.providers.http import Exchange, Request, Secret, credential_problem
from carbon_sensors.providers.live import LiveProvider, iso_z, secret_from, windows
from carbon_sensors.signal import IntensityReading, IntensitySignal, SignalKind

TOKEN_ENV = "ELECTRICITYMAPS_API_TOKEN"
RECENT = timedelta(hours=24)  # what /history covers
PAST_RANGE_LIMIT = timedelta(days=10)  # the API's cap per past-range request at hourly granularity
FACTOR_TYPES = ("lifecycle", "direct")
FIELDS = ("datetime", "carbonIntensity")  # (time, value) keys of every data point


class ElectricityMapsProvider(LiveProvider):
    """Electricity Maps v3 through the `IntensitySource` protocol."""

    name = "electricitymaps"
    kind = SignalKind.AVERAGE
    url_env = "CARBON_AWARE_ELECTRICITYMAPS_URL"
    default_url = "https://api.electricitymap.org"

    def __init__(
        self, *, token: str | Secret | None = None, emission_factor_type: str | None = None, **options: Any
    ) -> None:
        super().__init__(**options)
        if emission_factor_type is not None and emission_factor_type not in FACTOR_TYPES:
            raise InvalidInputError(
                f"emission_factor_type={emission_factor_type!r} is not valid; use one of {list(FACTOR_TYPES)}"
            )
        self.emission_factor_type = emission_factor_type
        self._token = secret_from(token, TOKEN_ENV)

    def secrets(self) -> tuple[Secret, ...]:
        return () if self._token is None else (self._token,)

    def normalise_zone(self, zone: str) -> str:
        return super().normalise_zone(zone).upper()

    def request(self, zone: str, path: str, **params: str) -> Request:
        if self._token is None:
            self.fail(
                AuthenticationError,
                zone,
                f"no API token: pass token=... or set {TOKEN_ENV} (get one at portal.electricitymaps.com)",
            )
        problem = credential_problem(self._token.reveal())
        if problem is not None:
            self.fail(AuthenticationError, zone, f"the API token (token argument or {TOKEN_ENV}) {problem}")
        query = {"zone": zone, **params}
        if self.emission_factor_type is not None:
            query["emissionFactorType"] = self.emission_factor_type
        return Request("GET", self.base_url + path, tuple(query.items()), {"auth-token": self._token})

    def _json(self, response: Any, zone: str) -> Any:
        return self.check(response, zone, credential_hint=f"check the token (argument or {TOKEN_ENV})")

    def latest_exchange(self, zone: str, now: pd.Timestamp) -> Exchange[IntensityReading]:
        body = self._json((yield self.request(zone, "/v3/carbon-intensity/latest")), zone)
        value, moment = self.field(zone, "latest", lambda: (body["carbonIntensity"], body["datetime"]))
        return self.reading(zone, value, moment, now, fields=FIELDS)

    def history_exchange(
        self, zone: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> Exchange[IntensitySignal]:
        points: list[tuple[Any, Any]] = []
        if start >= self.clock() - RECENT:
            body = self._json((yield self.request(zone, "/v3/carbon-intensity/history")), zone)
            points += self._rows(zone, body, "history")
        else:
            for lo, hi in windows(start, end, PAST_RANGE_LIMIT):
                params = {"start": iso_z(lo), "end": iso_z(hi)}
                body = self._json(
                    (yield self.request(zone, "/v3/carbon-intensity/past-range", **params)), zone
                )
                points += self._rows(zone, body, "data")
        sig = self.signal(zone, points, what="history", fields=FIELDS, resolution=pd.Timedelta(hours=1))
        return self.clip(zone, sig, start, end)

    def forecast_exchange(
        self, zone: str, start: pd.Timestamp | None, horizon: timedelta, now: pd.Timestamp
    ) -> Exchange[IntensitySignal]:
        params = {} if horizon <= timedelta(hours=24) else {"horizonHours": str(_horizon_hours(horizon))}
        body = self._json((yield self.request(zone, "/v3/carbon-intensity/forecast", **params)), zone)
        points = self._rows(zone, body, "forecast")
        issued = body.get("updatedAt") if isinstance(body, dict) else None
        sig = self.signal(
            zone,
            points,
            what="forecast",
            fields=FIELDS,
            resolution=pd.Timedelta(hours=1),
            issued_at=None if issued is None else self.moment(zone, "updatedAt", issued),
        )
        begin = start if start is not None else now.floor("1h")
        return self.clip(zone, sig, begin, begin + horizon, forecast=True)

    def _rows(self, zone: str, body: Any, key: str) -> list[tuple[Any, Any]]:
        """(datetime, carbonIntensity) pairs from the list under `key`."""
        return self.field(zone, key, lambda: [(row["datetime"], row["carbonIntensity"]) for row in body[key]])


def _horizon_hours(horizon: timedelta) -> int:
    """The smallest horizon the API offers (6, 24, 48, 72 h) that covers the one asked."""
    hours = horizon.total_seconds() / 3600
    return next((h for h in (6, 24, 48, 72) if h >= hours), 72)
