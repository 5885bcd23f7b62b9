"""Versioned state, per-batch state diffs, the store's state spaces and their key encodings.

Every integer in a key or pointer value is 8 bytes, big-endian, so keys sort
by version or batch index. ``rid`` is a resource id's canonical encoding
(:func:`ringcore.execution.resource.encode_resource_id`).

============  ==================================  ==================================================
space         key                                 value
============  ==================================  ==================================================
DATA          version + rid                       the resource's data at that version
LATEST_PTR    rid                                 the latest committed version
ROLLBACK_PTR  batch index + rid                   the version before the batch, then the version the
                                                  batch wrote (16 bytes)
META          ``last_committed``                  the last committed batch index
META          ``last_persisted``                  the highest batch index whose data was written
META          ``schema_version``                  :data:`SCHEMA_VERSION`
============  ==================================  ==================================================

Version 0 means "does not exist": a resource never written reads as version 0
with empty data, and no DATA key has version 0. Only the last version a batch
writes to a resource is stored; the versions in between live in memory while
the batch runs. The rollback pointer carries the written version as well as the
previous one so that rolling back a batch that was persisted but never
committed deletes exactly its own data, never the live version.
"""

from __future__ import annotations

import dataclasses
import enum
import struct
from typing import NamedTuple

from .resource import ResourceId, decode_resource_id

__all__ = [
    "VersionedState",
    "StateDiff",
    "StateSpace",
    "SCHEMA_VERSION",
    "META_LAST_COMMITTED",
    "META_LAST_PERSISTED",
    "META_SCHEMA_VERSION",
    "encode_u64",
    "decode_u64",
    "data_key",
    "latest_key",
    "rollback_key",
    "rollback_value",
    "decode_rollback_value",
    "split_versioned_key",
]

SCHEMA_VERSION = 1
"""The layout of keys and values described above."""

META_LAST_COMMITTED = b"last_committed"
META_LAST_PERSISTED = b"last_persisted"
META_SCHEMA_VERSION = b"schema_version"

_U64 = struct.Struct(">Q")
_U64x2 = struct.Struct(">QQ")
encode_u64 = _U64.pack


def decode_u64(value: bytes) -> int:
    """The unsigned integer in an 8-byte big-endian value."""
    return _U64.unpack(value)[0]


class StateSpace(enum.IntEnum):
    """The four key spaces of a store (column families in RocksDB)."""

    DATA = 0
    LATEST_PTR = 1
    ROLLBACK_PTR = 2
    META = 3

    @property
    def label(self) -> str:
        """A lower-case name usable as a column-family or table name: ``data``, ``latest_ptr``..."""
        return self.name.lower()


class VersionedState(NamedTuple):
    """An immutable snapshot of one resource: its id, version and data.

    ``version`` 0 with empty ``data`` means the resource does not exist (yet).
    """

    resource_id: ResourceId
    version: int
    data: bytes

    @property
    def exists(self) -> bool:
        """Whether the resource has been written (version > 0)."""
        return self.version > 0


@dataclasses.dataclass(frozen=True)
class StateDiff:
    """What one batch did to one resource: the version it found at the batch's head and the
    state it left at the batch's tail. ``written`` is False when the batch only read it
    (or every write to it aborted)."""

    batch_index: int
    resource_id: ResourceId
    head_version: int
    tail: VersionedState

    @property
    def tail_version(self) -> int:
        """The version the batch left (``tail.version``)."""
        return self.tail.version

    @property
    def written(self) -> bool:
        """Whether the batch changed the resource."""
        return self.tail.version != self.head_version


def data_key(version: int, rid: bytes) -> bytes:
    """The DATA key of ``rid`` at ``version``."""
    return _U64.pack(version) + rid


def latest_key(rid: bytes) -> bytes:
    """The LATEST_PTR key of ``rid`` (the encoded id itself)."""
    return rid


def rollback_key(batch_index: int, rid: bytes) -> bytes:
    """The ROLLBACK_PTR key of ``rid`` for batch ``batch_index``."""
    return _U64.pack(batch_index) + rid


def rollback_value(before: int, written: int) -> bytes:
    """A ROLLBACK_PTR value: the version before the batch, then the version it wrote."""
    return _U64x2.pack(before, written)


def decode_rollback_value(value: bytes) -> tuple[int, int]:
    """``(before, written)`` from a ROLLBACK_PTR value."""
    if len(value) != 16:
        raise ValueError(f"a rollback pointer value has 16 bytes, this one {len(value)}: {value!r}")
    return _U64x2.unpack(value)


def split_versioned_key(key: bytes) -> tuple[int, ResourceId]:
    """``(version or batch index, resource id)`` from a DATA or ROLLBACK_PTR key."""
    return _U64.unpack(key[:8])[0], decode_resource_id(key[8:])
