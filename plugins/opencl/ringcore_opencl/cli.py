"""``ringcore opencl devices|bench``: the OpenCL backend's devices and its benchmark (``register_commands``)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_commands"]


def _probe() -> Any:
    from .plugin import probe

    return probe()


def _bench(**kw: Any) -> list[Any]:
    from .bench import bench_opencl

    return bench_opencl(**kw)


def add_commands(cli: Any) -> None:
    """Add ``ringcore opencl`` (the ``register_commands`` hook)."""
    cli.add_device_tools("opencl", "ringcore-opencl", _probe, _bench, device_word="OpenCL device",
                         bench_help="vector add, per-dispatch overhead and persistent round trips on OpenCL, "
                                    "next to the cpu backend")
