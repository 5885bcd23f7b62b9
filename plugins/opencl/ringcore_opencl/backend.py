"""OpenclRuntime: ring kernels compiled to OpenCL C and run on an OpenCL device.

**Event-driven mode.** The loop (draining the input queue, HLC merging, replies, routing, metrics) is the
core's HostLoop; this backend supplies :class:`OpenclExecutor`, which per batch

1. puts the batch's input slots and the batch environment (``rc_env``: the HLC base, the kernel
   number, the outbox capacity) where the device reads them;
2. runs ``rc_batch_<id>``: one work-item per message (a serial kernel: one work-item, in order);
3. reads the status words, the replies and the environment, then the outbox records if any;
4. delivers the outbox's sends and publishes through the core's KernelEnv in (lane, seq) order, and
   moves the kernel's clock past every ``ctx.now()`` the device took.

Where the device offers fine-grain shared virtual memory (``OpenclRuntime.svm``), the per-batch buffers
are SVM: the host writes and reads them in place, so a dispatch is one command, and a small dispatch is
awaited by polling its status words (each stored last, behind a fence) rather than through the driver's
completion event. Elsewhere each buffer has a device copy moved by transfers.

The kernel's state lives in a device buffer for the kernel's whole life (``read_state`` copies it back;
at termination it is copied into the handle's state record).

**Outbox sizing and delivery results** are the core's (:class:`ringcore.lang.host.DeviceBatchExecutor`):
an outbox overflow reruns the batch on the device with room for every send, and a batch whose sends the
runtime would answer otherwise than the device assumed runs again on the host; no send is ever lost.

**Persistent mode** (:mod:`ringcore_opencl.persistent`): on a device with fine-grain SVM and atomics, a
kernel launched persistent is launched once and stays resident, polling its input queue in SVM, up to
``persistent_slots`` kernels per device. Kernels that send, publish or read the clock, and launches
beyond the slots, run event-driven; the runtime logs why. A loop runs the launch's ``grid_size``
work-groups (each a slot), which claim messages from the one queue (see the C target's ABI).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pyopencl as cl

import ringcore.lang as lang
from ringcore._memory import aligned_zeros
from ringcore._memory import pow2 as _pow2
from ringcore.errors import BackendError
from ringcore.kernel import KernelMode
from ringcore.lang.host import DeviceBatchExecutor, check_persistent_slots, start_resident
from ringcore.lang.targets import c
from ringcore.runtime import BatchResult, KernelHandle, RingKernelRuntime, run_as_batch_of_one

from . import _device
from .persistent import OpenclPersistent
from .persistent import groups as persistent_groups

__all__ = ["OpenclRuntime", "OpenclExecutor", "OUTBOX_PER_LANE", "MAX_OUTBOX_BYTES"]

log = logging.getLogger("ringcore")

#: Outbox records per message a sending kernel starts with (the core's DeviceBatchExecutor).
OUTBOX_PER_LANE = DeviceBatchExecutor.OUTBOX_PER_LANE
#: The most outbox memory one batch may use (past it the batch runs on the host).
MAX_OUTBOX_BYTES = DeviceBatchExecutor.MAX_OUTBOX_BYTES
#: How long ``run_one`` polls a one-message dispatch's status word in shared memory before it waits on
#: the launch's completion event instead.
SPIN_SECONDS = 0.002
# Batches up to this size wait by polling their status words (see OpenclExecutor._await).
_SPIN_BATCH = 64
# A status word no lane ever writes (bit 31 clear, neither 0 nor 1): "not yet done".
_PENDING = 0x7FFFFFFF
_MF = cl.mem_flags
_SVM_FLAGS = cl.svm_mem_flags.READ_WRITE | cl.svm_mem_flags.SVM_FINE_GRAIN_BUFFER


class OpenclExecutor(DeviceBatchExecutor):
    """Runs a kernel's batches on an OpenCL device through the kernel language's OpenCL C target (the
    batch algorithm is the core's :class:`~ringcore.lang.host.DeviceBatchExecutor`).

    The kernel is compiled (and the program built, or taken from the device's cache) at launch, so a
    kernel outside the language, or one the device's compiler refuses, fails ``launch`` with a
    KernelCompileError naming the Python line.

    Per-batch memory (input slots, replies, status words, environment, outbox) is shared virtual memory
    when the runtime uses SVM (``OpenclRuntime.svm``): the host writes and reads it in place and a
    dispatch is one command. Otherwise each has a device buffer and a host copy moved by transfers.
    """

    def __init__(self, handle: KernelHandle, runtime: OpenclRuntime) -> None:
        super().__init__(handle)
        self.runtime = runtime
        kir, sym = self.kir, self.sym
        dc = runtime.device_context
        program = dc.program_for(kir)
        self.ctx = dc.context
        self.svm = runtime.svm
        self.queue = cl.CommandQueue(self.ctx, dc.device)
        self.entry = cl.Kernel(program, sym.entry)
        self.max_alloc = int(dc.device.max_mem_alloc_size)
        self._dev: dict[str, Any] = {}  # role -> device buffer (without SVM); the host's bytes are self._host
        self._generation = 0  # bumped when a region is reallocated: the kernel's arguments are set again
        self._args: tuple[int, int, str] | None = None  # (n, generation, input role) the arguments were set for
        self._one: tuple[int, np.ndarray, np.ndarray, np.ndarray | None] | None = None  # run_one's views
        self.env = self._region("env", c.ENV_DTYPE.itemsize)[:c.ENV_DTYPE.itemsize].view(c.ENV_DTYPE)
        # What the device last saw of the environment (without SVM): a kernel that neither sends nor reads
        # the clock never changes it, so it is uploaded (and read back) only when needed.
        self._env_sent: bytes | None = None
        self.env["kernel_number"] = handle.number
        # The state, on the device for the kernel's life.
        st = handle.state_array
        self.state_nbytes = sym.state_size if st is not None else 0
        self.state_buf = self._new_buffer(max(8, self.state_nbytes), "state")
        if st is not None:
            cl.enqueue_copy(self.queue, self.state_buf, np.ascontiguousarray(st).view(np.uint8))
        self.snapshot_buf = self._new_buffer(max(8, self.state_nbytes), "state snapshot") \
            if self.sends and st is not None else None
        # A batch is at most what the input queue holds: its buffers are allocated now, so that a device
        # short of memory (or with too small an allocation limit) fails the launch, cleanly, not a batch later.
        most = min(int(handle.options.max_batch or 1), handle.input_queue.capacity)
        self._size_for(most, self.outbox_capacity(most))
        # Work-group size: the launch's block_size, within what the device allows for this kernel.
        wg = int(self.entry.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, dc.device))
        self.local_size = max(1, min(int(handle.options.block_size or 64), wg))
        self.closed = False
        # An empty batch at launch: the driver finishes compiling the entry point for its work-group
        # size now (PoCL does it at the first enqueue), not on the kernel's first message.
        self._launch(0, 0)
        self.queue.finish()

    # -- memory ----------------------------------------------------------------------

    def _fits(self, nbytes: int, what: str) -> None:
        if nbytes > self.max_alloc:
            raise BackendError(
                f"kernel {self.handle.name!r} needs a {what} buffer of {nbytes:,} bytes, more than the "
                f"{self.max_alloc:,} bytes one allocation may take on {self.runtime.cl_device.name.strip()}; "
                "lower max_batch (messages per dispatch) or use a device with more memory")

    def _new_buffer(self, nbytes: int, what: str) -> Any:
        """A zeroed device buffer (the kernel writes reply fields, never their padding: no old memory leaks)."""
        self._fits(nbytes, what)
        try:
            buf = cl.Buffer(self.ctx, _MF.READ_WRITE, nbytes)
            cl.enqueue_fill_buffer(self.queue, buf, np.uint8(0), 0, nbytes)
            return buf
        except cl.Error as exc:
            raise BackendError(
                f"the OpenCL device {self.runtime.cl_device.name.strip()} could not allocate a {what} buffer of "
                f"{nbytes:,} bytes for kernel {self.handle.name!r} ({exc}); lower max_batch or free device "
                "memory") from None

    def _new_region(self, role: str, nbytes: int) -> np.ndarray:
        """SVM, or host memory with a device buffer, for ``role`` (a power of two within the device's limit)."""
        size = min(_pow2(nbytes), max(nbytes, self.max_alloc))
        self._fits(size, role)
        if self.svm:
            arr = self.runtime.shared_zeros(size, f"the {role} buffer of kernel {self.handle.name!r}")
        else:
            arr = aligned_zeros(size)
            old = self._dev.pop(role, None)
            if old is not None:
                old.release()
            self._dev[role] = self._new_buffer(size, role)
        self._generation += 1
        return arr

    def _arg(self, role: str) -> Any:
        return cl.SVM(self._host[role]) if self.svm else self._dev[role]

    def _upload(self, role: str, nbytes: int) -> None:
        if not self.svm and nbytes:
            cl.enqueue_copy(self.queue, self._dev[role], self._host[role][:nbytes], is_blocking=False)

    def _download(self, role: str, nbytes: int, blocking: bool) -> None:
        if not self.svm and nbytes:
            cl.enqueue_copy(self.queue, self._host[role][:nbytes], self._dev[role], is_blocking=blocking)

    # -- running a batch -------------------------------------------------------------

    def _launch(self, n: int, capacity: int) -> Any:
        """Write the environment and launch (queued, no wait); returns the launch's event."""
        env = self.env
        env["tick_count"] = 0
        env["outbox_count"] = 0
        env["outbox_capacity"] = capacity
        if not self.svm:
            raw = env.tobytes()
            if self.env_live or raw != self._env_sent:
                self._upload("env", c.ENV_DTYPE.itemsize)
                self._env_sent = raw
        self._size_for(n, capacity)
        if self.serial:
            g, local = 1, 1
        else:  # one work-item per message, in work-groups of a fixed size (PoCL compiles per size)
            local = self.local_size
            g = max(1, -(-n // local)) * local
        k = self.entry
        role = self._in_role
        if self._args is None or self._args[1] != self._generation:
            k.set_args(np.uint32(n), self._arg(role), self._arg("replies"), self._arg("status"),
                       self.state_buf, self._arg("env"), self._arg("outbox"))
        else:
            if self._args[0] != n:
                k.set_arg(0, np.uint32(n))
            if self._args[2] != role:
                k.set_arg(1, self._arg(role))
        self._args = (n, self._generation, role)
        return cl.enqueue_nd_range_kernel(self.queue, k, (g,), (local,))

    def _await(self, done: Any, status: np.ndarray, n: int) -> None:
        """Wait for a small SVM dispatch whose ``n`` status words were set to _PENDING before the launch.

        The device stores each status word last, behind a fence: polling them for a moment answers sooner
        than the launch's completion event, which wakes this thread through the driver's futex."""
        self.queue.flush()
        until = time.perf_counter() + SPIN_SECONDS
        last = n - 1
        while status[last] == _PENDING or (n > 1 and (status == _PENDING).any()):
            if time.perf_counter() > until:
                done.wait()
                return

    def run(self, batch: np.ndarray) -> BatchResult:
        with self.lock:
            return self._run_batch(batch)

    # -- DeviceBatchExecutor's hooks ---------------------------------------------------

    def _dispatch(self, n: int, capacity: int) -> None:
        if self.svm and n <= _SPIN_BATCH:
            status = self._region("status", 4 * n)[:4 * n].view(np.uint32)
            status[:] = _PENDING
            self._await(self._launch(n, capacity), status, n)
        elif self.svm:
            self._launch(n, capacity).wait()
        else:  # the last read waits for the whole batch (an in-order queue)
            self._launch(n, capacity)
            self._download("status", 4 * n, blocking=not (self.read_replies or self.env_live))
            if self.read_replies:
                self._download("replies", n * self.sym.out_size, blocking=not self.env_live)
            if self.env_live:
                self._download("env", c.ENV_DTYPE.itemsize, blocking=True)

    def _save_state(self) -> None:
        cl.enqueue_copy(self.queue, self.snapshot_buf, self.state_buf, byte_count=self.state_nbytes)

    def _restore_state(self) -> None:
        cl.enqueue_copy(self.queue, self.state_buf, self.snapshot_buf, byte_count=self.state_nbytes)

    def _saved_state(self) -> np.ndarray:
        st = self.handle.state_array
        state = np.zeros(1, st.dtype)
        cl.enqueue_copy(self.queue, state.view(np.uint8), self.snapshot_buf, is_blocking=True)
        return state

    def _write_state(self, state: np.ndarray) -> None:
        cl.enqueue_copy(self.queue, self.state_buf, state.view(np.uint8), is_blocking=True)

    def run_one(self, header: Any, payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
        """One message (the latency path of ``call``): a batch of one through the same dispatch.

        With SVM and a kernel that neither sends nor reads the clock, the message is written where the
        device reads it and the result read where it wrote it: one command, no batch arrays."""
        if self.env_live or not self.svm:
            return run_as_batch_of_one(self, self.batch_buffer(1), header, payload)
        with self.lock:
            one = self._one
            if one is None or one[0] != self._generation:
                self._size_for(1, 0)
                sym = self.sym
                replies = (self._host["replies"][:sym.out_size].view(self.out_dtype)
                           if self.out_dtype is not None and sym.out_size else None)
                one = self._one = (self._generation, self.batch_buffer(1), self._host["status"][:4].view(np.uint32),
                                   replies)
            _, slot, status, replies = one
            slot["header"][0] = header
            slot["payload"][0] = payload
            status[0] = _PENDING
            self._in_role = "popped"
            self._await(self._launch(1, 0), status, 1)
            return self._one_result(int(status[0]), replies)

    def read_state(self) -> np.ndarray | None:
        """A copy of the kernel's state record, read from the device."""
        st = self.handle.state_array
        if st is None:
            return None
        with self.lock:
            if self.closed:
                return st.copy()
            out = np.zeros(1, st.dtype)
            cl.enqueue_copy(self.queue, out.view(np.uint8), self.state_buf, is_blocking=True)
            return out

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            st = self.handle.state_array
            try:
                if st is not None:  # the final state stays readable after termination
                    cl.enqueue_copy(self.queue, st.view(np.uint8), self.state_buf, is_blocking=True)
                self.queue.finish()
            finally:
                self.closed = True
                for b in [*self._dev.values(), self.state_buf, self.snapshot_buf]:
                    if b is not None:
                        b.release()
                self._dev.clear()
                self._host.clear()  # SVM regions are freed with their last view


class OpenclRuntime(RingKernelRuntime):
    """Ring kernels on an OpenCL device (a GPU, or PoCL on a CPU), one dispatch per batch.

    :param device_index: which OpenCL device (an index into the probe's device list, as ``ringcore info``
        shows it); default: the first GPU, else the first device.
    :param svm: put queues, control blocks and per-batch buffers in fine-grain shared virtual memory,
        which host and device both read and write in place (a dispatch is then one command). Default:
        when the device offers fine-grain SVM buffers. ``False`` uses device buffers and transfers.
    """

    backend_name = "opencl"

    def __init__(self, *, device_index: int | None = None, svm: bool | None = None,
                 persistent_slots: int | None = None, **options: Any) -> None:
        dev, info = _device.pick_device(device_index)
        options.setdefault("device", info)
        offered = _device.svm_capabilities(dev)["fine_grain_buffer"]
        if svm is None:
            svm = offered
        elif not isinstance(svm, bool):
            raise ValueError(f"svm={svm!r} must be True, False or None (None: use SVM where the device offers it)")
        elif svm and not offered:
            raise BackendError(f"svm=True, but the OpenCL device {dev.name.strip()} offers no fine-grain SVM "
                               "buffers; leave svm unset (device buffers are used then)")
        super().__init__(**options)
        self.cl_device = dev
        self.device_context = _device.context_for(dev)
        #: Whether host-visible memory (queues, control blocks, per-batch buffers) is fine-grain SVM.
        self.svm = svm
        persistent_slots = check_persistent_slots(persistent_slots, _device.default_persistent_slots(dev))
        #: How many work-groups of resident kernels the device runs at once (counted across the process).
        self.persistent_slots = persistent_slots

    def shared_zeros(self, nbytes: int, what: str) -> np.ndarray:
        """``nbytes`` zeroed bytes of fine-grain SVM (128-byte aligned), which host and device share in place.

        :raises BackendError: the device could not allocate them (naming ``what`` and the size).
        """
        try:
            arr = cl.svm_empty(self.device_context.context, _SVM_FLAGS, nbytes, np.uint8, alignment=128)
        except (cl.Error, MemoryError) as exc:
            raise BackendError(f"the OpenCL device {self.cl_device.name.strip()} could not allocate {what}: "
                               f"{nbytes:,} bytes of shared virtual memory ({exc}); lower the queue capacities "
                               "or max_batch, or pass svm=False") from None
        arr[:] = 0
        return arr

    def allocate(self, nbytes: int) -> np.ndarray:
        """Memory for queues and control blocks (fine-grain SVM when :attr:`svm`, which a persistent kernel
        polls); refused, naming the size, beyond the device's limit for one allocation."""
        limit = int(self.cl_device.max_mem_alloc_size)
        if nbytes > limit:
            raise BackendError(
                f"a queue of {nbytes:,} bytes exceeds the {limit:,} bytes one allocation may take on the OpenCL "
                f"device {self.cl_device.name.strip()}; lower input_capacity/output_capacity")
        if self.svm:
            return self.shared_zeros(nbytes, "a queue")
        try:
            return aligned_zeros(nbytes)
        except MemoryError:
            raise BackendError(f"out of host memory allocating a queue of {nbytes:,} bytes; lower "
                               "input_capacity/output_capacity") from None

    def prebuild(self, kernels: list[Any]) -> None:
        """Build the OpenCL programs of ``kernels`` now, in one compiler run (launches then find them cached).

        :raises KernelCompileError: a kernel is outside the language or its build failed.
        """
        self.device_context.build([lang.lower(k) for k in kernels])

    def _persistent_refusal(self, kernel: Any) -> str | None:
        why = _device.persistent_refusal(self.cl_device)
        if why is None and not self.svm:
            why = "the runtime was created with svm=False (the loop polls its queue in SVM)"
        if why is None and self.persistent_slots == 0:
            why = "persistent_slots is 0"
        return why or c.persistent_refusal(lang.lower(kernel))

    def _start_kernel(self, handle: KernelHandle) -> None:
        if handle.mode is KernelMode.PERSISTENT:
            if start_resident(handle, self.device_context.resident, self.persistent_slots,
                              persistent_groups(handle, self), lambda: OpenclPersistent(handle, self),
                              f"the opencl backend ({self.cl_device.name.strip()})"):
                return
            handle.mode = KernelMode.EVENT_DRIVEN
        super()._start_kernel(handle)

    def _create_executor(self, handle: KernelHandle) -> OpenclExecutor:
        return OpenclExecutor(handle, self)

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["programs_built"] = self.device_context.builds
        return d
