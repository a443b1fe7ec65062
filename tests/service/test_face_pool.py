"""The face pool on real worker processes: photos go and masks come back through shared memory
(only names, shapes and landmarks through the pipe), the parse is the one the parser makes
in-process, and no shared block is left behind, also when the service stops mid-parse. The
workers keep to the face cap, and a parse past its time limit costs the workers, which are
replaced."""

from __future__ import annotations

import asyncio
import multiprocessing.process
import os
import pickle
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from asgi_support import metric_value, wait_until
from images import crowd, grace_hopper
from PIL import Image

from model.faces import FaceParser
from service import shm_blocks
from service.batcher import ModelTimeout, ShuttingDown
from service.face_pool import FacePool
from service.metrics import Metrics

pytestmark = pytest.mark.anyio

SHM = Path("/dev/shm")
PIPE_LIMIT = 256 * 1024
"""Most bytes a parse may pickle through the pool's pipe either way: landmarks, boxes, names."""


def _portrait(scale: int) -> np.ndarray:
    hopper = grace_hopper()
    size = (hopper.shape[1] * scale, hopper.shape[0] * scale)
    return np.asarray(Image.fromarray(hopper).resize(size, Image.BICUBIC))


def _blocks() -> set[str]:
    """This process's service blocks: other programs' blocks come and go as they please."""
    return (
        {p.name for p in SHM.glob(shm_blocks.prefix(os.getpid()) + "*")} if SHM.is_dir() else set()
    )


class PipeMeter:
    """Stands in front of the pool's executor and records the pickled size of every call's
    arguments and result: what crosses the pipe."""

    def __init__(self, pool) -> None:
        self.pool = pool
        self.sizes: list[int] = []
        self.results: list = []

    def submit(self, fn, *args):
        self.sizes.append(len(pickle.dumps((fn, args))))
        future = self.pool.submit(fn, *args)
        future.add_done_callback(lambda f: self.results.append(f.result()))
        future.add_done_callback(lambda f: self.sizes.append(len(pickle.dumps(f.result()))))
        return future

    def __getattr__(self, name: str):
        return getattr(self.pool, name)


@pytest.fixture(scope="module")
def pool() -> Iterator[FacePool]:
    faces = FacePool(1, Metrics())
    faces.start()
    yield faces
    faces.close()


async def test_a_parse_crosses_the_pipe_as_names_and_landmarks_only(pool: FacePool) -> None:
    photo = _portrait(4)  # 2048 x 2400 x 3: 14 MB of pixels
    before = _blocks()
    meter = PipeMeter(pool._workers.pool)
    pool._workers.pool = meter  # type: ignore[assignment]
    try:
        parse, _ = await pool.parse(photo, time.monotonic() + 60, asyncio.Future())
    finally:
        pool._workers.pool = meter.pool
    assert len(meter.sizes) == 2 and max(meter.sizes) < PIPE_LIMIT, meter.sizes
    # The worker names its masks' block after the service, as the leak checks expect.
    assert meter.results[0].masks.startswith(shm_blocks.prefix(os.getpid()))
    reference = FaceParser().parse(photo)
    assert len(parse.regions) == len(reference.regions) == 1
    for got, want in zip(parse.regions, reference.regions, strict=True):
        assert got.box == want.box
        np.testing.assert_array_equal(got.skin, want.skin)
        assert got.skin.flags.owndata  # a copy: no view of a block that is gone
    assert [f.box for f in parse.faces] == [f.box for f in reference.faces]
    assert _blocks() <= before, "a shared block was left behind"


async def test_a_photo_without_faces_and_a_tiny_one(pool: FacePool) -> None:
    before = _blocks()
    for photo in (np.zeros((300, 200, 3), np.uint8), np.zeros((1, 1, 3), np.uint8)):
        parse, _ = await pool.parse(photo, time.monotonic() + 60, asyncio.Future())
        assert parse.regions == ()
    assert _blocks() <= before


