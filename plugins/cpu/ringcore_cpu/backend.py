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

import numpy as np

import ringcore.lang as lang
from ringcore.lang.host import KernelEnv, field_arrays, lane_errors, sent_specs, state_arrays
from ringcore.runtime import (
    BatchExecutor,
    BatchResult,
    KernelHandle,
    ReferenceExecutor,
    RingKernelRuntime,
    run_as_batch_of_one,
)

__all__ = ["CpuRuntime", "EXECUTORS", "NumpyExecutor"]


class NumpyExecutor:
    """Runs a batch through the kernel's numpy target: one vectorised call per batch.

    The kernel is compiled when it is launched, so a kernel outside the
    language fails at ``launch`` with a KernelCompileError naming the line.
    """

    #: The compiled code copies what it reads; replies and sends are built from copies.
    keeps_no_batch_data = True

    def __init__(self, handle: KernelHandle) -> None:
        self.handle = handle
        kernel = handle.kernel
        self.kir = lang.lower(kernel)
        self._run = lang.load_numpy(kernel)
        self._in_fields = kernel.input_spec.fields
        out = kernel.output_spec
        self._out_dtype = out.dtype if out is not None else None
        self._out_fields = out.fields if out is not None else None
        self._specs = sent_specs(self.kir)
        self._state = state_arrays(handle.state_array)
        self._one = np.zeros(1, kernel.input_spec.slot_dtype)

    def run(self, batch: np.ndarray) -> BatchResult:
        n = len(batch)
        inp = field_arrays(batch["payload"], self._in_fields)
        replies = None
        out = None
        if self._out_dtype is not None:
            # A reused buffer (fresh pages cost more than the kernel), zero-filled as the ABI says.
            replies = self.handle._scratch("replies", self._out_dtype, n)
            replies[...] = 0
            out = field_arrays(replies, self._out_fields)
        env = KernelEnv(self.handle, batch["header"], self._specs)
        with np.errstate(all="ignore"):  # fixed-width integers wrap, as on every target
            has_reply, status = self._run(n, inp, out, self._state, env)
        return BatchResult(replies, np.asarray(has_reply, dtype=bool), env.forwarded, lane_errors(self.kir, status))

    def run_one(self, header: Any, payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
        """One message (the latency path of ``call``) through the same compiled code, as a batch of one."""
        return run_as_batch_of_one(self, self._one, header, payload)

    def close(self) -> None:
        pass


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
