"""@ringcore.message: layout, header, construction, bulk packing.

This module deliberately does not use ``from __future__ import annotations``;
string annotations are tested by compiling a module that does.
"""

import struct
import sys
import textwrap
import types

import numpy as np
import pytest

import ringcore
import ringcore as rc
from ringcore.errors import MessageTypeError, TypeDefinitionError
from ringcore.message import (
    HEADER_DTYPE,
    HEADER_SIZE,
    MessageFlags,
    MessageHeader,
    Priority,
    is_message_type,
    message_spec,
)

# type ids private to this module (other test modules declare their own messages)
_BASE = 0x7A10_0000


@ringcore.message(type_id=_BASE + 1)
class Sample:
    flag: ringcore.u8
    value: ringcore.f64
    count: ringcore.u16
    vec: ringcore.f32[4]
    small: ringcore.i8 = -3


@ringcore.message(type_id=_BASE + 2)
class Ping:
    seq: ringcore.u32
    x: ringcore.f32 = 1.5
    ok: ringcore.bool = True


@ringcore.message(type_id=_BASE + 3)
class Grid:
    cells: ringcore.u8[2, 3]
    big: ringcore.u64


@ringcore.message(type_id=_BASE + 4)
class Empty:
    pass


def field_offsets(dt):
    return {n: dt.fields[n][1] for n in dt.names}


# -- layout ----------------------------------------------------------------------------


def test_payload_layout_follows_c_rules():
    # flag@0, value@8, count@16, vec (f32, align 4)@20..36, small@36; 37 -> 40
    assert field_offsets(Sample.dtype) == {
        "flag": 0, "value": 8, "count": 16, "vec": 20, "small": 36
    }
    assert Sample.dtype.itemsize == 40
    assert field_offsets(Ping.dtype) == {"seq": 0, "x": 4, "ok": 8}
    assert Ping.dtype.itemsize == 16
    assert field_offsets(Grid.dtype) == {"cells": 0, "big": 8}
    assert Grid.dtype.itemsize == 16


def test_slot_is_header_then_payload():
    assert HEADER_SIZE == 64
    assert Sample.slot_dtype.itemsize == 64 + 40
    assert field_offsets(Sample.slot_dtype) == {"header": 0, "payload": 64}
    assert Sample.slot_dtype["header"] == HEADER_DTYPE
    assert Sample.slot_dtype["payload"] == Sample.dtype


def test_class_attributes():
    assert Sample.type_id == _BASE + 1
    assert list(Sample.fields) == ["flag", "value", "count", "vec", "small"]
    assert Sample.fields["vec"] == ringcore.f32[4]
    assert is_message_type(Sample)
    assert not is_message_type(Sample(flag=1)) and not is_message_type(int)
    spec = message_spec(Sample)
    assert spec.type_id == Sample.type_id and spec.dtype == Sample.dtype
    assert message_spec(Sample(flag=1)) is spec
    with pytest.raises(MessageTypeError, match="not a ringcore message"):
        message_spec(int)


# (field, offset, struct format, value) -- the module docstring's table
HEADER_TABLE = [
    ("message_id", 0, "<Q", 0x0102030405060708),
    ("correlation_id", 8, "<Q", 0x1112131415161718),
    ("hlc_physical", 16, "<Q", 1_700_000_000_123_456),
    ("hlc_logical", 24, "<I", 0xA1A2A3A4),
    ("hlc_node", 28, "<I", 0xB1B2B3B4),
    ("source_kernel", 32, "<I", 0xC1C2C3C4),
    ("dest_kernel", 36, "<I", 0xD1D2D3D4),
    ("type_id", 40, "<I", 0xE1E2E3E4),
    ("reply_to", 44, "<I", 0xF1F2F3F4),
    ("status", 48, "<I", 0x0A0B0C0D),
    ("priority", 52, "<B", 3),
    ("flags", 53, "<B", 0x15),
    ("hops", 54, "<B", 7),
    ("reserved", 55, "<B", 0),
    ("send_ns", 56, "<Q", 0x2122232425262728),
]


