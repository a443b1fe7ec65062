"""The replica process on its own (service.replicas over service.replica_process): a batch goes
as one shared memory block and comes back with the in-process engine's results, no block is
left behind, only small messages cross the pipe, and the process imports no web stack."""

from __future__ import annotations

import asyncio
import os
import pickle
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from images import grace_hopper, picture

from model.engine import RetouchEngine
from model.faces import FaceParser
from model.weights import load_model
from service import shared_batch, shm_blocks
from service.batcher import Batcher
from service.metrics import Metrics
from service.replica_protocol import Batch, ReplicaConfig
from service.replicas import ProcessReplica
from service.shared_batch import ItemRequest

pytestmark = pytest.mark.anyio

SHM = Path("/dev/shm")
REPO = Path(__file__).resolve().parents[2]
PIPE_LIMIT = 64 * 1024
"""Most bytes a batch's message may pickle: offsets, shapes, parameters and landmarks."""


def _blocks() -> set[str]:
    """This process's service blocks: other programs' blocks come and go as they please."""
    return (
        {p.name for p in SHM.glob(shm_blocks.prefix(os.getpid()) + "*")} if SHM.is_dir() else set()
    )


def _config(parse_faces: bool = True) -> ReplicaConfig:
    return ReplicaConfig(
        device="cpu",
        weights="random",
        compile_lrl=False,
        torch_threads=1,
        tune_malloc=False,
        parse_faces=parse_faces,
    )


@pytest.fixture
async def replica() -> AsyncIterator[ProcessReplica]:
    replica = ProcessReplica(_config(), Metrics(), batch_timeout_s=60)
    await replica.start()
    await replica.warm_up()
    yield replica
    await replica.close()


async def _run(replica: ProcessReplica, *submissions: tuple) -> list:
    batcher = Batcher([replica], max_batch_size=8, max_batch_wait_s=0.05, max_queue=8,
                      metrics=Metrics())  # fmt: skip
    batcher.start()
    deadline = time.monotonic() + 60
    items = [batcher.reserve().submit(*args[:3], deadline, *args[3:]) for args in submissions]
    try:
        return await asyncio.gather(*(batcher.wait(item) for item in items))
    finally:
        await batcher.stop()


async def test_a_batch_comes_back_as_the_engine_makes_it_and_leaves_no_block(
    replica: ProcessReplica,
) -> None:
    before = _blocks()
    face, plain = grace_hopper(), picture()
    parse = FaceParser().parse(face)
    results = await _run(
        replica,
        (face, 1.0, True, 0.5),  # the replica finds the faces
        (face, 0.8, False, 0.0, parse),  # found ahead, as by a face worker
        (plain, 0.0, False),  # nothing to do: the input comes back, not a copy
    )
    engine = RetouchEngine(load_model("random").model, "cpu")
    expected = engine.retouch_batch([face], 1.0, True, 0.5)[0]
    # One torch thread there, the test's default here: float sums may round apart by a level.
    assert np.abs(results[0].image.astype(int) - expected.image).max() <= 1
    assert np.abs(results[0].mask.astype(int) - expected.mask).max() <= 1
    assert results[0].faces == 1 and not results[0].untouched
    again = engine.retouch_batch([face], 0.8, parses=[parse])[0]
    assert np.abs(results[1].image.astype(int) - again.image).max() <= 1
    assert results[1].mask is None
    assert results[2].untouched and results[2].image is not None
    assert _blocks() == before


def test_a_batch_message_carries_no_pixels() -> None:
    face = grace_hopper()
    big = np.ascontiguousarray(np.tile(face, (4, 4, 1)))  # 14 MB of pixels
    parse = FaceParser().parse(face)
    requests = [ItemRequest(big, 1.0, 0.0, True, None), ItemRequest(face, 1.0, 0.0, False, parse)]
    block, items = shared_batch.write(requests)
    try:
        assert block.name in _blocks()  # named after this service, as the leak checks expect
        assert len(pickle.dumps(Batch(0, block.name, tuple(items)))) < PIPE_LIMIT
        np.testing.assert_array_equal(shared_batch.copy_photo(block, items[0]), big)
        skin = shared_batch.parse(block, items[1]).regions[0].skin
        np.testing.assert_array_equal(skin, parse.regions[0].skin)
        del skin
    finally:
        shared_batch.release(block)


def test_the_replica_process_imports_no_web_stack() -> None:
    """What the replica's entry point imports: the model and torch, never uvicorn, FastAPI or
    the app (a spawned child runs `service.replica_process` and the launcher's main module,
    which `tests/e2e/test_e2e_face_workers.py` keeps light)."""
    probe = (
        "import sys, service.replica_process; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'fastapi', 'uvicorn', 'starlette', 'pydantic', 'prometheus_client'} "
        "or m in {'service.app', 'service.runtime', 'service.batcher'}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    assert "torch" in subprocess.run(
        [sys.executable, "-c", "import sys, service.replica_process; print(*sys.modules)"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    ).stdout.split()  # fmt: skip


async def test_missing_weights_fail_the_start_with_the_reason() -> None:
    config = ReplicaConfig("cpu", "/nonexistent/abpn.safetensors", False, 1, False, True)
    replica = ProcessReplica(config, Metrics(), batch_timeout_s=60)
    with pytest.raises(RuntimeError, match="checkpoint file not found"):
        await replica.start()
    await replica.close()
