"""SIGTERM while the service is still warming up (compiling the LRL, which takes up to a
minute on 2 cores with a cold Inductor cache): the process exits within its drain timeout, as
the pod's terminationGracePeriodSeconds requires, instead of waiting for the compile."""

from __future__ import annotations

import signal
import subprocess
import time

import psutil
from server_support import start_server

DRAIN_TIMEOUT_S = 3


def test_sigterm_during_the_compile_exits_within_the_drain_timeout(
    tmp_path, cxx_compiler: str
) -> None:
    server = start_server(
        tmp_path,
        until="/healthz",
        env={"TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")},  # cold: a long compile
        compile_lrl="true",
        drain_timeout_s=DRAIN_TIMEOUT_S,
    )
    try:
        assert server.client.get("/readyz").status_code == 503, "warmed up before the test"
        children = psutil.Process(server.proc.pid).children(recursive=True)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        try:
            code = server.proc.wait(DRAIN_TIMEOUT_S + 5)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {time.monotonic() - signalled:.1f} s after SIGTERM "
                f"(drain timeout {DRAIN_TIMEOUT_S} s):\n{server.log_text()}"
            ) from None
        assert code == 0, server.log_text()
        # Nothing is left behind: the face workers and Inductor's compile workers go too.
        _, alive = psutil.wait_procs(children, timeout=20)
        assert not alive, alive
    finally:
        server.stop()
