"""Scalar types and fixed-size arrays for messages, kernel state and kernels.

``ringcore.u8 … u64``, ``i8 … i64``, ``f32``, ``f64`` and ``bool`` name the
fixed-width types every backend agrees on. Each is also a cast:
``ringcore.i32(x)`` truncates floats toward zero and wraps integers to 32 bits,
exactly as the compiled targets do. Indexing a type declares a fixed array:
``f32[16]`` is sixteen float32 values, ``u8[4, 4]`` a 4x4 block.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from .errors import TypeDefinitionError

__all__ = [
    "ScalarType",
    "ArrayType",
    "RingType",
    "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64", "bool_",
    "SCALAR_TYPES",
    "resolve_type",
    "scalar_type",
    "struct_dtype",
]


class ScalarType:
    """A fixed-width scalar type; calling it casts a value to the type."""

    __slots__ = ("name", "dtype", "c_name", "wgsl_name", "kind", "bits")

    def __init__(self, name: str, dtype: str, c_name: str, wgsl_name: str | None) -> None:
        self.name = name
        self.dtype = np.dtype(dtype)
        self.c_name = c_name
        #: The WGSL spelling, or None when WGSL has no such type (64-bit integers, f64).
        self.wgsl_name = wgsl_name
        self.kind = self.dtype.kind  # 'u', 'i', 'f' or 'b'
        self.bits = self.dtype.itemsize * 8

    @property
    def is_integer(self) -> bool:
        return self.kind in "ui"

    @property
    def is_float(self) -> bool:
        return self.kind == "f"

    @property
    def is_signed(self) -> bool:
        return self.kind in "if"

    def __call__(self, value: Any) -> Any:
        """Cast ``value`` to this type: floats truncate toward zero, integers wrap."""
        if isinstance(value, np.ndarray):
            with np.errstate(all="ignore"):
                if self.is_integer and value.dtype.kind == "f":
                    value = np.trunc(value)
                    # Wrap through a 64-bit integer, like a C cast of an in-range value.
                    # Negative floats go through int64 and large ones through uint64:
                    # numpy's direct float -> unsigned cast of a negative value is
                    # platform-dependent (it saturates to 0 on ARM).
                    if self.kind == "u" and self.bits == 64:
                        value = np.where(value < 0, value.astype(np.int64).view(np.uint64),
                                         value.astype(np.uint64))
                    else:
                        value = value.astype(np.int64)
                return value.astype(self.dtype)
        if self.kind == "b":
            return np.bool_(bool(value))
        if self.is_float:
            with np.errstate(over="ignore"):  # out of range becomes inf, as in C
                return self.dtype.type(value)
        if isinstance(value, (float, np.floating)):
            if not math.isfinite(value):
                raise ValueError(f"cannot cast {value!r} to {self.name}: it is not finite")
            if abs(float(value)) >= 2.0 ** 63:
                # Beyond what every target converts exactly (through a 64-bit integer).
                raise ValueError(f"cannot cast {value!r} to {self.name}: it is beyond +-2**63")
            value = math.trunc(float(value))  # numpy float32 has no __trunc__
        value = int(value) & ((1 << self.bits) - 1)
        if self.kind == "i" and value >= 1 << (self.bits - 1):
            value -= 1 << self.bits
        return self.dtype.type(value)

    def __getitem__(self, shape: int | tuple[int, ...]) -> ArrayType:
        return ArrayType(self, shape)

    def __repr__(self) -> str:
        return f"ringcore.{self.name}"

    def __reduce__(self) -> str:
        return self.name if self.name != "bool" else "bool_"


class ArrayType:
    """A fixed-size array of a scalar type, laid out row-major (C order)."""

    __slots__ = ("elem", "shape", "dtype")

    def __init__(self, elem: ScalarType, shape: int | tuple[int, ...]) -> None:
        if not isinstance(shape, tuple):
            shape = (shape,)
        for n in shape:
            if not isinstance(n, int) or isinstance(n, bool) or n <= 0:
                raise TypeDefinitionError(
                    f"array dimension {n!r} of {elem.name}[...] must be a positive int literal, "
                    f"e.g. {elem.name}[16]"
                )
        self.elem = elem
        self.shape: tuple[int, ...] = shape
        self.dtype = np.dtype((elem.dtype, shape))

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __call__(self) -> np.ndarray:
        """A zero-filled array of this type: ``buf = ringcore.f32[8]()`` (a local array in a kernel)."""
        return np.zeros(self.shape, self.elem.dtype)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArrayType) and (self.elem, self.shape) == (other.elem, other.shape)

    def __hash__(self) -> int:
        return hash((self.elem.name, self.shape))

    def __repr__(self) -> str:
        dims = ", ".join(str(n) for n in self.shape)
        return f"ringcore.{self.elem.name}[{dims}]"


RingType = ScalarType | ArrayType

u8 = ScalarType("u8", "u1", "uint8_t", "u32")
u16 = ScalarType("u16", "<u2", "uint16_t", "u32")
u32 = ScalarType("u32", "<u4", "uint32_t", "u32")
u64 = ScalarType("u64", "<u8", "uint64_t", None)
i8 = ScalarType("i8", "i1", "int8_t", "i32")
i16 = ScalarType("i16", "<i2", "int16_t", "i32")
i32 = ScalarType("i32", "<i4", "int32_t", "i32")
i64 = ScalarType("i64", "<i8", "int64_t", None)
f32 = ScalarType("f32", "<f4", "float", "f32")
f64 = ScalarType("f64", "<f8", "double", None)
bool_ = ScalarType("bool", "?", "bool", "u32")

#: Every scalar type by name.
SCALAR_TYPES: Mapping[str, ScalarType] = {
    t.name: t for t in (u8, u16, u32, u64, i8, i16, i32, i64, f32, f64, bool_)
}

_BY_DTYPE = {t.dtype: t for t in SCALAR_TYPES.values()}


def scalar_type(dtype: np.dtype) -> ScalarType:
    """The ringcore scalar type of a numpy scalar dtype."""
    dt = np.dtype(dtype).newbyteorder("<")
    try:
        return _BY_DTYPE[dt]
    except KeyError:
        raise TypeDefinitionError(f"numpy dtype {dtype} has no ringcore scalar type") from None


_PY_HINTS = {
    "int": "ringcore.i32 or ringcore.i64",
    "float": "ringcore.f32 or ringcore.f64",
    "bool": "ringcore.bool",
}
_ANY_HINT = "one of ringcore.u8 … u64, i8 … i64, f32, f64, bool, or an array like f32[16]"
# A string annotation (``from __future__ import annotations``) that get_type_hints
# could not evaluate: an optionally qualified scalar name and optional dimensions,
# e.g. "ringcore.f32[16]", "rc.u8[4, 4]", "i64".
_STRING_TYPE = re.compile(
    r"^\s*(?:[A-Za-z_]\w*\.)*(?P<name>[A-Za-z_]\w*)\s*(?:\[(?P<dims>[\d\s,]+)\])?\s*$"
)


def _resolve_string(annotation: str) -> RingType | None:
    m = _STRING_TYPE.match(annotation)
    if m is None:
        return None
    name = "bool" if m["name"] == "bool_" else m["name"]
    if name not in SCALAR_TYPES:
        return None
    t = SCALAR_TYPES[name]
    if m["dims"] is None:
        return t
    try:
        dims = tuple(int(d) for d in m["dims"].split(","))
    except ValueError:
        return None
    return t[dims if len(dims) > 1 else dims[0]]


def resolve_type(annotation: Any, *, where: str) -> RingType:
    """Return the ringcore type an annotation names, or raise a TypeDefinitionError.

    :param annotation: a ringcore type, a fixed array of one, a numpy scalar dtype,
        or the string form of one of those (``"ringcore.f32[16]"``).
    :param where: what is being declared (``"field 'x' of message Ping"``), for the error.
    """
    if isinstance(annotation, (ScalarType, ArrayType)):
        return annotation
    hint = _ANY_HINT
    if isinstance(annotation, str):
        resolved = _resolve_string(annotation)
        if resolved is not None:
            return resolved
        hint = _PY_HINTS.get(annotation.strip(), _ANY_HINT)
    elif any(annotation is t for t in (int, float, bool)):
        # Checked by identity: np.dtype("f8") == float is True, and a dtype is fine.
        hint = _PY_HINTS[annotation.__name__]
    else:
        try:
            dt = np.dtype(annotation)
        except (TypeError, ValueError):
            dt = None
        if dt is not None and dt.kind in "uifb" and dt.newbyteorder("<") in _BY_DTYPE:
            return _BY_DTYPE[dt.newbyteorder("<")]
    raise TypeDefinitionError(f"{where} is annotated {annotation!r}; use {hint}")


def struct_dtype(fields: Mapping[str, RingType]) -> np.dtype:
    """The C-layout (naturally aligned, padded) numpy structured dtype of ``fields``."""
    spec = [(name, t.dtype) for name, t in fields.items()]
    if not spec:
        return np.dtype({"names": [], "formats": [], "itemsize": 0})
    dt = np.dtype(spec, align=True)
    # Round the record up to 8 bytes so that records packed after a 64-byte
    # header keep every 64-bit field aligned on every backend.
    size = -(-dt.itemsize // 8) * 8
    if size != dt.itemsize:
        dt = np.dtype({"names": dt.names, "formats": [dt.fields[n][0] for n in dt.names],
                       "offsets": [dt.fields[n][1] for n in dt.names], "itemsize": size,
                       "aligned": True})
    return dt
