"""Dynamic batching: a bounded queue of (item, future) pairs, and one worker per replica that
takes batches from it, hands them to its replica (a process of its own in the service:
service.replicas) and resolves the futures.

Admission is a `Slot`, taken before the request body is even read, so a full queue is refused
at once and cheaply. A slot is held until a worker takes the item, so `depth` counts requests
that are waiting for a replica, uploads and decoding included. The gauges split that count:
`abpn_queue_depth` (the autoscaling signal) holds only items submitted and waiting for a
replica, `abpn_uploads_in_progress` the places still arriving, being decoded or having their
faces found, so slow clients do not scale the deployment out.

Once a batch has been measured, an item whose deadline the work queued and running ahead of it
would outlast (`service.work_estimate`) is refused at submission (Overloaded: 503 with
Retry-After) rather than queued to its 504; `shed_late=False` queues it anyway.

A worker waits for its first item, then at most `max_batch_wait_s` after that item arrived
for more, up to `max_batch_size`. Items whose client went away or whose deadline passed are
dropped before the model sees them. A worker whose replica is being replaced takes nothing
until it is warm again; the queue waits for it, within the items' deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from model.faces import FaceParse
from model.result import RetouchResult
from service.futures import retrieve
from service.metrics import Metrics
from service.work_estimate import WorkEstimate, work_pixels

logger = logging.getLogger("abpn.batcher")


class Replica(Protocol):
    """What the batcher needs of a model replica (service.replicas.ProcessReplica)."""

    name: str
    """The device, as metrics label it."""

    async def ready(self) -> None:
        """Return once the replica can take a batch."""
        ...

    async def warm_up(self) -> None:
        """Run a small batch once, so that the first request pays for no lazy start-up."""
        ...

    async def run(self, items: Sequence[WorkItem]) -> list[RetouchResult | BatcherError]:
        """Retouch the items: one result, or the error it failed with, per item, in order."""
        ...


class BatcherError(Exception):
    """Base of the errors a request can get from the batcher."""


class QueueFull(BatcherError):
    """The queue holds `max_queue` requests already."""


class Overloaded(BatcherError):
    """The work queued ahead of the request would outlast its deadline; `retry_after_s` is
    about when enough of it will be done."""

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(BatcherError):
    """The request was still queued at its deadline; it was never computed."""


class ShuttingDown(BatcherError):
    """The batcher stopped before the request was computed."""


class ModelOutOfMemory(BatcherError):
    """The device ran out of memory for this image even on its own."""


class ModelFailed(BatcherError):
    """The model raised an unexpected error for this image."""


class ModelTimeout(BatcherError):
    """The batch ran past ABPN_BATCH_TIMEOUT_S; its replica was killed and is replaced."""


class ReplicaDied(BatcherError):
    """The replica's process died while it held the batch; it is replaced."""


class ClientGone(BatcherError):
    """The client disconnected; `stage` says where the request was then."""

    def __init__(self, stage: str) -> None:
        super().__init__(f"client disconnected while the request was at stage {stage!r}")
        self.stage = stage


