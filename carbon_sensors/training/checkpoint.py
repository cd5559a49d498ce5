"""Checkpoint files and RNG states: written atomically, read back with `weights_only=True`.

A checkpoint is written to a temp file in the same folder, fsynced, then renamed over the final name, and a
`LATEST` pointer is replaced the same way: a process killed mid-write leaves the previous checkpoint intact.
`LATEST` may only name a checkpoint file of its own folder (a pointer like `../other` is an error).
Everything stored is a tensor or plain data, so loading never unpickles arbitrary objects.
"""

from __future__ import annotations

import logging
import random
import re
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from carbon_sensors.atomic import atomic_write, atomic_write_text
from carbon_sensors.errors import CheckpointError, UnsafePathError
from carbon_sensors.paths import confine

log = logging.getLogger(__name__)

LATEST = "LATEST"
FORMAT = 2  # {"format": 2, "carbon": the session's state, "user": the loop's state}
_NAME = re.compile(r"^checkpoint-(\d+)\.pt$")


def checkpoint_name(step: int) -> str:
    return f"checkpoint-{step:010d}.pt"


def checkpoint_step(name: str) -> int | None:
    """The step of a checkpoint file name, or None for any other name (temp files included)."""
    found = _NAME.match(name)
    return int(found[1]) if found else None


def save_checkpoint(directory: str | Path, state: dict[str, Any], *, step: int, keep_last: int = 2) -> Path:
    """Write `state` as the checkpoint of `step`, point LATEST at it, and drop all but the newest `keep_last`."""
    folder = Path(directory)
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / checkpoint_name(step)
    atomic_write(final, lambda fh: torch.save(state, fh))
    atomic_write_text(folder / LATEST, final.name + "\n")
    for old in list_checkpoints(folder)[:-keep_last]:
        if old != final:
            old.unlink(missing_ok=True)
    return final


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoint files in `directory`, oldest step first (temp files are never listed)."""
    found = [(int(m[1]), p) for p in directory.glob("checkpoint-*.pt") if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or the one a folder's LATEST names (else its newest complete one)."""
    p = Path(path)
    if p.is_file():
        return p
    if not p.is_dir():
        raise CheckpointError(f"checkpoint {p} does not exist; pass a checkpoint file or a checkpoint folder")
    pointer = p / LATEST
    if pointer.is_file():
        named = _pointed_at(p, pointer.read_text(encoding="utf-8").strip())
        if named.is_file():
            return named
    files = list_checkpoints(p)
    if not files:
        raise CheckpointError(f"no checkpoint in {p} (expected files named like {checkpoint_name(0)})")
    return files[-1]


def _pointed_at(folder: Path, name: str) -> Path:
    """The file a LATEST pointer names: a bare checkpoint file name inside `folder`, never a path elsewhere."""
    if not _NAME.match(name):
        raise UnsafePathError(
            f"{folder / LATEST} holds {name!r}; it must hold a checkpoint file name of this folder, "
            f"like {checkpoint_name(0)!r}"
        )
    return Path(confine(folder / name, folder, "the checkpoint LATEST names"))


def load_checkpoint(path: str | Path) -> tuple[Path, dict[str, Any]]:
    """Load the checkpoint at `path` (file or folder) onto the CPU; returns the file used and its state."""
    file = find_checkpoint(path)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a torn or foreign file
        raise CheckpointError(f"checkpoint {file} cannot be loaded: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(
            f"{file} is not a carbon-aware training checkpoint of format {FORMAT} (found format "
            f"{state.get('format') if isinstance(state, dict) else None!r}); resume from one this version wrote"
        )
    return file, state


def load_newest(directory: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest checkpoint of `directory` that loads (by step), or None when it holds none.

    A torn or corrupt newest checkpoint (a bad disk, a half-copied download) is skipped with a warning
    and the one before it is used: the reason `keep_last` defaults to 2. When every one fails, that is
    an error, not a silent fresh start.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return None
    problems = []
    for file in reversed(list_checkpoints(folder)):
        try:
            return load_checkpoint(file)
        except CheckpointError as exc:
            log.warning("skipped checkpoint %s (%s); trying the one before it", file, exc)
            problems.append(str(exc))
    if problems:
        raise CheckpointError(f"no checkpoint in {folder} can be loaded: {'; '.join(problems)}")
    return None


def capture_rng(generators: list[torch.Generator]) -> dict[str, Any]:
    """Every RNG a training step or a data loader may draw from: Python, NumPy, torch CPU/CUDA, loader's own."""
    name, keys, pos, has_gauss, cached = cast(tuple[Any, ...], np.random.get_state(legacy=True))
    return {
        "python": random.getstate(),
        "numpy": {"name": name, "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": [g.get_state() for g in generators],
    }  # fmt: skip


def restore_rng(state: dict[str, Any], generators: list[torch.Generator]) -> None:
    random.setstate(_as_tuple(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (np_state["name"], np_state["keys"].numpy().astype(np.uint32), np_state["pos"],
         np_state["has_gauss"], np_state["cached_gaussian"])
    )  # fmt: skip
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if len(state["generators"]) != len(generators):
        raise CheckpointError(
            f"the checkpoint holds {len(state['generators'])} data-loader generator state(s), the data loader "
            f"given has {len(generators)}: resume with a data loader built like the original"
        )
    for gen, gen_state in zip(generators, state["generators"], strict=True):
        gen.set_state(gen_state)


def _as_tuple(value: Any) -> Any:
    """random.setstate wants the nested tuples that a save/load round trip may turn into lists."""
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value
