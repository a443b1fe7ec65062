"""The batcher on its own, with stand-in replicas whose timing the tests control (a gate the
replica's thread waits on), so batching, deadlines, withdrawal and error isolation are checked
deterministically. The stand-ins run in a thread of this process (`ThreadReplica`, tests only),
through the replica process's own batch logic (`service.replica_process.compute`)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from model.result import RetouchResult
from service import errors, replica_process
from service.batcher import (
    Batcher,
    BatcherError,
    ClientGone,
    DeadlineExceeded,
    ModelFailed,
    ModelOutOfMemory,
    Overloaded,
    QueueFull,
    ShuttingDown,
    State,
    WorkItem,
)
from service.metrics import Metrics
from service.replica_protocol import ItemFailed
from service.replicas import as_batcher_error
from service.work_estimate import MIN_PIXELS, WorkEstimate, work_pixels

pytestmark = pytest.mark.anyio

POISON = 13  # a first pixel of this value makes the stand-in replica fail on that image


class StandIn:
    """Answers every image with a copy of itself, recording the batch sizes it was given."""

    def __init__(self, device: str = "cpu", oom_above: int | None = None) -> None:
        self.device = torch.device(device)
        self.batches: list[int] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.oom_above = oom_above

    def retouch_batch(
        self,
        images: Sequence[np.ndarray],
        strengths: Sequence[float] | float = 1.0,
        return_mask: bool = False,
        whitening: Sequence[float] | float = 0.0,
    ) -> list[RetouchResult]:
        self.entered.set()
        assert self.gate.wait(10), "test gate never opened"
        self.batches.append(len(images))
        if self.oom_above is not None and len(images) > self.oom_above:
            raise torch.OutOfMemoryError("CUDA out of memory (stand-in)")
        if any(int(img[0, 0, 0]) == POISON for img in images):
            raise ValueError("poisoned image")
        return [RetouchResult(image=img.copy(), mask=None, timings={}) for img in images]

    def warmup(self, parse_faces: bool = True) -> None:
        self.retouch_batch([np.zeros((4, 4, 3), np.uint8)])


class ThreadReplica:
    """The batcher's Replica over a stand-in engine on a thread of its own."""

    def __init__(self, engine: StandIn) -> None:
        self.engine = engine
        self.name = str(engine.device)
        self._thread = ThreadPoolExecutor(1)

    async def ready(self) -> None:
        return None

    async def warm_up(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self.engine.warmup)

    async def run(self, items: Sequence[WorkItem]) -> list[RetouchResult | BatcherError]:
        jobs = [
            replica_process.Job(i.image, i.strength, i.whitening, i.return_mask, i.parse)
            for i in items
        ]
        outcomes = await asyncio.get_running_loop().run_in_executor(
            self._thread, replica_process.compute, self.engine, jobs
        )
        return [as_batcher_error(o) if isinstance(o, ItemFailed) else o for o in outcomes]


def _image(value: int = 0) -> np.ndarray:
    return np.full((4, 6, 3), value, np.uint8)


def _batcher(
    *engines: StandIn, replica: ThreadReplica | None = None, **overrides: float | bool
) -> Batcher:
    options = {"max_batch_size": 4, "max_batch_wait_s": 0.05, "max_queue": 16, **overrides}
    replicas = [replica] if replica else [ThreadReplica(e) for e in engines or [StandIn()]]
    return Batcher(replicas, metrics=Metrics(), **options)  # type: ignore[arg-type]


async def _submit(batcher: Batcher, value: int = 0, deadline_s: float = 30.0):
    slot = batcher.reserve()
    return slot, slot.submit(_image(value), 1.0, False, time.monotonic() + deadline_s)


async def _wait_entered(engine: StandIn) -> None:
    ok = await asyncio.to_thread(engine.entered.wait, 10)
    assert ok, "the replica was never called"


async def test_concurrent_items_share_a_batch() -> None:
    engine = StandIn()
    batcher = _batcher(engine)
    batcher.start()
    items = [(await _submit(batcher, i))[1] for i in range(4)]
    results = await asyncio.gather(*(batcher.wait(item) for item in items))
    assert [int(r.image[0, 0, 0]) for r in results] == [0, 1, 2, 3]
    assert engine.batches == [4]
    assert batcher.depth == 0
    await batcher.stop()


async def test_batches_stop_at_max_size_and_wait_at_most_max_wait() -> None:
    engine = StandIn()
    batcher = _batcher(engine, max_batch_size=3, max_batch_wait_s=0.02)
    batcher.start()
    items = [(await _submit(batcher))[1] for _ in range(7)]
    started = time.monotonic()
    await asyncio.gather(*(batcher.wait(item) for item in items))
    assert engine.batches == [3, 3, 1]
    lone = (await _submit(batcher))[1]
    await batcher.wait(lone)
    assert engine.batches[-1] == 1
    assert time.monotonic() - started < 5
    await batcher.stop()


