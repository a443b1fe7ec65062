"""Load benchmark of the HTTP service: throughput, latency percentiles and errors per
concurrency level, against the in-process engine's throughput on the same photos (the ceiling
the serving overhead is measured against), and side by side with LitServe serving the same
engine.

    python -m bench.load --compare [--pairs 2] [--abpn-variant face_workers=1,torch_threads=1]
    python -m bench.load --spawn [--batch-sizes 8 1] [--concurrency 1 4 16 64]
    python -m bench.load --url http://host:8000 [--concurrency ...]

`--compare` starts `python -m service` (as configured by default: threads and face workers
from the usable CPUs, the LRL compiled) and `bench.litserve_server` (the same engine as the
service configures it: compiled LRL, torch on every usable CPU; batches of up to 8 within
10 ms, one CPU worker) on free loopback ports, one server at a time, alternating A B A B for
--pairs pairs (each --abpn-variant, abpn-serve with those ABPN_* settings, joins the rotation),
and sends every load of COMPARE_CASES to each: 512x384 portraits from 16 clients, 4K group
shots of 3 faces from 8, and 12 MP photos of 2 faces one at a time. The in-process engine
(compiled LRL, on a worker thread) is measured on the same photos at every torch thread count
from 1 to the usable CPUs, before the first and after the last run while no server runs; the
best count is the ceiling. One table gives every run's throughput, p50 and p99 and the CPU
each of the server's processes used, then the ratios. Each run records the load average before
and after it and which other heavy processes (training, evaluation, benchmarks) were running:
a run is "quiet" when there were none and the 1-minute load average before it was below 0.5
per core.
`--spawn` starts `python -m service` once per batch size, with the engine ceiling before and
after. `--url` measures a server that is already running, as it is configured.
The photos are crops and resizes of a real portrait (matplotlib's grace_hopper.jpg), each
different, so that every request's face is parsed and retouched; a response saying it found
no face (`X-Faces: 0`) is counted apart. Each level sends its requests (at least one per
client) and stops early after --duration seconds. The tables are printed and everything is
written to bench/results/ as JSON (or --out).
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
HEAVY = (
    "-m model.",
    "-m bench.",
    "/bench/",
    "model/train",
    "-m training.",
    "-m evaluation.",
    "pytest",
)
"""Command-line fragments of other work (training, evaluation, benchmarks) that would skew the
figures when running beside; this benchmark's own processes are left out."""
OWN = ("bench.load", "bench.litserve_server", "multiprocessing")


