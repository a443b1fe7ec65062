"""Futures nobody awaits any more (abandoned decodes, parses and batches, background tasks)."""

from __future__ import annotations

import asyncio


def retrieve(future: asyncio.Future) -> None:
    """Read a finished future's outcome, as a done-callback: asyncio would otherwise log its
    exception as never retrieved."""
    if not future.cancelled():
        future.exception()