async def test_items_arriving_while_the_replica_works_form_the_next_batch() -> None:
    engine = StandIn()
    engine.gate.clear()
    batcher = _batcher(engine, max_batch_size=8, max_batch_wait_s=0.0)
    batcher.start()
    first = (await _submit(batcher))[1]
    await _wait_entered(engine)
    later = [(await _submit(batcher))[1] for _ in range(5)]
    engine.gate.set()
    await asyncio.gather(batcher.wait(first), *(batcher.wait(i) for i in later))
    assert engine.batches == [1, 5]
    await batcher.stop()


async def test_queue_full_is_refused_at_once_and_slots_come_back() -> None:
    batcher = _batcher(max_queue=2)
    first, second = batcher.reserve(), batcher.reserve()
    assert batcher.depth == 2
    with pytest.raises(QueueFull):
        batcher.reserve()
    first.release()
    first.release()  # idempotent
    assert batcher.depth == 1
    with batcher.reserve():
        assert batcher.depth == 2
    assert batcher.depth == 1
    second.release()
    assert batcher.depth == 0


async def test_deadline_while_queued_is_never_computed() -> None:
    engine, batcher, blocker = await _busy()
    _, late = await _submit(batcher, value=7, deadline_s=0.05)
    with pytest.raises(DeadlineExceeded):
        await batcher.wait(late)
    assert late.state is State.DONE and batcher.depth == 0
    engine.gate.set()
    await batcher.wait(blocker)
    await asyncio.sleep(0.05)
    assert engine.batches == [1]  # the late item never reached the replica
    await batcher.stop()


async def test_expired_items_are_skipped_when_a_batch_is_taken() -> None:
    engine = StandIn()
    engine.gate.clear()
    batcher = _batcher(engine, max_batch_size=4)
    batcher.start()
    blocker = (await _submit(batcher))[1]
    await _wait_entered(engine)
    _, expired = await _submit(batcher, deadline_s=0.01)
    _, fresh = await _submit(batcher)
    await asyncio.sleep(0.05)
    engine.gate.set()
    await batcher.wait(blocker)
    await batcher.wait(fresh)
    with pytest.raises(DeadlineExceeded):
        expired.future.result()
    assert engine.batches == [1, 1]
    await batcher.stop()


async def test_abandoned_queued_item_is_dropped_but_a_running_one_finishes() -> None:
    engine = StandIn()
    engine.gate.clear()
    batcher = _batcher(engine, max_batch_size=1)
    batcher.start()
    running = (await _submit(batcher))[1]
    await _wait_entered(engine)
    _, queued = await _submit(batcher)
    gone = asyncio.get_running_loop().create_future()
    gone.set_result(None)
    with pytest.raises(ClientGone) as queued_info:
        await batcher.wait(queued, gone)
    assert queued_info.value.stage == "queued"
    with pytest.raises(ClientGone) as running_info:
        await batcher.wait(running, gone)
    assert running_info.value.stage == "running"
    engine.gate.set()
    await asyncio.wait_for(asyncio.shield(running.future), 10)
    await asyncio.sleep(0.05)
    assert engine.batches == [1]
    await batcher.stop()


async def test_one_bad_item_fails_alone() -> None:
    engine = StandIn()
    batcher = _batcher(engine)
    batcher.start()
    items = [(await _submit(batcher, value))[1] for value in (1, POISON, 3)]
    outcomes = await asyncio.gather(*(batcher.wait(i) for i in items), return_exceptions=True)
    assert isinstance(outcomes[1], ModelFailed)
    assert [int(outcomes[i].image[0, 0, 0]) for i in (0, 2)] == [1, 3]
    assert engine.batches == [3, 1, 1, 1]
    await batcher.stop()


class FailingOnce(ThreadReplica):
    """A replica whose first hand-over fails outside the model (a shared memory block that
    cannot be made, say), as ProcessReplica.run can."""

    def __init__(self, engine: StandIn) -> None:
        super().__init__(engine)
        self.failed = False

    async def run(self, items: Sequence[WorkItem]) -> list[RetouchResult | BatcherError]:
        if not self.failed:
            self.failed = True
            raise OSError(28, "No space left on device")
        return await super().run(items)


