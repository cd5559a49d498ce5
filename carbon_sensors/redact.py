"""One redaction step for every text that leaves the process: credentials out, before anything is cut.

What `redact` masks (each becomes `***`):
- every credential this process holds: a `providers.http.Secret` registers its value here when it is made
  (and a `user:password@` URL its password when first seen). The whole value is masked, and so is any piece
  of `MIN_RUN` or more characters from its start or its end: what an excerpt that cut it leaves behind.
  (Pieces from its middle are not, so a readable test credential does not mask ordinary words.)
- the `user:password@` part of URLs: `https://user:pass@host/x` -> `https://***@host/x`;
- the value after a credential-looking key: `token=...`, `password: ...`, `"api_key": "..."`,
  `Authorization: Bearer ...`, and a bare `Bearer ...`.

Order matters: a text is redacted first and shortened after, never the other way round (a cut token no
longer matches the whole credential). `clip(text, limit)` does both; use it wherever a text is shortened.

Where it runs: every `CarbonAwareError` message (hence everything quoting one), `Decision.reason` (which
reaches XCom and artifacts), the HTTP transports' own messages, the Prefect artifact writers, and every log
record made in this process (a log-record factory installed on import: `install_log_redaction`).
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

MASK = "***"
MIN_RUN = 6  # a credential's characters in a row that count as a leak; shorter values are too common
# to mask wherever they appear ("None", "test"), so they are left to the key patterns below

_lock = threading.Lock()
_known: set[str] = set()  # credentials of MIN_RUN or more characters (masked whole, or by their cut ends)

_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/\s@?#]*@)")
_KEYED = re.compile(
    r"""(?P<key>(?<![A-Za-z0-9])(?:authorization|auth[-_]?token|access[-_]?token|refresh[-_]?token
          |api[-_]?(?:key|token)|client[-_]?secret|token|password|passwd|secret)
        ["']?\s*[:=]\s*["']?)
        (?P<scheme>(?:bearer|basic|token)\s+)?
        (?P<value>[^\s"',;&}\]]+)""",
    re.IGNORECASE | re.VERBOSE,
)
_BEARER = re.compile(r"(?P<key>\bbearer\s+)(?P<value>[A-Za-z0-9._~+/=-]{6,})", re.IGNORECASE)


def remember(secret: str) -> None:
    """Mask `secret` (and a cut-off start or end of it) in every text redacted from now on."""
    if len(secret) >= MIN_RUN:
        with _lock:
            _known.add(secret)


def redact(text: str) -> str:
    """`text` with every credential masked (see the module docstring)."""
    for found in _USERINFO.finditer(text):
        _, sep, password = found["userinfo"][:-1].partition(":")
        if sep:
            remember(password)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
    text = _KEYED.sub(lambda m: f"{m['key']}{m['scheme'] or ''}{MASK}", text)
    text = _BEARER.sub(lambda m: f"{m['key']}{MASK}", text)
    return _mask_known(text)


def clip(text: str, limit: int) -> str:
    """`text` redacted, then cut to at most `limit` characters (ending in '...' when cut)."""
    clean = redact(text)
    return clean if len(clean) <= limit else clean[: max(0, limit - 3)] + "..."


def redact_value(value: Any) -> Any:
    """A JSON-like value (dicts, lists, strings) with every string in it redacted; other values as they are."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    return value


def _mask_known(text: str) -> str:
    spans = [span for secret in list(_known) for span in _pieces(text, secret)]
    if not spans:
        return text
    out, done = [], 0
    for start, end in sorted(spans):
        if start > done:
            out.append(text[done:start])
        if start >= done:
            out.append(MASK)
        done = max(done, end)
    out.append(text[done:])
    return "".join(out)


def _pieces(text: str, secret: str) -> list[tuple[int, int]]:
    """Spans of `text` holding `secret`'s first MIN_RUN characters and what follows of it, or its last MIN_RUN
    characters and what precedes of it: the whole secret, or the piece an excerpt left of it."""
    spans = []
    start = text.find(secret[:MIN_RUN])
    while start != -1:
        end = start + MIN_RUN
        while end - start < len(secret) and end < len(text) and text[end] == secret[end - start]:
            end += 1
        spans.append((start, end))
        start = text.find(secret[:MIN_RUN], start + 1)
    end = text.find(secret[-MIN_RUN:])
    while end != -1:
        begin, left = end, len(secret) - MIN_RUN
        while left > 0 and begin > 0 and text[begin - 1] == secret[left - 1]:
            begin, left = begin - 1, left - 1
        spans.append((begin, end + MIN_RUN))
        end = text.find(secret[-MIN_RUN:], end + 1)
    return spans


class RedactingRecordFactory:
    """Wraps the current log-record factory: each record's message (and exception text) is redacted once."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = self.inner(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: leave it for logging to report as usual
            return record
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return record


def install_log_redaction() -> None:
    """Redact every log record made in this process from now on (idempotent)."""
    current = logging.getLogRecordFactory()
    if not isinstance(current, RedactingRecordFactory):
        logging.setLogRecordFactory(RedactingRecordFactory(current))


install_log_redaction()
