"""The store conformance suite: what the execution runtime needs from any Store.

A store plugin's test suite subclasses :class:`AbstractStoreTests` and says how
to create its store; pytest never collects the ``Abstract...Tests`` classes on
their own::

    # plugins/rocksdb/tests/test_conformance.py
    from ringcore.testing.store import AbstractStoreTests
    from ringcore_rocksdb import RocksDBStore

    class TestRocksDBStore(AbstractStoreTests):
        persistent = True                  # what is committed survives close() + reopen

        def make_store(self, path):        # path: a fresh directory for this test
            return RocksDBStore(path)

The same ``make_store`` serves the execution runtime's scenario suite
(:mod:`ringcore.testing.execution`). Import this module by its full path; it
needs pytest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ringcore.errors import StoreClosedError
from ringcore.execution.state import StateSpace
from ringcore.execution.store import Store

__all__ = ["StoreFixtures", "AbstractStoreTests", "dump_space"]

DATA, LATEST, ROLLBACK, META = StateSpace.DATA, StateSpace.LATEST_PTR, StateSpace.ROLLBACK_PTR, StateSpace.META


def dump_space(store: Store, space: StateSpace) -> dict[bytes, bytes]:
    """Every committed key and value of ``space``."""
    return dict(store.prefix_iter(space, b""))


class StoreFixtures:
    """How a suite gets its store. Override :meth:`make_store`; set ``persistent`` if it is durable."""

    persistent: ClassVar[bool] = False
    """Whether what is committed survives ``close()`` and a new ``make_store`` on the same path."""

    def make_store(self, path: Path) -> Store:
        """A new store kept under ``path`` (a fresh, existing directory); the default is a MemoryStore."""
        from ringcore.execution.store import MemoryStore

        return MemoryStore()

    def reopen_store(self, store: Store, path: Path) -> Store:
        """The store as a later process would open it: closed and made anew when ``persistent``,
        else the same object (which then plays a later process's store)."""
        if not self.persistent:
            return store
        store.close()
        return self.make_store(path)

    @pytest.fixture
    def store_path(self, tmp_path: Path) -> Path:
        path = tmp_path / "store"
        path.mkdir()
        return path

    @pytest.fixture
    def store(self, store_path: Path) -> Iterator[Store]:
        s = self.make_store(store_path)
        holder = [s]
        self._opened = holder
        try:
            yield s
        finally:
            for opened in holder:
                try:
                    opened.close()
                except Exception:  # noqa: BLE001 - closing twice may raise in some stores
                    pass


class AbstractStoreTests(StoreFixtures):
    """The behaviour every Store must have: get, prefix_iter, atomic ordered write batches, close."""

    def put(self, store: Store, *items: tuple[StateSpace, bytes, bytes]) -> None:
        wb = store.write_batch()
        for space, key, value in items:
            wb.put(space, key, value)
        store.commit(wb)

    def test_missing_key_is_none(self, store: Store) -> None:
        for space in StateSpace:
            assert store.get(space, b"nothing here") is None

    def test_put_then_get(self, store: Store) -> None:
        self.put(store, (DATA, b"\x00\x00\x00\x00\x00\x00\x00\x01k", b"value"))
        assert store.get(DATA, b"\x00\x00\x00\x00\x00\x00\x00\x01k") == b"value"

    def test_empty_value_is_not_missing(self, store: Store) -> None:
        self.put(store, (DATA, b"k", b""))
        assert store.get(DATA, b"k") == b""

    def test_binary_keys_and_values(self, store: Store) -> None:
        key = bytes(range(256))
        value = bytes(reversed(range(256))) * 64
        self.put(store, (DATA, key, value))
        assert store.get(DATA, key) == value

    def test_spaces_are_separate(self, store: Store) -> None:
        self.put(store, *((space, b"same key", space.label.encode()) for space in StateSpace))
        for space in StateSpace:
            assert store.get(space, b"same key") == space.label.encode()

    def test_uncommitted_batch_is_invisible(self, store: Store) -> None:
        wb = store.write_batch()
        wb.put(LATEST, b"k", b"v")
        assert store.get(LATEST, b"k") is None
        assert len(wb) == 1
        store.commit(wb)
        assert store.get(LATEST, b"k") == b"v"

    def test_operations_apply_in_order(self, store: Store) -> None:
        wb = store.write_batch()
        wb.put(LATEST, b"a", b"1")
        wb.put(LATEST, b"a", b"2")
        wb.put(LATEST, b"b", b"1")
        wb.delete(LATEST, b"b")
        wb.delete(LATEST, b"c")
        wb.put(LATEST, b"c", b"3")
        store.commit(wb)
        assert store.get(LATEST, b"a") == b"2"
        assert store.get(LATEST, b"b") is None
        assert store.get(LATEST, b"c") == b"3"

    def test_delete_absent_key_is_fine(self, store: Store) -> None:
        wb = store.write_batch()
        wb.delete(DATA, b"never written")
        store.commit(wb)
        assert store.get(DATA, b"never written") is None

    def test_delete_removes(self, store: Store) -> None:
        self.put(store, (ROLLBACK, b"k", b"v"))
        wb = store.write_batch()
        wb.delete(ROLLBACK, b"k")
        store.commit(wb)
        assert store.get(ROLLBACK, b"k") is None
        assert dump_space(store, ROLLBACK) == {}

    def test_prefix_iter_sorted_and_bounded(self, store: Store) -> None:
        keys = [b"\x00\x00\x00\x00\x00\x00\x00\x02" + bytes([t]) + x for t in (1, 2, 3) for x in (b"a", b"\xff", b"")]
        keys += [b"\x00\x00\x00\x00\x00\x00\x00\x01\xff", b"\x00\x00\x00\x00\x00\x00\x00\x03", b"\x00\x00\x00\x00\x00\x00\x01\x02"]
        self.put(store, *((ROLLBACK, k, k[::-1]) for k in reversed(keys)))
        prefix = b"\x00\x00\x00\x00\x00\x00\x00\x02"
        got = list(store.prefix_iter(ROLLBACK, prefix))
        want = sorted((k, k[::-1]) for k in keys if k.startswith(prefix))
        assert got == want
        assert [k for k, _ in store.prefix_iter(ROLLBACK, b"")] == sorted(keys)

    def test_prefix_iter_with_ff_bytes(self, store: Store) -> None:
        keys = [b"\xff", b"\xff\xff", b"\xff\xff\x00", b"\xfe\xff", b"\xff\xfe"]
        self.put(store, *((DATA, k, b"v") for k in keys))
        assert [k for k, _ in store.prefix_iter(DATA, b"\xff\xff")] == [b"\xff\xff", b"\xff\xff\x00"]
        assert [k for k, _ in store.prefix_iter(DATA, b"\xff")] == [b"\xff", b"\xff\xfe", b"\xff\xff", b"\xff\xff\x00"]

    def test_prefix_iter_is_a_snapshot(self, store: Store) -> None:
        self.put(store, *((META, bytes([i]), b"v") for i in range(10)))
        it = store.prefix_iter(META, b"")
        first = next(it)
        wb = store.write_batch()
        for i in range(10):
            wb.delete(META, bytes([i]))
        wb.put(META, b"\x05\x00", b"new")
        store.commit(wb)
        rest = list(it)
        assert [first, *rest] == [(bytes([i]), b"v") for i in range(10)]
        assert dump_space(store, META) == {b"\x05\x00": b"new"}

    def test_commit_is_atomic_for_readers(self, store: Store) -> None:
        """A reader never sees half of a commit: both keys always have the same value."""
        self.put(store, (LATEST, b"x", b"0"), (LATEST, b"y", b"0"))
        stop = threading.Event()
        torn: list[tuple[Any, Any]] = []

        def reader() -> None:
            while not stop.is_set():
                x = store.get(LATEST, b"x")
                y = store.get(LATEST, b"y")
                # Each commit sets x, then y, to the same new value. Reading x before y can see
                # an older x with a newer y, but a newer x with an older y only if the reader
                # got between the two operations of one commit.
                if x is not None and y is not None and int(x) > int(y):
                    torn.append((x, y))

        t = threading.Thread(target=reader)
        t.start()
        try:
            for i in range(1, 300):
                wb = store.write_batch()
                wb.put(LATEST, b"x", str(i).encode())
                wb.put(LATEST, b"y", str(i).encode())
                store.commit(wb)
        finally:
            stop.set()
            t.join(10)
        assert not torn, f"a reader saw half of a commit: {torn[:3]}"

    def test_concurrent_commits_and_reads(self, store: Store) -> None:
        errors: list[BaseException] = []

        def writer(n: int) -> None:
            try:
                for i in range(100):
                    self.put(store, (DATA, f"{n}-{i}".encode(), b"v" * i))
                    assert store.get(DATA, f"{n}-{i}".encode()) == b"v" * i
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
        assert len(dump_space(store, DATA)) == 400

    def test_non_bytes_keys_are_refused(self, store: Store) -> None:
        wb = store.write_batch()
        with pytest.raises(TypeError):
            wb.put(DATA, "text key", b"v")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            wb.put(DATA, b"k", 5)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            store.get(DATA, None)  # type: ignore[arg-type]

    def test_unknown_space_is_refused(self, store: Store) -> None:
        with pytest.raises((TypeError, ValueError)):
            store.get("data", b"k")  # type: ignore[arg-type]

    def test_closed_store_refuses_and_close_is_idempotent(self, store: Store) -> None:
        self.put(store, (DATA, b"k", b"v"))
        store.close()
        store.close()
        with pytest.raises(StoreClosedError):
            store.get(DATA, b"k")
        with pytest.raises(StoreClosedError):
            store.write_batch()
        with pytest.raises(StoreClosedError):
            list(store.prefix_iter(DATA, b""))

    def test_committed_data_survives_reopen(self, store: Store, store_path: Path) -> None:
        if not self.persistent:
            pytest.skip("the store is not persistent (persistent = False)")
        self.put(store, (DATA, b"k", b"v"), (META, b"m", b"1"))
        again = self.reopen_store(store, store_path)
        self._opened.append(again)
        assert again.get(DATA, b"k") == b"v"
        assert dump_space(again, META) == {b"m": b"1"}

    def test_uncommitted_batch_is_lost_on_reopen(self, store: Store, store_path: Path) -> None:
        if not self.persistent:
            pytest.skip("the store is not persistent (persistent = False)")
        wb = store.write_batch()
        wb.put(DATA, b"k", b"v")
        again = self.reopen_store(store, store_path)
        self._opened.append(again)
        assert again.get(DATA, b"k") is None
