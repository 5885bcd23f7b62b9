"""The host side of a kernel that the host feeds batch by batch.

Written once for every backend whose kernels are driven from a host thread:
the CPU backend's actor loop (the handler runs on the CPU) and the
event-driven mode of device backends (one dispatch per batch). The loop drains
the input queue, hands each batch to a :class:`BatchExecutor` (the only part a
backend supplies), then does everything that is the same on every device:
type checks, HLC merging and stamping, error accounting in the ControlBlock,
reply headers, routing replies by ``reply_to``, latency metrics.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .control import CONTROL_BLOCK_DTYPE, ErrorCode
from .errors import ClockSkewError
from .hlc import HlcTimestamp
from .k2k import DeliveryResult
from .kernel import StateView
from .message import MessageFlags, MessageHeader

if TYPE_CHECKING:
    from .runtime import KernelHandle

__all__ = ["BatchResult", "BatchExecutor", "ReferenceExecutor", "KernelContext", "HostLoop", "serving_inline",
           "run_as_batch_of_one"]

log = logging.getLogger("ringcore")

# Batches up to this size take a per-message path: numpy's per-call overhead
# would dominate the latency of single messages.
_SMALL_BATCH = 4
_EXPECTS_REPLY = int(MessageFlags.EXPECTS_REPLY)
# Batches at least this large are popped into a reused buffer (when the executor allows it).
_SCRATCH_BATCH = 4096  # plain ints: IntFlag arithmetic costs µs


@dataclasses.dataclass
class BatchResult:
    """What an executor returns for a batch of ``n`` messages.

    :param replies: payload records of the kernel's output type (length ``n``),
        meaningful where ``has_reply`` is set; None when the kernel has no output type.
    :param has_reply: which messages produced a reply.
    :param forwarded: which messages the handler forwarded to another kernel
        (the obligation to reply went with them).
    :param errors: ``(index, ErrorCode, detail)`` for messages whose handler failed.
    """

    replies: np.ndarray | None
    has_reply: np.ndarray
    forwarded: np.ndarray
    errors: list[tuple[int, int, str]] = dataclasses.field(default_factory=list)


class BatchExecutor(Protocol):
    """Runs a kernel's handler over a batch of input slots; supplied by a backend.

    An executor that keeps no reference to a batch's memory after ``run`` returns may set
    ``keeps_no_batch_data = True``: the loop then reuses one buffer for large batches. Such an
    executor may also define ``batch_buffer(n)``, returning room for ``n`` input slots where its
    device reads them (shared memory): large batches are then popped straight into it.

    An executor whose device takes fewer messages per run than ``max_batch`` sets ``batch_limit``
    (an int, read at every batch): the loop then runs larger batches as several runs, in order.

    An executor may also define ``run_one(header, payload)``, returning
    ``(reply, forwarded, error)`` for a single message: the reply as a tuple of
    the output type's field values (or None), whether the handler forwarded the
    message, and ``(ErrorCode, detail)`` or None. The host loop uses it for
    messages that arrive alone, where building batch arrays would cost more
    than running the handler.
    """

    def run(self, batch: np.ndarray) -> BatchResult:
        """Process ``batch`` (records of the input slot dtype) and return its results."""
        ...

    def close(self) -> None:
        """Release device resources; called once after the loop ends."""
        ...


class KernelContext:
    """The ``ctx`` a handler receives in reference (plain Python) mode."""

    __slots__ = ("_handle", "state", "kernel_id", "kernel_number", "thread_id", "header", "_forwarded")

    def __init__(self, handle: KernelHandle) -> None:
        self._handle = handle
        st = handle.state_array
        #: The kernel's persistent state (attribute access), or None when it declares none.
        self.state = StateView(st[0]) if st is not None else None
        self.kernel_id = handle.name
        #: This kernel's number in its runtime (a u32, as in compiled kernels).
        self.kernel_number = np.uint32(handle.number)
        #: The index of this message within its batch (the lane that runs it on a device; a u32).
        self.thread_id = np.uint32(0)
        #: The current message's header (a MessageHeader).
        self.header = None
        self._forwarded = False

    def now(self) -> HlcTimestamp:
        """Tick the kernel's hybrid logical clock and return the timestamp."""
        return self._handle.clock.tick()

    def send(self, target: str | int, msg: Any) -> DeliveryResult:
        """Send ``msg`` to another kernel of this runtime; returns the delivery result.

        The message carries the current message's correlation id and reply
        obligation, so the kernel that finally returns a reply answers the
        original caller.
        """
        result = self._handle.runtime._forward(self._handle, target, msg, self.header)
        if result is DeliveryResult.DELIVERED:
            self._forwarded = True
        return result

    # Atomic updates of kernel state. In reference mode messages run one at a time, so these
    # are plain read-modify-writes; compiled kernels that use only atomics run messages in parallel.

    def _rmw(self, field: str, index: Any, update: Any) -> Any:
        st = self._handle.state_array
        if st is None:
            raise AttributeError(f"kernel {self.kernel_id!r} declares no state")
        rec = st[0]
        if field not in (rec.dtype.names or ()):
            raise AttributeError(f"the kernel state has no field {field!r}; its fields are {list(rec.dtype.names)}")
        arr = st[field]  # shape (1, *dims): a view, so writes land in the state
        view = arr.reshape(arr.shape[1:]) if arr.ndim > 1 else arr
        key = () if arr.ndim == 1 else (tuple(index) if isinstance(index, tuple) else index)
        if arr.ndim == 1:
            if index is not None:
                raise TypeError(f"state field {field!r} is a scalar; it takes no index")
            key = 0
        elif index is None:
            raise TypeError(f"state field {field!r} is an array; pass the element's index")
        old = view[key]
        new = update(old)
        if new is not None:
            view[key] = new
        return old

    def atomic_add(self, field: str, value: Any, index: Any = None) -> Any:
        """Add ``value`` to state field ``field`` (element ``index`` of an array); returns the old value."""
        return self._rmw(field, index, lambda old: old + value)

    def atomic_sub(self, field: str, value: Any, index: Any = None) -> Any:
        """Subtract ``value`` from a state field; returns the old value."""
        return self._rmw(field, index, lambda old: old - value)

    def atomic_min(self, field: str, value: Any, index: Any = None) -> Any:
        """Store ``min(old, value)``; returns the old value."""
        return self._rmw(field, index, lambda old: min(old, value))

    def atomic_max(self, field: str, value: Any, index: Any = None) -> Any:
        """Store ``max(old, value)``; returns the old value."""
        return self._rmw(field, index, lambda old: max(old, value))

    def atomic_exchange(self, field: str, value: Any, index: Any = None) -> Any:
        """Store ``value``; returns the old value."""
        return self._rmw(field, index, lambda old: value)

    def atomic_cas(self, field: str, expected: Any, desired: Any, index: Any = None) -> Any:
        """Store ``desired`` if the field equals ``expected``; returns the old value either way."""
        return self._rmw(field, index, lambda old: desired if old == expected else None)

    def publish(self, topic: str, msg: Any) -> int:
        """Publish ``msg`` on ``topic``; returns how many subscribers received it."""
        return self._handle.runtime.publish(topic, msg, _source=self._handle)


