"""RingQueue: layout, single and bulk operations, attaching, threads, and a model check."""

from __future__ import annotations

import collections
import struct
import threading

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import ringcore
from ringcore._sync import Doorbell
from ringcore.errors import MessageTypeError, QueueFull
from ringcore.queue import QUEUE_HEADER_SIZE, QueueStats, RingQueue, round_capacity

REC = np.dtype([("seq", "<u8"), ("check", "<u4"), ("tag", "u1", (4,))])  # 16 bytes


def records(start: int, n: int) -> np.ndarray:
    out = np.zeros(n, dtype=REC)
    out["seq"] = np.arange(start, start + n, dtype=np.uint64)
    out["check"] = (out["seq"] * 2654435761) & 0xFFFFFFFF
    out["tag"] = (out["seq"] % 251)[:, None]
    return out


def u64_at(q: RingQueue, offset: int) -> int:
    return struct.unpack_from("<Q", q.buffer.tobytes(), offset)[0]


# -- capacity -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "asked, got",
    [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (1000, 1024), (1024, 1024), (1025, 2048),
     (np.int64(6), 8)],
)
def test_capacity_rounds_up_to_a_power_of_two(asked, got):
    assert round_capacity(asked) == got
    q = RingQueue(REC, asked)
    assert q.capacity == got and q.mask == got - 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, 4.0, True, "8", None, 2**30 + 1])
def test_bad_capacity_is_refused(bad):
    with pytest.raises(ValueError, match="capacity"):
        RingQueue(REC, bad)


def test_nbytes_and_default_buffer():
    assert QUEUE_HEADER_SIZE == 384
    assert RingQueue.nbytes(REC, 5) == 384 + 8 * 16
    q = RingQueue(REC, 5)
    assert q.buffer.nbytes == RingQueue.nbytes(REC, 5)
    assert q.buffer.ctypes.data % 128 == 0  # the cache-line layout needs an aligned start
    raw = q.buffer.tobytes()
    assert u64_at(q, 272) == 8 and u64_at(q, 280) == 16
    assert not raw[:272].strip(b"\0") and not raw[288:].strip(b"\0")  # the rest starts zeroed


def test_zero_size_dtype_is_refused():
    with pytest.raises(ValueError, match="at least one byte"):
        RingQueue(np.dtype([]), 4)


# -- layout ---------------------------------------------------------------------------


def test_header_layout_in_raw_bytes():
    q = RingQueue(REC, 8)
    assert u64_at(q, 272) == 8  # capacity
    assert u64_at(q, 280) == 16  # slot size
    q.push_many(records(0, 5))
    q.pop_many(2)
    q.record_drop(3)
    raw = q.buffer.tobytes()
    assert struct.unpack_from("<Q", raw, 0)[0] == 5  # head
    assert struct.unpack_from("<Q", raw, 128)[0] == 2  # tail
    assert struct.unpack_from("<Q", raw, 256)[0] == 3  # dropped
    assert struct.unpack_from("<Q", raw, 264)[0] == 5  # max depth
    # every other header byte is zero: head, tail and stats sit on their own lines
    used = set(range(0, 8)) | set(range(128, 136)) | set(range(256, 288))
    assert all(raw[i] == 0 for i in range(QUEUE_HEADER_SIZE) if i not in used)


def test_slots_start_at_384_and_wrap_by_mask():
    q = RingQueue(REC, 4)
    q.push_many(records(0, 3))
    q.pop_many()
    q.push_many(records(3, 3))  # indices 3, 4, 5 -> slots 3, 0, 1
    raw = q.buffer.tobytes()

    def seq_in_slot(slot):
        return struct.unpack_from("<Q", raw, 384 + slot * 16)[0]

    assert [seq_in_slot(s) for s in (3, 0, 1)] == [3, 4, 5]
    assert struct.unpack_from("<I", raw, 384 + 3 * 16 + 8)[0] == records(3, 1)["check"][0]
    assert raw[384 + 0 * 16 + 12: 384 + 0 * 16 + 16] == bytes([4 % 251] * 4)


def test_indices_grow_monotonically_past_capacity():
    q = RingQueue(REC, 2)
    for i in range(7):
        q.push(records(i, 1))
        assert q.pop()["seq"] == i
    assert (q.head, q.tail) == (7, 7)
    assert u64_at(q, 0) == 7 and u64_at(q, 128) == 7


