"""Everything a request handler needs, built once per app: settings, metrics, lifecycle, the
codec pool, the face workers and the batcher over one model replica per device."""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Annotated

import torch
from fastapi import Depends, Request

from model.allocator import tune_malloc
from model.engine import RetouchEngine
from model.net.abpn import ABPN
from model.weights import WeightsInfo, load_model
from service.batcher import Batcher
from service.codecs import Codecs
from service.config import Settings
from service.cpus import available_cpus
from service.face_pool import FacePool
from service.lifecycle import Lifecycle
from service.metrics import Metrics

logger = logging.getLogger("abpn.runtime")


class Runtime:
    """The app's long-lived state. `start` loads the replicas, `warm_up` makes the service
    ready, `stop` releases everything."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(weights_sha256=settings.api_keys is None)
        self.lifecycle = Lifecycle(self.metrics)
        self.codecs = Codecs(settings.codec_threads, self.metrics)
        self.faces: FacePool | None = None
        if settings.face_workers:
            self.faces = FacePool(settings.face_workers, self.metrics, settings.tune_malloc)
        self.devices = settings.device_list()
        self.info: WeightsInfo | None = None
        self._batcher: Batcher | None = None

    def _engine(self, model: ABPN, device: str) -> RetouchEngine:
        compile_lrl = self.settings.compile_lrl and device == "cpu"
        return RetouchEngine(model, device, compile_lrl=compile_lrl)

    @property
    def batcher(self) -> Batcher:
        """The batcher; exists once `start` returned."""
        if self._batcher is None:
            raise RuntimeError("the runtime has not started")
        return self._batcher

    async def start(self) -> None:
        """Start the face workers, load the weights and put one replica on each device, off
        the event loop. A missing or broken checkpoint raises, so the process fails fast with
        the reason."""
        # Process-wide, and before any replica computes: more threads than the CPUs left
        # beside the face workers made every model call several times slower here (OpenMP
        # threads waiting for a core at each barrier).
        torch.set_num_threads(self.settings.torch_thread_count())
        malloc_tuned = self.settings.tune_malloc and tune_malloc()
        face_workers = asyncio.to_thread(self.faces.start) if self.faces else asyncio.sleep(0)
        loaded, _ = await asyncio.gather(
            asyncio.to_thread(load_model, self.settings.weights), face_workers
        )
        self.info = loaded.info
        engines = await asyncio.gather(
            *(asyncio.to_thread(self._engine, loaded.model, device) for device in self.devices)
        )
        self.metrics.serving(loaded.info.name, loaded.info.version, loaded.info.sha256)
        self._batcher = Batcher(
            engines,
            max_batch_size=self.settings.max_batch_size,
            max_batch_wait_s=self.settings.max_batch_wait_ms / 1000.0,
            max_queue=self.settings.max_queue,
            metrics=self.metrics,
        )
        self._batcher.start()
        logger.info(
            "replicas loaded",
            extra={
                "devices": self.devices,
                "cpus": available_cpus(),
                "face_workers": self.settings.face_workers,
                "torch_threads": torch.get_num_threads(),
                "compiled_lrl": [e.compiled_lrl is not None for e in engines],
                "malloc_tuned": malloc_tuned,
                "weights": loaded.info.name,
                "sha256": loaded.info.sha256,
            },
        )

    async def warm_up(self) -> None:
        """Run a warm-up batch on every replica, freeze what start-up left on the heap, then
        report ready (or failed)."""
        try:
            # With face workers the replicas never parse: no parser is loaded here for them.
            await self.batcher.warm_up(parse_faces=self.faces is None)
        except Exception as exc:
            logger.exception("warm-up failed")
            self.lifecycle.mark_failed(f"warm-up failed: {exc}")
            return
        # A full collection walks every object alive, about 276,000 once torch, the compiled
        # LRL and the app are loaded; under load on 2 cores one took 145-170 ms with the event
        # loop stopped, so /healthz and every request in flight waited. Frozen, they are left
        # out of every later collection, which then walks only what requests create.
        gc.collect()
        gc.freeze()
        logger.info("start-up heap frozen", extra={"objects": gc.get_freeze_count()})
        self.lifecycle.mark_ready()

    def model_busy(self) -> bool:
        """Whether a replica's thread still computes (a model call or the warm-up, with the
        LRL's compile), even one given up on: exiting then must not wait for it."""
        return self._batcher is not None and self._batcher.busy

    async def halt(self) -> None:
        """Answer every request waiting for faces or for a replica with ShuttingDown; nothing
        new starts. A model call or a parse already under way runs on, unawaited."""
        if self.faces is not None:
            self.faces.stop()
        if self._batcher is not None:
            await self._batcher.stop()

    async def stop(self) -> None:
        """Stop the workers, the codec pool and the face workers."""
        await self.halt()
        self.codecs.close()
        if self.faces is not None:
            self.faces.close()


def get_runtime(request: Request) -> Runtime:
    """FastAPI dependency: the app's Runtime."""
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