def test_header_table_covers_every_field_and_all_64_bytes():
    assert [f for f, *_ in HEADER_TABLE] == list(HEADER_DTYPE.names)
    assert sum(struct.calcsize(fmt) for _, _, fmt, _ in HEADER_TABLE) == 64
    assert HEADER_DTYPE.itemsize == 64


@pytest.mark.parametrize(
    "field, offset, fmt, value", HEADER_TABLE, ids=[f for f, *_ in HEADER_TABLE]
)
def test_header_field_at_documented_offset(field, offset, fmt, value):
    slots = np.zeros(2, dtype=Sample.slot_dtype)
    slots[1]["header"][field] = value
    raw = slots.tobytes()
    size = Sample.slot_dtype.itemsize
    assert struct.unpack_from(fmt, raw, size + offset)[0] == value
    # no other byte of the slot changed
    nonzero = [i for i, b in enumerate(raw) if b]
    assert all(size + offset <= i < size + offset + struct.calcsize(fmt) for i in nonzero)


def test_whole_header_written_raw_decodes_field_by_field():
    raw = bytearray(64)
    for _, offset, fmt, value in HEADER_TABLE:
        struct.pack_into(fmt, raw, offset, value)
    hdr = np.frombuffer(bytes(raw), dtype=HEADER_DTYPE)[0]
    decoded = MessageHeader.from_record(hdr)
    assert decoded == tuple(v for *_, v in HEADER_TABLE)
    assert decoded.correlation_id == 0x1112131415161718
    assert decoded._fields == HEADER_DTYPE.names


def test_payload_bytes_follow_the_header_in_a_slot():
    slots = np.zeros(1, dtype=Sample.slot_dtype)
    msg = Sample(flag=9, value=2.5, count=0x1234, vec=[1, 2, 3, 4], small=-2)
    slots[0]["payload"] = msg.payload()
    raw = slots.tobytes()
    p = 64
    assert raw[p + 0] == 9
    assert struct.unpack_from("<d", raw, p + 8)[0] == 2.5
    assert struct.unpack_from("<H", raw, p + 16)[0] == 0x1234
    assert struct.unpack_from("<4f", raw, p + 20) == (1.0, 2.0, 3.0, 4.0)
    assert struct.unpack_from("<b", raw, p + 36)[0] == -2


def test_priority_and_flags_values():
    assert [int(p) for p in Priority] == [0, 1, 2, 3]
    assert Priority.NORMAL == 1
    assert MessageFlags.REPLY == 1 and MessageFlags.ERROR == 2 and MessageFlags.EXPECTS_REPLY == 4
    assert MessageFlags.K2K == 8 and MessageFlags.PUBLISHED == 16


# -- construction ------------------------------------------------------------------------


def test_defaults_and_zero_fill():
    s = Sample()
    assert s.flag == 0 and type(s.flag) is np.uint8
    assert s.value == 0.0 and type(s.value) is np.float64
    assert s.small == -3 and type(s.small) is np.int8
    assert s.vec.dtype == np.float32 and s.vec.shape == (4,) and not s.vec.any()
    p = Ping(seq=1)
    assert p.x == np.float32(1.5) and p.ok is np.True_
    assert s.header is None


def test_none_means_the_default():
    assert Sample(small=None).small == -3


def test_positional_and_keyword_construction():
    p = Ping(7, 2.0, False)
    assert (p.seq, p.x, p.ok) == (7, 2.0, False)
    assert Ping(7, ok=False) == Ping(seq=7, x=1.5, ok=False)


def test_array_defaults_are_not_shared():
    a, b = Sample(), Sample()
    a.vec[0] = 5
    assert b.vec[0] == 0
    assert Sample().vec[0] == 0


def test_array_values_are_copied():
    src = np.array([1, 2, 3, 4], dtype=np.float32)
    s = Sample(vec=src)
    src[0] = 99
    assert s.vec[0] == 1


