"""A model replica in a process of its own, seen from the service (the batcher's `Replica`).

The process (service.replica_process, spawned) holds the model, its torch threads and, without
face workers, the face parser: none of them shares a GIL with the event loop or the codecs. A
batch goes as one shared memory block (service.shared_batch) and one message each way over a
pipe, which the event loop watches, as it watches the process's exit: nothing blocks a thread
per call.

A batch that runs past ABPN_BATCH_TIMEOUT_S, or a process that dies, costs the batch it held
(504 `model_timeout`, 500 `replica_died`) and the process: it is killed, counted in
`abpn_process_restarts_total{process="replica"}`, and a new one is started and warmed up in
the background; until it is warm the replica takes no batch and readiness is 503. Requests
wait in the queue meanwhile, within their deadlines.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import multiprocessing
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from typing import TypeVar

from model.result import RetouchResult
from service import replica_protocol, shared_batch
from service.batcher import (
    BatcherError,
    ModelFailed,
    ModelOutOfMemory,
    ModelTimeout,
    ReplicaDied,
    WorkItem,
)
from service.metrics import Metrics
from service.replica_protocol import (
    Batch,
    Done,
    Failed,
    ItemDone,
    ItemFailed,
    Loaded,
    ReplicaConfig,
    Warmed,
    WarmUp,
)
from service.shared_batch import ItemRequest, SharedItem

logger = logging.getLogger("abpn.replicas")

T = TypeVar("T")

JOIN_S = 5.0
"""How long a killed replica's exit is waited for before it is left to the kernel."""
CLOSE_GRACE_S = 2.0
"""How long an idle replica gets to exit on its own once its pipe is closed."""
RESPAWN_BACKOFF_S = (1.0, 30.0)
"""First and longest wait between failed attempts to start a replacement."""


class ReplicaStartError(RuntimeError):
    """The replica process could not load its weights or warm up; the message says why."""