async def test_stopping_mid_parse_leaves_no_block_behind() -> None:
    faces = FacePool(1, Metrics())
    await asyncio.to_thread(faces.start)
    before = _blocks()
    try:
        parse = asyncio.ensure_future(
            faces.parse(_portrait(4), time.monotonic() + 60, asyncio.Future())
        )
        while not _blocks() - before:  # the photo is shared, on its way to the worker
            await asyncio.sleep(0.01)
        faces.stop()
        with pytest.raises(ShuttingDown):
            await parse
        # The worker finishes the parse it held; its photo and masks are unlinked then.
        deadline = time.monotonic() + 60
        while _blocks() - before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _blocks() <= before, _blocks() - before
    finally:
        faces.close()


async def test_the_workers_keep_to_the_face_cap() -> None:
    photo = crowd()
    detected = FaceParser().detect(photo)
    faces = FacePool(1, Metrics(), max_faces=2)
    await asyncio.to_thread(faces.start)
    try:
        parse, _ = await faces.parse(photo, time.monotonic() + 60, asyncio.Future())
    finally:
        faces.close()
    largest = sorted(detected, key=lambda f: f.box.width * f.box.height, reverse=True)[:2]
    assert {f.box for f in parse.faces} == {f.box for f in largest}
    assert len(parse.regions) == 2 and parse.skipped == len(detected) - 2


def _workers(faces: FacePool) -> list[multiprocessing.process.BaseProcess]:
    return list(faces._workers.pool._processes.values())


async def test_a_hung_parse_is_answered_and_its_workers_are_replaced() -> None:
    metrics = Metrics()
    # The limit also bounds the parse after the replacement: wide, so any machine's fits.
    faces = FacePool(2, metrics, timeout_s=10)
    await asyncio.to_thread(faces.start)
    before = _blocks()
    try:
        hung = _workers(faces)
        for worker in hung:
            os.kill(worker.pid, signal.SIGSTOP)  # what a wedged native call looks like
        deadline = time.monotonic() + 60
        parses = [faces.parse(grace_hopper(), deadline, asyncio.Future()) for _ in range(2)]
        outcomes = await asyncio.gather(*parses, return_exceptions=True)
        # One ran past the limit; the other was held by the workers killed for it.
        assert all(isinstance(o, ModelTimeout) for o in outcomes), outcomes
        text = metrics.render().decode()
        labels = {"process": "face_worker"}
        assert metric_value(text, "abpn_process_restarts_total", **labels, reason="timeout") == 1
        assert metric_value(text, "abpn_process_restarts_total", **labels, reason="died") == 0
        # Polled through the pool's own process objects: reaping them elsewhere (psutil)
        # leaves the pool's manager thread waiting for children it can no longer see.
        await wait_until(lambda: all(w.exitcode is not None for w in hung))
        assert all(w.exitcode == -signal.SIGKILL for w in hung)
        parse, _ = await faces.parse(grace_hopper(), time.monotonic() + 60, asyncio.Future())
        assert len(parse.regions) == 1
        assert not {w.pid for w in _workers(faces)} & {w.pid for w in hung}
    finally:
        faces.close()
    deadline = time.monotonic() + 30
    while _blocks() - before and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _blocks() <= before, _blocks() - before


async def test_replaced_workers_are_out_of_service_until_the_new_ones_start() -> None:
    faces = FacePool(1, Metrics())
    await asyncio.to_thread(faces.start)
    try:
        assert faces.out_of_service_since is None
        faces._replace(faces._workers, "died")  # what a lost parse does
        since = faces.out_of_service_since
        assert since is not None
        faces._replace(faces._workers, "died")  # lost again before the first came back
        assert faces.out_of_service_since == since  # counted from the first loss
        await faces._workers.ready
        assert faces.out_of_service_since is None
    finally:
        faces.close()
