"""OpenclRuntime: ring kernels compiled to OpenCL C and run on an OpenCL device, one NDRange per batch.

The loop (draining the input queue, HLC merging, replies, routing, metrics) is the core's HostLoop;
this backend supplies :class:`OpenclExecutor`, which per batch

1. uploads the batch's input slots and the batch environment (``rc_env``: the HLC base, the kernel
   number, the outbox capacity) to device buffers;
2. runs ``rc_batch_<id>``: one work-item per message (a serial kernel: one work-item, in order);
3. reads back the status words, the replies and the environment, then the outbox records if any;
4. delivers the outbox's sends and publishes through the core's KernelEnv in (lane, seq) order, and
   moves the kernel's clock past every ``ctx.now()`` the device took.

The kernel's state lives in a device buffer for the kernel's whole life (``read_state`` copies it back;
at termination it is copied into the handle's state record).

**Outbox sizing.** The device cannot grow its outbox during a launch. A kernel that sends gets
``max(64, n * per_lane)`` records for a batch of ``n``, where ``per_lane`` starts at
:data:`OUTBOX_PER_LANE` and grows to the largest ratio seen. When a batch claims more records than
the capacity (``env.outbox_count`` counts every attempt), the state is restored from a device-side copy
taken before the batch and the batch runs again with room for every attempt, up to
:data:`MAX_OUTBOX_BYTES`; past that limit the batch runs on the host (below). No send is ever lost.

**Delivery results.** A device records a send and tells the kernel DELIVERED (a publish: one
subscriber) before the host can route it. After the batch the host checks that the runtime would give
exactly those answers (``KernelEnv.deliverable``) and then delivers the records in (lane, seq) order.
When it would not (a target missing or terminated, a full queue, too many hops, a publish reaching
another number of subscribers), the kernel's code took a branch it must not take: the batch runs again
on the host through the kernel language's numpy target (the CPU backend's code path) with live answers,
from the state saved before the batch, and the resulting state is written back to the device. Results
are then the same as on every backend; only such batches lose the device's speed (``host_runs``).

**Persistent mode.** Not implemented: ``supports_persistent`` is False, so a kernel launched persistent
runs event-driven and the runtime logs that it did (see docs/opencl.md for why).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import pyopencl as cl

import ringcore.lang as lang
from ringcore._memory import aligned_zeros
from ringcore.errors import BackendError
from ringcore.lang.host import KernelEnv, NumpyExecutor, lane_errors, sent_specs
from ringcore.lang.targets import c
from ringcore.runtime import BatchResult, KernelHandle, RingKernelRuntime, run_as_batch_of_one

from . import _device

__all__ = ["OpenclRuntime", "OpenclExecutor", "OUTBOX_PER_LANE", "MAX_OUTBOX_BYTES"]

log = logging.getLogger("ringcore")

#: Outbox records per message a sending kernel starts with (grown to the largest ratio seen).
OUTBOX_PER_LANE = 4
#: The most outbox memory one batch may use (the overflow strategy's limit; see the module docstring).
MAX_OUTBOX_BYTES = 256 << 20
_MIN_OUTBOX = 64
_MF = cl.mem_flags


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class OpenclExecutor:
    """Runs a kernel's batches on an OpenCL device through the kernel language's OpenCL C target.

    The kernel is compiled (and the program built, or taken from the device's cache) at launch, so a
    kernel outside the language, or one the device's compiler refuses, fails ``launch`` with a
    KernelCompileError naming the Python line.
    """

    #: Inputs are copied to the device before ``run`` returns; nothing of a batch is kept.
    keeps_no_batch_data = True

    def __init__(self, handle: KernelHandle, runtime: OpenclRuntime) -> None:
        self.handle = handle
        self.runtime = runtime
        kernel = handle.kernel
        self.kir = kir = lang.lower(kernel)
        self.sym = sym = c.symbols(kir)
        dc = runtime.device_context
        program = dc.program_for(kir)
        self.ctx = dc.context
        self.queue = cl.CommandQueue(self.ctx, dc.device)
        self.entry = cl.Kernel(program, sym.entry)
        self.serial = bool(kir.serial)
        self.specs = sent_specs(kir)
        self.sends = sym.outbox_stride > 0
        self.per_lane = OUTBOX_PER_LANE
        self.reruns = 0  # device reruns of a batch whose sends overflowed the outbox
        self.host_runs = 0  # batches that a failed K2K delivery sent to the host (see _run_on_host)
        self._numpy: Any = None
        self.out_dtype = kernel.output_spec.dtype if kernel.output_spec is not None else None
        self.lock = threading.Lock()  # the queue and buffers: the loop's thread vs read_state callers
        self.max_alloc = int(dc.device.max_mem_alloc_size)
        self.env = np.zeros(1, c.ENV_DTYPE)
        # What the device last saw of the environment: a kernel that neither sends nor reads the
        # clock never changes it, so it is uploaded (and read back) only when needed.
        self._env_sent: bytes | None = None
        self._env_live = bool(self.sends or kir.uses_now)
        self.env["kernel_number"] = handle.number
        self._one = np.zeros(1, kernel.input_spec.slot_dtype)
        self._bufs: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}
        self._status = np.zeros(64, np.uint32)
        self._outbox_host = np.zeros(0, np.uint8)
        # The state, on the device for the kernel's life.
        st = handle.state_array
        self.state_nbytes = sym.state_size if st is not None else 0
        self.state_buf = self._new_buffer(max(8, self.state_nbytes), "state")
        if st is not None:
            cl.enqueue_copy(self.queue, self.state_buf, np.ascontiguousarray(st).view(np.uint8))
        self.snapshot_buf = self._new_buffer(max(8, self.state_nbytes), "state snapshot") \
            if self.sends and st is not None else None
        self.env_buf = self._new_buffer(c.ENV_DTYPE.itemsize, "environment")
        self._ensure(handle.options.max_batch if handle.options.max_batch else 1)
        # Work-group size: the launch's block_size, within what the device allows for this kernel.
        wg = int(self.entry.get_work_group_info(cl.kernel_work_group_info.WORK_GROUP_SIZE, dc.device))
        self.local_size = max(1, min(int(handle.options.block_size or 64), wg))
        self.closed = False
        # An empty batch at launch: the driver finishes compiling the entry point for its work-group
        # size now (PoCL does it at the first enqueue), not on the kernel's first message.
        self._buffer("input", sym.slot_size)
        self._dispatch(0, 0)
        self.queue.finish()

    # -- buffers -----------------------------------------------------------------

    def _new_buffer(self, nbytes: int, what: str) -> Any:
        if nbytes > self.max_alloc:
            raise BackendError(
                f"kernel {self.handle.name!r} needs a {what} buffer of {nbytes:,} bytes, more than the "
                f"{self.max_alloc:,} bytes one allocation may take on {self.runtime.cl_device.name.strip()}; "
                "lower max_batch (messages per dispatch) or use a device with more memory")
        try:
            buf = cl.Buffer(self.ctx, _MF.READ_WRITE, nbytes)
            # Zeroed once: the kernel writes reply fields, never their padding, which must not leak old memory.
            cl.enqueue_fill_buffer(self.queue, buf, np.uint8(0), 0, nbytes)
            return buf
        except cl.Error as exc:
            raise BackendError(
                f"the OpenCL device {self.runtime.cl_device.name.strip()} could not allocate a {what} buffer of "
                f"{nbytes:,} bytes for kernel {self.handle.name!r} ({exc}); lower max_batch or free device "
                "memory") from None

    def _buffer(self, name: str, nbytes: int) -> Any:
        """A device buffer of at least ``nbytes`` (grown to a power of two, reused across batches)."""
        nbytes = max(8, nbytes)
        if self._sizes.get(name, 0) < nbytes:
            size = min(_pow2(nbytes), max(nbytes, self.max_alloc))
            old = self._bufs.pop(name, None)
            if old is not None:
                old.release()
            self._bufs[name] = self._new_buffer(size, name)
            self._sizes[name] = size
        return self._bufs[name]

    def _ensure(self, n: int) -> None:
        """Check (at launch) that a full batch of ``n`` messages fits the device's allocation limit."""
        sym = self.sym
        for what, nbytes in (("input", n * sym.slot_size), ("reply", n * sym.out_size)):
            if nbytes > self.max_alloc:
                raise BackendError(
                    f"kernel {self.handle.name!r}: a batch of max_batch={n:,} messages needs a {what} buffer of "
                    f"{nbytes:,} bytes, more than the {self.max_alloc:,} bytes one allocation may take on "
                    f"{self.runtime.cl_device.name.strip()}; launch with a smaller max_batch")

    # -- running a batch -------------------------------------------------------------

    def _dispatch(self, n: int, capacity: int) -> Any:
        """Write the environment and launch (queued, no wait); returns the outbox buffer."""
        sym = self.sym
        q = self.queue
        env = self.env
        env["tick_count"] = 0
        env["outbox_count"] = 0
        env["outbox_capacity"] = capacity
        raw = env.tobytes()
        if self._env_live or raw != self._env_sent:
            cl.enqueue_copy(q, self.env_buf, env, is_blocking=False)
            self._env_sent = raw
        outbox = self._buffer("outbox", capacity * sym.outbox_stride)
        if self.serial:
            g, local = 1, 1
        else:  # one work-item per message, in work-groups of a fixed size (PoCL compiles per size)
            local = self.local_size
            g = max(1, -(-n // local)) * local
        self.entry(q, (g,), (local,), np.uint32(n), self._bufs["input"], self._buffer("replies", n * sym.out_size),
                   self._buffer("status", 4 * n), self.state_buf, self.env_buf, outbox)
        return outbox

    def run(self, batch: np.ndarray) -> BatchResult:
        with self.lock:
            return self._run(batch)

    def _run(self, batch: np.ndarray) -> BatchResult:
        n = len(batch)
        h = self.handle
        sym = self.sym
        q = self.queue
        kir = self.kir
        slots = np.ascontiguousarray(batch)
        cl.enqueue_copy(q, self._buffer("input", n * sym.slot_size), slots, is_blocking=False)
        if self.kir.uses_now:
            base = h.clock.tick()  # the batch's ticks are (physical, logical + k), k = 0, 1, ...
            self.env["hlc_physical"] = base.physical
            self.env["hlc_logical"] = base.logical
        capacity = max(_MIN_OUTBOX, n * self.per_lane) if self.sends else 0
        if self.snapshot_buf is not None:
            cl.enqueue_copy(q, self.snapshot_buf, self.state_buf, byte_count=self.state_nbytes)
        while True:
            outbox = self._dispatch(n, capacity)
            status = self._status if len(self._status) >= n else np.zeros(_pow2(n), np.uint32)
            self._status = status
            status = status[:n]
            replies = None
            read_replies = self.out_dtype is not None and sym.out_size
            # The last read waits for the whole batch (an in-order queue); fewer commands, less PoCL overhead.
            cl.enqueue_copy(q, status, self._bufs["status"], is_blocking=not (read_replies or self._env_live))
            if self.out_dtype is not None:
                replies = h._scratch("replies", self.out_dtype, n)
                if read_replies:
                    cl.enqueue_copy(q, replies.view(np.uint8), self._bufs["replies"], is_blocking=not self._env_live)
            if self._env_live:
                cl.enqueue_copy(q, self.env, self.env_buf, is_blocking=True)
            count = int(self.env["outbox_count"][0]) if self.sends else 0
            if count <= capacity:
                break
            want = count * sym.outbox_stride
            if want > MAX_OUTBOX_BYTES or want > self.max_alloc:
                break  # more than one outbox may hold: the host runs the batch (below)
            # Rerun with room for every attempt: restore the state the batch started from.
            self.per_lane = max(self.per_lane, -(-count // n))
            capacity = _pow2(count)
            self.reruns += 1
            if self.snapshot_buf is not None:
                cl.enqueue_copy(q, self.state_buf, self.snapshot_buf, byte_count=self.state_nbytes)
        env = KernelEnv(h, batch["header"], self.specs)
        if count:
            self.per_lane = max(self.per_lane, -(-count // n))
            kept = min(count, capacity)
            raw = self._outbox_bytes(kept * sym.outbox_stride)
            cl.enqueue_copy(q, raw, outbox, is_blocking=True)
            records = c.read_outbox(kir, raw, kept)
            if count > capacity or not env.deliverable(records):
                # The device assumed every recorded send DELIVERED (a publish: one subscriber); the runtime
                # would answer otherwise, so the kernel's code took the wrong branch. Run the batch again
                # on the host, where the real answers are known, from the state the batch started from.
                return self._run_on_host(batch)
            env.deliver(records)
        ticks = int(self.env["tick_count"][0]) if kir.uses_now else 0
        if ticks:
            h.clock.observe(int(self.env["hlc_physical"][0]), int(self.env["hlc_logical"][0]) + ticks - 1)
        has_reply, sites = c.decode_status(status)
        return BatchResult(replies, has_reply, env.forwarded, lane_errors(kir, sites))

    def _run_on_host(self, batch: np.ndarray) -> BatchResult:
        """The batch through the core's NumpyExecutor (the CPU backend's code path) with live K2K answers,
        from the state saved before the device ran it; the new state goes back to the device."""
        q = self.queue
        self.host_runs += 1
        if self._numpy is None:
            self._numpy = NumpyExecutor(self.handle)
        st = self.handle.state_array
        state = None
        if st is not None:
            state = np.zeros(1, st.dtype)
            cl.enqueue_copy(q, state.view(np.uint8), self.snapshot_buf, is_blocking=True)
        result = self._numpy.run(batch, state)
        if state is not None:
            cl.enqueue_copy(q, self.state_buf, state.view(np.uint8), is_blocking=True)
        return result

    def _outbox_bytes(self, nbytes: int) -> np.ndarray:
        if self._outbox_host.size < nbytes:
            self._outbox_host = np.zeros(_pow2(nbytes), np.uint8)
        return self._outbox_host[:nbytes]

    def run_one(self, header: Any, payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
        """One message (the latency path of ``call``): a batch of one through the same dispatch."""
        return run_as_batch_of_one(self, self._one, header, payload)

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
                for b in [*self._bufs.values(), self.state_buf, self.env_buf, self.snapshot_buf]:
                    if b is not None:
                        b.release()
                self._bufs.clear()


class OpenclRuntime(RingKernelRuntime):
    """Ring kernels on an OpenCL device (a GPU, or PoCL on a CPU), one dispatch per batch.

    :param device_index: which OpenCL device (an index into the probe's device list, as ``ringcore info``
        shows it); default: the first GPU, else the first device.
    """

    backend_name = "opencl"
    #: Kernels launched persistent run event-driven (logged by the runtime); see docs/opencl.md.
    supports_persistent = False

    def __init__(self, *, device_index: int | None = None, **options: Any) -> None:
        dev, info = _device.pick_device(device_index)
        options.setdefault("device", info)
        super().__init__(**options)
        self.cl_device = dev
        self.device_context = _device.context_for(dev)

    def allocate(self, nbytes: int) -> np.ndarray:
        """Host memory for queues and control blocks; refused, naming the size, beyond the device's limit.

        The queues stay in host memory in event-driven mode, but a batch of them is copied into one device
        allocation, so a queue larger than the device can allocate at once is refused at launch.
        """
        limit = int(self.cl_device.max_mem_alloc_size)
        if nbytes > limit:
            raise BackendError(
                f"a queue of {nbytes:,} bytes exceeds the {limit:,} bytes one allocation may take on the OpenCL "
                f"device {self.cl_device.name.strip()}; lower input_capacity/output_capacity")
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

    def _create_executor(self, handle: KernelHandle) -> OpenclExecutor:
        return OpenclExecutor(handle, self)

    def _read_state(self, handle: KernelHandle) -> np.ndarray | None:
        ex = handle.loop.executor if handle.loop is not None else None
        if isinstance(ex, OpenclExecutor):
            return ex.read_state()
        return super()._read_state(handle)

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["programs_built"] = self.device_context.builds
        return d
