"""The entry point: registers the OpenCL backend and ``ringcore opencl`` (cheap to import: no PyOpenCL here)."""

from __future__ import annotations

from typing import Any

import ringcore
from ringcore.plugins import BackendSpec, ProbeResult

_INSTALL = "install pyopencl[pocl] (a CPU platform) or your GPU vendor's OpenCL driver (an ICD)"


def probe() -> ProbeResult:
    """Every OpenCL device here; unavailable (with the reason) when PyOpenCL or a platform is missing."""
    try:
        import pyopencl as cl
    except Exception as exc:  # not installed, or a broken ICD loader
        return ProbeResult(False, f"pyopencl cannot be imported ({type(exc).__name__}: {exc}); {_INSTALL}")
    try:
        from . import _device

        devs = _device.devices()
    except cl.Error as exc:
        return ProbeResult(False, f"no OpenCL platform found ({exc}); {_INSTALL}")
    return ProbeResult.of_devices(tuple(_device.device_info(d) for d in devs), "OpenCL device",
                                  f"the OpenCL platforms here list no device; {_INSTALL}")


def factory(**options: Any) -> Any:
    from .backend import OpenclRuntime

    return OpenclRuntime(**options)


@ringcore.hookimpl
def register_backends(register: Any) -> None:
    register(BackendSpec(
        name="opencl",
        priority=300,
        factory=factory,
        probe=probe,
        package="ringcore-opencl",
        description="OpenCL devices through PyOpenCL (GPUs, or PoCL on a CPU); kernels compiled to OpenCL C, "
                    "resident (persistent) where SVM allows, else one NDRange per batch",
    ))


@ringcore.hookimpl
def register_commands(cli: Any) -> None:
    from .cli import add_commands

    add_commands(cli)
