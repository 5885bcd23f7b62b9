"""ringcore-opencl: runs ring kernels on OpenCL devices through PyOpenCL (GPUs, or PoCL on a CPU).

``OpenclRuntime`` and ``OpenclExecutor`` load PyOpenCL on first access; importing the package (or its
entry point, ``ringcore_opencl.plugin``) does not.
"""

from __future__ import annotations

from typing import Any

__all__ = ["OpenclRuntime", "OpenclExecutor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import backend

        return getattr(backend, name)
    raise AttributeError(f"module 'ringcore_opencl' has no attribute {name!r}")
