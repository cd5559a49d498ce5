"""PowerMonitor windows and timeline, and the CPU/RAM estimate (TDP table, cgroup limit, non-blocking)."""

from __future__ import annotations

import time
from pathlib import Path

import psutil
import pytest

from carbon_sensors.errors import InvalidInputError
from carbon_sensors.power import ESTIMATE, EstimateMeter, PowerMonitor
from carbon_sensors.power.estimate import DEFAULT_TDP_WATTS, cgroup_memory_limit, tdp_for

GB = 1024**3


class ScriptedMeter:
    """A meter whose cumulative joules the test sets."""

    def __init__(self, device: str = "dev", source: str = "rapl") -> None:
        self.total, self.device, self.source, self.fail = 0.0, device, source, False
        self.closed = False

    def devices(self) -> dict[str, str]:
        return {self.device: self.source}

    def read_joules(self) -> dict[str, float]:
        if self.fail:
            raise OSError("sensor gone")
        return {self.device: self.total}

    def notes(self) -> list[str]:
        return []

    def close(self) -> None:
        self.closed = True


def test_windows_nest_and_report_joules_per_device_and_source() -> None:
    gpu, cpu = ScriptedMeter("cuda:0", "nvml-energy"), ScriptedMeter("cpu:package-0", "rapl")
    with PowerMonitor([gpu, cpu], start=False) as monitor:
        monitor.begin_window("epoch")
        gpu.total, cpu.total = 10.0, 2.0
        monitor.begin_window("step")
        gpu.total, cpu.total = 25.0, 3.0
        step = monitor.end_window("step")
        gpu.total = 30.0
        epoch = monitor.end_window("epoch")
    assert step.joules == {"cuda:0": 15.0, "cpu:package-0": 1.0}
    assert step.sources == {"cuda:0": "nvml-energy", "cpu:package-0": "rapl"}
    assert epoch.joules == {"cuda:0": 30.0, "cpu:package-0": 3.0} and epoch.total_joules == 33.0
    assert epoch.kwh == pytest.approx(33.0 / 3.6e6)
    assert step.seconds >= 0 and step.started_at <= step.ended_at
    assert gpu.closed and cpu.closed  # leaving the monitor releases every meter (NVML handles, files)
    with pytest.raises(InvalidInputError, match="no open power window named 'step'"):
        monitor.end_window("step")


def test_background_timeline_samples_and_survives_a_failing_sensor() -> None:
    meter = ScriptedMeter()
    with PowerMonitor([meter], sample_interval_s=0.02) as monitor:
        meter.total = 5.0
        time.sleep(0.15)
        meter.fail = True
        time.sleep(0.06)
        meter.fail = False
        time.sleep(0.06)
        timeline = monitor.timeline()
    assert len(timeline) >= 4
    assert sum(m.joules["dev"] for m in timeline) == pytest.approx(5.0)
    assert all(m.name == "timeline" for m in timeline)
    with pytest.raises(InvalidInputError, match="sample_interval_s"):
        PowerMonitor([meter], sample_interval_s=0)


def test_estimate_uses_tdp_share_of_this_process_cpu_time(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\nphysical id\t: 0\n\n"
        "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Gold 6248 CPU @ 2.50GHz\nphysical id\t: 1\n"
    )
    meter = EstimateMeter(cpuinfo=cpuinfo, cgroup_root=tmp_path / "no-cgroup")
    assert meter.cpu_watts == 2 * 150.0  # two sockets of a Xeon Gold
    before_cpu = sum(psutil.Process().cpu_times()[:2])
    started = time.monotonic()
    total = 0
    while time.monotonic() - started < 0.3:  # burn CPU
        total += sum(range(1000))
    used = sum(psutil.Process().cpu_times()[:2]) - before_cpu
    joules = meter.read_joules()
    assert joules["cpu"] == pytest.approx(300.0 * used / meter.logical_cpus, rel=0.25, abs=0.5)
    assert joules["ram"] == pytest.approx(meter.ram_watts * (time.monotonic() - started), rel=0.2)
    assert meter.devices() == {"cpu": ESTIMATE, "ram": ESTIMATE}


def test_reading_the_estimate_never_blocks() -> None:
    meter = EstimateMeter()
    started = time.perf_counter()
    for _ in range(200):
        meter.read_joules()
    assert (time.perf_counter() - started) / 200 < 0.005  # cpu_percent(interval=...) would take 100s of ms


def test_ram_comes_from_the_cgroup_limit_in_a_container(tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(f"{2 * GB}\n")
    meter = EstimateMeter(include_cpu=False, cgroup_root=tmp_path)
    assert meter.ram_bytes == 2 * GB and meter.ram_watts == pytest.approx(0.75)
    assert meter.devices() == {"ram": ESTIMATE}
    assert any("cgroup memory limit" in n for n in meter.notes())
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_memory_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{4 * GB}\n")
    assert cgroup_memory_limit(v1) == 4 * GB


def test_tdp_table_and_default() -> None:
    assert tdp_for("AMD EPYC 7763 64-Core Processor") == 225.0
    assert tdp_for("Some Future CPU") == DEFAULT_TDP_WATTS
    with pytest.raises(InvalidInputError, match="tdp_watts=-1"):
        EstimateMeter(tdp_watts=-1)
