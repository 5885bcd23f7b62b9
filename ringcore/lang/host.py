"""The host side of a compiled kernel, the same for every backend that runs batches from the host.

:class:`KernelEnv` gives generated code its runtime services for one batch
(``env.send``, ``env.now``, the lane ids); :func:`batch_inputs` and friends
turn a batch of queue slots into the per-field arrays a target's ``run``
takes; :func:`lane_errors` turns the per-lane status a target returns into the
errors the host loop reports. The CPU backend's numpy executor uses all of
them, and a device backend's event-driven mode delivers its outbox through
:meth:`KernelEnv.send` in the same way.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .._hostloop import _IN_FLIGHT, _SHOULD_TERMINATE, _SMALL_BATCH, BatchResult, HostLoop, run_as_batch_of_one
from .._memory import pow2 as _pow2
from ..control import ErrorCode
from ..errors import BackendError, KernelCompileError
from ..k2k import DeliveryResult
from ..message import MessageHeader, MessageSpec
from .ir import DELIVERY_CODES, KernelIR, Publish, Send, stmt_exprs, walk_exprs, walk_stmts
from .targets.c import STATUS_FAILED as _FAILED
from .targets.c import STATUS_REPLY as _REPLY
from .targets.c import decode_status

if TYPE_CHECKING:
    from ..queue import RingQueue
    from ..runtime import KernelHandle

__all__ = ["KernelEnv", "NumpyExecutor", "DeviceBatchExecutor", "ProgramCache", "ResidentSlots", "ResidentDevice", "check_persistent_slots", "start_resident", "PersistentDevice", "PersistentLoop", "field_arrays", "state_arrays",
           "lane_errors", "sent_specs"]

log = logging.getLogger("ringcore")

_CODE = {r: np.uint32(c) for r, c in DELIVERY_CODES.items()}
_DELIVERED = int(DELIVERY_CODES[DeliveryResult.DELIVERED])


def field_arrays(records: np.ndarray, spec_fields: dict[str, Any]) -> dict[str, np.ndarray]:
    """Views of a structured array's fields: ``(n,)`` for scalars, ``(n, size)`` for arrays (C order)."""
    out: dict[str, np.ndarray] = {}
    n = len(records)
    for name in spec_fields:
        a = records[name]
        out[name] = a.reshape(n, -1) if a.ndim > 1 else a
    return out


def state_arrays(state: np.ndarray | None) -> dict[str, np.ndarray]:
    """Views of a state record (shape (1,)): ``(1,)`` for scalars, ``(size,)`` for arrays; writes land in it."""
    if state is None:
        return {}
    out: dict[str, np.ndarray] = {}
    for name in state.dtype.names or ():
        a = state[name]
        out[name] = a.reshape(-1) if a.ndim > 1 else a
    return out


def sent_specs(kir: KernelIR) -> dict[int, MessageSpec]:
    """The message types a kernel sends or publishes, by type id."""
    specs: dict[int, MessageSpec] = {}
    bodies = [kir.body] + [f.body for f in kir.funcs.values()]
    for body in bodies:
        for s in walk_stmts(body):
            for e in stmt_exprs(s):
                for x in walk_exprs(e):
                    if isinstance(x, (Send, Publish)):
                        specs[x.msg.spec.type_id] = x.msg.spec
    return specs


def lane_errors(kir: KernelIR, status: np.ndarray) -> list[tuple[int, int, str]]:
    """``(lane, ErrorCode, detail)`` for every lane whose status names an error site."""
    bad = np.flatnonzero(status)
    if not len(bad):
        return []
    texts = [e.describe(kir.filename) for e in kir.errors]
    out = []
    for i in bad.tolist():
        site = int(status[i])
        text = texts[site - 1] if 0 < site <= len(texts) else f"the kernel failed with unknown error site {site}"
        out.append((i, int(ErrorCode.HANDLER_EXCEPTION), text))
    return out


