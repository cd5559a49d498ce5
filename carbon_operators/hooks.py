"""`CarbonIntensityHook`: an Airflow connection of type `carbon_intensity` turned into an intensity source.

The connection holds which provider to ask and its secrets; operators and triggers only ever see the source.
Without a connection id the hook serves the embedded real traces (offline default), replayed as live when
`CARBON_AWARE_REPLAY_*` is set in the environment.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from airflow.sdk import BaseHook, Connection

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.providers.base import IntensitySource
from carbon_sensors.providers.cache import shared_cache
from carbon_sensors.providers.registry import make_source
from carbon_sensors.replay import Replay
from carbon_sensors.timeutil import parse_duration

CONN_TYPE = "carbon_intensity"
TRACE = "trace"
CONNECTION_TTL_SECONDS = 60.0


@dataclass(frozen=True)
class SourceSettings:
    """What a connection says about its source; the secret is kept out of repr and logs."""

    provider: str = TRACE
    zone: str | None = None
    base_url: str | None = None
    username: str | None = None
    secret: str | None = field(default=None, repr=False)
    trace_path: str | None = None
    dataset: str | None = None
    max_age: str | None = None
    cache_ttl: str | None = None

    @classmethod
    def from_connection(cls, conn: Connection) -> SourceSettings:
        extra = conn.extra_dejson

        def option(name: str) -> str | None:
            value = extra.get(name, extra.get(f"extra__{CONN_TYPE}__{name}"))
            return None if value in (None, "") else str(value)

        return cls(
            provider=(option("provider") or TRACE).lower(),
            zone=option("zone"),
            base_url=conn.host or None,
            username=conn.login or None,
            secret=conn.password or option("api_token"),
            trace_path=option("trace_path"),
            dataset=option("dataset"),
            max_age=option("max_age"),
            cache_ttl=option("cache_ttl"),
        )


def build_source(settings: SourceSettings, *, replay: Replay | None = None) -> IntensitySource:
    """The intensity source a connection describes, built by the providers' registry.

    Live sources are shared per process and settings: thousands of triggers on one connection hold one
    provider object (one WattTime login, no per-trigger HTTP sessions). Trace sources are cheap and read
    the replay settings of the moment (or `replay`: a deferred task's, in the triggerer), so they are built
    each time.
    """
    if settings.provider == TRACE:
        if settings.trace_path and not settings.zone:
            raise InvalidInputError("a trace_path needs the connection's zone: the zone the file records")
        files = {settings.zone: settings.trace_path} if settings.trace_path and settings.zone else None
        options: dict[str, Any] = {} if replay is None else {"replay": replay}
        return make_source(TRACE, dataset=settings.dataset, files=files, **options)
    return _live_source(settings)


@functools.lru_cache(maxsize=64)
def _live_source(settings: SourceSettings) -> IntensitySource:
    options: dict[str, Any] = {}
    if settings.base_url:
        options["base_url"] = settings.base_url
    if settings.max_age:
        options["max_age"] = parse_duration(settings.max_age, "max_age")
    if settings.cache_ttl:
        options["ttl"] = parse_duration(settings.cache_ttl, "cache_ttl")
    if settings.provider == "electricitymaps":
        options["token"] = settings.secret
    elif settings.provider == "watttime":
        options.update(username=settings.username, password=settings.secret)
    return make_source(settings.provider, **options)


class CarbonIntensityHook(BaseHook):
    """Reads a `carbon_intensity` connection and builds the intensity source it describes (sync or async)."""

    conn_name_attr = "carbon_conn_id"
    default_conn_name = "carbon_default"
    conn_type = CONN_TYPE
    hook_name = "Carbon Intensity"

    def __init__(self, carbon_conn_id: str | None = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.carbon_conn_id = carbon_conn_id

    def get_settings(self) -> SourceSettings:
        if self.carbon_conn_id is None:
            return SourceSettings()
        return SourceSettings.from_connection(self.get_connection(self.carbon_conn_id))

    async def aget_settings(self) -> SourceSettings:
        """Like `get_settings`, without blocking the triggerer's event loop.

        Shared per process for `CONNECTION_TTL_SECONDS`: thousands of triggers starting on one connection
        cost one lookup (a changed connection is seen within that time).
        """
        conn_id = self.carbon_conn_id
        if conn_id is None:
            return SourceSettings()

        async def lookup() -> SourceSettings:
            return SourceSettings.from_connection(await self.aget_connection(conn_id))

        return await shared_cache().aget_or_fetch((CONN_TYPE, conn_id), CONNECTION_TTL_SECONDS, lookup)

    def get_conn(self) -> IntensitySource:
        return build_source(self.get_settings())

    async def aget_conn(self) -> IntensitySource:
        return build_source(await self.aget_settings())