async def test_a_failed_hand_over_fails_its_batch_and_the_worker_serves_on() -> None:
    batcher = _batcher(replica=FailingOnce(StandIn()))
    batcher.start()
    # Bounded: a worker that died with the error would leave the running item unanswered.
    with pytest.raises(ModelFailed):
        await asyncio.wait_for(batcher.wait((await _submit(batcher, 1))[1]), 10)
    result = await asyncio.wait_for(batcher.wait((await _submit(batcher, 2))[1]), 10)
    assert int(result.image[0, 0, 0]) == 2
    await batcher.stop()


async def test_out_of_memory_retries_one_by_one() -> None:
    engine = StandIn(oom_above=1)
    batcher = _batcher(engine)
    batcher.start()
    items = [(await _submit(batcher, value))[1] for value in range(3)]
    results = await asyncio.gather(*(batcher.wait(i) for i in items))
    assert [int(r.image[0, 0, 0]) for r in results] == [0, 1, 2]
    assert engine.batches == [3, 1, 1, 1]
    always = StandIn(oom_above=0)
    single = _batcher(always)
    single.start()
    with pytest.raises(ModelOutOfMemory):
        await single.wait((await _submit(single))[1])
    await batcher.stop()
    await single.stop()


async def test_work_spreads_over_replicas() -> None:
    engines = [StandIn(), StandIn()]
    for engine in engines:
        engine.gate.clear()
    batcher = _batcher(*engines, max_batch_size=1)
    batcher.start()
    items = [(await _submit(batcher))[1] for _ in range(2)]
    await asyncio.gather(*(_wait_entered(e) for e in engines))
    for engine in engines:
        engine.gate.set()
    await asyncio.gather(*(batcher.wait(i) for i in items))
    assert [e.batches for e in engines] == [[1], [1]]
    await batcher.stop()


async def test_stop_answers_queued_items() -> None:
    engine = StandIn()
    engine.gate.clear()
    batcher = _batcher(engine, max_batch_size=1)
    batcher.start()
    await _submit(batcher)
    await _wait_entered(engine)
    _, queued = await _submit(batcher)
    await batcher.stop()
    with pytest.raises(ShuttingDown):
        queued.future.result()
    with pytest.raises(ShuttingDown):
        batcher.reserve()
    engine.gate.set()


async def test_warm_up_runs_on_every_replica() -> None:
    engines = [StandIn(), StandIn()]
    batcher = _batcher(*engines)
    await batcher.warm_up()
    assert [e.batches for e in engines] == [[1], [1]]


class MaskingStandIn(StandIn):
    """A stand-in that makes a mask when asked, recording `return_mask` per call."""

    def __init__(self) -> None:
        super().__init__()
        self.masks_asked: list[bool] = []

    def retouch_batch(self, images, strengths=1.0, return_mask=False, whitening=0.0):
        self.masks_asked.append(return_mask)
        results = super().retouch_batch(images, strengths, return_mask, whitening)
        for result in results:
            result.mask = np.zeros(result.image.shape[:2], np.uint8) if return_mask else None
        return results


async def test_a_mask_costs_only_the_requests_that_asked_for_one() -> None:
    engine = MaskingStandIn()
    engine.gate.clear()
    batcher = _batcher(engine, max_batch_size=8, max_batch_wait_s=0.05)
    batcher.start()
    deadline = time.monotonic() + 30
    items = []
    for value, mask in [(1, False), (2, True), (3, False)]:
        items.append(batcher.reserve().submit(_image(value), 1.0, mask, deadline))
    engine.gate.set()
    results = await asyncio.gather(*(batcher.wait(item) for item in items))
    assert [int(r.image[0, 0, 0]) for r in results] == [1, 2, 3]
    assert [r.mask is not None for r in results] == [False, True, False]
    # One model call each way: the two without a mask never paid for one.
    assert sorted(zip(engine.masks_asked, engine.batches, strict=True)) == [(False, 2), (True, 1)]
    await batcher.stop()