# -- single and bulk push/pop ---------------------------------------------------------


def test_single_push_pop_and_empty():
    q = RingQueue(REC, 4)
    assert q.is_empty() and not q.is_full() and len(q) == 0 and q.depth == 0
    assert q.pop() is None
    assert len(q.pop_many()) == 0 and q.pop_many().dtype == REC
    rec = records(10, 1)[0]
    q.push(rec)  # a scalar record
    assert q.try_push(records(11, 1))  # a one-record array
    q.push(np.asarray(records(12, 1)[0]))  # a 0-d array
    assert len(q) == 3
    first = q.pop()
    assert isinstance(first, np.void) and first.dtype == REC
    assert first.tobytes() == rec.tobytes()
    assert [int(r["seq"]) for r in (q.pop(), q.pop())] == [11, 12]
    assert q.pop() is None


def test_full_queue():
    q = RingQueue(REC, 4)
    assert q.push_many(records(0, 4)) == 4
    assert q.is_full() and len(q) == 4
    assert not q.try_push(records(4, 1))
    assert q.push_many(records(4, 3)) == 0
    with pytest.raises(QueueFull):
        q.push(records(4, 1), timeout=0)
    assert q.pop_many()["seq"].tolist() == [0, 1, 2, 3]  # nothing overwritten


def test_push_many_takes_what_fits_in_order():
    q = RingQueue(REC, 8)
    assert q.push_many(records(0, 5)) == 5
    assert q.push_many(records(5, 5)) == 3
    assert q.pop_many()["seq"].tolist() == list(range(8))


def test_bulk_wraparound_round_trip():
    q = RingQueue(REC, 8)
    expected = collections.deque()
    got = []
    nxt = 0
    for push_n, pop_n in [(6, 4), (5, 3), (7, 8), (8, 1), (1, 5), (3, 10)]:
        n = q.push_many(records(nxt, push_n))
        expected.extend(range(nxt, nxt + n))
        nxt += n
        out = q.pop_many(pop_n)
        assert np.array_equal(out, records(len(got), len(out)))  # whole records, in order
        got.extend(out["seq"].tolist())
    got.extend(q.pop_many()["seq"].tolist())
    assert got == list(expected)


def test_pop_many_limits():
    q = RingQueue(REC, 8)
    q.push_many(records(0, 6))
    assert len(q.pop_many(0)) == 0
    assert len(q.pop_many(-3)) == 0
    assert q.pop_many(2)["seq"].tolist() == [0, 1]
    assert q.pop_many(100)["seq"].tolist() == [2, 3, 4, 5]


def test_popped_records_are_copies():
    q = RingQueue(REC, 4)
    q.push_many(records(0, 4))
    out = q.pop_many(2)
    one = q.pop()
    q.push_many(records(100, 3))  # overwrites the slots they came from
    assert out["seq"].tolist() == [0, 1] and one["seq"] == 2


def test_push_many_accepts_non_contiguous_and_2d_arrays():
    q = RingQueue(REC, 16)
    src = records(0, 10)
    assert q.push_many(src[::2]) == 5
    assert q.push_many(records(20, 4).reshape(2, 2)) == 4
    assert q.pop_many()["seq"].tolist() == [0, 2, 4, 6, 8, 20, 21, 22, 23]


def test_wrong_dtype_is_refused():
    q = RingQueue(REC, 4)
    other = np.zeros(2, dtype=[("seq", "<u8"), ("x", "<u8")])  # same size, other layout
    for call in (q.push_many, q.push_all, q.try_push, q.push):
        with pytest.raises(MessageTypeError, match="cannot take"):
            call(other[:1])
    with pytest.raises(MessageTypeError):
        q.push(other[0])
    with pytest.raises(MessageTypeError):
        q.push_many([1, 2])  # not an array
    assert q.is_empty()


def test_push_of_several_records_is_refused():
    q = RingQueue(REC, 4)
    with pytest.raises(ValueError, match="one record"):
        q.push(records(0, 3))
    with pytest.raises(ValueError, match="one record"):
        q.try_push(records(0, 0))
    assert q.is_empty()


