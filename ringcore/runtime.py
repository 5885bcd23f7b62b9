"""RingKernelRuntime (the base class every backend extends) and KernelHandle.

Everything that is the same on every device lives here: handles, queues,
lifecycle, HLC stamping, correlation of replies, kernel-to-kernel routing,
pub/sub, metrics. A backend subclasses :class:`RingKernelRuntime` and supplies
only what differs: memory (:meth:`~RingKernelRuntime.allocate`), and either a
:class:`BatchExecutor` for host-driven kernels
(:meth:`~RingKernelRuntime._create_executor`) or its own device loop
(:meth:`~RingKernelRuntime._start_kernel` / :meth:`~RingKernelRuntime._stop_kernel`).
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import itertools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ._hostloop import (
    BatchExecutor,
    BatchResult,
    HostLoop,
    KernelContext,
    ReferenceExecutor,
    run_as_batch_of_one,
    serving_inline,
)
from ._memory import aligned_zeros
from ._receiver import Receiver
from ._sync import Doorbell, deadline_after, remaining
from .control import ControlBlock, ErrorCode
from .errors import (
    BackendError,
    KernelDefinitionError,
    KernelError,
    KernelTerminatedError,
    LifecycleError,
    MessageTypeError,
    QueueFull,
    RingTimeoutError,
    TerminationTimeoutError,
)
from .hlc import HlcClock, HlcTimestamp
from .k2k import DEFAULT_MAX_HOPS, DeliveryResult
from .kernel import KernelDef, KernelMode, KernelState, LaunchOptions, OverflowPolicy
from .message import HEADER_DTYPE, MessageFlags, MessageHeader, MessageSpec, Priority, message_spec
from .pubsub import Broker, Subscription
from .queue import RingQueue
from .telemetry import KernelMetrics, Telemetry

__all__ = [
    "RingKernelRuntime",
    "KernelHandle",
    "KernelStatus",
    "DeviceInfo",
    # The backend seam: what a host-driven backend implements or wraps.
    "BatchExecutor",
    "BatchResult",
    "ReferenceExecutor",
    "run_as_batch_of_one",
    "KernelContext",
    "HostLoop",
]

log = logging.getLogger("ringcore")

_EMPTY = np.dtype({"names": [], "formats": [], "itemsize": 0})
_REPLY = int(MessageFlags.REPLY)  # plain ints: IntFlag arithmetic costs µs in hot paths
_ERROR = int(MessageFlags.ERROR)
_PUBLISHED = int(MessageFlags.PUBLISHED)
_EXPECTS_REPLY = int(MessageFlags.EXPECTS_REPLY)
_REPLY_ERROR = int(MessageFlags.REPLY | MessageFlags.ERROR)
_HEADER_ONLY_SLOT = np.dtype([("header", HEADER_DTYPE), ("payload", _EMPTY)])
_MAX_KEPT_ERRORS = 4096  # error details kept for callers that have not looked yet


@dataclasses.dataclass(frozen=True)
class DeviceInfo:
    """A device a backend can run on.

    :param accelerator: True for a real accelerator (a GPU); False for the CPU
        or a software implementation (PoCL on a CPU, llvmpipe, lavapipe).
    """

    name: str
    kind: str
    """"gpu", "cpu", "software" or "other"."""
    accelerator: bool
    details: dict[str, Any] = dataclasses.field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class KernelStatus:
    """A kernel's lifecycle state and progress, at one instant."""

    kernel: str
    number: int
    backend: str
    mode: str
    state: str
    processed: int
    in_flight: int
    input_depth: int
    output_depth: int
    errors: int
    last_error: str
    unprocessed: int
    """Messages left in the input queue when the kernel terminated."""


