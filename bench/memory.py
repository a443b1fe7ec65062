"""Memory benchmark of the HTTP service: a burst of concurrent 8K uploads, then 8K requests one
after another, with the resident memory of the server's processes sampled throughout.

    python -m bench.memory [--clients 48] [--size 5120x7680] [--sequential 8] [--retry]
                           [--setting memory_budget_mb=2048 ...]

It starts `python -m service` (shipped weights, default settings but for --setting) on a free
loopback port. The burst: --clients clients each send one group shot of three real faces (crops
of matplotlib's grace_hopper.jpg, as `bench.load` cuts them) at --size, all at once; every answer
is counted by status, a 503 must carry Retry-After, and a client that gets no HTTP answer at all
is "lost". With --retry a client refused 503 waits its Retry-After and sends again, for up to
--retry-for seconds. Then --sequential requests of the same photos go one at a time, and the
memory after each is recorded against the level before them.

Memory is read from /proc every 50 ms for the server's process and all its children: RSS summed
(shared pages counted once per process that maps them, as `ps` would add them up) and PSS summed
(shared pages split between their processes: what the pod's cgroup charges, near enough). The
table is printed and everything is written to bench/results/ as JSON (or --out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil

from bench.load import RESULTS, group_photos, machine_state, service_server

SAMPLE_S = 0.05


def _rollup(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in bytes, from /proc/<pid>/smaps_rollup; (0, 0) once gone."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0, 0
    values = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        if name in ("Rss", "Pss"):
            values[name] = int(rest.split()[0]) * 1024
    return values.get("Rss", 0), values.get("Pss", 0)


def tree_memory(pid: int) -> tuple[int, int]:
    """(RSS, PSS) summed over `pid` and its descendants."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    rss = pss = 0
    for proc in procs:
        r, p = _rollup(proc.pid)
        rss += r
        pss += p
    return rss, pss


