"""WattTime API v3: marginal operating emission rate (MOER) by grid region, e.g. CAISO_NORTH.

MOER comes in lbs CO2/MWh and is converted to gCO2/kWh and labelled marginal: never compare it with the
average intensity of Electricity Maps or NESO. Auth: HTTP Basic on /login gives a bearer token (30 min);
the token sits in the shared cache until shortly before expiry (one login per account, however many
provider objects), and a 401 logs in again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd

from carbon_sensors.errors import AuthenticationError, InvalidInputError, MalformedResponseError
from carbon_sensors.providers.http import Exchange, Request, Secret, credential_problem
from carbon_sensors.providers.live import LiveProvider, iso_z, secret_from, windows
from carbon_sensors.signal import IntensityReading, IntensitySignal, SignalKind

USERNAME_ENV = "WATTTIME_USERNAME"
PASSWORD_ENV = "WATTTIME_PASSWORD"
LBS_PER_MWH_IN_G_PER_KWH = 0.453592
UNIT_FACTORS = {"lbs_co2_per_mwh": LBS_PER_MWH_IN_G_PER_KWH, "kg_co2_per_mwh": 1.0, "g_co2_per_kwh": 1.0}
HISTORICAL_LIMIT = timedelta(days=32)  # the API's cap per /v3/historical request
MAX_HORIZON = timedelta(hours=72)
TOKEN_LIFETIME = timedelta(minutes=30)
TOKEN_MARGIN = timedelta(minutes=2)  # log in again a little before the token runs out
SIGNAL_TYPES = ("co2_moer", "co2_aoer")
FIELDS = ("point_time", "value")  # (time, value) keys of every data point
MAX_PERIOD_SECONDS = 86_400  # WattTime sends 5-minute points; a longer step than a day is a broken payload


@dataclass(frozen=True)
class SignalIndex:
    """WattTime's relative index: where the current MOER sits in recent history, 0-100 (not an intensity)."""

    zone: str
    percentile: float
    period_start: pd.Timestamp
    source: str = "watttime"


