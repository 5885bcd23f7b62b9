"""CudaRuntime: ring kernels compiled to CUDA C by NVRTC and run on an NVIDIA GPU through CuPy.

**Memory.** Queues and ControlBlocks live in mapped pinned host memory (page-locked and mapped into the
GPU's address space; under unified addressing the host pointer is valid on the GPU): the host pushes
and pops with plain numpy views, and a resident kernel polls them with volatile loads behind
system-scope fences. A kernel's state lives in device memory for its whole life.

**Persistent mode** (the default; :mod:`ringcore_cuda.persistent`): the kernel is launched once, on its
own non-blocking stream, as ``grid_size`` blocks of the C target's ``rc_persist_<id>`` loop, which claim
messages from the input queue, run the handler and write completion records that the core's
:class:`~ringcore.lang.host.PersistentLoop` turns into replies, errors and metrics. A GPU keeps at
most ``persistent_slots`` blocks resident (default: its multiprocessors but one), counted across the
process. Kernels that send, publish or read the clock, and launches beyond the slots, run event-driven;
the runtime logs why.

**Event-driven mode:** one launch of ``rc_batch_<id>`` per batch (the core's
:class:`~ringcore.lang.host.DeviceBatchExecutor` runs the batch algorithm). The batch's input slots,
status words, replies, environment and outbox are mapped pinned memory the GPU reads and writes in
place (the host loop pops batches straight into it), so a dispatch is one launch and one stream
synchronisation.
"""

from __future__ import annotations

import logging
from typing import Any

import cupy
import numpy as np
from cupy.cuda import runtime as cudart
from cupy_backends.cuda.api import driver as cudadrv

import ringcore.lang as lang
from ringcore._memory import pow2
from ringcore.errors import BackendError
from ringcore.kernel import KernelMode
from ringcore.lang.host import DeviceBatchExecutor, check_persistent_slots, start_resident
from ringcore.lang.targets import c
from ringcore.runtime import BatchResult, KernelHandle, RingKernelRuntime, run_as_batch_of_one

from . import _device
from .persistent import CudaPersistent, resident_blocks

__all__ = ["CudaRuntime", "CudaExecutor", "DEFAULT_BLOCK"]

log = logging.getLogger("ringcore")

#: Threads per block when the launch gives no block_size (within what the compiled function allows).
DEFAULT_BLOCK = 256
_MAPPED = cudart.hostAllocMapped | cudart.hostAllocPortable


def block_size(fn: Any, asked: int | None) -> int:
    """Threads per block for ``fn``: the launch's ``block_size`` (default 256), within what the compiled
    function allows (its registers limit it)."""
    most = int(cudadrv.funcGetAttribute(cudadrv.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK, fn.ptr))
    return max(1, min(int(asked or DEFAULT_BLOCK), most))


def ptr(a: np.ndarray) -> np.uint64:
    """A host array in mapped memory as a kernel argument (its address, valid on the GPU under UVA)."""
    return np.uint64(a.ctypes.data)


