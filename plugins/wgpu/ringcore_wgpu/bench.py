"""``ringcore wgpu bench``: the WebGPU backend's figures, each next to the CPU backend measured in the same run.

Vector add (16 float32 per message) on batches of 65,536 through the kernel's loop (drain a batch, write
it, one dispatch, read back, publish the replies), and the per-dispatch overhead of a message that
arrives alone (``ringcore.bench.device_figures``, the figures every device backend prints).
"""

from __future__ import annotations

from typing import Any

from ringcore.bench import Figure, device_figures

__all__ = ["bench_wgpu"]


def bench_wgpu(quick: bool = False, device_index: int | None = None, **_: Any) -> list[Figure]:
    """The WebGPU backend's figures (see the module docstring)."""
    from .backend import WgpuRuntime

    with WgpuRuntime(adapter_index=device_index) as rt:
        dev = rt.device
    where = f"{dev.name} ({dev.kind}, {dev.details['backend_type']})" if dev is not None else "wgpu"
    return device_figures("wgpu", lambda: WgpuRuntime(adapter_index=device_index), where, quick=quick,
                          loop_target=2e6, dispatch_target=400.0, what="one dispatch")
