"""Crash safety: a writer killed with SIGKILL at random instants; each recovery lands exactly on a committed batch.

RINGCORE_CRASH_TRIALS sets the number of kills (default 24, about 15 s); for a
long run by hand: ``ringcore store crash-test --trials 1000``.
"""

from __future__ import annotations

import os
import signal
import struct

import pytest
from ringcore_rocksdb import RocksDBStore
from ringcore_rocksdb.crash import CrashCheckError, CrashVm, Reference, batch_transactions, check_store, run_trials

from ringcore.execution import MemoryStore, RuntimeManager, StateSpace

TRIALS = int(os.environ.get("RINGCORE_CRASH_TRIALS", "24"))
U64 = struct.Struct(">Q")


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL (POSIX)")
def test_sigkill_at_random_instants_recovers_to_a_committed_batch(tmp_path):
    lines = []
    report = run_trials(TRIALS, syncs=(True, False), directory=tmp_path / "store", out=lines.append)
    print("\n".join(lines))
    assert report.ok, report.summary()
    assert len(report.trials) == TRIALS
    assert sum(t.sync for t in report.trials) == (TRIALS + 1) // 2
    for t in report.trials:
        assert t.batch >= t.observed and t.rolled_back_to <= t.batch


# -- the checker itself must catch what it is there to catch ---------------------------------------------


def _run(store, seed, upto):
    with RuntimeManager(CrashVm(), store, workers=2) as m:
        for i in range(m.last_committed + 1, upto + 1):
            m.schedule(batch_transactions(seed, i))
        m.flush(30)


@pytest.fixture
def at_20():
    """A MemoryStore holding the workload (seed 11) up to batch 20, and its reference."""
    store = MemoryStore()
    _run(store, 11, 20)
    return store, Reference(11)


def test_the_reference_is_what_the_runtime_does(at_20):
    store, ref = at_20
    assert check_store(store, ref, at_least=20, recovered=True) == (20, 0)
    assert ref.state(20) != ref.state(19)  # the workload changes something in every batch (here, at least)


def test_checker_refuses_a_store_behind_the_last_commit_seen(at_20):
    store, ref = at_20
    with pytest.raises(CrashCheckError, match="at batch 20, but the writer had seen batch 21"):
        check_store(store, ref, at_least=21, recovered=True)


def _tamper(store, space, key, value=None):
    wb = store.write_batch()
    if value is None:
        wb.delete(space, key)
    else:
        wb.put(space, key, value)
    store.commit(wb)


def test_checker_catches_a_latest_pointer_of_a_later_batch(at_20):
    store, ref = at_20
    rid, (version, _) = next(iter(ref.state(20).items()))
    key = b"\x01" + U64.pack(rid)
    _tamper(store, StateSpace.LATEST_PTR, key, U64.pack(version + 1))
    with pytest.raises(CrashCheckError, match="latest pointers differ"):
        check_store(store, ref, at_least=0, recovered=False)


def test_checker_catches_wrong_data_and_orphans(at_20):
    store, ref = at_20
    rid, (version, data) = next(iter(ref.state(20).items()))
    key = U64.pack(version) + b"\x01" + U64.pack(rid)
    _tamper(store, StateSpace.DATA, key, data + b"!")
    with pytest.raises(CrashCheckError, match=f"resource {rid}: the data of version {version}"):
        check_store(store, ref, at_least=0, recovered=False)
    _tamper(store, StateSpace.DATA, key, data)
    _tamper(store, StateSpace.DATA, U64.pack(999) + b"\x01" + U64.pack(rid), b"orphan")
    with pytest.raises(CrashCheckError, match="orphans"):
        check_store(store, ref, at_least=0, recovered=False)


def test_checker_catches_a_missing_rollback_pointer_and_leftovers_after_recovery(at_20):
    store, ref = at_20
    batch = next(i for i in range(1, 21) if ref.batch_diffs(i))
    rid, (before, after, _) = next(iter(ref.batch_diffs(batch).items()))
    pointer = U64.pack(batch) + b"\x01" + U64.pack(rid)
    _tamper(store, StateSpace.ROLLBACK_PTR, pointer)
    with pytest.raises(CrashCheckError, match="rollback pointers of committed batches differ"):
        check_store(store, ref, at_least=0, recovered=False)
    _tamper(store, StateSpace.ROLLBACK_PTR, pointer, struct.pack(">QQ", before, after))
    # Batch 21 persisted but not committed: accepted before recovery, refused after it.
    diffs = ref.batch_diffs(21)
    assert diffs, "the workload's batch 21 changes something"
    wb = store.write_batch()
    for rid, (before, after, data) in diffs.items():
        wb.put(StateSpace.DATA, U64.pack(after) + b"\x01" + U64.pack(rid), data)
        wb.put(StateSpace.ROLLBACK_PTR, U64.pack(21) + b"\x01" + U64.pack(rid), struct.pack(">QQ", before, after))
    wb.put(StateSpace.META, b"last_persisted", U64.pack(21))
    store.commit(wb)
    assert check_store(store, ref, at_least=20, recovered=False) == (20, 1)
    with pytest.raises(CrashCheckError, match="after recovery, a rollback pointer of batch 21"):
        check_store(store, ref, at_least=20, recovered=True)


def test_recovery_of_an_uncommitted_batch_on_rocksdb(tmp_path):
    """The state a kill between persist and flip leaves, made by hand: the next manager removes it."""
    ref = Reference(5)
    assert ref.batch_diffs(7), "the workload's batch 7 changes something"
    with RocksDBStore(tmp_path / "s") as store:
        _run(store, 5, 6)
        wb = store.write_batch()
        for rid, (before, after, data) in ref.batch_diffs(7).items():
            wb.put(StateSpace.DATA, U64.pack(after) + b"\x01" + U64.pack(rid), data)
            wb.put(StateSpace.ROLLBACK_PTR, U64.pack(7) + b"\x01" + U64.pack(rid), struct.pack(">QQ", before, after))
        wb.put(StateSpace.META, b"last_persisted", U64.pack(7))
        store.commit(wb)
    with RocksDBStore(tmp_path / "s") as store:
        assert check_store(store, ref, at_least=6, recovered=False) == (6, 1)
        _run(store, 5, 9)  # opens (recovery), then commits batches 7..9 for real
        assert check_store(store, ref, at_least=9, recovered=True) == (9, 0)
