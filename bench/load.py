"""Load benchmark of the HTTP service: throughput, latency percentiles and errors per
concurrency level, against the in-process engine's throughput on the same photos (the ceiling
the serving overhead is measured against), and side by side with LitServe serving the same
engine.

    python -m bench.load --compare [--pairs 3] [--concurrency 16 64] [--weights shipped]
    python -m bench.load --spawn [--batch-sizes 8 1] [--concurrency 1 4 16 64]
    python -m bench.load --url http://host:8000 [--concurrency ...]

`--compare` starts `python -m service` and `bench.litserve_server` (batches of up to 8 within
10 ms, one CPU worker each) on free loopback ports, one server at a time, alternating A B A B
for --pairs pairs, and measures the engine ceiling (batches of 8, on a worker thread) before
the first and after the last run while no server runs. Each run records the load average
before and after it, the CPU the server's processes used, and which other heavy processes
(training, evaluation, benchmarks) were running: a run is "quiet" when there were none and
the 1-minute load average before it was below 0.5 per core.
`--spawn` starts `python -m service` once per batch size, with the engine ceiling before and
after. `--url` measures a server that is already running, as it is configured.
The photos are crops and resizes of a real portrait (matplotlib's grace_hopper.jpg), each
different, so that every request's face is parsed and retouched; a response saying it found
no face (`X-Faces: 0`) is counted apart. Each level sends --requests requests (at least one
per client) and stops early after --duration seconds. The tables are printed and everything
is written to bench/results/ as JSON (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
from datetime import datetime, timezone
from pathlib import Path

import httpx
import numpy as np

RESULTS = Path(__file__).parent / "results"
REPO = Path(__file__).resolve().parents[1]
HEAVY = ("-m model.", "-m bench.", "/bench/", "model/train")
"""Command-line fragments of other work (training, evaluation, benchmarks) that would skew the
figures when running beside; this benchmark's own processes are left out."""
OWN = ("bench.load", "bench.litserve_server", "multiprocessing")


