"""Fixtures of the ASGI-level tests."""

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """The async tests run on asyncio, the loop uvicorn uses."""
    return "asyncio"
