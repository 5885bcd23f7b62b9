"""RingQueue: a single-producer single-consumer ring buffer over any host-visible buffer.

Layout of the buffer (offsets in bytes; every integer little-endian u64)::

    0     head          next index the producer writes; written only by the producer
    128   tail          next index the consumer reads; written only by the consumer
    256   dropped       messages refused under a drop policy (producer)
    264   max_depth     the deepest the queue has been (producer)
    272   capacity      slots, a power of two (constant)
    280   slot_size     bytes per slot (constant)
    384   slots         capacity x slot_size bytes; slot of index i is i & (capacity - 1)

Head and tail grow monotonically and never wrap in practice (2**64 messages).
The queue is full when ``head - tail == capacity`` and empty when they are equal.
Each side writes only its own index: the producer copies records into their
slots and then publishes them with one store to ``head``; the consumer copies
them out and then releases them with one store to ``tail``. Head, tail and the
producer's statistics each sit on their own 128-byte line, so the same layout
works in mapped pinned memory (CUDA), an SVM or device buffer (OpenCL), a
storage buffer (WGSL) or plain host memory.

The methods of one RingQueue object are SPSC primitives: one thread produces,
one consumes. Code with several producers serialises them on ``producer_lock``
(and several consumers on ``consumer_lock``).
"""

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np

from ._memory import aligned_zeros, byte_view
from ._sync import Doorbell, deadline_after, poll_until, remaining
from .errors import MessageTypeError, QueueFull

__all__ = ["RingQueue", "QueueStats", "QUEUE_HEADER_SIZE", "QUEUE_LAYOUT", "round_capacity"]

QUEUE_HEADER_SIZE = 384
_HEAD, _TAIL, _STATS = 0, 128, 256
#: Byte offsets of the header's u64 words (the table above), for code generated for devices.
QUEUE_LAYOUT = {"head": _HEAD, "tail": _TAIL, "dropped": _STATS, "max_depth": _STATS + 8,
                "capacity": _STATS + 16, "slot_size": _STATS + 24}
_MAX_CAPACITY = 1 << 30


class QueueStats(NamedTuple):
    """A snapshot of a queue's counters."""

    enqueued: int
    dequeued: int
    dropped: int
    depth: int
    max_depth: int
    capacity: int


def round_capacity(capacity: int) -> int:
    """``capacity`` rounded up to a power of two (validated)."""
    if not isinstance(capacity, (int, np.integer)) or isinstance(capacity, bool) or capacity < 1:
        raise ValueError(f"queue capacity must be a positive int, got {capacity!r}")
    if capacity > _MAX_CAPACITY:
        raise ValueError(f"queue capacity {capacity} exceeds the maximum {_MAX_CAPACITY}")
    return 1 << (int(capacity) - 1).bit_length()