def portraits(size: tuple[int, int], count: int = 8, quality: int = 90) -> list[bytes]:
    """`count` distinct JPEGs of `size` (h, w), each a crop of the real portrait at its own
    scale, position and side (mirrored every other one): real faces, different bodies."""
    from matplotlib import cbook
    from PIL import Image

    h, w = size
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    source = Image.open(path).convert("RGB")
    # At least large enough to hold the crop, then 6% larger per photo.
    base = max(w / source.width, h / source.height, 1.0)
    images = []
    for i in range(count):
        scale = base * (1.0 + 0.06 * i)
        photo = source.resize(
            (round(source.width * scale), round(source.height * scale)), Image.Resampling.LANCZOS
        )
        if i % 2:
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x0 = min(max(0, (photo.width - w) // 2 + 8 * (i % 3 - 1)), photo.width - w)
        y0 = min(photo.height - h, round(photo.height * 0.03) + 12 * i)
        out = io.BytesIO()
        photo.crop((x0, y0, x0 + w, y0 + h)).save(out, format="JPEG", quality=quality)
        images.append(out.getvalue())
    return images


@dataclass
class LevelResult:
    """One concurrency level against one server."""

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
    faceless: int = 0
    """Successful answers that said no face was found (X-Faces: 0): not a real load."""
    mean_batch: float | None = None
    """Images per model call during the level, from abpn-serve's abpn_batch_size."""
    server_cores: float | None = None
    """CPU seconds of the server's processes per second of the level: cores kept busy."""
    error_kinds: dict[str, int] = field(default_factory=dict)


async def _batch_totals(client: httpx.AsyncClient) -> tuple[float, float] | None:
    """(images, model calls) so far, summed over devices, from abpn-serve's /metrics; None
    for a server without them."""
    from prometheus_client.parser import text_string_to_metric_families

    response = await client.get("/metrics")
    if response.status_code != 200:
        return None
    images = calls = 0.0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "abpn_batch_size_sum":
                images += sample.value
            elif sample.name == "abpn_batch_size_count":
                calls += sample.value
    return images, calls


def _percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else float("nan")


class CpuMeter:
    """CPU time of a process and all its descendants (psutil)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def seconds(self) -> float | None:
        """User + system CPU seconds so far, or None without a process to follow."""
        if self.pid is None:
            return None
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return None
        total = 0.0
        for proc in procs:
            try:
                times = proc.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total


async def run_level(
    url: str,
    path: str,
    label: str,
    images: list[bytes],
    concurrency: int,
    requests: int,
    duration: float,
    cpu: CpuMeter | None = None,
) -> LevelResult:
    """`concurrency` clients posting photos back to back to `path` until `requests` were sent
    or `duration` seconds passed."""
    latencies: list[float] = []
    error_kinds: dict[str, int] = {}
    faceless = issued = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    jpeg = {"content-type": "image/jpeg"}
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        batches_before = await _batch_totals(client)
        cpu_before = cpu.seconds() if cpu else None
        started = time.perf_counter()
        stop_at = started + duration

        async def worker() -> None:
            nonlocal issued, faceless
            while issued < requests and time.perf_counter() < stop_at:
                body = images[issued % len(images)]
                issued += 1
                t0 = time.perf_counter()
                try:
                    r = await client.post(path, content=body, headers=jpeg)
                    kind = None if r.status_code == 200 else str(r.status_code)
                except httpx.HTTPError as exc:
                    kind = type(exc).__name__
                if kind is None:
                    latencies.append(time.perf_counter() - t0)
                    faceless += r.headers.get("x-faces") == "0"
                else:
                    error_kinds[kind] = error_kinds.get(kind, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        cpu_after = cpu.seconds() if cpu else None
        batches_after = await _batch_totals(client)
    ok = len(latencies)
    mean_batch = None
    if batches_before and batches_after and batches_after[1] > batches_before[1]:
        images_run = batches_after[0] - batches_before[0]
        mean_batch = round(images_run / (batches_after[1] - batches_before[1]), 2)
    cores = None
    if cpu_before is not None and cpu_after is not None:
        cores = round((cpu_after - cpu_before) / seconds, 2)
    return LevelResult(
        label=label,
        concurrency=concurrency,
        requests=issued,
        ok=ok,
        errors=issued - ok,
        seconds=round(seconds, 3),
        throughput=round(ok / seconds, 3),
        p50_ms=_percentile(latencies, 50),
        p90_ms=_percentile(latencies, 90),
        p99_ms=_percentile(latencies, 99),
        faceless=faceless,
        mean_batch=mean_batch,
        server_cores=cores,
        error_kinds=error_kinds,
    )


@dataclass
class Target:
    """Where the load goes: the server's address, its retouch path and, when known, its main
    process (for the CPU it uses)."""

    url: str
    path: str = "/v1/retouch"
    pid: int | None = None


async def sweep(
    target: Target, label: str, images: list[bytes], args: argparse.Namespace
) -> list[LevelResult]:
    """Warm up, then every concurrency level in turn, printing each row as it completes."""
    cpu = CpuMeter(target.pid)
    url, path = target.url, target.path
    await run_level(url, path, label, images, 2, 4, args.duration)
    rows = []
    for c in args.concurrency:
        row = await run_level(
            url, path, label, images, c, max(args.requests, c), args.duration, cpu
        )
        print(_format_row(row), flush=True)
        rows.append(row)
    return rows


def engine_ceiling(
    size: tuple[int, int], batch_size: int, weights: str | None, count: int, duration: float
) -> dict:
    """Images per second of RetouchEngine.retouch_batch alone on `portraits(size)` (decoded
    inputs, faces parsed inside it as it does by default, no HTTP, no codecs), in batches of
    `batch_size`, on the CPU. Like the servers (and as the engine asks), it runs on a worker
    thread: on a busy 2-core machine the same loop on the main thread was measured up to 4x
    slower (OpenMP contention), which would flatter the servers. Runs in a child process so
    that nothing of it (threads, memory) stays in the load generator."""
    code = (
        "import json, sys; from bench.load import _engine_ceiling; "
        "print(json.dumps(_engine_ceiling(*json.loads(sys.argv[1]))))"
    )
    argv = json.dumps([list(size), batch_size, weights, count, duration])
    out = subprocess.run(
        [sys.executable, "-c", code, argv], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _engine_ceiling(
    size: list[int], batch_size: int, weights: str | None, count: int, duration: float
) -> dict:
    from model.engine import RetouchEngine
    from model.photo import decode
    from model.weights import load_model

    engine = RetouchEngine(load_model(weights).model, "cpu")
    pixels = [decode(data).rgb for data in portraits((size[0], size[1]))]

    def measure() -> dict:
        engine.warmup()
        engine.retouch_batch(pixels[:batch_size])  # first call at this size: untimed
        done, faces, started = 0, 0, time.perf_counter()
        while done < count and time.perf_counter() - started < duration:
            batch = [pixels[(done + i) % len(pixels)] for i in range(batch_size)]
            faces += sum(r.faces > 0 for r in engine.retouch_batch(batch))
            done += batch_size
        seconds = time.perf_counter() - started
        return {
            "batch_size": batch_size,
            "images": done,
            "with_faces": faces,
            "seconds": round(seconds, 3),
            "throughput": round(done / seconds, 3),
        }

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(measure).result()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A server process on a free loopback port, in a process group of its own so that
    stopping it stops every process it started."""

    path = "/v1/retouch"
    ready_path = "/readyz"

    def __init__(self, name: str, argv: list[str], env: dict[str, str], port: int) -> None:
        self.name = name
        self.url = f"http://127.0.0.1:{port}"
        self.log = RESULTS / f"server-{name}-{port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                argv, cwd=REPO, env=env, stdout=out, stderr=out, start_new_session=True
            )

    @property
    def target(self) -> Target:
        """The load's target: this server."""
        return Target(self.url, self.path, self.proc.pid)

    def wait_ready(self, timeout: float = 300.0) -> None:
        """Block until the readiness path answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: see {self.log}")
            try:
                if httpx.get(self.url + self.ready_path, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"server not ready in {timeout}s: see {self.log}")

    def stop(self) -> None:
        """SIGTERM to the group and wait (abpn-serve drains), then SIGKILL what is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        time.sleep(1.0)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)