def _portrait(size: tuple[int, int], i: int):
    """Photo `i` of `portraits`: a crop of the real portrait of `size` (h, w) at its own scale,
    position and side."""
    from matplotlib import cbook
    from PIL import Image

    h, w = size
    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    source = Image.open(path).convert("RGB")
    # At least large enough to hold the crop, then 6% larger per photo.
    base = max(w / source.width, h / source.height, 1.0)
    scale = base * (1.0 + 0.06 * (i % 8))
    photo = source.resize(
        (round(source.width * scale), round(source.height * scale)), Image.Resampling.LANCZOS
    )
    if i % 2:
        photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    x0 = min(max(0, (photo.width - w) // 2 + 8 * (i % 3 - 1)), photo.width - w)
    y0 = min(photo.height - h, round(photo.height * 0.03) + 12 * (i % 8))
    return photo.crop((x0, y0, x0 + w, y0 + h))


def _jpeg(image, quality: int) -> bytes:
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def portraits(size: tuple[int, int], count: int = 8, quality: int = 90) -> list[bytes]:
    """`count` distinct JPEGs of `size` (h, w), each a crop of the real portrait at its own
    scale, position and side (mirrored every other one): real faces, different bodies."""
    return [_jpeg(_portrait(size, i), quality) for i in range(count)]


def group_photos(
    size: tuple[int, int], faces: int, count: int = 4, quality: int = 90
) -> list[bytes]:
    """`count` distinct JPEGs of `size` (h, w), each `faces` different crops of the portrait
    side by side (as `portraits` cuts them): a group shot, every face parsed and retouched."""
    from PIL import Image

    h, w = size
    slot = w // faces
    photos = []
    for i in range(count):
        canvas = Image.new("RGB", (w, h))
        for j in range(faces):
            canvas.paste(_portrait((h, slot), i * faces + j), (j * slot, 0))
        photos.append(_jpeg(canvas, quality))
    return photos


def photos(size: tuple[int, int], faces: int) -> list[bytes]:
    """The load's JPEGs: single portraits, or group shots of `faces` faces."""
    return portraits(size) if faces == 1 else group_photos(size, faces)


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
    process_cores: list[tuple[str, float]] = field(default_factory=list)
    """The same per process, (role, cores), busiest first: "main" is the server's process."""
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
    """CPU time of a process and all its descendants (psutil), in all and per process."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid

    def per_process(self) -> dict[int, tuple[str, float]]:
        """pid -> (role, user + system CPU seconds so far) of the process and its descendants;
        empty without a process to follow."""
        if self.pid is None:
            return {}
        import psutil

        try:
            root = psutil.Process(self.pid)
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return {}
        out = {}
        for proc in procs:
            try:
                times = proc.cpu_times()
                role = "main" if proc.pid == self.pid else _role(proc.cmdline())
            except psutil.NoSuchProcess:
                continue
            out[proc.pid] = (role, times.user + times.system)
        return out

    def seconds(self) -> float | None:
        """User + system CPU seconds so far of all of them, or None without a process."""
        procs = self.per_process()
        return sum(s for _, s in procs.values()) if procs else None


def _role(cmdline: list[str]) -> str:
    """A short name for a server's child process, from its command line."""
    cmd = " ".join(cmdline)
    for marker, role in (
        ("resource_tracker", "tracker"),
        ("compile_worker", "compiler"),
        ("spawn_main", "spawned"),
        ("forkserver", "forkserver"),
    ):
        if marker in cmd:
            return role
    return "child"


def cores_per_process(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float
) -> list[tuple[str, float]]:
    """(role, cores) of every process that used at least 0.01 cores over `seconds`, busiest
    first."""
    rows = []
    for pid, (role, total) in after.items():
        cores = (total - before.get(pid, (role, 0.0))[1]) / seconds
        if cores >= 0.01:
            rows.append((role, round(cores, 2)))
    return sorted(rows, key=lambda r: -r[1])


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
        cpu_before = cpu.per_process() if cpu else {}
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
        cpu_after = cpu.per_process() if cpu else {}
        batches_after = await _batch_totals(client)
    ok = len(latencies)
    mean_batch = None
    if batches_before and batches_after and batches_after[1] > batches_before[1]:
        images_run = batches_after[0] - batches_before[0]
        mean_batch = round(images_run / (batches_after[1] - batches_before[1]), 2)
    per_process = cores_per_process(cpu_before, cpu_after, seconds)
    cores = round(sum(c for _, c in per_process), 2) if cpu_after else None
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
        process_cores=per_process,
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


@dataclass(frozen=True)
class Case:
    """One load: photos of `size` (h, w) with `faces` faces each, from `clients` clients back
    to back, `requests` in all (at most)."""

    name: str
    size: tuple[int, int]
    faces: int
    clients: int
    requests: int

    @property
    def batch_size(self) -> int:
        """What the engine ceiling runs in: batches of 8, or one photo for a lone client."""
        return 1 if self.clients == 1 else 8


COMPARE_CASES = (
    Case("512x384", (384, 512), 1, 16, 64),
    Case("4K, 3 faces", (2160, 3840), 3, 8, 24),
    Case("12 MP alone", (3000, 4000), 2, 1, 6),
)
"""--compare's loads: the issue's small portraits, a group shot at 4K, and one 12 MP photo at a
time (the latency of a request alone against one engine call)."""


def engine_ceiling(
    cases: list[Case], weights: str | None, threads: int, compile_lrl: bool, duration: float
) -> list[dict]:
    """Per case, RetouchEngine.retouch_batch alone on the case's photos (decoded inputs, faces
    parsed inside it as it does by default, no HTTP, no codecs) in batches of
    `case.batch_size`, with `threads` torch threads and the LRL compiled or not: images per
    second and the median seconds per call. Like the servers (and as the engine asks), it runs
    on a worker thread: on a busy 2-core machine the same loop on the main thread was measured
    up to 4x slower (OpenMP contention), which would flatter the servers. Runs in a child
    process so that nothing of it (threads, memory) stays in the load generator."""
    code = (
        "import json, sys; from bench.load import _engine_ceiling; "
        "print(json.dumps(_engine_ceiling(*json.loads(sys.argv[1]))))"
    )
    argv = json.dumps([[asdict(c) for c in cases], weights, threads, compile_lrl, duration])
    out = subprocess.run(
        [sys.executable, "-c", code, argv], cwd=REPO, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _engine_ceiling(
    cases: list[dict], weights: str | None, threads: int, compile_lrl: bool, duration: float
) -> list[dict]:
    import torch

    from model.engine import RetouchEngine
    from model.photo import decode
    from model.weights import load_model

    torch.set_num_threads(threads)
    engine = RetouchEngine(load_model(weights).model, "cpu", compile_lrl=compile_lrl)

    def measure(case: Case) -> dict:
        pixels = [decode(data).rgb for data in photos(case.size, case.faces)]
        batch_size = case.batch_size
        engine.retouch_batch(pixels[:batch_size])  # first call at this size: untimed
        done, faces, calls, started = 0, 0, [], time.perf_counter()
        while done < case.requests and time.perf_counter() - started < duration:
            batch = [pixels[(done + i) % len(pixels)] for i in range(batch_size)]
            t0 = time.perf_counter()
            faces += sum(r.faces for r in engine.retouch_batch(batch))
            calls.append(time.perf_counter() - t0)
            done += batch_size
        seconds = time.perf_counter() - started
        return {
            "case": case.name,
            "threads": threads,
            "compiled_lrl": engine.compiled_lrl is not None,
            "batch_size": batch_size,
            "images": done,
            "faces_per_image": round(faces / done, 2),
            "seconds": round(seconds, 3),
            "throughput": round(done / seconds, 3),
            "call_p50_ms": round(float(np.median(calls)) * 1000, 1),
        }

    def run_all() -> list[dict]:
        engine.warmup()
        return [measure(Case(**{**c, "size": tuple(c["size"])})) for c in cases]

    with ThreadPoolExecutor(1) as thread:
        return thread.submit(run_all).result()


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
    """bench.litserve_server: LitServe over the same engine, as the service configures it
    (compiled LRL, torch on every usable CPU, ZeroMQ queue)."""
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
    """--spawn's engine ceiling: the service's photos in batches of `batch_size`, the engine
    as the service runs it (compiled LRL, torch on the usable CPUs)."""
    from service.cpus import available_cpus

    h, w = args.size
    clients = 1 if batch_size == 1 else batch_size
    case = Case(f"{w}x{h}", args.size, 1, clients, args.engine_images)
    result = engine_ceiling([case], weights, available_cpus(), True, args.duration)[0]
    print(
        f"{'engine batch=' + str(result['batch_size']):<22} {'':>5} {result['images']:>5} "
        f"{'':>5} {'':>4} {'':>4} {result['throughput']:>7.2f}",
        flush=True,
    )
    return result


def _parse_variant(text: str) -> dict[str, str]:
    """ "face_workers=1,torch_threads=1" -> ABPN_* overrides for an extra abpn-serve run."""
    pairs = (item.split("=", 1) for item in text.split(",") if item)
    return {key.strip(): value.strip() for key, value in pairs}


async def run_cases(
    target: Target, label: str, loads: dict[str, list[bytes]], args: argparse.Namespace
) -> list[LevelResult]:
    """Every case against one server: two untimed requests of each first, then the level."""
    cpu = CpuMeter(target.pid)
    rows = []
    for case in args.cases:
        images = loads[case.name]
        await run_level(target.url, target.path, label, images, 2, 2, args.duration)
        row = await run_level(
            target.url,
            target.path,
            f"{label} {case.name}",
            images,
            case.clients,
            case.requests,
            args.duration,
            cpu,
        )
        print(_format_row(row), flush=True)
        rows.append(row)
    return rows


def compare(weights: str, args: argparse.Namespace) -> dict:
    """abpn-serve (A, and any --abpn-variant) and LitServe (B), one at a time, A B A B, every
    case against each, between two rounds of engine ceilings at every torch thread count."""
    from service.cpus import available_cpus

    loads = {case.name: photos(case.size, case.faces) for case in args.cases}
    threads = list(range(1, available_cpus() + 1))
    settings = _service_settings(weights, args.batch_sizes[0], args)
    servers: list[tuple[str, dict[str, str] | None]] = [
        ("abpn-serve", settings),
        ("litserve", None),
    ]
    for variant in args.abpn_variant:
        label = "abpn-serve " + ",".join(f"{k}={v}" for k, v in variant.items())
        servers.append((label, {**settings, **variant}))

    def ceilings() -> list[dict]:
        rows = []
        for n in threads:
            rows += engine_ceiling(args.cases, weights, n, True, args.duration)
        for row in rows:
            print(
                f"engine {row['case']:<12} threads={row['threads']} batch={row['batch_size']}: "
                f"{row['throughput']:.2f} img/s, {row['call_p50_ms']:.0f} ms per call, "
                f"{row['faces_per_image']} faces per image",
                flush=True,
            )
        return rows

    before = ceilings()
    runs = []
    for pair in range(args.pairs):
        for name, overrides in servers:
            state_before = machine_state()
            if overrides is None:
                server = litserve_server(weights, args.batch_sizes[0], args.batch_wait_ms)
            else:
                server = service_server(overrides)
            try:
                server.wait_ready()
                rows = asyncio.run(run_cases(server.target, f"{name} #{pair + 1}", loads, args))
            finally:
                server.stop()
            state_after = machine_state()
            levels = [{"case": c.name, **asdict(r)} for c, r in zip(args.cases, rows, strict=True)]
            runs.append(
                {
                    "pair": pair + 1,
                    "server": name,
                    "levels": levels,
                    "before": state_before,
                    "after": state_after,
                    "quiet": is_quiet(state_before, state_after),
                }
            )
    after = ceilings()
    engine = best_engine(before, after)
    summary = summarise(runs, args.cases, engine)
    print_summary(runs, summary, engine)
    return {
        "engine": {"before": before, "after": after, "best": engine},
        "runs": runs,
        "summary": summary,
    }


def best_engine(before: list[dict], after: list[dict]) -> dict[str, dict]:
    """Per case, the engine at its best thread count: the highest throughput averaged over the
    two rounds, with its median call time."""
    best: dict[str, dict] = {}
    for first, second in zip(before, after, strict=True):
        mean = {
            "threads": first["threads"],
            "throughput": round((first["throughput"] + second["throughput"]) / 2, 3),
            "call_p50_ms": round((first["call_p50_ms"] + second["call_p50_ms"]) / 2, 1),
            "rounds": [first["throughput"], second["throughput"]],
        }
        kept = best.get(first["case"])
        if kept is None or mean["throughput"] > kept["throughput"]:
            best[first["case"]] = mean
    return best


def summarise(runs: list[dict], cases: list[Case], engine: dict[str, dict]) -> dict:
    """Per case and server: the means over pairs, and the ratios the targets are stated in
    (each pair against its LitServe run, the mean against the best engine)."""
    out: dict = {}
    for case in cases:
        per_server: dict[str, list[dict]] = {}
        for run in runs:
            level = next(x for x in run["levels"] if x["case"] == case.name)
            per_server.setdefault(run["server"], []).append(level)
        lit = per_server["litserve"]
        best = engine[case.name]
        entry: dict = {}
        for name, levels in per_server.items():
            throughput = float(np.mean([lv["throughput"] for lv in levels]))
            row: dict = {
                "throughput": round(throughput, 3),
                "p50_ms": round(float(np.mean([lv["p50_ms"] for lv in levels])), 1),
                "p99_ms": round(float(np.mean([lv["p99_ms"] for lv in levels])), 1),
                "vs_engine": round(throughput / best["throughput"], 3),
            }
            if name != "litserve":
                pairs = list(zip(levels, lit, strict=True))
                row["vs_litserve"] = [round(a["throughput"] / b["throughput"], 3) for a, b in pairs]
                row["p99_vs_litserve"] = [round(a["p99_ms"] / b["p99_ms"], 3) for a, b in pairs]
            if case.clients == 1:
                row["p50_vs_engine_call"] = round(row["p50_ms"] / best["call_p50_ms"], 3)
            entry[name] = row
        out[case.name] = entry
    return out


TABLE = (
    f"{'case':<12} {'server':<40} {'img/s':>6} {'p50 ms':>8} {'p99 ms':>8} {'err':>4} "
    f"{'nofc':>4}  cores per process"
)


def print_summary(runs: list[dict], summary: dict, engine: dict[str, dict]) -> None:
    """The one table (every run, then the engine at its best) and the ratios."""
    print("\n" + TABLE)
    for run in runs:
        server = f"{run['server']} #{run['pair']}" + ("" if run["quiet"] else " (busy)")
        for lv in run["levels"]:
            cores = ", ".join(f"{role} {c:.2f}" for role, c in lv["process_cores"])
            print(
                f"{lv['case']:<12} {server:<40} {lv['throughput']:>6.2f} {lv['p50_ms']:>8.0f} "
                f"{lv['p99_ms']:>8.0f} {lv['errors']:>4} {lv['faceless']:>4}  {cores}"
            )
    for name, best in engine.items():
        label = f"engine, {best['threads']} torch threads (best)"
        print(f"{name:<12} {label:<40} {best['throughput']:>6.2f} {best['call_p50_ms']:>8.0f}")
    print()
    for name, entry in summary.items():
        for server, row in entry.items():
            parts = [f"{row['vs_engine']:.0%} of the engine"]
            if "vs_litserve" in row:
                parts.append("x LitServe " + " ".join(f"{r:.2f}" for r in row["vs_litserve"]))
                parts.append("p99/LitServe " + " ".join(f"{r:.2f}" for r in row["p99_vs_litserve"]))
            if "p50_vs_engine_call" in row:
                parts.append(f"alone {row['p50_vs_engine_call']:.2f}x one engine call")
            print(f"{name:<12} {server:<40} " + "; ".join(parts))


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
    parser.add_argument("--pairs", type=int, default=2, help="--compare: A B pairs")
    parser.add_argument(
        "--abpn-variant",
        type=_parse_variant,
        action="append",
        default=[],
        help="--compare: also abpn-serve with these settings, e.g. face_workers=1,torch_threads=1",
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        default=None,
        help="--compare: names of COMPARE_CASES to run (default: all)",
    )
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
        chosen = args.cases or [c.name for c in COMPARE_CASES]
        args.cases = [c for c in COMPARE_CASES if c.name in chosen]
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
        report["cases"] = [asdict(c) for c in args.cases]
        report.update(compare(weights, args))
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