def test_multi_dimensional_array_field():
    g = Grid(cells=[[1, 2, 3], [4, 5, 6]], big=2**64 - 1)
    assert g.cells.shape == (2, 3) and g.cells.dtype == np.uint8
    rec = Grid.pack([g])
    raw = rec.tobytes()
    assert raw[:6] == bytes([1, 2, 3, 4, 5, 6])  # row-major
    assert struct.unpack_from("<Q", raw, 8)[0] == 2**64 - 1


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"bogus": 1}, "bogus"),
        ({"flag": 256}, "flag"),
        ({"flag": -1}, "flag"),
        ({"small": 128}, "small"),
        ({"count": 70000}, "count"),
        ({"flag": np.int64(300)}, "flag"),
        ({"count": np.int32(-1)}, "count"),
        ({"flag": 1.0}, "flag"),
        ({"flag": 2.5}, "flag"),
        ({"flag": np.float32(1.0)}, "flag"),
        ({"flag": "1"}, "flag"),
        ({"value": "1.0"}, "value"),
        ({"value": 1j}, "value"),
        ({"vec": [1, 2, 3]}, "vec"),
        ({"vec": [[1, 2], [3, 4]]}, "vec"),
        ({"vec": 1.0}, "vec"),
        ({"vec": "abcd"}, "vec"),
    ],
)
def test_bad_construction_names_the_field(kwargs, field):
    with pytest.raises(MessageTypeError) as info:
        Sample(**kwargs)
    assert field in str(info.value)
    assert "Sample" in str(info.value)
    assert isinstance(info.value, TypeError)


def test_integer_range_edges_are_accepted():
    s = Sample(flag=255, count=65535, small=-128)
    assert (int(s.flag), int(s.count), int(s.small)) == (255, 65535, -128)
    assert Grid(big=2**64 - 1).big == 2**64 - 1
    with pytest.raises(MessageTypeError, match="big"):
        Grid(big=2**64)


@pytest.mark.parametrize(
    "cells",
    [
        [[1, 2, 3], [4, 5, 256]],
        np.array([[1, 2, 3], [4, 5, 300]]),
        np.array([[0, 0, 0], [0, 0, -1]], dtype=np.int8),
        [[1.0, 2, 3], [4, 5, 6]],
        np.zeros((2, 3), dtype=np.float64),
        [[1, 2], [3, 4]],
        np.zeros(6, dtype=np.uint8),
    ],
)
def test_bad_array_values_are_refused(cells):
    with pytest.raises(MessageTypeError, match="cells"):
        Grid(cells=cells)


def test_float_fields():
    assert Ping(seq=1, x=3).x == np.float32(3.0)
    assert Ping(seq=1, x=np.float64(0.25)).x == np.float32(0.25)
    assert np.isnan(Ping(seq=1, x=float("nan")).x)
    assert np.isinf(Ping(seq=1, x=float("inf")).x)
    with pytest.raises(MessageTypeError, match=r"Ping\.x"):
        Ping(seq=1, x=1e40)  # finite, but beyond f32: not silently inf
    assert Sample(value=1e300).value == 1e300


def test_bool_fields():
    assert Ping(seq=1, ok=0).ok is np.False_
    assert Ping(seq=1, ok=1).ok is np.True_
    with pytest.raises(MessageTypeError, match="ok"):
        Ping(seq=1, ok=2)


def test_too_many_and_repeated_arguments():
    with pytest.raises(MessageTypeError, match="3 fields"):
        Ping(1, 2, True, 4)
    with pytest.raises(MessageTypeError, match="'seq' twice"):
        Ping(1, seq=2)


def test_bad_default_fails_at_declaration():
    with pytest.raises(TypeDefinitionError, match="'level'"):

        @ringcore.message(type_id=_BASE + 20)
        class BadDefault:
            level: ringcore.u8 = 300


