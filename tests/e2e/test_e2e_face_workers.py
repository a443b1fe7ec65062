"""The face worker processes live and die with the service: a signal to the whole process
group leaves them parsing through the drain, and a service killed outright takes them along."""

from __future__ import annotations

import signal
import time

import psutil
from images import encoded, grace_hopper
from server_support import start_server

PORTRAIT = encoded(grace_hopper())
PNG = {"content-type": "image/png"}


def _workers(pid: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(pid).children() if "spawn_main" in " ".join(p.cmdline())]


def test_workers_exit_when_the_service_is_killed(tmp_path) -> None:
    server = start_server(tmp_path, face_workers=1)
    try:
        workers = _workers(server.proc.pid)
        assert len(workers) == 1
        r = server.client.post("/v1/retouch", content=PORTRAIT, headers=PNG)
        assert r.status_code == 200 and r.headers["x-faces"] == "1"
        server.proc.kill()
        server.proc.wait(30)
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, alive
    finally:
        server.stop()


def test_a_signal_to_the_group_leaves_the_workers_to_the_drain(tmp_path) -> None:
    server = start_server(tmp_path, face_workers=1)
    try:
        workers = _workers(server.proc.pid)
        # What Ctrl-C or a signal to the process group does to the workers.
        for worker in workers:
            worker.send_signal(signal.SIGINT)
            worker.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert all(w.is_running() for w in workers)
        r = server.client.post("/v1/retouch", content=PORTRAIT, headers=PNG)
        assert r.status_code == 200 and r.headers["x-faces"] == "1"
        assert server.stop() == 0
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert not alive, alive
    finally:
        server.stop()
