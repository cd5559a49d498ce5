"""NVML on a fake `pynvml` module (no GPU here): energy counter, power polling, reset, CUDA_VISIBLE_DEVICES, MIG."""

from __future__ import annotations

import sys
import time
import types
from dataclasses import dataclass, field

import pytest

from carbon_sensors.errors import InvalidInputError, PowerSourceUnavailableError
from carbon_sensors.power import NVML_ENERGY, NVML_POWER, NvmlMeter, PowerMonitor, discover_meters

NOT_SUPPORTED = 3


class FakeNVMLError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"NVML error {code}")
        self.value = code


@dataclass
class FakeGpu:
    uuid: str
    energy_mj: int | None = 0  # None: no total-energy counter (pre-Volta)
    power_mw: int = 100_000
    mig_mode: int = 0
    mig_children: list[str] = field(default_factory=list)


@dataclass
class FakeMig:
    uuid: str
    parent: FakeGpu


def fake_pynvml(gpus: list[FakeGpu]) -> types.ModuleType:
    """The subset of nvidia-ml-py's API the meter uses, backed by FakeGpu objects."""
    mod = types.ModuleType("pynvml")
    migs = {child: FakeMig(child, g) for g in gpus for child in g.mig_children}

    def by_uuid(uuid: str) -> FakeGpu | FakeMig:
        if uuid in migs:
            return migs[uuid]
        for g in gpus:
            if g.uuid == uuid:
                return g
        raise FakeNVMLError(13)

    def energy(h: FakeGpu) -> int:
        if h.energy_mj is None:
            raise FakeNVMLError(NOT_SUPPORTED)
        return h.energy_mj

    def mig_mode(h: FakeGpu) -> list[int]:
        return [h.mig_mode, h.mig_mode]

    funcs = {
        "NVMLError": FakeNVMLError,
        "NVML_DEVICE_MIG_ENABLE": 1,
        "nvmlInit": lambda: None,
        "nvmlShutdown": lambda: None,
        "nvmlDeviceGetCount": lambda: len(gpus),
        "nvmlDeviceGetHandleByIndex": lambda i: gpus[i],
        "nvmlDeviceGetHandleByUUID": by_uuid,
        "nvmlDeviceGetUUID": lambda h: h.uuid,
        "nvmlDeviceGetTotalEnergyConsumption": energy,
        "nvmlDeviceGetPowerUsage": lambda h: h.power_mw,
        "nvmlDeviceGetMigMode": mig_mode,
        "nvmlDeviceIsMigDeviceHandle": lambda h: isinstance(h, FakeMig),
        "nvmlDeviceGetDeviceHandleFromMigDeviceHandle": lambda h: h.parent,
    }
    for name, value in funcs.items():
        setattr(mod, name, value)
    return mod


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> list[FakeGpu]:
    """Four GPUs, injected as the `pynvml` module."""
    gpus = [
        FakeGpu(f"GPU-{i}a{i}b-0000-1111-2222-33334444555{i}", energy_mj=1_000 * (i + 1)) for i in range(4)
    ]
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(gpus))
    return gpus


def test_energy_counter_is_read_at_window_edges(node: list[FakeGpu]) -> None:
    meter = NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": "0"})
    assert meter.devices() == {"cuda:0": NVML_ENERGY}
    assert meter._thread is None  # no polling thread on the counter path
    node[0].energy_mj = (node[0].energy_mj or 0) + 2_500
    node[1].energy_mj = 99_999_999  # not visible: never counted
    assert meter.read_joules() == {"cuda:0": pytest.approx(2.5)}
    meter.close()


def test_counter_reset_is_not_negative_energy(node: list[FakeGpu]) -> None:
    node[0].energy_mj = 5_000
    meter = NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": "0"})
    for raw in (7_000, 1_000, 3_000):  # 2 J, then a reset (1 J since it), then 2 J
        node[0].energy_mj = raw
        meter.read_joules()
    assert meter.read_joules()["cuda:0"] == pytest.approx(5.0)
    assert any("reset 1 time" in n for n in meter.notes())
    meter.close()


def test_cuda_visible_devices_by_index_keeps_cuda_order(node: list[FakeGpu]) -> None:
    meter = NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": "2,0"})
    assert [(g.device, g.uuid) for g in meter.gpus] == [("cuda:0", node[2].uuid), ("cuda:1", node[0].uuid)]
    node[2].energy_mj = (node[2].energy_mj or 0) + 3_000
    assert meter.read_joules() == {"cuda:0": pytest.approx(3.0), "cuda:1": pytest.approx(0.0)}
    meter.close()


