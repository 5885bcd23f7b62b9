"""``ringcore opencl bench``: the OpenCL backend's figures, each next to a baseline measured in the same run.

- Vector add (16 float32 per message) on batches of 65,536 through the kernel's loop, and the
  per-dispatch overhead of a message that arrives alone, next to the CPU backend
  (``ringcore.bench.device_figures``, the figures every device backend prints).
- Where the device keeps kernels resident: ``call`` round trips and ``call_many`` through a persistent
  kernel, next to the same kernel event-driven.
"""

from __future__ import annotations

from typing import Any

from ringcore.bench import Figure, device_figures, resident_figures

__all__ = ["bench_opencl"]


def bench_opencl(quick: bool = False, device_index: int | None = None, **_: Any) -> list[Figure]:
    """The OpenCL backend's figures (see the module docstring)."""
    from .backend import OpenclRuntime

    with OpenclRuntime(device_index=device_index) as rt:
        dev = rt.device
        slots = rt.persistent_slots
    where = f"{dev.name} ({dev.kind})" if dev is not None else "opencl"
    out = device_figures("opencl", lambda: OpenclRuntime(device_index=device_index), where, quick=quick,
                         loop_target=5e6, dispatch_target=100.0, what="one NDRange")
    if slots:
        out += resident_figures("opencl", lambda: OpenclRuntime(device_index=device_index), where, quick=quick)
    return out
