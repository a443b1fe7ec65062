"""Load benchmark of the HTTP service: throughput, latency percentiles and errors over a
concurrency sweep, with batching on and off, beside the in-process engine's throughput on the
same images (the ceiling the service's overhead is measured against).

    python -m bench.load --spawn [--batch-sizes 8 1] [--concurrency 1 4 16 64]
    python -m bench.load --url http://host:8000 [--concurrency ...]

`--spawn` starts `python -m service` on a free loopback port once per batch size (random
weights unless --weights), and runs the engine ceiling in this process while no server runs.
`--url` measures a server that is already running, as it is configured. Each concurrency level
sends --requests requests (at least one per client) and stops early after --duration seconds.
The table is printed and everything is written to bench/results/load.json (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]


def test_images(size: tuple[int, int], count: int = 8, quality: int = 90) -> list[bytes]:
    """`count` distinct JPEG photos of `size` (h, w): smooth shading, edges and grain, so that
    the codecs do realistic work."""
    from PIL import Image

    h, w = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    images = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        base = (
            130 + 50 * np.sin(y / (17 + seed))[..., None] + 40 * np.cos(x / (23 + seed))[..., None]
        )
        tint = rng.uniform(-20, 20, 3).astype(np.float32)
        pixels = np.clip(base + tint + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels).save(out, format="JPEG", quality=quality)
        images.append(out.getvalue())
    return images


@dataclass
class LevelResult:
    """One concurrency level against one server configuration."""

    label: str
    concurrency: int
    requests: int
    ok: int
    errors: int
    seconds: float
    throughput: float
    """Successful requests per second."""
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_batch: float | None = None
    """Images per model call during the level, from the server's abpn_batch_size."""
    error_kinds: dict[str, int] = field(default_factory=dict)


async def _batch_totals(client: httpx.AsyncClient) -> tuple[float, float]:
    """(images, model calls) so far, summed over devices, from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    text = (await client.get("/metrics")).text
    images = calls = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "abpn_batch_size_sum":
                images += sample.value
            elif sample.name == "abpn_batch_size_count":
                calls += sample.value
    return images, calls


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000 if values else float("nan")


async def run_level(
    url: str, label: str, images: list[bytes], concurrency: int, requests: int, duration: float
) -> LevelResult:
    """`concurrency` clients posting images back to back until `requests` were sent or
    `duration` seconds passed."""
    latencies: list[float] = []
    error_kinds: dict[str, int] = {}
    issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as client:
        images_before, calls_before = await _batch_totals(client)
        started = time.perf_counter()
        stop_at = started + duration

        async def worker() -> None:
            nonlocal issued
            while issued < requests and time.perf_counter() < stop_at:
                body = images[issued % len(images)]
                issued += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(
                        "/v1/retouch", content=body, headers={"content-type": "image/jpeg"}
                    )
                    kind = None if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                if kind is None:
                    latencies.append(time.perf_counter() - t0)
                else:
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        images_after, calls_after = await _batch_totals(client)
    ok = len(latencies)
    calls = calls_after - calls_before
    return LevelResult(
        label=label,
        concurrency=concurrency,
        requests=issued,
        ok=ok,
        errors=issued - ok,
        seconds=round(seconds, 3),
        throughput=round(ok / seconds, 3),
        p50_ms=round(_percentile(latencies, 50), 1),
        p90_ms=round(_percentile(latencies, 90), 1),
        p99_ms=round(_percentile(latencies, 99), 1),
        mean_batch=round((images_after - images_before) / calls, 2) if calls else None,
        error_kinds=error_kinds,
    )


async def sweep(url: str, label: str, images: list[bytes], args: argparse.Namespace) -> list:
    """Warm up, then every concurrency level in turn, printing each row as it completes."""
    await run_level(url, label, images, 2, 4, args.duration)
    rows = []
    for c in args.concurrency:
        row = await run_level(url, label, images, c, max(args.requests, c), args.duration)
        print(_format_row(row), flush=True)
        rows.append(row)
    return rows


def engine_ceiling(
    images: list[bytes], batch_size: int, weights: str | None, count: int, duration: float
) -> dict:
    """Images per second of RetouchEngine.retouch_batch alone (decoded inputs, no HTTP, no
    codecs), in batches of `batch_size`, on the CPU. Like the service (and as the engine asks),
    it runs on a worker thread: on a busy 2-core machine the same loop on the main thread was
    measured up to 4x slower (OpenMP contention), which would flatter the service."""
    from model.engine import RetouchEngine
    from model.photo import decode
    from model.weights import load_model

    engine = RetouchEngine(load_model(weights).model, "cpu")
    pixels = [decode(data).rgb for data in images]

    def measure() -> dict:
        engine.warmup()
        engine.retouch_batch(pixels[:batch_size])  # first call at this size: untimed
        done, started = 0, time.perf_counter()
        while done < count and time.perf_counter() - started < duration:
            engine.retouch_batch([pixels[(done + i) % len(pixels)] for i in range(batch_size)])
            done += batch_size
        seconds = time.perf_counter() - started
        return {
            "batch_size": batch_size,
            "images": done,
            "seconds": round(seconds, 3),
            "throughput": round(done / seconds, 3),
        }

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(measure).result()


class SpawnedServer:
    """`python -m service` on a free loopback port, with ABPN_* overrides."""

    def __init__(self, settings: dict[str, str]) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "ABPN_HOST": "127.0.0.1", "ABPN_PORT": str(self.port)}
        env.update({f"ABPN_{k.upper()}": v for k, v in settings.items()})
        self.log = RESULTS / f"server-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "service"], cwd=REPO, env=env, stdout=out, stderr=out
            )

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Block until /readyz answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {timeout}s: see {self.log}")

    def stop(self) -> None:
        """SIGTERM and wait for the drain."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


