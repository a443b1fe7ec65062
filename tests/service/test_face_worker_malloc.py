"""service.face_worker: the face worker processes take the malloc settings they are given."""

from __future__ import annotations

import platform

import pytest
from malloc_probe import large_block_mapped

from service.face_pool import FacePool
from service.metrics import Metrics


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="malloc tuning is for glibc")
@pytest.mark.parametrize("tune", [False, True])
def test_face_workers_tune_malloc_when_asked(tune: bool) -> None:
    pool = FacePool(1, Metrics(), tune_malloc=tune)
    pool.start()
    try:
        mapped = pool._workers.pool.submit(large_block_mapped).result(timeout=60)
    finally:
        pool.close()
    assert mapped is not tune
