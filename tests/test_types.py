"""Scalar types, fixed arrays, annotation resolution and C struct layout."""

from __future__ import annotations

import numpy as np
import pytest

import ringcore
from ringcore.errors import TypeDefinitionError
from ringcore.types import (
    SCALAR_TYPES,
    ArrayType,
    ScalarType,
    resolve_type,
    scalar_type,
    struct_dtype,
)

# name -> (numpy dtype, bytes, C spelling, WGSL spelling or None)
EXPECTED = {
    "u8": ("u1", 1, "uint8_t", "u32"),
    "u16": ("<u2", 2, "uint16_t", "u32"),
    "u32": ("<u4", 4, "uint32_t", "u32"),
    "u64": ("<u8", 8, "uint64_t", None),
    "i8": ("i1", 1, "int8_t", "i32"),
    "i16": ("<i2", 2, "int16_t", "i32"),
    "i32": ("<i4", 4, "int32_t", "i32"),
    "i64": ("<i8", 8, "int64_t", None),
    "f32": ("<f4", 4, "float", "f32"),
    "f64": ("<f8", 8, "double", None),
    "bool": ("?", 1, "bool", "u32"),
}


def test_every_scalar_type_is_exported_and_listed():
    assert set(SCALAR_TYPES) == set(EXPECTED)
    for name, t in SCALAR_TYPES.items():
        assert getattr(ringcore, name) is t
    assert ringcore.bool is SCALAR_TYPES["bool"]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_scalar_dtype_size_and_spellings(name):
    dtype, size, c_name, wgsl = EXPECTED[name]
    t = SCALAR_TYPES[name]
    assert t.dtype == np.dtype(dtype)
    assert t.dtype.itemsize == size
    assert t.bits == 8 * size
    assert t.c_name == c_name
    assert t.wgsl_name == wgsl
    assert t.dtype.byteorder in ("<", "|", "=")  # little-endian on the wire


def test_kind_predicates():
    assert ringcore.u16.is_integer and not ringcore.u16.is_signed and not ringcore.u16.is_float
    assert ringcore.i8.is_integer and ringcore.i8.is_signed
    assert ringcore.f64.is_float and ringcore.f64.is_signed and not ringcore.f64.is_integer
    assert not ringcore.bool.is_integer and not ringcore.bool.is_float


@pytest.mark.parametrize(
    "t, value, expected",
    [
        (ringcore.i32, 3.7, 3),
        (ringcore.i32, -3.7, -3),  # toward zero, not floor
        (ringcore.i32, -0.5, 0),
        (ringcore.i64, -2.999, -2),
        (ringcore.u8, 255.9, 255),
        (ringcore.i8, 127.9, 127),
        (ringcore.i8, -128.9, -128),
    ],
)
def test_float_to_int_casts_truncate_toward_zero(t, value, expected):
    got = t(value)
    assert type(got) is t.dtype.type
    assert int(got) == expected


@pytest.mark.parametrize(
    "t, value, expected",
    [
        (ringcore.u8, 256, 0),
        (ringcore.u8, 257, 1),
        (ringcore.u8, -1, 255),
        (ringcore.i8, 128, -128),
        (ringcore.i8, 255, -1),
        (ringcore.i8, -129, 127),
        (ringcore.u16, 70000, 70000 - 65536),
        (ringcore.i16, 32768, -32768),
        (ringcore.u32, -1, 2**32 - 1),
        (ringcore.i32, 2**31, -(2**31)),
        (ringcore.i32, 2**32 + 5, 5),
        (ringcore.u64, -1, 2**64 - 1),
        (ringcore.u64, 2**64 + 3, 3),
        (ringcore.i64, 2**63, -(2**63)),
        (ringcore.i32, 300.9, 300),
        (ringcore.u8, 300.9, 44),  # truncate, then wrap
        (ringcore.u8, -1.5, 255),
    ],
)
def test_integer_casts_wrap_to_the_width(t, value, expected):
    got = t(value)
    assert type(got) is t.dtype.type
    assert int(got) == expected


def test_integer_cast_of_numpy_scalars_and_bools():
    assert int(ringcore.u8(np.int64(511))) == 255
    assert int(ringcore.i32(np.float32(-7.9))) == -7
    assert int(ringcore.i32(True)) == 1


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_integer_cast_of_non_finite_float_is_an_error(bad):
    with pytest.raises(ValueError, match="not finite"):
        ringcore.i32(bad)


def test_bool_cast_is_truthiness():
    assert ringcore.bool(2) is np.True_
    assert ringcore.bool(0) is np.False_
    assert ringcore.bool(-0.5) is np.True_
    assert ringcore.bool("") is np.False_


