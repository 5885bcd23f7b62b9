"""The execution runtime's scenario suite and property test, reusable against any Store.

A store plugin runs the runtime end to end on its store by subclassing
:class:`AbstractExecutionTests` (or the area classes it combines) with the
same ``make_store`` as its store conformance suite::

    from ringcore.testing.execution import AbstractExecutionTests
    from ringcore_rocksdb import RocksDBStore

    class TestRuntimeOnRocksDB(AbstractExecutionTests):
        persistent = True
        def make_store(self, path):
            return RocksDBStore(path)

Class attributes choose how the runtime is driven (``workers``, ``readers``).
Every assertion about the store looks keys up with their byte encoding built
here, independently of the runtime's own encoder: 8-byte big-endian integers,
resource ids tagged ``0x01`` (int, 8 bytes big-endian), ``0x02`` (bytes) or
``0x03`` (UTF-8 str). Waits are bounded only to catch hangs; nothing is timed.
Import this module by its full path; it needs pytest and hypothesis.
"""

from __future__ import annotations

import dataclasses
import hashlib
import struct
import tempfile
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringcore.execution.manager import RuntimeManager
from ringcore.execution.resource import READ, WRITE, Access, AccessType
from ringcore.execution.state import StateSpace
from ringcore.execution.store import Store
from ringcore.execution.vm import AccessHandle, VmInterface

from .store import StoreFixtures, dump_space

__all__ = [
    "ScriptedTx", "RecordingVm", "BatchRecordingVm", "SerialRecordingVm", "Aborted", "FaultyStore", "Crash",
    "reference_run", "enc", "data_key", "rollback_key", "assert_store_matches",
    "ExecutionFixtures", "AbstractScenarioTests", "AbstractRollbackTests", "AbstractCrashTests",
    "AbstractPropertyTests", "AbstractExecutionTests",
]

DATA, LATEST, ROLLBACK, META = StateSpace.DATA, StateSpace.LATEST_PTR, StateSpace.ROLLBACK_PTR, StateSpace.META
HANG = 30.0
"""Upper bound on any wait that must complete; only a hang reaches it."""


# -- the byte encodings, written out independently of ringcore.execution.state -----------------


def be64(n: int) -> bytes:
    return struct.pack(">Q", n)


def enc(rid: int | bytes | str) -> bytes:
    """A resource id's canonical encoding."""
    if isinstance(rid, int):
        return b"\x01" + struct.pack(">Q", rid)
    if isinstance(rid, bytes):
        return b"\x02" + rid
    return b"\x03" + rid.encode()


def data_key(version: int, rid: int | bytes | str) -> bytes:
    return be64(version) + enc(rid)


def rollback_key(batch: int, rid: int | bytes | str) -> bytes:
    return be64(batch) + enc(rid)


# -- scripted transactions and a VM that records what it saw --------------------------------------


class Aborted(Exception):
    """Raised by a ScriptedTx marked ``abort``."""


@dataclasses.dataclass(frozen=True, eq=False)
class ScriptedTx:
    """A transaction for tests: declared accesses, and what the VM does with them.

    ``writes`` maps resource ids to the data to write; ``derive`` writes, to
    every WRITE handle, data computed from the transaction's name and everything
    it saw (so a wrong input shows in the final state). ``abort`` raises after
    writing; ``gate`` blocks until set.
    """

    name: str
    accesses: tuple[Access, ...]
    writes: tuple[tuple[Any, bytes], ...] = ()
    derive: bool = False
    abort: bool = False
    gate: threading.Event | None = None

    def __repr__(self) -> str:
        return f"<tx {self.name}>"


def tx(name: str, *accesses: tuple[Any, AccessType], writes: dict[Any, bytes] | None = None, **kw: Any) -> ScriptedTx:
    return ScriptedTx(name, tuple(Access(*a) for a in accesses), tuple((writes or {}).items()), **kw)


def derived_data(name: str, seen: dict[Any, tuple[int, bytes]], rid: Any) -> bytes:
    """What a ``derive`` transaction writes to ``rid``, given what it saw."""
    h = hashlib.sha256(repr((name, sorted(seen.items(), key=repr), rid)).encode()).digest()
    return h[:8]


