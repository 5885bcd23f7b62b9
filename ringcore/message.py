"""Typed, fixed-size messages.

``@ringcore.message(type_id=...)`` turns a class with annotated fields of
ringcore types into a message type with a fixed C layout. In a queue slot a
message is the 64-byte :data:`HEADER_DTYPE` followed by the payload record::

    offset  size  field            meaning
    0       8     message_id       unique per runtime, assigned at send (u64)
    8       8     correlation_id   pairs a reply with its request; 0 = none (u64)
    16      8     hlc_physical     HLC timestamp: µs since the Unix epoch (u64)
    24      4     hlc_logical      HLC timestamp: logical counter (u32)
    28      4     hlc_node         HLC timestamp: stamping node (u32)
    32      4     source_kernel    sender's kernel number; 0 = the host (u32)
    36      4     dest_kernel      receiver's kernel number; 0 = the host (u32)
    40      4     type_id          the message type's id (u32)
    44      4     reply_to         kernel number whose output queue gets the reply (u32)
    48      4     status           0, or an error code on error replies (u32)
    52      1     priority         Priority (u8)
    53      1     flags            MessageFlags bits (u8)
    54      1     hops             kernel-to-kernel forwards so far (u8)
    55      1     reserved         zero (u8)
    56      8     send_ns          host monotonic ns at send, copied into replies (u64)

``reply_to`` is the kernel the host addressed: a message forwarded between
kernels keeps its correlation id, its EXPECTS_REPLY flag and its ``reply_to``,
so whichever kernel finally returns a reply answers the host's ``call``.

Integers are little-endian. WGSL has no 64-bit integers, so there each u64
header field is two u32 words, low word first. Payload fields follow C layout
rules (natural alignment, record size rounded up to 8 bytes).
"""

from __future__ import annotations

import enum
import math
import operator
import reprlib
import sys
import typing
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NamedTuple, NewType

import numpy as np

from .errors import MessageTypeError, TypeDefinitionError
from .types import ArrayType, RingType, ScalarType, resolve_type, struct_dtype

__all__ = [
    "message",
    "MessageSpec",
    "MessageHeader",
    "MessageFlags",
    "Priority",
    "MessageId",
    "CorrelationId",
    "HEADER_DTYPE",
    "HEADER_SIZE",
    "is_message_type",
    "message_spec",
]

MessageId = NewType("MessageId", int)
CorrelationId = NewType("CorrelationId", int)


class Priority(enum.IntEnum):
    """Priority carried in every header. Queues stay FIFO; consumers may use it."""

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


class MessageFlags(enum.IntFlag):
    """Bits of the header's ``flags`` byte."""

    NONE = 0
    REPLY = 1
    """The message is a reply; ``correlation_id`` names the request."""
    ERROR = 2
    """The handler failed; ``status`` holds the error code and the payload is empty."""
    EXPECTS_REPLY = 4
    """The sender waits for a reply (``call``)."""
    K2K = 8
    """Sent by another kernel."""
    PUBLISHED = 16
    """Delivered through a pub/sub topic."""


HEADER_DTYPE = np.dtype(
    {
        "names": [
            "message_id", "correlation_id", "hlc_physical", "hlc_logical", "hlc_node",
            "source_kernel", "dest_kernel", "type_id", "reply_to", "status",
            "priority", "flags", "hops", "reserved", "send_ns",
        ],
        "formats": ["<u8", "<u8", "<u8", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4",
                    "u1", "u1", "u1", "u1", "<u8"],
        "offsets": [0, 8, 16, 24, 28, 32, 36, 40, 44, 48, 52, 53, 54, 55, 56],
        "itemsize": 64,
    }
)
HEADER_SIZE = HEADER_DTYPE.itemsize


class MessageHeader(NamedTuple):
    """A decoded message header (see the module documentation for the layout)."""

    message_id: int
    correlation_id: int
    hlc_physical: int
    hlc_logical: int
    hlc_node: int
    source_kernel: int
    dest_kernel: int
    type_id: int
    reply_to: int
    status: int
    priority: int
    flags: int
    hops: int
    reserved: int
    send_ns: int

    @classmethod
    def from_record(cls, header: np.void) -> MessageHeader:
        return cls(*header.item())


