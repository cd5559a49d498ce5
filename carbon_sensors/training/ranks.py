"""How the ranks of one training job agree: the seam between a carbon session and distributed training.

A job of N ranks must pause at the same step, close energy windows at the same steps and write one
checkpoint, or the collectives of the next step hang. The session therefore decides on the writer rank
(rank 0) only and hands its few integers to `agree`, which every rank calls once per step; energy is
measured on every rank and `total` sums it once, on the writer. `LocalSync` is the one-process case;
`carbon_sensors.training.distributed.TorchDistributedSync` the torch.distributed one, which a session
picks by itself (`default_sync`) when a process group is initialised.
"""

from __future__ import annotations

from typing import Protocol, TypeVar

from carbon_sensors.power.monitor import Measurement

T = TypeVar("T")


class RankSync(Protocol):
    """What a session needs from the ranks of its job; every method is called by every rank in step."""

    @property
    def is_writer(self) -> bool:
        """Whether this rank decides, writes the checkpoint and keeps the timeline (rank 0)."""
        ...

    @property
    def rank(self) -> int:
        """This rank's number in the job (0: the writer)."""
        ...

    @property
    def world_size(self) -> int:
        """How many ranks the job has."""
        ...

    def agree(self, values: list[int]) -> list[int]:
        """The writer's `values` on every rank (the others' arguments are placeholders of the same length)."""
        ...

    def total(self, measured: Measurement) -> Measurement:
        """Every rank's window, joined once (devices kept apart by rank); meaningful on the writer only."""
        ...

    def own(self, measured: Measurement) -> Measurement:
        """This rank's window alone, named as `total` names it, without a collective (a failed attempt's)."""
        ...

    def gather(self, value: T) -> list[T]:
        """Every rank's `value` in rank order on the writer (the others get their own alone)."""
        ...


class LocalSync:
    """One process: it is the writer, and what it decides and measures is the total."""

    rank = 0
    world_size = 1

    @property
    def is_writer(self) -> bool:
        return True

    def agree(self, values: list[int]) -> list[int]:
        return values

    def total(self, measured: Measurement) -> Measurement:
        return measured

    def own(self, measured: Measurement) -> Measurement:
        return measured

    def gather(self, value: T) -> list[T]:
        return [value]
