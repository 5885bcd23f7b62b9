"""Host-visible byte buffers shared by queues, control blocks and backends."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["aligned_zeros", "byte_view", "pow2"]


def pow2(n: int) -> int:
    """The smallest power of two >= ``n`` (1 for n <= 1): buffer sizes that grow by doubling."""
    return 1 << max(0, int(n) - 1).bit_length()


def aligned_zeros(nbytes: int, align: int = 128) -> np.ndarray:
    """``nbytes`` zeroed bytes whose first byte is ``align``-byte aligned (a uint8 array)."""
    raw = np.zeros(nbytes + align, dtype=np.uint8)
    start = (-raw.ctypes.data) % align
    return raw[start:start + nbytes]


def byte_view(buffer: Any, nbytes: int, what: str) -> np.ndarray:
    """The first ``nbytes`` of a writable buffer as a uint8 array sharing its memory.

    :param what: the structure laid in it (``"a ControlBlock"``), for errors.
    :raises ValueError: the buffer is non-contiguous (a view would silently be a
        copy), read-only, or smaller than ``nbytes``.
    """
    if isinstance(buffer, np.ndarray):
        if not buffer.flags.c_contiguous:
            raise ValueError(f"the buffer for {what} must be one contiguous block of memory "
                             "(a strided view would be copied, and the structure would live in the copy)")
        mem = buffer.view(np.uint8).reshape(-1)
    else:
        mem = np.frombuffer(buffer, dtype=np.uint8)
    if not mem.flags.writeable:
        raise ValueError(f"the buffer for {what} is read-only; pass writable memory "
                         "(a bytearray, a numpy array, a mapping)")
    if mem.nbytes < nbytes:
        raise ValueError(f"{what} needs {nbytes} bytes; the buffer has {mem.nbytes}")
    return mem[:nbytes]