class MessageSpec:
    """Everything ringcore knows about one message type."""

    def __init__(self, cls: type, type_id: int, fields: Mapping[str, RingType]) -> None:
        self.cls = cls
        self.name = cls.__qualname__
        self.type_id = type_id
        self.fields: dict[str, RingType] = dict(fields)
        #: The payload's structured dtype (C layout).
        self.dtype = struct_dtype(self.fields)
        #: A queue slot: the 64-byte header then the payload.
        self.slot_dtype = np.dtype([("header", HEADER_DTYPE), ("payload", self.dtype)])
        self._field_dtypes = [t.dtype for t in self.fields.values()]

    def __repr__(self) -> str:
        return f"<MessageSpec {self.name} type_id={self.type_id} size={self.dtype.itemsize}>"


def is_message_type(obj: Any) -> bool:
    """Whether ``obj`` is a class decorated with ``@ringcore.message``."""
    return isinstance(obj, type) and isinstance(obj.__dict__.get("__ringcore_message__"), MessageSpec)


def message_spec(obj: Any) -> MessageSpec:
    """The MessageSpec of a message class or instance."""
    spec = getattr(obj, "__ringcore_message__", None)
    if not isinstance(spec, MessageSpec):
        raise MessageTypeError(
            f"{obj!r} is not a ringcore message; declare it with @ringcore.message(type_id=...)"
        )
    return spec


def _annotations(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except Exception:
        pass
    # Some string annotation (``from __future__ import annotations``) names
    # something get_type_hints cannot see. Evaluate the others one by one and
    # leave that one as a string: resolve_type still reads "ringcore.f32[16]".
    module = sys.modules.get(cls.__module__)
    globalns = dict(vars(module)) if module is not None else {}
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__[:-1]):
        localns = dict(vars(klass))
        for name, ann in vars(klass).get("__annotations__", {}).items():
            if isinstance(ann, str):
                try:
                    ann = eval(ann, globalns, localns)  # what get_type_hints does, per field
                except Exception:
                    pass
            hints[name] = ann
    return hints


def declared_fields(cls: type, what: str) -> dict[str, RingType]:
    """The ringcore-typed fields of an annotated class, in declaration order."""
    hints = _annotations(cls)
    fields: dict[str, RingType] = {}
    for name, ann in hints.items():
        if typing.get_origin(ann) is ClassVar or ann is ClassVar or name.startswith("_"):
            continue
        fields[name] = resolve_type(ann, where=f"field {name!r} of {what} {cls.__qualname__}")
    return fields


def _int_bounds(t: ScalarType) -> tuple[int, int]:
    if t.kind == "u":
        return 0, (1 << t.bits) - 1
    return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1


_FLOAT_MAX = {32: float(np.finfo(np.float32).max), 64: float(np.finfo(np.float64).max)}


def _coerce_scalar(value: Any, t: ScalarType) -> Any:
    if type(value) is t.dtype.type:
        return value
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    if t.kind == "b":
        if isinstance(value, (bool, np.bool_)) or (
            isinstance(value, (int, np.integer)) and value in (0, 1)
        ):
            return np.bool_(bool(value))
        raise ValueError("expected True, False, 0 or 1")
    if t.is_integer:
        if isinstance(value, (float, np.floating)):
            raise TypeError(
                f"a float was given for an integer field; convert it explicitly "
                f"(ringcore.{t.name}(x) truncates toward zero)"
            )
        try:
            iv = operator.index(value)
        except TypeError:
            raise TypeError(f"expected an integer, got {type(value).__name__}") from None
        lo, hi = _int_bounds(t)
        if not lo <= iv <= hi:
            raise OverflowError(f"{iv} is out of range {lo} .. {hi}")
        return t.dtype.type(iv)
    if isinstance(value, (complex, np.complexfloating)):
        raise TypeError("expected a real number, got a complex one")
    f = float(value)  # OverflowError for an int beyond float64
    if math.isfinite(f) and abs(f) > _FLOAT_MAX[t.bits]:
        with np.errstate(over="ignore"):
            r = t.dtype.type(f)
        if not math.isfinite(r):
            raise OverflowError(f"{value!r} is out of range for {t.name}")
        return r
    return t.dtype.type(f)


