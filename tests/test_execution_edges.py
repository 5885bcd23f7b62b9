"""Edge cases that hang or go wrong elsewhere, bad input, waits, shutdown, and threads left behind."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from ringcore.errors import RingTimeoutError
from ringcore.execution import (
    READ,
    WRITE,
    Access,
    AccessType,
    InvalidTransactionError,
    ManagerClosedError,
    MemoryStore,
    NoopVm,
    ReadOnlyAccessError,
    RuntimeFailedError,
    RuntimeManager,
    SimpleTransaction,
    StateSpace,
    VmInterface,
)
from ringcore.testing.execution import (
    HANG,
    Aborted,
    Crash,
    FaultyStore,
    RecordingVm,
    assert_store_matches,
    be64,
    data_key,
    enc,
    reference_run,
    tx,
)

W, R = WRITE, READ


def exec_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("ringcore-exec-")]


@pytest.fixture(autouse=True)
def no_thread_left_behind() -> Iterator[None]:
    """Every test here must leave no runtime thread running."""
    before = set(exec_threads())
    yield
    left = [n for n in exec_threads() if n not in before]
    assert not left, f"threads left behind: {left}"


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


# -- shapes that hung elsewhere --------------------------------------------------------------------


def test_empty_batch_completes(store):
    with RuntimeManager(NoopVm(), store) as m:
        b = m.schedule([])
        assert b.wait_processed(HANG) and b.wait_persisted(HANG) and b.wait_committed(HANG)
        assert b.index == 1 and len(b) == 0 and b.effects == [] and b.results == []
        b2 = m.schedule([tx("t", (1, W), writes={1: b"x"})])
        b3 = m.schedule([])
        assert b3.wait_committed(HANG) and b2.was_committed
        assert m.last_committed == 3
    assert store.get(StateSpace.META, b"last_committed") == be64(3)


def test_transaction_without_accesses_runs_and_commits(store):
    seen = []

    class Vm(VmInterface):
        def process_transaction(self, tx, handles):
            seen.append(tuple(handles))
            return "done"

    with RuntimeManager(Vm(), store) as m:
        b = m.schedule([SimpleTransaction([]), SimpleTransaction([], payload=2)])
        assert b.wait_committed(HANG)
        assert b.effects == ["done", "done"] and seen == [(), ()]


def test_resource_listed_twice_is_one_access_write_if_either_is(store):
    got = {}

    class Vm(VmInterface):
        def process_transaction(self, tx, handles):
            got[tx.payload] = [(h.id, h.access_type) for h in handles]
            for h in handles:
                if h.access_type is WRITE:
                    h.write(tx.payload.encode())

    with RuntimeManager(Vm(), store) as m:
        b = m.schedule([
            SimpleTransaction([Access.read(1), Access.write(2), Access.write(1)], payload="rw"),
            SimpleTransaction([Access.read(3), (3, READ)], payload="rr"),
            SimpleTransaction([(4, WRITE), (4, WRITE), (5, READ)], payload="ww"),
        ])
        assert b.wait_committed(HANG) and not b.errors
        assert m.read(1).version == 1  # one access: written once, one version
    assert got == {"rw": [(1, W), (2, W)], "rr": [(3, R)], "ww": [(4, W), (5, R)]}


def test_shutdown_drains_batches_in_flight(store):
    gate = threading.Event()
    m = RuntimeManager(RecordingVm(), store)
    b1 = m.schedule([tx("t1", (1, W), writes={1: b"a"}, gate=gate)])
    b2 = m.schedule([tx("t2", (1, W), writes={1: b"b"})])
    threading.Timer(0.05, gate.set).start()
    m.shutdown()
    assert b1.was_committed and b2.was_committed and m.closed
    assert store.get(StateSpace.LATEST_PTR, enc(1)) == be64(2)


def test_shutdown_cancel_leaves_the_store_at_the_last_commit(store):
    gate = threading.Event()
    m = RuntimeManager(RecordingVm(), store)
    m.schedule([tx("t0", (1, W), writes={1: b"a"})]).wait_committed(HANG)
    b2 = m.schedule([tx("t1", (2, W), writes={2: b"held"}, gate=gate)])
    b3 = m.schedule([tx("t2", (3, W), writes={3: b"c"})])
    assert b3.wait_persisted(HANG)
    stop = threading.Thread(target=m.shutdown, kwargs={"cancel": True})
    stop.start()
    assert b2.wait_committed(HANG) is False and b3.wait_committed(HANG) is False
    gate.set()  # the worker held at the gate finishes; its result is dropped
    stop.join(HANG)
    assert b2.was_canceled and b3.was_canceled
    assert_store_matches(store, {1: (1, b"a")}, 1)


def test_shutdown_drain_timeout_cancels_the_rest(store):
    gate = threading.Event()
    m = RuntimeManager(RecordingVm(), store)
    b = m.schedule([tx("t", (1, W), writes={1: b"a"}, gate=gate)])
    with pytest.raises(RingTimeoutError, match="not committed within.*did not stop within") as err:
        m.shutdown(timeout=0.01)
    assert "worker" in str(err.value)  # held at the gate: it cannot be stopped from outside
    assert b.was_canceled and m.closed
    gate.set()
    for t in m.threads:
        t.join(HANG)
    assert_store_matches(store, {}, 0)


def test_shutdown_is_idempotent_and_closes_only_its_own_store(store):
    m = RuntimeManager(NoopVm(), store)
    m.shutdown()
    m.shutdown()
    assert not store.closed
    with pytest.raises(ManagerClosedError):
        m.schedule([])
    with pytest.raises(ManagerClosedError):
        m.rollback_to(0)
    with pytest.raises(ManagerClosedError):
        m.read(1)
    own = RuntimeManager(NoopVm())
    inner = own.store
    own.shutdown()
    assert inner.closed


def test_many_managers_leave_no_threads():
    for workers in (1, 2, 4):
        with RuntimeManager(NoopVm(), workers=workers, readers=2) as m:
            assert len(exec_threads()) >= workers + 3
            m.schedule([SimpleTransaction([Access.write(i)]) for i in range(100)])
    assert exec_threads() == []


def test_workers_are_woken_for_transactions_that_become_runnable(store):
    """A chain across batches: every successor becomes runnable only when its predecessor ran."""
    with RuntimeManager(RecordingVm(), store, workers=4, chunk=1) as m:
        batches = [[tx(f"b{i}", (1, W), derive=True)] for i in range(200)]
        scheduled = [m.schedule(b) for b in batches]
        assert scheduled[-1].wait_committed(HANG)
    assert_store_matches(store, reference_run(batches)[0], 200)


# -- bad input, named --------------------------------------------------------------------------------


class NoAccesses:
    pass


@pytest.mark.parametrize("bad, message", [
    (NoAccesses(), "has no 'accesses' attribute"),
    (SimpleTransaction.__new__(SimpleTransaction), "has no 'accesses' attribute"),
    (type("T", (), {"accesses": 5})(), "are not iterable"),
    (type("T", (), {"accesses": [(1, WRITE, 3)]})(), r"access \(1, .*\) is not a \(resource id, AccessType\) pair"),
    (type("T", (), {"accesses": [7]})(), "access 7 is not a"),
    (type("T", (), {"accesses": [(1, "read")]})(), "access type 'read' of resource 1 is not AccessType.READ"),
    (type("T", (), {"accesses": [(1, 1)]})(), "access type 1 of resource 1"),
    (type("T", (), {"accesses": [(1.5, WRITE)]})(), "resource id 1.5 has unsupported type float"),
    (type("T", (), {"accesses": [(None, READ)]})(), "resource id None has unsupported type NoneType"),
    (type("T", (), {"accesses": [(True, READ)]})(), "resource id True is a bool"),
    (type("T", (), {"accesses": [(-1, READ)]})(), r"resource id -1 is out of range.*\[0, 2\*\*64\)"),
    (type("T", (), {"accesses": [(2**64, READ)]})(), "resource id 18446744073709551616 is out of range"),
])
def test_malformed_transactions_are_named_and_nothing_is_scheduled(store, bad, message):
    with RuntimeManager(NoopVm(), store) as m:
        good = SimpleTransaction([Access.write(1)])
        with pytest.raises(InvalidTransactionError, match=message) as err:
            m.schedule([good, bad])
        assert "transaction #1 of the batch" in str(err.value)
        assert isinstance(err.value, TypeError) and isinstance(err.value, ValueError)
        assert m.last_index == 0
        assert m.schedule([good]).index == 1


def test_accesses_property_that_raises_is_reported(store):
    class Broken:
        @property
        def accesses(self):
            raise KeyError("boom")

    with RuntimeManager(NoopVm(), store) as m, pytest.raises((KeyError, InvalidTransactionError)):
        m.schedule([Broken()])


@pytest.mark.parametrize("options, message", [
    ({"workers": 0}, "workers must be an int >= 1, got 0"),
    ({"workers": 1.5}, "workers must be an int >= 1"),
    ({"readers": -1}, "readers must be an int >= 0, got -1"),
    ({"chunk": 0}, "chunk must be"),
    ({"max_in_flight": 0}, "max_in_flight must be"),
])
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        RuntimeManager(NoopVm(), **options)


def test_objects_that_are_not_vms_or_stores_are_named():
    with pytest.raises(TypeError, match="is not a VM: it has no process_transaction"):
        RuntimeManager(object())
    with pytest.raises(TypeError, match="is not a Store: it has no prefix_iter"):
        RuntimeManager(NoopVm(), type("S", (), {"get": lambda self: None})())


def test_negative_timeouts_are_refused(store):
    with RuntimeManager(NoopVm(), store) as m:
        b = m.schedule([SimpleTransaction([Access.write(1)])])
        b.wait_committed(HANG)
        with pytest.raises(ValueError, match="timeout must be >= 0"):
            m.flush(-1)


# -- handles -------------------------------------------------------------------------------------------


def test_writing_through_a_read_handle_aborts_the_transaction(store):
    class Vm(VmInterface):
        def process_transaction(self, tx, handles):
            handles[0].write(b"nope")

    with RuntimeManager(Vm(), store) as m:
        b = m.schedule([SimpleTransaction([Access.read(1)])])
        b.wait_committed(HANG)
    err = b.errors[0]
    assert isinstance(err, ReadOnlyAccessError) and isinstance(err, PermissionError)
    assert "declared READ" in str(err) and "resource 1" in str(err)
    assert store.get(StateSpace.LATEST_PTR, enc(1)) is None


def test_a_handle_kept_after_its_transaction_cannot_write(store):
    kept: list[Any] = []

    class Vm(VmInterface):
        def process_transaction(self, tx, handles):
            kept.extend(handles)

    with RuntimeManager(Vm(), store) as m:
        m.schedule([SimpleTransaction([Access.write(1)])]).wait_committed(HANG)
    with pytest.raises(ReadOnlyAccessError, match="after its transaction ended"):
        kept[0].write(b"late")
    with pytest.raises(ReadOnlyAccessError):
        kept[0].data = b"late"


def test_handle_properties(store):
    views = []

    class Vm(VmInterface):
        def process_transaction(self, tx, handles):
            h = handles[0]
            before = (h.id, h.access_type, h.version, h.data, h.is_new, h.written)
            h.write(bytearray(b"one"))
            h.data = memoryview(b"two")
            views.append((before, (h.version, h.data, h.is_new, h.written, h.input.version)))
            with pytest.raises(TypeError, match="resource data is bytes, got str"):
                h.write("three")
            repr(h)

    with RuntimeManager(Vm(), store) as m:
        m.schedule([SimpleTransaction([Access.write("acct")])] * 2).wait_committed(HANG)
        assert m.read("acct") == ("acct", 2, b"two")
    assert views[0] == (("acct", W, 0, b"", True, False), (1, b"two", True, True, 0))
    assert views[1] == (("acct", W, 1, b"two", False, False), (2, b"two", False, True, 1))


def test_aborted_writes_are_reverted_for_later_transactions(store):
    vm = RecordingVm()
    with RuntimeManager(vm, store) as m:
        b = m.schedule([tx("t1", (1, W), writes={1: b"a"}), tx("t2", (1, W), writes={1: b"b"}, abort=True),
                        tx("t3", (1, R))])
        b.wait_committed(HANG)
    assert vm.seen["t3"] == {1: (1, b"a")}
    assert isinstance(b.errors[1], Aborted)


# -- process_batch -------------------------------------------------------------------------------------


class BulkVm(VmInterface):
    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sizes: list[int] = []

    def process_batch(self, txs, handles_per_tx):
        self.sizes.append(len(txs))
        if self.mode == "raise":
            raise RuntimeError("the whole dispatch failed")
        if self.mode == "short":
            return []
        out = []
        for t, hs in zip(txs, handles_per_tx):
            if t.payload == "bad":
                out.append(ValueError("bad one"))
                continue
            for h in hs:
                h.write(b"x")
            out.append(t.payload)
        return out


def test_process_batch_results_and_per_transaction_aborts(store):
    vm = BulkVm("ok")
    with RuntimeManager(vm, store, chunk=64) as m:
        b = m.schedule([SimpleTransaction([Access.write(i)], payload="bad" if i == 3 else i) for i in range(100)])
        b.wait_committed(HANG)
    assert set(b.errors) == {3} and isinstance(b.errors[3], ValueError)
    assert b.effects[:5] == [0, 1, 2, None, 4]
    assert sum(vm.sizes) == 100 and max(vm.sizes) > 1
    assert store.get(StateSpace.DATA, data_key(1, 3)) is None and store.get(StateSpace.DATA, data_key(1, 4)) == b"x"


@pytest.mark.parametrize("mode, message", [("raise", "the whole dispatch failed"), ("short", "returned 0 results")])
def test_process_batch_failure_aborts_the_whole_call(store, mode, message):
    with RuntimeManager(BulkVm(mode), store) as m:
        b = m.schedule([SimpleTransaction([Access.write(i)], payload=i) for i in range(10)])
        b.wait_committed(HANG)
    assert set(b.errors) == set(range(10))
    assert message in str(b.errors[0])
    assert store.count(StateSpace.DATA) == 0


def test_notarize_error_is_kept_and_the_batch_commits(store):
    class Vm(NoopVm):
        def notarize_batch(self, batch):
            raise RuntimeError(f"cannot notarize {batch.index}")

    with RuntimeManager(Vm(), store) as m:
        b = m.schedule([SimpleTransaction([Access.write(1)])])
        assert b.wait_committed(HANG)
    assert "cannot notarize 1" in str(b.notarization_error)


# -- waits -----------------------------------------------------------------------------------------------


def test_waits_time_out_with_a_named_error(store):
    gate = threading.Event()
    with RuntimeManager(RecordingVm(), store) as m:
        b = m.schedule([tx("t", (1, W), gate=gate)])
        for wait in (b.wait_processed, b.wait_persisted, b.wait_committed):
            with pytest.raises(RingTimeoutError, match="batch 1 was not"):
                wait(0.01)
        with pytest.raises(RingTimeoutError, match="batches up to 1 were not committed"):
            m.flush(0.01)
        gate.set()
        m.flush(HANG)
        assert b.was_committed


def test_async_waits(store):
    gate = threading.Event()

    async def main() -> None:
        async with RuntimeManager(RecordingVm(), store) as m:
            b = m.schedule([tx("t", (1, W), writes={1: b"a"}, gate=gate)])
            with pytest.raises(RingTimeoutError):
                await b.wait_committed_async(0.01)
            asyncio.get_running_loop().call_later(0.02, gate.set)
            assert await b.wait_processed_async(HANG)
            assert await b.wait_persisted_async(HANG)
            assert await b
            assert await b.wait_committed_async(0)
            b2 = await m.schedule_async([tx("t2", (1, R))])
            await m.flush_async(HANG)
            assert b2.was_committed

    asyncio.run(main())
    assert store.get(StateSpace.LATEST_PTR, enc(1)) == be64(1)


def test_async_wait_on_a_canceled_batch_returns_false(store):
    gate = threading.Event()

    async def main() -> None:
        with RuntimeManager(RecordingVm(), store) as m:
            m.schedule([tx("t1", (1, W), gate=gate)])
            b2 = m.schedule([tx("t2", (1, W))])
            waiter = asyncio.ensure_future(b2.wait_committed_async(HANG))
            await asyncio.sleep(0)
            await asyncio.to_thread(m.rollback_to, 1)
            assert await waiter is False
            gate.set()

    asyncio.run(main())


def test_backpressure_waits_for_room(store):
    gate = threading.Event()
    with RuntimeManager(RecordingVm(), store, max_in_flight=2) as m:
        m.schedule([tx("t1", (1, W), gate=gate), tx("t2", (2, W))])
        with pytest.raises(RingTimeoutError, match="no room to schedule 1 transactions"):
            m.schedule([tx("t3", (3, W))], timeout=0.01)
        gate.set()
        b = m.schedule([tx("t4", (3, W))], timeout=HANG)
        big = m.schedule([tx(f"x{i}", (i, W)) for i in range(10)], timeout=HANG)  # larger than the limit: alone
        assert b.wait_committed(HANG) and big.wait_committed(HANG)


# -- failures ---------------------------------------------------------------------------------------------


def test_a_failing_store_stops_the_runtime_without_hanging():
    inner = MemoryStore()
    faulty = FaultyStore(inner, fail_commit=3)  # 1: schema, 2: persist, 3: pointer flip
    m = RuntimeManager(RecordingVm(), faulty, readers=0)
    b = m.schedule([tx("t", (1, W), writes={1: b"a"})])
    with pytest.raises(RuntimeFailedError, match="runtime failed") as err:
        b.wait_committed(HANG)
    assert isinstance(err.value.__cause__, Crash)
    assert b.was_persisted and not b.was_committed
    with pytest.raises(RuntimeFailedError):
        m.schedule([])
    assert isinstance(m.failure, Crash)
    m.shutdown()
    with RuntimeManager(NoopVm(), inner) as again:  # recovery removes the uncommitted data
        assert again.last_committed == 0
    assert_store_matches(inner, {}, 0)


def test_a_failing_read_stops_the_runtime():
    faulty = FaultyStore(MemoryStore(), fail_get=False)
    for readers in (0, 2):
        m = RuntimeManager(NoopVm(), faulty, readers=readers)
        faulty.fail_get = True
        try:
            if readers:
                b = m.schedule([SimpleTransaction([Access.read(5)])])
                with pytest.raises(RuntimeFailedError):
                    b.wait_processed(HANG)
            else:
                with pytest.raises(RuntimeFailedError):
                    m.schedule([SimpleTransaction([Access.read(5)])])
        finally:
            faulty.fail_get = False
            m.shutdown()


def test_slow_reads_through_the_reader_pool():
    store = FaultyStore(MemoryStore(), slow_reads=0.001)
    vm = RecordingVm()
    batches = [[tx(f"b{i}t{j}", (i * 10 + j, R), (j, W), derive=True) for j in range(8)] for i in range(4)]
    with RuntimeManager(vm, store, readers=3, workers=2) as m:
        for b in [m.schedule(b) for b in batches]:
            assert b.wait_committed(HANG)
    state, seen = reference_run(batches)
    assert vm.seen == seen
    assert_store_matches(store.inner, state, 4)


def test_store_with_another_schema_is_refused():
    from ringcore.execution import StoreError

    store = MemoryStore()
    wb = store.write_batch()
    wb.put(StateSpace.META, b"schema_version", be64(99))
    store.commit(wb)
    with pytest.raises(StoreError, match="schema"):
        RuntimeManager(NoopVm(), store)


def test_manager_repr_and_in_flight(store):
    gate = threading.Event()
    with RuntimeManager(RecordingVm(), store) as m:
        b = m.schedule([tx("t", (1, W), gate=gate)])
        assert m.in_flight() == [b]
        assert "running" in repr(m) and "RecordingVm" in repr(m)
        assert "scheduled" in repr(b)
        gate.set()
    assert "closed" in repr(m) and "committed" in repr(b)


def test_access_type_is_an_enum():
    assert list(AccessType) == [READ, WRITE]
    assert repr(READ) == "AccessType.READ"
