"""The ranks of a `torch.distributed` job agree through its process group: `TorchDistributedSync`.

Every step the writer rank (rank 0) broadcasts the session's few flags (one int64 tensor), so all ranks
pause, close energy windows and checkpoint at the same step. Energy is measured on every rank and joined
once, on the writer, by this rule (`device_identity`):

- a GPU is counted once per host, by the lowest rank that sees it (NVML names GPUs `cuda:<i>` in the
  rank's `CUDA_VISIBLE_DEVICES` order, so ranks that see all GPUs and ranks that see one agree on which is
  which);
- the CPU estimate is this process's share of the CPU, so every rank's own is counted;
- everything else (RAPL packages, the RAM estimate) measures the whole host: counted once per host, by its
  lowest rank (local rank 0 under torchrun).

Devices keep their rank in the joined window (`rank0:cuda:0`, `rank1:cuda:0`), so the report shows where
the energy went. A job spread over hosts that share one hostname must pass `host=` to tell them apart.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.power.base import ESTIMATE
from carbon_sensors.power.monitor import Measurement
from carbon_sensors.training.ranks import LocalSync, RankSync, T

_INT64 = (-(2**63), 2**63 - 1)


def device_identity(device: str, source: str, *, visible: list[str] | None, process: int) -> str:
    """What a rank's `device` physically is, so that two ranks measuring the same thing count it once.

    :param device: the monitor's device name (`cuda:0`, `cpu:package-0`, `cpu`, `ram`).
    :param source: the source label that measured it (`estimate` marks the per-process CPU estimate).
    :param visible: the rank's `CUDA_VISIBLE_DEVICES` entries (None when unset: every GPU, by index).
    :param process: the rank's process id (the CPU estimate is that process's own).
    """
    if device == "cpu" and source == ESTIMATE:
        return f"process {process}"
    if device.startswith("cuda:") and device[5:].isdigit():
        ordinal = int(device[5:])
        if visible is None:
            return f"gpu {ordinal}"
        return f"gpu {visible[ordinal]}" if ordinal < len(visible) else f"gpu ? {device}"
    return f"host-wide {device}"


@dataclass(frozen=True)
class RankWindow:
    """One rank's energy window, with where it ran and what each of its devices is."""

    rank: int
    host: str
    measured: Measurement
    identity: dict[str, str] = field(default_factory=dict)


def join_windows(windows: list[RankWindow]) -> Measurement:
    """Every rank's window as one: devices prefixed by rank, each physical device on a host counted once.

    The lowest rank of a host that measured a device keeps it; the others' readings of it are dropped
    (they measured the same joules). Times span all ranks; notes are kept once each.
    """
    if not windows:
        raise InvalidInputError("join_windows needs the window of at least one rank (got none)")
    ordered = sorted(windows, key=lambda w: w.rank)
    joules: dict[str, float] = {}
    sources: dict[str, str] = {}
    counted: dict[tuple[str, str], int] = {}
    dropped: list[str] = []
    for window in ordered:
        m = window.measured
        for device, value in m.joules.items():
            source = m.sources.get(device, "unknown")
            key = (window.host, window.identity.get(device, f"host-wide {device}"))
            if key in counted:
                dropped.append(f"rank{window.rank}:{device} (counted on rank{counted[key]})")
                continue
            counted[key] = window.rank
            joules[f"rank{window.rank}:{device}"] = value
            sources[f"rank{window.rank}:{device}"] = source
    notes = list(dict.fromkeys(n for w in ordered for n in w.measured.notes))
    if dropped:
        notes.append(
            f"distributed: measured by more than one rank of a host, counted once: {', '.join(dropped)}"
        )
    first = ordered[0].measured
    return Measurement(
        name=first.name,
        started_at=min(w.measured.started_at for w in ordered),
        ended_at=max(w.measured.ended_at for w in ordered),
        seconds=max(w.measured.seconds for w in ordered),
        joules=joules,
        sources=sources,
        notes=tuple(notes),
    )


def _visible_gpus(environ: Mapping[str, str]) -> list[str] | None:
    visible = environ.get("CUDA_VISIBLE_DEVICES")
    return None if visible is None else [e.strip() for e in visible.split(",")]