def _execute(tx: ScriptedTx, handles: Sequence[AccessHandle], seen_log: dict[str, Any], lock: threading.Lock) -> str:
    if tx.gate is not None and not tx.gate.wait(HANG):
        raise AssertionError(f"{tx.name}: gate never opened")
    seen = {h.id: (h.version, h.data) for h in handles}
    with lock:
        seen_log[tx.name] = seen
    by_id = {h.id: h for h in handles}
    for rid, data in tx.writes:
        by_id[rid].write(data)
    if tx.derive:
        for h in handles:
            if h.access_type is WRITE:
                h.write(derived_data(tx.name, seen, h.id))
    if tx.abort:
        raise Aborted(tx.name)
    return tx.name


class RecordingVm(VmInterface):
    """Executes ScriptedTx one at a time and records, per transaction name, ``{id: (version, data)}``."""

    def __init__(self) -> None:
        self.seen: dict[str, dict[Any, tuple[int, bytes]]] = {}
        self.notarized: list[int] = []
        self._lock = threading.Lock()

    def process_transaction(self, tx: ScriptedTx, handles: Sequence[AccessHandle]) -> str:
        return _execute(tx, handles, self.seen, self._lock)

    def notarize_batch(self, batch: Any) -> str:
        self.notarized.append(batch.index)
        return f"notarized {batch.index}"


class BatchRecordingVm(RecordingVm):
    """The same, through ``process_batch``: every ready transaction of a chunk in one call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def process_batch(self, txs: Sequence[ScriptedTx], handles_per_tx: Sequence[Sequence[AccessHandle]]) -> list[Any]:
        self.calls += 1
        out: list[Any] = []
        for t, hs in zip(txs, handles_per_tx):
            try:
                out.append(_execute(t, hs, self.seen, self._lock))
            except Exception as exc:  # noqa: BLE001 - reported as that transaction's result
                out.append(exc)
        return out


class SerialRecordingVm(RecordingVm):
    """The same, declared not ``concurrent``: the runtime keeps one worker busy at a time.
    (Never give it a gated transaction: a gate would hold the only busy worker.)"""

    concurrent = False


def merged(accesses: Iterable[Access]) -> list[tuple[Any, bool]]:
    """A transaction's accesses as the runtime sees them: one per resource, WRITE if any is."""
    order: dict[Any, bool] = {}
    for rid, kind in accesses:
        order[rid] = order.get(rid, False) or kind is WRITE
    return list(order.items())


def reference_run(batches: Sequence[Sequence[ScriptedTx]], state: dict[Any, tuple[int, bytes]] | None = None
                  ) -> tuple[dict[Any, tuple[int, bytes]], dict[str, dict[Any, tuple[int, bytes]]]]:
    """Run ``batches`` one transaction at a time in batch order: the final ``{id: (version, data)}``
    and what every transaction saw. The definition of correct."""
    state = dict(state or {})
    seen_log: dict[str, dict[Any, tuple[int, bytes]]] = {}
    for batch in batches:
        for t in batch:
            acc = merged(t.accesses)
            seen = {rid: state.get(rid, (0, b"")) for rid, _ in acc}
            seen_log[t.name] = seen
            if t.abort:
                continue
            new: dict[Any, bytes] = dict(t.writes)
            if t.derive:
                for rid, w in acc:
                    if w:
                        new[rid] = derived_data(t.name, seen, rid)
            for rid, data in new.items():
                state[rid] = (seen[rid][0] + 1, data)
    return state, seen_log


def assert_store_matches(store: Store, state: dict[Any, tuple[int, bytes]], last_committed: int) -> None:
    """The store holds exactly ``state`` at batch boundary ``last_committed``: every latest pointer
    and its data, nothing for batches after it, and no data version no pointer names."""
    latest = dump_space(store, LATEST)
    want_latest = {enc(rid): be64(v) for rid, (v, _) in state.items() if v > 0}
    assert latest == want_latest, "latest pointers differ from the sequential run"
    data = dump_space(store, DATA)
    for rid, (v, d) in state.items():
        if v > 0:
            assert data.get(data_key(v, rid)) == d, f"resource {rid!r}: data of version {v} differs or is missing"
    rollback = dump_space(store, ROLLBACK)
    named = set()
    for key, value in rollback.items():
        batch = struct.unpack(">Q", key[:8])[0]
        assert 1 <= batch <= last_committed, f"a rollback pointer of batch {batch} after {last_committed} is left"
        assert len(value) == 16
        before, written = struct.unpack(">QQ", value)
        assert written > before
        named.add(be64(written) + key[8:])
    assert set(data) == named, (f"data versions without a rollback pointer (orphans): {sorted(set(data) - named)[:5]}; "
                                f"pointers to missing data: {sorted(named - set(data))[:5]}")
    meta = dump_space(store, META)
    assert meta.get(b"last_committed", be64(0)) == be64(last_committed)


