"""HTTP for the live providers, sans-IO: providers build `Request`s and parse `Response`s; transports send.

A provider operation is an `Exchange`: a generator that yields requests and receives responses (WattTime
logs in, then asks; on 401 it logs in again). `run_sync` drives one over requests, `run_async` over
httpx.AsyncClient, so no provider logic is written twice. Both transports retry connection errors and 5xx
with exponential backoff and honour 429 `Retry-After`; neither ever logs a header or a credential, and
neither follows a redirect (`refuse_redirect`): credentials go only to the host they were configured for.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import functools
import json
import logging
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

import certifi
import httpx
import pandas as pd
import requests

from carbon_sensors.redact import redact, remember
from carbon_sensors.timeutil import utcnow

log = logging.getLogger(__name__)

T = TypeVar("T")


class Secret:
    """A credential that never shows itself in repr, str, logs or exception text; `reveal()` to send it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value
        remember(value)  # masked in every text redacted from now on, even when cut short

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def credential_problem(value: str, *, header: bool = True) -> str | None:
    """Why `value` cannot be sent as a credential (None when it can); the text never quotes the value.

    Both transports fail on such values before anything is sent (requests: InvalidHeader, which would be
    retried and reported as unreachable; both: UnicodeEncodeError), so providers refuse them up front.
    `header=False` is for basic auth, which is base64-encoded, so surrounding spaces are legal there.
    """
    if header and value != value.strip():
        return "starts or ends with whitespace (a pasted newline or space?); remove it"
    if any(ord(char) > 0x7E for char in value):  # no position: it would tell the secret's length
        return "has a non-ASCII character; credentials are printable ASCII"
    if any(char < " " for char in value):
        return "has a control character; credentials are printable ASCII"
    return None


@dataclass(frozen=True)
class Request:
    """One HTTP request, as data. Header values and the basic-auth password may be `Secret`s."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: Mapping[str, str | Secret] = field(default_factory=dict)
    basic_auth: tuple[str, Secret] | None = None

    def __post_init__(self) -> None:
        redact(self.url)  # remembers a `user:password@` password, so an excerpt of the URL is masked too

    def plain_headers(self) -> dict[str, str]:
        """Headers with secrets revealed: for transports only, right before sending."""
        out = {"Accept": "application/json"}
        out.update({k: v.reveal() if isinstance(v, Secret) else v for k, v in self.headers.items()})
        return out

    def plain_auth(self) -> tuple[str, str] | None:
        return None if self.basic_auth is None else (self.basic_auth[0], self.basic_auth[1].reveal())

    @property
    def target(self) -> str:
        """URL and query for messages and logs (providers put no credential in URLs)."""
        if not self.params:
            return self.url
        return self.url + "?" + "&".join(f"{k}={v}" for k, v in self.params)


@dataclass(frozen=True)
class Response:
    """One HTTP response, as data; `status` 0 never occurs (unreachable hosts raise `TransportFailure`)."""

    status: int
    body: bytes
    headers: Mapping[str, str]
    request: Request
    received_at: pd.Timestamp

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; `ValueError` when it is not (the provider turns that into a typed error)."""
        return json.loads(self.body)


class TransportFailure(Exception):
    """The request could not be completed at all (connection refused, DNS, timeout), after retries."""

    def __init__(self, request: Request, cause: str, attempts: int) -> None:
        super().__init__(redact(f"{request.method} {request.url}: {cause} (after {attempts} attempts)"))
        self.request = request
        self.cause = cause
        self.attempts = attempts


Exchange = Generator[Request, Response, T]
"""A provider operation: yields requests, receives their responses, returns the parsed answer."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to try again: connection errors and 5xx back off exponentially; 429 waits its `Retry-After`.

    `max_wait` caps any single wait: a server asking for longer gets its 429 back at once (a deadline is
    never spent sleeping on a rate limit).
    """

    retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_wait: float = 120.0

    def delay_after_status(self, response: Response, attempt: int) -> float | None:
        """Seconds to wait before retrying this response, or None to hand it back as is."""
        if attempt >= self.retries:
            return None
        if response.status == 429:
            stated = retry_after_seconds(response.headers.get("Retry-After"), response.received_at)
            wait = self.backoff_delay(attempt) if stated is None else stated
            return wait if wait <= self.max_wait else None
        if response.status >= 500:
            return self.backoff_delay(attempt)
        return None

    def delay_after_failure(self, attempt: int) -> float | None:
        return None if attempt >= self.retries else self.backoff_delay(attempt)

    def verdict(self, request: Request, outcome: Response | Exception, attempt: int) -> Response | float:
        """What a transport does after an attempt: hand back this response, or wait this many seconds.

        An exception (the request never completed) past the last retry becomes `TransportFailure`.
        """
        if isinstance(outcome, Response):
            delay = self.delay_after_status(outcome, attempt)
            if delay is None:
                return outcome
            what = f"HTTP {outcome.status}"
        else:
            what = _failure_cause(outcome)
            delay = self.delay_after_failure(attempt)
            if delay is None:
                raise TransportFailure(request, what, attempt + 1) from None
        log.warning("%s %s: %s; retrying in %.2fs", request.method, request.url, what, delay)
        return delay

    def backoff_delay(self, attempt: int) -> float:
        return float(min(self.backoff * 2.0**attempt, self.max_backoff))


RETRY_AFTER_CAP = 7 * 24 * 3600.0
"""The longest Retry-After we take as stated (a week, past any rate-limit window the APIs use): a larger one,
even digits that overflow to inf, reads as this, so `retry_after` stays a number a scheduler can add to a time."""


