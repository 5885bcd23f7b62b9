"""Host-side demultiplexing of a kernel's output queue.

The output queue has one consumer: whichever host thread currently holds the
receiver's lock. Threads waiting for replies elect a leader that blocks on the
queue's doorbell; the others block on their own doorbells and are woken when
the leader delivers what they wait for (a call's reply by correlation id, or
unsolicited records for ``receive``). The common case, one caller, is a direct
wake-up from the producer to the caller.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from ._sync import Doorbell, remaining
from .message import MessageFlags
from .queue import RingQueue

__all__ = ["Receiver"]

_NOTHING = object()
_POLL = 0.05  # seconds between polls of a queue whose producer cannot ring
_REPLY = int(MessageFlags.REPLY)


class _Range:
    """Waiter for the replies of a call_many: correlation ids [first, first + n)."""

    __slots__ = ("first", "n", "records", "got", "bell")

    def __init__(self, first: int, n: int, dtype: np.dtype) -> None:
        self.first = first
        self.n = n
        self.records = np.zeros(n, dtype)
        self.got = np.zeros(n, dtype=bool)
        self.bell = Doorbell()


class Receiver:
    """Routes records from one output queue to callers and to the receive inbox."""

    def __init__(self, queue: RingQueue, max_settled: int = 65536) -> None:
        self.queue = queue
        self._lock = threading.Lock()
        self._single: dict[int, Any] = {}        # correlation id -> record or _NOTHING
        self._single_bells: dict[int, Doorbell] = {}
        self._ranges: list[_Range] = []
        self._inbox: collections.deque[np.ndarray] = collections.deque()
        self._inbox_count = 0
        self._followers: set[Doorbell] = set()
        self._leader = False
        self._closed: BaseException | None = None
        self._settled: collections.OrderedDict[int, None] = collections.OrderedDict()
        self._max_settled = max_settled
        # Ranges of call_many correlation ids already answered (settled as a whole).
        self._settled_ranges: collections.deque[tuple[int, int]] = collections.deque(maxlen=256)
        #: Replies that arrived for calls already answered or given up (counted, then dropped).
        self.late_replies = 0

    # -- registration ------------------------------------------------------------

    def expect(self, corr: int) -> None:
        with self._lock:
            self._single[corr] = _NOTHING

    def expect_range(self, first: int, n: int) -> _Range:
        r = _Range(first, n, self.queue.dtype)
        with self._lock:
            self._ranges.append(r)
        return r

    def abandon(self, corrs: list[int] | range) -> None:
        """Forget calls that timed out; their late replies are dropped and counted."""
        with self._lock:
            for c in corrs:
                self._single.pop(c, None)
                self._single_bells.pop(c, None)
                self._settled[c] = None
            while len(self._settled) > self._max_settled:
                self._settled.popitem(last=False)

    def drop_range(self, r: _Range) -> None:
        with self._lock:
            if r in self._ranges:
                self._ranges.remove(r)
            missing = r.first + np.flatnonzero(~r.got)
            for c in missing.tolist():
                self._settled[c] = None
            while len(self._settled) > self._max_settled:
                self._settled.popitem(last=False)

    def close(self, exc: BaseException) -> None:
        """Fail every waiter (now and later) that is not already satisfied."""
        with self._lock:
            self._closed = exc
            for b in list(self._followers):
                b.ring()
            for r in self._ranges:
                r.bell.ring()
        if self.queue.not_empty is not None:
            self.queue.not_empty.ring()

    # -- draining ----------------------------------------------------------------

    def _drain_locked(self) -> None:
        recs = self.queue.pop_many()
        if len(recs) == 0:
            return
        if not self._single and not self._ranges and not self._settled and not self._settled_ranges:
            self._push_inbox(recs)
            return
        if len(recs) <= 4 and not self._ranges:
            self._drain_small(recs)
            return
        hdr = recs["header"]
        corr = hdr["correlation_id"]
        is_reply = (hdr["flags"] & MessageFlags.REPLY) != 0
        taken = np.zeros(len(recs), dtype=bool)
        for r in self._ranges:
            lo = int(corr[0]) - r.first
            if (lo >= 0 and lo + len(recs) <= r.n and int(corr[-1]) - int(corr[0]) == len(recs) - 1
                    and bool(is_reply.all()) and not r.got[lo:lo + len(recs)].any()
                    and bool((np.diff(corr.astype(np.int64)) == 1).all())):
                # The common case: a run of fresh replies, in order: one slice copy.
                r.records[lo:lo + len(recs)] = recs
                r.got[lo:lo + len(recs)] = True
                taken[:] = True
                r.bell.ring()
                continue
            m = is_reply & (corr >= r.first) & (corr < r.first + r.n)
            if m.any():
                pos = (corr[m] - r.first).astype(np.int64)
                fresh = ~r.got[pos]  # the first reply answers; a duplicate is late
                self.late_replies += int((~fresh).sum())
                r.records[pos[fresh]] = recs[m][fresh]
                r.got[pos[fresh]] = True
                taken |= m
                r.bell.ring()
        if self._single:
            keys = np.fromiter(self._single.keys(), dtype=np.uint64, count=len(self._single))
            m = is_reply & ~taken & np.isin(corr, keys)
            for i in np.flatnonzero(m):
                c = int(corr[i])
                if self._single[c] is _NOTHING:  # the first reply answers; a duplicate is late
                    self._single[c] = recs[i]
                    bell = self._single_bells.get(c)
                    if bell is not None:
                        bell.ring()
                else:
                    self.late_replies += 1
            taken |= m
        if self._settled or self._settled_ranges:
            late = is_reply & ~taken & (corr != 0)  # replies to sent messages carry no correlation id
            if late.any():
                settled = np.isin(corr, np.fromiter(self._settled.keys(), dtype=np.uint64))
                for first, n in self._settled_ranges:
                    settled |= (corr >= first) & (corr < first + n)
                late &= settled
            if late.any():
                self.late_replies += int(late.sum())
                taken |= late
        rest = recs[~taken]
        if len(rest):
            self._push_inbox(rest)

    def _drain_small(self, recs: np.ndarray) -> None:
        """Route a few records with plain Python (numpy's per-call overhead dominates here)."""
        hdr = recs["header"]
        rest = []
        for i, (corr, flags) in enumerate(zip(hdr["correlation_id"].tolist(), hdr["flags"].tolist())):
            if flags & _REPLY and corr:
                if corr in self._single and self._single[corr] is _NOTHING:
                    self._single[corr] = recs[i]
                    bell = self._single_bells.get(corr)
                    if bell is not None:
                        bell.ring()
                    continue
                if corr in self._single or self._is_settled(corr):
                    self.late_replies += 1
                    continue
            rest.append(i)
        if rest:
            self._push_inbox(recs if len(rest) == len(recs) else recs[rest])

    def _is_settled(self, corr: int) -> bool:
        return corr in self._settled or any(f <= corr < f + n for f, n in self._settled_ranges)

    def _settle(self, corr: int) -> None:
        self._settled[corr] = None
        while len(self._settled) > self._max_settled:
            self._settled.popitem(last=False)

    def _push_inbox(self, recs: np.ndarray) -> None:
        self._inbox.append(recs)
        self._inbox_count += len(recs)
        for b in list(self._followers):
            b.ring()

    def _take_inbox(self, max_count: int | None) -> np.ndarray:
        want = self._inbox_count if max_count is None else min(max_count, self._inbox_count)
        parts = []
        got = 0
        while got < want:
            chunk = self._inbox[0]
            k = min(len(chunk), want - got)
            if k == len(chunk):
                parts.append(self._inbox.popleft())
            else:
                parts.append(chunk[:k])
                self._inbox[0] = chunk[k:]
            got += k
        self._inbox_count -= got
        if not parts:
            return np.empty(0, self.queue.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    # -- waiting -----------------------------------------------------------------

    def _wait(self, check: Callable[[], Any], deadline: float | None, own: Doorbell | None = None) -> Any:
        """Run ``check`` (under the lock, after draining) until it returns something."""
        me = own
        while True:
            with self._lock:
                try:
                    self._drain_locked()
                    result = check()
                except BaseException:
                    if me is not None:
                        self._followers.discard(me)
                    raise
                if result is not _NOTHING:
                    if me is not None:
                        self._followers.discard(me)
                    return result
                if self._closed is not None:
                    if me is not None:
                        self._followers.discard(me)
                    raise self._closed
                left = remaining(deadline)
                if left is not None and left <= 0:
                    if me is not None:
                        self._followers.discard(me)
                    return _NOTHING
                leader = not self._leader
                if leader:
                    self._leader = True
                    if me is not None:
                        self._followers.discard(me)
                else:
                    if me is None:
                        me = Doorbell()
                    self._followers.add(me)
            if leader:
                try:
                    # Wait on the doorbell itself, not until the queue is non-empty: close()
                    # rings it to wake the leader when the kernel terminates.
                    bell = self.queue.not_empty
                    if bell is not None:
                        bell.wait(left)
                    else:  # a producer that cannot ring (a device): poll, bounded so close() is seen
                        self.queue.wait_not_empty(_POLL if left is None else min(left, _POLL))
                finally:
                    with self._lock:
                        self._leader = False
                        self._drain_locked()
                        # Hand leadership on: a follower re-checks and takes it if still waiting.
                        for b in self._followers:
                            b.ring()
                            break
            else:
                me.wait(left)

    def wait_single(self, corr: int, deadline: float | None) -> np.void | None:
        """The reply with correlation id ``corr``, or None at the deadline."""
        with self._lock:
            # Fast path: the reply is already there (a call served inline, or a quick kernel).
            self._drain_locked()
            rec = self._single.get(corr, _NOTHING)
            if rec is not _NOTHING:
                del self._single[corr]
                self._settle(corr)
                return rec
            bell = Doorbell()
            self._single_bells[corr] = bell

        def check() -> Any:
            rec = self._single.get(corr, _NOTHING)
            if rec is _NOTHING:
                return _NOTHING
            del self._single[corr]
            self._single_bells.pop(corr, None)
            self._settle(corr)
            return rec

        try:
            got = self._wait(check, deadline, bell)
        except BaseException:
            self.abandon([corr])
            raise
        if got is _NOTHING:
            self.abandon([corr])
            return None
        return got

    def wait_range_part(self, r: _Range, lo: int, hi: int, deadline: float | None) -> bool:
        """Wait until replies ``lo`` to ``hi`` (exclusive) of ``r`` arrived; False at the deadline.

        The range stays registered either way (see :meth:`wait_range` and :meth:`drop_range`).
        """
        def check() -> Any:
            return True if r.got[lo:hi].all() else _NOTHING

        return self._wait(check, deadline, r.bell) is True

    def wait_range(self, r: _Range, deadline: float | None) -> bool:
        """Wait until every reply of ``r`` arrived; False at the deadline."""
        def check() -> Any:
            return True if r.got.all() else _NOTHING

        try:
            done = self._wait(check, deadline, r.bell) is True
        except BaseException:
            self.drop_range(r)
            raise
        if not done:
            self.drop_range(r)
        else:
            with self._lock:
                if r in self._ranges:
                    self._ranges.remove(r)
                self._settled_ranges.append((r.first, r.n))
        return done

    def receive(self, max_count: int | None, min_count: int, deadline: float | None) -> np.ndarray:
        """Up to ``max_count`` unsolicited records, waiting for ``min_count`` until the deadline."""
        def check() -> Any:
            if self._inbox_count >= min_count or (self._closed is not None and self._inbox_count):
                return self._take_inbox(max_count)
            return _NOTHING

        got = self._wait(check, deadline)
        if got is _NOTHING:
            with self._lock:
                return self._take_inbox(max_count)
        return got

    def pending_count(self) -> int:
        with self._lock:
            self._drain_locked()
            return self._inbox_count