class KernelEnv:
    """Runtime services for one batch of a compiled kernel (the ``env`` of the numpy target's ABI).

    :param handle: the kernel.
    :param headers: the batch's message headers (a structured array), for the
        reply obligation and hop count each K2K send carries on.
    :param specs: the message types the kernel sends, by type id.
    """

    __slots__ = ("handle", "headers", "specs", "thread_id", "kernel_number", "forwarded")

    def __init__(self, handle: KernelHandle, headers: np.ndarray, specs: dict[int, MessageSpec]) -> None:
        n = len(headers)
        self.handle = handle
        self.headers = headers
        self.specs = specs
        self.thread_id = np.arange(n, dtype=np.uint32)
        self.kernel_number = np.uint32(handle.number)
        #: Lanes whose message was forwarded by a delivered send (their reply obligation went with it).
        self.forwarded = np.zeros(n, dtype=bool)

    def send(self, target: str | np.ndarray, type_id: int, lanes: np.ndarray,
             fields: dict[str, np.ndarray]) -> np.ndarray:
        """Send one message per lane in ``lanes`` (in order); the DELIVERY_CODES, one per lane."""
        spec = self.specs[type_id]
        m = len(lanes)
        codes = np.empty(m, dtype=np.uint32)
        if m == 0:
            return codes
        recs = self._records(spec, m, fields)
        from_record = spec.cls.from_record
        forward = self.handle.runtime._forward
        hdr = self.headers
        uniform = isinstance(target, str)
        targets = None if uniform else np.asarray(target).tolist()
        lane_list = np.asarray(lanes).tolist()
        for k, lane in enumerate(lane_list):
            parent = MessageHeader._make(hdr[lane].tolist())
            res = forward(self.handle, target if uniform else targets[k], from_record(recs[k]), parent)
            codes[k] = _CODE[res]
            if res is DeliveryResult.DELIVERED:
                self.forwarded[lane] = True
        return codes

    def publish(self, topic: str, type_id: int, lanes: np.ndarray, fields: dict[str, np.ndarray]) -> np.ndarray:
        """Publish one message per lane in ``lanes`` (in order) on ``topic``; subscribers reached, per lane."""
        spec = self.specs[type_id]
        recs = self._records(spec, len(lanes), fields)
        publish = self.handle.runtime.publish
        counts = np.empty(len(lanes), dtype=np.uint32)
        for k in range(len(lanes)):
            counts[k] = publish(topic, spec.cls.from_record(recs[k]), _source=self.handle)
        return counts

    @staticmethod
    def _records(spec: MessageSpec, m: int, fields: dict[str, np.ndarray]) -> np.ndarray:
        recs = np.zeros(m, spec.dtype)
        for name, values in fields.items():
            col = recs[name]
            col[...] = values.reshape(col.shape) if col.ndim > 1 else values
        return recs

    def deliver(self, records: Iterable[Any]) -> list[int]:
        """Deliver a device's outbox after its batch, record by record, in the order given.

        ``records`` are :class:`ringcore.lang.targets.c.OutboxRecord` (``read_outbox`` returns them in
        (lane, seq) order): a send goes through the runtime's K2K routing with its lane's header (so
        the lane's message counts as forwarded when delivered), a publish through ``runtime.publish``.
        Returns, per record, the DeliveryResult code of a send or the subscriber count of a publish;
        failed deliveries are counted in the kernel's metrics by the runtime, as for any send.
        """
        handle = self.handle
        runtime = handle.runtime
        hdr = self.headers
        out: list[int] = []
        for rec in records:
            if not rec.publish and rec.answer is not None and rec.answer != _DELIVERED:
                handle.telemetry.k2k_failed += 1  # the device decided it failed (as ctx.send counts it)
                out.append(rec.answer)
                continue
            msg = rec.spec.cls.from_record(rec.payload)
            if rec.publish:
                out.append(runtime.publish(rec.target, msg, _source=handle))
                continue
            parent = MessageHeader._make(hdr[rec.lane].tolist())
            res = runtime._forward(handle, rec.target, msg, parent)
            if res is DeliveryResult.DELIVERED:
                self.forwarded[rec.lane] = True
            out.append(int(_CODE[res]))
        return out

    def deliverable(self, records: Iterable[Any]) -> bool:
        """Whether delivering ``records`` now would give each the answer the device gave the kernel
        (``record.answer``: a send's DELIVERY code, a publish's subscriber count; None, what a device
        that cannot ask assumes: DELIVERED, one subscriber).

        A device backend checks this before :meth:`deliver`; when it is False, the kernel's code saw
        results the runtime would not give, and the backend runs the batch again where the real results
        are known (the host). Queue room is checked for every record to one kernel together; a producer
        racing to fill that queue between this check and the delivery can still make a send fail (it is
        counted in the sender's metrics).
        """
        runtime = self.handle.runtime
        hops = self.headers["hops"]
        room: dict[int, int] = {}
        for rec in records:
            if rec.publish:
                if runtime._publish_reach(rec.target, rec.spec) != (1 if rec.answer is None else rec.answer):
                    return False
                continue
            want = _DELIVERED if rec.answer is None else rec.answer
            failure, dest = runtime._send_verdict(rec.target, rec.spec.cls, int(hops[rec.lane]) + 1)
            if failure is not None:
                if int(_CODE[failure]) != want:
                    return False
                continue
            left = room.get(dest.number)
            if left is None:
                q = dest.input_queue
                left = q.capacity - len(q)
            got = _DELIVERED if left > 0 else int(_CODE[DeliveryResult.QUEUE_FULL])
            if got != want:
                return False
            if left > 0:
                room[dest.number] = left - 1
        return True

    def header(self, name: str) -> np.ndarray:
        """A header field of every message of the batch (``ctx.header.<name>``)."""
        return self.headers[name]

    def now(self, lanes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tick the kernel's clock once per lane: ``(physical u64, logical u32)`` arrays, increasing in lane order."""
        phys, logical = self.handle.clock.stamp_many(len(lanes))
        return phys, logical.astype(np.uint32)


class NumpyExecutor:
    """Runs a batch through the kernel's numpy target: one vectorised call per batch.

    The CPU backend's executor, and the host path of device backends (a batch
    whose device run must be redone with live K2K answers).

    The kernel is compiled when it is launched, so a kernel outside the
    language fails at ``launch`` with a KernelCompileError naming the line.
    """

    #: The compiled code copies what it reads; replies and sends are built from copies.
    keeps_no_batch_data = True

    def __init__(self, handle: KernelHandle) -> None:
        self.handle = handle
        kernel = handle.kernel
        from . import load_numpy, lower

        self.kir = lower(kernel)
        self._run = load_numpy(kernel)
        self._in_fields = kernel.input_spec.fields
        out = kernel.output_spec
        self._out_dtype = out.dtype if out is not None else None
        self._out_fields = out.fields if out is not None else None
        self._specs = sent_specs(self.kir)
        self._state = state_arrays(handle.state_array)
        self._one = np.zeros(1, kernel.input_spec.slot_dtype)

    def run(self, batch: np.ndarray, state: np.ndarray | None = None) -> BatchResult:
        """Run ``batch``; ``state``: another state record to run against (default: the kernel's own)."""
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
            has_reply, status = self._run(n, inp, out, self._state if state is None else state_arrays(state), env)
        return BatchResult(replies, np.asarray(has_reply, dtype=bool), env.forwarded, lane_errors(self.kir, status))

    def run_one(self, header: Any, payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
        """One message (the latency path of ``call``) through the same compiled code, as a batch of one."""
        return run_as_batch_of_one(self, self._one, header, payload)

    def close(self) -> None:
        pass


class DeviceBatchExecutor:
    """The event-driven batch of a device backend that runs the C targets' ``rc_batch_<ident>``,
    written once (the OpenCL and CUDA backends subclass it; see ``ringcore.lang.targets.c`` for the ABI).

    Per batch: stage the input slots where the device reads them; set the environment (the HLC base,
    the outbox capacity); dispatch and wait; then decode the status words and replies, deliver the
    outbox's sends and publishes through :class:`KernelEnv` in (lane, seq) order and move the kernel's
    clock past every ``ctx.now()`` the device took.

    **Outbox sizing.** The device cannot grow its outbox during a launch. A kernel that sends gets
    ``max(MIN_OUTBOX, n * per_lane)`` records for a batch of ``n``; ``per_lane`` starts at
    :attr:`OUTBOX_PER_LANE` and grows to the largest ratio seen. When a batch claims more records than
    the capacity (``env.outbox_count`` counts every attempt), the state is restored from a device-side
    copy taken before the batch and the batch runs again with room for every attempt, up to
    :attr:`MAX_OUTBOX_BYTES`; past that the batch runs on the host. No send is ever lost.

    **Delivery results.** The device tells the kernel DELIVERED (a publish: one subscriber) before the
    host can route. When :meth:`KernelEnv.deliverable` says the runtime would answer otherwise, the
    kernel took a branch it must not take: the batch runs again on the host through the numpy target
    with live answers, from the state saved before the batch, and the new state goes back to the device
    (``host_runs`` counts such batches).

    A subclass sets ``env`` (a host view, ``c.ENV_DTYPE``, shape (1,), that :meth:`_dispatch` sends to
    the device and brings back) and implements the hooks below; callers hold ``lock``.
    """

    #: Inputs are copied to the device before ``run`` returns; nothing of a batch is kept.
    keeps_no_batch_data = True
    #: Outbox records per message a sending kernel starts with (grown to the largest ratio seen).
    OUTBOX_PER_LANE = 4
    #: The fewest outbox records a sending kernel's batch gets.
    MIN_OUTBOX = 64
    #: The most outbox memory one batch may use (past it the batch runs on the host).
    MAX_OUTBOX_BYTES = 256 << 20

    env: np.ndarray

    def __init__(self, handle: KernelHandle) -> None:
        from . import lower
        from .targets import c

        self.handle = handle
        kernel = handle.kernel
        self.kir = kir = lower(kernel)
        self.sym = c.symbols(kir)
        self.serial = bool(kir.serial)
        self.specs = sent_specs(kir)
        self.sends = self.sym.outbox_stride > 0
        self.per_lane = self.OUTBOX_PER_LANE
        self.reruns = 0  # device reruns of a batch whose sends overflowed the outbox
        self.host_runs = 0  # batches that a failed K2K delivery sent to the host (see _run_on_host)
        self._numpy: NumpyExecutor | None = None
        self.out_dtype = kernel.output_spec.dtype if kernel.output_spec is not None else None
        self.slot_dtype = kernel.input_spec.slot_dtype
        #: Whether the device returns a reply payload per message (a reply type with fields).
        self.read_replies = self.out_dtype is not None and self.sym.out_size > 0
        #: Whether the device reads or writes the environment beyond the kernel number.
        self.env_live = bool(self.sends or kir.uses_now)
        self.lock = threading.Lock()  # the device's queue and buffers: the loop's thread vs read_state callers
        #: Host-visible bytes by role ("input", "popped", "replies", "status", "outbox", "env"), which the
        #: device reads and writes in place (shared or mapped memory) or which :meth:`_upload` and
        #: :meth:`_download` move to and from device copies.
        self._host: dict[str, np.ndarray] = {}
        #: The region the next launch reads its input slots from ("input", or "popped" where the host loop
        #: popped the batch straight into :meth:`batch_buffer`).
        self._in_role = "input"

    def outbox_capacity(self, n: int) -> int:
        """Outbox records a batch of ``n`` starts with (0 for a kernel that never sends)."""
        return max(self.MIN_OUTBOX, n * self.per_lane) if self.sends else 0

    # -- host-visible regions -------------------------------------------------------------

    def _region(self, role: str, nbytes: int) -> np.ndarray:
        """The host-visible bytes of ``role``, at least ``nbytes`` (grown through :meth:`_new_region`, reused)."""
        nbytes = max(64, nbytes)
        cur = self._host.get(role)
        if cur is not None and cur.nbytes >= nbytes:
            return cur
        arr = self._host[role] = self._new_region(role, nbytes)
        return arr

    def _size_for(self, n: int, capacity: int) -> None:
        """Grow the per-batch regions for ``n`` messages and ``capacity`` outbox records."""
        sym = self.sym
        self._region("input", n * sym.slot_size)
        self._region("outbox", capacity * sym.outbox_stride)
        self._region("replies", n * sym.out_size)
        self._region("status", 4 * n)

    def batch_buffer(self, n: int) -> np.ndarray:
        """Room for a batch of ``n`` input slots where the device reads them (the host loop pops into it).

        Its own region: the host loop may hand ``run`` a subset of such a batch (messages of the kernel's
        type) and still read the whole batch's headers afterwards, so a subset is copied elsewhere."""
        nbytes = n * self.sym.slot_size
        return self._region("popped", nbytes)[:nbytes].view(self.slot_dtype)

    def _stage_input(self, batch: np.ndarray) -> None:
        """Put ``batch``'s input slots where the next dispatch reads them."""
        nbytes = len(batch) * self.sym.slot_size
        popped = self._host.get("popped")
        if popped is not None and batch.ctypes.data == popped.ctypes.data:  # popped where the device reads
            self._in_role = "popped"
        else:
            self._in_role = "input"
            self._region("input", nbytes)[:nbytes] = np.ascontiguousarray(batch).view(np.uint8).reshape(-1)
        self._upload(self._in_role, nbytes)

    def _status(self, n: int) -> np.ndarray:
        """The batch's ``n`` status words (u32), as :meth:`_dispatch` left them on the host."""
        return self._host["status"][:4 * n].view(np.uint32)

    def _replies(self, n: int) -> np.ndarray:
        """The batch's ``n`` reply payloads (``out_dtype``), as :meth:`_dispatch` left them on the host."""
        return self._host["replies"][:n * self.sym.out_size].view(self.out_dtype)

    def _outbox(self, count: int) -> np.ndarray:
        """The first ``count`` outbox records' bytes on the host."""
        nbytes = count * self.sym.outbox_stride
        self._download("outbox", nbytes, blocking=True)
        return self._host["outbox"][:nbytes]

    def _grow_outbox(self, records: int) -> bool:
        """Make room for ``records`` outbox records; False when the device cannot (the host runs the batch)."""
        try:
            self._region("outbox", records * self.sym.outbox_stride)
        except BackendError:
            return False
        return True

    # -- what a backend implements ---------------------------------------------------------

    def _new_region(self, role: str, nbytes: int) -> np.ndarray:
        """New zeroed host-visible bytes for ``role``, at least ``nbytes`` (and any device copy they need).

        :raises BackendError: the device cannot hold them (naming the size and what to lower)."""
        raise NotImplementedError

    def _upload(self, role: str, nbytes: int) -> None:
        """Move the first ``nbytes`` of ``role`` to the device's copy (nothing where the device reads in place)."""

    def _download(self, role: str, nbytes: int, blocking: bool) -> None:
        """Move the first ``nbytes`` of ``role`` back from the device's copy (nothing where it writes in place)."""

    def _dispatch(self, n: int, capacity: int) -> None:
        """Run the entry point over ``n`` messages with an outbox of ``capacity`` records and wait; after it,
        the status words, the replies (when ``read_replies``) and ``env`` are on the host."""
        raise NotImplementedError

    def _save_state(self) -> None:
        """Copy the state, on the device, to where :meth:`_restore_state` and :meth:`_saved_state` find it."""
        raise NotImplementedError

    def _restore_state(self) -> None:
        raise NotImplementedError

    def _saved_state(self) -> np.ndarray:
        """The saved state record (a host array of the state's dtype, shape (1,))."""
        raise NotImplementedError

    def _write_state(self, state: np.ndarray) -> None:
        """Make ``state`` (a host record) the device's state."""
        raise NotImplementedError

    # -- the batch ---------------------------------------------------------------------------

    def _run_batch(self, batch: np.ndarray) -> BatchResult:
        from .targets import c

        n = len(batch)
        h = self.handle
        kir = self.kir
        stride = self.sym.outbox_stride
        self._stage_input(batch)
        if kir.uses_now:
            base = h.clock.tick()  # the batch's ticks are (physical, logical + k), k = 0, 1, ...
            self.env["hlc_physical"] = base.physical
            self.env["hlc_logical"] = base.logical
        capacity = self.outbox_capacity(n)
        saved = self.sends and h.state_array is not None
        if saved:
            self._save_state()
        while True:
            self._dispatch(n, capacity)
            count = int(self.env["outbox_count"][0]) if self.sends else 0
            if count <= capacity:
                break
            if count * stride > self.MAX_OUTBOX_BYTES or not self._grow_outbox(_pow2(count)):
                break  # more than one outbox may hold: the host runs the batch (below)
            # Rerun with room for every attempt, from the state the batch started from.
            self.per_lane = max(self.per_lane, -(-count // n))
            capacity = _pow2(count)
            self.reruns += 1
            if saved:
                self._restore_state()
        status = self._status(n)
        replies = None
        if self.out_dtype is not None:
            replies = self._replies(n) if self.read_replies else h._scratch("replies", self.out_dtype, n)
        env = KernelEnv(h, batch["header"], self.specs)
        if count:
            self.per_lane = max(self.per_lane, -(-count // n))
            kept = min(count, capacity)
            records = c.read_outbox(kir, self._outbox(kept), kept)
            if count > capacity or not env.deliverable(records):
                # The device assumed every recorded send DELIVERED (a publish: one subscriber); the runtime
                # would answer otherwise, so the kernel's code took the wrong branch.
                return self._run_on_host(batch)
            env.deliver(records)
        ticks = int(self.env["tick_count"][0]) if kir.uses_now else 0
        if ticks:
            h.clock.observe(int(self.env["hlc_physical"][0]), int(self.env["hlc_logical"][0]) + ticks - 1)
        has_reply, sites = decode_status(status)
        return BatchResult(replies, has_reply, env.forwarded, lane_errors(kir, sites))

    def _run_on_host(self, batch: np.ndarray) -> BatchResult:
        """The batch through the core's NumpyExecutor (the CPU backend's code path) with live K2K answers,
        from the state saved before the device ran it; the new state goes back to the device."""
        self.host_runs += 1
        if self._numpy is None:
            self._numpy = NumpyExecutor(self.handle)
        state = self._saved_state() if self.handle.state_array is not None else None
        result = self._numpy.run(batch, state)
        if state is not None:
            self._write_state(state)
        return result

    def _one_result(self, word: int, replies: np.ndarray | None) -> tuple[Any, bool, tuple[int, str] | None]:
        """``run_one``'s answer from a lone message's status word and reply payload view."""
        if word & _FAILED:
            _, code, detail = lane_errors(self.kir, np.array([word & ~_FAILED], np.uint32))[0]
            return None, False, (code, detail)
        if word == _REPLY:
            if replies is None:  # a reply type with no fields
                return tuple(np.zeros(1, self.out_dtype)[0].item()), False, None
            return replies.copy()[0].item(), False, None  # a copy: array fields would be views
        return None, False, None


class PersistentDevice(Protocol):
    """What a device backend supplies for a kernel its device keeps resident (the C targets' persistent
    loop, ``rc_persist_<ident>``: see ``ringcore.lang.targets.c``)."""

    #: The completion queue: records of ``c.done_dtype(kir)``; the device produces, the host consumes.
    done_queue: RingQueue

    def exited(self) -> bool:
        """Whether the device loop has returned."""
        ...

    def close(self) -> None:
        """Called once the loop thread is done: make sure the device loop has stopped (set
        ``should_terminate`` if it runs), copy the state into the handle, free device memory."""
        ...


class PersistentLoop(HostLoop):
    """The host side of a kernel that runs resident on a device.

    The device consumes the kernel's input queue itself (the host never pops it); this thread consumes the
    device's completion queue and does, per batch of completions, what the host loop does after a batch
    ran: clock merge, error accounting, replies and their routing, metrics, the ControlBlock. So a
    persistent kernel behaves as an event-driven one, minus the launches. A caller of ``call`` takes the
    completions itself while its own is on the way (:meth:`call_inline`).

    Waiting: with work on the device the thread polls the completion queue (backing off from 20 µs to
    1 ms); with none it sleeps on the input queue's doorbell, which every send rings.
    """

    def __init__(self, handle: KernelHandle, device: PersistentDevice) -> None:
        super().__init__(handle, device)
        from . import lower

        self.device = device
        self.kir = lower(handle.kernel)
        self._has_reply_type = "reply" in (device.done_queue.dtype.names or ())
        #: Held by the thread taking the device's completions (the loop's, or a caller's: call_inline).
        self.done_lock = threading.Lock()

    def call_inline(self, record: np.ndarray) -> bool:
        """Push ``record`` and take the device's completions from the calling thread until its own is done.

        The device is the input queue's only consumer; what the caller saves is the two thread hand-offs
        to and from this loop's thread. Only one thread at a time takes completions (``done_lock``); when
        the loop's thread has it, or the kernel is not serving, or the device takes longer than
        :attr:`INLINE_SPIN` seconds, the call goes the usual way (False before pushing; after pushing the
        loop's thread is woken and publishes the reply).
        """
        h = self.handle
        inq = h.input_queue
        cb = self._cb32
        if not self._serving() or self.crashed is not None or not self.done_lock.acquire(blocking=False):
            return False
        try:
            outq = h.output_queue
            if not self._serving() or len(inq) + 1 > outq.capacity - len(outq):
                return False
            with inq.producer_lock:
                if inq.push_many(record, notify=False) == 0:
                    return False
                mine = inq.head  # this record's completion is the mine-th
            until = time.perf_counter() + self.INLINE_SPIN
            dq = self.device.done_queue
            try:
                while dq.tail < mine:
                    if not self._take_completions() and (time.perf_counter() > until or cb[_SHOULD_TERMINATE]):
                        break
            except Exception as exc:  # a bug in the host side: stop the kernel, fail its waiters
                self._crash(exc)
            return True
        finally:
            self.done_lock.release()
            if self.device.done_queue.tail < inq.head:
                inq.not_empty.ring()  # more on the device: the loop's thread takes over

    #: How long a caller polls the device for its reply before leaving it to the loop's thread.
    INLINE_SPIN = 0.002

    def _take_completions(self) -> int:
        """Publish what the device has completed (the caller holds ``done_lock``); how many."""
        dq = self.device.done_queue
        recs = dq.pop_many(self._max_batch or dq.capacity)
        n = len(recs)
        if n and n <= _SMALL_BATCH:  # the latency path: plain Python per record
            self.handle.input_queue.not_full.ring()  # the device freed their input slots before publishing
            self._cb64[_IN_FLIGHT] = n
            heads = [MessageHeader._make(t) for t in recs["header"].tolist()]
            ts = self._merge_heads_clock(heads)
            results = []
            for i, m in enumerate(heads):
                word = int(recs["status"][i])
                if m.type_id != self._in_type_id:
                    results.append((None, False, (ErrorCode.WRONG_MESSAGE_TYPE, self._wrong_type(m.type_id))))
                elif word & _FAILED:
                    _, code, detail = lane_errors(self.kir, np.array([word & ~_FAILED], np.uint32))[0]
                    results.append((None, False, (code, detail)))
                else:
                    reply = recs["reply"][i] if self._has_reply_type and word == _REPLY else None
                    results.append((reply, False, None))
            self._publish_small_results(heads, results, ts)
        elif n:
            self.handle.input_queue.not_full.ring()  # the device freed their input slots before publishing
            hdr = recs["header"]
            self._cb64[_IN_FLIGHT] = n
            self._merge_batch_clock(hdr)
            has_reply, sites = decode_status(recs["status"])
            result = BatchResult(recs["reply"] if self._has_reply_type else None, has_reply,
                                 np.zeros(n, dtype=bool), lane_errors(self.kir, sites))
            self._publish_results(hdr, hdr["type_id"] == self._in_type_id, result)
        return n

    def _serve(self) -> None:
        h = self.handle
        cb = h.control
        inq = h.input_queue
        dq = self.device.done_queue
        bell = inq.not_empty
        backoff = 0.0
        while True:
            with self.done_lock:
                took = self._take_completions()
            if took:
                backoff = 0.0
                continue
            if self.crashed is not None:
                return
            if self.device.exited():
                if cb.should_terminate:
                    if len(dq):  # published just before it exited
                        continue
                    return
                raise BackendError(f"the device loop of kernel {h.name!r} ended without being told to terminate")
            if cb.should_terminate:  # told: the device leaves its loop at its next poll
                time.sleep(50e-6)
            elif cb.is_active and inq.head != dq.tail:  # messages on the device: poll its completions
                time.sleep(backoff)
                backoff = min(max(2 * backoff, 20e-6), 1e-3)
            else:
                bell.wait(0.05)
                backoff = 0.0


class ResidentSlots:
    """How many groups (work-groups, blocks) of resident kernels a device runs now, across the process.

    A resident loop occupies a compute unit for the kernel's whole life, so a device backend keeps at most
    its ``persistent_slots`` groups resident (see :func:`start_resident`); one ResidentSlots per device.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Groups of resident kernels on the device now.
        self.used = 0

    def claim(self, limit: int, groups: int) -> bool:
        """Count ``groups`` more if that keeps the total within ``limit``; whether it did."""
        with self._lock:
            if self.used + groups > limit:
                return False
            self.used += groups
            return True

    def release(self, groups: int) -> None:
        with self._lock:
            self.used = max(0, self.used - groups)


def check_persistent_slots(value: Any, default: int) -> int:
    """A runtime's ``persistent_slots`` option: ``default`` for None, else an int >= 0 (ValueError otherwise)."""
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"persistent_slots={value!r} must be an int >= 0 (groups the device keeps resident at "
                         "once, across the process; 0 runs every kernel event-driven)")
    return value


def start_resident(handle: KernelHandle, slots: ResidentSlots, limit: int, groups: int,
                   make_device: Any, where: str) -> bool:
    """Start ``handle`` resident: claim ``groups`` of the device's ``limit`` slots, build its device loop
    (``make_device()``, a PersistentDevice) and serve it with a :class:`PersistentLoop`.

    Returns False, after logging why, when the groups do not fit (the caller runs the kernel event-driven);
    a failure while building the loop gives the slots back and propagates."""
    if not slots.claim(limit, groups):
        log.info("ringcore: kernel %r runs event-driven on %s: its %d resident group(s) do not fit in the %d "
                 "persistent slot(s) left of %d (persistent_slots; each resident group occupies a compute unit)",
                 handle.name, where, groups, max(0, limit - slots.used), limit)
        return False
    try:
        device = make_device()
    except BaseException:
        slots.release(groups)
        raise
    handle.loop = PersistentLoop(handle, device)
    handle.loop.start()
    return True


class ResidentDevice:
    """The lifecycle of a device loop (a PersistentDevice), written once for the device backends.

    A subclass launches the C targets' ``rc_persist_<ident>`` in its ``__init__`` (then calls this
    ``__init__``), and implements :meth:`exited` (setting ``fault`` when the launch failed on the device)
    and :meth:`_keep_state` (copy the device's final state into ``handle.state_array``). This class stops
    the loop (:meth:`stop`), closes it once (:meth:`close`: a loop that does not acknowledge within
    :attr:`STOP_TIMEOUT` is logged and its memory kept, since the device may still touch it) and, at
    process exit, tells every loop still running to stop, so that no device keeps spinning.
    """

    #: How long closing a loop waits for the device to leave it once told to (a loop polls continuously, so
    #: it leaves within microseconds unless a handler is still running a long message).
    STOP_TIMEOUT = 10.0

    _live: weakref.WeakSet[ResidentDevice] = weakref.WeakSet()
    _stuck: list[ResidentDevice] = []  # loops that did not acknowledge the stop: their memory must outlive them

    def __init__(self, handle: KernelHandle, slots: ResidentSlots, groups: int) -> None:
        self.handle = handle
        self.slots = slots
        self.groups = groups
        #: Why the device loop ended on its own (a failure on the device), once :meth:`exited` saw it.
        self.fault: object = None
        self.closed = False
        self._close_lock = threading.Lock()
        ResidentDevice._live.add(self)

    def exited(self) -> bool:
        raise NotImplementedError

    def _keep_state(self) -> None:
        raise NotImplementedError

    def stop(self, timeout: float) -> bool:
        """Tell the loop to leave (``should_terminate``) and wait up to ``timeout`` s; True if it did."""
        if not self.exited():
            self.handle.control.should_terminate = 1
        deadline = time.monotonic() + timeout
        while not self.exited():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.0002)
        return True

    def close(self) -> None:
        """After the host loop ends: make sure the device loop has stopped, keep the final state, free."""
        with self._close_lock:
            if self.closed:
                return
            self.closed = True
        stuck = False
        try:
            if not self.stop(self.STOP_TIMEOUT):
                stuck = True
                ResidentDevice._stuck.append(self)
                log.error("ringcore: the device loop of kernel %r did not stop within %s s of being told to; its "
                          "memory is kept for the rest of the process", self.handle.name, self.STOP_TIMEOUT)
                return
            if self.fault is not None:  # the device's memory may be unusable now: the state stays as it was
                log.error("ringcore: the device loop of kernel %r failed on the device: %s", self.handle.name,
                          self.fault)
            elif self.handle.state_array is not None:  # the final state stays readable after termination
                self._keep_state()
        finally:
            ResidentDevice._live.discard(self)
            if not stuck:
                self.slots.release(self.groups)


def stop_resident_loops(timeout: float = 2.0) -> list[str]:
    """Tell every device loop still running in this process to stop; the kernels whose loop did not."""
    left = []
    for dev in list(ResidentDevice._live):
        try:
            if not dev.stop(timeout):
                left.append(dev.handle.name)
        except Exception:  # interpreter shutdown: best effort
            pass
    return left


@atexit.register
def _stop_at_exit() -> None:
    for name in stop_resident_loops():
        log.error("ringcore: the device loop of kernel %r did not stop at exit", name)


class ProgramCache:
    """One device's built programs (modules), cached by kernel IR fingerprint for the whole process: a
    kernel is built once per device however many runtimes and launches use it. A device backend subclasses
    it and implements :meth:`_build_many` (one compiler run for several kernels' parts with one prelude).
    """

    def __init__(self) -> None:
        self._programs: dict[str, Any] = {}
        self._lock = threading.Lock()
        #: Compiler runs that built a program (for tests: the cache's effect is observable).
        self.builds = 0

    def _build_many(self, kirs: list[KernelIR]) -> Any:
        """Build one program holding every kernel of ``kirs`` (distinct identifiers).

        :raises KernelCompileError: the compiler refused it (for one kernel, at its Python line)."""
        raise NotImplementedError

    def program_for(self, kir: KernelIR) -> Any:
        """The built program holding ``kir``'s entry points (built now if no cached program has them).

        :raises KernelCompileError: the device's compiler refused the source.
        """
        fp = kir.fingerprint()
        with self._lock:
            prg = self._programs.get(fp)
        if prg is None:
            self.build([kir])
            with self._lock:
                prg = self._programs[fp]
        return prg

    def build(self, kirs: list[KernelIR]) -> None:
        """Build the kernels not yet cached in one program (one compiler run: device builds are slow). When it
        fails, each kernel is built alone, so the error is the culprit's own, at its line."""
        from .targets import c

        with self._lock:
            todo, seen = [], set()
            for k in kirs:
                fp = k.fingerprint()
                if fp not in self._programs and fp not in seen:
                    seen.add(fp)
                    todo.append(k)
        if not todo:
            return
        idents = [c.symbols(k).ident for k in todo]
        if len(set(idents)) != len(idents):  # two kernels of one id (different versions): one program each
            for k in todo:
                self.build([k])
            return
        try:
            prg = self._build_many(todo)
        except KernelCompileError:
            if len(todo) > 1:
                for k in todo:  # find the culprit, with its own mapped diagnostics
                    self.build([k])
            raise
        with self._lock:
            self.builds += 1
            for k in todo:
                self._programs[k.fingerprint()] = prg