@pytest.mark.parametrize("name", ["header", "payload", "dtype", "type_id", "pack", "fields"])
def test_field_names_that_clash_with_the_message_api_are_refused(name):
    with pytest.raises(TypeDefinitionError, match=repr(name)):
        clash = type("Clash", (), {"__annotations__": {name: ringcore.u32}})
        ringcore.message(type_id=_BASE + 21)(clash)


def test_python_builtin_annotation_is_refused_with_a_hint():
    with pytest.raises(TypeDefinitionError) as info:

        @ringcore.message(type_id=_BASE + 22)
        class UsesInt:
            count: int

    assert "'count'" in str(info.value) and "UsesInt" in str(info.value)
    assert "ringcore.i32 or ringcore.i64" in str(info.value)


def test_duplicate_type_id_is_refused():
    @ringcore.message(type_id=_BASE + 30)
    class First:
        a: ringcore.u8

    with pytest.raises(TypeDefinitionError, match=str(_BASE + 30)) as info:

        @ringcore.message(type_id=_BASE + 30)
        class Second:
            a: ringcore.u8

    assert "First" in str(info.value)


@pytest.mark.parametrize("bad", [0, -1, 2**32, True, 1.0, "3"])
def test_type_id_must_be_a_u32_above_zero(bad):
    with pytest.raises(TypeDefinitionError, match="type_id"):
        ringcore.message(type_id=bad)


def test_decorating_a_non_class_is_refused():
    with pytest.raises(TypeDefinitionError, match="decorates a class"):
        ringcore.message(type_id=_BASE + 31)(lambda: None)


def test_classvar_and_private_annotations_are_not_fields():
    from typing import ClassVar

    @ringcore.message(type_id=_BASE + 32)
    class WithExtras:
        a: ringcore.u32
        limit: ClassVar[int] = 5
        _cache: dict

    assert list(WithExtras.fields) == ["a"]
    assert WithExtras.limit == 5


# -- equality, packing -------------------------------------------------------------------


def test_equality_compares_fields_including_arrays():
    a = Sample(flag=1, vec=[1, 2, 3, 4])
    assert a == Sample(flag=1, vec=[1, 2, 3, 4])
    assert a != Sample(flag=1, vec=[1, 2, 3, 5])
    assert a != Sample(flag=2, vec=[1, 2, 3, 4])
    assert Ping(seq=1) != Sample()
    assert Sample.__hash__ is None


def test_repr_names_fields():
    r = repr(Ping(seq=4, x=2.0))
    assert r.startswith("Ping(") and "seq=4" in r and "x=2.0" in r


def test_pack_unpack_round_trip():
    msgs = [
        Sample(flag=i, value=i / 3, count=i * 100, vec=[i, -i, 0.5, i * i], small=-i)
        for i in range(20)
    ]
    arr = Sample.pack(msgs)
    assert arr.dtype == Sample.dtype and arr.shape == (20,)
    assert arr["count"][7] == 700 and arr["vec"][3].tolist() == [3, -3, 0.5, 9]
    back = Sample.unpack(arr)
    assert back == msgs
    assert all(m.header is None for m in back)
    arr["flag"][0] = 42  # unpacked messages own their data
    assert back[0].flag == 0
    back[1].vec[0] = 77
    assert arr["vec"][1][0] == 1


def test_pack_refuses_other_types_and_handles_empty():
    with pytest.raises(MessageTypeError, match="Ping"):
        Sample.pack([Sample(), Ping(seq=1)])
    assert Sample.pack([]).shape == (0,)
    assert Sample.unpack(Sample.array(0)) == []


def test_array_is_zeroed_payload_array():
    arr = Ping.array(3)
    assert arr.dtype == Ping.dtype and len(arr) == 3 and not arr.tobytes().strip(b"\0")


