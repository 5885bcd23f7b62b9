"""Undoing batches in a store: ``rollback_to`` and the recovery a manager runs when it opens a store.

The store alone says what to undo. For each batch after the target, newest
first, for each rollback pointer it wrote (``batch index + rid`` ->
``before + written``):

- delete the data version the batch wrote (``written``, from the pointer
  itself, so that a batch that was persisted but never committed loses exactly
  its own data and never the live version);
- if the batch was committed, restore the latest pointer to ``before``
  (delete it when ``before`` is 0: the resource did not exist);
- delete the rollback pointer.

Because batches go newest first and every one of them records its own
version, several undone batches that wrote one resource leave neither orphaned
versions nor a wrong pointer. Everything, with the new ``last_committed`` and
``last_persisted``, goes into one write batch: a crash during a rollback
leaves the store before it or after it.
"""

from __future__ import annotations

import dataclasses

from ..errors import StoreError
from .state import (
    META_LAST_COMMITTED,
    META_LAST_PERSISTED,
    META_SCHEMA_VERSION,
    SCHEMA_VERSION,
    StateSpace,
    data_key,
    decode_rollback_value,
    decode_u64,
    encode_u64,
)
from .store import Store

__all__ = ["StoreMarks", "read_marks", "undo_batches", "open_store"]

DATA, LATEST, ROLLBACK, META = StateSpace.DATA, StateSpace.LATEST_PTR, StateSpace.ROLLBACK_PTR, StateSpace.META


@dataclasses.dataclass
class StoreMarks:
    """The store's bookkeeping in META."""

    last_committed: int = 0
    """Every batch up to this one is committed; none after it."""
    last_persisted: int = 0
    """The highest batch index whose data may be in the store (committed or not)."""


def _meta_int(store: Store, key: bytes) -> int:
    raw = store.get(META, key)
    if raw is None:
        return 0
    if len(raw) != 8:
        raise StoreError(f"META {key.decode()} should hold 8 bytes, it holds {raw!r}")
    return decode_u64(raw)


def read_marks(store: Store) -> StoreMarks:
    """``last_committed`` and ``last_persisted`` from META (0 for a fresh store)."""
    return StoreMarks(_meta_int(store, META_LAST_COMMITTED), _meta_int(store, META_LAST_PERSISTED))


def undo_batches(store: Store, after: int, upto: int, marks: StoreMarks) -> tuple[set[bytes], set[bytes]]:
    """Undo batches ``after+1 .. upto`` in one atomic commit; update ``marks`` to match.

    :returns: the encoded ids whose latest pointer changed (undone committed
        batches) and those whose data alone was removed (persisted, uncommitted).
    """
    wb = store.write_batch()
    restored: set[bytes] = set()
    dropped: set[bytes] = set()
    for index in range(upto, after, -1):
        committed = index <= marks.last_committed
        for key, value in store.prefix_iter(ROLLBACK, encode_u64(index)):
            rid = key[8:]
            before, written = decode_rollback_value(value)
            wb.delete(DATA, data_key(written, rid))
            wb.delete(ROLLBACK, key)
            if committed:
                if before:
                    wb.put(LATEST, rid, encode_u64(before))
                else:
                    wb.delete(LATEST, rid)
                restored.add(rid)
            else:
                dropped.add(rid)
    marks.last_committed = min(marks.last_committed, after)
    marks.last_persisted = min(marks.last_persisted, after)
    wb.put(META, META_LAST_COMMITTED, encode_u64(marks.last_committed))
    wb.put(META, META_LAST_PERSISTED, encode_u64(marks.last_persisted))
    store.commit(wb)
    return restored, dropped


def open_store(store: Store) -> StoreMarks:
    """Check the store's schema, write it into a fresh store, and remove what a crash left behind.

    A crash between a batch's data write and its pointer flip leaves data and
    rollback pointers of uncommitted batches; they are deleted here, so the
    store is exactly at its last committed batch.

    :raises StoreError: the store was written with another schema version.
    """
    raw = store.get(META, META_SCHEMA_VERSION)
    if raw is None:
        wb = store.write_batch()
        wb.put(META, META_SCHEMA_VERSION, encode_u64(SCHEMA_VERSION))
        store.commit(wb)
    elif raw != encode_u64(SCHEMA_VERSION):
        raise StoreError(f"the store holds execution-runtime schema {raw!r}; this ringcore reads schema "
                         f"{SCHEMA_VERSION}. Use a store written by this version, or a new one")
    marks = read_marks(store)
    if marks.last_persisted > marks.last_committed:
        undo_batches(store, marks.last_committed, marks.last_persisted, marks)
    return marks
