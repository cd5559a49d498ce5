"""Typed errors: every failure a user can hit has its own class and a message naming the bad value.

Every message is redacted when the error is made (`carbon_sensors.redact`): whatever quotes an error (logs,
XCom, artifacts, the UI plugin) never carries a credential from it.
"""

from __future__ import annotations

from typing import Any

from carbon_sensors.redact import redact


class CarbonAwareError(Exception):
    """Base class of every error this package raises on purpose; its text arguments are redacted."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*(redact(a) if isinstance(a, str) else a for a in args))


class InvalidInputError(CarbonAwareError, ValueError):
    """An argument is out of range or malformed; the message names the value and what would be valid."""


class NaiveDatetimeError(InvalidInputError):
    """A datetime without a time zone reached the boundary; we never guess the zone."""


class UnknownZoneError(CarbonAwareError, LookupError):
    """A zone (or region) is not known to the source asked; the message lists the nearest known names."""


class TraceError(CarbonAwareError):
    """A trace file cannot be read or has a bad row (the message gives file and line)."""


class TraceQualityError(TraceError):
    """A trace has duplicate timestamps or gaps that the caller asked to treat as errors."""


class NoDataError(CarbonAwareError):
    """A question was asked for a time range the source has no data for."""


class IncompatibleSignalsError(CarbonAwareError):
    """Two signals of different kinds (average vs marginal) or zones were combined; never mixed silently."""


class ProviderError(CarbonAwareError):
    """A live carbon-intensity API failed; the message names provider, zone and cause, never a credential."""

    def __init__(self, message: str, *, provider: str = "", zone: str = "") -> None:
        super().__init__(message)
        self.provider = provider
        self.zone = zone


class AuthenticationError(ProviderError):
    """The API refused the credentials (missing, wrong or expired key; or the plan does not cover the call)."""


class RateLimitedError(ProviderError):
    """The API kept answering 429 after we waited as asked; `retry_after` is its last stated wait (seconds)."""

    def __init__(
        self, message: str, *, provider: str = "", zone: str = "", retry_after: float | None = None
    ) -> None:
        super().__init__(message, provider=provider, zone=zone)
        self.retry_after = retry_after


class StaleDataError(ProviderError):
    """The newest value is older than the allowed age: an error, never a silently old number."""


class MalformedResponseError(ProviderError):
    """The API answered, but not with the JSON shape or units we expect."""


class EmptyDataError(ProviderError, NoDataError):
    """The API answered with no data points for the question asked."""


class ProviderUnavailableError(ProviderError):
    """The API could not be reached, or kept failing (connection errors, 5xx) after retries."""


class ProviderRequestError(ProviderError):
    """The API rejected the request itself (400/422): the message carries the API's own words."""


class UnknownProviderZoneError(ProviderError, UnknownZoneError):
    """The API does not know the zone or region asked for (404, or its own error body says so)."""


class FallbackExhaustedError(ProviderError):
    """Every source of a fallback chain failed or was too stale; the message lists each one's cause."""


class MissingCredentialsError(CarbonAwareError, LookupError):
    """A named credentials store entry (Prefect block, Airflow connection) does not exist; says how to make it."""


class PowerSourceUnavailableError(CarbonAwareError):
    """A power source (NVML, RAPL) cannot be used here; the message says why, so the fallback is explained."""


class CheckpointError(CarbonAwareError):
    """A training checkpoint is missing, unreadable, or belongs to a different job."""


class UnsafePathError(CheckpointError, InvalidInputError):
    """A checkpoint path (a LATEST pointer, a resume path) would leave its store; the message names both."""
