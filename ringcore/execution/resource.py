"""Resources, accesses and transactions: what a transaction declares before it runs.

A **resource id** is an ``int`` (0 <= id < 2**64), ``bytes`` or ``str``. Every id
has one canonical byte encoding, used in store keys and to decide that two ids
name the same resource: a type tag followed by the payload.

======  ===========  ===========================================
type    tag          payload
======  ===========  ===========================================
int     ``0x01``     8 bytes, big-endian unsigned
bytes   ``0x02``     the bytes themselves
str     ``0x03``     UTF-8
======  ===========  ===========================================

So ``5``, ``b"\\x05"`` and ``"5"`` are three different resources. Integer-like
objects (``numpy.int64``) count as ints; ``bool`` is refused, to catch
``True`` passed by mistake.

A **transaction** is any object with an ``accesses`` attribute: an iterable of
:class:`Access` (or plain ``(resource_id, AccessType)`` pairs). A transaction
that lists one resource more than once gets one access to it, a WRITE if any
listed access is a WRITE; its handles follow the order of first mention.
"""

from __future__ import annotations

import dataclasses
import enum
import operator
from collections.abc import Iterable
from typing import Any, NamedTuple, Protocol, Union, runtime_checkable

from ..errors import InvalidTransactionError

__all__ = [
    "ResourceId",
    "AccessType",
    "READ",
    "WRITE",
    "Access",
    "Transaction",
    "SimpleTransaction",
    "encode_resource_id",
    "decode_resource_id",
    "INT_TAG",
    "BYTES_TAG",
    "STR_TAG",
]

ResourceId = Union[int, bytes, str]
"""What names a resource: an int in [0, 2**64), bytes, or a str."""

INT_TAG = b"\x01"
BYTES_TAG = b"\x02"
STR_TAG = b"\x03"
_INT_LIMIT = 1 << 64


class AccessType(enum.Enum):
    """How a transaction uses a resource."""

    READ = "read"
    """The transaction only reads the resource; it never waits for later readers, and later
    writers never wait for it."""
    WRITE = "write"
    """The transaction may change the resource; later accesses wait until it has run."""

    def __repr__(self) -> str:
        return f"AccessType.{self.name}"


READ = AccessType.READ
WRITE = AccessType.WRITE


class Access(NamedTuple):
    """One declared access: a resource and whether the transaction reads or writes it."""

    resource_id: ResourceId
    access_type: AccessType

    @classmethod
    def read(cls, resource_id: ResourceId) -> Access:
        """A READ access to ``resource_id``."""
        return cls(resource_id, AccessType.READ)

    @classmethod
    def write(cls, resource_id: ResourceId) -> Access:
        """A WRITE access to ``resource_id``."""
        return cls(resource_id, AccessType.WRITE)


@runtime_checkable
class Transaction(Protocol):
    """Anything with ``accesses``: the resources it reads and writes, declared up front.

    The runtime reads ``accesses`` once, when the transaction is scheduled; the
    VM receives the transaction object itself, so it may carry any payload.
    """

    @property
    def accesses(self) -> Iterable[Access | tuple[ResourceId, AccessType]]:
        """The resources the transaction reads and writes."""


@dataclasses.dataclass(frozen=True, slots=True)
class SimpleTransaction:
    """A ready-made :class:`Transaction`: declared accesses plus an arbitrary payload for the VM."""

    accesses: tuple[Access, ...]
    payload: Any = None

    def __init__(self, accesses: Iterable[Access | tuple[ResourceId, AccessType]], payload: Any = None) -> None:
        object.__setattr__(self, "accesses", tuple(Access(*a) for a in accesses))
        object.__setattr__(self, "payload", payload)


def encode_resource_id(resource_id: Any) -> bytes:
    """The canonical byte encoding of a resource id (see the module docstring).

    :raises InvalidTransactionError: the id is not an int in [0, 2**64), bytes or str.
    """
    t = type(resource_id)
    if t is int:
        if 0 <= resource_id < _INT_LIMIT:
            return INT_TAG + resource_id.to_bytes(8, "big")
        raise InvalidTransactionError(
            f"resource id {resource_id} is out of range: integer ids must be in [0, 2**64)")
    if t is bytes:
        return BYTES_TAG + resource_id
    if t is str:
        return STR_TAG + resource_id.encode("utf-8", "surrogatepass")
    return _encode_slow(resource_id)


def _encode_slow(resource_id: Any) -> bytes:
    if isinstance(resource_id, bool):
        raise InvalidTransactionError(
            f"resource id {resource_id!r} is a bool; use an int, bytes or str (a bool is most "
            f"likely a mistake)")
    if isinstance(resource_id, str):
        return STR_TAG + str(resource_id).encode("utf-8", "surrogatepass")
    if isinstance(resource_id, (bytes, bytearray, memoryview)):
        return BYTES_TAG + bytes(resource_id)
    try:
        as_int = operator.index(resource_id)
    except TypeError:
        raise InvalidTransactionError(
            f"resource id {resource_id!r} has unsupported type {type(resource_id).__name__}; "
            f"use an int in [0, 2**64), bytes or str") from None
    return encode_resource_id(as_int)


def normalize_resource_id(resource_id: Any) -> ResourceId:
    """``resource_id`` as the plain int, bytes or str that the runtime reports back."""
    t = type(resource_id)
    if t is int or t is bytes or t is str:
        return resource_id
    return decode_resource_id(encode_resource_id(resource_id))


def decode_resource_id(key: bytes) -> ResourceId:
    """The resource id whose canonical encoding is ``key`` (the inverse of :func:`encode_resource_id`).

    :raises ValueError: ``key`` is not a canonical encoding.
    """
    tag, payload = key[:1], key[1:]
    if tag == INT_TAG and len(payload) == 8:
        return int.from_bytes(payload, "big")
    if tag == BYTES_TAG:
        return bytes(payload)
    if tag == STR_TAG:
        return bytes(payload).decode("utf-8", "surrogatepass")
    raise ValueError(f"{bytes(key)!r} is not a canonical resource id encoding (tag {bytes(tag)!r})")
