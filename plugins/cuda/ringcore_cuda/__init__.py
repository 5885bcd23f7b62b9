"""ringcore-cuda: persistent ring kernels on NVIDIA GPUs through CuPy.

``CudaRuntime`` and ``CudaExecutor`` load CuPy on first access; importing the package (or its entry
point, ``ringcore_cuda.plugin``) does not.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CudaRuntime", "CudaExecutor"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import backend

        return getattr(backend, name)
    raise AttributeError(f"module 'ringcore_cuda' has no attribute {name!r}")
