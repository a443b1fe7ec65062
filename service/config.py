"""Service settings, read from ABPN_* environment variables (pydantic-settings)."""

from __future__ import annotations

import subprocess
import sys
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.cpus import available_cpus

EIGHT_K_PIXELS = 7680 * 5120
"""8K at the 3:2 aspect of most cameras, about 39 MP: the default pixel limit."""


def _default_codec_threads() -> int:
    # Decoding and encoding an 8K photo both take a core for a while; more threads than CPUs
    # only add memory held by images in flight.
    return max(1, min(8, available_cpus()))


def _default_face_workers() -> int:
    # One worker per four CPUs keeps the model's cores fed. Below four, a worker takes a whole
    # CPU from torch: on 2 CPUs the service did 5.94 images/s with one worker and one torch
    # thread against 7.58 with none and two (512x384 portraits, 16 clients; docs/benchmarks.md,
    # "Serving overhead, second pass").
    return available_cpus() // 4


class Settings(BaseSettings):
    """Every setting of the service. Each field `name` is read from `ABPN_<NAME>`."""

    model_config = SettingsConfigDict(env_prefix="ABPN_", extra="ignore", frozen=True)

    host: str = "0.0.0.0"
    """Interface to listen on."""
    port: int = Field(8000, ge=0, le=65535)
    """TCP port to listen on."""
    weights: str | None = None
    """Weights to serve: unset for the shipped default, "random" for a seeded random network
    (tests), or a path to a .safetensors checkpoint."""
    devices: str = "auto"
    """Comma-separated torch devices, one model replica each ("cpu", "cuda:0,cuda:1"); "auto"
    is one replica per CUDA device, or the CPU when there is none."""
    max_batch_size: int = Field(8, ge=1, le=256)
    """Most requests one model call takes; 1 turns batching off."""
    max_batch_wait_ms: float = Field(10.0, ge=0, le=10_000)
    """Longest a batch waits for more requests after its first one arrived."""
    max_queue: int = Field(64, ge=1)
    """Most admitted requests waiting for a replica; beyond it requests get 503 at once."""
    request_timeout_s: float = Field(30.0, gt=0)
    """Deadline from arrival; a request still waiting for a replica past it gets 504. Clients
    may lower it per request with the X-Request-Timeout header."""
    shed_late: bool = True
    """Refuse at once (503 `overloaded`, with Retry-After) a request whose deadline the model
    work queued ahead of it would outlast, by the batcher's estimate
    (`service.work_estimate`), rather than let it wait for its 504."""
    batch_timeout_s: float = Field(120.0, gt=0)
    """Longest one batch may run in a replica. Past it the replica's process is killed and
    replaced, and the batch's requests get 504 `model_timeout`: a wedged model call costs
    its batch, not the service."""
    recovery_timeout_s: float = Field(300.0, gt=0)
    """Longest a replaced model replica, or the replaced face workers, may take to serve
    again (start, load, warm up; the CPU's LRL compile included: 66 s to ready with a cold
    Inductor cache, docs/benchmarks.md). Past it liveness (/healthz) fails, so that the
    orchestrator restarts the pod: the replacement cannot start (weights gone, device lost)
    or hangs."""
    read_timeout_s: float = Field(10.0, gt=0)
    """Time an upload gets before the minimum rate applies: the body must arrive within
    this plus its length over `min_upload_rate` (408 otherwise)."""
    keep_alive_s: int = Field(75, ge=1, le=3600)
    """Seconds a kept-alive connection may idle between requests before the server closes it.
    Longer than clients and load balancers keep idle connections (httpx 5 s, AWS ALB 60 s), so
    that the client closes first: a server closing first races a request being sent on it."""
    min_upload_rate: int = Field(64 * 1024, ge=1)
    """Bytes per second an upload must keep up, on average, once `read_timeout_s` is over."""
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1)
    """Largest request body accepted (413 beyond)."""
    max_pixels: int = Field(EIGHT_K_PIXELS, ge=1)
    """Largest image (width x height) accepted, read from the header before decoding (413)."""
    memory_budget_mb: int = Field(2048, ge=1)
    """MiB that requests in flight may hold at once: bodies as they arrive, then photos as
    their headers state them (12 bytes a pixel for a JPEG: 450 MiB for a 39 MP photo), before
    any pixel is decoded; beyond it 503 `memory_full` with Retry-After. The model's own working
    memory comes on top (README, "Memory")."""
    codec_threads: int = Field(default_factory=_default_codec_threads, ge=1)
    """Threads that decode and encode images (never the event loop)."""
    face_workers: int = Field(default_factory=_default_face_workers, ge=0, le=64)
    """Processes that find faces and skin ahead of the model, while it works on other photos;
    0 leaves it to the model call, on the replica's thread. Default: one per 4 CPUs the
    process may use (`service.cpus`), so none below 4."""
    faces_timeout_s: float = Field(30.0, gt=0)
    """Longest one face parse may run in a face worker. Past it the worker processes are
    killed and replaced, and the parses they held get 504 `model_timeout`: a hung worker
    costs its requests, not every request after them."""
    max_faces: int = Field(16, ge=1)
    """Most faces retouched in one photo: of a crowd, only the largest this many (by box
    area) get landmarks and the retouch; the response's X-Faces-Skipped counts the rest. A
    crowd photo otherwise holds a replica or face worker for a time that grows with it."""
    torch_threads: int = Field(0, ge=0, le=256)
    """Threads torch computes with; 0: the CPUs the process may use (`service.cpus`: affinity
    and cgroup quota, not the node's cores) less the face workers, at least 1."""
    compile_lrl: bool = True
    """CPU replicas run the LRL compiled (TorchInductor; about 1.5x faster per face), which
    makes start-up longer by the compile (docs/benchmarks.md, "Compile time"); false runs it
    eager (development, tests). CUDA replicas run eager either way."""
    tune_malloc: bool = True
    """Keep freed memory in the process for the next photo (glibc malloc settings,
    `model.allocator`) in the replica and the face workers. On 2 cores the LRL alone ran 1.5x
    faster per face crop and whole photos in the engine up to 1.36x; end to end through the
    service no change was measurable at 4K. Idle memory may stay up to 256 MB higher."""
    drain_timeout_s: float = Field(30.0, gt=0)
    """On SIGTERM, how long accepted requests get to finish before the process exits."""
    log_level: Literal["debug", "info", "warning", "error", "critical"] = "info"
    """Level of the JSON log lines."""
    api_keys: SecretStr | None = None
    """Unset: /v1/* is open. Else the accepted API keys, comma-separated, or the absolute path
    of a file holding them (one per line or comma-separated, e.g. a mounted Kubernetes
    Secret); /v1/* then needs `Authorization: Bearer <key>`. Secret, so never printed."""

    @field_validator("weights", mode="before")
    @classmethod
    def _empty_weights_is_default(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("api_keys", mode="before")
    @classmethod
    def _empty_api_keys_is_off(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_log_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("devices")
    @classmethod
    def _check_devices(cls, value: str) -> str:
        value = value.strip()
        if value == "auto":
            return value
        names = [name.strip() for name in value.split(",")]
        for name in names:
            if name != "cpu" and not (
                name.startswith("cuda") and (name == "cuda" or name[5:].isdigit())
            ):
                raise ValueError(f"unknown device {name!r}: use cpu, cuda or cuda:N")
        return ",".join(names)

    def torch_thread_count(self) -> int:
        """The torch threads to use, with 0 resolved."""
        if self.torch_threads:
            return self.torch_threads
        return max(1, available_cpus() - self.face_workers)

    def device_list(self) -> list[str]:
        """The devices to put a replica on, with "auto" resolved."""
        if self.devices != "auto":
            return self.devices.split(",")
        count = _cuda_device_count()
        return [f"cuda:{i}" for i in range(count)] if count else ["cpu"]


def _cuda_device_count() -> int:
    # Asked of torch in a child process: the HTTP process never imports torch (~180 MB and 2 s),
    # which only the replica processes need.
    probe = "import torch; print(torch.cuda.device_count())"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return int(out.stdout.strip().splitlines()[-1])