class State(enum.Enum):
    """Where an item is. Every transition happens on the event loop thread."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"


@dataclass(eq=False)
class WorkItem:
    """One image waiting for, or being processed by, a replica."""

    image: np.ndarray
    strength: float
    return_mask: bool
    deadline: float
    """time.monotonic() after which the item is not started any more."""
    future: asyncio.Future[RetouchResult]
    slot: Slot
    whitening: float = 0.0
    parse: FaceParse | None = None
    """The faces and skin when found ahead (service.face_pool); else the engine finds them."""
    enqueued_at: float = field(default_factory=time.monotonic)
    state: State = State.QUEUED
    queue_seconds: float = 0.0
    model_seconds: float = 0.0


class Slot:
    """A place in the queue, held from admission until a worker takes the request (or the
    request ends first). Use as a context manager around the request's handling."""

    def __init__(self, batcher: Batcher) -> None:
        self._batcher = batcher
        self._held = True
        # Weak: the item refers to its slot, and a cycle would keep the item's arrays (225 MiB
        # at 8K) alive until a full collection, which the frozen heap makes rare. The request
        # and the queue hold the item for as long as it matters.
        self._item: weakref.ref[WorkItem] | None = None

    @property
    def item(self) -> WorkItem | None:
        """The submitted item while anything else still holds it."""
        return None if self._item is None else self._item()

    def submit(
        self,
        image: np.ndarray,
        strength: float,
        return_mask: bool,
        deadline: float,
        whitening: float = 0.0,
        parse: FaceParse | None = None,
    ) -> WorkItem:
        """Queue `image` for a replica; its result comes through `Batcher.wait`."""
        if self._item is not None:
            raise RuntimeError("a slot takes one item")
        future: asyncio.Future[RetouchResult] = asyncio.get_running_loop().create_future()
        # An abandoned future's exception is never awaited; retrieving it here keeps asyncio
        # from logging "exception was never retrieved" for it.
        future.add_done_callback(retrieve)
        item = WorkItem(image, strength, return_mask, deadline, future, self, whitening, parse)
        self._batcher._enqueue(item)
        self._item = weakref.ref(item)
        return item

    def release(self) -> None:
        """Give the place back (idempotent)."""
        if self._held:
            self._held = False
            self._batcher._release(submitted=self._item is not None)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        item = self.item
        if item is not None and item.state is State.QUEUED:
            self._batcher.withdraw(item)
        self.release()


@dataclass
class _Worker:
    replica: Replica
    name: str
    task: asyncio.Task | None = None
    busy_until: float = 0.0
    """time.monotonic() by which its running batch should be done, by the estimate."""


