"""The entry point: registers the CUDA backend and ``ringcore cuda`` (cheap to import: no CuPy here)."""

from __future__ import annotations

from typing import Any

import ringcore
from ringcore.plugins import BackendSpec, ProbeResult

_INSTALL = "install ringcore-cuda (it brings cupy-cuda12x and NVRTC) on a machine with an NVIDIA GPU and driver"


def probe() -> ProbeResult:
    """Every CUDA GPU here; unavailable (with the reason) when CuPy, the driver or a GPU is missing.

    Never raises: CuPy imports fine on a machine without a GPU, and then every device call fails."""
    try:
        import cupy
    except Exception as exc:  # not installed, or a broken install
        return ProbeResult(False, f"cupy cannot be imported ({type(exc).__name__}: {exc}); {_INSTALL}")
    try:
        from . import _device

        if not cupy.is_available():
            return ProbeResult(False, f"CuPy finds no usable CUDA GPU here ({_device.why_unavailable()}); {_INSTALL}")
        infos = tuple(_device.device_info(i) for i in range(_device.device_count()))
    except Exception as exc:  # a driver error while asking
        return ProbeResult(False, f"the CUDA driver failed while listing GPUs ({type(exc).__name__}: {exc}); "
                                  f"{_INSTALL}")
    return ProbeResult.of_devices(infos, "CUDA GPU", f"the CUDA driver lists no GPU; {_INSTALL}")


def factory(**options: Any) -> Any:
    from .backend import CudaRuntime

    return CudaRuntime(**options)


@ringcore.hookimpl
def register_backends(register: Any) -> None:
    register(BackendSpec(
        name="cuda",
        priority=400,
        factory=factory,
        probe=probe,
        package="ringcore-cuda",
        description="NVIDIA GPUs through CuPy; kernels compiled to CUDA C by NVRTC, resident (persistent) on "
                    "the GPU polling queues in mapped pinned memory, or one launch per batch",
    ))


@ringcore.hookimpl
def register_commands(cli: Any) -> None:
    from .cli import add_commands

    add_commands(cli)
