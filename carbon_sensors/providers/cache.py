"""A per-process TTL cache shared by sync and async callers, so N askers for one zone cost one upstream attempt.

Why here and not in each sensor: thousands of waiting Airflow triggers on one zone run in one event loop;
each asks its own provider object, but they all share `shared_cache()`. Concurrent asks for one key, from
threads, from tasks of one event loop or from several loops, wait on the single fetch in flight and get its
value or its error. A typed failure (`CarbonAwareError`) is kept for a short `failure_ttl` too, so a failing
upstream costs one attempt (with its retries) per period instead of one per decision. In-flight records
live only while their fetch runs: nothing per key outlives its entry, and `clear()` frees everything.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

from carbon_sensors.errors import CarbonAwareError, InvalidInputError

T = TypeVar("T")


@dataclass
class CacheStats:
    """Counters to check that deduplication works (hits include waits on an in-flight fetch)."""

    hits: int = 0
    misses: int = 0


class _Entry(NamedTuple):
    expires: float
    value: Any
    failed: bool  # `value` is the error the fetch raised


@dataclass
class _Flight:
    """One fetch in progress; every asker of its key waits on `future`."""

    thread: int  # the thread running it: a blocking wait from that same thread would never end
    future: concurrent.futures.Future[Any] = field(default_factory=concurrent.futures.Future)


class _Ticket(NamedTuple):
    """What `_join` found: a cached value (flight None), a fetch to wait for, or one to run (mine)."""

    flight: _Flight | None
    mine: bool = False
    value: Any = None


class TTLCache:
    """Values kept for a time-to-live, at most `max_entries` of them (oldest evicted first)."""

    def __init__(self, *, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise InvalidInputError(f"max_entries={max_entries} must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self._lock = threading.Lock()
        self.stats = CacheStats()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.stats = CacheStats()

    def peek(self, key: Hashable) -> tuple[bool, Any]:
        """(True, value) while `key` holds a fresh value, else (False, None); a kept failure is no value."""
        with self._lock:
            entry = self._fresh(key)
            if entry is None or entry.failed:
                return False, None
            return True, entry.value

    def put(self, key: Hashable, value: Any, ttl: float) -> None:
        self._store(key, value, ttl, failed=False)

    def get_or_fetch(
        self, key: Hashable, ttl: float, fetch: Callable[[], T], *, failure_ttl: float = 0.0
    ) -> T:
        """The cached value (or kept failure), or `fetch()` run once while other askers of `key` wait for it.

        A `CarbonAwareError` from `fetch` is kept for `min(ttl, failure_ttl)` seconds; other errors are not.
        """
        while True:
            flight, mine, value = self._join(key)
            if flight is None:
                return value  # type: ignore[no-any-return]
            if mine:
                try:
                    result = fetch()
                except BaseException as exc:
                    self._land(key, flight, exc, self._failure_life(exc, ttl, failure_ttl), failed=True)
                    raise
                self._land(key, flight, result, ttl, failed=False)
                return result
            if flight.thread == threading.get_ident():  # an async fetch of this very thread is in flight
                return fetch()
            try:
                concurrent.futures.wait([flight.future])
                return flight.future.result()  # type: ignore[no-any-return]
            except concurrent.futures.CancelledError:
                continue  # its owner was cancelled (an event loop shut down): ask again
            except BaseException as exc:
                raise _fresh_copy(exc) from None

    async def aget_or_fetch(
        self, key: Hashable, ttl: float, fetch: Callable[[], Awaitable[T]], *, failure_ttl: float = 0.0
    ) -> T:
        """The async twin of `get_or_fetch`; the fetch runs as its own task, so a cancelled asker does not
        cancel it for the others."""
        while True:
            flight, mine, value = self._join(key)
            if flight is None:
                return value  # type: ignore[no-any-return]
            if mine:
                task = asyncio.get_running_loop().create_task(
                    self._arun(key, ttl, failure_ttl, flight, fetch)
                )
                task.add_done_callback(_retrieve)
                result: T = await asyncio.shield(task)
                return result
            try:
                shared: T = await asyncio.shield(asyncio.wrap_future(flight.future))
                return shared
            except asyncio.CancelledError:
                if flight.future.cancelled():
                    continue  # its owner was cancelled: ask again
                raise  # this asker itself was cancelled
            except Exception as exc:
                raise _fresh_copy(exc) from None

    async def _arun(
        self,
        key: Hashable,
        ttl: float,
        failure_ttl: float,
        flight: _Flight,
        fetch: Callable[[], Awaitable[T]],
    ) -> T:
        try:
            result = await fetch()
        except BaseException as exc:
            self._land(key, flight, exc, self._failure_life(exc, ttl, failure_ttl), failed=True)
            raise
        self._land(key, flight, result, ttl, failed=False)
        return result

    # --- bookkeeping (all under the one lock) ------------------------------------------------------------
    def _join(self, key: Hashable) -> _Ticket:
        """Answer from the cache (a kept failure is raised), or join the fetch in flight, or start one."""
        with self._lock:
            entry = self._fresh(key)
            if entry is not None:
                self.stats.hits += 1
                if entry.failed:
                    raise _fresh_copy(entry.value)
                return _Ticket(None, value=entry.value)
            flight = self._flights.get(key)
            if flight is not None:
                self.stats.hits += 1
                return _Ticket(flight)
            self.stats.misses += 1
            flight = self._flights[key] = _Flight(threading.get_ident())
            return _Ticket(flight, mine=True)

    def _land(self, key: Hashable, flight: _Flight, outcome: Any, ttl: float, *, failed: bool) -> None:
        """Store a fetch's outcome, retire its flight, then wake its waiters (who find the entry if they ask
        again)."""
        self._store(key, outcome, ttl, failed=failed)
        with self._lock:
            if self._flights.get(key) is flight:
                del self._flights[key]
        if isinstance(outcome, asyncio.CancelledError):
            flight.future.cancel()
        elif failed:
            flight.future.set_exception(outcome)
        else:
            flight.future.set_result(outcome)

    def _store(self, key: Hashable, value: Any, ttl: float, *, failed: bool) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._entries[key] = _Entry(self._clock() + ttl, value, failed)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def _fresh(self, key: Hashable) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None and entry.expires <= self._clock():
            del self._entries[key]
            return None
        return entry

    @staticmethod
    def _failure_life(error: BaseException, ttl: float, failure_ttl: float) -> float:
        """Typed failures (a refused key, an unreachable API) are kept briefly; anything else is not."""
        return min(ttl, failure_ttl) if isinstance(error, CarbonAwareError) else 0.0


def _fresh_copy(error: BaseException) -> BaseException:
    """A copy of a shared error for one asker: raising one object from many callers piles their
    tracebacks onto it. Falls back to the original when the class cannot be rebuilt from its args."""
    try:
        again = copy.copy(error)
    except Exception:
        return error
    again.__cause__ = error.__cause__
    return again


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a fetch task's error as seen: its askers get it from the flight, so nobody may await the task."""
    if not task.cancelled():
        task.exception()


_SHARED = TTLCache()


def shared_cache() -> TTLCache:
    """The process-wide cache every provider uses unless given its own."""
    return _SHARED
