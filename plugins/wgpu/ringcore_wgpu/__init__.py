"""ringcore-wgpu: runs ring kernels on WebGPU adapters through wgpu-py (GPUs, or a software adapter).

``WgpuRuntime`` and ``WgpuExecutor`` load wgpu on first access; importing the package (or its entry
point, ``ringcore_wgpu.plugin``) does not.
"""

from __future__ import annotations

from typing import Any

__all__ = ["WgpuRuntime", "WgpuExecutor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import backend

        return getattr(backend, name)
    raise AttributeError(f"module 'ringcore_wgpu' has no attribute {name!r}")
