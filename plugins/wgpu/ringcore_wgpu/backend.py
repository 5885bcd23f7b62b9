"""WgpuRuntime: ring kernels compiled to WGSL and run on a WebGPU adapter, one dispatch per batch.

WebGPU cannot keep a kernel running (a dispatch must finish), so every kernel runs **event-driven**: the
loop (draining the input queue, HLC merging, replies, routing, metrics) is the core's HostLoop, and this
backend supplies :class:`WgpuExecutor`, which per batch

1. writes the batch's input slots, the parameters (lane count, kernel number, clock base, outbox
   capacity, hop limit) and the send directory into storage buffers (``queue.write_buffer``);
2. records one command buffer: a compute pass dispatching the kernel's pipeline over the batch
   (``wgsl.abi(kir).dispatch(n)`` workgroups), then copies of the status words, the replies and the
   outbox into one mappable read-back buffer; and submits it;
3. maps the read-back buffer, which waits for the work (the completion wait of wgpu-py 0.32,
   ``queue.on_submitted_work_done_sync``, is broken: the read-back is the wait);
4. delivers the outbox's sends and publishes through the core's KernelEnv, and moves the kernel's clock
   past every ``ctx.now()`` the device took.

The kernel's state lives in a storage buffer for the kernel's life (``read_state`` copies it back; at
termination it is copied into the handle's state record).

**Sends and publishes.** The WGSL target decides each send on the device from a directory the host
fills per dispatch (the runtime's kernels: running or not, their input type and free queue room; the
subscriber count of each topic the kernel publishes to), as the CPU runtime would decide it. After the
batch the host checks the runtime would still answer the same (``KernelEnv.deliverable``) and delivers
the records in lane order; when it would not (a queue filled meanwhile), or the outbox overflowed, the
batch runs again on the host through the kernel language's numpy target from the state saved before
the dispatch (``host_runs``), so results are those of every backend.

**Batches larger than the adapter's buffers** are split: one dispatch holds at most
:attr:`WgpuExecutor.batch_limit` messages (what the largest per-batch buffer allows under the device's
``max-storage-buffer-binding-size``); the core's host loop runs a larger batch as several dispatches, in
order.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import numpy as np
import wgpu

import ringcore.lang as lang
from ringcore._memory import pow2 as _pow2
from ringcore.errors import BackendError
from ringcore.kernel import KernelState
from ringcore.lang.host import KernelEnv, NumpyExecutor, lane_errors, sent_specs
from ringcore.lang.ir import Publish, stmt_exprs, walk_exprs, walk_stmts
from ringcore.lang.targets import c, wgsl
from ringcore.lang.targets.c import OutboxRecord
from ringcore.runtime import BatchResult, KernelHandle, RingKernelRuntime, run_as_batch_of_one

from . import _device

__all__ = ["WgpuRuntime", "WgpuExecutor", "OUTBOX_PER_LANE"]

log = logging.getLogger("ringcore")

#: Outbox records per message a sending kernel starts with (grown to the largest ratio seen).
OUTBOX_PER_LANE = 4
_MIN_OUTBOX = 64
_BU = wgpu.BufferUsage
_PARAMS_BYTES = 4 * wgsl.PARAMS_WORDS


def _lost(exc: BaseException) -> bool:
    return "lost" in str(exc).lower()


class WgpuExecutor:
    """Runs a kernel's batches on a WebGPU device through the kernel language's WGSL target.

    The kernel is compiled into a compute pipeline at launch (or taken from the device's cache), so a
    kernel outside the language, one that computes with 64-bit values, or one the shader compiler
    refuses fails ``launch`` with a KernelCompileError naming the Python line.
    """

    #: Inputs are copied to the device before ``run`` returns; nothing of a batch is kept.
    keeps_no_batch_data = True

    def __init__(self, handle: KernelHandle, runtime: WgpuRuntime) -> None:
        self.handle = handle
        self.runtime = runtime
        self.kir = kir = lang.lower(handle.kernel)
        self.abi = a = wgsl.abi(kir)
        dc = runtime.device_context
        self.dc = dc
        self.device = dc.device
        self.pipeline = dc.pipeline_for(kir)
        self.specs = sent_specs(kir)
        self.sends = bool(a.send_specs or a.topics)
        # The outbox comes back after a dispatch when the kernel sends or reads the clock (its tick count).
        self.outbox_live = self.sends or kir.uses_now
        self._topic_specs: dict[str, Any] = {}  # the type published on each topic (what subscribers take)
        for s in walk_stmts(kir.body):
            for e in stmt_exprs(s):
                for x in walk_exprs(e):
                    if isinstance(x, Publish):
                        self._topic_specs.setdefault(x.topic, x.msg.spec)
        self.per_lane = OUTBOX_PER_LANE
        self.host_runs = 0  # batches run again on the host (see the module docstring)
        self._numpy: Any = None
        self.out_dtype = handle.kernel.output_spec.dtype if handle.kernel.output_spec is not None else None
        self.lock = threading.Lock()  # the device's buffers: the loop's thread vs read_state callers
        self.limit = runtime.max_binding_bytes
        self.batch_limit = self._max_lanes()
        self.reader = dc.reader
        self._params_sent: bytes | None = None
        self._params_buf: Any = None
        self._bufs: dict[str, Any] = {}
        self._bind: Any = None
        self._one = np.zeros(1, handle.kernel.input_spec.slot_dtype)
        with dc.lock:
            self._create_state(handle)
        self.closed = False

    def _create_state(self, handle: KernelHandle) -> None:
        a = self.abi
        st = handle.state_array
        self.state_bytes = a.state_bytes if st is not None else 0
        size = max(16, -(-self.state_bytes // 16) * 16)
        self.state_buf = self._new("state", size, _BU.STORAGE | _BU.COPY_SRC | _BU.COPY_DST)
        if st is not None and self.state_bytes:
            self._write(self.state_buf, np.ascontiguousarray(st).view(np.uint8))
        self.snapshot_buf = self._new("state snapshot", size, _BU.COPY_SRC | _BU.COPY_DST) if self.sends else None

    # -- buffers ---------------------------------------------------------------------

    def _max_lanes(self) -> int:
        """The most messages one dispatch may take: every per-batch buffer within one binding."""
        a = self.abi
        per_lane = [a.in_slot_bytes, a.reply_bytes, 4]
        if self.sends:
            per_lane.append(4 * a.record_words * self.per_lane)
        lanes = min(self.limit // max(1, b) for b in per_lane)
        # The read-back buffer holds a dispatch's status words, replies and outbox together.
        lanes = min(lanes, self.dc.limits["max-buffer-size"] // sum(per_lane[1:]))
        if lanes < 1:
            raise BackendError(
                f"kernel {self.handle.name!r}: one message needs {max(per_lane):,} bytes of a storage buffer, more "
                f"than the {self.limit:,} bytes a binding may hold on this adapter")
        return lanes

    def _new(self, what: str, size: int, usage: int) -> Any:
        try:
            return self.device.create_buffer(size=size, usage=usage, label=f"{self.handle.name}:{what}")
        except Exception as exc:
            raise self._device_error(f"allocating the {what} buffer ({size:,} bytes)", exc) from None

    def _buffer(self, role: str, nbytes: int, usage: int) -> Any:
        """A buffer of at least ``nbytes`` (grown to a power of two within the binding limit, reused)."""
        nbytes = max(16, -(-nbytes // 16) * 16)
        cur = self._bufs.get(role)
        if cur is None or cur.size < nbytes:
            size = max(nbytes, min(_pow2(nbytes), self.limit))
            if cur is not None:
                cur.destroy()
            cur = self._bufs[role] = self._new(role, size, usage)
            if not usage & _BU.MAP_READ:  # a bound buffer changed
                self._bind = None
        return cur

    def _write(self, buf: Any, data: np.ndarray) -> None:
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
        if raw.size % 4:
            raw = np.concatenate([raw, np.zeros(4 - raw.size % 4, np.uint8)])
        self.device.queue.write_buffer(buf, 0, raw)

    def _bind_group(self) -> Any:
        if self._bind is None:
            b = self._bufs
            bufs = [b["params"], b["in"], b["out"], b["status"], self.state_buf, b["outbox"], b["dir"]]
            self._bind = self.device.create_bind_group(layout=self.dc.bind_layout, entries=[
                {"binding": i, "resource": {"buffer": x, "offset": 0, "size": x.size}} for i, x in enumerate(bufs)])
        return self._bind

    def _device_error(self, doing: str, exc: BaseException) -> BackendError:
        if _lost(exc):
            why = f"the WebGPU device was lost while {doing} for kernel {self.handle.name!r}: {exc}".strip()
            self.dc.mark_lost(why)
            return BackendError(f"{why}\nThe kernel has stopped; create a new runtime (it gets a new device)")
        return BackendError(f"the WebGPU device failed while {doing} for kernel {self.handle.name!r}: {exc}")

    # -- the directory sends are decided from ------------------------------------------

    def _directory(self) -> tuple[np.ndarray, int]:
        """The directory words (see the WGSL ABI) and ``dir_len``, from the runtime's kernels now."""
        a = self.abi
        rt = self.runtime
        kernels = rt.kernels()
        dir_len = max((k.number for k in kernels), default=0) + 1
        words = np.zeros(max(4, a.directory_words(dir_len)), "<u4")
        for i, name in enumerate(a.send_targets):
            h = rt._lookup(name)
            words[i] = h.number if h is not None else wgsl.NO_KERNEL
        for j, topic in enumerate(a.topics):
            words[len(a.send_targets) + j] = rt._publish_reach(topic, self._topic_specs[topic])
        gone = (KernelState.TERMINATING, KernelState.TERMINATED)
        base = a.dir_entries
        for k in kernels:
            e = base + wgsl.DIR_ENTRY_WORDS * k.number
            q = k.input_queue
            words[e] = wgsl.DIR_TERMINATED if k._state in gone else wgsl.DIR_RUNNING
            words[e + 1] = k.in_spec.type_id
            words[e + 2] = max(0, q.capacity - len(q))
        return words, dir_len

    # -- running a batch -------------------------------------------------------------

    def run(self, batch: np.ndarray) -> BatchResult:
        """One dispatch: at most ``batch_limit`` messages (the host loop runs larger batches in parts)."""
        if len(batch) > self.batch_limit:
            raise BackendError(f"kernel {self.handle.name!r}: a batch of {len(batch):,} messages is more than "
                               f"one dispatch holds ({self.batch_limit:,}); run it in parts")
        with self.lock, self.dc.lock:
            return self._run(batch)

    def _run(self, batch: np.ndarray) -> BatchResult:
        h = self.handle
        a = self.abi
        kir = self.kir
        n = len(batch)
        capacity = max(_MIN_OUTBOX, n * self.per_lane) if self.sends else 0
        outbox_words = a.outbox_words(max(capacity, 1))  # its record array needs one element
        reply_bytes = n * a.reply_bytes
        dev_in = self._buffer("in", n * a.in_slot_bytes, _BU.STORAGE | _BU.COPY_DST)
        dev_out = self._buffer("out", reply_bytes, _BU.STORAGE | _BU.COPY_SRC)
        dev_status = self._buffer("status", 4 * n, _BU.STORAGE | _BU.COPY_SRC)
        dev_outbox = self._buffer("outbox", 4 * outbox_words, _BU.STORAGE | _BU.COPY_SRC | _BU.COPY_DST)
        params_buf = self._buffer("params", _PARAMS_BYTES, _BU.UNIFORM | _BU.COPY_DST)
        directory, dir_len = self._directory() if self.sends else (np.zeros(4, "<u4"), 0)
        dev_dir = self._buffer("dir", 4 * len(directory), _BU.STORAGE | _BU.COPY_DST)
        out_words = 4 * (outbox_words if self.sends else wgsl.OUTBOX_HEADER_WORDS) if self.outbox_live else 0
        readback = self._buffer("readback", 4 * n + reply_bytes + out_words, _BU.MAP_READ | _BU.COPY_DST)
        base = h.clock.tick() if kir.uses_now else None  # the batch's ticks are (physical, logical + k)
        params = a.params(n, kernel_number=h.number, hlc_logical=base.logical if base is not None else 0,
                          outbox_capacity=capacity, max_hops=self.runtime.max_hops, dir_len=dir_len)
        try:
            q = self.device.queue
            raw_params = params.tobytes()
            if raw_params != self._params_sent or params_buf is not self._params_buf:
                self._write(params_buf, params)  # unchanged between most one-message dispatches: skipped
                self._params_sent, self._params_buf = raw_params, params_buf
            if n:
                self._write(dev_in, batch)
            if self.outbox_live:
                self._write(dev_outbox, np.zeros(wgsl.OUTBOX_HEADER_WORDS, "<u4"))
            if self.sends:
                self._write(dev_dir, directory)
            enc = self.device.create_command_encoder()
            if self.snapshot_buf is not None:
                enc.copy_buffer_to_buffer(self.state_buf, 0, self.snapshot_buf, 0, self.state_buf.size)
            if n:
                cp = enc.begin_compute_pass()
                cp.set_pipeline(self.pipeline)
                cp.set_bind_group(0, self._bind_group())
                cp.dispatch_workgroups(*a.dispatch(n))
                cp.end()
                enc.copy_buffer_to_buffer(dev_status, 0, readback, 0, 4 * n)
                if reply_bytes:
                    enc.copy_buffer_to_buffer(dev_out, 0, readback, 4 * n, reply_bytes)
                if out_words:
                    enc.copy_buffer_to_buffer(dev_outbox, 0, readback, 4 * n + reply_bytes, out_words)
            q.submit([enc.finish()])
            total = 4 * n + reply_bytes + out_words
            if not total:
                return BatchResult(np.zeros(0, self.out_dtype) if self.out_dtype is not None else None,
                                   np.zeros(0, bool), np.zeros(0, bool))
            raw = self.reader.read(readback, total)  # waits for the submitted work: the completion wait
        except BackendError:
            raise
        except Exception as exc:
            raise self._device_error("running a batch", exc) from None
        status = raw[:4 * n].view("<u4")
        replies = None
        if self.out_dtype is not None:
            replies = raw[4 * n:4 * n + reply_bytes].view(self.out_dtype) if reply_bytes \
                else np.zeros(n, self.out_dtype)
        env = KernelEnv(h, batch["header"], self.specs)
        words = raw[4 * n + reply_bytes:].view("<u4")
        if kir.uses_now:
            ticks = int(words[1])
            if ticks and base is not None:
                h.clock.observe(base.physical, base.logical + ticks - 1)
        if self.sends:
            claimed, _ticks, _results, records = a.read_outbox(words, capacity)
            if claimed > capacity:
                # More sends than the outbox holds: the kernel saw QUEUE_FULL for the rest, which the runtime
                # would not have answered. Grow the outbox for next time; run this batch on the host.
                self.per_lane = max(self.per_lane, -(-claimed // max(1, n)))
                self.batch_limit = self._max_lanes()
                return self._run_on_host(batch)
            recs = self._outbox_records(records)
            if not env.deliverable(recs):
                return self._run_on_host(batch)
            env.deliver(recs)
        has_reply, sites = c.decode_status(status)  # the WGSL target's status words are the C targets'
        return BatchResult(replies, has_reply, env.forwarded, lane_errors(kir, sites))

    def _read_back(self, buf: Any) -> np.ndarray:
        """The state record's bytes from ``buf`` (the state or its snapshot), through the device's reader."""
        size = -(-self.state_bytes // 4) * 4
        staging = self._buffer("state readback", size, _BU.MAP_READ | _BU.COPY_DST)
        return self.reader.copy_and_read(buf, size, staging)[:self.state_bytes].copy()

    def _outbox_records(self, records: np.ndarray) -> list[OutboxRecord]:
        """The WGSL outbox's records as the core's OutboxRecords (with the device's answers), in lane order."""
        a = self.abi
        out = []
        seq: dict[int, int] = {}
        for rec in records[np.argsort(records["lane"], kind="stable")]:
            lane = int(rec["lane"])
            spec = self.specs[int(rec["type_id"])]
            payload = np.frombuffer(rec["payload"].tobytes()[:spec.dtype.itemsize], spec.dtype)
            value = payload[0] if spec.dtype.itemsize else np.zeros(1, spec.dtype)[0]
            k = seq.get(lane, 0)
            seq[lane] = k + 1
            code = int(rec["code"])
            publish = a.is_publish(rec)
            answer = code & ~wgsl.PUBLISH_BIT if publish else code & 0xFF
            out.append(OutboxRecord(lane, k, a.send_target(rec), spec, value, publish, answer))
        return out

    def _run_on_host(self, batch: np.ndarray) -> BatchResult:
        """The batch through the core's NumpyExecutor (the CPU backend's code path) with live K2K answers,
        from the state saved before the dispatch; the new state goes back to the device."""
        self.host_runs += 1
        if self._numpy is None:
            self._numpy = NumpyExecutor(self.handle)
        st = self.handle.state_array
        state = None
        if st is not None and self.state_bytes:
            state = self._read_back(self.snapshot_buf).view(st.dtype)
        result = self._numpy.run(batch, state)
        if state is not None:
            self._write(self.state_buf, state)
        return result

    def run_one(self, header: Any, payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
        """One message (the latency path of ``call``): a batch of one through the same dispatch."""
        return run_as_batch_of_one(self, self._one, header, payload)

    def read_state(self) -> np.ndarray | None:
        """A copy of the kernel's state record, read from the device."""
        st = self.handle.state_array
        if st is None:
            return None
        with self.lock, self.dc.lock:
            if self.closed or not self.state_bytes:
                return st.copy()
            try:
                return self._read_back(self.state_buf).view(st.dtype)
            except Exception as exc:
                raise self._device_error("reading the state", exc) from None

    def close(self) -> None:
        with self.lock, self.dc.lock:
            if self.closed:
                return
            st = self.handle.state_array
            try:
                if st is not None and self.state_bytes and self.dc.lost is None:  # the final state stays readable
                    st.view(np.uint8)[:] = self._read_back(self.state_buf)
            except Exception as exc:  # a lost device: the last state copied back is what remains
                log.warning("ringcore: kernel %r: its final state could not be read back: %s", self.handle.name, exc)
            finally:
                self.closed = True
                for b in [*self._bufs.values(), self.state_buf, self.snapshot_buf]:
                    if b is not None:
                        try:
                            b.destroy()
                        except Exception:  # noqa: S110 - a lost device has freed them already
                            pass
                self._bufs.clear()
                # Released here, under the device's lock, rather than whenever the executor is collected.
                self.state_buf = self.snapshot_buf = self._bind = None


class WgpuRuntime(RingKernelRuntime):
    """Ring kernels on a WebGPU adapter (a GPU, or llvmpipe/lavapipe on a CPU), one dispatch per batch.

    :param adapter_index: which adapter (an index into the probe's list, as ``ringcore wgpu devices``
        shows it); default: the first GPU, else the first adapter.
    :param max_binding_bytes: the most bytes one per-batch buffer may take (default: the device's
        ``max-storage-buffer-binding-size``); a batch whose buffers would be larger runs as several
        dispatches.
    """

    backend_name = "wgpu"
    supports_persistent = False

    def __init__(self, *, adapter_index: int | None = None, max_binding_bytes: int | None = None,
                 **options: Any) -> None:
        adapter, info, index = _device.pick_adapter(adapter_index)
        options.setdefault("device", info)
        super().__init__(**options)
        self.adapter = adapter
        self.device_context = _device.context_for(adapter, index)
        limits = self.device_context.limits
        most = min(limits["max-storage-buffer-binding-size"], limits["max-buffer-size"])
        if max_binding_bytes is None:
            max_binding_bytes = most
        elif not isinstance(max_binding_bytes, int) or isinstance(max_binding_bytes, bool) or \
                not 256 <= max_binding_bytes <= most:
            raise ValueError(f"max_binding_bytes={max_binding_bytes!r} must be an int in 256 .. {most:,} "
                             "(the adapter's binding limit)")
        self.max_binding_bytes = max_binding_bytes

    def _persistent_refusal(self, kernel: Any) -> str | None:
        return "WebGPU cannot keep a kernel running (every dispatch must finish)"

    def prebuild(self, kernels: list[Any]) -> None:
        """Compile the pipelines of ``kernels`` now (launches then find them cached).

        :raises KernelCompileError: a kernel is outside the language or the shader compiler refused it.
        """
        for k in kernels:
            self.device_context.pipeline_for(lang.lower(k))

    def _create_executor(self, handle: KernelHandle) -> WgpuExecutor:
        if self.device_context.lost is not None:
            raise BackendError(f"{self.device_context.lost}\nCreate a new runtime: it gets a new device")
        return WgpuExecutor(handle, self)

    def info(self) -> dict[str, Any]:
        d = super().info()
        d["pipelines_built"] = self.device_context.builds
        d["max_binding_bytes"] = self.max_binding_bytes
        return d
