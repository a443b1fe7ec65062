"""The service as it runs by default on CPUs: the LRL compiled at start-up, malloc tuned, the
shipped weights, the same retouch as the eager engine, and nothing left behind on shutdown."""

from __future__ import annotations

import io
import json

import numpy as np
import psutil
from images import encoded, grace_hopper
from PIL import Image
from server_support import start_server

from model.engine import RetouchEngine
from model.weights import load_model


def test_compiled_service_retouches_as_the_eager_engine(tmp_path, cxx_compiler: str) -> None:
    # Twice the size, so the face crop is shrunk to the LRL's working size: the compiled path.
    hopper = grace_hopper()
    photo = np.asarray(
        Image.fromarray(hopper).resize((hopper.shape[1] * 2, hopper.shape[0] * 2), Image.BICUBIC)
    )
    # A cold Inductor cache compiles for up to a minute on a 2-core machine.
    server = start_server(tmp_path, start_timeout_s=300, compile_lrl="true", weights="")
    try:
        loaded = [
            json.loads(line)
            for line in server.log_text().splitlines()
            if '"replicas loaded"' in line
        ]
        assert loaded and loaded[0]["compiled_lrl"] == [True], server.log_text()
        assert loaded[0]["malloc_tuned"] is True, server.log_text()
        children = psutil.Process(server.proc.pid).children(recursive=True)
        r = server.client.post(
            "/v1/retouch",
            content=encoded(photo),
            headers={"content-type": "image/png"},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-faces"] == "1"
        served = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    finally:
        code = server.stop()
    assert code == 0, server.log_text()
    # Inductor's compile workers and the face workers go with the service.
    _, alive = psutil.wait_procs(children, timeout=20)
    assert not alive, alive
    reference = RetouchEngine(load_model().model).retouch(photo).image
    assert (reference != photo).any(), "the eager engine changed nothing"
    assert np.abs(served.astype(int) - reference).max() <= 1
