"""Whether this process's malloc serves a 31 MB block from a fresh mapping (glibc's default)
or from the heap (as `model.allocator.tune_malloc` sets it): read from mallinfo2."""

from __future__ import annotations

import ctypes

# Just under the tuned threshold (32 MB): glibc raises its own threshold to the size of any
# mapped block freed, so a smaller probe would read "heap" in any process that had freed one.
_BLOCK = 31 * 1024 * 1024


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
            "fordblks", "keepcost",
        )
    ]  # fmt: skip


def large_block_mapped() -> bool:
    """True when a 31 MB malloc in this process is its own mmap (glibc's default threshold)."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = _MallInfo2
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    before = libc.mallinfo2().hblkhd
    block = libc.malloc(_BLOCK)
    try:
        return libc.mallinfo2().hblkhd - before >= _BLOCK
    finally:
        libc.free(block)