class RingQueue:
    """A lock-free SPSC ring of fixed-size records of one numpy dtype.

    :param dtype: the record dtype of a slot (for messages, ``Msg.slot_dtype``).
    :param capacity: the number of slots, rounded up to a power of two.
    :param buffer: a writable buffer of at least :meth:`nbytes` bytes to lay the
        queue in (pinned host memory, an SVM mapping...). A new zeroed host
        buffer when omitted. An existing queue in the buffer is attached to.
    :param not_empty: rung by the producer after publishing; None when the
        consumer cannot be signalled (a device): waits then poll.
    :param not_full: rung by the consumer after releasing slots; likewise.
    """

    def __init__(
        self,
        dtype: np.dtype | type,
        capacity: int = 1024,
        *,
        buffer=None,
        not_empty: Doorbell | None = None,
        not_full: Doorbell | None = None,
    ) -> None:
        self.dtype = np.dtype(dtype)
        self.capacity = round_capacity(capacity)
        self.mask = self.capacity - 1
        self.slot_size = self.dtype.itemsize
        if self.slot_size == 0:
            raise ValueError("a queue slot must be at least one byte")
        nbytes = self.nbytes(self.dtype, self.capacity)
        if buffer is None:
            buffer = aligned_zeros(nbytes)
        self.buffer = byte_view(buffer, nbytes, f"a queue of {self.capacity} slots of {self.slot_size} bytes")
        self._head = self.buffer[_HEAD:_HEAD + 8].view("<u8")
        self._tail = self.buffer[_TAIL:_TAIL + 8].view("<u8")
        self._stats = self.buffer[_STATS:_STATS + 32].view("<u8")
        if self._stats[2] == 0:
            self._stats[2] = self.capacity
            self._stats[3] = self.slot_size
        elif (int(self._stats[2]), int(self._stats[3])) != (self.capacity, self.slot_size):
            raise ValueError(
                f"the buffer holds a queue of {int(self._stats[2])} slots of {int(self._stats[3])} bytes, "
                f"not {self.capacity} of {self.slot_size}"
            )
        body = self.buffer[QUEUE_HEADER_SIZE:]
        self._raw = body.reshape(self.capacity, self.slot_size)
        self.slots = body.view(self.dtype)
        self._head_local = int(self._head[0])
        self._tail_local = int(self._tail[0])
        self.not_empty = not_empty
        self.not_full = not_full
        self.producer_lock = threading.Lock()
        self.consumer_lock = threading.Lock()

    @staticmethod
    def nbytes(dtype: np.dtype | type, capacity: int) -> int:
        """Bytes a queue of ``capacity`` records of ``dtype`` occupies, header included."""
        return QUEUE_HEADER_SIZE + round_capacity(capacity) * np.dtype(dtype).itemsize

    # -- state ---------------------------------------------------------------

    def __len__(self) -> int:
        return int(self._head[0]) - int(self._tail[0])

    @property
    def depth(self) -> int:
        """Messages published and not yet consumed."""
        return len(self)

    def is_empty(self) -> bool:
        return int(self._head[0]) == int(self._tail[0])

    def is_full(self) -> bool:
        return int(self._head[0]) - int(self._tail[0]) >= self.capacity

    @property
    def head(self) -> int:
        return int(self._head[0])

    @property
    def tail(self) -> int:
        return int(self._tail[0])

    def stats(self) -> QueueStats:
        head, tail = int(self._head[0]), int(self._tail[0])
        return QueueStats(head, tail, int(self._stats[0]), head - tail, int(self._stats[1]), self.capacity)

    # -- producer side -------------------------------------------------------

    def _check(self, records: np.ndarray) -> np.ndarray:
        if not isinstance(records, np.ndarray) or records.dtype != self.dtype:
            got = records.dtype if isinstance(records, np.ndarray) else type(records).__name__
            raise MessageTypeError(f"queue of {self.dtype} cannot take records of {got}")
        return records if records.ndim == 1 else records.reshape(-1)

    def push_many(self, records: np.ndarray, *, notify: bool = True) -> int:
        """Publish as many of ``records`` as fit, in order; return how many. Never blocks.

        :param notify: ring the consumer's doorbell (False when the caller will consume them itself).
        """
        records = self._check(records)
        h = self._head_local
        free = self.capacity - (h - int(self._tail[0]))
        n = min(len(records), free)
        if n <= 0:
            return 0
        if n == 1 and records.flags.c_contiguous:
            # Copy bytes, not fields: a structured copy goes field by field.
            self._raw[h & self.mask] = records[:1].view(np.uint8)
        else:
            self._copy_in(records[:n], h)
        h += n
        self._head_local = h
        self._head[0] = h  # publish after the data
        depth = h - int(self._tail[0])
        if depth > self._stats[1]:
            self._stats[1] = depth
        if notify and self.not_empty is not None:
            self.not_empty.ring()
        return n

    def _copy_in(self, src: np.ndarray, h: int) -> None:
        n = len(src)
        if not src.flags.c_contiguous:
            src = np.ascontiguousarray(src)
        src = src.view(np.uint8).reshape(n, self.slot_size)
        start = h & self.mask
        first = min(n, self.capacity - start)
        self._raw[start:start + first] = src[:first]
        if first < n:
            self._raw[: n - first] = src[first:]

    def _one(self, record: np.ndarray | np.generic) -> np.ndarray:
        """``record`` (a scalar record, or an array holding exactly one) as a 1-element array."""
        if isinstance(record, np.generic):
            if record.dtype != self.dtype:
                raise MessageTypeError(f"queue of {self.dtype} cannot take a record of {record.dtype}")
            return np.array([record], dtype=self.dtype)
        records = self._check(record)
        if len(records) != 1:
            raise ValueError(
                f"expected one record, got an array of {len(records)}; "
                "use push_many or push_all for several"
            )
        return records

    def try_push(self, record: np.ndarray | np.generic) -> bool:
        """Publish one record if there is room; True if it was enqueued."""
        return self.push_many(self._one(record)) == 1

    def push(self, record: np.ndarray | np.generic, timeout: float | None = None) -> None:
        """Publish one record, waiting up to ``timeout`` seconds for room.

        :raises QueueFull: the queue stayed full for the whole timeout.
        """
        one = self._one(record)
        if self.push_many(one) == 1:
            return
        self.push_all(one, timeout)

    def push_all(self, records: np.ndarray, timeout: float | None = None) -> int:
        """Publish every record, in order, waiting up to ``timeout`` seconds for room.

        :raises QueueFull: with ``accepted`` set to how many leading records were
            enqueued before the timeout; the rest were not.
        """
        records = self._check(records)
        total = len(records)
        done = self.push_many(records)
        if done == total:
            return total
        deadline = deadline_after(timeout)
        while done < total:
            if not self.wait_not_full(remaining(deadline)):
                err = QueueFull(
                    f"queue stayed full ({self.capacity} slots) for {timeout} s: "
                    f"{done} of {total} records enqueued, {total - done} not; "
                    "consume faster, raise the capacity, or pass a longer timeout"
                )
                err.accepted = done  # type: ignore[attr-defined]
                raise err
            done += self.push_many(records[done:])
        return total

    def record_drop(self, n: int = 1) -> None:
        """Count ``n`` messages refused under a drop policy (producer side)."""
        if n < 0:
            raise ValueError(f"cannot record a negative number of drops ({n})")
        self._stats[0] += n

    def wait_not_full(self, timeout: float | None) -> bool:
        """Wait until there is room (or the timeout passes); True if there is room."""
        if not self.is_full():
            return True
        deadline = deadline_after(timeout)
        if self.not_full is None:
            return poll_until(lambda: not self.is_full(), deadline)
        while self.is_full():
            left = remaining(deadline)
            if left is not None and left <= 0:
                return False
            self.not_full.wait(left)
        return True

    # -- consumer side -------------------------------------------------------

    def pop_many(self, max_count: int | None = None, *, out: np.ndarray | None = None) -> np.ndarray:
        """Take up to ``max_count`` records (all available by default), in order. Never blocks.

        :param out: an array of this queue's dtype to copy into (its first records are
            returned, a view); by default a new array.
        """
        t = self._tail_local
        n = int(self._head[0]) - t
        if max_count is not None:
            n = min(n, max_count)
        if out is not None:
            if out.dtype != self.dtype:
                raise TypeError(f"pop_many(out=...) needs an array of dtype {self.dtype}, not {out.dtype}")
            n = min(n, len(out))
        if n <= 0:
            return np.empty(0, dtype=self.dtype)
        start = t & self.mask
        if out is not None:
            out = out[:n]
            self._copy_out(out, start)
        elif n == 1:
            out = self._raw[start].copy().view(self.dtype)
        else:
            out = np.empty(n, dtype=self.dtype)
            self._copy_out(out, start)
        t += n
        self._tail_local = t
        self._tail[0] = t  # release after the copy
        if self.not_full is not None:
            self.not_full.ring()
        return out

    def _copy_out(self, out: np.ndarray, start: int) -> None:
        n = len(out)
        dst = out.view(np.uint8).reshape(n, self.slot_size)
        first = min(n, self.capacity - start)
        dst[:first] = self._raw[start:start + first]
        if first < n:
            dst[first:] = self._raw[: n - first]

    def pop(self) -> np.void | None:
        """Take the oldest record, or None when the queue is empty. Never blocks."""
        t = self._tail_local
        if int(self._head[0]) == t:
            return None
        rec = self._raw[t & self.mask].copy().view(self.dtype)[0]
        t += 1
        self._tail_local = t
        self._tail[0] = t
        if self.not_full is not None:
            self.not_full.ring()
        return rec

    def wait_not_empty(self, timeout: float | None) -> bool:
        """Wait until a record is available (or the timeout passes); True if one is."""
        if not self.is_empty():
            return True
        deadline = deadline_after(timeout)
        if self.not_empty is None:
            return poll_until(lambda: not self.is_empty(), deadline)
        while self.is_empty():
            left = remaining(deadline)
            if left is not None and left <= 0:
                return False
            self.not_empty.wait(left)
        return True

    def __repr__(self) -> str:
        s = self.stats()
        return f"<RingQueue {s.depth}/{self.capacity} slots of {self.slot_size} B, enqueued={s.enqueued}>"