def test_push_all_raises_queue_full_with_accepted_and_loses_nothing():
    q = RingQueue(REC, 4)
    batch = records(0, 10)
    with pytest.raises(QueueFull) as info:
        q.push_all(batch, timeout=0)
    assert info.value.accepted == 4
    assert "4 of 10" in str(info.value)
    assert q.pop_many()["seq"].tolist() == [0, 1, 2, 3]
    with pytest.raises(QueueFull) as info:
        q.push_all(batch[4:], timeout=0.001)
    assert info.value.accepted == 4
    got = q.pop_many()["seq"].tolist()
    assert q.push_all(batch[8:], timeout=0) == 2
    got += q.pop_many()["seq"].tolist()
    assert got == list(range(4, 10))


def test_push_all_with_a_doorbell_and_zero_timeout():
    q = RingQueue(REC, 2, not_full=Doorbell())
    with pytest.raises(QueueFull) as info:
        q.push_all(records(0, 3), timeout=0)
    assert info.value.accepted == 2


def test_waits_time_out():
    q = RingQueue(REC, 2)
    assert not q.wait_not_empty(0)
    assert not q.wait_not_empty(0.001)
    q.push_many(records(0, 2))
    assert q.wait_not_empty(0)
    assert not q.wait_not_full(0)
    assert not q.wait_not_full(0.001)
    with pytest.raises(ValueError, match="timeout"):
        q.wait_not_full(-1)
    qd = RingQueue(REC, 2, not_empty=Doorbell(), not_full=Doorbell())
    assert not qd.wait_not_empty(0.001)
    qd.push_many(records(0, 2))
    assert qd.wait_not_empty(None)
    assert not qd.wait_not_full(0.001)


def test_doorbells_are_rung():
    ne, nf = Doorbell(), Doorbell()
    q = RingQueue(REC, 4, not_empty=ne, not_full=nf)
    assert not ne.wait(0)
    q.push_many(records(0, 2))
    assert ne.wait(0)
    q.push_many(records(2, 1), notify=False)
    assert not ne.wait(0)
    assert not nf.wait(0)
    q.pop()
    assert nf.wait(0)
    q.pop_many()
    assert nf.wait(0)
    q.pop_many()  # nothing taken: no ring
    assert not nf.wait(0)


# -- statistics -------------------------------------------------------------------------


def test_stats_and_max_depth():
    q = RingQueue(REC, 8)
    assert q.stats() == QueueStats(0, 0, 0, 0, 0, 8)
    q.push_many(records(0, 5))
    q.pop_many(3)
    q.push_many(records(5, 1))
    s = q.stats()
    assert s == QueueStats(enqueued=6, dequeued=3, dropped=0, depth=3, max_depth=5, capacity=8)
    q.push_many(records(6, 4))
    assert q.stats().max_depth == 7
    q.pop_many()
    assert q.stats().max_depth == 7 and q.stats().depth == 0
    assert "0/8" in repr(q)


def test_record_drop():
    q = RingQueue(REC, 4)
    q.record_drop()
    q.record_drop(4)
    q.record_drop(0)
    assert q.stats().dropped == 5
    assert u64_at(q, 256) == 5
    assert q.is_empty()
    with pytest.raises(ValueError, match="negative"):
        q.record_drop(-1)
    assert q.stats().dropped == 5


# -- buffers -----------------------------------------------------------------------------


