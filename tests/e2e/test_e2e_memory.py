"""Large requests leave no memory behind: twelve-megapixel portraits one after another, and the
server's processes together (HTTP and replica) end within 300 MB of where the first one left
them (issue 21's bound for eight 39 MP photos; a request that kept its arrays would hold about
70 MB more each at this size). The figure itself is printed (pytest -s); bench.memory measures
the 8K case."""

from __future__ import annotations

import httpx
import psutil
from images import encoded, slow_portrait
from server_support import Server, start_server

REQUESTS = 6
GROWTH_LIMIT = 300 * 2**20
BODIES = [encoded(slow_portrait(3000, 4000, seed=i), "JPEG", quality=90) for i in range(2)]


def _tree_rss(server: Server) -> int:
    root = psutil.Process(server.proc.pid)
    return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])


def test_large_requests_in_a_row_leave_no_memory_behind(tmp_path) -> None:
    server = start_server(tmp_path)
    try:
        with httpx.Client(base_url=server.url, timeout=300) as http:

            def retouch(i: int) -> None:
                r = http.post(
                    "/v1/retouch",
                    content=BODIES[i % len(BODIES)],
                    headers={"content-type": "image/jpeg"},
                )
                assert r.status_code == 200, r.text
                assert r.headers["x-faces"] == "1"

            retouch(0)
            after_first = _tree_rss(server)
            for i in range(1, REQUESTS):
                retouch(i)
            growth = _tree_rss(server) - after_first
    finally:
        server.stop()
    print(f"RSS growth over {REQUESTS - 1} more 12 MP requests: {growth / 2**20:+.0f} MiB")
    assert growth < GROWTH_LIMIT, f"{growth / 2**20:.0f} MiB"