def service_server(settings: dict[str, str]) -> Server:
    """`python -m service` with ABPN_* overrides."""
    port = _free_port()
    env = {**os.environ, "ABPN_HOST": "127.0.0.1", "ABPN_PORT": str(port)}
    env.update({f"ABPN_{k.upper()}": v for k, v in settings.items()})
    return Server("abpn", [sys.executable, "-m", "service"], env, port)


def litserve_server(weights: str, batch_size: int, batch_wait_ms: float) -> Server:
    """bench.litserve_server (LitServe over the same engine)."""
    port = _free_port()
    argv = [sys.executable, "-m", "bench.litserve_server", "--port", str(port)]
    argv += ["--weights", weights, "--max-batch-size", str(batch_size)]
    argv += ["--batch-timeout", str(batch_wait_ms / 1000.0)]
    server = Server("litserve", argv, dict(os.environ), port)
    server.path, server.ready_path = "/predict", "/health"
    return server


def machine_state() -> dict:
    """The load average and the other heavy processes running now."""
    import psutil

    others = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(proc.info["cmdline"] or [])
        mine = proc.info["pid"] == os.getpid() or any(o in cmd for o in OWN)
        if not mine and any(h in cmd for h in HEAVY):
            others.append(cmd[:120])
    return {"loadavg": [round(v, 2) for v in os.getloadavg()], "others": others}


def is_quiet(before: dict, after: dict) -> bool:
    """No other heavy process around the run and an idle machine before it."""
    cores = os.cpu_count() or 1
    return not before["others"] and not after["others"] and before["loadavg"][0] < 0.5 * cores


HEADER = (
    f"{'configuration':<22} {'conc':>5} {'reqs':>5} {'ok':>5} {'err':>4} {'nofc':>4} "
    f"{'img/s':>7} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'batch':>6} {'cores':>6}"
)


def _format_row(r: LevelResult) -> str:
    def opt(v: float | None) -> str:
        return "-" if v is None else f"{v}"

    return (
        f"{r.label:<22} {r.concurrency:>5} {r.requests:>5} {r.ok:>5} {r.errors:>4} "
        f"{r.faceless:>4} {r.throughput:>7.2f} {r.p50_ms:>8.1f} {r.p90_ms:>8.1f} "
        f"{r.p99_ms:>8.1f} {opt(r.mean_batch):>6} {opt(r.server_cores):>6}"
    )


def _parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return h, w


def _service_settings(weights: str, batch_size: int, args: argparse.Namespace) -> dict[str, str]:
    return {
        "weights": weights,
        "devices": "cpu",
        "max_batch_size": str(batch_size),
        "max_batch_wait_ms": str(args.batch_wait_ms),
        "max_queue": str(max(64, 2 * max(args.concurrency))),
        # Saturation is measured as throughput: no request may hit its deadline.
        "request_timeout_s": "600",
        "log_level": "warning",
    }


