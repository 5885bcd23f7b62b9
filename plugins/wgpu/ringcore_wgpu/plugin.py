"""The entry point: registers the WebGPU backend and ``ringcore wgpu`` (cheap to import: no wgpu here)."""

from __future__ import annotations

from typing import Any

import ringcore
from ringcore.plugins import BackendSpec, ProbeResult

_INSTALL = ("install a GPU driver with Vulkan, Metal or D3D12, or Mesa for a software adapter "
            "(Debian: mesa-vulkan-drivers libvulkan1 for lavapipe; libgl1-mesa-dri for llvmpipe)")


def probe() -> ProbeResult:
    """Every WebGPU adapter here; unavailable (with the reason) when wgpu-py or an adapter is missing."""
    try:
        from . import _device

        ads = _device.adapters()
    except Exception as exc:  # not installed, or wgpu-native could not load
        return ProbeResult(False, f"wgpu cannot be used ({type(exc).__name__}: {exc}); pip install 'wgpu>=0.32,<0.33'")
    return ProbeResult.of_devices(tuple(_device.adapter_info(a) for a in ads), "WebGPU adapter",
                                  f"wgpu finds no adapter; {_INSTALL}")


def factory(**options: Any) -> Any:
    from .backend import WgpuRuntime

    return WgpuRuntime(**options)


@ringcore.hookimpl
def register_backends(register: Any) -> None:
    register(BackendSpec(
        name="wgpu",
        priority=200,
        factory=factory,
        probe=probe,
        package="ringcore-wgpu",
        description="WebGPU adapters through wgpu-py (Vulkan, Metal, D3D12, OpenGL; or llvmpipe/lavapipe); "
                    "kernels compiled to WGSL, one dispatch per batch",
    ))


@ringcore.hookimpl
def register_commands(cli: Any) -> None:
    from .cli import add_commands

    add_commands(cli)
