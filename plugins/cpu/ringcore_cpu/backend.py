"""CpuRuntime: each kernel is an actor thread on the host that drains its queue.

The loop itself (draining, batching, replies, routing, metrics) is the core's
HostLoop; this backend supplies the executor that runs a batch. Today that is
the reference executor, which calls the handler once per message; the kernel
compiler's numpy target plugs in here as a batch executor.
"""

from __future__ import annotations

from typing import Any

from ringcore.runtime import BatchExecutor, KernelHandle, ReferenceExecutor, RingKernelRuntime

__all__ = ["CpuRuntime", "EXECUTORS"]

#: How a kernel's batches run on the CPU, by name.
EXECUTORS: dict[str, Any] = {
    "reference": ReferenceExecutor,
}


class CpuRuntime(RingKernelRuntime):
    """Ring kernels on the CPU.

    :param execution: ``"reference"``: run the Python handler once per message
        (the reference semantics, and a debug mode).
    """

    backend_name = "cpu"
    supports_persistent = True

    def __init__(self, *, execution: str = "reference", **options: Any) -> None:
        if execution not in EXECUTORS:
            raise ValueError(f"execution={execution!r} is not one of {sorted(EXECUTORS)}")
        super().__init__(**options)
        self.execution = execution

    def _create_executor(self, handle: KernelHandle) -> BatchExecutor:
        return EXECUTORS[self.execution](handle)
