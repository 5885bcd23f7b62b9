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

import atexit
import logging
import threading
import time
import weakref
from typing import TYPE_CHECKING

import numpy as np
import pyopencl as cl

import ringcore.lang as lang
from ringcore.lang.targets import c
from ringcore.queue import RingQueue

if TYPE_CHECKING:
    from ringcore.runtime import KernelHandle

    from .backend import OpenclRuntime

__all__ = ["OpenclPersistent", "STOP_TIMEOUT"]

log = logging.getLogger("ringcore")

#: How long closing a loop waits for the device to leave it once told to (the loop polls continuously,
#: so it leaves within microseconds unless a handler is still running a long message).
STOP_TIMEOUT = 10.0
#: Completion records per resident kernel (at most; fewer for small input queues).
MAX_DONE_CAPACITY = 1 << 16

_live: weakref.WeakSet[OpenclPersistent] = weakref.WeakSet()
# Loops whose device did not acknowledge the stop: their shared memory must outlive them.
_stuck: list[OpenclPersistent] = []


def groups(handle: KernelHandle, runtime: OpenclRuntime) -> int:
    """How many work-groups the kernel's loop runs: its ``grid_size``; one for a serial kernel, and one
    on a device without 64-bit atomics (groups claim messages by a 64-bit compare-and-swap)."""
    if lang.lower(handle.kernel).serial or not runtime.device_context.int64_atomics:
        return 1
    return int(handle.options.grid_size)


class OpenclPersistent:
    """One resident kernel: its device loop, shared memory and completion queue (a PersistentDevice)."""

    def __init__(self, handle: KernelHandle, runtime: OpenclRuntime) -> None:
        self.handle = handle
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
        self._lock = threading.Lock()
        self.closed = False
        self.event = cl.enqueue_nd_range_kernel(self.queue, self.kernel, (local * self.groups,), (local,))
        self.queue.flush()
        _live.add(self)

    def exited(self) -> bool:
        """Whether the device loop has returned (its launch completed, or failed)."""
        return int(self.event.command_execution_status) <= int(cl.command_execution_status.COMPLETE)

    def stop(self, timeout: float) -> bool:
        """Tell the loop to leave (``should_terminate``) and wait up to ``timeout`` s; True if it did."""
        if not self.exited():
            self.handle.control.should_terminate = 1
        deadline = time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0005)
        return True

    def read_state(self) -> np.ndarray | None:
        """A copy of the kernel's state record as the device has it now."""
        st = self.handle.state_array
        if st is None:
            return None
        return self.state[:self.state_size].copy().view(st.dtype)

    def close(self) -> None:
        """After the host loop ends: make sure the device loop has stopped, keep the final state, free."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        try:
            if not self.stop(STOP_TIMEOUT):
                _stuck.append(self)  # the device may still touch its memory: never free it
                log.error("ringcore: the device loop of kernel %r did not stop within %s s of being told to; "
                          "its memory is kept for the rest of the process", self.handle.name, STOP_TIMEOUT)
                return
            st = self.handle.state_array
            if st is not None:  # the final state stays readable after termination
                st.view(np.uint8)[:] = self.state[:self.state_size]
            status = int(self.event.command_execution_status)
            if status < 0:
                log.error("ringcore: the device loop of kernel %r failed on the device (OpenCL status %d)",
                          self.handle.name, status)
        finally:
            _live.discard(self)
            self.runtime.device_context.resident.release(self.groups)


@atexit.register
def _stop_at_exit() -> None:
    """Stop every loop still resident, so that no device keeps spinning after the process is done."""
    for dev in list(_live):
        try:
            if not dev.stop(2.0):
                log.error("ringcore: the device loop of kernel %r did not stop at exit", dev.handle.name)
        except Exception:  # interpreter shutdown: best effort
            pass
