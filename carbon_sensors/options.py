"""Options as Airflow and Prefect hand them over (JSON-like values) parsed by one typed schema.

Why a schema, not the constructor's annotations: a JSON number where a duration is due must not silently become
something else (`{"recheck": 900}` once became 900 ns: 35 pause/resume cycles in 5 s, no training step). Each
option names its parser; a parser returns the typed value or raises `InvalidInputError` naming the option, the
bad value and how to write a good one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.timeutil import MAX_DURATION, parse_duration
from carbon_sensors.validation import MAX_INTENSITY, intensity_problem, short_repr

Parser = Callable[[Any, str], Any]
DURATION_HELP = "e.g. '90s', '15min', '6h', ISO 8601 'PT15M', or a timedelta"


def duration(value: Any, name: str) -> timedelta:
    """A positive duration: '15min' style, ISO 8601 ('PT15M', 'P1DT2H') or a timedelta; never a bare number."""
    if isinstance(value, int | float):  # bool included: True is no duration either
        raise InvalidInputError(
            f"{name}={value!r} is a bare number, which has no unit; write a duration such as "
            f"'{value}s' or '{value}min' ({DURATION_HELP})"
        )
    if not isinstance(value, str | timedelta):
        raise InvalidInputError(f"{name}={value!r} is not a duration ({DURATION_HELP})")
    return parse_duration(value, name)


def number(value: Any, name: str) -> float:
    """A finite number (a numeric string is accepted: Airflow renders templates to strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInputError(f"{name}={value!r} is not a number; give e.g. {name}=250")
    try:
        parsed = float(value)
    except (ValueError, OverflowError):
        raise InvalidInputError(f"{name}={value!r} is not a number; give e.g. {name}=250") from None
    if not math.isfinite(parsed):
        raise InvalidInputError(f"{name}={value!r} must be a finite number")
    return parsed


def day_span(value: Any, name: str) -> float:
    """A number of days of history, in (0, MAX_DURATION]: none leaves nothing to read, more overflows the clock."""
    parsed = number(value, name)
    if not 0 < parsed <= MAX_DURATION.days:
        raise InvalidInputError(
            f"{name}={value!r} must be more than 0 and at most {MAX_DURATION.days} days; give e.g. {name}=7"
        )
    return parsed


def intensity_limit(value: Any, name: str) -> float:
    """A threshold in gCO2eq/kWh, in [0, MAX_INTENSITY]: below it no reading passes, above it every one does."""
    parsed = number(value, name)
    if intensity_problem(parsed) is not None:
        raise InvalidInputError(
            f"{name}={value!r} gCO2eq/kWh must be 0 or more and at most {MAX_INTENSITY:g}; give e.g. {name}=250"
        )
    return parsed


def boolean(value: Any, name: str) -> bool:
    """True/False, or the strings 'true'/'false' (any case) as templates render them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InvalidInputError(f"{name}={value!r} is not a boolean; give true or false")


def choice(*allowed: str) -> Parser:
    """One of `allowed` (exact strings)."""

    def parse(value: Any, name: str) -> str:
        if value not in allowed:
            raise InvalidInputError(f"{name}={value!r} is not valid; use one of {list(allowed)}")
        return str(value)

    return parse


@dataclass(frozen=True)
class Option:
    """One option: how its value is parsed, and whether it must be given (else the constructor's default)."""

    parse: Parser
    required: bool = False


Schema = Mapping[str, Option]


def option_mapping(value: Any, name: str) -> dict[str, Any]:
    """Options as a dict; None is none. A list or a string ('percentile=30') is refused, never half-read."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(
            f'{name} must be a mapping (a JSON object) of option names to values, e.g. {{"percentile": 30}}; '
            f"got the {type(value).__name__} {short_repr(value)}"
        )
    return dict(value)


def parse_options(what: str, schema: Schema, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The options in `given` parsed by `schema`; an unknown, missing or ill-typed one is an error naming it.

    `what` names the thing configured in messages, e.g. "strategy='threshold'".
    """
    values = option_mapping(given, f"the options of {what}")
    unknown = sorted(set(values) - set(schema))
    if unknown:
        raise InvalidInputError(f"{what} does not take {unknown}; it takes {sorted(schema)}")
    missing = [key for key, option in schema.items() if option.required and key not in values]
    if missing:
        raise InvalidInputError(f"{what} needs {', '.join(f'{key}=' for key in missing)}")
    return {key: schema[key].parse(value, key) for key, value in values.items()}
