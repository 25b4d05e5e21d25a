"""glibc heap settings for processes that run the encoders over and over (the service, extraction, benchmarks).

A forward allocates activations of several MB and frees them a layer later. By default glibc serves blocks above a
moving threshold with fresh mmaps and returns freed heap tops to the OS, so every forward page-faults its
activations in again: on VideoMamba-M (8 x 224^2) that was about 0.25 s of a 1.7 s clip. With the mmap threshold
fixed at 32 MB (the most glibc's moving one reaches) and a high trim threshold, freed blocks are reused; resident
memory then stays at the process's high-water mark, which a long-running encoder reaches on its first batch anyway.
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20  # glibc's largest dynamic threshold on 64-bit
TRIM_THRESHOLD = 1 << 30


def retain_freed_memory() -> bool:
    """Apply the settings above to this process; False where the C library is not glibc (nothing changes)."""
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
