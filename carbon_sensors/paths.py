"""Checkpoint paths that cannot leave their store: safe run-key segments and confined pointers.

A run key is built from names the user or the orchestrator chose (dag id, run id, task id, map index,
Prefect flow and run names). Airflow's default run-id pattern allows `..`, and names may hold `/`, so a
segment used as is could point two runs at one folder or climb out of the store. `safe_segment` turns any
non-empty name into one folder name, deterministically and without collisions: characters outside
`[A-Za-z0-9_.-]` (and a name made only of dots) are replaced by `_`, and a name that had to change gets
`-` plus the first 8 hex digits of its SHA-256, so `a:b` and `a_b` stay apart. A name that needs no change
is kept as is, so existing keys of plain names do not move.

`confine` checks that a path read from somewhere an attacker may write (a `LATEST` pointer, a resume path
from XCom or deferral kwargs) resolves inside the store's folder, or for object storage inside its bucket
and prefix; anything else raises `UnsafePathError`.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from pathlib import Path
from urllib.parse import urlsplit

from carbon_sensors.errors import InvalidInputError, UnsafePathError

_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_KEPT = 100  # characters of a changed or over-long name kept before its hash (file names stop at 255)


def is_object_storage(location: str) -> bool:
    """True for `scheme://...` (object storage), False for a local path."""
    return bool(_SCHEME.match(location))


def safe_segment(value: object, what: str) -> str:
    """`value` as one safe folder name (see the module); `what` names it in the error for an empty value."""
    text = str(value)
    if not text:
        raise InvalidInputError(f"{what}={value!r} is empty; a checkpoint run key needs a non-empty {what}")
    cleaned = _UNSAFE.sub("_", text)
    if not cleaned.strip("."):
        cleaned = cleaned.replace(".", "_")
    if cleaned == text and len(text) <= _MAX_KEPT:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{cleaned[:_MAX_KEPT]}-{digest}"


def run_key(**segments: object) -> str:
    """A relative `a/b/c` key from named segments, in the order given: `run_key(dag_id=..., run_id=...)`."""
    return "/".join(safe_segment(value, what) for what, value in segments.items())


def confine(path: str | Path, root: str | Path, what: str) -> str:
    """`path` normalised, if it lies inside `root` (a folder or an object-storage URL); else UnsafePathError.

    Local paths are compared after resolving `..` and symlinks. URLs must share the root's scheme and
    bucket (with any `conn_id@`), and their normalised key must lie under the root's prefix.
    """
    given, base = str(path), str(root)
    if is_object_storage(base) != is_object_storage(given):
        raise UnsafePathError(
            f"{what} {given!r} is not inside the checkpoint store {base!r} "
            "(one is an object-storage URL, the other a local path)"
        )
    if is_object_storage(base):
        inside, normalised = _url_inside(given, base)
    else:
        resolved, resolved_base = Path(given).resolve(), Path(base).resolve()
        inside, normalised = resolved.is_relative_to(resolved_base), str(resolved)
    if not inside:
        raise UnsafePathError(
            f"{what} {given!r} resolves outside the checkpoint store {base!r}; "
            "a checkpoint path must name a file inside the store"
        )
    return normalised


def _url_inside(given: str, base: str) -> tuple[bool, str]:
    url, root = urlsplit(given), urlsplit(base)
    key = posixpath.normpath("/" + url.path.lstrip("/"))
    prefix = posixpath.normpath("/" + root.path.lstrip("/"))
    same_bucket = (url.scheme.lower(), url.netloc) == (root.scheme.lower(), root.netloc)
    under = key == prefix or key.startswith(prefix.rstrip("/") + "/")
    return same_bucket and under, f"{url.scheme}://{url.netloc}{key}"