def test_unpack_whole_slots_keeps_headers():
    slots = np.zeros(2, dtype=Ping.slot_dtype)
    slots["payload"] = Ping.pack([Ping(seq=10), Ping(seq=11, ok=False)])
    slots["header"]["correlation_id"] = [5, 6]
    slots["header"]["type_id"] = Ping.type_id
    msgs = Ping.unpack(slots)
    assert [m.seq for m in msgs] == [10, 11]
    assert [m.header.correlation_id for m in msgs] == [5, 6]
    assert msgs[0].header.type_id == Ping.type_id
    assert isinstance(msgs[0].header, MessageHeader)


def test_from_record_copies_arrays():
    arr = Sample.pack([Sample(vec=[1, 2, 3, 4])])
    m = Sample.from_record(arr[0])
    arr[0]["vec"][0] = 50
    assert m.vec[0] == 1
    assert m == Sample(vec=[1, 2, 3, 4])


def test_message_with_no_fields():
    assert Empty.dtype.itemsize == 0
    assert Empty.slot_dtype.itemsize == 64
    assert Empty() == Empty()
    assert repr(Empty()) == "Empty()"
    arr = Empty.pack([Empty(), Empty()])
    assert len(arr) == 2
    assert Empty.unpack(arr) == [Empty(), Empty()]
    slots = np.zeros(1, dtype=Empty.slot_dtype)
    slots["header"]["message_id"] = 3
    assert Empty.unpack(slots)[0].header.message_id == 3
    with pytest.raises(MessageTypeError, match="no field"):
        Empty(a=1)


def test_match_args_allow_pattern_matching():
    match Ping(seq=3):
        case Ping(seq, x, ok):
            assert (seq, float(x), bool(ok)) == (3, 1.5, True)


# -- string annotations ------------------------------------------------------------------


def load_module(name, source):
    mod = types.ModuleType(name)
    sys.modules[name] = mod
    try:
        exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), mod.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    return mod


def test_string_annotations_from_future_import():
    mod = load_module(
        "ringcore_test_future_msgs",
        f"""
        from __future__ import annotations
        import ringcore
        import ringcore as rc
        from ringcore import u16

        @ringcore.message(type_id={_BASE + 40})
        class Future:
            a: ringcore.u8
            b: rc.f64
            c: u16
            v: ringcore.f32[3]
            g: rc.i32[2, 2]
        """,
    )
    F = mod.Future
    assert F.__annotations__["a"] == "ringcore.u8"  # really strings
    assert F.fields == {"a": rc.u8, "b": rc.f64, "c": rc.u16, "v": rc.f32[3], "g": rc.i32[2, 2]}
    assert field_offsets(F.dtype) == {"a": 0, "b": 8, "c": 16, "v": 20, "g": 32}
    m = F(a=1, b=2.0, c=3, v=[1, 2, 3], g=[[1, 2], [3, 4]])
    assert F.unpack(F.pack([m])) == [m]


def test_string_annotations_that_get_type_hints_cannot_resolve():
    # A local name is invisible to get_type_hints, so it fails for the whole
    # class; the fields it could see must still resolve one by one.
    mod = load_module(
        "ringcore_test_future_local",
        f"""
        from __future__ import annotations
        import ringcore

        def make():
            Helper = dict

            @ringcore.message(type_id={_BASE + 41})
            class Local:
                a: ringcore.u32
                v: ringcore.f32[2]
                _cache: Helper  # not a field, but get_type_hints fails on it
            return Local

        def make_bad():
            Alias = ringcore.u8

            @ringcore.message(type_id={_BASE + 42})
            class Bad:
                a: Alias
                b: ringcore.u8
            return Bad
        """,
    )
    Local = mod.make()
    assert Local.fields == {"a": rc.u32, "v": rc.f32[2]}
    with pytest.raises(TypeDefinitionError, match="'a' of message"):
        mod.make_bad()


def test_future_annotation_of_python_int_gets_the_hint():
    with pytest.raises(TypeDefinitionError, match="ringcore.i32 or ringcore.i64"):
        load_module(
            "ringcore_test_future_int",
            f"""
            from __future__ import annotations
            import ringcore

            @ringcore.message(type_id={_BASE + 43})
            class UsesInt:
                n: int
            """,
        )