class KernelHandle:
    """The host's handle on a launched kernel: lifecycle, messaging, status and metrics."""

    def __init__(self, runtime: RingKernelRuntime, kernel: KernelDef, name: str, number: int,
                 options: LaunchOptions, mode: KernelMode) -> None:
        self.runtime = runtime
        self.kernel = kernel
        self.name = name
        self.number = number
        self.options = options
        self.mode = mode
        self.in_spec = kernel.input_spec
        self.out_spec = kernel.output_spec
        out_slot = self.out_spec.slot_dtype if self.out_spec is not None else _HEADER_ONLY_SLOT
        self.control = ControlBlock(runtime.allocate(128))
        self.input_queue = RingQueue(
            self.in_spec.slot_dtype, options.input_capacity,
            buffer=runtime.allocate(RingQueue.nbytes(self.in_spec.slot_dtype, options.input_capacity)),
            not_empty=Doorbell() if runtime.host_signals_input else None, not_full=Doorbell(),
        )
        self.output_queue = RingQueue(
            out_slot, options.output_capacity,
            buffer=runtime.allocate(RingQueue.nbytes(out_slot, options.output_capacity)),
            not_empty=Doorbell(), not_full=Doorbell() if runtime.host_signals_input else None,
        )
        self.control.init_queues(self.input_queue.capacity, self.output_queue.capacity)
        self.state_array = kernel.state.new() if kernel.state is not None else None
        self.clock = HlcClock(node_id=number, max_drift_us=runtime.clock.max_drift_us)
        self.telemetry = Telemetry()
        self._receiver = Receiver(self.output_queue)
        self._state = KernelState.CREATED
        self._life = threading.RLock()
        self._errors: collections.OrderedDict[int | tuple[str, int], tuple[int, str]] = collections.OrderedDict()
        self._errors_lock = threading.Lock()
        self.last_exception: str | None = None
        self.unprocessed = 0
        self.loop: HostLoop | None = None
        self._exited = threading.Event()

    # -- lifecycle -------------------------------------------------------------

    @property
    def state(self) -> KernelState:
        return self._state

    def _transition(self, new: KernelState) -> None:
        with self._life:
            self._state.check(new, self.name)
            self._state = new

    def activate(self) -> None:
        """Start (or resume) processing messages. Valid from launched or deactivated."""
        with self._life:
            self._transition(KernelState.ACTIVE)
            self.control.is_active = 1
        self._wake()

    def deactivate(self) -> None:
        """Hold messages in the queue without processing them. Valid from active."""
        with self._life:
            self._transition(KernelState.DEACTIVATED)
            self.control.is_active = 0
        self._wake()

    def terminate(self, timeout: float = 5.0, *, drain: bool = False) -> None:
        """Stop the kernel's loop and release it.

        :param drain: first process every message already queued (the kernel
            must be active); otherwise queued messages are left unprocessed and
            counted in ``status().unprocessed``.
        :raises TerminationTimeoutError: the loop did not acknowledge within
            ``timeout``; the kernel stays terminating and terminate may be called again.
        """
        deadline = deadline_after(timeout)
        with self._life:
            if self._state is KernelState.TERMINATED:
                return
            if self._state is not KernelState.TERMINATING:
                if drain and self._state is not KernelState.ACTIVE:
                    raise LifecycleError(
                        f"kernel {self.name!r} is {self._state.value}: terminate(drain=True) needs it active; "
                        "call activate() first, or terminate without drain"
                    )
                self._transition(KernelState.TERMINATING)
        if drain:
            done = self._wait_idle(deadline)
            if not done:
                log.warning("ringcore: kernel %r did not drain its queue within %s s", self.name, timeout)
        self.control.should_terminate = 1
        self._wake()
        stopped = self.runtime._stop_kernel(self, remaining(deadline))
        if not stopped:
            raise TerminationTimeoutError(
                f"kernel {self.name!r} did not acknowledge termination within {timeout} s "
                f"(processed {self.control.messages_processed}, in flight {self.control.messages_in_flight}); "
                "its handler may be stuck. It stays terminating: call terminate() again to keep waiting"
            )
        self._finish_termination(deadline, timeout)

    def _finish_termination(self, deadline: float | None = None, timeout: float | None = None) -> None:
        q = self.input_queue
        # Count what is left only once no host thread is serving the queue (call_inline)
        # and no sender can add to it: a message is either counted here or refused.
        left = remaining(deadline)
        if not q.consumer_lock.acquire(timeout=-1 if left is None else left):
            raise TerminationTimeoutError(
                f"kernel {self.name!r}: a call served from a host thread was still running its handler "
                f"after {timeout} s. It stays terminating: call terminate() again to keep waiting"
            )
        try:
            with q.producer_lock, self._life:
                if self._state is KernelState.TERMINATED:
                    return
                self.unprocessed = len(q)
                self._state = KernelState.TERMINATED
        finally:
            q.consumer_lock.release()
        self.runtime._forget(self)
        self._receiver.close(KernelTerminatedError(f"kernel {self.name!r} terminated"))
        self.input_queue.not_full.ring()

    def _wait_idle(self, deadline: float | None) -> bool:
        while len(self.input_queue) or self.control.messages_in_flight:
            if self._exited.is_set():
                return False
            left = remaining(deadline)
            if left is not None and left <= 0:
                return False
            time.sleep(min(0.0005, left) if left is not None else 0.0005)
        return True

    def _on_loop_exit(self) -> None:
        """Called by the kernel's loop (any thread) once it has exited."""
        self._exited.set()
        if self._state is not KernelState.TERMINATING:
            # The loop died on its own: fail waiters instead of letting them hang.
            self._receiver.close(KernelTerminatedError(
                f"kernel {self.name!r} stopped unexpectedly: {self.last_exception or 'see the log'}"))
            self.input_queue.not_full.ring()

    def _wake(self) -> None:
        if self.input_queue.not_empty is not None:
            self.input_queue.not_empty.ring()

    def _check_sendable(self) -> None:
        st = self._state
        if st in (KernelState.TERMINATING, KernelState.TERMINATED):
            raise KernelTerminatedError(f"kernel {self.name!r} is {st.value}; it accepts no more messages")
        if self._exited.is_set():
            raise KernelTerminatedError(
                f"kernel {self.name!r} stopped unexpectedly: {self.last_exception or 'see the log'}")

    def _scratch(self, role: str, dtype: np.dtype, n: int) -> np.ndarray:
        """A reusable buffer of ``n`` records for this kernel's serving thread (contents undefined).

        Fresh large arrays cost more in page faults than the copies into them; reusing one
        per use (``role``: "batch", "replies", "publish") keeps batches at memory speed. Only
        the thread serving the kernel (holding its input queue's consumer side) uses them.
        """
        bufs = self.__dict__.setdefault("_scratch_bufs", {})
        buf = bufs.get(role)
        if buf is None or len(buf) < n or buf.dtype != dtype:
            buf = np.zeros(max(n, 64), dtype)
            bufs[role] = buf
        return buf[:n]

    # -- errors ----------------------------------------------------------------

    def _record_error(self, corr: int, code: int, detail: str) -> None:
        """Keep ``detail`` for the caller waiting on correlation id ``corr`` (0: nobody waits)."""
        self.last_exception = detail
        if corr:
            self._keep_error(corr, code, detail)
        log.debug("ringcore: kernel %r error %s: %s", self.name, code, detail)

    def _keep_error(self, key: int | tuple[str, int], code: int, detail: str) -> None:
        """Remember an error's detail under a correlation id, or ``("reply", id)`` of its error report."""
        with self._errors_lock:
            self._errors[key] = (code, detail)
            while len(self._errors) > _MAX_KEPT_ERRORS:
                self._errors.popitem(last=False)

    def _error_for(self, header: np.void) -> KernelError:
        """The KernelError an error report (a reply with the ERROR flag) stands for."""
        corr = int(header["correlation_id"])
        code = int(header["status"])
        key: int | tuple[str, int] = corr if corr else ("reply", int(header["message_id"]))
        with self._errors_lock:
            _, detail = self._errors.pop(key, (code, ""))
        if not detail:
            detail = self.runtime._error_detail(key) or ""
        name = ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code)
        what = f"message {corr}" if corr else "a sent message"
        return KernelError(f"kernel {self.name!r} failed on {what}: {detail or name}",
                           kernel=self.name, code=code, detail=detail or name)

    # -- sending -------------------------------------------------------------

    def _header_tuple(self, corr: int, flags: int, priority: int, source: KernelHandle | None = None) -> tuple:
        """A header for a message to this kernel from the host (or from ``source``, stamped by its clock)."""
        rt = self.runtime
        mid = rt._reserve_ids(1)
        ts = (source.clock if source is not None else rt.clock).tick()
        src = source.number if source is not None else 0
        return (mid, corr, ts.physical, ts.logical, src, src, self.number, self.in_spec.type_id,
                self.number, 0, int(priority), flags, 0, 0, time.monotonic_ns())

    def _push_one(self, rec: np.ndarray, timeout: float | None) -> bool:
        q = self.input_queue
        policy = self.options.overflow
        with q.producer_lock:
            self._check_sendable()  # under the lock: termination counts or refuses every message
            if q.push_many(rec) == 1:
                return True
            if policy is OverflowPolicy.DROP:
                q.record_drop(1)
                return False
            deadline = deadline_after(self.options.send_timeout if timeout is None else timeout)
            while True:
                self._check_sendable()
                left = remaining(deadline)
                if not q.wait_not_full(min(left, 0.05) if left is not None else 0.05):
                    if left is not None and left <= 0:
                        raise QueueFull(
                            f"the input queue of kernel {self.name!r} stayed full ({q.capacity} slots) for "
                            f"{self.options.send_timeout if timeout is None else timeout} s; the message was "
                            "not sent. Consume replies, raise input_capacity, or pass a longer timeout"
                        )
                    continue
                if q.push_many(rec) == 1:
                    return True

    def send(self, msg: Any, *, priority: Priority | int = Priority.NORMAL,
             timeout: float | None = None) -> int | None:
        """Enqueue one message; return its message id.

        With the default overflow policy a full queue makes the send wait up to
        ``timeout`` (default: the launch option ``send_timeout``) and then raise
        QueueFull. Under the drop policy a full queue drops the message at once,
        counts it, and returns None.
        """
        self.kernel.check_input(msg)
        self._check_sendable()
        rec = np.empty(1, self.in_spec.slot_dtype)
        head = self._header_tuple(0, 0, priority)
        rec[0] = (head, msg.payload())
        return head[0] if self._push_one(rec, timeout) else None

    def _as_payload(self, messages: Any) -> np.ndarray:
        if isinstance(messages, np.ndarray):
            if messages.dtype == self.in_spec.dtype:
                return messages.reshape(-1)
            raise MessageTypeError(
                f"kernel {self.name!r} takes arrays of {self.kernel.input_type.__qualname__}.dtype "
                f"({self.in_spec.dtype}); got an array of {messages.dtype}. "
                f"Build it with {self.kernel.input_type.__qualname__}.array(n)"
            )
        return self.kernel.input_type.pack(self._checked(messages))

    def _checked(self, messages: Iterable[Any]) -> list[Any]:
        items = list(messages)
        for m in items:
            self.kernel.check_input(m)
        return items

    def _slots(self, payload: np.ndarray, *, first_corr: int, flags: int, priority: int) -> np.ndarray:
        n = len(payload)
        rt = self.runtime
        slots = np.zeros(n, self.in_spec.slot_dtype)
        h = slots["header"]
        first_id = rt._reserve_ids(n)
        h["message_id"] = np.arange(first_id, first_id + n, dtype=np.uint64)
        if first_corr:
            h["correlation_id"] = np.arange(first_corr, first_corr + n, dtype=np.uint64)
        phys, logical = rt.clock.stamp_many(n)
        h["hlc_physical"] = phys
        h["hlc_logical"] = logical
        h["dest_kernel"] = self.number
        h["type_id"] = self.in_spec.type_id
        h["reply_to"] = self.number
        h["priority"] = int(priority)
        h["flags"] = flags
        h["send_ns"] = time.monotonic_ns()
        slots["payload"] = payload
        return slots

    def _push_many(self, slots: np.ndarray, timeout: float | None) -> int:
        q = self.input_queue
        with q.producer_lock:
            self._check_sendable()  # under the lock: termination counts or refuses every message
            if self.options.overflow is OverflowPolicy.DROP:
                done = q.push_many(slots)
                if done < len(slots):
                    q.record_drop(len(slots) - done)
                return done
            total = len(slots)
            done = q.push_many(slots)
            t = self.options.send_timeout if timeout is None else timeout
            deadline = deadline_after(t)
            while done < total:
                self._check_sendable()
                left = remaining(deadline)
                if left is not None and left <= 0:
                    err = QueueFull(
                        f"the input queue of kernel {self.name!r} stayed full for {t} s: {done} of {total} "
                        f"messages enqueued (in order), {total - done} not. Consume replies, raise "
                        "input_capacity, or pass a longer timeout"
                    )
                    err.accepted = done  # type: ignore[attr-defined]
                    raise err
                q.wait_not_full(min(left, 0.05) if left is not None else 0.05)
                done += q.push_many(slots[done:])
            return done

    def send_many(self, messages: np.ndarray | Iterable[Any], *, priority: Priority | int = Priority.NORMAL,
                  timeout: float | None = None) -> int:
        """Enqueue a bulk array of payload records (``In.array(n)``) or a list of messages.

        Returns how many were enqueued: all of them under the block policy
        (else QueueFull, whose ``accepted`` says how many leading messages went
        in), or as many as fit under the drop policy (the rest are counted).
        """
        self._check_sendable()
        payload = self._as_payload(messages)
        if len(payload) == 0:
            return 0
        return self._push_many(self._slots(payload, first_corr=0, flags=0, priority=priority), timeout)

    # -- receiving -------------------------------------------------------------

    def _reply_message(self, rec: np.void) -> Any:
        header = rec["header"]
        if header["flags"] & _ERROR:
            raise self._error_for(header)
        return self.kernel.output_type.from_record(rec["payload"], header)

    def _need_output(self, what: str) -> None:
        if self.out_spec is None:
            raise MessageTypeError(
                f"kernel {self.name!r} declares no reply type, so {what} has nothing to return; "
                "use send(), or give the handler a return annotation"
            )

    def receive(self, timeout: float | None = None) -> Any:
        """The next reply that no ``call`` is waiting for, as a message (with ``.header``).

        :raises RingTimeoutError: nothing arrived within ``timeout`` seconds.
        :raises KernelError: the next record is an error report from the kernel.
        """
        self._need_output("receive()")
        recs = self._receiver.receive(1, 1, deadline_after(timeout))
        if len(recs) == 0:
            raise RingTimeoutError(f"no message from kernel {self.name!r} within {timeout} s")
        return self._reply_message(recs[0])

    def try_receive(self) -> Any | None:
        """The next reply if one is ready, else None. Never blocks."""
        self._need_output("try_receive()")
        recs = self._receiver.receive(1, 1, deadline_after(0))
        return self._reply_message(recs[0]) if len(recs) else None

    def receive_many(self, max_count: int | None = None, timeout: float | None = 0.0,
                     *, min_count: int = 1) -> np.ndarray:
        """Up to ``max_count`` replies as whole slot records (``out['payload']``, ``out['header']``).

        Waits up to ``timeout`` seconds for at least ``min_count`` records, then
        returns what is there (possibly fewer, possibly none). Error reports
        are included with the ERROR flag set in their header.
        """
        self._need_output("receive_many()")
        if max_count is not None and max_count < 1:
            raise ValueError(f"max_count must be >= 1 or None, got {max_count}")
        return self._receiver.receive(max_count, max(1, min_count), deadline_after(timeout))

    def call(self, msg: Any, *, timeout: float | None = 5.0,
             priority: Priority | int = Priority.NORMAL) -> Any:
        """Send ``msg`` and wait for the reply with its correlation id.

        :raises KernelError: the handler raised (or produced no reply) for this message.
        :raises RingTimeoutError: no reply within ``timeout`` seconds.
        """
        if self.out_spec is None:
            self._need_output("call()")
        if type(msg) is not self.kernel.input_type:
            self.kernel.check_input(msg)
        self._check_sendable()
        deadline = deadline_after(timeout)
        rt = self.runtime
        mid, corr = rt._reserve_call()
        ts = rt.clock.tick()
        rec = np.empty(1, self.in_spec.slot_dtype)
        rec[0] = ((mid, corr, ts.physical, ts.logical, 0, 0, self.number, self.in_spec.type_id, self.number, 0,
                   int(priority), _EXPECTS_REPLY, 0, 0, time.monotonic_ns()), msg.payload())
        receiver = self._receiver
        receiver.expect(corr)
        try:
            loop = self.loop
            if loop is not None and rt.inline_calls and loop.call_inline(rec):
                pass
            elif not self._push_one(rec, remaining(deadline)):
                raise QueueFull(f"the input queue of kernel {self.name!r} is full and its overflow policy "
                                "is drop: the call's message was dropped")
        except BaseException:
            receiver.abandon([corr])
            raise
        reply = receiver.wait_single(corr, deadline)
        if reply is None:
            raise RingTimeoutError(
                f"no reply from kernel {self.name!r} within {timeout} s "
                f"(state {self._state.value}, queue depth {len(self.input_queue)})"
            )
        return self._reply_message(reply)

    def call_many(self, messages: np.ndarray | Iterable[Any], *, timeout: float | None = 30.0,
                  priority: Priority | int = Priority.NORMAL) -> np.ndarray:
        """Send a bulk array of requests and return their replies' payloads, in request order.

        :raises KernelError: some handlers failed; ``.failed`` holds their indices and
            ``.replies`` the payload array (valid where the call succeeded).
        :raises RingTimeoutError: not every reply arrived within ``timeout``.
        """
        self._need_output("call_many()")
        self._check_sendable()
        payload = self._as_payload(messages)
        n = len(payload)
        if n == 0:
            return np.zeros(0, self.out_spec.dtype)
        deadline = deadline_after(timeout)
        first = self.runtime._reserve_corr(n)
        slots = self._slots(payload, first_corr=first, flags=MessageFlags.EXPECTS_REPLY, priority=priority)
        waiter = self._receiver.expect_range(first, n)
        sent = 0
        in_flight: collections.deque[tuple[int, int]] = collections.deque()
        try:
            # Send in chunks of half the smaller queue with at most two chunks in flight:
            # their replies always fit the output queue, so the kernel never waits for the
            # host to make room while the host waits for input room, and a batch larger
            # than both queues completes.
            chunk = max(1, min(self.input_queue.capacity, self.output_queue.capacity) // 2)
            while sent < n:
                if len(in_flight) == 2:
                    lo, hi = in_flight.popleft()
                    if not self._receiver.wait_range_part(waiter, lo, hi, deadline):
                        raise RingTimeoutError(
                            f"only {int(waiter.got.sum())} of {n} replies from kernel {self.name!r} arrived "
                            f"within {timeout} s ({sent} requests sent)")
                part = slots[sent:sent + chunk]
                took = self._push_many(part, remaining(deadline))
                in_flight.append((sent, sent + took))
                sent += took
                if took < len(part):  # the drop policy refused the rest of this chunk (counted)
                    unoffered = n - sent - (len(part) - took)
                    if unoffered:
                        with self.input_queue.producer_lock:
                            self.input_queue.record_drop(unoffered)
                    err = QueueFull(
                        f"the input queue of kernel {self.name!r} is full and its overflow policy is drop: "
                        f"{n - sent} of the {n} requests of call_many were dropped"
                    )
                    err.accepted = sent  # type: ignore[attr-defined]
                    raise err
        except BaseException:
            self._receiver.drop_range(waiter)
            raise
        if not self._receiver.wait_range(waiter, deadline):
            raise RingTimeoutError(
                f"only {int(waiter.got.sum())} of {n} replies from kernel {self.name!r} arrived within {timeout} s"
            )
        flags = waiter.records["header"]["flags"]
        failed = np.flatnonzero(flags & MessageFlags.ERROR)
        replies = waiter.records["payload"].copy()
        if len(failed):
            first_err = self._error_for(waiter.records["header"][failed[0]])
            for i in failed[1:]:
                self._error_for(waiter.records["header"][i])
            err = KernelError(f"{len(failed)} of {n} messages failed in kernel {self.name!r}; first: "
                              f"{first_err.detail}", kernel=self.name, code=first_err.code, detail=first_err.detail)
            err.failed = failed  # type: ignore[attr-defined]
            err.replies = replies  # type: ignore[attr-defined]
            raise err
        return replies

    # -- asyncio ---------------------------------------------------------------

    async def asend(self, msg: Any, **kw: Any) -> int | None:
        """``send`` for asyncio (waits for queue room without blocking the event loop)."""
        return await asyncio.to_thread(self.send, msg, **kw)

    async def asend_many(self, messages: Any, **kw: Any) -> int:
        return await asyncio.to_thread(self.send_many, messages, **kw)

    async def acall(self, msg: Any, **kw: Any) -> Any:
        """``call`` for asyncio."""
        return await asyncio.to_thread(self.call, msg, **kw)

    async def acall_many(self, messages: Any, **kw: Any) -> np.ndarray:
        return await asyncio.to_thread(self.call_many, messages, **kw)

    async def areceive(self, timeout: float | None = None) -> Any:
        """``receive`` for asyncio."""
        return await asyncio.to_thread(self.receive, timeout)

    async def areceive_many(self, max_count: int | None = None, timeout: float | None = 0.0, **kw: Any) -> np.ndarray:
        return await asyncio.to_thread(self.receive_many, max_count, timeout, **kw)

    # -- state, status, metrics ----------------------------------------------

    def read_state(self) -> dict[str, Any]:
        """A copy of the kernel's state fields (empty when it declares no state)."""
        arr = self.runtime._read_state(self)
        if arr is None:
            return {}
        return {n: (arr[0][n].copy() if isinstance(arr[0][n], np.ndarray) else arr[0][n]) for n in arr.dtype.names}

    def status(self) -> KernelStatus:
        cb = self.control
        code = cb.last_error
        return KernelStatus(
            kernel=self.name, number=self.number, backend=self.runtime.backend_name, mode=self.mode.value,
            state=self._state.value, processed=cb.messages_processed, in_flight=cb.messages_in_flight,
            input_depth=len(self.input_queue), output_depth=len(self.output_queue),
            errors=cb.error_count,
            last_error=ErrorCode(code).name if code in ErrorCode._value2member_map_ else str(code),
            unprocessed=self.unprocessed,
        )

    def metrics(self) -> KernelMetrics:
        """A snapshot of the kernel's counters, queue depths, latency histogram and alerts."""
        cb = self.control
        ins, outs = self.input_queue.stats(), self.output_queue.stats()
        lat = self.telemetry.latency
        processed = cb.messages_processed
        dropped = ins.dropped + outs.dropped + self.telemetry.k2k_failed
        up = time.monotonic() - self.telemetry.started
        p99 = lat.percentile_us(99)
        return KernelMetrics(
            kernel=self.name, state=self._state.value, processed=processed, errors=cb.error_count,
            last_error=cb.last_error, dropped=dropped,
            input_depth=ins.depth, input_max_depth=ins.max_depth,
            output_depth=outs.depth, output_max_depth=outs.max_depth, enqueued=ins.enqueued,
            late_replies=self._receiver.late_replies,
            latency_count=lat.count, latency_mean_us=lat.mean_us(), latency_p50_us=lat.percentile_us(50),
            latency_p99_us=p99, latency_max_us=lat.max_ns / 1000, uptime_s=up,
            throughput=processed / up if up > 0 else 0.0,
            alerts=Telemetry.alerts(processed, dropped, p99),
        )

    def __repr__(self) -> str:
        return f"<KernelHandle {self.name!r} #{self.number} on {self.runtime.backend_name}: {self._state.value}>"


class RingKernelRuntime:
    """A backend's runtime: launches kernels and routes messages between them.

    Subclasses set :attr:`backend_name`, and implement :meth:`_create_executor`
    (host-driven kernels) or override :meth:`_start_kernel` and
    :meth:`_stop_kernel` (device-resident loops). Use it as a context manager,
    or call :meth:`shutdown`.
    """

    #: The registered name of the backend.
    backend_name = "abstract"
    #: Whether the backend can keep a kernel running on the device (persistent mode).
    supports_persistent = True
    #: Whether the input queue's consumer can be woken by the host (a host
    #: thread); False for device-polled queues, where waits poll.
    host_signals_input = True
    #: Whether ``call`` on an idle host-driven kernel may serve it from the
    #: caller's thread (see HostLoop.call_inline).
    inline_calls = True

    def __init__(self, *, device: DeviceInfo | None = None, max_hops: int = DEFAULT_MAX_HOPS,
                 max_drift_us: int | None = None) -> None:
        if not isinstance(max_hops, int) or isinstance(max_hops, bool) or not 0 <= max_hops <= 255:
            raise ValueError(f"max_hops={max_hops!r} must be an int in 0 .. 255 (the header's hops field is a u8)")
        self.device = device
        self.max_hops = max_hops
        self.clock = HlcClock(0) if max_drift_us is None else HlcClock(0, max_drift_us=max_drift_us)
        self.broker = Broker()
        self._lock = threading.Lock()
        self._kernels: dict[str, KernelHandle] = {}
        self._by_number: dict[int, KernelHandle] = {}
        self._numbers = itertools.count(1)
        self._ids_lock = threading.Lock()
        self._last_reserved = 0
        self._last_corr = 0
        self._closed = False

    # -- public API --------------------------------------------------------------

    def launch(self, kernel: KernelDef, options: LaunchOptions | None = None, *, name: str | None = None,
               **overrides: Any) -> KernelHandle:
        """Launch ``kernel`` and return its handle (active unless ``auto_activate=False``).

        :param options: LaunchOptions; keyword ``overrides`` replace single fields.
        :param name: the instance's name for routing (default: the kernel's id).
        """
        if self._closed:
            raise BackendError(f"the {self.backend_name} runtime is shut down; create a new one")
        if not isinstance(kernel, KernelDef):
            raise KernelDefinitionError(f"launch() takes a @ringcore.kernel function, not {kernel!r}")
        opts = (options or LaunchOptions()).replace(**overrides) if overrides else (options or LaunchOptions())
        if opts.block_size is None:
            opts = opts.replace(block_size=kernel.block_size)
        mode = opts.mode or kernel.mode
        if mode is KernelMode.PERSISTENT:
            why = self._persistent_refusal(kernel)
            if why is not None:
                log.info("ringcore: kernel %r runs event-driven on the %s backend: %s", kernel.id,
                         self.backend_name, why)
                mode = KernelMode.EVENT_DRIVEN
        name = name or kernel.id
        with self._lock:
            if name in self._kernels:
                raise LifecycleError(f"a kernel named {name!r} is already running on this runtime; "
                                     "terminate it or launch with name=...")
            number = next(self._numbers)
            handle = KernelHandle(self, kernel, name, number, opts, mode)
            self._kernels[name] = handle
            self._by_number[number] = handle
        try:
            self._start_kernel(handle)
        except BaseException as exc:
            self._forget(handle)
            handle._state = KernelState.TERMINATED
            if isinstance(exc, (BackendError, KernelDefinitionError)):  # a compile error names the user's line
                raise
            raise BackendError(f"the {self.backend_name} backend could not launch kernel {name!r}: {exc}") from exc
        handle._transition(KernelState.LAUNCHED)
        if opts.auto_activate:
            handle.activate()
        return handle

    def get(self, name: str) -> KernelHandle:
        """The running kernel called ``name``."""
        with self._lock:
            h = self._kernels.get(name)
        if h is None:
            raise LookupError(f"no kernel named {name!r} runs here; running: {sorted(self._kernels)}")
        return h

    def kernels(self) -> list[KernelHandle]:
        with self._lock:
            return list(self._kernels.values())

    def subscribe(self, pattern: str, target: KernelHandle | str | Callable[[str, Any], Any]) -> Subscription:
        """Deliver messages published on topics matching ``pattern`` to a kernel or a callable."""
        if isinstance(target, KernelHandle):
            target = target.name
        return self.broker.subscribe(pattern, target)

    def unsubscribe(self, sub: Subscription) -> bool:
        return self.broker.unsubscribe(sub)

    def publish(self, topic: str, msg: Any, *, _source: KernelHandle | None = None) -> int:
        """Publish ``msg`` on ``topic``; return how many subscribers received it.

        Host callables always receive it. A kernel subscriber receives it when
        the message is of its input type and its queue has room; a full queue
        counts the message in that kernel's ``dropped`` metric, and a kernel of
        another input type is skipped (it cannot decode the message).
        """
        delivered = 0
        for h in self._publish_targets(topic, message_spec(msg)):
            if callable(h):
                h(topic, msg)
                delivered += 1
                continue
            head = h._header_tuple(0, _PUBLISHED, Priority.NORMAL, _source)
            rec = np.empty(1, h.in_spec.slot_dtype)
            rec[0] = (head, msg.payload())
            with h.input_queue.producer_lock:
                if h._state is KernelState.TERMINATING or h._state is KernelState.TERMINATED:
                    continue
                if h.input_queue.push_many(rec):
                    delivered += 1
                else:
                    h.input_queue.record_drop(1)
        return delivered

    def _publish_targets(self, topic: str, spec: MessageSpec) -> list[Any]:
        """The subscribers a publish of a ``spec`` message on ``topic`` goes to: host callables, and kernels
        of that input type (whether their queue has room, or they are terminating, is decided at the push)."""
        out: list[Any] = []
        for sub in self.broker.matching(topic):
            if callable(sub.target):
                out.append(sub.target)
                continue
            with self._lock:
                h = self._kernels.get(sub.target)
            if h is not None and h.in_spec is spec:
                out.append(h)
        return out

    def _publish_reach(self, topic: str, spec: MessageSpec) -> int:
        """How many subscribers a publish of a ``spec`` message on ``topic`` would reach now: host callables,
        and kernels of that type that accept messages and have queue room (what ``publish`` counts)."""
        reached = 0
        for h in self._publish_targets(topic, spec):
            if callable(h) or (h._state is not KernelState.TERMINATING and h._state is not KernelState.TERMINATED
                               and len(h.input_queue) < h.input_queue.capacity):
                reached += 1
        return reached

    def shutdown(self, timeout: float = 5.0) -> None:
        """Terminate every kernel and release the backend. Safe to call twice.

        :raises TerminationTimeoutError: some kernel did not stop in time (the others did).
        """
        self._closed = True
        stuck = []
        for h in self.kernels():
            try:
                h.terminate(timeout)
            except TerminationTimeoutError:
                stuck.append(h.name)
        self._close_backend()
        if stuck:
            raise TerminationTimeoutError(f"kernels {stuck} did not acknowledge termination within {timeout} s")

    def __enter__(self) -> RingKernelRuntime:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    def info(self) -> dict[str, Any]:
        return {"backend": self.backend_name, "device": self.device.as_dict() if self.device else None,
                "kernels": [h.name for h in self.kernels()]}

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.backend_name}: {len(self._kernels)} kernels>"

    # -- the backend seam -----------------------------------------------------------

    def allocate(self, nbytes: int) -> np.ndarray:
        """Host-visible memory for queues and control blocks (128-byte aligned uint8 array).

        Device backends return memory the device can also reach (pinned, SVM, mapped).
        """
        return aligned_zeros(nbytes)

    def _persistent_refusal(self, kernel: KernelDef) -> str | None:
        """Why ``kernel``, launched persistent, must run event-driven here (logged); None: it may persist."""
        if not self.supports_persistent:
            return "the backend cannot keep a kernel resident"
        return None

    def _create_executor(self, handle: KernelHandle) -> BatchExecutor:
        """Return the executor that runs ``handle``'s batches on this backend's device."""
        raise NotImplementedError(f"{type(self).__name__} must implement _create_executor or _start_kernel")

    def _start_kernel(self, handle: KernelHandle) -> None:
        """Start serving ``handle``: by default a host loop over the backend's executor."""
        handle.loop = HostLoop(handle, self._create_executor(handle))
        handle.loop.start()

    def _stop_kernel(self, handle: KernelHandle, timeout: float | None) -> bool:
        """Wait for ``handle``'s loop to exit after ``should_terminate`` was set; True if it did."""
        if handle.loop is None:
            return True
        return handle.loop.join(timeout)

    def _read_state(self, handle: KernelHandle) -> np.ndarray | None:
        """The kernel's current state record: the executor's (or device loop's) ``read_state()`` where it
        has one (a device backend copies the state back from the device), else a copy of the handle's."""
        reader = getattr(handle.loop.executor, "read_state", None) if handle.loop is not None else None
        if reader is not None:
            return reader()
        return None if handle.state_array is None else handle.state_array.copy()

    def _close_backend(self) -> None:
        """Release device resources after every kernel has terminated."""

    # -- shared host-side machinery ----------------------------------------------

    def _forget(self, handle: KernelHandle) -> None:
        with self._lock:
            if self._kernels.get(handle.name) is handle:
                del self._kernels[handle.name]
            self._by_number.pop(handle.number, None)
        self.broker.remove_target(handle.name)

    def _reserve_ids(self, n: int) -> int:
        """Reserve ``n`` message ids; return the first."""
        with self._ids_lock:
            first = self._last_reserved + 1
            self._last_reserved += n
            return first

    def _reserve_call(self) -> tuple[int, int]:
        """Reserve one message id and one correlation id (one lock round for ``call``)."""
        with self._ids_lock:
            self._last_reserved += 1
            self._last_corr += 1
            return self._last_reserved, self._last_corr

    def _reserve_corr(self, n: int) -> int:
        with self._ids_lock:
            first = self._last_corr + 1
            self._last_corr += n
            return first

    def _error_detail(self, key: int | tuple[str, int]) -> str | None:
        """An error detail kept by any kernel (a forwarded message may fail in another kernel)."""
        for h in self.kernels():
            with h._errors_lock:
                got = h._errors.pop(key, None)
            if got is not None:
                return got[1]
        return None

    def _lookup(self, target: str | int) -> KernelHandle | None:
        with self._lock:
            if isinstance(target, str):
                return self._kernels.get(target)
            return self._by_number.get(int(target))

    def _send_verdict(self, target: str | int, msg_type: type,
                      hops: int) -> tuple[DeliveryResult | None, KernelHandle | None]:
        """What a kernel-to-kernel send of a ``msg_type`` message that would make its ``hops``-th hop gets,
        short of queue room: ``(failure, dest)``, the failure None when the message can be enqueued.

        The one place these rules live: ``ctx.send`` applies them, and a device backend checks its
        outbox against them (``ringcore.lang.host.KernelEnv.deliverable``).
        """
        dest = self._lookup(target)
        if dest is None:
            return DeliveryResult.NOT_FOUND, None
        if dest._state is KernelState.TERMINATED or dest._state is KernelState.TERMINATING:
            return DeliveryResult.TERMINATED, dest
        if msg_type is not dest.kernel.input_type:
            return DeliveryResult.WRONG_TYPE, dest
        if hops > self.max_hops:
            return DeliveryResult.MAX_HOPS_EXCEEDED, dest
        return None, dest

    def _forward(self, source: KernelHandle, target: str | int, msg: Any, parent: MessageHeader | None) -> DeliveryResult:
        """Kernel-to-kernel send (called from a handler's ``ctx.send``)."""
        hops = (parent.hops if parent is not None else 0) + 1
        failure, dest = self._send_verdict(target, type(msg), hops)
        if failure is not None:
            source.telemetry.k2k_failed += 1
            return failure
        ts = source.clock.tick()
        corr = parent.correlation_id if parent is not None else 0
        flags = MessageFlags.K2K | ((parent.flags & MessageFlags.EXPECTS_REPLY) if parent is not None else 0)
        reply_to = parent.reply_to if parent is not None else dest.number
        send_ns = parent.send_ns if parent is not None else time.monotonic_ns()
        prio = parent.priority if parent is not None else int(Priority.NORMAL)
        rec = np.empty(1, dest.in_spec.slot_dtype)
        rec[0] = ((self._reserve_ids(1), corr, ts.physical, ts.logical, source.number, source.number,
                   dest.number, dest.in_spec.type_id, reply_to, 0, prio, int(flags), hops, 0, send_ns),
                  msg.payload())
        q = dest.input_queue
        with q.producer_lock:
            if dest._state is KernelState.TERMINATING or dest._state is KernelState.TERMINATED:
                source.telemetry.k2k_failed += 1
                return DeliveryResult.TERMINATED
            ok = q.push_many(rec) == 1
        if not ok:
            source.telemetry.k2k_failed += 1
            return DeliveryResult.QUEUE_FULL
        return DeliveryResult.DELIVERED

    def _publish_replies(self, source: KernelHandle, req: np.ndarray, replies: np.ndarray | None,
                         has_reply: np.ndarray, codes: np.ndarray, details: list[str] | None = None) -> None:
        """Publish replies (and error reports) for requests ``req`` to their ``reply_to`` kernels.

        :param details: per request, the error detail of a failed one (kept for ``receive``).
        """
        reply_to = req["reply_to"]
        groups = np.unique(reply_to)
        for target in groups.tolist():
            dest = source if target in (0, source.number) else (self._lookup(target) or source)
            if len(groups) == 1:
                self._publish_to(dest, source, req, replies, has_reply, codes, details)
                continue
            sel = reply_to == target
            self._publish_to(dest, source, req[sel], None if replies is None else replies[sel],
                             has_reply[sel], codes[sel],
                             None if details is None else [d for d, s in zip(details, sel.tolist()) if s])

    def _publish_small(self, source: KernelHandle, items: list[tuple[MessageHeader, Any, int, str]]) -> HlcTimestamp:
        """Publish a few replies: ``(request header, payload or None, error code, error detail)`` each.

        Returns the timestamp of the last reply.
        """
        ts = None
        for req, payload, code, detail in items:
            ts = self._publish_one(source, req, payload, code, detail)
        return ts

    def _publish_one(self, source: KernelHandle, req: MessageHeader, payload: Any, code: int,
                     detail: str) -> HlcTimestamp:
        """Publish the reply to ``req`` (``payload``: an output record or a tuple of its field
        values), or with ``payload`` None and a ``code``, an error report; returns its timestamp."""
        target = req.reply_to
        dest = source if target == 0 or target == source.number else (self._lookup(target) or source)
        q = dest.output_queue
        if payload is not None and dest is not source and q.dtype != source.output_queue.dtype:
            code = ErrorCode.WRONG_MESSAGE_TYPE
            detail = self._wrong_reply_text(source, dest)
            source._record_error(req.correlation_id, code, detail)
            payload = None
        mid = self._reserve_ids(1)
        ts = source.clock.tick()
        head = (mid, req.correlation_id, ts.physical, ts.logical, source.number, source.number, 0,
                source.out_spec.type_id if source.out_spec is not None else 0, target, code, req.priority,
                _REPLY_ERROR if code else _REPLY, 0, 0, req.send_ns)
        if payload is None:
            rec = np.zeros(1, q.dtype)
            rec["header"][0] = head
            if code and not req.correlation_id and detail:
                source._keep_error(("reply", mid), code, detail)
        else:
            rec = np.empty(1, q.dtype)
            rec[0] = (head, payload)
        self._push_replies(source, dest, rec)
        return ts

    @staticmethod
    def _wrong_reply_text(source: KernelHandle, dest: KernelHandle) -> str:
        return (f"kernel {source.name!r} replied with {source.kernel.output_type.__qualname__}, but the caller "
                f"waits on kernel {dest.name!r}, whose replies are "
                f"{dest.kernel.output_type.__qualname__ if dest.kernel.output_type else 'nothing'}")

    def _push_replies(self, source: KernelHandle, dest: KernelHandle, out: np.ndarray) -> None:
        q = dest.output_queue
        k = len(out)
        with q.producer_lock:
            done = q.push_many(out)
            while done < k:
                if serving_inline():
                    # This thread also consumes the queue (HostLoop.call_inline): waiting for
                    # room would wait for itself, so it moves replies to the host side first.
                    dest._receiver.pending_count()
                # Wait for the host to consume; give up only when told to terminate.
                elif not q.wait_not_full(0.05) and source.control.should_terminate:
                    break
                done += q.push_many(out[done:])
        if done < k:
            q.record_drop(k - done)
            source.control.last_error = ErrorCode.OUTPUT_FULL
            source.control.add("error_count", k - done)
            text = (f"kernel {source.name!r} terminated with {k - done} replies it could not publish: "
                    f"the output queue of {dest.name!r} stayed full; receive replies, or raise output_capacity")
            for corr in out["header"]["correlation_id"][done:].tolist():
                source._record_error(int(corr), ErrorCode.OUTPUT_FULL, text)
            log.warning("ringcore: %s", text)

    def _publish_to(self, dest: KernelHandle, source: KernelHandle, req: np.ndarray,
                    replies: np.ndarray | None, has_reply: np.ndarray, codes: np.ndarray,
                    details: list[str] | None = None) -> None:
        k = len(req)
        out = source._scratch("publish", dest.output_queue.dtype, k)
        same_type = replies is not None and dest.output_queue.dtype["payload"] == replies.dtype
        all_replied = bool(has_reply.all())
        if not (same_type and all_replied):
            out["payload"] = 0  # error reports (and messages without a reply) carry an empty payload
        if replies is not None and has_reply.any():
            if same_type:
                if all_replied:
                    out["payload"] = replies
                else:
                    out["payload"][has_reply] = replies[has_reply]
            else:
                bad = has_reply & (codes == 0)
                codes = codes.copy()
                codes[bad] = ErrorCode.WRONG_MESSAGE_TYPE
                corr = req["correlation_id"]
                text = self._wrong_reply_text(source, dest)
                details = list(details) if details is not None else [""] * k
                for i in np.flatnonzero(bad).tolist():
                    source._record_error(int(corr[i]), ErrorCode.WRONG_MESSAGE_TYPE, text)
                    details[i] = text
                has_reply = has_reply & ~bad
        first = self._reserve_ids(k)
        phys, logical = source.clock.stamp_many(k)
        _fill_reply_headers(out, req, first, phys, logical, source.number,
                            source.out_spec.type_id if source.out_spec is not None else 0, codes)
        if details is not None:
            # Error reports of sent messages (no correlation id) keep their detail under the report's id.
            for i in np.flatnonzero((codes != 0) & (req["correlation_id"] == 0)).tolist():
                if details[i]:
                    source._keep_error(("reply", first + i), int(codes[i]), details[i])
        self._push_replies(source, dest, out)


