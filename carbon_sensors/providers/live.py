"""What every live API provider shares: configuration, the sync/async drivers, the cache, typed errors.

A concrete provider writes only sans-IO exchanges (build requests, parse responses); this base runs them
over either transport, through the shared TTL cache, and turns HTTP trouble into typed errors whose text
names provider, zone and cause and never a credential.
"""

from __future__ import annotations

import json
import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Iterable
from datetime import datetime, timedelta
from typing import Any, ClassVar, NoReturn, TypeVar

import pandas as pd

from carbon_sensors.errors import (
    AuthenticationError,
    EmptyDataError,
    InvalidInputError,
    MalformedResponseError,
    ProviderError,
    ProviderRequestError,
    ProviderUnavailableError,
    RateLimitedError,
    StaleDataError,
    UnknownProviderZoneError,
)
from carbon_sensors.providers.cache import TTLCache, shared_cache
from carbon_sensors.providers.http import (
    RETRY_AFTER_CAP,
    AsyncTransport,
    Exchange,
    Response,
    Secret,
    SyncTransport,
    TransportFailure,
    retry_after_seconds,
    run_async,
    run_sync,
)
from carbon_sensors.redact import clip, redact
from carbon_sensors.signal import IntensityReading, IntensitySignal, SignalKind, make_signal
from carbon_sensors.timeutil import require_utc, utcnow
from carbon_sensors.validation import EARLIEST, LATEST, MAX_INTENSITY, intensity_problem, short_repr

T = TypeVar("T")


def base_url_from(argument: str | None, env_name: str, default: str) -> str:
    """The base URL: the argument, else the environment variable, else the public API; no trailing slash."""
    url = argument or os.environ.get(env_name) or default
    if not url.startswith(("http://", "https://")):
        source = "base_url" if argument else env_name
        raise InvalidInputError(f"{source}={url!r} is not an http(s) URL; expected e.g. {default!r}")
    return url.rstrip("/")


def secret_from(argument: str | Secret | None, env_name: str) -> Secret | None:
    """A credential from the argument, else the environment; None when neither has one."""
    if isinstance(argument, Secret):
        return argument if argument else None
    value = argument or os.environ.get(env_name)
    return Secret(value) if value else None


PARSE_ERRORS = (LookupError, TypeError, ValueError, AttributeError, ArithmeticError, RecursionError)
"""What reading an unexpected JSON shape can raise (missing key, wrong type, huge number, deep nesting)."""


def iso_z(moment: pd.Timestamp) -> str:
    """A UTC moment as the APIs like it: 2023-06-01T12:00:00Z."""
    return moment.tz_convert("UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def windows(
    start: pd.Timestamp, end: pd.Timestamp, limit: timedelta
) -> list[tuple[pd.Timestamp, pd.Timestamp]]:
    """[start, end) cut into consecutive pieces no longer than `limit` (an API's per-request range cap)."""
    pieces = []
    lo = start
    while lo < end:
        hi = min(lo + limit, end)
        pieces.append((lo, hi))
        lo = hi
    return pieces


