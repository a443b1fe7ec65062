"""Start-up failures end the process with the reason, instead of a server that never gets
ready: bad settings, and weights that are not there."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from server_support import REPO, free_port


def _run(**settings: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "ABPN_HOST": "127.0.0.1",
        "ABPN_PORT": str(free_port()),
        **{f"ABPN_{key.upper()}": value for key, value in settings.items()},
    }
    return subprocess.run(
        [sys.executable, "-m", "service"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("settings", "reason"),
    [
        ({"max_batch_size": "0"}, "max_batch_size"),
        ({"devices": "tpu"}, "unknown device"),
        ({"weights": "/nonexistent/abpn.safetensors"}, "checkpoint file not found"),
    ],
)
def test_startup_failure_exits_with_the_reason(settings: dict[str, str], reason: str) -> None:
    done = _run(**settings)
    assert done.returncode != 0
    assert reason in done.stderr + done.stdout