class WattTimeProvider(LiveProvider):
    """WattTime v3 through the `IntensitySource` protocol; zones are WattTime region abbreviations."""

    name = "watttime"
    kind = SignalKind.MARGINAL
    url_env = "CARBON_AWARE_WATTTIME_URL"
    default_url = "https://api.watttime.org"

    def __init__(
        self,
        *,
        username: str | None = None,
        password: str | Secret | None = None,
        signal_type: str = "co2_moer",
        max_age: timedelta = timedelta(minutes=30),
        **options: Any,
    ) -> None:
        super().__init__(max_age=max_age, **options)
        if signal_type not in SIGNAL_TYPES:
            raise InvalidInputError(
                f"signal_type={signal_type!r} is not valid; use one of {list(SIGNAL_TYPES)}"
            )
        self.signal_type = signal_type
        self.username = username or os.environ.get(USERNAME_ENV)
        self._password = secret_from(password, PASSWORD_ENV)

    def secrets(self) -> tuple[Secret, ...]:
        found, token = self.cache.peek(self._token_key())
        return tuple(s for s in (self._password, token if found else None) if s is not None)

    def _token_key(self) -> tuple[str, str, str | None, Secret | None]:
        """Where the bearer token lives in the shared cache: one login per account, not per provider object."""
        return ("watttime-token", self.base_url, self.username, self._password)

    def before(self, zone: str) -> tuple[Hashable, timedelta, Callable[[], Exchange[Any]]]:
        return self._token_key(), TOKEN_LIFETIME - TOKEN_MARGIN, lambda: self._login(zone)

    def normalise_zone(self, zone: str) -> str:
        return super().normalise_zone(zone).upper()

    # --- auth --------------------------------------------------------------------------------------------
    def _login(self, zone: str) -> Exchange[Secret]:
        if not self.username or self._password is None:
            self.fail(
                AuthenticationError,
                zone,
                f"no credentials: pass username= and password= or set {USERNAME_ENV} and {PASSWORD_ENV}",
            )
        given = (
            ("username", USERNAME_ENV, self.username),
            ("password", PASSWORD_ENV, self._password.reveal()),
        )
        for what, env, value in given:
            problem = credential_problem(value, header=False)
            if problem is not None:
                self.fail(AuthenticationError, zone, f"the {what} ({what} argument or {env}) {problem}")
        response = yield Request("GET", self.base_url + "/login", basic_auth=(self.username, self._password))
        body = self.check(response, zone, credential_hint=f"check {USERNAME_ENV} / {PASSWORD_ENV}")
        return Secret(self._token_of(zone, body))

    def _token_of(self, zone: str, body: Any) -> str:
        """The bearer token of a login answer; a null, empty or unsendable one is a malformed answer."""
        token = self.field(zone, "token", lambda: body["token"])
        if not isinstance(token, str) or not token:
            found = "null" if token is None else "empty" if token == "" else f"of type {type(token).__name__}"
            self.fail(MalformedResponseError, zone, f"login answered without a token ('token' is {found})")
        problem = credential_problem(token)
        if problem is not None:
            self.fail(MalformedResponseError, zone, f"login answered with a token that {problem}")
        return token

    def _get(self, zone: str, path: str, **params: str) -> Exchange[Any]:
        """GET a data endpoint with the bearer token: log in when needed, and once more after a 401."""
        for attempt in range(2):
            found, token = self.cache.peek(self._token_key())
            if not found or attempt > 0:
                token = yield from self._login(zone)
                self.cache.put(self._token_key(), token, (TOKEN_LIFETIME - TOKEN_MARGIN).total_seconds())
            bearer = Secret(f"Bearer {token.reveal()}")
            query = tuple({"signal_type": self.signal_type, **params}.items())
            response = yield Request("GET", self.base_url + path, query, {"Authorization": bearer})
            if response.status != 401 or attempt > 0:
                return self.check(response, zone, credential_hint="the token was refused right after login")
        raise AssertionError("unreachable: the loop returns on its second attempt")

    # --- data --------------------------------------------------------------------------------------------
    def latest_exchange(self, zone: str, now: pd.Timestamp) -> Exchange[IntensityReading]:
        """The current 5-minute MOER: the first point of a zero-hour forecast (the API's real-time answer)."""
        body = yield from self._get(zone, "/v3/forecast", region=zone, horizon_hours="0")
        factor = self._factor(zone, body)
        moment, value = self._first(zone, body)
        return self.reading(zone, value, moment, now, fields=FIELDS, scale=factor)

    def history_exchange(
        self, zone: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> Exchange[IntensitySignal]:
        points: list[tuple[Any, Any]] = []
        factor, step = 1.0, None
        for lo, hi in windows(start, end, HISTORICAL_LIMIT):
            body = yield from self._get(zone, "/v3/historical", region=zone, start=iso_z(lo), end=iso_z(hi))
            factor, step = self._factor(zone, body), self._step(zone, body)
            points += self._rows(zone, body)
        sig = self.signal(zone, points, what="historical", fields=FIELDS, scale=factor, resolution=step)
        return self.clip(zone, sig, start, end)

    def forecast_exchange(
        self, zone: str, start: pd.Timestamp | None, horizon: timedelta, now: pd.Timestamp
    ) -> Exchange[IntensitySignal]:
        hours = math.ceil(min(horizon, MAX_HORIZON).total_seconds() / 3600)
        body = yield from self._get(zone, "/v3/forecast", region=zone, horizon_hours=str(hours))
        factor, step = self._factor(zone, body), self._step(zone, body)
        generated = self.field(zone, "meta.generated_at", lambda: body["meta"].get("generated_at"))
        notes = ("WattTime forecasts reach 72 h at most",) if horizon > MAX_HORIZON else ()
        sig = self.signal(
            zone,
            self._rows(zone, body),
            what="forecast",
            fields=FIELDS,
            scale=factor,
            resolution=step,
            issued_at=None if generated is None else self.moment(zone, "meta.generated_at", generated),
            notes=notes,
        )
        begin = start if start is not None else now.floor("5min")
        return self.clip(zone, sig, begin, begin + horizon, forecast=True)

    def index_exchange(self, zone: str, now: pd.Timestamp) -> Exchange[SignalIndex]:
        body = yield from self._get(zone, "/v3/signal-index", region=zone)
        moment, value = self._first(zone, body)
        reading = self.reading(zone, value, moment, now, fields=FIELDS)
        return SignalIndex(zone, reading.value, reading.period_start)

    def region_exchange(self, latitude: float, longitude: float) -> Exchange[str]:
        where = f"{latitude},{longitude}"
        params = {"latitude": str(latitude), "longitude": str(longitude)}
        body = yield from self._get(where, "/v3/region-from-loc", **params)
        return self.field(where, "region", lambda: str(body["region"]))

    # --- extra questions ---------------------------------------------------------------------------------
    def signal_index(self, zone: str) -> SignalIndex:
        """The current MOER as a percentile of recent history (`/v3/signal-index`)."""
        z = self.normalise_zone(zone)
        return self._sync(("index", z), z, lambda: self.index_exchange(z, self.clock()))

    async def asignal_index(self, zone: str) -> SignalIndex:
        z = self.normalise_zone(zone)
        return await self._async(("index", z), z, lambda: self.index_exchange(z, self.clock()))

    def region_from_location(self, latitude: float, longitude: float) -> str:
        """The WattTime region covering a point (`/v3/region-from-loc`); boundaries change, so re-ask monthly."""
        where = f"{latitude},{longitude}"
        return self._sync(("region", where), where, lambda: self.region_exchange(latitude, longitude))

    # --- parsing helpers ---------------------------------------------------------------------------------
    def _factor(self, zone: str, body: Any) -> float:
        """gCO2/kWh per unit of the response; units that are not an emission rate are refused."""
        units = self.field(zone, "meta.units", lambda: body["meta"]["units"])
        if not isinstance(units, str) or units not in UNIT_FACTORS:
            self.bad_field(
                zone, "meta.units", units, f"an emission rate we convert, one of {sorted(UNIT_FACTORS)}"
            )
        return UNIT_FACTORS[units]

    def _step(self, zone: str, body: Any) -> pd.Timedelta:
        name = "meta.data_point_period_seconds"
        seconds = self.field(zone, name, lambda: body["meta"].get("data_point_period_seconds", 300))
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not 0 < seconds <= MAX_PERIOD_SECONDS
        ):
            self.bad_field(zone, name, seconds, f"a number of seconds in (0, {MAX_PERIOD_SECONDS}]")
        return pd.Timedelta(seconds=seconds)

    def _rows(self, zone: str, body: Any) -> list[tuple[Any, Any]]:
        return self.field(zone, "data", lambda: [(row["point_time"], row["value"]) for row in body["data"]])

    def _first(self, zone: str, body: Any) -> tuple[Any, Any]:
        """(point_time, value) of the first data point."""
        return self.field(zone, "data[0]", lambda: (body["data"][0]["point_time"], body["data"][0]["value"]))