class CudaExecutor(DeviceBatchExecutor):
    """Runs a kernel's batches on the GPU through the kernel language's CUDA target, one launch per batch.

    The kernel is compiled at launch (NVRTC, cached per GPU), so a kernel outside the language, or one
    NVRTC refuses, fails ``launch`` with a KernelCompileError naming the Python line.
    """

    def __init__(self, handle: KernelHandle, runtime: CudaRuntime) -> None:
        super().__init__(handle)
        self.runtime = runtime
        kir, sym = self.kir, self.sym
        dm = runtime.modules
        self.gpu = dm.device
        self.closed = False
        with self.gpu:
            self.fn = dm.program_for(kir).get_function(sym.entry)
            self.stream = cupy.cuda.Stream(non_blocking=True)
            self.block = 1 if self.serial else block_size(self.fn, handle.options.block_size)
            self.env = self._region("env", c.ENV_DTYPE.itemsize)[:c.ENV_DTYPE.itemsize].view(c.ENV_DTYPE)
            self.env["kernel_number"] = handle.number
            st = handle.state_array
            self.state_nbytes = sym.state_size if st is not None else 0
            self.state = runtime.device_alloc(max(8, self.state_nbytes), f"the state of kernel {handle.name!r}")
            self.snapshot = (runtime.device_alloc(max(8, self.state_nbytes), f"a state snapshot of {handle.name!r}")
                             if self.sends and st is not None else None)
            if st is not None:
                self._copy(self.state.ptr, np.ascontiguousarray(st).ctypes.data, self.state_nbytes,
                           cudart.memcpyHostToDevice, wait=True)
            # A batch is at most what the input queue holds: its buffers are allocated now, so that a GPU
            # short of memory fails the launch, cleanly, not a batch later.
            most = min(int(handle.options.max_batch or 1), handle.input_queue.capacity)
            self._size_for(most, self.outbox_capacity(most))
            self._launch(0, 0)  # the module's first launch happens now (and fails now), not on the first message
            self._wait()

    # -- memory ------------------------------------------------------------------------

    def _new_region(self, role: str, nbytes: int) -> np.ndarray:
        """Mapped pinned host bytes for ``role``, which the GPU reads and writes in place (a power of two)."""
        return self.runtime.mapped_zeros(pow2(nbytes), f"the {role} buffer of kernel {self.handle.name!r}")

    def _copy(self, dst: int, src: int, nbytes: int, kind: int, wait: bool = False) -> None:
        if nbytes:
            cudart.memcpyAsync(dst, src, nbytes, kind, self.stream.ptr)
        if wait:
            self.stream.synchronize()

    # -- running ---------------------------------------------------------------------

    def _launch(self, n: int, capacity: int) -> None:
        """Launch ``rc_batch_<id>`` over ``n`` messages on the executor's stream (no wait)."""
        env = self.env
        env["tick_count"] = 0
        env["outbox_count"] = 0
        env["outbox_capacity"] = capacity
        self._size_for(n, capacity)
        grid = 1 if self.serial else max(1, -(-n // self.block))
        h = self._host
        args = (np.uint32(n), ptr(h[self._in_role]), ptr(h["replies"]), ptr(h["status"]), np.uint64(self.state.ptr),
                ptr(h["env"]), ptr(h["outbox"]))
        try:
            self.fn((grid,), (self.block,), args, stream=self.stream)
        except cudart.CUDARuntimeError as exc:
            raise self.runtime.gpu_error(f"launching kernel {self.handle.name!r}", exc) from None

    def _wait(self) -> None:
        try:
            self.stream.synchronize()
        except cudart.CUDARuntimeError as exc:
            raise self.runtime.gpu_error(f"running kernel {self.handle.name!r}", exc) from None

    def run(self, batch: np.ndarray) -> BatchResult:
        with self.lock, self.gpu:
            return self._run_batch(batch)

    # -- DeviceBatchExecutor's hooks --------------------------------------------------

    def _dispatch(self, n: int, capacity: int) -> None:
        self._launch(n, capacity)
        self._wait()

    def _save_state(self) -> None:
        self._copy(self.snapshot.ptr, self.state.ptr, self.state_nbytes, cudart.memcpyDeviceToDevice)

    def _restore_state(self) -> None:
        self._copy(self.state.ptr, self.snapshot.ptr, self.state_nbytes, cudart.memcpyDeviceToDevice)

    def _saved_state(self) -> np.ndarray:
        state = np.zeros(1, self.handle.state_array.dtype)
        self._copy(state.ctypes.data, self.snapshot.ptr, self.state_nbytes, cudart.memcpyDeviceToHost, wait=True)
        return state

    def _write_state(self, state: np.ndarray) -> None:
        self._copy(self.state.ptr, state.ctypes.data, self.state_nbytes, cudart.memcpyHostToDevice, wait=True)

    def run_one(self, header: Any, payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
        """One message (the latency path of ``call``): written where the GPU reads it, one launch, one wait."""
        if self.env_live:
            return run_as_batch_of_one(self, self.batch_buffer(1), header, payload)
        with self.lock, self.gpu:
            slot = self.batch_buffer(1)
            slot["header"][0] = header
            slot["payload"][0] = payload
            self._in_role = "popped"
            self._dispatch(1, 0)
            replies = self._replies(1) if self.read_replies else None
            return self._one_result(int(self._status(1)[0]), replies)

    def read_state(self) -> np.ndarray | None:
        """A copy of the kernel's state record, read from device memory."""
        st = self.handle.state_array
        if st is None:
            return None
        with self.lock, self.gpu:
            if self.closed:
                return st.copy()
            out = np.zeros(1, st.dtype)
            self._copy(out.ctypes.data, self.state.ptr, self.state_nbytes, cudart.memcpyDeviceToHost, wait=True)
            return out

    def close(self) -> None:
        with self.lock, self.gpu:
            if self.closed:
                return
            try:
                st = self.handle.state_array
                if st is not None:  # the final state stays readable after termination
                    self._copy(st.ctypes.data, self.state.ptr, self.state_nbytes, cudart.memcpyDeviceToHost,
                               wait=True)
            finally:
                self.closed = True
                self._host.clear()  # mapped memory is freed with its last view
                self.state = self.snapshot = None


class CudaRuntime(RingKernelRuntime):
    """Ring kernels on an NVIDIA GPU through CuPy: resident (persistent) by default, or one launch per batch.

    :param device_index: which GPU (as ``ringcore cuda devices`` lists them); default: the first.
    :param persistent_slots: how many blocks of resident kernels the GPU runs at once, across the process
        (default: its multiprocessors but one); 0 runs every kernel event-driven.
    """

    backend_name = "cuda"

    def __init__(self, *, device_index: int | None = None, persistent_slots: int | None = None,
                 **options: Any) -> None:
        index, info = _device.pick_device(device_index)
        options.setdefault("device", info)
        modules = _device.modules_for(index)
        slots = check_persistent_slots(persistent_slots, _device.default_persistent_slots(modules.props))
        super().__init__(**options)
        #: The GPU's index (as CuPy numbers them) and its module cache.
        self.device_index = index
        self.modules = modules
        #: How many blocks of resident kernels the GPU may run at once (counted across the process).
        self.persistent_slots = slots

    @property
    def gpu_name(self) -> str:
        return str(self.modules.props["name"])

    def gpu_error(self, doing: str, exc: Exception) -> BackendError:
        """A BackendError for a CUDA error while ``doing`` something (a kernel fault leaves the context unusable)."""
        return BackendError(f"the GPU {self.gpu_name} failed {doing}: {exc}; a fault inside a kernel leaves the "
                            "CUDA context unusable: restart the process (and run the kernel on the cpu backend "
                            "to find the message that triggers it)")

    def mapped_zeros(self, nbytes: int, what: str) -> np.ndarray:
        """``nbytes`` zeroed bytes of mapped pinned host memory (page-aligned), valid on the GPU at the same
        address; freed when the last view of it goes.

        :raises BackendError: the driver could not allocate them (naming ``what`` and the size).
        """
        with self.modules.device:
            try:
                mem = cupy.cuda.PinnedMemory(nbytes, _MAPPED)
            except (cudart.CUDARuntimeError, MemoryError) as exc:
                raise BackendError(f"could not allocate {what}: {nbytes:,} bytes of mapped pinned host memory "
                                   f"for the GPU {self.gpu_name} ({exc}); lower the queue capacities or "
                                   "max_batch") from None
        arr = np.ndarray((nbytes,), np.uint8, cupy.cuda.PinnedMemoryPointer(mem, 0))
        arr[:] = 0
        return arr

    def device_alloc(self, nbytes: int, what: str) -> Any:
        """``nbytes`` of device memory (a CuPy MemoryPointer, zeroed on the runtime's device)."""
        with self.modules.device:
            try:
                mem = cupy.cuda.alloc(nbytes)
                cudart.memset(mem.ptr, 0, nbytes)
            except (cudart.CUDARuntimeError, cupy.cuda.memory.OutOfMemoryError) as exc:
                raise BackendError(f"the GPU {self.gpu_name} could not allocate {what}: {nbytes:,} bytes ({exc}); "
                                   "free device memory or lower max_batch") from None
        return mem

    def allocate(self, nbytes: int) -> np.ndarray:
        """Memory for queues and control blocks: mapped pinned host memory, which a resident kernel polls."""
        return self.mapped_zeros(nbytes, "a queue")

    def prebuild(self, kernels: list[Any]) -> None:
        """Compile ``kernels`` now, in one NVRTC run (launches then find them cached).

        :raises KernelCompileError: a kernel is outside the language or NVRTC refused it.
        """
        self.modules.build([lang.lower(k) for k in kernels])

    def _persistent_refusal(self, kernel: Any) -> str | None:
        why = _device.persistent_refusal(self.modules.props)
        if why is None and self.persistent_slots == 0:
            why = "persistent_slots is 0"
        return why or c.persistent_refusal(lang.lower(kernel))

    def _start_kernel(self, handle: KernelHandle) -> None:
        if handle.mode is KernelMode.PERSISTENT:
            if start_resident(handle, self.modules.resident, self.persistent_slots, resident_blocks(handle),
                              lambda: CudaPersistent(handle, self), f"the cuda backend ({self.gpu_name})"):
                return
            handle.mode = KernelMode.EVENT_DRIVEN
        super()._start_kernel(handle)

    def _create_executor(self, handle: KernelHandle) -> CudaExecutor:
        return CudaExecutor(handle, self)

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["modules_built"] = self.modules.builds
        d["resident_blocks"] = self.modules.resident.used
        return d