def _coerce_array(value: Any, t: ArrayType) -> np.ndarray:
    if isinstance(value, (str, bytes)):
        raise TypeError(f"expected an array of shape {t.shape}, got {type(value).__name__}")
    arr = np.asarray(value)
    if arr.shape != t.shape:
        raise ValueError(f"expected shape {t.shape}, got {arr.shape}")
    elem, kind = t.elem, arr.dtype.kind
    if kind == "O":  # e.g. Python ints beyond int64: check element by element
        out = np.empty(t.shape, elem.dtype)
        for idx, v in np.ndenumerate(arr):
            out[idx] = _coerce_scalar(v, elem)
        return out
    if kind not in "biuf":
        raise TypeError(f"expected numbers, got an array of {arr.dtype}")
    if elem.is_integer:
        if kind == "f":
            raise TypeError(
                f"floats were given for an integer array; convert them explicitly "
                f"(ringcore.{elem.name}(a) truncates toward zero)"
            )
        if kind in "iu" and arr.size:
            lo, hi = _int_bounds(elem)
            amin, amax = int(arr.min()), int(arr.max())
            if amin < lo or amax > hi:
                bad = amin if amin < lo else amax
                raise OverflowError(f"element {bad} is out of range {lo} .. {hi}")
    elif elem.kind == "b":
        if kind != "b" and arr.size and bool(((arr != 0) & (arr != 1)).any()):
            raise ValueError("expected booleans, 0 or 1")
    elif kind == "f" and arr.dtype.itemsize > elem.dtype.itemsize:
        with np.errstate(over="ignore"):
            out = arr.astype(elem.dtype)
        if bool((np.isinf(out) & np.isfinite(arr)).any()):
            raise OverflowError(f"a value is out of range for {elem.name}")
        return out
    return np.array(arr, dtype=elem.dtype)  # always a copy: the caller's array stays theirs


def coerce_field(value: Any, t: RingType, field: str, owner: str) -> Any:
    """Convert ``value`` to field type ``t``, or raise a MessageTypeError naming the field.

    Integers must be in range, floats are refused for integer fields, arrays must
    have exactly the declared shape; nothing is silently wrapped or truncated.
    """
    try:
        if isinstance(t, ScalarType):
            return _coerce_scalar(value, t)
        return _coerce_array(value, t)
    except (TypeError, ValueError, OverflowError) as exc:
        numpy_value = isinstance(value, (np.ndarray, np.generic))
        shown = _short(value) if numpy_value else reprlib.repr(value)
        raise MessageTypeError(f"{owner}.{field} = {shown} does not fit {t!r}: {exc}") from None


