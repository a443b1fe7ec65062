"""The model replica's process, seen over HTTP: a hung model call (the process stopped with
SIGSTOP) is answered 504 `model_timeout` within ABPN_BATCH_TIMEOUT_S, a dead replica (SIGKILL)
costs the batch it held a 500 `replica_died`; either way the process is replaced, counted, and
readiness is 503 until the new one is warm. A replacement that cannot start fails liveness once
ABPN_RECOVERY_TIMEOUT_S is over, until it serves again. The replica loads no web stack, and a
second signal leaves no replica behind."""

from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import psutil
from images import encoded, grace_hopper, slow_portrait
from server_support import REPO, Server, log_lines, replica_pids, start_server, wait_for

PNG = {"content-type": "image/png"}
PORTRAIT = encoded(grace_hopper())
HEAVY = ("_pydantic_core", "uvloop", "httptools")
"""Native libraries of the web stack (pydantic's core under FastAPI, uvicorn's speedups)."""


def _replica_pid(server: Server) -> int:
    replaced = log_lines(server, "model replica replaced")
    if replaced:
        return replaced[-1]["pid"]
    (pid,) = replica_pids(server)
    return pid


def _running(server: Server) -> bool:
    """One request taken by the replica: in flight, neither arriving nor queued."""
    return (
        server.metric("abpn_in_flight_requests") == 1
        and server.metric("abpn_uploads_in_progress") == 0
        and server.metric("abpn_queue_depth") == 0
    )


def _post_in_background(server: Server, body: bytes) -> tuple[threading.Thread, list]:
    answer: list[httpx.Response] = []

    def post() -> None:
        with httpx.Client(base_url=server.url, timeout=120) as client:
            answer.append(client.post("/v1/retouch", content=body, headers=PNG))

    thread = threading.Thread(target=post)
    thread.start()
    return thread, answer


def _replaced(server: Server, old_pid: int) -> None:
    wait_for(lambda: server.client.get("/readyz").status_code == 200, 120, "ready again")
    new_pid = _replica_pid(server)
    assert new_pid != old_pid
    assert not psutil.pid_exists(old_pid) or psutil.Process(old_pid).status() == "zombie"
    r = server.client.post("/v1/retouch", content=PORTRAIT, headers=PNG)
    assert r.status_code == 200 and r.headers["x-faces"] == "1"


def test_a_hung_model_call_is_a_504_and_the_replica_is_replaced(tmp_path: Path) -> None:
    server = start_server(tmp_path, batch_timeout_s=3, max_batch_size=1)
    try:
        pid = _replica_pid(server)
        psutil.Process(pid).suspend()  # SIGSTOP: what a wedged native call looks like
        r = server.client.post("/v1/retouch", content=PORTRAIT, headers=PNG, timeout=60)
        assert r.status_code == 504, r.text
        assert r.json()["error"]["code"] == "model_timeout"
        assert server.metric("abpn_process_restarts_total", process="replica", reason="timeout")
        _replaced(server, pid)
    finally:
        server.stop()


def test_a_dead_replica_fails_its_batch_and_is_replaced(tmp_path: Path) -> None:
    server = start_server(tmp_path, max_batch_size=1)
    try:
        pid = _replica_pid(server)
        thread, answer = _post_in_background(server, encoded(slow_portrait(1200, 1024)))
        wait_for(lambda: _running(server), 60, "the request running in the replica")
        psutil.Process(pid).kill()
        thread.join(60)
        (r,) = answer
        assert r.status_code == 500, r.text
        assert r.json()["error"]["code"] == "replica_died"
        # Readiness is 503 until the new replica is warm, which takes seconds.
        assert server.client.get("/readyz").json()["error"]["code"] == "not_ready"
        assert server.metric("abpn_process_restarts_total", process="replica", reason="died") == 1
        _replaced(server, pid)
        # An idle replica's death is noticed too, without a request to find it.
        pid = _replica_pid(server)
        psutil.Process(pid).kill()
        wait_for(
            lambda: (
                server.metric("abpn_process_restarts_total", process="replica", reason="died") == 2
            ),
            30,
            "the idle death counted",
        )
        _replaced(server, pid)
    finally:
        server.stop()


def test_a_replica_that_cannot_come_back_fails_liveness_until_it_does(tmp_path: Path) -> None:
    shipped = REPO / "model" / "weights"
    weights = tmp_path / "weights"
    shutil.copytree(shipped, weights)
    checkpoint = weights / "abpn-default.safetensors"
    server = start_server(tmp_path, weights=checkpoint, recovery_timeout_s=2)
    try:
        pid = _replica_pid(server)
        assert server.client.get("/healthz").status_code == 200
        away = checkpoint.rename(checkpoint.with_suffix(".away"))  # no replacement can load
        psutil.Process(pid).kill()
        wait_for(lambda: server.client.get("/healthz").status_code == 503, 60, "liveness failed")
        error = server.client.get("/healthz").json()["error"]
        assert error["code"] == "wedged" and "ABPN_RECOVERY_TIMEOUT_S" in error["message"]
        assert server.client.get("/readyz").status_code == 503
        away.rename(checkpoint)  # the next attempt of the replacement loads it
        _replaced(server, pid)
        assert server.client.get("/healthz").status_code == 200
    finally:
        server.stop()


def test_the_replica_loads_no_web_stack(tmp_path: Path) -> None:
    server = start_server(tmp_path)
    try:
        replica = psutil.Process(_replica_pid(server))
        loaded = [m.path for m in replica.memory_maps()]
        assert any("libtorch" in p for p in loaded)
        heavy = sorted({Path(p).name for p in loaded if any(h in p for h in HEAVY)})
        assert not heavy, heavy
    finally:
        server.stop()


def test_a_second_signal_leaves_no_replica_behind(tmp_path: Path) -> None:
    """On a second signal uvicorn skips the app's shutdown: the server kills the replica itself,
    which ignores SIGTERM, so that the exit does not wait for it."""
    server = start_server(tmp_path, max_batch_size=1, drain_timeout_s=60)
    try:
        pid = _replica_pid(server)
        thread, _ = _post_in_background(server, encoded(slow_portrait(1200, 1024)))
        wait_for(lambda: _running(server), 60, "the request running in the replica")
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        server.proc.send_signal(signal.SIGTERM)
        try:
            code = server.proc.wait(15)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"no exit after a second signal:\n{server.log_text()}") from None
        assert code == 0, server.log_text()
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"
        thread.join(30)
    finally:
        server.stop()
