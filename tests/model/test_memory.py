"""An 8K photo runs on the CPU within 2 GB of peak resident memory for the whole process."""

import subprocess
import sys

SCRIPT = """
import resource
import numpy as np
from model.engine import RetouchEngine
from model.weights import load_model

h, w = 4320, 7680
yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
image = np.empty((h, w, 3), np.uint8)
for c in range(3):
    image[..., c] = (128 + 60 * np.sin(yy / 97.0 + c) * np.cos(xx / 131.0)).astype(np.uint8)
del yy, xx
result = RetouchEngine(load_model().model).retouch(image, return_mask=True)
assert result.image.shape == image.shape and result.mask.shape == (h, w)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_8k_peak_memory_under_2gb() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    peak_mb = int(proc.stdout.strip().splitlines()[-1])
    assert peak_mb < 2048, f"peak RSS {peak_mb} MB"
