"""Typed errors: every failure a user can hit has its own class and a message naming the bad value."""

from __future__ import annotations


class CarbonAwareError(Exception):
    """Base class of every error this package raises on purpose."""


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
