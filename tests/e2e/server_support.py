"""Helpers of the end-to-end tests: a real `python -m service` subprocess on a free loopback
port (random weights, CPU), its metrics, raw HTTP over a socket, and test images."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 120.0


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    """A running service process."""

    proc: subprocess.Popen
    url: str
    port: int
    log: Path
    client: httpx.Client
    """Kept open: polls cost a round trip, not a new connection and client each time."""

    def log_text(self) -> str:
        """Everything the process wrote so far."""
        return self.log.read_text(errors="replace")

    def metrics(self) -> str:
        """The /metrics page."""
        return self.client.get("/metrics").text

    def metric(self, name: str, /, **labels: str) -> float:
        """One sample from /metrics (0 when absent)."""
        return sample(self.metrics(), name, **labels)

    def stop(self, timeout: float = 60.0) -> int:
        """SIGTERM, then wait (SIGKILL if it hangs); returns the exit code."""
        self.client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


def log_lines(server: Server, message: str) -> list[dict]:
    """The service's JSON log records whose message is `message`, oldest first."""
    return [json.loads(line) for line in server.log_text().splitlines() if f'"{message}"' in line]


def replica_pids(server: Server) -> list[int]:
    """The model replica processes the service started with (its "replicas loaded" record)."""
    (loaded,) = log_lines(server, "replicas loaded")
    return loaded["pids"]


def sample(text: str, name: str, /, **labels: str) -> float:
    """The sample `name{labels}` in a Prometheus text page (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return 0.0


def start_server(
    log_dir: Path,
    start_timeout_s: float = START_TIMEOUT_S,
    until: str = "/readyz",
    env: dict[str, str] | None = None,
    command: list[str] | None = None,
    **settings: Any,
) -> Server:
    """Start the service (`python -m service`, or `command`) with ABPN_<KEY>=value for each
    setting (and `env` on top) and wait until `until` answers 200: ready by default,
    "/healthz" for a server still warming up."""
    port = free_port()
    env = {
        **os.environ,
        "ABPN_HOST": "127.0.0.1",
        "ABPN_PORT": str(port),
        "ABPN_WEIGHTS": "random",
        "ABPN_DEVICES": "cpu",
        **{f"ABPN_{key.upper()}": str(value) for key, value in settings.items()},
        **(env or {}),
    }
    log = log_dir / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command or [sys.executable, "-m", "service"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=out,
        )
    url = f"http://127.0.0.1:{port}"
    server = Server(proc, url, port, log, httpx.Client(base_url=url, timeout=10))
    deadline = time.monotonic() + start_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}:\n{server.log_text()}")
        try:
            if server.client.get(until, timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the server was not ready in {start_timeout_s}s:\n{server.log_text()}")


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll `predicate` until it holds (bounded)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout}s")
        time.sleep(0.01)


def raw_request(port: int, head: str, body: bytes = b"", timeout: float = 20.0) -> bytes:
    """Send one HTTP/1.1 request over a plain socket and return what comes back."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(head.replace("\n", "\r\n").encode() + body)
        received = b""
        while b"\r\n\r\n" not in received and (data := s.recv(65536)):
            received += data
        headers, _, rest = received.partition(b"\r\n\r\n")
        length = 0
        for line in headers.split(b"\r\n")[1:]:
            key, _, value = line.partition(b":")
            if key.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length and (data := s.recv(65536)):
            rest += data
        return headers + b"\r\n\r\n" + rest