class ReferenceExecutor:
    """Runs the kernel's Python function once per message: the reference semantics."""

    def __init__(self, handle: KernelHandle) -> None:
        self.handle = handle
        self.kernel = handle.kernel
        self.ctx = KernelContext(handle)
        self._func = handle.kernel.func
        self._from_record = handle.kernel.input_type.from_record
        out = self.kernel.output_type
        self._out_type = out
        self._out_dtype = out.dtype if out is not None else None

    def run_one(self, header: MessageHeader, payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
        """Run the handler on one message: ``(reply field values or None, forwarded, error or None)``."""
        with np.errstate(all="ignore"):  # fixed-width integers wrap, as on every target
            return self._handle(header, payload)

    def _handle(self, header: MessageHeader, payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
        msg = self._from_record(payload)
        msg.header = header
        ctx = self.ctx
        ctx.header = header
        ctx._forwarded = False
        try:
            out = self._func(ctx, msg)
        except Exception as exc:  # the kernel keeps serving; the caller gets the error
            return None, ctx._forwarded, (ErrorCode.HANDLER_EXCEPTION, _describe(exc))
        if out is None:
            return None, ctx._forwarded, None
        if type(out) is not self._out_type:
            want = self._out_type.__qualname__ if self._out_type else "None (the kernel declares no reply type)"
            return None, ctx._forwarded, (ErrorCode.HANDLER_EXCEPTION,
                                          f"TypeError: handler returned {type(out).__qualname__}, declared {want}")
        return out.payload(), ctx._forwarded, None

    def run(self, batch: np.ndarray) -> BatchResult:
        n = len(batch)
        replies = np.empty(n, self._out_dtype) if self._out_type is not None else None
        has_reply = np.zeros(n, dtype=bool)
        forwarded = np.zeros(n, dtype=bool)
        errors: list[tuple[int, int, str]] = []
        payloads = batch["payload"]
        heads = batch["header"].tolist()
        handle = self._handle
        ctx = self.ctx
        with np.errstate(all="ignore"):  # fixed-width integers wrap, as on every target
            for i in range(n):
                ctx.thread_id = np.uint32(i)
                reply, fwd, err = handle(MessageHeader._make(heads[i]), payloads[i])
                if fwd:
                    forwarded[i] = True
                if err is not None:
                    errors.append((i, err[0], err[1]))
                elif reply is not None:
                    replies[i] = reply
                    has_reply[i] = True
        ctx.thread_id = np.uint32(0)
        return BatchResult(replies, has_reply, forwarded, errors)

    def close(self) -> None:
        pass


def run_as_batch_of_one(executor: Any, slot: np.ndarray, header: Any,
                        payload: np.void) -> tuple[Any, bool, tuple[int, str] | None]:
    """``run_one`` for an executor that runs batches: ``header`` and ``payload`` go into ``slot`` (a
    reusable one-record array of the input slot dtype) and through ``executor.run``; the reply comes
    back as a tuple of field values copied out of the executor's buffers."""
    slot["header"][0] = header
    slot["payload"][0] = payload
    res = executor.run(slot)
    if res.errors:
        _, code, detail = res.errors[0]
        return None, bool(res.forwarded[0]), (code, detail)
    reply = None
    if res.replies is not None and res.has_reply[0]:
        # A copy: an executor may reuse its reply buffer (array fields would be views into it).
        reply = res.replies[:1].copy()[0].item()
    return reply, bool(res.forwarded[0]), None


def _concat(parts: list[BatchResult]) -> BatchResult:
    """One BatchResult for consecutive parts of a batch, run one after the other."""
    replies = None
    if parts[0].replies is not None:  # filled part by part: np.concatenate would repack the record dtype
        replies = np.empty(sum(len(p.replies) for p in parts), parts[0].replies.dtype)
    errors = []
    at = 0
    for p in parts:
        n = len(p.has_reply)
        if replies is not None:
            replies[at:at + n] = p.replies
        errors += [(at + i, code, text) for i, code, text in p.errors]
        at += n
    return BatchResult(replies, np.concatenate([p.has_reply for p in parts]),
                       np.concatenate([p.forwarded for p in parts]), errors)


def _describe(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = ""
    if tb:
        fr = tb[-1]
        where = f" (at {fr.filename}:{fr.lineno} in {fr.name})"
    return f"{type(exc).__name__}: {exc}{where}"


# Word indices of the ControlBlock fields the loop touches per batch: single
# stores through one view are far cheaper than a property per field.
def _word(name: str, size: int) -> int:
    off = CONTROL_BLOCK_DTYPE.fields[name][1]
    assert off % size == 0
    return off // size


_IS_ACTIVE, _SHOULD_TERMINATE = _word("is_active", 4), _word("should_terminate", 4)
_PROCESSED, _IN_FLIGHT = _word("messages_processed", 8), _word("messages_in_flight", 8)
_INPUT_HEAD, _INPUT_TAIL = _word("input_head", 8), _word("input_tail", 8)
_OUTPUT_HEAD, _OUTPUT_TAIL = _word("output_head", 8), _word("output_tail", 8)
_HLC_PHYSICAL, _HLC_LOGICAL = _word("hlc_physical", 8), _word("hlc_logical", 8)

_inline = threading.local()


def serving_inline() -> bool:
    """Whether the current thread is serving a kernel's queue from inside ``call`` (HostLoop.call_inline)."""
    return getattr(_inline, "serving", False)


class HostLoop:
    """A thread that serves one kernel: drain the input queue, execute, publish results."""

    def __init__(self, handle: KernelHandle, executor: BatchExecutor) -> None:
        self.handle = handle
        self.executor = executor
        self.thread = threading.Thread(
            target=self._main, name=f"ringcore-{handle.runtime.backend_name}-{handle.name}", daemon=True
        )
        self.crashed: BaseException | None = None
        self._cb32 = handle.control.buffer.view("<u4")
        self._cb64 = handle.control.buffer.view("<u8")
        self._run_one = getattr(executor, "run_one", None)
        self._in_type_id = handle.kernel.input_type.type_id
        self._max_batch = handle.options.max_batch
        # An executor that copies what it needs out of a batch lets the loop reuse batch buffers.
        self._reuse_batches = bool(getattr(executor, "keeps_no_batch_data", False))
        self._batch_buffer = getattr(executor, "batch_buffer", None) if self._reuse_batches else None

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float | None) -> bool:
        """Wait for the loop to exit; True if it did."""
        self.thread.join(timeout)
        return not self.thread.is_alive()

    def _serving(self) -> bool:
        cb = self._cb32
        return bool(cb[_IS_ACTIVE]) and not cb[_SHOULD_TERMINATE]

    def call_inline(self, record: np.ndarray) -> bool:
        """Enqueue ``record`` and serve the queue from the calling thread, if the kernel is idle.

        A call on an idle kernel then costs no thread hand-offs (two futex
        wake-ups, about 50 µs on a small VM). The queue is still the path: the
        record goes through it in FIFO order behind anything already queued,
        and only one thread at a time (this one, or the loop) consumes it.
        Returns False, having done nothing, when the loop is busy, the kernel
        is not active, or the replies might not fit the output queue (this
        thread cannot wait for room there: it is the one that would make it);
        the caller then sends normally.
        """
        h = self.handle
        inq = h.input_queue
        cb = self._cb32
        if not cb[_IS_ACTIVE] or cb[_SHOULD_TERMINATE] or self.crashed is not None:
            return False
        if not inq.consumer_lock.acquire(blocking=False):
            return False
        try:
            outq = h.output_queue
            if not cb[_IS_ACTIVE] or cb[_SHOULD_TERMINATE] or len(inq) + 1 > outq.capacity - len(outq):
                return False
            with inq.producer_lock:
                if inq.push_many(record, notify=False) == 0:
                    return False
            _inline.serving = True
            try:
                batch = inq.pop_many(self._max_batch)
                if len(batch):
                    self.process(batch)
            except Exception as exc:  # a bug in the executor: stop the kernel, fail its waiters
                self._crash(exc)
            finally:
                _inline.serving = False
            return True
        finally:
            inq.consumer_lock.release()

    def _main(self) -> None:
        h = self.handle
        cb = h.control
        try:
            self._serve()
        except BaseException as exc:  # a bug in the executor: report it, never hang callers
            self._crash(exc)
        finally:
            try:
                self.executor.close()
            finally:
                cb.messages_in_flight = 0
                cb.has_terminated = 1
                h._on_loop_exit()

    def _serve(self) -> None:
        """Drain the input queue batch by batch until told to terminate."""
        h = self.handle
        cb = h.control
        inq = h.input_queue
        bell = inq.not_empty
        max_batch = self._max_batch
        while True:
            if cb.should_terminate or self.crashed is not None:
                break
            if not cb.is_active:
                bell.wait(0.1)
                continue
            with inq.consumer_lock:
                # Checked again under the lock: deactivate() must hold what it finds queued.
                batch = self._pop(inq, max_batch) if self._serving() else None
                if batch is not None and len(batch):
                    self.process(batch)
            if batch is not None and len(batch) == 0:
                bell.wait(None)

    def _pop(self, inq: Any, max_batch: int) -> np.ndarray:
        """The next batch. A large one goes into a buffer reused across batches (fresh pages would cost
        more than the copy) when the executor keeps nothing of a batch after ``run``."""
        depth = len(inq)
        if depth >= _SCRATCH_BATCH and self._reuse_batches:
            n = min(depth, max_batch) if max_batch else depth
            out = self._batch_buffer(n) if self._batch_buffer is not None else \
                self.handle._scratch("batch", inq.dtype, n)
            return inq.pop_many(max_batch, out=out)
        return inq.pop_many(max_batch)

    def _crash(self, exc: BaseException) -> None:
        """Record an executor failure; the loop then exits and the kernel's waiters are failed."""
        h = self.handle
        log.error("ringcore: kernel %r stopped: its %s executor failed", h.name, h.runtime.backend_name,
                  exc_info=exc)
        h.control.last_error = ErrorCode.DEVICE_ERROR
        h.control.add("error_count", 1)
        h._record_error(0, ErrorCode.DEVICE_ERROR, f"the executor failed: {_describe(exc)}")
        self._cb64[_IN_FLIGHT] = 0
        self.crashed = exc  # last: the loop exits on seeing it and reports the detail recorded above
        h._wake()

    def process(self, batch: np.ndarray) -> None:
        """Execute one batch and publish its results (replies last, to keep latency low)."""
        n = len(batch)
        self._cb64[_IN_FLIGHT] = n
        if n == 1 and self._run_one is not None:
            self._process_one(batch)
        elif n <= _SMALL_BATCH:
            self._process_small(batch)
        else:
            self._process_vector(batch)

    def _run(self, batch: np.ndarray, ok: np.ndarray) -> BatchResult:
        if ok.all():
            return self._run_all(batch)
        idx = np.flatnonzero(ok)
        return self._expand(self._run_all(batch[idx]), idx, len(batch))

    def _run_all(self, batch: np.ndarray) -> BatchResult:
        """``executor.run``, in runs of at most the executor's ``batch_limit`` messages."""
        limit = getattr(self.executor, "batch_limit", None)
        if limit is None or len(batch) <= limit:
            return self.executor.run(batch)
        return _concat([self.executor.run(batch[i:i + limit]) for i in range(0, len(batch), limit)])

    def _wrong_type(self, type_id: int) -> str:
        h = self.handle
        return (f"message of type id {type_id} reached kernel {h.name!r}, "
                f"which takes type id {h.kernel.input_type.type_id}")

    def _no_reply(self) -> str:
        return (f"kernel {self.handle.name!r} handled a message sent with call() without returning "
                "a reply or forwarding it; return a reply, or use send()")

    def _account(self, errors: dict[int, tuple[int, str]], corr: list[int] | np.ndarray) -> None:
        """Record failed messages in the ControlBlock and keep their details for callers."""
        h = self.handle
        last = max(errors)
        h.control.last_error = errors[last][0]
        h.control.add("error_count", len(errors))
        for i, (code, text) in errors.items():
            h._record_error(int(corr[i]), code, text)

    def _finish(self, n: int, ts: HlcTimestamp | None = None) -> None:
        """Mirror progress into the ControlBlock; ``ts`` is the kernel clock's latest timestamp."""
        h = self.handle
        cb = self._cb64
        if ts is None:
            ts = h.clock.now()
        cb[_HLC_PHYSICAL] = ts.physical
        cb[_HLC_LOGICAL] = ts.logical
        cb[_INPUT_HEAD] = h.input_queue.head
        cb[_INPUT_TAIL] = h.input_queue.tail
        cb[_OUTPUT_HEAD] = h.output_queue.head
        cb[_OUTPUT_TAIL] = h.output_queue.tail
        cb[_PROCESSED] += n
        cb[_IN_FLIGHT] = 0

    def _small_results(self, batch: np.ndarray, heads: list[MessageHeader]) -> list[tuple[Any, bool, Any]]:
        """``(reply, forwarded, error)`` per message of a small batch."""
        tid = self._in_type_id
        run_one = self._run_one
        if run_one is not None:
            payloads = batch["payload"]
            return [run_one(m, payloads[i]) if m.type_id == tid
                    else (None, False, (ErrorCode.WRONG_MESSAGE_TYPE, self._wrong_type(m.type_id)))
                    for i, m in enumerate(heads)]
        ok = [m.type_id == tid for m in heads]
        res = self._run(batch, np.array(ok))
        out: list[tuple[Any, bool, Any]] = [
            (res.replies[i] if res.has_reply[i] else None, bool(res.forwarded[i]), None) if ok[i]
            else (None, False, (ErrorCode.WRONG_MESSAGE_TYPE, self._wrong_type(m.type_id)))
            for i, m in enumerate(heads)]
        for i, code, detail in res.errors:
            out[i] = (None, out[i][1], (code, detail))
        return out

    def _process_one(self, batch: np.ndarray) -> None:
        """One message through ``run_one``: the latency path of ``call``, with nothing to batch."""
        h = self.handle
        m = MessageHeader._make(batch["header"].tolist()[0])
        ts = self._merge_clock(m.hlc_physical, m.hlc_logical)
        if m.type_id == self._in_type_id:
            reply, fwd, err = self._run_one(m, batch["payload"][0])
        else:
            reply, fwd, err = None, False, (ErrorCode.WRONG_MESSAGE_TYPE, self._wrong_type(m.type_id))
        expects = m.flags & _EXPECTS_REPLY
        if err is None and expects and reply is None and not fwd:
            err = (ErrorCode.NO_REPLY, self._no_reply())
        h.telemetry.latency.record_one_ns(time.monotonic_ns() - m.send_ns)
        if err is not None:
            self._account({0: err}, (m.correlation_id,))
            if expects or h.out_spec is not None:
                ts = h.runtime._publish_one(h, m, None, int(err[0]), err[1])
        elif reply is not None:
            ts = h.runtime._publish_one(h, m, reply, 0, "")
        self._finish(1, ts)

    def _process_small(self, batch: np.ndarray) -> None:
        """The per-message path: plain Python over a few messages beats numpy's call overhead."""
        heads = [MessageHeader._make(t) for t in batch["header"].tolist()]
        ts = self._merge_heads_clock(heads)
        self._publish_small_results(heads, self._small_results(batch, heads), ts)

    def _merge_heads_clock(self, heads: list[MessageHeader]) -> HlcTimestamp | None:
        top = heads[0] if len(heads) == 1 else max(heads, key=lambda m: (m.hlc_physical, m.hlc_logical))
        return self._merge_clock(top.hlc_physical, top.hlc_logical)

    def _publish_small_results(self, heads: list[MessageHeader], results: list[tuple[Any, bool, Any]],
                               ts: HlcTimestamp | None) -> None:
        """What ``_publish_results`` does, per message in plain Python (a few messages: cheaper than numpy).

        :param results: ``(reply field tuple or None, forwarded, (ErrorCode, detail) or None)`` per message.
        """
        h = self.handle
        reports = h.out_spec is not None  # failures of sent messages are reported where replies go
        items = []
        errors: dict[int, tuple[int, str]] | None = None
        for i, m in enumerate(heads):
            reply, fwd, err = results[i]
            expects = m.flags & _EXPECTS_REPLY
            if err is None and expects and reply is None and not fwd:
                err = (ErrorCode.NO_REPLY, self._no_reply())
            if err is not None:
                if errors is None:
                    errors = {}
                errors[i] = err
                if expects or reports:
                    items.append((m, None, int(err[0]), err[1]))
            elif reply is not None:
                items.append((m, reply, 0, ""))
        if errors:
            self._account(errors, [m.correlation_id for m in heads])
        now = time.monotonic_ns()
        latency = h.telemetry.latency
        for m in heads:
            latency.record_one_ns(now - m.send_ns)
        if items:
            ts = h.runtime._publish_small(h, items)
        self._finish(len(heads), ts)

    def _process_vector(self, batch: np.ndarray) -> None:
        """The batch path: every step is a numpy operation over the whole batch."""
        hdr = batch["header"]
        self._merge_batch_clock(hdr)
        ok = hdr["type_id"] == self._in_type_id
        self._publish_results(hdr, ok, self._run(batch, ok))

    def _merge_batch_clock(self, hdr: np.ndarray) -> None:
        """Merge the latest request timestamp of a batch with headers ``hdr`` into the kernel's clock."""
        phys = hdr["hlc_physical"]
        top = phys.max()
        self._merge_clock(int(top), int(hdr["hlc_logical"][phys == top].max()))

    def _publish_results(self, hdr: np.ndarray, ok: np.ndarray, result: BatchResult) -> None:
        """Everything after the handler ran over a batch with headers ``hdr`` (``ok``: of the kernel's
        input type): error accounting, latency, replies and error reports, the ControlBlock."""
        h = self.handle
        n = len(hdr)
        codes = np.zeros(n, dtype=np.uint32)
        errors = {int(i): (ErrorCode.WRONG_MESSAGE_TYPE, self._wrong_type(int(hdr["type_id"][i])))
                  for i in np.flatnonzero(~ok)}
        for i, code, detail in result.errors:
            errors[i] = (code, detail)
        for i, (code, _) in errors.items():
            codes[i] = code
        expects = (hdr["flags"] & _EXPECTS_REPLY) != 0
        no_reply = expects & ~result.has_reply & ~result.forwarded & (codes == 0)
        if no_reply.any():
            codes[no_reply] = ErrorCode.NO_REPLY
            text = self._no_reply()
            for i in np.flatnonzero(no_reply).tolist():
                errors[i] = (ErrorCode.NO_REPLY, text)
        if errors:
            self._account(errors, hdr["correlation_id"])
        h.telemetry.latency.record_ns(time.monotonic_ns() - hdr["send_ns"].astype(np.int64))
        # Failures are reported where the reply would have gone: always for calls, and for
        # sent messages when the kernel declares a reply type (so receive() sees them).
        failed = codes != 0
        sel = result.has_reply | ((failed & expects) if h.out_spec is None else failed)
        if sel.any():
            replies = result.replies
            details = None
            if errors:
                details = [errors[i][1] if i in errors else "" for i in np.flatnonzero(sel).tolist()]
            if sel.all():  # the common case: every message answered; no masked copies
                h.runtime._publish_replies(h, hdr, replies, result.has_reply, codes, details)
            else:
                h.runtime._publish_replies(h, hdr[sel], replies[sel] if replies is not None else None,
                                           result.has_reply[sel], codes[sel], details)
        self._finish(n)

    def _merge_clock(self, physical: int, logical: int) -> HlcTimestamp | None:
        """Merge the batch's latest request timestamp into the kernel's clock; the new timestamp."""
        try:
            return self.handle.clock.update((physical, logical))
        except ClockSkewError as exc:
            self.handle._record_error(0, ErrorCode.DEVICE_ERROR, str(exc))
            return None

    @staticmethod
    def _expand(res: BatchResult, idx: np.ndarray, n: int) -> BatchResult:
        """Map a result over a subset of the batch back onto the whole batch."""
        has = np.zeros(n, bool)
        fwd = np.zeros(n, bool)
        has[idx] = res.has_reply
        fwd[idx] = res.forwarded
        replies = None
        if res.replies is not None:
            replies = np.zeros(n, res.replies.dtype)
            replies[idx] = res.replies
        return BatchResult(replies, has, fwd, [(int(idx[i]), c, d) for i, c, d in res.errors])
