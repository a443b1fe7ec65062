"""Everything a request handler needs, built once per app: settings, metrics, lifecycle, the
codec pool, the memory budget, the face workers and the batcher over one model replica process
per device."""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Annotated

from fastapi import Depends, Request

from model.weights_info import WeightsInfo
from service.batcher import Batcher
from service.codecs import Codecs
from service.config import Settings
from service.cpus import available_cpus
from service.errors import ServiceError, unavailable
from service.face_pool import FacePool
from service.lifecycle import Lifecycle
from service.memory_budget import MemoryBudget
from service.metrics import Metrics
from service.replica_protocol import ReplicaConfig
from service.replicas import ProcessReplica

logger = logging.getLogger("abpn.runtime")


class Runtime:
    """The app's long-lived state. `start` loads the replicas, `warm_up` makes the service
    ready, `stop` releases everything."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = Metrics(weights_sha256=settings.api_keys is None)
        self.lifecycle = Lifecycle(self.metrics)
        self.codecs = Codecs(settings.codec_threads, self.metrics)
        self.memory = MemoryBudget(settings.memory_budget_mb * 2**20, self.metrics)
        self.faces: FacePool | None = None
        if settings.face_workers:
            self.faces = FacePool(
                settings.face_workers,
                self.metrics,
                settings.tune_malloc,
                max_faces=settings.max_faces,
                timeout_s=settings.faces_timeout_s,
            )
        self.devices = settings.device_list()
        self.info: WeightsInfo | None = None
        self.replicas = [
            ProcessReplica(self._replica_config(device), self.metrics, settings.batch_timeout_s)
            for device in self.devices
        ]
        self._batcher: Batcher | None = None

    def _replica_config(self, device: str) -> ReplicaConfig:
        s = self.settings
        return ReplicaConfig(
            device=device,
            weights=s.weights,
            compile_lrl=s.compile_lrl and device == "cpu",
            torch_threads=s.torch_thread_count(),
            tune_malloc=s.tune_malloc,
            # With face workers the replicas are given their parses: no parser loaded there.
            parse_faces=self.faces is None,
            log_level=s.log_level,
            max_faces=s.max_faces,
        )

    @property
    def batcher(self) -> Batcher:
        """The batcher; exists once `start` returned."""
        if self._batcher is None:
            raise RuntimeError("the runtime has not started")
        return self._batcher

    async def start(self) -> None:
        """Start the face workers and one replica process per device, each loading the
        weights, all at once. A missing or broken checkpoint raises, so the process fails fast
        with the reason."""
        face_workers = asyncio.to_thread(self.faces.start) if self.faces else asyncio.sleep(0)
        try:
            *loaded, _ = await asyncio.gather(
                *(replica.start() for replica in self.replicas), face_workers
            )
        except BaseException:
            await self.stop()
            raise
        info = loaded[0].info
        self.info = info
        self.metrics.serving(info.name, info.version, info.sha256)
        self._batcher = Batcher(
            self.replicas,
            max_batch_size=self.settings.max_batch_size,
            max_batch_wait_s=self.settings.max_batch_wait_ms / 1000.0,
            max_queue=self.settings.max_queue,
            metrics=self.metrics,
            shed_late=self.settings.shed_late,
        )
        self._batcher.start()
        logger.info(
            "replicas loaded",
            extra={
                "devices": self.devices,
                "pids": [replica.pid for replica in self.replicas],
                "cpus": available_cpus(),
                "face_workers": self.settings.face_workers,
                "codec_threads": self.settings.codec_threads,
                "torch_threads": loaded[0].torch_threads,
                "compiled_lrl": [replica.compiled_lrl for replica in loaded],
                "malloc_tuned": loaded[0].malloc_tuned,
                "weights": info.name,
                "sha256": info.sha256,
            },
        )

    async def warm_up(self) -> None:
        """Run a warm-up batch on every replica, freeze what start-up left on the heap, then
        report ready (or failed)."""
        try:
            await self.batcher.warm_up()
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

    def liveness_error(self) -> ServiceError | None:
        """Why the process should be restarted, or None: start-up failed, a batch dispatcher
        stopped, or a replica or the face workers have not served again within
        ABPN_RECOVERY_TIMEOUT_S of being replaced. A hung model call or parse alone is not a
        reason: its own limit replaces its process here, which costs its requests only, where
        restarting the pod costs every request in flight and every replica's warm-up."""
        error = self.lifecycle.liveness_error()
        if error is not None:
            return error
        if self._batcher is not None and (failure := self._batcher.dispatch_failure()):
            return ServiceError(503, "wedged", failure)
        limit = self.settings.recovery_timeout_s
        lost = [(f"model replica {r.name}", r.out_of_service_since) for r in self.replicas]
        if self.faces is not None:
            lost.append(("face workers", self.faces.out_of_service_since))
        now = time.monotonic()
        for what, since in lost:
            if since is not None and now - since > limit:
                return ServiceError(
                    503,
                    "wedged",
                    f"the {what} replaced {now - since:.0f} s ago did not come back within "
                    f"ABPN_RECOVERY_TIMEOUT_S ({limit:g} s)",
                )
        return None

    def readiness_error(self) -> ServiceError | None:
        """Why readiness is 503 now: the lifecycle's reason, or a replica being replaced (it
        takes no batch until it is warm again; requests still queue for it)."""
        error = self.lifecycle.readiness_error() or self.liveness_error()
        if error is None and not all(replica.is_ready for replica in self.replicas):
            return unavailable("not_ready", "a model replica is being replaced")
        return error

    def kill_replicas(self) -> None:
        """Kill every replica process still alive, without the event loop (service.server)."""
        for replica in self.replicas:
            replica.kill()

    async def halt(self) -> None:
        """Answer every request waiting for faces or for a replica with ShuttingDown; nothing
        new starts. A model call or a parse already under way runs on, unawaited."""
        if self.faces is not None:
            self.faces.stop()
        if self._batcher is not None:
            await self._batcher.stop()

    async def stop(self) -> None:
        """Stop the workers, the replica processes, the codec pool and the face workers."""
        await self.halt()
        await asyncio.gather(*(replica.close() for replica in self.replicas))
        self.codecs.close()
        if self.faces is not None:
            self.faces.close()


def get_runtime(request: Request) -> Runtime:
    """FastAPI dependency: the app's Runtime."""
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