class TorchDistributedSync:
    """`RankSync` over an initialised torch.distributed process group (gloo, NCCL, ...); rank 0 writes.

    Every rank must construct it after `init_process_group`, at the same point (under NCCL it builds a gloo
    group for its own CPU-side traffic), and hand it to its session; every rank then calls `agree` and
    `total` at the same steps (the session does), as with any collective. A hung peer fails them after the
    process group's `timeout`.

    :param group: the process group (default: the whole world).
    :param host: the name energy is de-duplicated by (default: this machine's hostname).
    :param environ: where `CUDA_VISIBLE_DEVICES` is read (default: `os.environ`).
    """

    def __init__(
        self, group: Any = None, *, host: str | None = None, environ: Mapping[str, str] | None = None
    ) -> None:
        if not (dist.is_available() and dist.is_initialized()):
            raise InvalidInputError(
                "TorchDistributedSync needs an initialised process group: call "
                "torch.distributed.init_process_group() first (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR "
                "and MASTER_PORT for it), or use LocalSync / default_sync() in a single process"
            )
        backend = str(dist.get_backend(group))
        if group is None and backend == "nccl":
            # the flags travel over a CPU (gloo) group of the same ranks: a CUDA tensor read back every
            # step would make the CPU wait for the GPU's queue. new_group is collective: every rank builds it.
            group, backend = dist.new_group(backend="gloo"), "gloo"
        self._group = group
        self.rank = dist.get_rank(group)
        self.world_size = dist.get_world_size(group)
        self._writer = dist.get_global_rank(group, 0) if group is not None else 0
        # an NCCL group given by the caller takes CUDA tensors (on the device the rank set); others CPU ones
        self._device = (
            torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        )
        self.host = host if host is not None else socket.gethostname()
        self._visible = _visible_gpus(os.environ if environ is None else environ)

    @property
    def is_writer(self) -> bool:
        return self.rank == 0

    def agree(self, values: list[int]) -> list[int]:
        """Rank 0's `values` on every rank: one broadcast of a small int64 tensor (every step)."""
        for value in values:
            if not _INT64[0] <= value <= _INT64[1]:
                raise InvalidInputError(f"agree() value {value} does not fit in int64; pass int64 values")
        tensor = torch.tensor(values, dtype=torch.int64, device=self._device)
        dist.broadcast(tensor, src=self._writer, group=self._group)
        return [int(v) for v in tensor.tolist()]

    def total(self, measured: Measurement) -> Measurement:
        """Every rank's window gathered on rank 0 and joined once (`join_windows`); others get their own."""
        if self.world_size == 1:
            return self.own(measured)
        gathered: list[Any] | None = [None] * self.world_size if self.is_writer else None
        dist.gather_object(self.window(measured), gathered, dst=self._writer, group=self._group)
        if gathered is None:
            return measured
        return join_windows([w for w in gathered if isinstance(w, RankWindow)])

    def gather(self, value: T) -> list[T]:
        """Every rank's `value` in rank order on the writer (the others get their own alone): one gather."""
        if self.world_size == 1:
            return [value]
        gathered: list[Any] | None = [None] * self.world_size if self.is_writer else None
        dist.gather_object(value, gathered, dst=self._writer, group=self._group)
        return [value] if gathered is None else gathered

    def own(self, measured: Measurement) -> Measurement:
        """This rank's window alone, named as `total` names it, without a collective (for a failed attempt:
        its peers may never reach the matching call, and a gather would wait for the group's timeout)."""
        return join_windows([self.window(measured)])

    def window(self, measured: Measurement) -> RankWindow:
        """This rank's window, with what each device physically is (`device_identity`)."""
        pid = os.getpid()
        identity = {
            device: device_identity(
                device, measured.sources.get(device, "unknown"), visible=self._visible, process=pid
            )
            for device in measured.joules
        }
        return RankWindow(self.rank, self.host, measured, identity)


def default_sync() -> RankSync:
    """`TorchDistributedSync` when a torch.distributed process group is initialised, else `LocalSync`."""
    if dist.is_available() and dist.is_initialized():
        return TorchDistributedSync()
    return LocalSync()
