"""The service under uvicorn with a graceful drain (`serve`, run by `python -m service` and
`abpn-serve`).

On the first SIGTERM (or SIGINT) readiness turns 503 and new requests get 503 while every
request already accepted is finished and answered; then uvicorn's own shutdown closes the
connections and the lifespan stops the replicas. Plain uvicorn would instead stop listening at
once (new requests refused, not answered) and exit through the signal.

The drain is bounded by ABPN_DRAIN_TIMEOUT_S: shortly before it ends, requests still
uploading, decoding, waiting for faces or a replica, running or encoding are answered 503
`shutting_down` (with Retry-After, so clients retry elsewhere), and the process exits at the
deadline without waiting for a model call or a face parse still under way (the replica
processes are killed). A second signal exits at once.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from types import FrameType

import uvicorn

from service import log_format
from service.app import create_app
from service.auth import ApiKeyError
from service.config import Settings
from service.http_protocol import protocol_class
from service.runtime import Runtime

logger = logging.getLogger("abpn.server")

ABORT_LEAD_S = 1.0
"""How long before the drain deadline the requests still in flight are answered 503: the time
their answers get to reach the clients."""


class DrainingServer(uvicorn.Server):
    """uvicorn's server with a bounded drain phase in front of its shutdown."""

    def __init__(self, config: uvicorn.Config, runtime: Runtime) -> None:
        super().__init__(config)
        self.runtime = runtime
        self.signalled = False
        self.aborted = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler: the first signal starts the drain, a second one exits at once."""
        if not self.signalled:
            # Only a flag here: the drain itself runs on the event loop, in on_tick.
            self.signalled = True
        else:
            self.should_exit = self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        """uvicorn calls this every 0.1 s; while draining, exit once nothing is in flight or
        the drain timeout is over."""
        if self.signalled and not self.should_exit:
            lifecycle = self.runtime.lifecycle
            timeout = self.runtime.settings.drain_timeout_s
            lifecycle.begin_drain(timeout)
            remaining = lifecycle.drain_remaining()
            if lifecycle.in_flight == 0 or remaining <= 0:
                # What is left of the drain bounds uvicorn's wait for open connections.
                self.config.timeout_graceful_shutdown = remaining
                self.should_exit = True
            elif remaining <= min(ABORT_LEAD_S, timeout / 4) and not self.aborted:
                self.aborted = True
                logger.warning(
                    "drain timeout near: answering the requests still in flight with 503",
                    extra={"in_flight": lifecycle.in_flight},
                )
                lifecycle.cut_uploads()
                await self.runtime.halt()
        return await super().on_tick(counter)


def serve(settings: Settings) -> None:
    """Serve until SIGTERM, then drain."""
    log_format.configure(settings.log_level)
    try:
        app = create_app(settings)
    except ApiKeyError as exc:
        sys.exit(str(exc))
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # service.log_format already sends everything out as JSON
        access_log=False,  # the middleware writes one access line per request, with its id
        lifespan="on",
        http=protocol_class(settings.read_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        timeout_graceful_shutdown=math.ceil(settings.drain_timeout_s),
    )
    runtime: Runtime = app.state.runtime
    server = DrainingServer(config, runtime)
    try:
        server.run()
    finally:
        # The app's shutdown ends the replica processes; a second signal skips it, and so
        # does a failed start-up. multiprocessing's exit handler would then wait for a child
        # that ignores SIGTERM (a batch, or the LRL's compile, can take minutes).
        runtime.kill_replicas()
    if server.aborted or server.force_exit:
        # A decode or an encode given up on at the end of the drain may still run on a codec
        # thread, which the interpreter would join at exit, past the drain deadline and
        # possibly past the pod's terminationGracePeriodSeconds. Every request has been
        # answered.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
