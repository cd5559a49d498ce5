"""GPU energy through NVML (`nvidia-ml-py`, imported as `pynvml`), for the GPUs this process can see.

The total-energy counter is read at window edges (Volta and newer: no polling). GPUs without it are
polled for power at >= 10 Hz on a daemon thread and integrated with the trapezoid rule. Only the GPUs named by
`CUDA_VISIBLE_DEVICES` (indices or UUIDs, in CUDA's order) are counted, not every GPU of the node.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from carbon_sensors.errors import InvalidInputError, PowerSourceUnavailableError
from carbon_sensors.power.base import NVML_ENERGY, NVML_POWER, CounterAccumulator, TrapezoidIntegrator

log = logging.getLogger(__name__)

MIN_POLL_HZ = 10.0
MIG_SUFFIX = " (whole GPU, MIG)"


@dataclass
class VisibleGpu:
    """A GPU as CUDA numbers it (`cuda:<ordinal>`), the NVML handle that measures it, and how."""

    device: str
    uuid: str
    handle: Any  # the physical GPU's handle (a MIG instance is measured through its parent)
    mig: bool
    counter: CounterAccumulator | None = None  # set on the energy-counter path
    integrator: TrapezoidIntegrator | None = None  # set on the power-polling path
    errors: list[str] = field(default_factory=list)

    @property
    def source(self) -> str:
        label = NVML_ENERGY if self.counter is not None else NVML_POWER
        return label + (MIG_SUFFIX if self.mig else "")


def load_pynvml() -> ModuleType:
    """Import NVML's bindings, or say why the GPU cannot be measured."""
    try:
        return importlib.import_module("pynvml")
    except ImportError as exc:
        raise PowerSourceUnavailableError(
            "NVML: the 'nvidia-ml-py' package is not installed (pip install nvidia-ml-py)"
        ) from exc


