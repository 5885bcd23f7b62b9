"""The Store protocol the execution runtime persists to, and MemoryStore, the embedded default.

A store is a key-value store over the four :class:`~ringcore.execution.state.StateSpace`
spaces. Keys and values are ``bytes``. Changes are made by filling a write
batch and committing it; a commit is atomic (a reader sees all of it or none
of it, and after a crash a durable store holds all of it or none of it) and
applies its operations in the order they were added, so a later operation on
the same key wins. The runtime relies on nothing else.

Implement :class:`Store` and run the conformance suite
(:mod:`ringcore.testing.store`) against it; register it with the
``register_stores`` hook.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

from ..errors import StoreArgumentError, StoreClosedError
from .state import StateSpace

__all__ = ["Store", "WriteBatch", "MemoryStore", "MemoryWriteBatch", "check_space", "check_bytes"]


@runtime_checkable
class WriteBatch(Protocol):
    """A list of changes to commit atomically with :meth:`Store.commit`."""

    def put(self, space: StateSpace, key: bytes, value: bytes) -> None:
        """Set ``key`` in ``space`` to ``value`` when the batch is committed."""

    def delete(self, space: StateSpace, key: bytes) -> None:
        """Remove ``key`` from ``space`` when the batch is committed (absent keys are fine)."""

    def __len__(self) -> int:
        """The number of operations added so far."""


@runtime_checkable
class Store(Protocol):
    """What the execution runtime needs from a durable (or in-memory) key-value store.

    Every method may be called from several threads at once. After
    :meth:`close`, every method but ``close`` raises
    :class:`~ringcore.errors.StoreClosedError`.
    """

    def get(self, space: StateSpace, key: bytes) -> bytes | None:
        """The committed value of ``key`` in ``space``, or None."""

    def prefix_iter(self, space: StateSpace, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Every committed ``(key, value)`` of ``space`` whose key starts with ``prefix``,
        in ascending byte order, as of the call (later commits do not show)."""

    def write_batch(self) -> WriteBatch:
        """A new, empty write batch for this store."""

    # Optional: ``get_many(space, keys) -> list[bytes | None]``, the values of many keys at
    # once (None where absent). The runtime uses it for first reads when a store has it.
    # A write batch may likewise offer ``put_many(space, keys, values)``.

    def commit(self, batch: WriteBatch) -> None:
        """Apply ``batch`` atomically, its operations in order. Durable stores make it
        durable before returning (per their documented sync policy)."""

    def close(self) -> None:
        """Release the store's resources; idempotent."""


def check_space(space: object) -> StateSpace:
    """``space`` as a StateSpace, or a StoreArgumentError naming it (for every Store implementation)."""
    if type(space) is StateSpace:
        return space
    try:
        return StateSpace(space)  # type: ignore[arg-type]
    except ValueError:
        raise StoreArgumentError(
            f"{space!r} is not a state space; use one of {', '.join(s.name for s in StateSpace)}") from None


def check_bytes(what: str, value: object) -> bytes:
    """``value`` as bytes, or a StoreArgumentError naming it (for every Store implementation)."""
    if type(value) is bytes:
        return value
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise StoreArgumentError(f"store {what}s are bytes, got {type(value).__name__}: {value!r:.80}")