def _ceiling(batch_size: int, weights: str, args: argparse.Namespace) -> dict:
    result = engine_ceiling(args.size, batch_size, weights, args.engine_images, args.duration)
    print(
        f"{'engine batch=' + str(batch_size):<22} {'':>5} {result['images']:>5} {'':>5} {'':>4} "
        f"{'':>4} {result['throughput']:>7.2f}",
        flush=True,
    )
    return result


def compare(images: list[bytes], weights: str, args: argparse.Namespace) -> dict:
    """abpn-serve (A) and LitServe (B), one at a time, A B A B, between two engine ceilings."""
    before = _ceiling(args.batch_sizes[0], weights, args)
    runs = []
    for pair in range(args.pairs):
        for name in ("abpn-serve", "litserve"):
            state_before = machine_state()
            if name == "abpn-serve":
                server = service_server(_service_settings(weights, args.batch_sizes[0], args))
            else:
                server = litserve_server(weights, args.batch_sizes[0], args.batch_wait_ms)
            try:
                server.wait_ready()
                rows = asyncio.run(sweep(server.target, f"{name} #{pair + 1}", images, args))
            finally:
                server.stop()
            state_after = machine_state()
            runs.append(
                {
                    "pair": pair + 1,
                    "server": name,
                    "levels": [asdict(r) for r in rows],
                    "before": state_before,
                    "after": state_after,
                    "quiet": is_quiet(state_before, state_after),
                }
            )
    after = _ceiling(args.batch_sizes[0], weights, args)
    ceiling = round((before["throughput"] + after["throughput"]) / 2, 3)
    summary = summarise(runs, args.concurrency, ceiling)
    print_summary(summary, before, after)
    return {
        "engine": {"before": before, "after": after, "mean": ceiling},
        "runs": runs,
        "summary": summary,
    }


def summarise(runs: list[dict], levels: list[int], ceiling: float) -> dict:
    """Per level: each pair's images/s and p99 for both, their ratio, and the means."""
    out: dict = {}
    for c in levels:
        pairs = []
        for pair in sorted({r["pair"] for r in runs}):
            row = {}
            for r in runs:
                if r["pair"] == pair:
                    level = next(x for x in r["levels"] if x["concurrency"] == c)
                    row[r["server"]] = {
                        "throughput": level["throughput"],
                        "p99_ms": level["p99_ms"],
                        "cores": level["server_cores"],
                        "errors": level["errors"],
                        "faceless": level["faceless"],
                        "quiet": r["quiet"],
                    }
            a, b = row["abpn-serve"], row["litserve"]
            row["ratio"] = round(a["throughput"] / b["throughput"], 3)
            row["p99_ratio"] = round(a["p99_ms"] / b["p99_ms"], 3)
            pairs.append({"pair": pair, **row})
        out[str(c)] = {
            "pairs": pairs,
            "ratio_mean": round(float(np.mean([p["ratio"] for p in pairs])), 3),
            "p99_ratio_mean": round(float(np.mean([p["p99_ratio"] for p in pairs])), 3),
            "abpn_vs_engine": round(
                float(np.mean([p["abpn-serve"]["throughput"] for p in pairs])) / ceiling, 3
            ),
            "litserve_vs_engine": round(
                float(np.mean([p["litserve"]["throughput"] for p in pairs])) / ceiling, 3
            ),
        }
    every = [p["ratio"] for level in out.values() for p in level["pairs"]]
    out["all"] = {
        "ratio_mean": round(float(np.mean(every)), 3),
        "abpn_faster": sum(r > 1.0 for r in every),
        "paired_runs": len(every),
    }
    return out


def print_summary(summary: dict, before: dict, after: dict) -> None:
    """The side-by-side table."""
    print(f"\nengine ceiling: {before['throughput']:.2f} before, {after['throughput']:.2f} after")
    print(
        f"{'clients':>7} {'pair':>4} {'abpn img/s':>10} {'lit img/s':>9} {'ratio':>6} "
        f"{'abpn p99':>9} {'lit p99':>9} {'abpn cores':>10} {'lit cores':>9} {'quiet':>6}"
    )
    for c, level in summary.items():
        if c == "all":
            continue
        for p in level["pairs"]:
            a, b = p["abpn-serve"], p["litserve"]
            quiet = "yes" if a["quiet"] and b["quiet"] else "no"
            print(
                f"{c:>7} {p['pair']:>4} {a['throughput']:>10.2f} {b['throughput']:>9.2f} "
                f"{p['ratio']:>6.2f} {a['p99_ms']:>9.0f} {b['p99_ms']:>9.0f} "
                f"{a['cores'] or 0:>10.2f} {b['cores'] or 0:>9.2f} {quiet:>6}"
            )
        print(
            f"{c:>7} mean ratio {level['ratio_mean']:.2f}, p99 ratio {level['p99_ratio_mean']:.2f};"
            f" vs engine: abpn-serve {level['abpn_vs_engine']:.0%},"
            f" litserve {level['litserve_vs_engine']:.0%}"
        )
    total = summary["all"]
    print(
        f"all: abpn-serve / litserve = {total['ratio_mean']:.2f} on average, faster in "
        f"{total['abpn_faster']} of {total['paired_runs']} paired runs"
    )


