"""What the CPU can do fast: decides the engine's CPU precision."""

from __future__ import annotations

import functools
from pathlib import Path

import torch


@functools.cache
def native_bf16() -> bool:
    """True when this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX) and oneDNN can use
    it. Elsewhere bfloat16 convolutions are emulated and slower than float32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    hardware = " avx512_bf16" in flags or " amx_bf16" in flags
    return hardware and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
