"""EchoRuntime: ring kernels on host threads that echo every batch they run.

The core's host loop does everything that is the same on every device
(draining the input queue, HLC stamping, replies, routing, errors, metrics);
this backend supplies only the executor that runs a batch. It delegates to the
core's reference executor, which calls the handler once per message, and
echoes each batch to the "ringcore_echo" logger and to the runtime's trace.
"""

from __future__ import annotations

import logging
import time
from typing import Any, NamedTuple

import numpy as np

from ringcore.runtime import BatchResult, KernelHandle, ReferenceExecutor, RingKernelRuntime

log = logging.getLogger("ringcore_echo")


class BatchRecord(NamedTuple):
    """One batch a kernel ran."""

    kernel: str
    size: int
    replies: int
    errors: int
    seconds: float


class EchoExecutor:
    """A BatchExecutor: runs a kernel's batches and echoes each one."""

    def __init__(self, handle: KernelHandle, trace: list[BatchRecord]) -> None:
        self.kernel = handle.name
        self.inner = ReferenceExecutor(handle)
        self.trace = trace

    def run(self, batch: np.ndarray) -> BatchResult:
        t0 = time.perf_counter()
        result = self.inner.run(batch)
        record = BatchRecord(self.kernel, len(batch), int(result.has_reply.sum()),
                             len(result.errors), time.perf_counter() - t0)
        self.trace.append(record)
        log.info("kernel %r ran %d messages: %d replies, %d errors in %.0f µs",
                 record.kernel, record.size, record.replies, record.errors, record.seconds * 1e6)
        return result

    def close(self) -> None:
        self.inner.close()
        log.info("kernel %r stopped", self.kernel)


class EchoRuntime(RingKernelRuntime):
    """The "echo" backend's runtime."""

    backend_name = "echo"

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        #: Every batch run by this runtime's kernels, in order.
        self.trace: list[BatchRecord] = []
        #: Bytes of queue and control-block memory handed out.
        self.allocated = 0

    def allocate(self, nbytes: int) -> np.ndarray:
        # A device backend returns memory the device can reach (pinned, SVM,
        # mapped); host memory is all this backend needs.
        self.allocated += nbytes
        return super().allocate(nbytes)

    def _create_executor(self, handle: KernelHandle) -> EchoExecutor:
        return EchoExecutor(handle, self.trace)