class Sampler:
    """Samples `tree_memory(pid)` on a thread of its own; `peak` holds the highest seen."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._stop = threading.Event()
        self.peak_rss = self.peak_pss = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss = tree_memory(self._pid)
            self.peak_rss = max(self.peak_rss, rss)
            self.peak_pss = max(self.peak_pss, pss)
            self._stop.wait(SAMPLE_S)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Burst:
    """The outcome of the concurrent burst."""

    clients: int
    statuses: dict[str, int]
    """Final answer per client, by status ("lost": no HTTP answer)."""
    attempts: int
    refusals_without_retry_after: int
    seconds: float
    idle_rss_mb: float
    idle_pss_mb: float
    peak_rss_mb: float
    peak_pss_mb: float
    lost: int = 0
    errors: list[str] = field(default_factory=list)


async def _client(
    client: httpx.AsyncClient, url: str, body: bytes, retry_for: float, tally: dict
) -> str:
    give_up = time.monotonic() + retry_for
    while True:
        tally["attempts"] += 1
        try:
            response = await client.post(url, content=body, headers={"content-type": "image/jpeg"})
        except httpx.HTTPError as exc:
            tally["errors"].append(repr(exc))
            return "lost"
        if response.status_code != 503:
            return str(response.status_code)
        retry_after = response.headers.get("retry-after")
        if retry_after is None:
            tally["no_retry_after"] += 1
            return "503"
        if time.monotonic() + float(retry_after) > give_up:
            return "503"
        await asyncio.sleep(float(retry_after))


async def burst(url: str, pid: int, bodies: list[bytes], clients: int, retry_for: float) -> Burst:
    """`clients` uploads at once (each retrying 503s for `retry_for` seconds)."""
    idle_rss, idle_pss = tree_memory(pid)
    tally: dict = {"attempts": 0, "no_retry_after": 0, "errors": []}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    started = time.monotonic()
    with Sampler(pid) as sampler:
        async with httpx.AsyncClient(limits=limits, timeout=600) as client:
            outcomes = await asyncio.gather(
                *(
                    _client(client, url, bodies[i % len(bodies)], retry_for, tally)
                    for i in range(clients)
                )
            )
    statuses = Counter(outcomes)
    return Burst(
        clients=clients,
        statuses=dict(sorted(statuses.items())),
        attempts=tally["attempts"],
        refusals_without_retry_after=tally["no_retry_after"],
        seconds=time.monotonic() - started,
        idle_rss_mb=idle_rss / 2**20,
        idle_pss_mb=idle_pss / 2**20,
        peak_rss_mb=sampler.peak_rss / 2**20,
        peak_pss_mb=sampler.peak_pss / 2**20,
        lost=statuses.get("lost", 0),
        errors=tally["errors"][:5],
    )


def sequential(url: str, pid: int, bodies: list[bytes], count: int) -> list[dict]:
    """`count` requests one at a time; the memory before the first and after each."""
    rows = []
    rss, pss = tree_memory(pid)
    rows.append({"after": 0, "status": None, "rss_mb": rss / 2**20, "pss_mb": pss / 2**20})
    with httpx.Client(timeout=600) as client:
        for i in range(count):
            response = client.post(
                url, content=bodies[i % len(bodies)], headers={"content-type": "image/jpeg"}
            )
            time.sleep(1.0)  # the response is sent; what stays is what is retained
            rss, pss = tree_memory(pid)
            rows.append(
                {
                    "after": i + 1,
                    "status": response.status_code,
                    "rss_mb": rss / 2**20,
                    "pss_mb": pss / 2**20,
                }
            )
    return rows


def _parse_size(text: str) -> tuple[int, int]:
    h, w = text.lower().split("x")
    return int(h), int(w)


def _parse_setting(text: str) -> tuple[str, str]:
    name, _, value = text.partition("=")
    return name, value


def print_tables(result: dict) -> None:
    """The burst's row and the sequential run's rows."""
    b = result["burst"]
    print(f"\nburst: {b['clients']} clients at once, {result['size']} JPEG, 3 faces")
    print(
        "| statuses | attempts | 503 without Retry-After | lost | idle RSS / PSS | peak RSS / PSS |"
    )
    print("|---|---|---|---|---|---|")
    statuses = ", ".join(f"{k}: {v}" for k, v in b["statuses"].items())
    print(
        f"| {statuses} | {b['attempts']} | {b['refusals_without_retry_after']} | {b['lost']} "
        f"| {b['idle_rss_mb']:.0f} / {b['idle_pss_mb']:.0f} MiB "
        f"| {b['peak_rss_mb']:.0f} / {b['peak_pss_mb']:.0f} MiB |"
    )
    rows = result["sequential"]
    if rows:
        print(f"\none at a time: {len(rows) - 1} requests")
        print("| after | status | RSS | PSS |")
        print("|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['after']} | {r['status']} | {r['rss_mb']:.0f} MiB | {r['pss_mb']:.0f} MiB |"
            )
        growth = rows[-1]["rss_mb"] - rows[0]["rss_mb"]
        print(f"RSS growth over the run: {growth:+.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=48)
    parser.add_argument("--size", type=_parse_size, default=(5120, 7680), help="HxW")
    parser.add_argument("--sequential", type=int, default=8)
    parser.add_argument("--retry", action="store_true", help="clients retry 503s")
    parser.add_argument("--retry-for", type=float, default=600.0)
    parser.add_argument("--setting", type=_parse_setting, action="append", default=[])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)

    bodies = group_photos(args.size, faces=3, count=4)
    settings = dict(args.setting)
    RESULTS.mkdir(parents=True, exist_ok=True)  # the server's log goes there
    server = service_server(settings)
    try:
        server.wait_ready()
        time.sleep(2.0)
        url = server.url + server.path
        state = machine_state()
        result_burst = asyncio.run(
            burst(url, server.proc.pid, bodies, args.clients, args.retry_for if args.retry else 0)
        )
        rows = sequential(url, server.proc.pid, bodies, args.sequential)
    finally:
        server.stop()
    h, w = args.size
    result = {
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "size": f"{w}x{h}",
        "settings": settings,
        "retry": args.retry,
        "machine": state,
        "burst": asdict(result_burst),
        "sequential": rows,
    }
    print_tables(result)
    out = args.out or RESULTS / f"memory-{result['when'].replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