# The reply header as eight little-endian u64 words (see HEADER_DTYPE): filling whole words
# touches each header once per word instead of once per field.
_PRIORITY_MASK = np.uint64(0xFF << 32)
_HIGH32 = np.uint64(0xFFFFFFFF << 32)


def _words(records: np.ndarray, n: int) -> np.ndarray:
    """The first eight u64 words (the header) of each of ``n`` queue-slot records, as an (n, 8) view."""
    size = records.dtype.itemsize
    return np.ndarray((n, 8), dtype="<u8", buffer=records, offset=0, strides=(size, 8))


def _header_words(hdr: np.ndarray) -> np.ndarray:
    """Header records (a field view of queue slots, or a plain array) as an (n, 8) u64 view, or a copy."""
    n = len(hdr)
    base = hdr.base
    ptr = hdr.__array_interface__["data"][0]
    if isinstance(base, np.ndarray) and base.flags.c_contiguous and hdr.strides[0] % 8 == 0 and ptr % 8 == 0:
        start = ptr - base.__array_interface__["data"][0]
        if 0 <= start and start + (n - 1) * hdr.strides[0] + 64 <= base.nbytes:
            return np.ndarray((n, 8), dtype="<u8", buffer=base, offset=start, strides=(hdr.strides[0], 8))
    return np.ascontiguousarray(hdr).view("<u8").reshape(n, 8)


