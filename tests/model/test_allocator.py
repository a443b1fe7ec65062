"""model.allocator: with malloc tuned, a process running the LRL crop after crop reuses the
pages of its activations instead of faulting in new ones for every crop."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

import pytest

# Four LRL runs on a 384x384 crop after a first one, and the page faults they took.
_CHILD = """
import json, resource, sys
import torch
from model.allocator import tune_malloc
from model.net.config import ABPNConfig
from model.net.lrl import LocalRetouchingLayer
tuned = tune_malloc() if sys.argv[1] == "tuned" else False
torch.set_num_threads(1)
lrl = LocalRetouchingLayer(ABPNConfig(lrl_size=384)).eval()
x, v = torch.rand(1, 3, 384, 384), torch.ones(1, 1, 384, 384)
with torch.inference_mode():
    lrl(x, v)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        lrl(x, v)
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps({"tuned": tuned, "faults": faults}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc tuning is for glibc")
def test_tuned_malloc_reuses_the_lrls_pages() -> None:
    default, tuned = _run("glibc"), _run("tuned")
    assert tuned["tuned"] is True
    # glibc's defaults map ~130 MB of new pages per crop (measured: 33,000-37,000 faults).
    assert default["faults"] > 4 * 20_000, default
    assert tuned["faults"] < default["faults"] / 4, (default, tuned)
