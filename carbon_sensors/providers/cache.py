"""A per-process TTL cache shared by sync and async callers, so N askers for one zone cost one HTTP call.

Why here and not in each sensor: thousands of waiting Airflow triggers on one zone run in one event loop;
each asks its own provider object, but they all share `shared_cache()`. Concurrent async asks for one key
wait on the single fetch in flight; concurrent threads do the same with a per-key lock. Errors are not
cached: the next ask tries again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from carbon_sensors.errors import InvalidInputError

T = TypeVar("T")


@dataclass
class CacheStats:
    """Counters to check that deduplication works (hits include waits on an in-flight fetch)."""

    hits: int = 0
    misses: int = 0


class TTLCache:
    """Values kept for a time-to-live, at most `max_entries` of them (oldest evicted first)."""

    def __init__(self, *, max_entries: int = 4096, clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise InvalidInputError(f"max_entries={max_entries} must be at least 1")
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._in_flight: dict[tuple[int, Hashable], asyncio.Task[Any]] = {}
        self.stats = CacheStats()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.stats = CacheStats()

    def peek(self, key: Hashable) -> tuple[bool, Any]:
        """(True, value) while `key` is fresh, else (False, None)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            if entry[0] <= self._clock():
                del self._entries[key]
                return False, None
            return True, entry[1]

    def put(self, key: Hashable, value: Any, ttl: float) -> None:
        if ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (self._clock() + ttl, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_or_fetch(self, key: Hashable, ttl: float, fetch: Callable[[], T]) -> T:
        """The cached value, or `fetch()` run once while other threads asking for `key` wait for it."""
        found, value = self._hit(key)
        if found:
            return value  # type: ignore[no-any-return]
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            found, value = self._hit(key)
            if found:
                return value  # type: ignore[no-any-return]
            self.stats.misses += 1
            result = fetch()
            self.put(key, result, ttl)
            return result

    async def aget_or_fetch(self, key: Hashable, ttl: float, fetch: Callable[[], Awaitable[T]]) -> T:
        """The cached value, or one `fetch()` whose result every concurrent asker in this loop awaits.

        The fetch runs as its own task: a cancelled asker does not cancel it for the others.
        """
        found, value = self._hit(key)
        if found:
            return value  # type: ignore[no-any-return]
        loop = asyncio.get_running_loop()
        slot = (id(loop), key)
        task = self._in_flight.get(slot)
        if task is None:
            self.stats.misses += 1
            task = loop.create_task(self._fetch_and_store(key, ttl, fetch))
            self._in_flight[slot] = task
            task.add_done_callback(lambda done: self._finish(slot, done))
        else:
            self.stats.hits += 1
        result: T = await asyncio.shield(task)
        return result

    def _hit(self, key: Hashable) -> tuple[bool, Any]:
        found, value = self.peek(key)
        if found:
            with self._lock:
                self.stats.hits += 1
        return found, value

    async def _fetch_and_store(self, key: Hashable, ttl: float, fetch: Callable[[], Awaitable[T]]) -> T:
        result = await fetch()
        self.put(key, result, ttl)
        return result

    def _finish(self, slot: tuple[int, Hashable], task: asyncio.Task[Any]) -> None:
        if self._in_flight.get(slot) is task:
            del self._in_flight[slot]
        if not task.cancelled():
            task.exception()  # mark retrieved: the askers re-raise it; nobody may be left to


_SHARED = TTLCache()


def shared_cache() -> TTLCache:
    """The process-wide cache every provider uses unless given its own."""
    return _SHARED
