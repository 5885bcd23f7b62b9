"""``ringcore cuda devices|bench``: the CUDA backend's GPUs and its benchmark (``register_commands``)."""

from __future__ import annotations

from typing import Any

__all__ = ["add_commands"]


def _probe() -> Any:
    from .plugin import probe

    return probe()


def _bench(**kw: Any) -> list[Any]:
    from .bench import bench_cuda

    return bench_cuda(**kw)


def add_commands(cli: Any) -> None:
    """Add ``ringcore cuda`` (the ``register_commands`` hook)."""
    cli.add_device_tools("cuda", "ringcore-cuda", _probe, _bench, device_word="CUDA GPU",
                         bench_help="persistent round trips and batched vector add on an NVIDIA GPU, next to "
                                    "plain CuPy launches and the cpu backend")
