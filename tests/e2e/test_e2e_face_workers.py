"""The face worker processes live and die with the service: a signal to the whole process
group leaves them parsing through the drain, a service killed outright takes them along, and a
worker hung mid-parse costs its request a 504 and is replaced.
(The model replica's process, the service's other spawned child, has its own tests in
test_e2e_replicas.py.)"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest
from images import encoded, grace_hopper
from server_support import REPO, Server, replica_pids, start_server

PORTRAIT = encoded(grace_hopper())
PNG = {"content-type": "image/png"}


def _workers(server: Server) -> list[psutil.Process]:
    """The face workers: the service's spawned children other than its model replica."""
    replicas = set(replica_pids(server))
    return [
        p
        for p in psutil.Process(server.proc.pid).children()
        if "spawn_main" in " ".join(p.cmdline()) and p.pid not in replicas
    ]


def test_workers_exit_when_the_service_is_killed(tmp_path) -> None:
    server = start_server(tmp_path, face_workers=1)
    try:
        workers = _workers(server)
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
        workers = _workers(server)
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


def test_a_hung_face_worker_is_a_504_and_is_replaced(tmp_path) -> None:
    # The limit also bounds the first parse of the new worker: wide enough for any machine.
    server = start_server(tmp_path, face_workers=1, faces_timeout_s=10)
    try:
        (hung,) = _workers(server)
        hung.suspend()  # SIGSTOP: what a wedged native call looks like
        r = server.client.post("/v1/retouch", content=PORTRAIT, headers=PNG, timeout=60)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "model_timeout"
        restarts = server.metric(
            "abpn_process_restarts_total", process="face_worker", reason="timeout"
        )
        assert restarts == 1
        psutil.wait_procs([hung], timeout=10)
        assert not hung.is_running() or hung.status() == psutil.STATUS_ZOMBIE
        # The replacement serves; liveness stayed up: the pool recovered by itself.
        r = server.client.post("/v1/retouch", content=PORTRAIT, headers=PNG, timeout=60)
        assert r.status_code == 200 and r.headers["x-faces"] == "1"
        (worker,) = _workers(server)
        assert worker.pid != hung.pid
        assert server.client.get("/healthz").status_code == 200
    finally:
        server.stop()


# What setuptools writes for the `abpn-serve` entry point; spawned workers re-run it first.
CONSOLE_SCRIPT = """import sys
from service.__main__ import main
if __name__ == '__main__':
    sys.argv[0] = sys.argv[0].removesuffix('.exe')
    sys.exit(main())
"""
# Native libraries, which is what a process's memory maps show: torch's, and those of the web
# stack (pydantic's core under FastAPI, uvloop and httptools under uvicorn when installed).
HEAVY = ("libtorch", "_pydantic_core", "uvloop", "httptools")


@pytest.mark.parametrize("launcher", ["python -m service", "abpn-serve"])
def test_workers_load_no_torch_and_the_service_no_face_parser(tmp_path, launcher: str) -> None:
    command = env = None
    if launcher == "abpn-serve":
        script = tmp_path / "abpn-serve"
        script.write_text(CONSOLE_SCRIPT)
        command = [sys.executable, str(script)]
        # As installed: the script's own folder first on sys.path, the project importable.
        env = {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    server = start_server(tmp_path, face_workers=1, command=command, env=env)
    try:
        workers = _workers(server)
        assert len(workers) == 1
        loaded = [m.path for m in workers[0].memory_maps()]
        heavy = sorted({Path(p).name for p in loaded if any(h in p for h in HEAVY)})
        assert not heavy, heavy
        (replica,) = replica_pids(server)
        modelled = [m.path for m in psutil.Process(replica).memory_maps()]
        assert any("libtorch" in p for p in modelled)
        # The replica gets its parses from the worker, and the service only passes them on:
        # no parser loaded in either.
        served = [m.path for m in psutil.Process(server.proc.pid).memory_maps()]
        for maps in (modelled, served):
            parsers = sorted({Path(p).name for p in maps if "mediapipe" in p or "yuface" in p})
            assert not parsers, parsers
    finally:
        server.stop()