def test_cuda_visible_devices_by_full_and_prefix_uuid(node: list[FakeGpu]) -> None:
    full = NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": node[3].uuid})
    prefix = NvmlMeter(
        environ={"CUDA_VISIBLE_DEVICES": node[1].uuid[4:12]}
    )  # CUDA accepts 'GPU-'-less prefixes
    assert [g.uuid for g in full.gpus] == [node[3].uuid]
    assert [g.uuid for g in prefix.gpus] == [node[1].uuid]


def test_invalid_entry_ends_the_list_as_in_cuda_and_empty_means_no_gpu(node: list[FakeGpu]) -> None:
    meter = NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": "1,7,0"})
    assert [g.uuid for g in meter.gpus] == [node[1].uuid]
    assert any("'7' matches no GPU" in n for n in meter.notes())
    with pytest.raises(PowerSourceUnavailableError, match="no visible GPU"):
        NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": ""})


def test_unset_cuda_visible_devices_means_every_gpu(node: list[FakeGpu]) -> None:
    assert len(NvmlMeter(environ={}).gpus) == 4


def test_mig_instance_reports_the_whole_gpu_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = FakeGpu(
        "GPU-aaaa-mig-parent", energy_mj=10_000, mig_mode=1, mig_children=["MIG-1111", "MIG-2222"]
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([parent]))
    meter = NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": "MIG-1111,MIG-2222"})
    assert meter.devices() == {
        "cuda:0": NVML_ENERGY + " (whole GPU, MIG)"
    }  # two instances, one GPU: counted once
    parent.energy_mj = (parent.energy_mj or 0) + 4_000
    assert meter.read_joules() == {"cuda:0": pytest.approx(4.0)}
    notes = " ".join(meter.notes())
    assert "MIG instance of GPU-aaaa-mig-parent" in notes and "counted once" in notes
    whole = NvmlMeter(environ={"CUDA_VISIBLE_DEVICES": "0"})
    assert whole.devices() == {"cuda:0": NVML_ENERGY + " (whole GPU, MIG)"}


def test_power_polling_integrates_with_the_trapezoid_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu("GPU-old", energy_mj=None, power_mw=100_000)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([gpu]))
    now = [0.0]
    meter = NvmlMeter(environ={}, monotonic=lambda: now[0], poll_interval_s=0.1)
    assert meter.devices() == {"cuda:0": NVML_POWER}
    for t, watts in ((1.0, 200), (2.0, 200), (3.0, 50)):
        now[0], gpu.power_mw = t, watts * 1000
        meter.sample_power()
    now[0] = 4.0  # the window edge takes its own sample
    # (100+200)/2 + 200 + (200+50)/2 + (50+50)/2 = 150 + 200 + 125 + 50
    assert meter.read_joules() == {"cuda:0": pytest.approx(525.0)}
    meter.close()


def test_power_polling_thread_samples_at_least_10_hz(monkeypatch: pytest.MonkeyPatch) -> None:
    gpu = FakeGpu("GPU-old", energy_mj=None, power_mw=250_000)
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml([gpu]))
    meter = NvmlMeter(environ={})
    start = time.monotonic()
    time.sleep(0.5)
    joules = meter.read_joules()["cuda:0"]
    elapsed = time.monotonic() - start
    integrator = meter.gpus[0].integrator
    assert integrator is not None and integrator.samples >= 5
    assert joules == pytest.approx(250.0 * elapsed, rel=0.05)
    meter.close()
    assert meter._thread is not None and not meter._thread.is_alive()
    with pytest.raises(InvalidInputError, match="at least 10 Hz"):
        NvmlMeter(environ={}, poll_interval_s=0.5)


def test_monitor_discovers_the_gpu_next_to_the_cpu_estimate(node: list[FakeGpu]) -> None:
    notes: list[str] = []
    meters = discover_meters(
        rapl_root="/nonexistent-powercap", environ={"CUDA_VISIBLE_DEVICES": "1"}, notes=notes
    )
    with PowerMonitor(meters, start=False) as monitor:
        assert monitor.sources() == {"cuda:0": NVML_ENERGY, "cpu": "estimate", "ram": "estimate"}
        monitor.begin_window("step")
        node[1].energy_mj = (node[1].energy_mj or 0) + 1_500
        measured = monitor.end_window("step")
    assert measured.joules["cuda:0"] == pytest.approx(1.5)
    assert any("RAPL" in n for n in notes)


def test_missing_bindings_are_a_clear_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import pynvml -> ImportError
    with pytest.raises(PowerSourceUnavailableError, match="nvidia-ml-py"):
        NvmlMeter()
