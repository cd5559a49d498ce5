"""Start background processes for an end-to-end test and stop every one of them (and their children) by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psutil


class ProcessGroup:
    """Processes this test started, each in its own session; `stop()` ends them and every descendant."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[subprocess.Popen[bytes]] = []
        self.seen: dict[int, psutil.Process] = {}

    def start(
        self, name: str, args: Sequence[str], *, env: dict[str, str], cwd: Path
    ) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            list(args), env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append(proc)
        return proc

    def remember_descendants(self) -> None:
        """Note every live descendant now: flow runs start in their own sessions, so a group kill misses them."""
        for proc in self.started:
            try:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    self.seen.setdefault(child.pid, child)
            except psutil.NoSuchProcess:
                continue

    def stop(self, grace: float = 10.0) -> list[int]:
        """SIGTERM each started process group and every known descendant, then SIGKILL what remains."""
        self.remember_descendants()
        targets = [psutil.Process(p.pid) for p in self.started if p.poll() is None] + list(self.seen.values())
        for proc in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for child in self.seen.values():
            with contextlib.suppress(psutil.NoSuchProcess):
                child.terminate()
        _, alive = psutil.wait_procs(targets, timeout=grace)
        for survivor in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                survivor.kill()
        psutil.wait_procs(alive, timeout=grace)
        for proc in self.started:
            proc.wait(timeout=grace)
        return [p.pid for p in targets if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name} ==\n{p.read_text(errors='replace')[-4000:]}" for p in self.log_dir.glob("*.log")
        )


def wait_until(condition: Callable[[], object], *, timeout: float, interval: float = 0.5, what: str) -> None:
    """Poll `condition()` until truthy; TimeoutError naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
