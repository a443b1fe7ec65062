"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from server_support import Server, start_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A batching server shared by a module: batches of up to 8 that wait up to 100 ms, and a
    1 MB body limit."""
    srv = start_server(
        tmp_path_factory.mktemp("server"),
        max_batch_size=8,
        max_batch_wait_ms=100,
        max_body_bytes=1_000_000,
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def server_narrow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One image at a time and one queue place: a large image keeps the replica busy, so what
    happens to the requests behind it is decided by the tests, not by timing luck (nor by the
    batcher's estimate of the work ahead, which is off: its shedding has tests of its own)."""
    srv = start_server(
        tmp_path_factory.mktemp("narrow"), max_batch_size=1, max_queue=1, shed_late=False
    )
    yield srv
    srv.stop()
