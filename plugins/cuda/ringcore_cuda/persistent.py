"""Persistent mode on CUDA: a kernel launched once that stays resident on the GPU and polls its queue.

The loop is the kernel language's ``rc_persist_<ident>`` (``ringcore.lang.targets.c``), launched as
``grid_size`` blocks (one block of one thread for a serial kernel) on the kernel's own non-blocking
stream, so other CuPy work is never queued behind it. Its input queue, ControlBlock and completion queue
live in mapped pinned host memory, which the host reads and writes with plain numpy views and the GPU
polls with volatile loads behind ``__threadfence_system()``; its state, environment and the blocks'
claim counter live in device memory. Blocks claim messages from the one queue by a compare-and-swap on
that counter and publish completions in claim order, so no message is lost, handled twice or reordered.
The core's :class:`~ringcore.lang.host.PersistentLoop` turns completions into replies, errors, metrics
and ControlBlock updates exactly as the event-driven path does.

``terminate()`` sets ``should_terminate``; every block leaves at its next poll (after publishing a claim
it holds) and the launch completes, which is the acknowledgement (an event recorded behind it). The
core's :class:`~ringcore.lang.host.ResidentDevice` does the rest: a loop that does not acknowledge
within :data:`STOP_TIMEOUT` is reported and its memory kept, and loops still running at process exit
are told to stop (``atexit``); the driver ends any that remain when the process's CUDA context goes,
so no GPU is left spinning after the process exits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cupy
import numpy as np
from cupy.cuda import runtime as cudart

import ringcore.lang as lang
from ringcore.lang.host import ResidentDevice
from ringcore.lang.targets import c
from ringcore.queue import RingQueue

if TYPE_CHECKING:
    from ringcore.runtime import KernelHandle

    from .backend import CudaRuntime

__all__ = ["CudaPersistent", "resident_blocks", "STOP_TIMEOUT", "MAX_DONE_CAPACITY"]

#: How long closing a loop waits for the GPU to leave it once told to.
STOP_TIMEOUT = ResidentDevice.STOP_TIMEOUT
#: Completion records per resident kernel (at most; fewer for small input queues).
MAX_DONE_CAPACITY = 1 << 16


def resident_blocks(handle: KernelHandle) -> int:
    """How many blocks the kernel's loop runs: its ``grid_size``; one for a serial kernel."""
    return 1 if lang.lower(handle.kernel).serial else int(handle.options.grid_size)


class CudaPersistent(ResidentDevice):
    """One resident kernel: its GPU loop, memory and completion queue (a PersistentDevice; its stop and
    close are the core's ResidentDevice)."""

    def __init__(self, handle: KernelHandle, runtime: CudaRuntime) -> None:
        from .backend import block_size, ptr

        self.runtime = runtime
        kir = lang.lower(handle.kernel)
        sym = c.symbols(kir)
        self.gpu = runtime.modules.device
        what = f"kernel {handle.name!r}"
        with self.gpu:
            fn = runtime.modules.program_for(kir).get_function(sym.persist)
            self.stream = cupy.cuda.Stream(non_blocking=True)  # the loop's, for its whole life
            self.copy_stream = cupy.cuda.Stream(non_blocking=True)  # state reads while it runs
            dtype = c.done_dtype(kir)
            cap = min(MAX_DONE_CAPACITY, max(64, handle.input_queue.capacity))
            self.done_queue = RingQueue(dtype, cap, buffer=runtime.mapped_zeros(RingQueue.nbytes(dtype, cap),
                                                                               f"the completion queue of {what}"))
            self.state_size = sym.state_size if handle.state_array is not None else 0
            self.state = runtime.device_alloc(max(64, self.state_size), f"the state of {what}")
            if handle.state_array is not None:
                self._copy(self.state.ptr, np.ascontiguousarray(handle.state_array).ctypes.data, self.state_size,
                           cudart.memcpyHostToDevice)
            env = np.zeros(1, c.ENV_DTYPE)
            env["kernel_number"] = handle.number
            # Message i completes into record i (see the ABI): both queues are new, so both start at 0.
            env["claimed"] = handle.input_queue.tail
            self.env = runtime.device_alloc(c.ENV_DTYPE.itemsize, f"the environment of {what}")
            self._copy(self.env.ptr, env.ctypes.data, c.ENV_DTYPE.itemsize, cudart.memcpyHostToDevice)
            self._outbox = runtime.device_alloc(64, f"the outbox of {what}")  # never written: no sends here
            self.blocks = resident_blocks(handle)
            self.block = 1 if kir.serial else block_size(fn, handle.options.block_size)
            max_batch = min(int(handle.options.max_batch or cap), cap)
            args = (ptr(handle.input_queue.buffer), ptr(self.done_queue.buffer), ptr(handle.control.buffer),
                    np.uint64(self.state.ptr), np.uint64(self.env.ptr), np.uint64(self._outbox.ptr),
                    np.uint32(max_batch))
            try:
                fn((self.blocks,), (self.block,), args, stream=self.stream)
            except cudart.CUDARuntimeError as exc:
                raise runtime.gpu_error(f"launching the resident loop of {what}", exc) from None
            self.event = cupy.cuda.Event(block=False, disable_timing=True)
            self.event.record(self.stream)
        super().__init__(handle, runtime.modules.resident, self.blocks)

    def _copy(self, dst: int, src: int, nbytes: int, kind: int) -> None:
        """A copy on the copy stream, waited for (the loop's own stream is busy for the kernel's life)."""
        if nbytes:
            cudart.memcpyAsync(dst, src, nbytes, kind, self.copy_stream.ptr)
            self.copy_stream.synchronize()

    def exited(self) -> bool:
        """Whether the GPU loop has returned (its launch completed, or failed: then ``fault`` says how)."""
        if self.fault is not None:
            return True
        try:
            with self.gpu:
                return bool(self.event.done)
        except cudart.CUDARuntimeError as exc:
            self.fault = exc
            return True

    def read_state(self) -> np.ndarray | None:
        """A copy of the kernel's state record as the GPU has it now."""
        st = self.handle.state_array
        if st is None:
            return None
        if self.closed:
            return st.copy()
        out = np.zeros(1, st.dtype)
        with self.gpu:
            self._copy(out.ctypes.data, self.state.ptr, self.state_size, cudart.memcpyDeviceToHost)
        return out

    def _keep_state(self) -> None:
        with self.gpu:
            self._copy(self.handle.state_array.ctypes.data, self.state.ptr, self.state_size,
                       cudart.memcpyDeviceToHost)
