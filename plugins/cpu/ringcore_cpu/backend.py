"""CpuRuntime: each kernel is an actor thread on the host that drains its queue.

The loop itself (draining, batching, replies, routing, metrics) is the core's
HostLoop; this backend supplies the executor that runs a batch:

- ``"numpy"`` (the default): the kernel language's numpy target, one call per
  batch drained from the queue (vectorised over the batch; serial kernels
  loop over it in order);
- ``"reference"``: the Python handler called once per message (the reference
  semantics, and a debug mode: breakpoints and prints work there).
"""

from __future__ import annotations

from typing import Any

from ringcore.lang.host import NumpyExecutor
from ringcore.runtime import BatchExecutor, KernelHandle, ReferenceExecutor, RingKernelRuntime

__all__ = ["CpuRuntime", "EXECUTORS", "NumpyExecutor"]


#: How a kernel's batches run on the CPU, by name.
EXECUTORS: dict[str, Any] = {
    "numpy": NumpyExecutor,
    "reference": ReferenceExecutor,
}


class CpuRuntime(RingKernelRuntime):
    """Ring kernels on the CPU.

    :param execution: ``"numpy"`` (default): compiled batches through the
        kernel language's numpy target; ``"reference"``: the Python handler
        once per message (the reference semantics, and a debug mode).
    """

    backend_name = "cpu"
    supports_persistent = True

    def __init__(self, *, execution: str = "numpy", **options: Any) -> None:
        if execution not in EXECUTORS:
            raise ValueError(f"execution={execution!r} is not one of {sorted(EXECUTORS)}")
        super().__init__(**options)
        self.execution = execution

    def _create_executor(self, handle: KernelHandle) -> BatchExecutor:
        return EXECUTORS[self.execution](handle)
