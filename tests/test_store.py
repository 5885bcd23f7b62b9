"""MemoryStore passes the store conformance suite; MemoryStore's own details."""

from __future__ import annotations

import pytest

from ringcore.execution import MemoryStore, StateSpace, StoreArgumentError
from ringcore.testing.store import AbstractStoreTests


class TestMemoryStore(AbstractStoreTests):
    def make_store(self, path):
        return MemoryStore()


def test_commit_refuses_another_stores_batch():
    a, b = MemoryStore(), MemoryStore()
    wb = a.write_batch()
    wb.put(StateSpace.DATA, b"k", b"v")
    with pytest.raises(StoreArgumentError, match="not created by this store"):
        b.commit(wb)
    with pytest.raises(StoreArgumentError):
        b.commit(object())  # type: ignore[arg-type]


def test_bytes_like_keys_are_copied():
    s = MemoryStore()
    key = bytearray(b"key")
    wb = s.write_batch()
    wb.put(StateSpace.META, key, memoryview(b"value"))
    key[0] = ord("X")
    s.commit(wb)
    assert s.get(StateSpace.META, b"key") == b"value"
    assert s.get(StateSpace.META, bytearray(b"key")) == b"value"


def test_space_given_as_int_and_bad_space_named():
    s = MemoryStore()
    assert s.get(0, b"k") is None  # StateSpace.DATA
    with pytest.raises(StoreArgumentError, match="'data' is not a state space"):
        s.get("data", b"k")  # type: ignore[arg-type]


def test_count_and_repr():
    s = MemoryStore()
    wb = s.write_batch()
    wb.put(StateSpace.DATA, b"a", b"1")
    wb.put(StateSpace.DATA, b"b", b"1")
    s.commit(wb)
    assert s.count(StateSpace.DATA) == 2
    assert "data=2" in repr(s)
    s.close()
    assert s.closed and "closed" in repr(s)


def test_prefix_iter_sees_keys_added_after_a_previous_iteration():
    s = MemoryStore()
    for k in (b"b", b"d"):
        wb = s.write_batch()
        wb.put(StateSpace.ROLLBACK_PTR, k, b"")
        s.commit(wb)
        list(s.prefix_iter(StateSpace.ROLLBACK_PTR, b""))
    wb = s.write_batch()
    wb.put(StateSpace.ROLLBACK_PTR, b"a", b"")
    wb.put(StateSpace.ROLLBACK_PTR, b"c", b"")
    wb.delete(StateSpace.ROLLBACK_PTR, b"d")
    s.commit(wb)
    assert [k for k, _ in s.prefix_iter(StateSpace.ROLLBACK_PTR, b"")] == [b"a", b"b", b"c"]