def _gauge(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def test_uploads_are_not_counted_in_the_autoscaling_queue_depth() -> None:
    """A place whose body is still arriving shows as an upload; only a submitted item waiting
    for a replica counts in `abpn_queue_depth`, so slow clients do not scale pods out."""
    batcher = _batcher()
    uploading = batcher.reserve()
    assert _gauge(batcher.metrics, "abpn_uploads_in_progress") == 1
    assert _gauge(batcher.metrics, "abpn_queue_depth") == 0
    queued, _ = await _submit(batcher)
    assert _gauge(batcher.metrics, "abpn_uploads_in_progress") == 1
    assert _gauge(batcher.metrics, "abpn_queue_depth") == 1
    assert batcher.depth == 2, "both still hold a place against ABPN_MAX_QUEUE"
    queued.release()
    uploading.release()
    assert _gauge(batcher.metrics, "abpn_uploads_in_progress") == 0
    assert _gauge(batcher.metrics, "abpn_queue_depth") == 0


async def _busy(**overrides: float | bool) -> tuple[StandIn, Batcher, WorkItem]:
    """A batcher taking one item at a time, whose replica is held (its gate closed) on a
    first item: what is submitted next waits behind it."""
    engine = StandIn()
    engine.gate.clear()
    batcher = _batcher(engine, max_batch_size=1, **overrides)
    batcher.start()
    blocker = (await _submit(batcher))[1]
    await _wait_entered(engine)
    return engine, batcher, blocker


async def test_nothing_is_shed_before_a_batch_was_measured() -> None:
    engine, batcher, blocker = await _busy()
    # The replica is busy and a second item is queued, but no batch has taken any time yet.
    items = [(await _submit(batcher, deadline_s=0.5))[1] for _ in range(2)]
    engine.gate.set()
    await batcher.wait(blocker)
    await batcher.stop()
    assert all(item.state is not State.QUEUED for item in items)


async def _measured_and_queued(shed_late: bool) -> tuple[StandIn, Batcher, list[WorkItem]]:
    """A batcher that measured one batch at 2 s or more (so every small photo is reckoned at
    2 s at least), then holds a second on its replica with a third queued behind it: the
    queued one alone is work the estimate counts in full, however long the test takes."""
    engine, batcher, first = await _busy(shed_late=shed_late)
    await asyncio.sleep(2.0)
    engine.gate.set()
    await batcher.wait(first)
    engine.gate.clear()
    engine.entered.clear()
    running = (await _submit(batcher))[1]
    await _wait_entered(engine)
    queued = (await _submit(batcher, deadline_s=60.0))[1]
    return engine, batcher, [running, queued]


async def test_a_request_whose_deadline_the_queued_work_would_outlast_is_shed() -> None:
    engine, batcher, ahead = await _measured_and_queued(shed_late=True)
    with batcher.reserve() as slot, pytest.raises(Overloaded) as shed:
        slot.submit(_image(), 1.0, False, time.monotonic() + 1.0)
    assert shed.value.retry_after_s >= 1
    answer = errors.as_service_error(shed.value)
    assert answer.status == 503 and answer.code == "overloaded"
    assert answer.headers["Retry-After"] == str(shed.value.retry_after_s)
    patient = (await _submit(batcher, deadline_s=60.0))[1]
    engine.gate.set()
    await asyncio.gather(*(batcher.wait(item) for item in [*ahead, patient]))
    await batcher.stop()
    assert engine.batches == [1, 1, 1, 1]  # the shed request never reached the replica


async def test_with_shedding_off_a_late_request_is_queued_to_its_504() -> None:
    engine, batcher, ahead = await _measured_and_queued(shed_late=False)
    late = (await _submit(batcher, deadline_s=1.0))[1]
    with pytest.raises(DeadlineExceeded):
        await batcher.wait(late)
    engine.gate.set()
    await asyncio.gather(*(batcher.wait(item) for item in ahead))
    await batcher.stop()


def test_a_photo_counts_its_pixels_or_min_pixels_at_least() -> None:
    estimate = WorkEstimate()
    assert not estimate.known and estimate.seconds(10**6) == 0.0
    estimate.observe(work_pixels(384, 512) + work_pixels(5120, 7680), 5.0)
    assert work_pixels(384, 512) == MIN_PIXELS
    per_pixel = 5.0 / (MIN_PIXELS + 7680 * 5120)
    assert estimate.seconds(2 * MIN_PIXELS) == pytest.approx(2 * MIN_PIXELS * per_pixel)


class BrokenReplica(ThreadReplica):
    """A replica whose readiness check raises: a bug outside any batch."""

    async def ready(self) -> None:
        raise RuntimeError("the readiness check broke")


async def test_a_dispatcher_that_stops_is_reported_until_the_batcher_is_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    batcher = _batcher(replica=BrokenReplica(StandIn()))
    assert batcher.dispatch_failure() is None
    batcher.start()
    (worker,) = batcher.workers
    await asyncio.gather(worker.task, return_exceptions=True)
    failure = batcher.dispatch_failure()
    assert failure is not None and "the readiness check broke" in failure
    assert any(r.levelname == "CRITICAL" and r.exc_info for r in caplog.records)
    await batcher.stop()
    assert batcher.dispatch_failure() is None  # stopping ends every dispatcher on purpose


async def test_a_running_dispatcher_reports_nothing() -> None:
    batcher = _batcher()
    batcher.start()
    item = (await _submit(batcher))[1]
    await batcher.wait(item)
    assert batcher.dispatch_failure() is None
    await batcher.stop()
    assert batcher.dispatch_failure() is None