def _install(cls: type, spec: MessageSpec) -> None:
    names = list(spec.fields)
    types = list(spec.fields.values())
    owner = spec.name
    # Defaults are checked once, here, so a bad one fails at the declaration.
    defaults: dict[str, Any] = {}
    for n, t in zip(names, types):
        given = cls.__dict__.get(n, None)
        if given is None:
            if isinstance(t, ScalarType):
                defaults[n] = np.zeros((), t.dtype)[()]
            else:
                defaults[n] = np.zeros(t.shape, t.elem.dtype)
            continue
        try:
            defaults[n] = coerce_field(given, t, n, owner)
        except MessageTypeError as exc:
            raise TypeDefinitionError(f"default of field {n!r} of message {owner}: {exc}") from None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if len(args) > len(names):
            raise MessageTypeError(f"{owner} takes {len(names)} fields, got {len(args)} positional")
        values = dict(zip(names, args))
        for k, v in kwargs.items():
            if k not in spec.fields:
                raise MessageTypeError(f"{owner} has no field {k!r}; its fields are {names}")
            if k in values:
                raise MessageTypeError(f"{owner} got field {k!r} twice")
            values[k] = v
        for n, t in zip(names, types):
            v = values.get(n)
            if v is None:  # not given (or None): the declared default, else zero
                v = defaults[n]
                if isinstance(v, np.ndarray):
                    v = v.copy()  # each message owns its arrays
            else:
                v = coerce_field(v, t, n, owner)
            object.__setattr__(self, n, v)
        object.__setattr__(self, "header", None)

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={_short(getattr(self, n))}" for n in names)
        return f"{owner}({inner})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(np.array_equal(getattr(self, n), getattr(other, n)) for n in names)

    def payload(self) -> tuple:
        """The payload as a tuple in field order (what a structured record takes)."""
        return tuple(getattr(self, n) for n in names)

    @classmethod
    def from_record(klass, record: np.void, header: np.void | None = None):
        """Build a message from a payload record (and optionally its header)."""
        obj = klass.__new__(klass)
        for n in names:
            v = record[n]
            object.__setattr__(obj, n, v.copy() if isinstance(v, np.ndarray) else v)
        object.__setattr__(obj, "header", None if header is None else MessageHeader.from_record(header))
        return obj

    @classmethod
    def array(klass, n: int = 0) -> np.ndarray:
        """A zeroed numpy array of ``n`` payload records, for the bulk APIs."""
        return np.zeros(n, dtype=spec.dtype)

    @classmethod
    def pack(klass, messages: Iterable[Any]) -> np.ndarray:
        """Pack message instances into one payload array."""
        items = list(messages)
        for m in items:
            if type(m) is not klass:
                raise MessageTypeError(f"pack() of {owner} got a {type(m).__qualname__}")
        out = np.empty(len(items), dtype=spec.dtype)
        for i, m in enumerate(items):
            out[i] = m.payload()
        return out

    @classmethod
    def unpack(klass, records: np.ndarray) -> list:
        """The message instances of a payload (or whole-slot) array."""
        if records.dtype == spec.slot_dtype:
            return [klass.from_record(r["payload"], r["header"]) for r in records]
        return [klass.from_record(r) for r in records]

    cls.__init__ = __init__
    cls.__repr__ = __repr__
    cls.__eq__ = __eq__
    cls.__hash__ = None  # mutable value objects
    cls.payload = payload
    cls.from_record = from_record
    cls.array = array
    cls.pack = pack
    cls.unpack = unpack
    cls.__ringcore_message__ = spec
    cls.dtype = spec.dtype
    cls.slot_dtype = spec.slot_dtype
    cls.type_id = spec.type_id
    cls.fields = dict(spec.fields)
    cls.__match_args__ = tuple(names)


def _short(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return np.array2string(v, threshold=8, separator=",")
    return repr(v.item() if isinstance(v, np.generic) else v)


_TYPE_IDS: dict[int, str] = {}
# Names the message class gains (see _install); a field cannot use them.
_RESERVED = frozenset(
    {"header", "payload", "from_record", "array", "pack", "unpack",
     "dtype", "slot_dtype", "type_id", "fields"}
)


def message(cls: type | None = None, *, type_id: int):
    """Declare a message type: ``@ringcore.message(type_id=1)`` on an annotated class.

    Fields are annotated with ringcore types (``x: ringcore.f32``,
    ``v: ringcore.f32[16]``); a class attribute gives a field's default
    (otherwise zero). The class gains ``dtype`` (the payload's numpy structured
    dtype), ``slot_dtype`` (header + payload), ``type_id``, ``fields``, and
    ``array(n)`` / ``pack`` / ``unpack`` for the bulk APIs.

    :param type_id: a u32 identifying the type on the wire; unique per process.
    """
    if not isinstance(type_id, int) or isinstance(type_id, bool) or not 0 < type_id < 2**32:
        raise TypeDefinitionError(f"type_id={type_id!r} must be an int in 1 .. 2**32-1")

    def wrap(klass: type) -> type:
        if not isinstance(klass, type):
            raise TypeDefinitionError(f"@ringcore.message decorates a class, not {klass!r}")
        fields = declared_fields(klass, "message")
        for name, t in fields.items():
            if name in _RESERVED:
                raise TypeDefinitionError(
                    f"field {name!r} of message {klass.__qualname__} clashes with the message API "
                    f"({', '.join(sorted(_RESERVED))}); rename the field"
                )
            if isinstance(t, ArrayType) and t.size > 65536:
                raise TypeDefinitionError(f"field {name!r} of {klass.__qualname__} is too large ({t!r})")
        qual = f"{klass.__module__}.{klass.__qualname__}"
        prior = _TYPE_IDS.get(type_id)
        if prior is not None and prior != qual:
            raise TypeDefinitionError(
                f"type_id={type_id} of message {qual} is already used by {prior}; pick another type_id"
            )
        _TYPE_IDS[type_id] = qual
        _install(klass, MessageSpec(klass, type_id, fields))
        return klass

    return wrap if cls is None else wrap(cls)
