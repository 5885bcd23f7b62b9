"""``ringcore wgpu devices|bench``: the WebGPU backend's adapters and its benchmark (``register_commands``)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_commands"]


def _probe() -> Any:
    from .plugin import probe

    return probe()


def _bench(**kw: Any) -> list[Any]:
    from .bench import bench_wgpu

    return bench_wgpu(**kw)


def add_commands(cli: Any) -> None:
    """Add ``ringcore wgpu`` (the ``register_commands`` hook)."""
    cli.add_device_tools("wgpu", "ringcore-wgpu", _probe, _bench, device_word="WebGPU adapter",
                         bench_help="vector add and per-dispatch overhead on WebGPU, next to the cpu backend")
