"""model.allocator: the malloc settings are applied where the project applies them and left
alone when ABPN_TUNE_MALLOC=false: here the CLI; the face workers in tests/service/
test_face_worker_malloc.py; the replica's own process through its "replicas loaded" log line
(tests/service/test_app.py).

What the settings are checked by is what they change and glibc documents: with the tuning, a
block just under the 32 MB threshold comes from the heap; with glibc's defaults it is a mapping
of its own (tests/malloc_probe.py). How many page faults that saves depends on the machine's
kernel and CPU, so it is measured by `python -m bench.model --malloc`, not asserted here.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.allocator import wanted

TESTS = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="malloc tuning is for glibc"
)

_TUNE_AND_PROBE = """
import sys
from malloc_probe import large_block_mapped
from model.allocator import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tuned" else False
print(tuned, large_block_mapped())
"""

_CLI_AND_PROBE = """
import sys
from malloc_probe import large_block_mapped
from model import cli
status = cli.main([sys.argv[1], "-o", sys.argv[2], "--weights", "random"])
print(status, large_block_mapped())
"""


def _child(code: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    """The last line a fresh interpreter printed, split; `tests/` is on its path."""
    environ = {**(os.environ if env is None else env)}
    environ["PYTHONPATH"] = os.pathsep.join([str(TESTS), *sys.path])
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True, env=environ
    ).stdout
    return out.strip().splitlines()[-1].split()


def test_the_probe_tells_the_two_settings_apart() -> None:
    assert _child(_TUNE_AND_PROBE, "default") == ["False", "True"]
    assert _child(_TUNE_AND_PROBE, "tuned") == ["True", "False"]


@pytest.mark.parametrize(("setting", "tuned"), [(None, True), ("false", False), ("0", False)])
def test_the_cli_tunes_malloc_unless_disabled(
    tmp_path: Path, setting: str | None, tuned: bool
) -> None:
    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((48, 64, 3), 128, np.uint8)).save(photo)
    env = {k: v for k, v in os.environ.items() if k != "ABPN_TUNE_MALLOC"}
    if setting is not None:
        env["ABPN_TUNE_MALLOC"] = setting
    status, mapped = _child(_CLI_AND_PROBE, str(photo), str(tmp_path / "out"), env=env)
    assert status == "0"
    assert mapped == str(not tuned)


def test_the_environment_switch() -> None:
    assert wanted({}) and wanted({"ABPN_TUNE_MALLOC": "true"}) and wanted({"ABPN_TUNE_MALLOC": "1"})
    for off in ("false", "False", "0", "no", " off "):
        assert not wanted({"ABPN_TUNE_MALLOC": off}), off