def retry_after_seconds(value: str | None, now: pd.Timestamp) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date, at most `RETRY_AFTER_CAP`; None when
    absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():  # str.isdigit alone passes '²', which float() refuses
        return min(float(text), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return min(max(0.0, float((pd.Timestamp(when) - now).total_seconds())), RETRY_AFTER_CAP)


FOLLOW_REDIRECTS = False
"""Both transports hand a 3xx back instead of following it (see `refuse_redirect`)."""


def refuse_redirect(response: Response, attempts: int) -> None:
    """A 3xx answer is a failure naming the new address; it is never followed, by either transport.

    Following it would send the request's credentials (an `auth-token` header, basic auth, a bearer token)
    to whatever host the answer names. If the API really moved, the base URL is changed on purpose.
    """
    if not 300 <= response.status < 400:
        return
    request = response.request
    where = _origin(urljoin(request.url, response.headers.get("Location", "")))
    raise TransportFailure(
        request,
        f"HTTP {response.status} redirect to {where} not followed (credentials go only to the configured "
        "host; set the base URL to the new address if the API moved)",
        attempts,
    )


def _origin(url: str) -> str:
    """scheme://host[:port] of `url`, without any user:password, path or query."""
    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname or '?'}{port}"


def _headers_of(raw: Mapping[str, str]) -> dict[str, str]:
    """Case-insensitive lookups for the few headers we read, by normalising names."""
    return {"-".join(p.capitalize() for p in k.split("-")): v for k, v in raw.items()}


class SyncTransport:
    """Blocking HTTP on a `requests.Session`, with the retry policy."""

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session = session or requests.Session()
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"SyncTransport(timeout={self.timeout}, retry={self.retry})"

    def send(self, request: Request) -> Response:
        attempt = 0
        while True:
            outcome: Response | Exception
            try:
                raw = self.session.request(
                    request.method,
                    request.url,
                    params=list(request.params),
                    headers=request.plain_headers(),
                    auth=request.plain_auth(),
                    timeout=self.timeout,
                    allow_redirects=FOLLOW_REDIRECTS,
                )
                outcome = Response(raw.status_code, raw.content, _headers_of(raw.headers), request, utcnow())
            except requests.RequestException as exc:
                outcome = exc
            else:
                refuse_redirect(outcome, attempt + 1)
            verdict = self.retry.verdict(request, outcome, attempt)
            if isinstance(verdict, Response):
                return verdict
            self._sleep(verdict)
            attempt += 1


class AsyncTransport:
    """Non-blocking HTTP on `httpx.AsyncClient` (for Airflow triggers), with the same retry policy.

    Without a client of its own it opens one per exchange (login and data call share it) and closes it after.
    """

    def __init__(
        self,
        *,
        client: httpx.AsyncClient | None = None,
        timeout: float = 10.0,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"AsyncTransport(timeout={self.timeout}, retry={self.retry})"

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Callable[[Request], Awaitable[Response]]]:
        if self.client is not None:
            client = self.client
            yield lambda request: self.send(client, request)
            return
        async with httpx.AsyncClient(timeout=self.timeout, verify=_tls_context()) as own:
            yield lambda request: self.send(own, request)

    async def send(self, client: httpx.AsyncClient, request: Request) -> Response:
        attempt = 0
        auth = request.plain_auth()
        while True:
            outcome: Response | Exception
            try:
                raw = await client.request(
                    request.method,
                    request.url,
                    params=list(request.params),
                    headers=request.plain_headers(),
                    auth=auth if auth is not None else httpx.USE_CLIENT_DEFAULT,
                    timeout=self.timeout,
                    follow_redirects=FOLLOW_REDIRECTS,
                )
                outcome = Response(raw.status_code, raw.content, _headers_of(raw.headers), request, utcnow())
            except httpx.HTTPError as exc:
                outcome = exc
            else:
                refuse_redirect(outcome, attempt + 1)
            verdict = self.retry.verdict(request, outcome, attempt)
            if isinstance(verdict, Response):
                return verdict
            await self._sleep(verdict)
            attempt += 1


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every client: building one costs tens of milliseconds, far more than a request."""
    return ssl.create_default_context(cafile=certifi.where())


def _failure_cause(exc: Exception) -> str:
    """A short cause without the library's text (which can carry URLs with parameters, never headers)."""
    text = str(exc).lower()
    chain: BaseException | None = exc
    while chain is not None:
        if isinstance(chain, ConnectionRefusedError):
            return "connection refused"
        chain = chain.__cause__ or chain.__context__
    if "refused" in text:
        return "connection refused"
    if isinstance(exc, requests.Timeout | httpx.TimeoutException) or "timed out" in text:
        return "timed out"
    return f"connection failed ({type(exc).__name__})"


def run_sync(exchange: Exchange[T], transport: SyncTransport) -> T:
    """Drive a provider exchange to its answer over the blocking transport."""
    try:
        request = next(exchange)
        while True:
            request = exchange.send(transport.send(request))
    except StopIteration as stop:
        result: T = stop.value
        return result


async def run_async(exchange: Exchange[T], transport: AsyncTransport) -> T:
    """Drive a provider exchange to its answer over the async transport."""
    async with transport.session() as send:
        try:
            request = next(exchange)
            while True:
                request = exchange.send(await send(request))
        except StopIteration as stop:
            result: T = stop.value
            return result