def test_float_casts():
    assert type(ringcore.f32(1)) is np.float32
    assert ringcore.f32(0.1) == np.float32(0.1)
    assert float(ringcore.f32(0.1)) != 0.1  # really rounded to single precision
    assert type(ringcore.f64(3)) is np.float64
    assert np.isinf(ringcore.f32(1e40))  # out of range becomes inf, as a C cast does


def test_array_casts_match_scalar_casts():
    values = np.array([3.7, -3.7, 300.5, -1.5, 2.0**31, -129.0])
    for name in ("i8", "u8", "i16", "u16", "i32", "u32", "i64"):
        t = SCALAR_TYPES[name]
        got = t(values)
        assert got.dtype == t.dtype
        assert [int(x) for x in got] == [int(t(float(v))) for v in values], t
    ints = np.array([-1, 256, 2**40], dtype=np.int64)
    assert ringcore.u8(ints).tolist() == [255, 0, 0]
    assert ringcore.i32(ints).tolist() == [-1, 256, 0]
    assert ringcore.bool(np.array([0, 3])).tolist() == [False, True]


def test_u64_array_cast_of_negative_and_large_floats():
    got = ringcore.u64(np.array([-1.0, -2.5, 2.0**63, 1.5e19]))
    assert got.dtype == np.uint64
    assert got.tolist() == [2**64 - 1, 2**64 - 2, 2**63, 15_000_000_000_000_000_000]


def test_fixed_array_type():
    t = ringcore.f32[16]
    assert isinstance(t, ArrayType)
    assert t.elem is ringcore.f32
    assert t.shape == (16,)
    assert t.size == 16
    assert t.dtype == np.dtype(("<f4", (16,)))
    assert t.dtype.itemsize == 64
    assert repr(t) == "ringcore.f32[16]"
    assert t == ringcore.f32[16] and hash(t) == hash(ringcore.f32[16])
    assert t != ringcore.f32[15] and t != ringcore.f64[16]


def test_multi_dimensional_array_type():
    t = ringcore.u8[4, 3]
    assert t.shape == (4, 3)
    assert t.size == 12
    assert t.dtype.itemsize == 12
    assert t.dtype.subdtype == (np.dtype("u1"), (4, 3))
    assert repr(t) == "ringcore.u8[4, 3]"
    assert ringcore.f64[2, 2, 2].dtype.itemsize == 64


@pytest.mark.parametrize("bad", [0, -1, 2.0, True, "4", None])
def test_array_dimension_must_be_a_positive_int(bad):
    with pytest.raises(TypeDefinitionError, match="positive int"):
        ringcore.f32[bad]


def test_array_dimension_error_in_second_dimension():
    with pytest.raises(TypeDefinitionError, match=r"u8\[16\]"):
        ringcore.u8[4, 0]


def test_scalar_types_pickle_to_the_same_object():
    import pickle

    for t in SCALAR_TYPES.values():
        assert pickle.loads(pickle.dumps(t)) is t


# -- resolve_type ------------------------------------------------------------------


def test_resolve_type_accepts_ringcore_types_and_arrays():
    assert resolve_type(ringcore.u16, where="x") is ringcore.u16
    arr = ringcore.i32[3]
    assert resolve_type(arr, where="x") is arr


@pytest.mark.parametrize(
    "annotation, expected",
    [
        (np.float32, ringcore.f32),
        (np.uint64, ringcore.u64),
        (np.int8, ringcore.i8),
        (np.bool_, ringcore.bool),
        (np.dtype("<i4"), ringcore.i32),
        (np.dtype("f8"), ringcore.f64),  # np.dtype("f8") == float, yet it is not the builtin
        (np.dtype("i8"), ringcore.i64),
        (np.dtype("?"), ringcore.bool),
        (np.dtype(">u2"), ringcore.u16),
    ],
)
def test_resolve_type_accepts_numpy_scalar_types(annotation, expected):
    assert resolve_type(annotation, where="x") is expected


@pytest.mark.parametrize(
    "annotation, expected",
    [
        ("u32", ringcore.u32),
        ("ringcore.f64", ringcore.f64),
        ("rc.i16", ringcore.i16),
        ("bool", ringcore.bool),
        ("ringcore.bool_", ringcore.bool),
        ("ringcore.f32[16]", ringcore.f32[16]),
        ("rc.u8[4, 4]", ringcore.u8[4, 4]),
        ("i64[2,3]", ringcore.i64[2, 3]),
    ],
)
def test_resolve_type_reads_string_annotations(annotation, expected):
    assert resolve_type(annotation, where="x") == expected


