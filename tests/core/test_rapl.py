"""RAPL on fake /sys/class/powercap trees: wrap-around, mirrored dies, psys, permission denied."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from carbon_sensors.errors import PowerSourceUnavailableError
from carbon_sensors.power import RAPL, PowerMonitor, RaplMeter, discover_meters

MAX_RANGE = 262_143_328_850  # a real package's max_energy_range_uj


def zone(root: Path, folder: str, name: str, energy_uj: int, max_range: int = MAX_RANGE) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy_uj}\n")
    (path / "max_energy_range_uj").write_text(f"{max_range}\n")
    return path


def set_energy(path: Path, energy_uj: int) -> None:
    (path / "energy_uj").write_text(f"{energy_uj}\n")


def test_one_package_counts_its_delta_and_ignores_sub_domains(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    core = zone(tmp_path, "intel-rapl:0/intel-rapl:0:0", "core", 500_000)
    meter = RaplMeter(tmp_path)
    assert meter.devices() == {"cpu:package-0": RAPL}
    set_energy(pkg, 3_500_000)
    set_energy(core, 2_000_000)
    assert meter.read_joules() == {"cpu:package-0": pytest.approx(2.5)}


def test_wrap_around_uses_max_energy_range(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", MAX_RANGE - 1_000_000)
    meter = RaplMeter(tmp_path)
    set_energy(pkg, 2_000_000)  # wrapped: 1 J before the top, 2 J after it
    assert meter.read_joules()["cpu:package-0"] == pytest.approx(3.0)
    set_energy(pkg, 5_000_000)
    assert meter.read_joules()["cpu:package-0"] == pytest.approx(6.0)
    assert any("wrapped 1 time" in n for n in meter.notes())


def test_two_packages_are_both_counted(tmp_path: Path) -> None:
    p0 = zone(tmp_path, "intel-rapl:0", "package-0", 10_000_000)
    p1 = zone(tmp_path, "intel-rapl:1", "package-1", 20_000_000)
    meter = RaplMeter(tmp_path)
    set_energy(p0, 11_000_000)
    set_energy(p1, 24_000_000)
    assert meter.read_joules() == {"cpu:package-0": pytest.approx(1.0), "cpu:package-1": pytest.approx(4.0)}


def test_mirrored_dies_and_mmio_mirror_are_counted_once(tmp_path: Path) -> None:
    die0 = zone(tmp_path, "intel-rapl:0", "package-0-die-0", 7_000_000)
    die1 = zone(tmp_path, "intel-rapl:1", "package-0-die-1", 7_000_000)  # the same counter, mirrored
    mmio = zone(tmp_path, "intel-rapl-mmio:0", "package-0-die-0", 7_000_000)
    meter = RaplMeter(tmp_path)
    assert list(meter.devices()) == ["cpu:package-0-die-0"]
    for path in (die0, die1, mmio):
        set_energy(path, 9_000_000)
    assert meter.read_joules() == {"cpu:package-0-die-0": pytest.approx(2.0)}
    notes = " | ".join(meter.notes())
    assert "intel-rapl:1 (package-0-die-1): its counter mirrors intel-rapl:0" in notes
    assert "intel-rapl-mmio:0 (package-0-die-0): mirrors a domain already counted" in notes


def test_psys_is_never_added_on_top_of_the_package(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    psys = zone(tmp_path, "intel-rapl:1", "psys", 0)
    meter = RaplMeter(tmp_path)
    set_energy(pkg, 4_000_000)
    set_energy(psys, 9_000_000)
    assert meter.read_joules() == {"cpu:package-0": pytest.approx(4.0)}
    assert any("psys" in n for n in meter.notes())


def test_psys_alone_is_not_a_package_measurement(tmp_path: Path) -> None:
    zone(tmp_path, "intel-rapl:0", "psys", 0)
    with pytest.raises(PowerSourceUnavailableError, match="no package domain"):
        RaplMeter(tmp_path)


def test_permission_denied_falls_back_to_the_estimate_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 0)
    (pkg / "energy_uj").chmod(0o400)
    if (
        os.geteuid() == 0
    ):  # root reads any file; make the read fail the way the kernel does for a non-root user
        real_read_text = Path.read_text

        def denied(self: Path, *args: object, **kwargs: object) -> str:
            if self.name == "energy_uj":
                raise PermissionError(13, "Permission denied", str(self))
            return real_read_text(self, *args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(PowerSourceUnavailableError, match="CVE-2020-8694"):
        RaplMeter(tmp_path)
    notes: list[str] = []
    meters = discover_meters(rapl_root=tmp_path, environ={"CUDA_VISIBLE_DEVICES": ""}, notes=notes)
    with PowerMonitor(meters, start=False) as monitor:
        assert monitor.sources() == {"cpu": "estimate", "ram": "estimate"}
    assert any("not readable" in n and "CPU energy is estimated instead" in n for n in notes)


def test_missing_powercap_is_a_clear_reason(tmp_path: Path) -> None:
    with pytest.raises(PowerSourceUnavailableError, match="does not exist"):
        RaplMeter(tmp_path / "absent")


def test_monitor_timeline_keeps_reading_so_wraps_are_not_missed(tmp_path: Path) -> None:
    pkg = zone(tmp_path, "intel-rapl:0", "package-0", 0, max_range=10_000_000)
    with PowerMonitor([RaplMeter(tmp_path)], start=False) as monitor:
        monitor.begin_window("job")
        for energy in (4_000_000, 8_000_000, 2_000_000, 6_000_000):  # wraps once between samples
            set_energy(pkg, energy)
            monitor.sample()
        measured = monitor.end_window("job")
    assert measured.joules == {"cpu:package-0": pytest.approx(16.0)}
    assert [round(m.total_joules) for m in monitor.timeline()] == [4, 4, 4, 4]
