"""Probe /healthz every 50 ms from a process of its own, as a kubelet would, until standard
input closes; print one line per probe: the status and the seconds it took.

Its own process, so what it measures is the server: in the test's process the 64 clients and
pytest's own garbage collections (up to 78 ms here) would stall the probe as well."""

from __future__ import annotations

import sys
import threading
import time

import httpx


def main(url: str) -> None:
    """Probe `url` until standard input reaches its end."""
    closed = threading.Event()

    def wait_for_close() -> None:
        sys.stdin.read()
        closed.set()

    threading.Thread(target=wait_for_close, daemon=True).start()
    with httpx.Client(base_url=url, timeout=10) as http:
        while not closed.wait(0.05):
            started = time.perf_counter()
            status = http.get("/healthz").status_code
            print(status, time.perf_counter() - started, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
