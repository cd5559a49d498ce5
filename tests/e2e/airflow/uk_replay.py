"""A NESO (UK carbon intensity) API on 127.0.0.1 that replays a real recorded 48 h forecast, and counts calls.

`GET /intensity/<from>/fw48h` answers the recorded `intensity_fw48h.json` (96 real half-hours) moved to start
at `<from>`; `GET /intensity` answers the recorded latest reading moved to the current half-hour; history
(`/intensity/<from>/<to>`, `/intensity/<to>/pt24h`) answers the recorded day `intensity_pt24h.json` (48 real
half-hours) repeated over the range, so our model has a past to fit on. `calls_to` counts calls per kind. With
`delay` set, every answer waits that long first (an upstream that hangs); `stop()` ends any wait at once.
It is a threading server, so a slow answer never holds the others up.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd

RECORDED = (
    Path(__file__).resolve().parents[2] / "fixtures" / "api" / "uk-carbonintensity"
)  # see its SOURCE.md
_FORECAST = re.compile(r"^/intensity/([0-9T:\-]+Z)/fw48h$")
_HISTORY = re.compile(r"^/intensity/([0-9T:\-]+Z)/([0-9T:\-]+Z)$")
_DAY = re.compile(r"^/intensity/([0-9T:\-]+Z)/pt24h$")
HALF_HOUR = pd.Timedelta(minutes=30)


def _recorded(name: str) -> Any:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def _moved(rows: list[dict[str, Any]], start: pd.Timestamp) -> list[dict[str, Any]]:
    """The recorded rows, every `from`/`to` shifted by one offset so that the first starts at `start`."""
    shift = start - pd.Timestamp(rows[0]["from"])
    fmt = "%Y-%m-%dT%H:%MZ"
    return [
        {**row, "from": (pd.Timestamp(row["from"]) + shift).strftime(fmt),
         "to": (pd.Timestamp(row["to"]) + shift).strftime(fmt)}
        for row in rows
    ]  # fmt: skip


def _repeated_day(start: pd.Timestamp, end: pd.Timestamp) -> list[dict[str, Any]]:
    """The recorded day's half-hours repeated over [start, end), each at its own time of day."""
    day = _recorded("intensity_pt24h.json")["data"]
    first = pd.Timestamp(day[0]["from"])
    fmt = "%Y-%m-%dT%H:%MZ"
    rows = []
    for moment in pd.date_range(start.ceil(HALF_HOUR), end, freq=HALF_HOUR, inclusive="left"):
        row = day[int((moment - first) / HALF_HOUR) % len(day)]
        rows.append({**row, "from": moment.strftime(fmt), "to": (moment + HALF_HOUR).strftime(fmt)})
    return rows


class UKReplayServer:
    """Start with `start()`, point `CARBON_AWARE_UK_URL` at `url`, read `calls`, `stop()` when done."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.calls = 0
        self.calls_to: Counter[str] = Counter()  # "latest", "forecast", "history", "other"
        self.in_flight = 0
        self.most_in_flight = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="uk-replay", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> UKReplayServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @staticmethod
    def kind(path: str) -> str:
        if path == "/intensity":
            return "latest"
        if _FORECAST.match(path):
            return "forecast"
        return "history" if _HISTORY.match(path) or _DAY.match(path) else "other"

    def answer(self, path: str) -> tuple[int, Any]:
        if found := _HISTORY.match(path):
            return 200, {"data": _repeated_day(pd.Timestamp(found[1]), pd.Timestamp(found[2]))}
        if found := _DAY.match(path):
            end = pd.Timestamp(found[1])
            return 200, {"data": _repeated_day(end - pd.Timedelta(hours=24), end)}
        if path == "/intensity":
            now = pd.Timestamp.now("UTC").floor("30min")
            return 200, {"data": _moved(_recorded("intensity.json")["data"], now)}
        found = _FORECAST.match(path)
        if found is None:
            return 404, {"error": {"code": "404", "message": f"no such path {path}"}}
        rows = _recorded("intensity_fw48h.json")["data"]
        return 200, {"data": _moved(rows, pd.Timestamp(found[1]))}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with upstream._lock:
                    upstream.calls += 1
                    upstream.calls_to[upstream.kind(self.path.split("?")[0])] += 1
                    upstream.in_flight += 1
                    upstream.most_in_flight = max(upstream.most_in_flight, upstream.in_flight)
                try:
                    if upstream.delay and upstream._stopping.wait(upstream.delay):
                        return
                    status, body = upstream.answer(self.path.split("?")[0])
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    with upstream._lock:
                        upstream.in_flight -= 1

            def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read `calls`
                return

        return Handler
