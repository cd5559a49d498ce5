"""Turn a flow's `source` parameter (a JSON string) into an intensity source and its grid clock.

Flow parameters must be JSON, so a source is named: "trace" (embedded real data, replayed as live when
`CARBON_AWARE_REPLAY_*` is set), a credentials block "<block-type-slug>/<name>", or a keyless live provider
("uk"). Python callers may pass a block or a source object directly.
"""

from __future__ import annotations

from carbon_flows.credentials import BLOCK_TYPES, CarbonCredentials
from carbon_sensors.errors import InvalidInputError, MissingCredentialsError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.registry import SOURCE_NAMES, make_source
from carbon_sensors.providers.trace import TraceProvider
from carbon_sensors.replay import GridClock

TRACE = "trace"
SourceSpec = str | CarbonCredentials | IntensitySource


def resolve_source(spec: SourceSpec) -> IntensitySource:
    """The intensity source `spec` names; a missing block or an unknown name is a typed, explained error."""
    if isinstance(spec, CarbonCredentials):
        return spec.build_source()
    if not isinstance(spec, str):
        return spec
    name = spec.strip()
    if name == TRACE or name.startswith(f"{TRACE}:"):
        return make_source(TRACE, dataset=name.partition(":")[2] or None)
    if name in SOURCE_NAMES:  # a live provider configured from the environment (or needing no key: "uk")
        return make_source(name)
    if "/" in name:
        return load_credentials(name).build_source()
    raise InvalidInputError(f"source={spec!r} is not valid; use {_valid_sources()}")


def load_credentials(reference: str) -> CarbonCredentials:
    """Load the credentials block '<block-type-slug>/<name>' from the Prefect server."""
    slug, _, name = reference.partition("/")
    block_types = {cls.get_block_type_slug(): cls for cls in BLOCK_TYPES}
    if slug not in block_types or not name:
        raise InvalidInputError(f"source={reference!r} is not a credentials block; use {_valid_sources()}")
    try:
        block = block_types[slug].load(name)
    except ValueError as exc:
        raise MissingCredentialsError(
            f"no {slug} block named {name!r} on the Prefect server; create it with "
            f"`{block_types[slug].__name__}(...).save({name!r})` or in the UI (Blocks -> Add), "
            "after `prefect block register -m carbon_flows`"
        ) from exc
    assert isinstance(block, CarbonCredentials)
    return block


def _valid_sources() -> str:
    blocks = ", ".join(f"'{cls.get_block_type_slug()}/<name>'" for cls in BLOCK_TYPES)
    live = ", ".join(repr(p) for p in SOURCE_NAMES if p != TRACE)
    return (
        f"'{TRACE}', '{TRACE}:<dataset>', {live} (keys from the environment) or a credentials block: {blocks}"
    )


def clock_of(source: IntensitySource) -> GridClock:
    """Grid time for `source`: a trace's replay clock (its data read as live), else the real clock."""
    return GridClock(source.replay if isinstance(source, TraceProvider) else None)
