"""What runs inside a model replica's process (service.replicas starts it, spawned): load the
weights, warm up, then run batches as the service sends them, one at a time.

It imports the model and torch, never the web stack: its GIL is the model's and the face
parser's alone, while the service's process keeps the event loop and the codecs. Pixels come
and go through one shared memory block per batch (service.shared_batch); the pipe carries the
messages below. It ignores SIGINT and SIGTERM (the service decides when it ends), and exits
when the service closes the pipe or dies.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import torch

from model.allocator import tune_malloc
from model.engine import RetouchEngine
from model.faces import FaceParse
from model.result import RetouchResult
from model.weights import load_model
from service import log_format, shared_batch
from service.child import detach_from_parent_signals
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
from service.shared_batch import SharedItem

logger = logging.getLogger("abpn.replica")


def main(conn: Connection, config: ReplicaConfig) -> None:
    """The replica process's entry point."""
    detach_from_parent_signals()
    log_format.configure(config.log_level)
    malloc_tuned = config.tune_malloc and tune_malloc()
    # Set before anything computes. The count comes from the CPUs the service may use
    # (service.cpus), which this process shares: affinity and cgroup are inherited.
    torch.set_num_threads(config.torch_threads)
    try:
        loaded = load_model(config.weights)
        compile_lrl = config.compile_lrl and config.device == "cpu"
        engine = RetouchEngine(
            loaded.model, config.device, compile_lrl=compile_lrl, max_faces=config.max_faces
        )
    except Exception as exc:
        conn.send(Failed(f"{type(exc).__name__}: {exc}"))
        return
    info = loaded.info
    del loaded  # the engine holds its own copy of the model
    compiled = engine.compiled_lrl is not None
    conn.send(Loaded(info, torch.get_num_threads(), compiled, malloc_tuned))
    serve(conn, engine, config.parse_faces)


def serve(conn: Connection, engine: RetouchEngine, parse_faces: bool) -> None:
    """Answer the service's messages until it closes the pipe."""
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return  # the service is gone or has closed the pipe: nothing is left to do
        if isinstance(message, WarmUp):
            try:
                engine.warmup(parse_faces=parse_faces)
            except Exception as exc:
                logger.exception("warm-up failed")
                conn.send(Failed(f"warm-up failed: {type(exc).__name__}: {exc}"))
                return
            conn.send(Warmed(engine.compiled_lrl is not None))
        elif isinstance(message, Batch):
            conn.send(Done(message.id, run_batch(engine, message)))


def run_batch(engine: RetouchEngine, batch: Batch) -> tuple[ItemDone | ItemFailed, ...]:
    """Retouch a batch in its block: results over the photos, masks into their rooms."""
    block = shared_batch.attach(batch.block)
    try:
        return _run_in(block, engine, batch.items)
    except Exception as exc:  # a bug here must not take the replica down with the batch
        logger.error("a batch failed", exc_info=exc)
        message = "".join(traceback.format_exception_only(exc)).strip()
        return tuple(ItemFailed("failed", message) for _ in batch.items)
    finally:
        shared_batch.close(block)


def _run_in(
    block: SharedMemory, engine: RetouchEngine, items: tuple[SharedItem, ...]
) -> tuple[ItemDone | ItemFailed, ...]:
    jobs = [
        Job(shared_batch.photo(block, item), item.strength, item.whitening,
             item.mask is not None, shared_batch.parse(block, item))
        for item in items
    ]  # fmt: skip
    outcomes = compute(engine, jobs)
    done: list[ItemDone | ItemFailed] = []
    for item, job, outcome in zip(items, jobs, outcomes, strict=True):
        if isinstance(outcome, ItemFailed):
            done.append(outcome)
            continue
        if not outcome.untouched:
            job.image[...] = outcome.image
        room = shared_batch.mask_room(block, item)
        if room is not None and outcome.mask is not None:
            room[...] = outcome.mask
        del room
        done.append(
            ItemDone(outcome.faces, outcome.untouched, outcome.timings, outcome.faces_skipped)
        )
    jobs.clear()  # their views of the block go before it closes
    return tuple(done)


@dataclass
class Job:
    """One image of a batch as the engine takes it (views of the block)."""

    image: np.ndarray
    strength: float
    whitening: float
    return_mask: bool
    parse: FaceParse | None


def compute(engine: RetouchEngine, jobs: list[Job]) -> list[RetouchResult | ItemFailed]:
    """Run one batch. `return_mask` is per engine call, and a mask costs a full-size array and
    the LRL even where only whitening was asked for: the images that asked for a mask run in a
    call of their own, so that the others never pay for one."""
    outcomes: list[RetouchResult | ItemFailed | None] = [None] * len(jobs)
    for wants_mask in (False, True):
        indices = [i for i, job in enumerate(jobs) if job.return_mask is wants_mask]
        if indices:
            group = _compute_group(engine, [jobs[i] for i in indices], wants_mask)
            for i, outcome in zip(indices, group, strict=True):
                outcomes[i] = outcome
    return outcomes  # type: ignore[return-value]


def _compute_group(
    engine: RetouchEngine, jobs: list[Job], return_mask: bool
) -> list[RetouchResult | ItemFailed]:
    """One engine call; a failed call is re-run one image at a time, so that one bad image,
    or a batch too big for the device, fails no other request."""
    parses = [job.parse for job in jobs]
    # The engine takes the parses of all images or of none.
    given = {"parses": parses} if all(p is not None for p in parses) else {}
    try:
        return list(
            engine.retouch_batch(
                [job.image for job in jobs],
                [job.strength for job in jobs],
                return_mask=return_mask,
                whitening=[job.whitening for job in jobs],
                **given,
            )
        )
    except Exception as exc:
        if len(jobs) == 1:
            return [_model_error(exc, engine)]
        if _is_out_of_memory(exc):
            _free_cached_memory(engine)
        logger.warning(
            "batch failed; retrying its images one at a time",
            extra={"batch_size": len(jobs), "device": str(engine.device), "error": str(exc)},
        )
        return [_compute_group(engine, [job], return_mask)[0] for job in jobs]


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, (torch.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    # The CPU allocator reports exhaustion as a plain RuntimeError.
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate memory" in text
    )


def _free_cached_memory(engine: RetouchEngine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.empty_cache()


def _model_error(exc: Exception, engine: RetouchEngine) -> ItemFailed:
    if _is_out_of_memory(exc):
        _free_cached_memory(engine)
        return ItemFailed("out_of_memory", f"{engine.device} ran out of memory for this image")
    logger.error("the model failed on an image", exc_info=exc)
    return ItemFailed("failed", "the model failed on this image")