class MemoryWriteBatch:
    """A :class:`WriteBatch` for :class:`MemoryStore`: per space, the keys and values in order
    (None: a delete)."""

    __slots__ = ("store", "keys", "values", "deletes")

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.keys: list[list[bytes]] = [[] for _ in StateSpace]
        self.values: list[list[bytes | None]] = [[] for _ in StateSpace]
        self.deletes = [False for _ in StateSpace]

    def put(self, space: StateSpace, key: bytes, value: bytes) -> None:
        if type(space) is not StateSpace:
            space = check_space(space)
        self.keys[space].append(key if type(key) is bytes else check_bytes("key", key))
        self.values[space].append(value if type(value) is bytes else check_bytes("value", value))

    def put_many(self, space: StateSpace, keys: list[bytes], values: list[bytes]) -> None:
        """``put(space, k, v)`` for each pair of ``keys`` and ``values``, in order."""
        space = check_space(space)
        if len(keys) != len(values):
            raise StoreArgumentError(f"put_many got {len(keys)} keys and {len(values)} values")
        if not all(type(k) is bytes for k in keys) or not all(type(v) is bytes for v in values):
            keys = [check_bytes("key", k) for k in keys]
            values = [check_bytes("value", v) for v in values]
        self.keys[space] += keys
        self.values[space] += values

    def delete(self, space: StateSpace, key: bytes) -> None:
        space = check_space(space)
        self.keys[space].append(check_bytes("key", key))
        self.values[space].append(None)
        self.deletes[space] = True

    def __len__(self) -> int:
        return sum(len(k) for k in self.keys)

    def __repr__(self) -> str:
        return f"<MemoryWriteBatch of {len(self)} operations>"


class MemoryStore(Store):
    """An in-memory :class:`Store`: four dicts behind one lock. Nothing survives the process.

    The runtime's default. ``prefix_iter`` keeps a sorted copy of a space's
    keys, rebuilt after the space gained or lost keys; keys in the rollback
    space are written in ascending order, so the rebuild is close to linear.
    """

    persistent = False
    """Nothing outlives the object."""

    preferred_readers = 0
    """A first read is a dict lookup: cheaper inline than handed to a reader thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spaces: list[dict[bytes, bytes]] = [{} for _ in StateSpace]
        self._sorted: list[list[bytes] | None] = [None for _ in StateSpace]
        self._closed = False

    def _open_spaces(self) -> list[dict[bytes, bytes]]:
        if self._closed:
            raise StoreClosedError("the MemoryStore is closed")
        return self._spaces

    def get(self, space: StateSpace, key: bytes) -> bytes | None:
        if type(space) is not StateSpace:
            space = check_space(space)
        if type(key) is not bytes:
            key = check_bytes("key", key)
        with self._lock:
            return self._open_spaces()[space].get(key)

    def get_many(self, space: StateSpace, keys: list[bytes]) -> list[bytes | None]:
        """The committed values of ``keys`` (None where absent), read under one lock."""
        space = check_space(space)
        keys = [k if type(k) is bytes else check_bytes("key", k) for k in keys]
        with self._lock:
            get = self._open_spaces()[space].get
            return [get(k) for k in keys]

    def prefix_iter(self, space: StateSpace, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        space = check_space(space)
        prefix = check_bytes("prefix", prefix)
        with self._lock:
            d = self._open_spaces()[space]
            keys = self._sorted[space]
            if keys is None:
                keys = self._sorted[space] = sorted(d)
            i = bisect.bisect_left(keys, prefix)
            out = []
            for k in keys[i:]:
                if not k.startswith(prefix):
                    break
                out.append((k, d[k]))
        return iter(out)

    def write_batch(self) -> MemoryWriteBatch:
        self._open_spaces()
        return MemoryWriteBatch(self)

    def commit(self, batch: WriteBatch) -> None:
        if not isinstance(batch, MemoryWriteBatch) or batch.store is not self:
            raise StoreArgumentError(f"{batch!r} was not created by this store's write_batch()")
        with self._lock:
            spaces = self._open_spaces()
            for space in StateSpace:
                keys = batch.keys[space]
                if not keys:
                    continue
                d = spaces[space]
                self._sorted[space] = None
                if batch.deletes[space]:
                    for key, value in zip(keys, batch.values[space]):
                        if value is None:
                            d.pop(key, None)
                        else:
                            d[key] = value
                else:
                    d.update(zip(keys, batch.values[space]))

    def close(self) -> None:
        with self._lock:
            self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def count(self, space: StateSpace) -> int:
        """How many keys ``space`` holds (for tests and diagnostics)."""
        with self._lock:
            return len(self._open_spaces()[check_space(space)])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s.label}={len(self._spaces[s])}" for s in StateSpace)
        return f"<MemoryStore {sizes}{' closed' if self._closed else ''}>"