# -- a store that fails on purpose ------------------------------------------------------------------


class Crash(Exception):
    """The failure FaultyStore injects."""


class FaultyStore:
    """Wraps a store; the ``fail_commit``-th commit (1-based) raises before writing anything,
    like a process dying at that instant. ``slow_reads`` delays every get (reader pool tests)."""

    def __init__(self, inner: Store, fail_commit: int | None = None, fail_get: bool = False,
                 slow_reads: float = 0.0) -> None:
        self.inner = inner
        self.fail_commit = fail_commit
        self.fail_get = fail_get
        self.slow_reads = slow_reads
        self.commits = 0
        self.preferred_readers = 2

    def get(self, space: StateSpace, key: bytes) -> bytes | None:
        if self.fail_get:
            raise Crash("get failed")
        if self.slow_reads:
            threading.Event().wait(self.slow_reads)
        return self.inner.get(space, key)

    def prefix_iter(self, space: StateSpace, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        return self.inner.prefix_iter(space, prefix)

    def write_batch(self) -> Any:
        return self.inner.write_batch()

    def commit(self, batch: Any) -> None:
        self.commits += 1
        if self.fail_commit is not None and self.commits >= self.fail_commit:
            raise Crash(f"commit {self.commits} failed")
        self.inner.commit(batch)

    def close(self) -> None:
        pass


# -- fixtures ------------------------------------------------------------------------------------------


class ExecutionFixtures(StoreFixtures):
    """How the suites create managers. Override ``workers``/``readers`` to drive them differently."""

    workers: ClassVar[int] = 2
    readers: ClassVar[int | None] = None
    vm_class: ClassVar[type[RecordingVm]] = RecordingVm
    manager_options: ClassVar[dict[str, Any]] = {}
    """More RuntimeManager options (``cache_limit``, ``chunk``, ``max_in_flight``)."""

    def manager(self, store: Store, vm: Any = None, **options: Any) -> RuntimeManager:
        options.setdefault("workers", self.workers)
        options.setdefault("readers", self.readers)
        for key, value in self.manager_options.items():
            options.setdefault(key, value)
        return RuntimeManager(vm if vm is not None else self.vm_class(), store, **options)

    def run_batches(self, m: RuntimeManager, batches: Sequence[Sequence[ScriptedTx]]) -> list[Any]:
        scheduled = [m.schedule(b) for b in batches]
        for b in scheduled:
            assert b.wait_committed(HANG), f"{b} was canceled"
        return scheduled


W = WRITE
R = READ
A, B, C, D = 1, 2, b"bee", "dee"  # resource ids of every kind


class AbstractScenarioTests(ExecutionFixtures):
    """Batches over shared resources, mixed reads and writes, checked against the store's bytes."""

    def test_one_batch_mixed_reads_and_writes(self, store: Store) -> None:
        batch = [
            tx("t1", (A, W), writes={A: b"a1"}),
            tx("t2", (A, R), (B, W), writes={B: b"b1"}),
            tx("t3", (A, R), (B, R)),
            tx("t4", (A, W), (C, R), writes={A: b"a2"}),
            tx("t5", (A, R)),
        ]
        vm = self.vm_class()
        with self.manager(store, vm) as m:
            (b,) = self.run_batches(m, [batch])
            assert b.index == 1 and b.was_processed and b.was_persisted and b.was_committed
            assert b.effects == ["t1", "t2", "t3", "t4", "t5"] and b.errors == {}
            assert m.read(A).version == 2 and m.read(A).data == b"a2"
        assert vm.seen == {
            "t1": {A: (0, b"")},
            "t2": {A: (1, b"a1"), B: (0, b"")},
            "t3": {A: (1, b"a1"), B: (1, b"b1")},
            "t4": {A: (1, b"a1"), C: (0, b"")},  # t2 and t3 only read A: t4 did not wait for them
            "t5": {A: (2, b"a2")},
        }
        assert store.get(LATEST, enc(A)) == be64(2)
        assert store.get(LATEST, enc(B)) == be64(1)
        assert store.get(LATEST, enc(C)) is None
        assert store.get(DATA, data_key(2, A)) == b"a2"
        assert store.get(DATA, data_key(1, A)) is None  # only a batch's last version is stored
        assert store.get(DATA, data_key(1, B)) == b"b1"
        assert store.get(ROLLBACK, rollback_key(1, A)) == be64(0) + be64(2)
        assert store.get(ROLLBACK, rollback_key(1, B)) == be64(0) + be64(1)
        assert store.get(ROLLBACK, rollback_key(1, C)) is None
        assert [(d.resource_id, d.head_version, d.tail_version) for d in sorted(b.diffs, key=lambda d: repr(d.resource_id))] \
            == [(A, 0, 2), (B, 0, 1)]
        assert_store_matches(store, {A: (2, b"a2"), B: (1, b"b1")}, 1)

    def test_two_batches_over_shared_resources(self, store: Store) -> None:
        batches = [
            [tx("t1", (A, W), writes={A: b"a1"}), tx("t2", (B, W), (A, R), writes={B: b"b1"})],
            [tx("t3", (A, R), (B, W), writes={B: b"b2"}), tx("t4", (A, W), writes={A: b"a2"}),
             tx("t5", (B, R), (C, W), writes={C: b"c1"}), tx("t6", (D, R))],
        ]
        vm = self.vm_class()
        with self.manager(store, vm) as m:
            b1, b2 = self.run_batches(m, batches)
            assert (b1.index, b2.index) == (1, 2)
        state, seen = reference_run(batches)
        assert vm.seen == seen
        assert vm.seen["t3"] == {A: (1, b"a1"), B: (1, b"b1")}
        assert vm.seen["t5"] == {B: (2, b"b2"), C: (0, b"")}
        assert store.get(ROLLBACK, rollback_key(2, B)) == be64(1) + be64(2)
        assert store.get(ROLLBACK, rollback_key(2, D)) is None
        assert_store_matches(store, state, 2)

    def test_aborted_transaction_keeps_nothing(self, store: Store) -> None:
        batches = [[tx("t1", (A, W), writes={A: b"a1"}),
                    tx("t2", (A, W), (B, W), writes={A: b"bad", B: b"bad"}, abort=True),
                    tx("t3", (A, R), (B, R))]]
        vm = self.vm_class()
        with self.manager(store, vm) as m:
            (b,) = self.run_batches(m, batches)
        assert isinstance(b.errors[1], Aborted) and set(b.errors) == {1}
        assert b.effects == ["t1", None, "t3"]
        assert not b.result(1).ok and b.result(2).ok
        assert vm.seen["t3"] == {A: (1, b"a1"), B: (0, b"")}
        assert store.get(DATA, data_key(1, B)) is None and store.get(LATEST, enc(B)) is None
        assert_store_matches(store, {A: (1, b"a1")}, 1)

    def test_chain_across_many_batches(self, store: Store) -> None:
        batches = [[tx(f"b{i}t{j}", (A, W), (i * 10 + j, W), derive=True) for j in range(5)] for i in range(8)]
        vm = self.vm_class()
        with self.manager(store, vm) as m:
            self.run_batches(m, batches)
        state, seen = reference_run(batches)
        assert vm.seen == seen
        assert state[A][0] == 40
        assert_store_matches(store, state, 8)

    def test_notarize_runs_once_per_batch_before_persist(self, store: Store) -> None:
        vm = self.vm_class()
        with self.manager(store, vm) as m:
            bs = self.run_batches(m, [[tx("t1", (A, W), writes={A: b"x"})], [], [tx("t2", (A, R))]])
        assert sorted(vm.notarized) == [1, 2, 3]
        assert [b.notarization for b in bs] == ["notarized 1", "notarized 2", "notarized 3"]


class AbstractRollbackTests(ExecutionFixtures):
    """Rollback of committed, persisted and in-flight batches; deletions checked byte for byte."""

    def test_rollback_of_committed_batches(self, store: Store) -> None:
        batches = [[tx("t1", (A, W), (B, W), writes={A: b"a1", B: b"b1"})],
                   [tx("t2", (A, W), writes={A: b"a2"}), tx("t3", (C, W), writes={C: b"c1"})],
                   [tx("t4", (A, W), (B, W), writes={A: b"a3", B: b"b2"})]]
        with self.manager(store) as m:
            b1, b2, b3 = self.run_batches(m, batches)
            assert store.get(DATA, data_key(3, A)) == b"a3"
            canceled = m.rollback_to(1)
            assert canceled == []
            assert b2.was_rolled_back and b3.was_rolled_back and not b1.was_rolled_back
            assert b3.was_committed and not b3.was_canceled
            assert m.read(A).data == b"a1" and m.read(A).version == 1
            assert m.read(C).version == 0 and m.read(C).data == b""
            assert m.last_committed == 1 and m.last_index == 1
        for key in (data_key(2, A), data_key(3, A), data_key(1, C), data_key(2, B)):
            assert store.get(DATA, key) is None, f"{key!r} survived the rollback"
        for key in (rollback_key(2, A), rollback_key(2, C), rollback_key(3, A), rollback_key(3, B)):
            assert store.get(ROLLBACK, key) is None
        assert store.get(LATEST, enc(C)) is None
        assert store.get(LATEST, enc(A)) == be64(1)
        assert store.get(DATA, data_key(1, A)) == b"a1"
        assert store.get(ROLLBACK, rollback_key(1, A)) == be64(0) + be64(1)
        assert_store_matches(store, reference_run(batches[:1])[0], 1)

    def test_new_batches_after_rollback(self, store: Store) -> None:
        first = [[tx("t1", (A, W), writes={A: b"a1"})], [tx("t2", (A, W), writes={A: b"a2"})],
                 [tx("t3", (A, W), (B, W), writes={A: b"a3", B: b"b1"})]]
        again = [[tx("u1", (A, W), (B, R), derive=True)], [tx("u2", (A, R), (B, W), derive=True)]]
        vm = self.vm_class()
        with self.manager(store, vm) as m:
            self.run_batches(m, first)
            m.rollback_to(1)
            n1, n2 = self.run_batches(m, again)
            assert (n1.index, n2.index) == (2, 3)
        state, seen = reference_run(first[:1] + again)
        assert vm.seen["u1"] == seen["u1"] == {A: (1, b"a1"), B: (0, b"")}
        assert vm.seen["u2"] == seen["u2"]
        assert_store_matches(store, state, 3)

    def test_cancel_in_flight_batches(self, store: Store) -> None:
        gate = threading.Event()
        vm = self.vm_class()
        with self.manager(store, vm) as m:
            b1 = m.schedule([tx("t1", (A, W), writes={A: b"a1"}, gate=gate)])
            b2 = m.schedule([tx("t2", (A, W), writes={A: b"a2"})])
            b3 = m.schedule([tx("t3", (A, R), (B, W), writes={B: b"b1"}), tx("t4", (C, W), writes={C: b"c"})])
            canceled = m.rollback_to(1)
            assert canceled == [b2, b3]
            # canceled waits return at once, reporting it
            assert b2.wait_committed(0) is False and b3.wait_processed(0) is False
            assert b2.was_canceled and b3.was_canceled and not b1.was_canceled
            gate.set()
            assert b1.wait_committed(HANG)
            b4 = m.schedule([tx("t5", (A, R), (C, R))])
            assert b4.index == 2
            assert b4.wait_committed(HANG)
        assert "t2" not in vm.seen and "t3" not in vm.seen
        assert vm.seen["t5"] == {A: (1, b"a1"), C: (0, b"")}
        assert store.get(DATA, data_key(1, C)) is None and store.get(DATA, data_key(2, A)) is None
        assert_store_matches(store, {A: (1, b"a1")}, 2)

    def test_rollback_of_persisted_but_uncommitted_batch(self, store: Store) -> None:
        if self.workers < 2:
            pytest.skip("needs a second worker to run one batch while another is held at a gate")
        gate = threading.Event()
        with self.manager(store) as m:
            m.schedule([tx("t0", (A, W), writes={A: b"a1"})]).wait_committed(HANG)
            b2 = m.schedule([tx("t1", (A, W), writes={A: b"a2"}, gate=gate)])
            b3 = m.schedule([tx("t2", (B, W), writes={B: b"b1"}), tx("t3", (C, W), writes={C: b"c1"})])
            assert b3.wait_persisted(HANG)
            assert not b3.was_committed and not b2.was_processed
            assert store.get(DATA, data_key(1, B)) == b"b1"  # its data is written ...
            assert store.get(LATEST, enc(B)) is None  # ... but nothing points at it yet
            assert m.rollback_to(2) == [b3]
            assert store.get(DATA, data_key(1, B)) is None and store.get(DATA, data_key(1, C)) is None
            assert store.get(ROLLBACK, rollback_key(3, B)) is None
            assert store.get(DATA, data_key(1, A)) == b"a1" and store.get(LATEST, enc(A)) == be64(1)
            gate.set()
            assert b2.wait_committed(HANG)
        assert_store_matches(store, {A: (2, b"a2")}, 2)

    def test_rollback_never_flips_pointers_of_uncommitted_batches(self, store: Store) -> None:
        """Batch 1 is held; batches 2 and 3 (both writing A) are persisted, waiting to commit.
        Rolling back batch 3 must delete its data only: A's pointer must not move to batch 2's
        version, which is not committed either."""
        if self.workers < 2:
            pytest.skip("needs a second worker to run one batch while another is held at a gate")
        gate = threading.Event()
        with self.manager(store) as m:
            m.schedule([tx("t0", (A, W), writes={A: b"a1"})]).wait_committed(HANG)
            b2 = m.schedule([tx("t1", (B, W), writes={B: b"held"}, gate=gate)])
            b3 = m.schedule([tx("t2", (A, W), writes={A: b"a2"})])
            b4 = m.schedule([tx("t3", (A, W), writes={A: b"a3"})])
            assert b3.wait_persisted(HANG) and b4.wait_persisted(HANG)
            assert store.get(DATA, data_key(2, A)) == b"a2" and store.get(DATA, data_key(3, A)) == b"a3"
            assert m.rollback_to(3) == [b4]
            assert store.get(LATEST, enc(A)) == be64(1), "a rollback flipped a pointer to uncommitted data"
            assert store.get(DATA, data_key(3, A)) is None and store.get(DATA, data_key(2, A)) == b"a2"
            assert store.get(DATA, data_key(1, A)) == b"a1"
            gate.set()
            assert b2.wait_committed(HANG) and b3.wait_committed(HANG)
        assert_store_matches(store, {A: (2, b"a2"), B: (1, b"held")}, 3)

    def test_rollback_of_everything_in_flight_to_zero(self, store: Store) -> None:
        if self.workers < 2:
            pytest.skip("needs a second worker to run one batch while another is held at a gate")
        gate = threading.Event()
        with self.manager(store) as m:
            b1 = m.schedule([tx("t1", (A, W), writes={A: b"a1"}, gate=gate)])
            b2 = m.schedule([tx("t2", (B, W), writes={B: b"b1"})])
            b2.wait_persisted(HANG)
            assert m.rollback_to(0) == [b1, b2]
            gate.set()
            assert b1.wait_committed(HANG) is False
        assert_store_matches(store, {}, 0)

    def test_rollback_across_several_contexts(self, store: Store, store_path: Path) -> None:
        b = [[tx(f"t{i}", (A, W), (i, W), derive=True)] for i in range(1, 7)]
        with self.manager(store) as m:
            self.run_batches(m, b[:3])
        store = self.reopen_store(store, store_path)
        self._opened.append(store)
        with self.manager(store) as m:
            assert m.last_committed == 3
            later = self.run_batches(m, b[3:5])
            assert [x.index for x in later] == [4, 5]
            m.rollback_to(2)
            assert m.read(A).version == 2
        assert_store_matches(store, reference_run(b[:2])[0], 2)
        store = self.reopen_store(store, store_path)
        self._opened.append(store)
        with self.manager(store) as m:
            assert m.last_index == 2
            (x,) = self.run_batches(m, b[5:6])
            assert x.index == 3
        assert_store_matches(store, reference_run(b[:2] + b[5:6])[0], 3)

    def test_rollback_to_zero(self, store: Store) -> None:
        batches = [[tx(f"t{i}", (A, W), (B, R), (i, W), derive=True)] for i in range(1, 5)]
        with self.manager(store) as m:
            self.run_batches(m, batches)
            m.rollback_to(0)
            assert m.read(A).version == 0 and m.last_committed == 0
            assert m.schedule([]).index == 1
        for space in (DATA, LATEST, ROLLBACK):
            assert dump_space(store, space) == {}, f"{space.name} is not empty after rollback_to(0)"
        assert_store_matches(store, {}, 1)

    def test_consecutive_rollbacks(self, store: Store) -> None:
        batches = [[tx(f"t{i}", (A, W), (B if i % 2 else C, W), derive=True)] for i in range(1, 6)]
        with self.manager(store) as m:
            self.run_batches(m, batches)
            m.rollback_to(3)
            assert_store_matches(store, reference_run(batches[:3])[0], 3)
            m.rollback_to(1)
            assert_store_matches(store, reference_run(batches[:1])[0], 1)
            m.rollback_to(1)  # nothing after 1 left: a no-op
            assert_store_matches(store, reference_run(batches[:1])[0], 1)
            assert m.read(A).version == 1

    def test_one_resource_written_by_many_batches_rolled_back_twice(self, store: Store) -> None:
        batches = [[tx(f"t{i}", (A, W), writes={A: f"v{i}".encode()})] for i in range(1, 9)]
        with self.manager(store) as m:
            self.run_batches(m, batches)
            assert all(store.get(DATA, data_key(v, A)) == f"v{v}".encode() for v in range(1, 9))
            m.rollback_to(5)
            assert [store.get(DATA, data_key(v, A)) for v in range(1, 9)] == \
                [f"v{v}".encode() for v in range(1, 6)] + [None] * 3
            assert store.get(LATEST, enc(A)) == be64(5)
            m.rollback_to(2)
            assert [store.get(DATA, data_key(v, A)) for v in range(1, 9)] == [b"v1", b"v2"] + [None] * 6
            assert store.get(LATEST, enc(A)) == be64(2)
            assert [store.get(ROLLBACK, rollback_key(i, A)) for i in range(1, 4)] == \
                [be64(0) + be64(1), be64(1) + be64(2), None]
            assert m.read(A) == (A, 2, b"v2")
        assert_store_matches(store, {A: (2, b"v2")}, 2)

    def test_interleaved_multi_resource_rollbacks(self, store: Store) -> None:
        rids = [A, B, C, D, 7]
        batches = [[tx(f"b{i}t{j}", *((rids[(i + j + k) % 5], W if (i + k) % 2 else R) for k in range(3)),
                       derive=True) for j in range(3)] for i in range(1, 10)]
        with self.manager(store) as m:
            self.run_batches(m, batches)
            for k in (7, 4, 4, 2):
                m.rollback_to(k)
                state, _ = reference_run(batches[:k])
                assert_store_matches(store, state, k)
                assert {r: tuple(m.read(r))[1:] for r in rids} == {r: state.get(r, (0, b"")) for r in rids}
            more = batches[5:8]
            self.run_batches(m, more)
        assert_store_matches(store, reference_run(batches[:2] + more)[0], 5)

    def test_rollback_index_is_checked(self, store: Store) -> None:
        from ringcore.errors import RollbackError

        with self.manager(store) as m:
            self.run_batches(m, [[tx("t1", (A, W), writes={A: b"x"})]])
            with pytest.raises(RollbackError, match="negative"):
                m.rollback_to(-1)
            with pytest.raises(RollbackError, match="in the future.*last batch scheduled is 1"):
                m.rollback_to(2)
            with pytest.raises(RollbackError, match="not an int"):
                m.rollback_to(1.0)  # type: ignore[arg-type]
            with pytest.raises(RollbackError, match="not an int"):
                m.rollback_to(True)
            with pytest.raises(ValueError):
                m.rollback_to("1")  # type: ignore[arg-type]
            assert m.read(A).data == b"x"


class AbstractCrashTests(ExecutionFixtures):
    """A crash at any store commit leaves the store at a batch boundary; the next manager cleans up."""

    def _crash_batches(self) -> list[list[ScriptedTx]]:
        return [[tx(f"b{i}t{j}", (A, W), ((i * 3 + j) % 4 + 10, W), (B, R), derive=True) for j in range(3)]
                for i in range(1, 6)]

    @pytest.mark.parametrize("crash_at", [2, 3, 4, 5, 6, 7, 8, 9])
    def test_crash_at_any_commit_recovers_to_a_boundary(self, store: Store, store_path: Path, crash_at: int) -> None:
        from ringcore.errors import RuntimeFailedError

        batches = self._crash_batches()
        faulty = FaultyStore(store, fail_commit=crash_at)
        m = self.manager(faulty, workers=1, readers=0)
        try:
            scheduled = []
            for b in batches:  # one at a time, so that every commit is a distinct instant
                batch = m.schedule(b)
                scheduled.append(batch)
                try:
                    batch.wait_committed(HANG)
                except RuntimeFailedError:
                    break
            assert m.failure is not None, "the injected crash never happened"
            with pytest.raises(RuntimeFailedError):
                m.schedule([])
        finally:
            m.shutdown()
        store = self.reopen_store(store, store_path)
        self._opened.append(store)
        with self.manager(store) as again:
            boundary = again.last_committed
            assert boundary == sum(b.was_committed for b in scheduled)
            assert_store_matches(store, reference_run(batches[:boundary])[0], boundary)
            self.run_batches(again, batches[boundary:])
        assert_store_matches(store, reference_run(batches)[0], len(batches))


class AbstractPropertyTests(ExecutionFixtures):
    """Random batches, workers 1..4, aborts, rollbacks: the result equals a sequential run in batch order."""

    @staticmethod
    def _random_batches(draw: Any, prefix: str, n_resources: int, n_batches: int) -> list[list[ScriptedTx]]:
        rid = st.integers(0, n_resources - 1).map(lambda i: (i, b"r%d" % i, "s%d" % i)[i % 3])
        access = st.tuples(rid, st.sampled_from([READ, WRITE]))
        batches = []
        for bi in range(n_batches):
            n_tx = draw(st.integers(0, 7))
            batch = []
            for ti in range(n_tx):
                accesses = draw(st.lists(access, max_size=4))
                abort = draw(st.booleans()) and draw(st.booleans()) and draw(st.booleans())
                batch.append(ScriptedTx(f"{prefix}{bi}.{ti}", tuple(Access(*a) for a in accesses),
                                        derive=True, abort=abort))
            batches.append(batch)
        return batches

    def _check(self, data: Any, vm_class: type[RecordingVm]) -> None:
        n_resources = data.draw(st.integers(1, 6), label="resources")
        batches = self._random_batches(data.draw, "a", n_resources, data.draw(st.integers(1, 5), label="batches"))
        workers = data.draw(st.integers(1, 4), label="workers")
        readers = data.draw(st.sampled_from([0, 2]), label="readers")
        chunk = data.draw(st.sampled_from([1, 3, 256]), label="chunk")
        cache_limit = data.draw(st.sampled_from([0, 2, 1_000_000]), label="cache_limit")
        rollback = data.draw(st.none() | st.integers(0, len(batches)), label="rollback_to")
        again = self._random_batches(data.draw, "b", n_resources, data.draw(st.integers(0, 3))) if rollback is not None else []
        vm = vm_class()
        with tempfile.TemporaryDirectory() as tmp:
            store = self.make_store(Path(tmp))
            try:
                with self.manager(store, vm, workers=workers, readers=readers, chunk=chunk,
                                  cache_limit=cache_limit) as m:
                    scheduled = [m.schedule(b) for b in batches]
                    kept = batches
                    if rollback is not None:
                        m.rollback_to(rollback)
                        kept = batches[:rollback] + again
                        scheduled = scheduled[:rollback] + [m.schedule(b) for b in again]
                    for b in scheduled:
                        assert b.wait_committed(HANG), f"{b} was canceled"
                    state, seen = reference_run(kept)
                    rids = {a.resource_id for b in batches + again for t in b for a in t.accesses}
                    assert {r: tuple(m.read(r))[1:] for r in rids} == {r: state.get(r, (0, b"")) for r in rids}
                for name, expected in seen.items():
                    assert vm.seen.get(name) == expected, f"transaction {name} saw the wrong input"
                for b, txs in zip(scheduled, kept):
                    assert sorted(b.errors) == [i for i, t in enumerate(txs) if t.abort]
                assert_store_matches(store, state, len(kept))
            finally:
                store.close()

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_matches_sequential_execution(self, data: Any) -> None:
        self._check(data, RecordingVm)

    @settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_matches_sequential_execution_with_process_batch(self, data: Any) -> None:
        self._check(data, BatchRecordingVm)

    @settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_matches_sequential_execution_with_a_serial_vm(self, data: Any) -> None:
        self._check(data, SerialRecordingVm)


class AbstractExecutionTests(AbstractScenarioTests, AbstractRollbackTests, AbstractCrashTests, AbstractPropertyTests):
    """Every scenario, rollback, crash and property test of the execution runtime."""
