"""Face parsing in worker processes, ahead of the model.

The engine finds faces and skin (model.faces) before it runs the network, and its face detector
(yuface) holds the GIL for as long as it runs: a fifth to a half of a 512x384 portrait's engine
time on 2 cores (docs/benchmarks.md, "Serving overhead"), during which nothing else in the
process, neither the event loop nor the codecs nor the model thread between its kernels, can
run. Parsing here, in processes of their own, frees the service's process of it and lets the
parse of the next photos run on one core while the model works on another; the model then gets
the parses (`retouch_batch(parses=...)`), whose results are the same as if it had parsed itself.
Photos go to the workers and masks come back through shared memory (service.shared_parse).

A parse waits for a free worker in a FIFO of its own, bounded by the batcher's admission
slots; a request whose client went away or whose deadline passed before its parse started is
never parsed. A parse that runs past its time limit (ABPN_FACES_TIMEOUT_S) costs the workers:
they are killed, every parse they held is answered ModelTimeout, and new ones start at once. A
worker that dies costs the same, answered ModelFailed. Either way the replacement is counted in
`abpn_process_restarts_total{process="face_worker"}`.

Workers ignore SIGINT and SIGTERM, so that a signal sent to the whole process group leaves them
running while the service drains; they exit when the service closes the pool, or when it dies
(a thread of theirs watches it).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from model.faces import FaceParse
from service import face_worker, shared_parse
from service.batcher import (
    BatcherError,
    ClientGone,
    DeadlineExceeded,
    ModelFailed,
    ModelTimeout,
    ShuttingDown,
)
from service.futures import retrieve
from service.metrics import Metrics

logger = logging.getLogger("abpn.faces")


@dataclass(eq=False)
class _Workers:
    """One generation of worker processes: the pool they serve, and what became of them."""

    pool: ProcessPoolExecutor
    ready: asyncio.Future | None = None
    """Done once every process of a replacement has loaded its parser; None for the first
    processes, which `start` waits for."""
    lost: str | None = None
    """Why the processes were killed ("timeout", "died"), once they were."""


class FacePool:
    """`workers` face-parsing processes, started by `start` (blocking: each loads its
    detector and landmark graph). Each parse retouches at most `max_faces` faces (None: all),
    and may run `timeout_s` seconds."""

    def __init__(
        self,
        workers: int,
        metrics: Metrics,
        tune_malloc: bool = False,
        *,
        max_faces: int | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        if workers < 1:
            raise ValueError("a face pool needs at least one worker")
        self.workers = workers
        self._metrics = metrics
        self._tune_malloc = tune_malloc
        self._max_faces = max_faces
        self._timeout = timeout_s
        self._workers: _Workers | None = None
        # The pool itself queues without bound and hands work to its processes eagerly; this
        # semaphore keeps the waiting here, where it can be abandoned.
        self._free = asyncio.Semaphore(workers)
        self._stopping = False
        self._stopped: asyncio.Future | None = None
        """Done once `stop` was called; made on the event loop by the first parse."""
        self._lost_at: float | None = None

    @property
    def out_of_service_since(self) -> float | None:
        """time.monotonic() when the workers were first replaced, while no replacement has
        started since (one that fails to start leaves it set); None while they serve."""
        return self._lost_at

    def start(self) -> None:
        """Start the processes, and return once they answer (each loads its parser as it
        starts, before it takes any work)."""
        pool = self._new_pool()
        # One trivial call per worker, all at once: the pool starts a process for each.
        for future in [pool.submit(face_worker.ready) for _ in range(self.workers)]:
            future.result()
        self._workers = _Workers(pool)

    def _new_pool(self) -> ProcessPoolExecutor:
        # spawn: a fork of this process would copy torch's thread pools and locks mid-state.
        return ProcessPoolExecutor(
            self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=face_worker.start,
            initargs=(self._tune_malloc,),
        )

    async def parse(
        self, image: np.ndarray, deadline: float, disconnected: asyncio.Future
    ) -> tuple[FaceParse, float]:
        """The faces and skin of `image`, and the seconds it took, waiting included. Raises
        ClientGone or DeadlineExceeded if either happens before a worker takes the image (a
        parse under way is finished), ShuttingDown once `stop` was called, ModelTimeout if
        the parse runs past `timeout_s` (or another one held by the same processes does: they
        are killed and replaced), and ModelFailed if the parse fails."""
        started = time.perf_counter()
        await self._take_worker(deadline, disconnected)
        try:
            if disconnected.done():
                raise ClientGone("faces")
            parse = await self._run(image, deadline)
        finally:
            self._free.release()
        seconds = time.perf_counter() - started
        self._metrics.faces_seconds.observe(seconds)
        return parse, seconds

    def _stop_signal(self) -> asyncio.Future:
        if self._stopped is None:
            self._stopped = asyncio.get_running_loop().create_future()
            if self._stopping:
                self._stopped.set_result(None)
        return self._stopped

    async def _take_worker(self, deadline: float, disconnected: asyncio.Future) -> None:
        stopped = self._stop_signal()
        if stopped.done():
            raise ShuttingDown("the service is shutting down")
        acquire = asyncio.ensure_future(self._free.acquire())
        held = False
        try:
            timeout = max(0.0, deadline - time.monotonic())
            await asyncio.wait(
                {acquire, disconnected, stopped},
                timeout=timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
            held = acquire.done() and not stopped.done()
        finally:
            if not held and not acquire.cancel() and not acquire.cancelled():
                # The worker came free just as the wait ended otherwise: give it back.
                self._free.release()
        if not held:
            if stopped.done():
                raise ShuttingDown("the service stopped before this request's faces were found")
            if disconnected.done():
                raise ClientGone("faces")
            raise DeadlineExceeded("the request waited for face parsing past its deadline")

    async def _started(self, deadline: float) -> _Workers:
        """The current workers, once they have loaded their parsers: the time limit is a
        parse's, and must not count a replacement's start-up."""
        while True:
            workers = self._workers
            if workers is None:
                raise RuntimeError("the face pool has not started")
            if workers.ready is None or workers.ready.done():
                return workers
            stopped = self._stop_signal()
            timeout = max(0.0, deadline - time.monotonic())
            await asyncio.wait(
                {workers.ready, stopped}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if stopped.done():
                raise ShuttingDown("the service stopped before this request's faces were found")
            if not workers.ready.done():
                raise DeadlineExceeded("the request's deadline passed while face workers started")

    async def _run(self, image: np.ndarray, deadline: float) -> FaceParse:
        # Off the event loop: copying an 8K photo into the block takes tens of milliseconds.
        block, photo = await asyncio.to_thread(shared_parse.share, image)
        try:
            # Nothing awaits between this and the submit, so these workers are still current.
            workers = await self._started(deadline)
            work = asyncio.get_running_loop().run_in_executor(
                workers.pool, face_worker.parse_shared, photo, self._max_faces
            )
        except BrokenProcessPool as exc:  # a replacement that could not start
            shared_parse.release(block)
            raise self._lost(workers, exc) from exc
        except BaseException:
            shared_parse.release(block)
            raise
        # The worker maps the photo until its parse is done, whoever still waits for it.
        work.add_done_callback(lambda _: shared_parse.release(block))
        # Not cancelled with the request (a worker has the photo already): its outcome is
        # then dropped, without asyncio logging it as never retrieved.
        work.add_done_callback(retrieve)
        stopped = self._stop_signal()
        try:
            await asyncio.wait(
                {work, stopped}, timeout=self._timeout, return_when=asyncio.FIRST_COMPLETED
            )
        except asyncio.CancelledError:
            work.add_done_callback(_discard)  # nobody will unpack its masks
            raise
        if not work.done():
            work.add_done_callback(_discard)  # nobody will unpack its masks
            if stopped.done():
                raise ShuttingDown("the service stopped while this request's faces were found")
            if workers.lost is None:  # not killed for another parse already
                logger.error(
                    "a face parse ran past ABPN_FACES_TIMEOUT_S; replacing the face workers",
                    extra={"timeout_s": self._timeout},
                )
                self._replace(workers, "timeout")
            raise ModelTimeout(f"face parsing ran past ABPN_FACES_TIMEOUT_S ({self._timeout:g} s)")
        if work.cancelled():  # dropped by its pool as the pool was replaced
            raise self._lost(workers, None)
        try:
            packed = work.result()
        except BrokenProcessPool as exc:
            raise self._lost(workers, exc) from exc
        except Exception as exc:
            logger.error("face parsing failed on an image", exc_info=exc)
            raise ModelFailed("the face parser failed on this image") from exc
        return await asyncio.to_thread(shared_parse.unpack, packed)

    def _lost(self, workers: _Workers, exc: BaseException | None) -> BatcherError:
        """The error of a parse whose processes are gone; replaces them if nobody did yet."""
        if workers.lost == "timeout":
            return ModelTimeout(
                "the face workers were replaced: a parse they held ran past "
                f"ABPN_FACES_TIMEOUT_S ({self._timeout:g} s)"
            )
        if workers.lost is None:
            # A worker died (killed, or crashed in native code): every parse it held is lost.
            logger.error("a face worker died; starting new ones", exc_info=exc)
            self._replace(workers, "died")
        return ModelFailed("the face parser failed on this image")

    def _replace(self, workers: _Workers, reason: str) -> None:
        """Kill `workers`' processes, start new ones and count the restart."""
        workers.lost = reason
        # ProcessPoolExecutor has no public way to end a busy process, and a hung parse never
        # ends by itself. Its own clean-up of a broken pool sends SIGTERM, which workers
        # ignore (service.child), and then joins them without a limit. Killing the processes
        # through its private map breaks the pool, which fails every call it held.
        for process in list((workers.pool._processes or {}).values()):
            process.kill()
        workers.pool.shutdown(wait=False, cancel_futures=True)
        pool = self._new_pool()
        # Started now rather than by the next parse, whose time limit would count the start.
        ready = asyncio.gather(
            *(asyncio.wrap_future(pool.submit(face_worker.ready)) for _ in range(self.workers))
        )
        ready.add_done_callback(retrieve)
        self._workers = _Workers(pool, ready)
        if self._lost_at is None:
            self._lost_at = time.monotonic()
        ready.add_done_callback(self._back_in_service)
        self._metrics.process_restarts.labels("face_worker", reason).inc()

    def _back_in_service(self, ready: asyncio.Future) -> None:
        current = self._workers is not None and self._workers.ready is ready
        if current and not ready.cancelled() and ready.exception() is None:
            self._lost_at = None

    def stop(self) -> None:
        """Answer every parse waiting or under way with ShuttingDown; none starts after."""
        self._stopping = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def close(self) -> None:
        """Stop the processes once the parses they hold are done."""
        self.stop()
        if self._workers is not None:
            self._workers.pool.shutdown(wait=False, cancel_futures=True)
            self._workers = None


def _discard(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is None:
        shared_parse.discard(future.result())