class LiveProvider(ABC):
    """Base of the API providers: implements `IntensitySource` on top of three sans-IO exchanges."""

    name: str
    kind: ClassVar[SignalKind]
    url_env: ClassVar[str]
    default_url: ClassVar[str]

    def __init__(
        self,
        *,
        base_url: str | None = None,
        transport: SyncTransport | None = None,
        async_transport: AsyncTransport | None = None,
        cache: TTLCache | None = None,
        ttl: timedelta = timedelta(minutes=5),
        failure_ttl: timedelta = timedelta(seconds=30),
        max_age: timedelta = timedelta(hours=3),
        clock: Callable[[], pd.Timestamp] = utcnow,
    ) -> None:
        """`ttl`: how long an answer is reused; `failure_ttl`: how long a failure is (so an outage costs one
        attempt, with its retries, per period rather than one per decision; never longer than `ttl`)."""
        if max_age <= timedelta(0):
            raise InvalidInputError(f"max_age={max_age} must be positive")
        if failure_ttl < timedelta(0):
            raise InvalidInputError(f"failure_ttl={failure_ttl} must not be negative (0 keeps no failure)")
        self.base_url = base_url_from(base_url, self.url_env, self.default_url)
        self.transport = transport or SyncTransport()
        self.async_transport = async_transport or AsyncTransport()
        self.cache = cache if cache is not None else shared_cache()
        self.ttl = ttl
        self.failure_ttl = failure_ttl
        self.max_age = max_age
        self.clock = clock

    def __repr__(self) -> str:
        creds = ", credentials=***" if self.secrets() else ""
        return f"{type(self).__name__}(base_url={redact(self.base_url)!r}{creds})"

    # --- what a concrete provider writes -----------------------------------------------------------------
    def secrets(self) -> tuple[Secret, ...]:
        """The credentials this provider holds (scrubbed from any API text we quote)."""
        return ()

    def normalise_zone(self, zone: str) -> str:
        """Check a zone's spelling before any request; override for provider-specific forms."""
        if not isinstance(zone, str) or not zone.strip():
            raise InvalidInputError(f"zone={zone!r} must be a non-empty string such as 'DE' or 'GB'")
        return zone.strip()

    def before(self, zone: str) -> tuple[Hashable, timedelta, Callable[[], Exchange[Any]]] | None:
        """A step every operation needs first (e.g. a login): cache key, lifetime, exchange; None if none.

        It runs through the shared cache, so concurrent operations (and provider objects) share one result.
        """
        return None

    @abstractmethod
    def latest_exchange(self, zone: str, now: pd.Timestamp) -> Exchange[IntensityReading]: ...

    @abstractmethod
    def history_exchange(
        self, zone: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> Exchange[IntensitySignal]: ...

    @abstractmethod
    def forecast_exchange(
        self, zone: str, start: pd.Timestamp | None, horizon: timedelta, now: pd.Timestamp
    ) -> Exchange[IntensitySignal]: ...

    # --- IntensitySource ---------------------------------------------------------------------------------
    def latest(self, zone: str) -> IntensityReading:
        z = self.normalise_zone(zone)
        return self._fresh(self._sync(("latest", z), z, lambda: self.latest_exchange(z, self.clock())))

    def history(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        z, lo, hi = self._range(zone, start, end)
        return self._sync(("history", z, lo, hi), z, lambda: self.history_exchange(z, lo, hi))

    def forecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        z, lo = self._forecast_args(zone, start, horizon)
        return self._sync(
            ("forecast", z, lo, horizon), z, lambda: self.forecast_exchange(z, lo, horizon, self.clock())
        )

    async def alatest(self, zone: str) -> IntensityReading:
        z = self.normalise_zone(zone)
        return self._fresh(await self._async(("latest", z), z, lambda: self.latest_exchange(z, self.clock())))

    async def ahistory(self, zone: str, start: datetime, end: datetime) -> IntensitySignal:
        z, lo, hi = self._range(zone, start, end)
        return await self._async(("history", z, lo, hi), z, lambda: self.history_exchange(z, lo, hi))

    async def aforecast(
        self, zone: str, start: datetime | None = None, horizon: timedelta = timedelta(hours=24)
    ) -> IntensitySignal:
        z, lo = self._forecast_args(zone, start, horizon)
        return await self._async(
            ("forecast", z, lo, horizon), z, lambda: self.forecast_exchange(z, lo, horizon, self.clock())
        )

    def _fresh(self, reading: IntensityReading) -> IntensityReading:
        """Check age again on the way out: a cached value ages, and callers may hold a stricter limit."""
        self.require_fresh(reading.zone, reading.period_start, self.clock())
        return reading

    # --- driving exchanges -------------------------------------------------------------------------------
    def _sync(self, key: tuple[Hashable, ...], zone: str, build: Callable[[], Exchange[T]]) -> T:
        def fetch() -> T:
            try:
                step = self.before(zone)
                if step is not None:
                    key, life, first = step
                    self.cache.get_or_fetch(
                        key,
                        life.total_seconds(),
                        lambda: run_sync(first(), self.transport),
                        failure_ttl=self.failure_ttl.total_seconds(),
                    )
                return run_sync(build(), self.transport)
            except TransportFailure as exc:
                self._raise_unreachable(zone, exc)

        return self.cache.get_or_fetch(
            self._cache_key(key),
            self.ttl.total_seconds(),
            fetch,
            failure_ttl=self.failure_ttl.total_seconds(),
        )

    async def _async(self, key: tuple[Hashable, ...], zone: str, build: Callable[[], Exchange[T]]) -> T:
        async def fetch() -> T:
            try:
                step = self.before(zone)
                if step is not None:
                    key, life, first = step
                    await self.cache.aget_or_fetch(
                        key,
                        life.total_seconds(),
                        lambda: run_async(first(), self.async_transport),
                        failure_ttl=self.failure_ttl.total_seconds(),
                    )
                return await run_async(build(), self.async_transport)
            except TransportFailure as exc:
                self._raise_unreachable(zone, exc)

        return await self.cache.aget_or_fetch(
            self._cache_key(key),
            self.ttl.total_seconds(),
            fetch,
            failure_ttl=self.failure_ttl.total_seconds(),
        )

    def _cache_key(self, key: tuple[Hashable, ...]) -> tuple[Hashable, ...]:
        return (self.name, self.base_url, *key)

    def _range(self, zone: str, start: datetime, end: datetime) -> tuple[str, pd.Timestamp, pd.Timestamp]:
        lo, hi = require_utc(start, "start"), require_utc(end, "end")
        if hi <= lo:
            raise InvalidInputError(f"end={hi.isoformat()} must be after start={lo.isoformat()}")
        return self.normalise_zone(zone), lo, hi

    def _forecast_args(
        self, zone: str, start: datetime | None, horizon: timedelta
    ) -> tuple[str, pd.Timestamp | None]:
        if horizon <= timedelta(0):
            raise InvalidInputError(f"horizon={horizon} must be positive, e.g. timedelta(hours=24)")
        return self.normalise_zone(zone), None if start is None else require_utc(start, "start")

    # --- checking responses (used by the exchanges) ------------------------------------------------------
    def fail(self, error: type[ProviderError], zone: str, cause: str, **extra: Any) -> NoReturn:
        """Raise `error` with the house message: provider, zone, cause (credentials scrubbed)."""
        raise error(
            f"{self.name}: zone {zone!r}: {self.scrub(cause)}", provider=self.name, zone=zone, **extra
        )

    def scrub(self, text: str) -> str:
        for secret in self.secrets():
            if secret.reveal():
                text = text.replace(secret.reveal(), "***")
        return text

    def _raise_unreachable(self, zone: str, exc: TransportFailure) -> NoReturn:
        self.fail(
            ProviderUnavailableError,
            zone,
            f"cannot reach {exc.request.url}: {exc.cause} after {exc.attempts} attempts",
        )

    def check(self, response: Response, zone: str, *, credential_hint: str = "") -> Any:
        """The JSON body of a successful response; a typed error for any other."""
        status = response.status
        if status < 200 or status >= 300:
            self._raise_for_status(response, zone, credential_hint)
        try:
            return response.json()
        except (ValueError, RecursionError) as exc:
            snippet = clip(response.text, 80).replace("\n", " ")
            why = "JSON nested too deeply to parse" if isinstance(exc, RecursionError) else "malformed JSON"
            self.fail(
                MalformedResponseError,
                zone,
                f"{why} from {response.request.url} (HTTP {status}, body starts {snippet!r})",
            )

    def _raise_for_status(self, response: Response, zone: str, credential_hint: str) -> NoReturn:
        status, where = response.status, response.request.url
        said = api_message(response)
        detail = f"HTTP {status} from {where}" + (f": {said}" if said else "")
        if status == 401:
            self.fail(
                AuthenticationError, zone, f"credentials refused ({detail}); {credential_hint}".rstrip("; ")
            )
        if status == 403:
            self.fail(
                AuthenticationError, zone, f"access denied: the account's plan may not cover this ({detail})"
            )
        if status == 404:
            self.fail(UnknownProviderZoneError, zone, f"unknown zone or region ({detail})")
        if status == 429:
            wait = retry_after_seconds(response.headers.get("Retry-After"), response.received_at)
            self.fail(
                RateLimitedError, zone, f"rate limited ({detail}); {_retry_text(wait)}", retry_after=wait
            )
        if status >= 500:
            self.fail(ProviderUnavailableError, zone, f"server error after retries ({detail})")
        if _names_zone(said, zone):
            self.fail(UnknownProviderZoneError, zone, f"the API does not know this zone ({detail})")
        self.fail(ProviderRequestError, zone, f"request rejected ({detail})")

    def require_fresh(self, zone: str, period_start: pd.Timestamp, now: pd.Timestamp) -> None:
        """StaleDataError when the newest value is older than `max_age`."""
        age = now - period_start
        if age > pd.Timedelta(self.max_age):
            self.fail(
                StaleDataError,
                zone,
                f"stale data: newest value is from {period_start.isoformat()}, {_age_text(age)} old "
                f"(limit {_age_text(pd.Timedelta(self.max_age))})",
            )

    def reading(
        self,
        zone: str,
        value: Any,
        period_start: Any,
        now: pd.Timestamp,
        *,
        fields: tuple[str, str],
        scale: float = 1.0,
        source: str | None = None,
    ) -> IntensityReading:
        """A checked, fresh reading from one API data point; `fields` names its (time, value) keys."""
        time_field, value_field = fields
        if value is None:
            self.fail(EmptyDataError, zone, f"the API returned no current value ({value_field} is null)")
        ts = self.moment(zone, time_field, period_start)
        number = self.intensity(zone, value_field, value, scale)
        self.require_fresh(zone, ts, now)
        return IntensityReading(
            zone=zone,
            value=number,
            period_start=ts,
            kind=self.kind,
            source=source or self.name,
            fetched_at=now,
        )

    def signal(
        self,
        zone: str,
        points: Iterable[tuple[Any, Any]],
        *,
        what: str,
        fields: tuple[str, str],
        scale: float = 1.0,
        source: str | None = None,
        resolution: pd.Timedelta | None = None,
        issued_at: pd.Timestamp | None = None,
        notes: tuple[str, ...] = (),
    ) -> IntensitySignal:
        """A signal from (timestamp, value) pairs named `fields`; a null value is a reported gap (NaN).

        EmptyDataError when there are no points; MalformedResponseError for any bad timestamp or value.
        """
        time_field, value_field = fields
        rows = [
            (
                self.moment(zone, time_field, t),
                math.nan if v is None else self.intensity(zone, value_field, v, scale),
            )
            for t, v in points
        ]
        if not rows:
            self.fail(EmptyDataError, zone, f"the API returned no {what} data points")
        missing = sum(1 for _, v in rows if math.isnan(v))
        if missing:
            notes += (f"{missing} period(s) have no value from the API ({value_field} null; kept as gaps)",)
        series = pd.Series(dict(rows), dtype="float64").sort_index()
        series = series[~series.index.duplicated(keep="last")]
        series.index = pd.DatetimeIndex(series.index).tz_convert("UTC")
        return make_signal(
            series,
            zone=zone,
            kind=self.kind,
            source=source or self.name,
            resolution=resolution,
            issued_at=issued_at,
            notes=notes,
        )

    def clip(
        self, zone: str, sig: IntensitySignal, lo: pd.Timestamp, hi: pd.Timestamp, *, forecast: bool = False
    ) -> IntensitySignal:
        """The periods of `sig` starting in [lo, hi); a forecast that ended before `lo` is stale, not empty."""
        part = sig.between(lo, hi)
        if not part.values.dropna().empty:
            return part
        span = f"{sig.start.isoformat()} to {sig.end.isoformat()}"
        if forecast and sig.end <= lo:
            self.fail(StaleDataError, zone, f"stale forecast: it covers {span}, all before {lo.isoformat()}")
        self.fail(EmptyDataError, zone, f"no data between {lo.isoformat()} and {hi.isoformat()} (got {span})")

    def field(self, zone: str, what: str, read: Callable[[], T]) -> T:
        """Run a parser step that reads `what`; a missing key or bad shape becomes MalformedResponseError.

        The cause is in brackets, not after "{what}: ": redaction masks the word after "token: " as a secret.
        """
        try:
            return read()
        except PARSE_ERRORS as exc:
            self.fail(
                MalformedResponseError,
                zone,
                f"unexpected response shape reading {what} ({type(exc).__name__}: {str(exc)[:200]})",
            )

    def bad_field(self, zone: str, name: str, value: Any, expected: str) -> NoReturn:
        """MalformedResponseError quoting the field and its bad value."""
        self.fail(MalformedResponseError, zone, f"field {name!r} is {short_repr(value)}; expected {expected}")

    def intensity(self, zone: str, name: str, value: Any, scale: float = 1.0) -> float:
        """One intensity from field `name`, times `scale`: a finite number in [0, MAX_INTENSITY] or an error."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.bad_field(zone, name, value, "a number")
        try:
            number = float(value) * scale
        except OverflowError:
            self.bad_field(zone, name, value, f"a plausible intensity, at most {MAX_INTENSITY:g}")
        problem = intensity_problem(number)
        if problem is not None:
            self.bad_field(zone, name, value, problem)
        return number

    def moment(self, zone: str, name: str, value: Any) -> pd.Timestamp:
        """A timestamp from field `name` as UTC: an ISO 8601 string with a zone, within a plausible range."""
        expected = "an ISO 8601 timestamp with a zone, e.g. '2023-06-01T00:00:00Z'"
        if not isinstance(value, str):
            self.bad_field(zone, name, value, expected)
        try:
            ts = pd.Timestamp(value)
        except PARSE_ERRORS:
            self.bad_field(zone, name, value, expected)
        if pd.isna(ts) or ts.tzinfo is None:
            self.bad_field(zone, name, value, expected)
        if not EARLIEST <= ts < LATEST:
            self.bad_field(zone, name, value, f"a time between {EARLIEST:%Y} and {LATEST:%Y}")
        return ts.tz_convert("UTC")


def api_message(response: Response) -> str:
    """The API's own error words from its JSON body (any of the three shapes), else a short body excerpt."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return clip(response.text, 120).strip()
    parts: list[str] = []
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # NESO: {"error": {"code", "message"}}
            parts += [str(err.get("code", "")), str(err.get("message", ""))]
        elif err:
            parts.append(str(err))
        parts += [str(body[k]) for k in ("msg", "message", "detail") if body.get(k)]
    else:
        parts.append(clip(json.dumps(body), 120))
    return clip("; ".join(p for p in parts if p), 300)


def _names_zone(said: str, zone: str) -> bool:
    text = said.lower()
    return zone.lower() in text or any(word in text for word in ("zone", "region", "postcode"))


def _retry_text(wait: float | None) -> str:
    """When to try again, in words: the API may not have said, or said more than we take (`RETRY_AFTER_CAP`)."""
    if wait is None:
        return "the API did not say when to retry (no usable Retry-After header)"
    text = f"{wait:.0f} s" if wait < 120 else _age_text(pd.Timedelta(seconds=wait))
    return f"retry after {text}" + (" or more" if wait >= RETRY_AFTER_CAP else "")


def _age_text(age: pd.Timedelta) -> str:
    minutes = int(age.total_seconds() // 60)
    if minutes < 120:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"