class ProcessReplica:
    """One replica process on one device: `start` spawns it and loads the weights, `warm_up`
    makes it ready, `run` retouches a batch, `close` ends it."""

    def __init__(self, config: ReplicaConfig, metrics: Metrics, batch_timeout_s: float) -> None:
        self.config = config
        self.name = config.device
        self.loaded: Loaded | None = None
        self.warmed: Warmed | None = None
        self._metrics = metrics
        self._timeout = batch_timeout_s
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._control: asyncio.Future | None = None
        """The answer awaited to a start or a warm-up (Loaded, Warmed)."""
        self._calls: dict[int, asyncio.Future[Done]] = {}
        self._outstanding = 0
        """Warm-ups and batches sent and not answered yet, given up on or not."""
        self._ids = itertools.count()
        self._ready = asyncio.Event()
        self._serving = False
        """Warmed up once: a loss from here on is replaced."""
        self._closing = False
        self._respawn: asyncio.Task | None = None
        self._lost_at: float | None = None

    @property
    def pid(self) -> int | None:
        """The process's id while one runs."""
        return None if self._process is None else self._process.pid

    @property
    def is_ready(self) -> bool:
        """Warm and taking batches."""
        return self._ready.is_set()

    @property
    def out_of_service_since(self) -> float | None:
        """time.monotonic() when the serving process was lost, while its replacement is not
        warm yet; None while serving (and before the first warm-up)."""
        return self._lost_at

    @property
    def busy(self) -> bool:
        """Whether the process works on a batch or the warm-up, even one given up on."""
        return self._outstanding > 0

    async def ready(self) -> None:
        """Return once the replica is warm (at once, unless it is being replaced)."""
        await self._ready.wait()

    async def start(self) -> Loaded:
        """Spawn the process and wait until it has built the engine. Raises ReplicaStartError
        with the reason if it cannot (weights missing, say)."""
        context = multiprocessing.get_context("spawn")  # a fork would copy torch mid-state
        ours, theirs = context.Pipe()
        process = context.Process(
            target=replica_protocol.entry,
            args=(theirs, self.config),
            name=f"abpn-replica-{self.name}",
        )
        await asyncio.to_thread(process.start)
        theirs.close()
        self._process, self._conn = process, ours
        loop = asyncio.get_running_loop()
        loop.add_reader(ours.fileno(), self._on_readable, process, ours)
        loop.add_reader(process.sentinel, self._lost, process, "died")
        loaded = await self._control_call(None)
        if not isinstance(loaded, Loaded):
            raise ReplicaStartError(f"unexpected answer {loaded!r}")
        self.loaded = loaded
        return loaded

    async def warm_up(self) -> None:
        """Run the warm-up batch in the process (the LRL's compile included); ready after."""
        warmed = await self._control_call(WarmUp())
        if not isinstance(warmed, Warmed):
            raise ReplicaStartError(f"unexpected answer {warmed!r}")
        self.warmed = warmed
        self._serving = True
        self._lost_at = None
        self._ready.set()

    async def _control_call(self, message: WarmUp | None) -> object:
        self._control = asyncio.get_running_loop().create_future()
        try:
            if message is not None:
                self._send(message)
            return await self._control
        finally:
            self._control = None

    def _send(self, message: object) -> None:
        if self._conn is None:
            raise ReplicaDied("the replica process is not running")
        try:
            self._conn.send(message)
        except OSError as exc:  # the process died under the send
            raise ReplicaDied("the replica process died") from exc
        self._outstanding += 1

    def _on_readable(self, process: BaseProcess, conn: Connection) -> None:
        try:
            while conn.poll():
                self._dispatch(conn.recv())
        except (EOFError, OSError):
            self._lost(process, "died")

    def _dispatch(self, message: object) -> None:
        if isinstance(message, (Done, Warmed)):
            self._outstanding -= 1
        if isinstance(message, Done):
            call = self._calls.get(message.id)
            if call is not None and not call.done():
                call.set_result(message)
        elif self._control is not None and not self._control.done():
            if isinstance(message, Failed):
                self._control.set_exception(ReplicaStartError(message.reason))
            else:
                self._control.set_result(message)

    def _lost(self, process: BaseProcess, reason: str) -> None:
        """The process ended (or was killed for `reason`): fail what it held, and replace it
        if it was serving."""
        if process is not self._process:
            return  # an earlier process, already dealt with
        self._detach()
        self._ready.clear()
        self._outstanding = 0
        error = (
            ModelTimeout(f"the model ran past ABPN_BATCH_TIMEOUT_S ({self._timeout:g} s)")
            if reason == "timeout"
            else ReplicaDied("the model replica process died")
        )
        for call in self._calls.values():
            if not call.done():
                call.set_exception(error)
        if self._control is not None and not self._control.done():
            self._control.set_exception(ReplicaStartError("the replica process exited"))
        if self._serving and not self._closing:
            self._serving = False
            self._lost_at = time.monotonic()
            self._metrics.process_restarts.labels("replica", reason).inc()
            logger.error(
                "a model replica was lost; starting a new one",
                extra={"device": self.name, "reason": reason, "pid": process.pid},
            )
            self._respawn = asyncio.get_running_loop().create_task(
                self._replace(process), name=f"abpn-respawn-{self.name}"
            )

    def _detach(self) -> None:
        process, conn = self._process, self._conn
        self._process = self._conn = None
        loop = asyncio.get_running_loop()
        if conn is not None:
            loop.remove_reader(conn.fileno())
            conn.close()  # the process, if alive and idle, reads EOF and exits
        if process is not None:
            loop.remove_reader(process.sentinel)

    async def _replace(self, old: BaseProcess) -> None:
        if old.is_alive():
            old.kill()
        await asyncio.to_thread(old.join, JOIN_S)
        delay, longest = RESPAWN_BACKOFF_S
        while not self._closing:
            try:
                await self.start()
                await self.warm_up()
            except Exception:
                logger.exception("starting a new replica failed", extra={"device": self.name})
                await self._end(kill=True)
                await asyncio.sleep(delay)
                delay = min(longest, delay * 2)
                continue
            logger.info("model replica replaced", extra={"device": self.name, "pid": self.pid})
            return

    async def run(self, items: Sequence[WorkItem]) -> list[RetouchResult | BatcherError]:
        """Retouch a batch in the process: one outcome per item, in order."""
        requests = [
            ItemRequest(item.image, item.strength, item.whitening, item.return_mask, item.parse)
            for item in items
        ]
        block, shared = await _off_loop(
            shared_batch.write, requests, abandoned=lambda written: shared_batch.release(written[0])
        )
        try:
            done = await self._call(Batch(next(self._ids), block.name, tuple(shared)))
        except (ModelTimeout, ReplicaDied) as exc:
            shared_batch.release(block)
            return [type(exc)(str(exc)) for _ in items]
        except BaseException:
            # The process may still be writing into the block: its own mapping stays valid.
            shared_batch.release(block)
            raise
        # Copying out and unlinking happen in one thread call, which finishes even if the
        # request is cancelled meanwhile: the block is never unmapped under the copy.
        return await _off_loop(_collect, block, shared, done.outcomes, items)

    async def _call(self, batch: Batch) -> Done:
        call: asyncio.Future[Done] = asyncio.get_running_loop().create_future()
        self._calls[batch.id] = call
        try:
            self._send(batch)
            return await asyncio.wait_for(call, self._timeout)
        except asyncio.TimeoutError:
            process = self._process
            if process is not None:
                process.kill()
                self._lost(process, "timeout")
            raise ModelTimeout(
                f"the model ran past ABPN_BATCH_TIMEOUT_S ({self._timeout:g} s)"
            ) from None
        finally:
            del self._calls[batch.id]

    async def close(self) -> None:
        """End the process: at once if it is busy (its work is given up), else by closing its
        pipe, which it reads as the end."""
        self._closing = True
        self._ready.clear()
        if self._respawn is not None:
            self._respawn.cancel()
            await asyncio.gather(self._respawn, return_exceptions=True)
        await self._end(kill=self.busy)

    async def _end(self, kill: bool) -> None:
        process = self._process
        if process is None:
            return
        self._detach()
        if kill:
            process.kill()
        await asyncio.to_thread(process.join, CLOSE_GRACE_S)
        if process.is_alive():
            process.kill()
            await asyncio.to_thread(process.join, JOIN_S)

    def kill(self) -> None:
        """Kill the process now, without the event loop (the server calls it after uvicorn
        returned: a second signal skips the app's shutdown, and multiprocessing's exit handler
        would wait for a child that ignores SIGTERM)."""
        self._closing = True
        process = self._process
        if process is not None and process.is_alive():
            process.kill()
            process.join(JOIN_S)


