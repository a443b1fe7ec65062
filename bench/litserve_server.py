"""The comparison server for bench/load.py: LitServe serving the same RetouchEngine, configured
as the service configures it.

    python -m bench.litserve_server --port 8001 [--weights PATH|random] [--eager]
        [--torch-threads N] [--no-fast-queue]

What a LitServe user would write, at its best, on one CPU worker: the engine with the LRL
compiled (`compile_lrl=True`, as the service's default), torch on every usable CPU
(`service.cpus`: nothing else in the worker computes), malloc tuned as the service tunes it
(`model.allocator`), the raw JPEG body in, simplejpeg decode
in `decode_request`, batches of up to 8 gathered within 10 ms, `retouch_batch`, simplejpeg
encode at quality 90 in `encode_response`, JPEG out with the faces found in `X-Faces`, and
LitServe's ZeroMQ queue between its API server and the worker (`fast_queue`). LitServe runs
decode, model and encode in its worker process and HTTP in a separate API-server process.
Needs the `bench` extra (`pip install -e ".[bench]"`); nothing in the service imports it.
"""

# No `from __future__ import annotations` here: LitServe reads decode_request's annotation
# at run time to declare its endpoint, and a string would turn the body into a query parameter.

import argparse
from typing import Annotated

import litserve as ls
import numpy as np
import simplejpeg
import torch
from fastapi import Body, Response

from model.allocator import tune_malloc
from model.engine import RetouchEngine
from model.result import RetouchResult
from model.weights import load_model
from service.cpus import available_cpus

QUALITY = 90


class RetouchAPI(ls.LitAPI):
    """JPEG bytes -> RetouchEngine.retouch_batch -> JPEG bytes."""

    def __init__(
        self,
        weights: str | None,
        max_batch_size: int,
        batch_timeout: float,
        compile_lrl: bool = True,
        torch_threads: int = 0,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout)
        self.weights = weights
        self.compile_lrl = compile_lrl
        self.torch_threads = torch_threads or available_cpus()

    def setup(self, device: str) -> None:
        """Set torch's threads, tune malloc (as the service does by default,
        ABPN_TUNE_MALLOC), load the weights and warm the engine up (compiling the LRL), in the
        worker process."""
        torch.set_num_threads(self.torch_threads)
        tune_malloc()
        model = load_model(self.weights).model
        self.engine = RetouchEngine(model, device, compile_lrl=self.compile_lrl)
        self.engine.warmup()

    # The annotation makes FastAPI hand over the raw body (any non-JSON content type) as bytes;
    # LitServe's default would parse it as JSON.
    def decode_request(
        self, request: Annotated[bytes, Body(media_type="image/jpeg")]
    ) -> np.ndarray:
        """The body's pixels, RGB."""
        return simplejpeg.decode_jpeg(request, colorspace="RGB")

    def batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The photos as a list: they may differ in size, and LitServe's default stacks them."""
        return list(inputs)

    def unbatch(self, output: list[RetouchResult]) -> list[RetouchResult]:
        """One result per request."""
        return output

    def predict(self, x: list[np.ndarray]) -> list[RetouchResult]:
        """One engine call for the whole batch."""
        return self.engine.retouch_batch(x)

    def encode_response(self, output: RetouchResult) -> Response:
        """The retouched photo as JPEG."""
        body = simplejpeg.encode_jpeg(output.image, quality=QUALITY, colorspace="RGB")
        return Response(body, media_type="image/jpeg", headers={"X-Faces": str(output.faces)})


def main(argv: list[str] | None = None) -> None:
    """Serve on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--weights", default=None, help='unset: shipped; "random" or a path')
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--batch-timeout", type=float, default=0.010, help="seconds")
    parser.add_argument("--eager", action="store_true", help="do not compile the LRL")
    parser.add_argument("--torch-threads", type=int, default=0, help="0: every usable CPU")
    parser.add_argument("--no-fast-queue", action="store_true", help="LitServe's default queue")
    args = parser.parse_args(argv)
    api = RetouchAPI(
        args.weights or None,
        args.max_batch_size,
        args.batch_timeout,
        compile_lrl=not args.eager,
        torch_threads=args.torch_threads,
    )
    server = ls.LitServer(
        api,
        accelerator="cpu",
        workers_per_device=1,
        timeout=600,
        fast_queue=not args.no_fast_queue,
    )
    server.run(host="127.0.0.1", port=args.port, generate_client_file=False, log_level="warning")


if __name__ == "__main__":
    main()