def test_queue_in_a_caller_buffer():
    buf = bytearray(RingQueue.nbytes(REC, 4) + 100)
    q = RingQueue(REC, 4, buffer=buf)
    q.push_many(records(7, 2))
    assert struct.unpack_from("<Q", buf, 0)[0] == 2
    assert struct.unpack_from("<Q", buf, 384 + 16)[0] == 8
    arr = np.zeros(RingQueue.nbytes(REC, 4) // 8, dtype=np.uint64)  # any dtype of the right size
    q2 = RingQueue(REC, 4, buffer=arr)
    q2.push_many(records(1, 1))
    assert int(arr[0]) == 1 and int(arr[384 // 8]) == 1


def test_second_queue_over_the_same_bytes_attaches():
    buf = np.zeros(RingQueue.nbytes(REC, 8), dtype=np.uint8)
    producer = RingQueue(REC, 8, buffer=buf)
    producer.push_many(records(0, 5))
    producer.record_drop(2)
    consumer = RingQueue(REC, 5, buffer=buf)  # 5 rounds to the same 8
    assert len(consumer) == 5
    assert consumer.stats() == producer.stats()
    assert consumer.pop_many(3)["seq"].tolist() == [0, 1, 2]
    assert len(producer) == 2  # the producer sees the consumer's tail
    assert producer.push_many(records(5, 6)) == 6
    assert consumer.pop_many()["seq"].tolist() == list(range(3, 11))
    assert producer.stats().dropped == 2 and producer.stats().max_depth == 8


def test_attaching_with_another_capacity_or_slot_size_is_refused():
    buf = np.zeros(RingQueue.nbytes(REC, 16), dtype=np.uint8)
    RingQueue(REC, 8, buffer=buf)
    with pytest.raises(ValueError, match="8 slots of 16 bytes"):
        RingQueue(REC, 16, buffer=buf)
    with pytest.raises(ValueError, match="8 slots of 16 bytes"):
        RingQueue(np.dtype([("a", "<u8")]), 8, buffer=buf)


def test_bad_buffers_are_refused():
    need = RingQueue.nbytes(REC, 4)
    with pytest.raises(ValueError, match=f"needs {need}"):
        RingQueue(REC, 4, buffer=bytearray(need - 1))
    with pytest.raises(ValueError, match="read-only"):
        RingQueue(REC, 4, buffer=bytes(need))
    with pytest.raises(ValueError, match="contiguous"):
        RingQueue(REC, 4, buffer=np.zeros(2 * need, dtype=np.uint8)[::2])


# -- threads ---------------------------------------------------------------------------

STRESS_N = 200_000


def run_spsc(q: RingQueue, total: int, *, chunks: list[int], pops: list[int]) -> np.ndarray:
    """Move ``total`` records from a producer thread to a consumer thread through ``q``."""
    out = np.zeros(total, dtype=REC)
    errors: list[BaseException] = []

    def produce():
        try:
            sent, i = 0, 0
            while sent < total:
                n = min(chunks[i % len(chunks)], total - sent)
                i += 1
                # a generous timeout only so that a broken queue fails instead of hanging
                q.push_all(records(sent, n), timeout=60)
                sent += n
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def consume():
        try:
            got, i = 0, 0
            while got < total:
                if not q.wait_not_empty(60):
                    raise AssertionError(f"consumer starved after {got} records")
                batch = q.pop_many(pops[i % len(pops)])
                i += 1
                out[got:got + len(batch)] = batch
                got += len(batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=produce), threading.Thread(target=consume)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "SPSC transfer hung"
    assert not errors, errors
    return out


def check_transfer(q: RingQueue, out: np.ndarray, total: int) -> None:
    assert np.array_equal(out, records(0, total))  # order and content, no loss, no duplicates
    assert q.is_empty()
    s = q.stats()
    assert s.enqueued == s.dequeued == total
    assert s.dropped == 0 and 1 <= s.max_depth <= q.capacity


def test_spsc_threads_with_doorbells():
    q = RingQueue(REC, 64, not_empty=Doorbell(), not_full=Doorbell())
    out = run_spsc(q, STRESS_N, chunks=[1, 7, 64, 100, 33, 250], pops=[5, 1000, 1, 64, 17])
    check_transfer(q, out, STRESS_N)


def test_spsc_threads_polling_without_doorbells():
    q = RingQueue(REC, 256)
    total = STRESS_N // 2
    out = run_spsc(q, total, chunks=[300, 1, 256, 50], pops=[1000, 3, 128])
    check_transfer(q, out, total)


def test_spsc_single_record_push_and_pop_threads():
    q = RingQueue(REC, 4, not_empty=Doorbell(), not_full=Doorbell())
    total = 20_000
    src = records(0, total)
    got = []

    def produce():
        for i in range(total):
            q.push(src[i], timeout=60)

    t = threading.Thread(target=produce)
    t.start()
    while len(got) < total:
        assert q.wait_not_empty(60)
        rec = q.pop()
        assert rec is not None
        got.append(int(rec["seq"]))
    t.join(60)
    assert got == list(range(total))


def test_spsc_through_message_slots():
    @ringcore.message(type_id=0x7A20_0001)
    class Sample:
        seq: ringcore.u64
        vec: ringcore.f32[8]

    q = RingQueue(Sample.slot_dtype, 32, not_empty=Doorbell(), not_full=Doorbell())
    total = 20_000
    slots = np.zeros(total, dtype=Sample.slot_dtype)
    slots["header"]["message_id"] = np.arange(total)
    slots["payload"]["seq"] = np.arange(total)
    column = np.arange(total, dtype=np.float32)[:, None]
    slots["payload"]["vec"] = column * np.arange(8, dtype=np.float32)
    t = threading.Thread(target=q.push_all, args=(slots, 60))
    t.start()
    got = []
    while sum(map(len, got)) < total:
        assert q.wait_not_empty(60)
        got.append(q.pop_many())
    t.join(60)
    assert np.concatenate(got).tobytes() == slots.tobytes()


# -- model check ---------------------------------------------------------------------------


class RingQueueModel(RuleBasedStateMachine):
    """Any sequence of operations behaves like a bounded deque."""

    @initialize(capacity=st.integers(1, 16))
    def setup(self, capacity):
        self.buf = np.zeros(RingQueue.nbytes(REC, capacity), dtype=np.uint8)
        self.q = RingQueue(REC, capacity, buffer=self.buf)
        self.cap = round_capacity(capacity)
        self.model: collections.deque[int] = collections.deque()
        self.next = 0
        self.max_depth = 0
        self.dropped = 0

    def _pushed(self, n):
        self.model.extend(range(self.next, self.next + n))
        self.next += n
        self.max_depth = max(self.max_depth, len(self.model))

    @rule(n=st.integers(0, 40))
    def push_many(self, n):
        done = self.q.push_many(records(self.next, n))
        assert done == min(n, self.cap - len(self.model))
        self._pushed(done)

    @rule()
    def try_push(self):
        ok = self.q.try_push(records(self.next, 1))
        assert ok == (len(self.model) < self.cap)
        if ok:
            self._pushed(1)

    @rule(n=st.integers(1, 40))
    def push_all_no_wait(self, n):
        free = self.cap - len(self.model)
        try:
            assert self.q.push_all(records(self.next, n), timeout=0) == n
            done = n
        except QueueFull as exc:
            done = exc.accepted
            assert n > free
        assert done == min(n, free)
        self._pushed(done)

    @rule(k=st.one_of(st.none(), st.integers(0, 40)))
    def pop_many(self, k):
        out = self.q.pop_many(k)
        want = len(self.model) if k is None else min(k, len(self.model))
        expected = [self.model.popleft() for _ in range(want)]
        assert out["seq"].tolist() == expected
        if want:
            assert np.array_equal(out, records(expected[0], want))

    @rule()
    def pop(self):
        rec = self.q.pop()
        if self.model:
            assert rec is not None
            assert rec.tobytes() == records(self.model.popleft(), 1)[0].tobytes()
        else:
            assert rec is None

    @rule(n=st.integers(0, 3))
    def drop(self, n):
        self.q.record_drop(n)
        self.dropped += n

    @precondition(lambda self: self.next > 0)
    @rule()
    def attach_sees_the_same_queue(self):
        view = RingQueue(REC, self.cap, buffer=self.buf)
        assert view.stats() == self.q.stats()

    @invariant()
    def matches_model(self):
        if not hasattr(self, "q"):
            return
        assert len(self.q) == len(self.model)
        assert self.q.is_empty() == (not self.model)
        assert self.q.is_full() == (len(self.model) == self.cap)
        s = self.q.stats()
        assert s.enqueued == self.next and s.dequeued == self.next - len(self.model)
        assert s.max_depth == self.max_depth and s.dropped == self.dropped


TestRingQueueModel = RingQueueModel.TestCase
TestRingQueueModel.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_pop_many_into_a_given_buffer_across_the_wrap():
    q = RingQueue(REC, 8)
    q.push_many(records(0, 6))
    q.pop_many(5)
    q.push_many(records(6, 7))  # 8 queued, wrapping past the end of the ring
    buf = np.zeros(5, REC)
    got = q.pop_many(out=buf)  # at most len(out)
    assert got.base is buf or got.base is buf.base
    assert got["seq"].tolist() == [5, 6, 7, 8, 9] and np.array_equal(got, records(5, 5))
    rest = q.pop_many(100, out=np.zeros(10, REC))
    assert rest["seq"].tolist() == [10, 11, 12] and len(q) == 0
    with pytest.raises(TypeError, match="dtype"):
        q.pop_many(out=np.zeros(4, np.uint8))