def _collect(
    block: SharedMemory,
    shared: Sequence[SharedItem],
    outcomes: Sequence[ItemDone | ItemFailed],
    items: Sequence[WorkItem],
) -> list[RetouchResult | BatcherError]:
    """The batch's results, copied out of its block, which is then unlinked (blocking)."""
    try:
        results: list[RetouchResult | BatcherError] = []
        for item, layout, outcome in zip(items, shared, outcomes, strict=True):
            if isinstance(outcome, ItemFailed):
                results.append(as_batcher_error(outcome))
                continue
            # An untouched result equals the input: no copy, and the encoder may reuse it.
            image = item.image if outcome.untouched else shared_batch.copy_photo(block, layout)
            mask = shared_batch.copy_mask(block, layout)
            results.append(
                RetouchResult(
                    image,
                    mask,
                    outcome.faces,
                    outcome.untouched,
                    outcome.timings,
                    faces_skipped=outcome.faces_skipped,
                )
            )
        return results
    finally:
        shared_batch.release(block)


def as_batcher_error(failed: ItemFailed) -> BatcherError:
    """The batcher's error for an item the replica could not retouch."""
    if failed.kind == "out_of_memory":
        return ModelOutOfMemory(failed.message)
    return ModelFailed(failed.message)


async def _off_loop(
    fn: Callable[..., T], *args: object, abandoned: Callable[[T], None] | None = None
) -> T:
    """`fn(*args)` on a thread. If the caller is cancelled meanwhile the call still runs to its
    end, and `abandoned` gets its result (to free what it made)."""
    work = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        if abandoned is not None:
            work.add_done_callback(
                lambda w: abandoned(w.result()) if not w.cancelled() and not w.exception() else None
            )
        raise
