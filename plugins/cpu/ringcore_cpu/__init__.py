"""ringcore-cpu: runs ring kernels on the host CPU, one actor thread per kernel."""

from .backend import CpuRuntime

__all__ = ["CpuRuntime"]
