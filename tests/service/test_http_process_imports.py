"""The service's HTTP process never imports torch: the model and its ~180 MB live in the replica
processes only (issue 20's review; issue 21's memory at rest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from service.app import create_app
from service.config import Settings
import service.server

create_app(Settings(weights="random", devices="cpu"))
heavy = [m for m in ("model.engine", "safetensors.torch", "torch") if m in sys.modules]
print(",".join(heavy) or "none")
"""


def test_the_http_process_never_imports_torch() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parents[2],
        check=True,
    )
    assert proc.stdout.strip().splitlines()[-1] == "none"