@pytest.mark.parametrize(
    "annotation, hint",
    [
        (int, "ringcore.i32 or ringcore.i64"),
        (float, "ringcore.f32 or ringcore.f64"),
        (bool, "ringcore.bool"),
        ("int", "ringcore.i32 or ringcore.i64"),
        ("float", "ringcore.f32 or ringcore.f64"),
    ],
)
def test_resolve_type_suggests_the_right_type_for_python_builtins(annotation, hint):
    with pytest.raises(TypeDefinitionError) as info:
        resolve_type(annotation, where="field 'count' of message Ping")
    msg = str(info.value)
    assert "field 'count' of message Ping" in msg
    assert hint in msg


@pytest.mark.parametrize(
    "annotation", [str, object, np.float16, np.complex64, list[int], "nonsense", "f32[x]", [1]]
)
def test_resolve_type_refuses_other_annotations(annotation):
    with pytest.raises(TypeDefinitionError) as info:
        resolve_type(annotation, where="field 'v' of state S")
    msg = str(info.value)
    assert "field 'v' of state S" in msg
    assert "f32[16]" in msg  # says what to write instead
    assert isinstance(info.value, TypeError)


def test_scalar_type_of_dtype():
    assert scalar_type(np.dtype("<u4")) is ringcore.u32
    assert scalar_type(np.float64) is ringcore.f64
    with pytest.raises(TypeDefinitionError, match="float16"):
        scalar_type(np.float16)


# -- struct_dtype --------------------------------------------------------------------


def offsets(dt: np.dtype) -> dict[str, int]:
    return {name: dt.fields[name][1] for name in dt.names}


def test_struct_layout_natural_alignment():
    dt = struct_dtype({"a": ringcore.u8, "b": ringcore.f64, "c": ringcore.u16, "d": ringcore.u32})
    # C: a@0, pad to 8, b@8, c@16, pad to 20, d@20; 24 bytes
    assert offsets(dt) == {"a": 0, "b": 8, "c": 16, "d": 20}
    assert dt.itemsize == 24
    assert dt.names == ("a", "b", "c", "d")


def test_struct_layout_rounds_to_eight_bytes():
    dt = struct_dtype({"a": ringcore.u8})
    assert dt.itemsize == 8
    dt = struct_dtype({"a": ringcore.u32, "b": ringcore.u8})
    assert offsets(dt) == {"a": 0, "b": 4}
    assert dt.itemsize == 8
    dt = struct_dtype({"a": ringcore.u32, "b": ringcore.u32, "c": ringcore.u32})
    assert dt.itemsize == 16
    dt = struct_dtype({"a": ringcore.u16, "b": ringcore.u16, "c": ringcore.u16, "d": ringcore.u16})
    assert dt.itemsize == 8


def test_struct_layout_aligns_arrays_by_their_element():
    dt = struct_dtype(
        {"flag": ringcore.bool, "v": ringcore.f32[3], "w": ringcore.u8[2, 3], "x": ringcore.i64}
    )
    # flag@0, v (align 4)@4..16, w (align 1)@16..22, x (align 8)@24; 32 bytes
    assert offsets(dt) == {"flag": 0, "v": 4, "w": 16, "x": 24}
    assert dt.itemsize == 32


def test_struct_bytes_are_little_endian_at_their_offsets():
    dt = struct_dtype({"a": ringcore.u8, "b": ringcore.u32, "c": ringcore.i16, "d": ringcore.f64})
    rec = np.zeros(1, dtype=dt)
    rec["a"] = 0xAB
    rec["b"] = 0x11223344
    rec["c"] = -2
    rec["d"] = 1.5
    raw = rec.tobytes()
    assert len(raw) == 24
    assert raw[0] == 0xAB
    assert raw[4:8] == bytes([0x44, 0x33, 0x22, 0x11])
    assert raw[8:10] == b"\xfe\xff"
    assert np.frombuffer(raw[16:24], "<f8")[0] == 1.5
    assert raw[1:4] == b"\0\0\0" and raw[10:16] == b"\0" * 6  # padding stays zero


def test_struct_is_aligned_and_empty_struct_has_no_bytes():
    assert struct_dtype({"a": ringcore.u8}).isalignedstruct
    empty = struct_dtype({})
    assert empty.itemsize == 0
    assert empty.names == ()


def test_scalar_type_repr():
    assert repr(ringcore.u8) == "ringcore.u8"
    assert repr(ringcore.bool) == "ringcore.bool"
    assert isinstance(ringcore.f32, ScalarType)