class Batcher:
    """Bounded queue -> batches -> one worker per replica -> futures."""

    def __init__(
        self,
        replicas: Sequence[Replica],
        *,
        max_batch_size: int,
        max_batch_wait_s: float,
        max_queue: int,
        metrics: Metrics,
        shed_late: bool = True,
    ) -> None:
        if not replicas:
            raise ValueError("the batcher needs at least one replica")
        self.max_batch_size = max_batch_size
        self.max_batch_wait_s = max_batch_wait_s
        self.max_queue = max_queue
        self.metrics = metrics
        self.workers = [_Worker(replica, replica.name) for replica in replicas]
        self._queue: deque[WorkItem] = deque()
        self._admitted = 0
        self._queued = 0  # of those admitted, submitted and not yet taken by a worker
        self._arrived = asyncio.Event()
        self._stopped = False
        self._estimate = WorkEstimate()
        self._shed_late = shed_late

    @property
    def depth(self) -> int:
        """Admitted requests not yet taken by a worker."""
        return self._admitted

    def reserve(self) -> Slot:
        """A place in the queue, or QueueFull at once."""
        if self._stopped:
            raise ShuttingDown("the service is shutting down")
        if self._admitted >= self.max_queue:
            raise QueueFull(f"the queue is full ({self.max_queue} requests waiting)")
        self._admitted += 1
        self._publish()
        return Slot(self)

    def _release(self, submitted: bool) -> None:
        self._admitted -= 1
        if submitted:
            self._queued -= 1
        self._publish()

    def _publish(self) -> None:
        self.metrics.queue_depth.set(self._queued)
        self.metrics.uploads_in_progress.set(self._admitted - self._queued)

    def _enqueue(self, item: WorkItem) -> None:
        if self._stopped:
            raise ShuttingDown("the service is shutting down")
        self._shed_if_late(item)
        self._queue.append(item)
        self._queued += 1
        self._publish()
        self._arrived.set()

    def _shed_if_late(self, item: WorkItem) -> None:
        """Raise Overloaded if the work ahead of `item` would, by the estimate, outlast its
        deadline; never for the only item (nothing queued, no replica busy)."""
        if not self._shed_late or not self._estimate.known:
            return
        now = time.monotonic()
        left = item.deadline - now
        queued = sum(
            work_pixels(*i.image.shape[:2]) for i in self._queue if i.state is State.QUEUED
        )
        running = sum(max(0.0, w.busy_until - now) for w in self.workers)
        if left <= 0 or (not queued and not running):
            return  # past it already (answered 504 on the way), or it runs next
        ahead = (self._estimate.seconds(queued) + running) / len(self.workers)
        own = self._estimate.seconds(work_pixels(*item.image.shape[:2]))  # on one replica
        if ahead + own <= left:
            return
        raise Overloaded(
            f"about {ahead:.0f} s of model work is queued ahead of this request, past its "
            f"deadline in {left:.0f} s: try again later, or with a longer X-Request-Timeout",
            max(1, math.ceil(ahead + own - left)),
        )

    def withdraw(self, item: WorkItem) -> bool:
        """Take a still-queued item out so it is never computed; False if it already started."""
        if item.state is not State.QUEUED:
            return False
        item.state = State.DONE
        item.slot.release()
        item.future.cancel()
        # Not found: it sits in a batch being collected, which skips it.
        with contextlib.suppress(ValueError):
            self._queue.remove(item)
        return True

    async def wait(self, item: WorkItem, abandoned: asyncio.Future | None = None) -> RetouchResult:
        """The item's result. Raises DeadlineExceeded if it is still queued at its deadline and
        ClientGone if `abandoned` (the client's disconnect) completes first; either way a
        queued item is withdrawn and never computed. The deadline bounds the wait for a
        replica: an item already running is finished."""
        waiters: set[asyncio.Future] = {item.future}
        if abandoned is not None:
            waiters.add(abandoned)
        try:
            timeout = max(0.0, item.deadline - time.monotonic())
            done, _ = await asyncio.wait(
                waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if item.future in done:
                return item.future.result()
            if done:  # the client went away
                raise ClientGone("queued" if self.withdraw(item) else "running")
            if self.withdraw(item):
                raise DeadlineExceeded("the request waited for a replica past its deadline")
            done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if item.future in done:
                return item.future.result()
            raise ClientGone("running")
        finally:
            # Cancelled from outside (server shutting down): never leave the item queued.
            self.withdraw(item)

    def start(self) -> None:
        """Start one dispatcher task per replica (call from the event loop)."""
        for worker in self.workers:
            worker.task = asyncio.create_task(self._serve(worker), name=f"abpn-{worker.name}")
            worker.task.add_done_callback(self._dispatcher_ended)

    def _dispatcher_ended(self, task: asyncio.Task) -> None:
        # Its loop only ends by cancellation (stop) or by a bug; then nothing takes work for
        # its replica, and liveness fails (dispatch_failure) so that the pod is restarted.
        if not task.cancelled() and task.exception() is not None:
            logger.critical("a batch dispatcher stopped", exc_info=task.exception())

    def dispatch_failure(self) -> str | None:
        """Why a replica's dispatcher is no longer running although the batcher was not
        stopped (its requests would wait until their deadlines), or None."""
        if self._stopped:
            return None
        for worker in self.workers:
            task = worker.task
            if task is not None and task.done() and not task.cancelled():
                return f"the batch dispatcher of {worker.name} stopped: {task.exception()!r}"
        return None

    async def warm_up(self) -> None:
        """Warm every replica up, all at once."""
        await asyncio.gather(*(worker.replica.warm_up() for worker in self.workers))

    async def stop(self) -> None:
        """Stop the workers; requests still queued get ShuttingDown."""
        self._stopped = True
        tasks = [w.task for w in self.workers if w.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while self._queue:
            item = self._queue.popleft()
            if item.state is State.QUEUED:
                self._finish(item, ShuttingDown("the service stopped before this request ran"))

    def _finish(self, item: WorkItem, outcome: RetouchResult | BaseException) -> None:
        if item.state is State.QUEUED:
            item.slot.release()
        item.state = State.DONE
        if item.future.done():
            return
        if isinstance(outcome, BaseException):
            item.future.set_exception(outcome)
        else:
            item.future.set_result(outcome)

    async def _serve(self, worker: _Worker) -> None:
        while True:
            # A replica being replaced takes nothing: the queue keeps its items for the others,
            # or for it once it is warm again.
            await worker.replica.ready()
            # No local name for the batch: one would hold its items, and their arrays, while
            # the next batch is awaited.
            await self._run(worker, await self._collect())

    def _pop(self) -> WorkItem | None:
        """The oldest queued item, skipping (and failing) any whose deadline passed."""
        while self._queue:
            item = self._queue.popleft()
            if item.state is not State.QUEUED:
                continue
            if time.monotonic() > item.deadline:
                self._finish(item, DeadlineExceeded("the request waited past its deadline"))
                continue
            return item
        return None

    async def _collect(self) -> list[WorkItem]:
        """Wait for a first item, then up to max_batch_wait_s after it arrived for more."""
        batch: list[WorkItem] = []
        try:
            while (first := self._pop()) is None:
                self._arrived.clear()
                await self._arrived.wait()
            batch.append(first)
            closes_at = first.enqueued_at + self.max_batch_wait_s
            while len(batch) < self.max_batch_size:
                item = self._pop()
                if item is not None:
                    batch.append(item)
                    continue
                remaining = closes_at - time.monotonic()
                if remaining <= 0:
                    break
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), remaining)
                except asyncio.TimeoutError:
                    break
        except asyncio.CancelledError:
            # Stopping mid-collection: hand the items back so that stop() answers them.
            self._queue.extendleft(reversed(batch))
            raise
        return [item for item in batch if self._start(item)]

    def _start(self, item: WorkItem) -> bool:
        if item.state is not State.QUEUED:
            return False  # withdrawn while the batch was being collected
        now = time.monotonic()
        if now > item.deadline:
            self._finish(item, DeadlineExceeded("the request waited past its deadline"))
            return False
        item.state = State.RUNNING
        item.slot.release()
        item.queue_seconds = now - item.enqueued_at
        self.metrics.queue_wait_seconds.observe(item.queue_seconds)
        return True

    async def _run(self, worker: _Worker, batch: list[WorkItem]) -> None:
        if not batch:
            return
        self.metrics.batch_size.labels(worker.name).observe(len(batch))
        pixels = sum(work_pixels(*item.image.shape[:2]) for item in batch)
        worker.busy_until = time.monotonic() + self._estimate.seconds(pixels)
        started = time.perf_counter()
        try:
            outcomes = await worker.replica.run(batch)
        except asyncio.CancelledError:
            for item in batch:
                self._finish(item, ShuttingDown("the service stopped while this request ran"))
            raise
        except Exception as exc:
            # A failure outside the model (the batch's shared memory block could not be made,
            # say): it costs this batch, not the worker, whose death would leave every request
            # it takes from here on unanswered.
            logger.error(
                "a batch could not be handed to its replica",
                exc_info=exc,
                extra={"device": worker.name, "batch_size": len(batch)},
            )
            outcomes = [ModelFailed("the batch could not be run") for _ in batch]
        seconds = time.perf_counter() - started
        worker.busy_until = 0.0
        if not any(isinstance(outcome, BaseException) for outcome in outcomes):
            self._estimate.observe(pixels, seconds)
        self.metrics.model_seconds.labels(worker.name).observe(seconds)
        for item, outcome in zip(batch, outcomes, strict=True):
            item.model_seconds = seconds
            if not isinstance(outcome, BaseException):
                self.metrics.pixels.inc(item.image.shape[0] * item.image.shape[1])
            self._finish(item, outcome)