class NvmlMeter:
    """Energy of the visible GPUs; starts a polling thread only if some GPU lacks the energy counter."""

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        poll_interval_s: float = 0.05,
        nvml: ModuleType | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 < poll_interval_s <= 1 / MIN_POLL_HZ:
            raise InvalidInputError(
                f"poll_interval_s={poll_interval_s} must be in (0, {1 / MIN_POLL_HZ}] (at least {MIN_POLL_HZ:g} Hz)"
            )
        self._nvml = nvml if nvml is not None else load_pynvml()
        self._monotonic = monotonic
        self._poll_interval_s = poll_interval_s
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._notes: list[str] = []
        try:
            self._nvml.nvmlInit()
        except self._nvml.NVMLError as exc:
            raise PowerSourceUnavailableError(f"NVML: cannot initialise the driver ({exc})") from exc
        self.gpus = self._select(os.environ if environ is None else environ)
        for gpu in self.gpus:
            self._choose_path(gpu)
        self._thread: threading.Thread | None = None
        if any(g.integrator is not None for g in self.gpus):
            self._thread = threading.Thread(target=self._poll_loop, name="nvml-power-poll", daemon=True)
            self._thread.start()

    # --- which GPUs ----------------------------------------------------------------------------------------
    def _select(self, environ: Mapping[str, str]) -> list[VisibleGpu]:
        nvml = self._nvml
        count = int(nvml.nvmlDeviceGetCount())
        visible = environ.get("CUDA_VISIBLE_DEVICES")
        entries = (
            [str(i) for i in range(count)] if visible is None else [e.strip() for e in visible.split(",")]
        )
        gpus: list[VisibleGpu] = []
        for entry in entries:
            handle = self._handle_for(entry, count)
            if handle is None:  # CUDA ignores an invalid entry and everything after it
                if entry:
                    self._notes.append(
                        f"NVML: CUDA_VISIBLE_DEVICES entry {entry!r} matches no GPU; it and later entries are ignored"
                    )
                break
            gpu = self._visible_gpu(f"cuda:{len(gpus)}", handle)
            if any(g.uuid == gpu.uuid for g in gpus):
                self._notes.append(
                    f"NVML: {gpu.device} shares physical GPU {gpu.uuid} with another visible device; counted once"
                )
                continue
            gpus.append(gpu)
        if not gpus:
            raise PowerSourceUnavailableError(
                f"NVML: no visible GPU (CUDA_VISIBLE_DEVICES={visible!r}, {count} on the node)"
            )
        return gpus

    def _handle_for(self, entry: str, count: int) -> Any:
        nvml = self._nvml
        if entry.isdigit():
            return nvml.nvmlDeviceGetHandleByIndex(int(entry)) if int(entry) < count else None
        if entry.startswith("MIG-"):
            try:
                return nvml.nvmlDeviceGetHandleByUUID(entry)
            except nvml.NVMLError:
                return None
        # CUDA accepts a unique prefix of a GPU UUID, with or without the 'GPU-' part.
        wanted = entry if entry.startswith("GPU-") else f"GPU-{entry}"
        matches = [
            h
            for h in (nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count))
            if _text(nvml.nvmlDeviceGetUUID(h)).startswith(wanted)
        ]
        return matches[0] if len(matches) == 1 else None

    def _visible_gpu(self, device: str, handle: Any) -> VisibleGpu:
        nvml = self._nvml
        if _call_or(nvml, "nvmlDeviceIsMigDeviceHandle", False, handle):
            parent = nvml.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(handle)
            uuid = _text(nvml.nvmlDeviceGetUUID(parent))
            self._notes.append(
                f"NVML: {device} is a MIG instance of {uuid}; its energy is the whole GPU's (all instances)"
            )
            return VisibleGpu(device, uuid, parent, mig=True)
        uuid = _text(nvml.nvmlDeviceGetUUID(handle))
        mode = _call_or(nvml, "nvmlDeviceGetMigMode", (0, 0), handle)
        mig = int(mode[0]) == int(getattr(nvml, "NVML_DEVICE_MIG_ENABLE", 1))
        if mig:
            self._notes.append(f"NVML: {device} ({uuid}) has MIG enabled; its energy is the whole GPU's")
        return VisibleGpu(device, uuid, handle, mig=mig)

    def _choose_path(self, gpu: VisibleGpu) -> None:
        nvml = self._nvml
        try:
            raw = int(nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle))  # millijoules
        except nvml.NVMLError:
            gpu.integrator = TrapezoidIntegrator()
            gpu.integrator.add(self._monotonic(), self._watts(gpu))
            return
        gpu.counter = CounterAccumulator(joules_per_unit=1e-3)
        gpu.counter.update(raw)

    # --- reading -------------------------------------------------------------------------------------------
    def _watts(self, gpu: VisibleGpu) -> float:
        return float(self._nvml.nvmlDeviceGetPowerUsage(gpu.handle)) / 1000.0

    def sample_power(self) -> None:
        """Take one power sample of every polled GPU (the polling thread calls this)."""
        with self._lock:
            self._sample_locked()

    def _sample_locked(self) -> None:
        now = self._monotonic()
        for gpu in self.gpus:
            if gpu.integrator is not None:
                try:
                    gpu.integrator.add(now, self._watts(gpu))
                except self._nvml.NVMLError as exc:
                    gpu.errors.append(str(exc))

    def _poll_loop(self) -> None:
        while not self._stop.wait(self._poll_interval_s):
            self.sample_power()

    def devices(self) -> dict[str, str]:
        return {g.device: g.source for g in self.gpus}

    def read_joules(self) -> dict[str, float]:
        with self._lock:
            self._sample_locked()  # window edges get a fresh power sample, not the last polled one
            out: dict[str, float] = {}
            for gpu in self.gpus:
                if gpu.counter is not None:
                    try:
                        gpu.counter.update(int(self._nvml.nvmlDeviceGetTotalEnergyConsumption(gpu.handle)))
                    except self._nvml.NVMLError as exc:
                        gpu.errors.append(str(exc))
                    out[gpu.device] = gpu.counter.total_joules
                elif gpu.integrator is not None:
                    out[gpu.device] = gpu.integrator.total_joules
            return out

    def notes(self) -> list[str]:
        notes = list(self._notes)
        for gpu in self.gpus:
            if gpu.counter is not None and gpu.counter.resets:
                notes.append(
                    f"NVML: {gpu.device} energy counter reset {gpu.counter.resets} time(s); counted from 0 after each"
                )
            if gpu.errors:
                notes.append(
                    f"NVML: {gpu.device} had {len(gpu.errors)} failed read(s), last: {gpu.errors[-1]}"
                )
        return notes

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        try:
            self._nvml.nvmlShutdown()
        except self._nvml.NVMLError as exc:
            log.debug("NVML shutdown failed: %s", exc)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _call_or(nvml: ModuleType, name: str, default: Any, *args: Any) -> Any:
    """Call an optional NVML function; a missing function or a NOT_SUPPORTED answer gives `default`."""
    fn = getattr(nvml, name, None)
    if fn is None:
        return default
    try:
        return fn(*args)
    except nvml.NVMLError:
        return default
