"""Persistent mode on OpenCL: a kernel launched once that stays resident and polls its queue in SVM.

The loop is the kernel language's ``rc_persist_<ident>`` (``ringcore.lang.targets.c``), launched as one
work-group on its own command queue. Its input queue, ControlBlock, completion queue, state and
environment all live in fine-grain shared virtual memory, which host and device read and write in place:
the host pushes messages with the core's RingQueue, the loop claims them, runs the handler and writes
completion records (the request's header, the status word, the reply), and the core's
:class:`~ringcore.lang.host.PersistentLoop` turns those into replies, errors and metrics exactly as the
event-driven path does. ``terminate()`` sets ``should_terminate`` in the ControlBlock; the loop leaves at
its next poll and its launch completes, which is the acknowledgement.

A resident loop occupies a compute unit (on PoCL: one of its worker threads, which then spins on one
core) for the kernel's whole life, so a device takes a limited number of them at once (its
``persistent_slots``, counted per device across the process); a kernel launched persistent when they are
all taken runs event-driven, and the runtime logs why. Loops still running when the process exits are
told to stop (``atexit``), so none is left spinning.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import numpy as np
import pyopencl as cl

import ringcore.lang as lang
from ringcore.lang.host import ResidentDevice
from ringcore.lang.targets import c
from ringcore.queue import RingQueue

if TYPE_CHECKING:
    from ringcore.runtime import KernelHandle

    from .backend import OpenclRuntime

__all__ = ["OpenclPersistent", "STOP_TIMEOUT"]

log = logging.getLogger("ringcore")

#: How long closing a loop waits for the device to leave it once told to.
STOP_TIMEOUT = ResidentDevice.STOP_TIMEOUT
#: Completion records per resident kernel (at most; fewer for small input queues).
MAX_DONE_CAPACITY = 1 << 16


def groups(handle: KernelHandle, runtime: OpenclRuntime) -> int:
    """How many work-groups the kernel's loop runs: its ``grid_size``; one for a serial kernel, and one
    on a device without 64-bit atomics (groups claim messages by a 64-bit compare-and-swap)."""
    if lang.lower(handle.kernel).serial or not runtime.device_context.int64_atomics:
        return 1
    return int(handle.options.grid_size)


class OpenclPersistent(ResidentDevice):
    """One resident kernel: its device loop, shared memory and completion queue (a PersistentDevice; its
    stop and close are the core's ResidentDevice)."""

    def __init__(self, handle: KernelHandle, runtime: OpenclRuntime) -> None:
        self.runtime = runtime
        kir = lang.lower(handle.kernel)
        sym = c.symbols(kir)
        dc = runtime.device_context
        self.kernel = cl.Kernel(dc.program_for(kir), sym.persist)
        # Its own queue: the loop occupies it for the kernel's life and blocks nothing else.
        self.queue = cl.CommandQueue(dc.context, dc.device)
        dtype = c.done_dtype(kir)
        cap = min(MAX_DONE_CAPACITY, max(64, handle.input_queue.capacity))
        what = f"kernel {handle.name!r}"
        self.done_queue = RingQueue(dtype, cap, buffer=runtime.shared_zeros(RingQueue.nbytes(dtype, cap),
                                                                           f"the completion queue of {what}"))
        self.state_size = sym.state_size if handle.state_array is not None else 0
        self.state = runtime.shared_zeros(max(64, self.state_size), f"the state of {what}")
        if handle.state_array is not None:
            self.state[:self.state_size] = np.ascontiguousarray(handle.state_array).view(np.uint8)
        self.env = runtime.shared_zeros(c.ENV_DTYPE.itemsize, f"the environment of {what}")
        env = self.env[:c.ENV_DTYPE.itemsize].view(c.ENV_DTYPE)
        env["kernel_number"] = handle.number
        # Message i completes into record i (see the ABI): both queues are new, so both start at 0.
        env["claimed"] = handle.input_queue.tail
        self._outbox = runtime.shared_zeros(64, f"the outbox of {what}")  # never written: no sends here
        if kir.serial:
            local = 1
        else:
            wg = int(self.kernel.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, dc.device))
            local = max(1, min(int(handle.options.block_size or 64), wg))
        self.local_size = local
        self.groups = groups(handle, runtime)
        max_batch = min(int(handle.options.max_batch or cap), cap)
        self.kernel.set_args(cl.SVM(handle.input_queue.buffer), cl.SVM(self.done_queue.buffer),
                             cl.SVM(handle.control.buffer), cl.SVM(self.state), cl.SVM(self.env),
                             cl.SVM(self._outbox), np.uint32(max_batch))
        self.event = cl.enqueue_nd_range_kernel(self.queue, self.kernel, (local * self.groups,), (local,))
        self.queue.flush()
        super().__init__(handle, runtime.device_context.resident, self.groups)

    def exited(self) -> bool:
        """Whether the device loop has returned (its launch completed, or failed: then ``fault`` says how)."""
        status = int(self.event.command_execution_status)
        if status < 0 and self.fault is None:
            self.fault = f"OpenCL status {status}"
        return status <= int(cl.command_execution_status.COMPLETE)

    def read_state(self) -> np.ndarray | None:
        """A copy of the kernel's state record as the device has it now."""
        st = self.handle.state_array
        if st is None:
            return None
        return self.state[:self.state_size].copy().view(st.dtype)

    def _keep_state(self) -> None:
        self.handle.state_array.view(np.uint8)[:] = self.state[:self.state_size]