def spawn_sweep(images: list[bytes], weights: str, args: argparse.Namespace) -> dict:
    """abpn-serve once per batch size, between two engine ceilings at that size."""
    rows: list[LevelResult] = []
    ceilings, summary = [], []
    for batch_size in args.batch_sizes:
        # Right before and right after the service, while no server runs, and averaged: on a
        # shared machine the load of others drifts.
        before = _ceiling(batch_size, weights, args)
        server = service_server(_service_settings(weights, batch_size, args))
        label = f"service batch={batch_size}"
        try:
            server.wait_ready()
            level_rows = asyncio.run(sweep(server.target, label, images, args))
        finally:
            server.stop()
        rows += level_rows
        after = _ceiling(batch_size, weights, args)
        ceiling = round((before["throughput"] + after["throughput"]) / 2, 3)
        ceilings.append({"batch_size": batch_size, "throughput": ceiling, "before": before})
        ceilings[-1]["after"] = after
        # Saturation: the highest concurrency, where the queue is never empty.
        saturated = max(level_rows, key=lambda r: r.concurrency)
        ratio = saturated.throughput / ceiling
        summary.append(
            {
                "batch_size": batch_size,
                "concurrency": saturated.concurrency,
                "service": saturated.throughput,
                "engine": ceiling,
                "service_vs_engine": round(ratio, 3),
            }
        )
        print(f"batch={batch_size}: service at saturation = {ratio:.0%} of the engine")
    return {"levels": [asdict(r) for r in rows], "engine": ceilings, "summary": summary}


def main(argv: list[str] | None = None) -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="measure this running server")
    target.add_argument("--spawn", action="store_true", help="start servers for each batch size")
    target.add_argument("--compare", action="store_true", help="abpn-serve beside LitServe")
    parser.add_argument("--concurrency", type=int, nargs="+", default=None)
    parser.add_argument("--requests", type=int, default=64, help="at most, per level")
    parser.add_argument("--duration", type=float, default=60.0, help="seconds, per level")
    parser.add_argument("--size", type=_parse_size, default=(384, 512), help="WxH, e.g. 512x384")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 1])
    parser.add_argument("--batch-wait-ms", type=float, default=10.0)
    parser.add_argument("--pairs", type=int, default=3, help="--compare: A B pairs")
    parser.add_argument("--engine-images", type=int, default=64, help="per engine ceiling")
    parser.add_argument(
        "--weights",
        default=None,
        help='"random", "shipped" or a .safetensors path (default: shipped for --compare, '
        "random for --spawn)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.concurrency is None:
        args.concurrency = [16, 64] if args.compare else [1, 4, 16, 64]
    if args.compare:
        args.batch_sizes = args.batch_sizes[:1]
    args.weights = args.weights or ("shipped" if args.compare else "random")
    # The service reads an empty ABPN_WEIGHTS, and load_model an empty spec, as "shipped".
    weights = "" if args.weights == "shipped" else args.weights
    mode = "compare" if args.compare else "spawn" if args.spawn else "url"
    out = args.out or RESULTS / ("compare.json" if args.compare else "load.json")

    RESULTS.mkdir(parents=True, exist_ok=True)
    images = portraits(args.size)
    h, w = args.size
    print(f"{len(images)} JPEG portraits of {w}x{h}; weights: {args.weights}; mode: {mode}")
    print(HEADER)
    report: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "image_size": {"width": w, "height": h, "format": "jpeg", "count": len(images)},
        "weights": args.weights,
        "concurrency": args.concurrency,
        "machine_before": machine_state(),
    }
    if args.compare:
        report.update(compare(images, weights, args))
    elif args.spawn:
        report.update(spawn_sweep(images, weights, args))
    else:
        target = Target(args.url.rstrip("/"))
        report["levels"] = [asdict(r) for r in asyncio.run(sweep(target, "server", images, args))]
    report["machine_after"] = machine_state()
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
