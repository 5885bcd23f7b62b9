"""RocksDBStore's own behaviour: locking, refusing what is not a store, releasing everything on close, options."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import rocksdict
from ringcore_rocksdb import COMPRESSIONS, RocksDBStore
from ringcore_rocksdb._layout import MARKER, write_marker

from ringcore.errors import StoreArgumentError, StoreClosedError, StoreError, StoreLockedError
from ringcore.execution import MemoryStore, RuntimeManager, StateSpace
from ringcore.execution.ledger import LedgerVm, Mint, Transfer

DATA, LATEST, ROLLBACK, META = StateSpace.DATA, StateSpace.LATEST_PTR, StateSpace.ROLLBACK_PTR, StateSpace.META


def put(store, *items):
    wb = store.write_batch()
    for space, key, value in items:
        wb.put(space, key, value)
    store.commit(wb)


def tree(path):
    """Every file under ``path`` with its size, modification time and contents: to prove nothing changed."""
    out = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            p = os.path.join(root, name)
            st = os.stat(p)
            out[os.path.relpath(p, path)] = (st.st_size, st.st_mtime_ns,
                                             open(p, "rb").read() if os.path.isfile(p) else None)
    return out


# -- locking ------------------------------------------------------------------------------------------


def test_a_store_another_process_holds_is_refused_with_its_path(tmp_path, hold_store):
    path = tmp_path / "held"
    holder = hold_store(path)
    with pytest.raises(StoreLockedError) as info:
        RocksDBStore(path)
    message = str(info.value)
    assert str(path) in message and f"process {holder.proc.pid}" in message
    holder.stop()
    with RocksDBStore(path) as store:  # the holder is gone: the lock with it
        assert store.get(META, b"nothing") is None


def test_a_store_open_in_this_process_is_refused_until_closed(tmp_path):
    first = RocksDBStore(tmp_path / "s")
    with pytest.raises(StoreLockedError, match="already open in this process"):
        RocksDBStore(tmp_path / "s")
    first.close()
    RocksDBStore(tmp_path / "s").close()


def test_read_only_opens_a_store_that_is_in_use(tmp_path):
    path = tmp_path / "s"
    with RocksDBStore(path) as writer:
        put(writer, (DATA, b"k", b"v"))
        with RocksDBStore(path, read_only=True) as reader:
            assert reader.get(DATA, b"k") == b"v"
            with pytest.raises(StoreError, match="opened read-only; open it with read_only=False to write"):
                reader.write_batch()
        put(writer, (DATA, b"k", b"w"))  # the writer is unaffected


# -- close releases everything ------------------------------------------------------------------------


def test_close_releases_iterators_batches_and_families(tmp_path):
    path = tmp_path / "s"
    store = RocksDBStore(path)
    put(store, *((DATA, b"k%05d" % i, b"v") for i in range(2000)))
    it = store.prefix_iter(DATA, b"k")
    assert next(it) == (b"k00000", b"v")  # a RocksDB iterator is open, and more than one chunk is left
    untouched = store.prefix_iter(LATEST, b"")  # never read
    wb = store.write_batch()
    wb.put(DATA, b"uncommitted", b"x")
    assert store.stats().last_committed == 0
    store.close()
    store.close()  # idempotent
    assert store.closed and "closed" in repr(store)

    again = RocksDBStore(path)  # the lock was released: every handle went with the store
    try:
        assert again.get(DATA, b"k01999") == b"v"
        assert again.get(DATA, b"uncommitted") is None
        with pytest.raises(StoreClosedError):
            for _ in it:
                pass
        with pytest.raises(StoreClosedError):
            next(untouched)
        with pytest.raises(StoreClosedError):
            wb.put(DATA, b"more", b"x")
        with pytest.raises(StoreArgumentError, match="not created by this store"):
            again.commit(wb)
        for call in (lambda: store.get(DATA, b"k"), lambda: store.get_many(DATA, [b"k"]), store.stats,
                     lambda: store.commit(wb)):
            with pytest.raises(StoreClosedError, match=str(path)):
                call()
    finally:
        again.close()


def test_an_iterator_read_to_the_end_holds_nothing(tmp_path):
    with RocksDBStore(tmp_path / "s") as store:
        put(store, (DATA, b"a", b"1"))
        assert list(store.prefix_iter(DATA, b"")) == [(b"a", b"1")]
        assert len(store._iterators) == 0


# -- what is not a store is refused, untouched ------------------------------------------------------------


def test_a_directory_of_other_files_is_refused_and_untouched(tmp_path):
    path = tmp_path / "mine"
    (path / "sub").mkdir(parents=True)
    (path / "notes.txt").write_text("mine")
    (path / "sub" / "data.bin").write_bytes(b"\x00" * 10)
    before = tree(path)
    with pytest.raises(StoreError, match=f"{path} is not a ringcore store: it holds 2 entries .notes.txt, sub.") as info:
        RocksDBStore(path)
    assert "untouched" in str(info.value) and "new or empty directory" in str(info.value)
    assert tree(path) == before


def test_a_rocksdb_database_ringcore_did_not_create_is_refused_and_untouched(tmp_path):
    path = tmp_path / "other"
    db = rocksdict.Rdict(str(path))
    db[b"k"] = b"v"
    db.close()
    before = tree(path)
    with pytest.raises(StoreError, match="holds a RocksDB database that ringcore did not create"):
        RocksDBStore(path)
    with pytest.raises(StoreError, match="did not create"):
        RocksDBStore(path, read_only=True)
    assert tree(path) == before


def test_a_file_a_missing_directory_and_an_empty_one(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="is a file, not a store directory"):
        RocksDBStore(tmp_path / "file")
    with pytest.raises(StoreError, match="no store at .*does not exist; pass create=True"):
        RocksDBStore(tmp_path / "missing", create=False)
    with pytest.raises(StoreError, match="no store at .*does not exist"):
        RocksDBStore(tmp_path / "missing", read_only=True)
    assert not (tmp_path / "missing").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match="the directory is empty"):
        RocksDBStore(tmp_path / "empty", create=False)
    with RocksDBStore(tmp_path / "empty") as store:  # an empty directory becomes a store
        put(store, (META, b"m", b"1"))
    assert (tmp_path / "empty" / MARKER).is_file()
    with RocksDBStore(tmp_path / "empty", create=False) as store:
        assert store.get(META, b"m") == b"1"


def test_a_marker_of_another_layout_version_is_refused(tmp_path):
    path = tmp_path / "s"
    RocksDBStore(path).close()
    (path / MARKER).write_text('{"format": "ringcore-rocksdb", "version": 99}')
    with pytest.raises(StoreError, match="layout version 99; this ringcore-rocksdb reads version 1"):
        RocksDBStore(path)
    (path / MARKER).write_text("not json")
    with pytest.raises(StoreError, match="not a readable ringcore store marker"):
        RocksDBStore(path)


@pytest.mark.parametrize("leftover", ["marker", "marker-tmp"])
def test_a_creation_interrupted_before_rocksdb_finished_is_completed(tmp_path, leftover):
    path = tmp_path / "s"
    path.mkdir()
    if leftover == "marker":
        write_marker(path)
    else:
        (path / f".{MARKER}.tmp").write_text('{"format": "ringcore-rocksdb"')  # cut short
    with RocksDBStore(path) as store:
        put(store, (DATA, b"k", b"v"))
    with RocksDBStore(path) as store:
        assert store.get(DATA, b"k") == b"v"


# -- options ------------------------------------------------------------------------------------------------


def test_options_are_checked(tmp_path):
    with pytest.raises(StoreArgumentError, match="compression 'gzip' is not one of none, snappy, lz4"):
        RocksDBStore(tmp_path / "a", compression="gzip")
    with pytest.raises(StoreArgumentError, match="block_cache_size must be an int >= 0, got -1"):
        RocksDBStore(tmp_path / "a", block_cache_size=-1)
    with pytest.raises(StoreArgumentError, match="sync must be True or False, got 'yes'"):
        RocksDBStore(tmp_path / "a", sync="yes")
    with pytest.raises(StoreArgumentError, match="path must be a directory path"):
        RocksDBStore(5)
    with pytest.raises(StoreArgumentError, match="configure must be a callable"):
        RocksDBStore(tmp_path / "a", configure="max_open_files=10")
    assert not (tmp_path / "a").exists()  # nothing was created for a refused call


def test_configure_sees_every_options_object(tmp_path):
    seen = []

    def configure(options):
        assert isinstance(options, rocksdict.Options)
        options.set_max_open_files(64)
        seen.append(options)

    with RocksDBStore(tmp_path / "s", configure=configure) as store:
        put(store, (DATA, b"k", b"v"))
    assert len(seen) == 5  # the database's, and one per column family


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_every_compression_round_trips(tmp_path, compression):
    path = tmp_path / compression
    with RocksDBStore(path, compression=compression, sync=True) as store:
        put(store, *((DATA, b"%06d" % i, b"value %d " % i * 20) for i in range(500)))
    with RocksDBStore(path, compression=compression) as store:
        assert store.get(DATA, b"000499") == b"value 499 " * 20
        assert len(list(store.prefix_iter(DATA, b"000"))) == 500


# -- reads ----------------------------------------------------------------------------------------------------


def test_put_many_takes_bytes_like_and_refuses_the_rest(tmp_path):
    with RocksDBStore(tmp_path / "s") as store:
        wb = store.write_batch()
        wb.put_many(DATA, [b"a", bytearray(b"b"), b"c"], [b"1", b"2", memoryview(b"3")])
        assert len(wb) == 3
        with pytest.raises(StoreArgumentError, match="store keys are bytes, got str"):
            wb.put_many(DATA, [b"d", "e"], [b"4", b"5"])
        with pytest.raises(StoreArgumentError, match="2 keys and 1 values"):
            wb.put_many(DATA, [b"f", b"g"], [b"6"])
        assert len(wb) == 3  # a refused call adds nothing
        store.commit(wb)
        assert dict(store.prefix_iter(DATA, b"")) == {b"a": b"1", b"b": b"2", b"c": b"3"}


def test_get_many(tmp_path):
    with RocksDBStore(tmp_path / "s") as store:
        put(store, (LATEST, b"a", b"1"), (LATEST, b"c", b""))
        assert store.get_many(LATEST, [b"a", b"b", b"c", bytearray(b"a")]) == [b"1", None, b"", b"1"]
        assert store.get_many(LATEST, []) == []
        with pytest.raises(StoreArgumentError):
            store.get_many(LATEST, ["a"])


def test_prefix_iteration_across_chunks_is_one_snapshot(tmp_path):
    with RocksDBStore(tmp_path / "s") as store:
        keys = [b"\xff\xff" + i.to_bytes(2, "big") for i in range(1500)]
        put(store, *((ROLLBACK, k, b"v") for k in keys), (ROLLBACK, b"\xff\xfe", b"x"), (ROLLBACK, b"\xff", b"x"))
        it = store.prefix_iter(ROLLBACK, b"\xff\xff")
        first = next(it)
        wb = store.write_batch()
        for k in keys:
            wb.delete(ROLLBACK, k)
        wb.put(ROLLBACK, b"\xff\xff\xff\xff\xff", b"new")
        store.commit(wb)
        assert [first, *it] == [(k, b"v") for k in keys]
        assert list(store.prefix_iter(ROLLBACK, b"\xff\xff")) == [(b"\xff\xff\xff\xff\xff", b"new")]
        assert [k for k, _ in store.prefix_iter(ROLLBACK, b"")] == [b"\xff", b"\xff\xfe", b"\xff\xff\xff\xff\xff"]


def test_stats_of_a_ledger(tmp_path):
    with RocksDBStore(tmp_path / "s") as store:
        with RuntimeManager(LedgerVm(), store) as m:
            m.schedule([Mint(a, 100) for a in range(50)])
            m.schedule([Transfer(a, a + 50, 10) for a in range(10)])  # accounts 50..59 are new
            m.flush(30)
        stats = store.stats()
    assert (stats.last_committed, stats.last_persisted, stats.schema_version) == (2, 2, 1)
    assert stats.resources == 60
    assert stats.data_versions > 0 and stats.rollback_pointers > 0
    assert stats.size_bytes > 0 and stats.files > 0
    assert stats.as_dict()["path"] == str(tmp_path / "s")


# -- through the registry ---------------------------------------------------------------------------------------


def test_the_runtime_creates_and_closes_it_by_name(tmp_path):
    path = tmp_path / "by-name"
    with RuntimeManager(LedgerVm(), "rocksdb", store_options={"path": path, "sync": True}) as m:
        assert isinstance(m.store, RocksDBStore) and m.store.sync
        m.schedule([Mint(1, 5)]).wait_committed(10)
    assert m.store.closed  # the manager created it: shutdown closed it
    with RocksDBStore(path) as store, RuntimeManager(LedgerVm(), store) as m:
        assert m.last_committed == 1 and m.read(1).data == (5).to_bytes(8, "big")


def test_the_registered_factory_needs_a_path():
    from ringcore.plugins import get_registry

    with pytest.raises(StoreArgumentError, match="needs a directory: pass store_options=.'path'"):
        RuntimeManager(LedgerVm(), "rocksdb")
    assert get_registry().store_spec("rocksdb").package == "ringcore-rocksdb"


def test_commit_refuses_another_stores_batch(tmp_path):
    with RocksDBStore(tmp_path / "a") as a, RocksDBStore(tmp_path / "b") as b:
        wb = a.write_batch()
        wb.put(DATA, b"k", b"v")
        with pytest.raises(StoreArgumentError, match="not created by this store"):
            b.commit(wb)
        with pytest.raises(StoreArgumentError):
            b.commit(MemoryStore().write_batch())
        assert len(wb) == 1 and wb.size_in_bytes > 0


def test_importing_the_plugin_is_cheap():
    code = ("import sys, ringcore_rocksdb.plugin, ringcore_rocksdb.cli; "
            "heavy = [m for m in ('rocksdict', 'ringcore_rocksdb.store', 'ringcore.execution.manager') "
            "if m in sys.modules]; print(heavy)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