def _fill_reply_headers(out: np.ndarray, req: np.ndarray, first_id: int, phys: np.ndarray, logical: np.ndarray,
                        source: int, type_id: int, codes: np.ndarray) -> None:
    """Write the headers of ``len(req)`` replies to requests ``req`` (header records) into ``out``."""
    k = len(req)
    rq = _header_words(req)
    w = _words(out, k)
    w[:, 0] = np.arange(first_id, first_id + k, dtype=np.uint64)          # message_id
    w[:, 1] = rq[:, 1]                                                     # correlation_id
    w[:, 2] = phys                                                         # hlc_physical
    w[:, 3] = logical.astype(np.uint64) | np.uint64(source << 32)          # hlc_logical, hlc_node
    w[:, 4] = np.uint64(source)                                            # source_kernel, dest_kernel 0
    w[:, 5] = (rq[:, 5] & _HIGH32) | np.uint64(type_id)                    # type_id, reply_to (kept)
    flags = np.where(codes != 0, np.uint64(int(MessageFlags.REPLY | MessageFlags.ERROR) << 40),
                     np.uint64(int(MessageFlags.REPLY) << 40))
    w[:, 6] = codes.astype(np.uint64) | (rq[:, 6] & _PRIORITY_MASK) | flags  # status, priority, flags; hops 0
    w[:, 7] = rq[:, 7]                                                     # send_ns


class _CallableModule(type(sys)):
    """Lets ``ringcore.runtime("auto")`` select and create a runtime while
    ``ringcore.runtime`` stays this module."""

    def __call__(self, backend: str = "auto", **kwargs: Any) -> RingKernelRuntime:
        """Create a runtime of ``backend`` ("auto": the best available here); see ringcore.plugins."""
        from .plugins import create_runtime

        return create_runtime(backend, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
