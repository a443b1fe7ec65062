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
never parsed. Workers ignore SIGINT and SIGTERM, so that a signal sent to the whole process
group leaves them running while the service drains; they exit when the service closes the
pool, or when it dies (a thread of theirs watches it).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from model.faces import FaceParse
from service import face_worker, shared_parse
from service.batcher import ClientGone, DeadlineExceeded, ModelFailed, ShuttingDown
from service.metrics import Metrics

logger = logging.getLogger("abpn.faces")


class FacePool:
    """`workers` face-parsing processes, started by `start` (blocking: each loads its
    detector and landmark graph)."""

    def __init__(self, workers: int, metrics: Metrics, tune_malloc: bool = False) -> None:
        if workers < 1:
            raise ValueError("a face pool needs at least one worker")
        self.workers = workers
        self._metrics = metrics
        self._tune_malloc = tune_malloc
        self._pool: ProcessPoolExecutor | None = None
        # The pool itself queues without bound and hands work to its processes eagerly; this
        # semaphore keeps the waiting here, where it can be abandoned.
        self._free = asyncio.Semaphore(workers)
        self._stopping = False
        self._stopped: asyncio.Future | None = None
        """Done once `stop` was called; made on the event loop by the first parse."""

    def start(self) -> None:
        """Start the processes, and return once they answer (each loads its parser as it
        starts, before it takes any work)."""
        self._pool = self._new_pool()
        # One trivial call per worker, all at once: the pool starts a process for each.
        for future in [self._pool.submit(face_worker.ready) for _ in range(self.workers)]:
            future.result()

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
        parse under way is finished), ShuttingDown once `stop` was called, and ModelFailed if
        the parse fails."""
        started = time.perf_counter()
        await self._take_worker(deadline, disconnected)
        try:
            if disconnected.done():
                raise ClientGone("faces")
            parse = await self._run(image)
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

    async def _run(self, image: np.ndarray) -> FaceParse:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the face pool has not started")
        # Off the event loop: copying an 8K photo into the block takes tens of milliseconds.
        block, photo = await asyncio.to_thread(shared_parse.share, image)
        try:
            work = asyncio.get_running_loop().run_in_executor(pool, face_worker.parse_shared, photo)
        except BaseException:
            shared_parse.release(block)
            raise
        # The worker maps the photo until its parse is done, whoever still waits for it.
        work.add_done_callback(lambda _: shared_parse.release(block))
        # Not cancelled with the request (a worker has the photo already): its outcome is
        # then dropped, without asyncio logging it as never retrieved.
        work.add_done_callback(_retrieve)
        stopped = self._stop_signal()
        try:
            await asyncio.wait({work, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            work.add_done_callback(_discard)  # nobody will unpack its masks
            raise
        if not work.done():
            work.add_done_callback(_discard)  # nobody will unpack its masks
            raise ShuttingDown("the service stopped while this request's faces were found")
        try:
            packed = work.result()
        except BrokenProcessPool as exc:
            # A worker died (killed, or crashed in native code): every parse it held is lost.
            logger.error("a face worker died; starting new ones", exc_info=exc)
            if self._pool is pool:  # not replaced by another request already
                pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                self._metrics.process_restarts.labels("face_worker", "died").inc()
            raise ModelFailed("the face parser failed on this image") from exc
        except Exception as exc:
            logger.error("face parsing failed on an image", exc_info=exc)
            raise ModelFailed("the face parser failed on this image") from exc
        return await asyncio.to_thread(shared_parse.unpack, packed)

    def stop(self) -> None:
        """Answer every parse waiting or under way with ShuttingDown; none starts after."""
        self._stopping = True
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    def close(self) -> None:
        """Stop the processes once the parses they hold are done."""
        self.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def _retrieve(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()


def _discard(future: asyncio.Future) -> None:
    if not future.cancelled() and future.exception() is None:
        shared_parse.discard(future.result())