HEADER = (
    f"{'configuration':<22} {'conc':>5} {'reqs':>5} {'ok':>5} {'err':>4} "
    f"{'img/s':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'batch':>6}"
)


def _format_row(r: LevelResult) -> str:
    return (
        f"{r.label:<22} {r.concurrency:>5} {r.requests:>5} {r.ok:>5} {r.errors:>4} "
        f"{r.throughput:>7.2f} {r.p50_ms:>8.1f} {r.p90_ms:>8.1f} {r.p99_ms:>8.1f} "
        f"{r.mean_batch if r.mean_batch is not None else '-':>6}"
    )


def _parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="measure this running server")
    target.add_argument("--spawn", action="store_true", help="start servers for each batch size")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--requests", type=int, default=64, help="at most, per level")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds, per level")
    parser.add_argument("--size", type=_parse_size, default=(384, 512), help="WxH, e.g. 512x384")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument(
        "--weights",
        default="random",
        help='"random", "shipped" (the default weights) or a .safetensors path',
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "load.json")
    args = parser.parse_args(argv)
    # The service reads an empty ABPN_WEIGHTS, and load_model an empty spec, as "shipped".
    weights = "" if args.weights == "shipped" else args.weights

    RESULTS.mkdir(parents=True, exist_ok=True)
    images = test_images(args.size)
    h, w = args.size
    print(
        f"{len(images)} JPEG images of {w}x{h}; weights: {args.weights if args.spawn else 'server'}"
    )
    print(HEADER)
    rows: list[LevelResult] = []
    ceilings: list[dict] = []
    if args.url:
        rows += asyncio.run(sweep(args.url.rstrip("/"), "server", images, args))
    for batch_size in args.batch_sizes if args.spawn else []:
        # The ceiling is measured right before and right after the service, while no server
        # runs, and averaged: on a shared machine the load of others drifts.
        before = engine_ceiling(images, batch_size, weights, args.requests, args.duration)
        server = SpawnedServer(
            {
                "weights": weights,
                "devices": "cpu",
                "max_batch_size": str(batch_size),
                "max_batch_wait_ms": str(args.batch_wait_ms),
                "max_queue": str(max(64, 2 * max(args.concurrency))),
                # Saturation is measured as throughput: no request may hit its deadline.
                "request_timeout_s": "600",
                "log_level": "warning",
            }
        )
        try:
            server.wait_ready()
            rows += asyncio.run(sweep(server.url, f"service batch={batch_size}", images, args))
        finally:
            server.stop()
        after = engine_ceiling(images, batch_size, weights, args.requests, args.duration)
        ceiling = {
            "batch_size": batch_size,
            "throughput": round((before["throughput"] + after["throughput"]) / 2, 3),
            "before": before,
            "after": after,
        }
        ceilings.append(ceiling)
        print(
            f"{'engine batch=' + str(batch_size):<22} {'':>5} "
            f"{before['images'] + after['images']:>5} {'':>5} {'':>4} "
            f"{ceiling['throughput']:>7.2f}  (before {before['throughput']:.2f}, "
            f"after {after['throughput']:.2f})",
            flush=True,
        )
    summary = []
    for ceiling in ceilings:
        label = f"service batch={ceiling['batch_size']}"
        # Saturation: the highest concurrency, where the queue is never empty.
        saturated = max((r for r in rows if r.label == label), key=lambda r: r.concurrency)
        ratio = saturated.throughput / ceiling["throughput"]
        summary.append(
            {
                "batch_size": ceiling["batch_size"],
                "concurrency": saturated.concurrency,
                "service": saturated.throughput,
                "engine": ceiling["throughput"],
                "service_vs_engine": round(ratio, 3),
            }
        )
        print(f"batch={ceiling['batch_size']}: service at saturation = {ratio:.0%} of the engine")
    report = {
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "image_size": {"width": w, "height": h, "format": "jpeg"},
        "weights": args.weights if args.spawn else None,
        "levels": [asdict(r) for r in rows],
        "engine": ceilings,
        "summary": summary,
    }
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
