"""ControlBlock: the 128-byte layout, offset by offset, in raw bytes."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from ringcore.control import CONTROL_BLOCK_DTYPE, CONTROL_BLOCK_SIZE, ControlBlock, ErrorCode

# (field, offset, struct format) -- the documented table
LAYOUT = [
    ("is_active", 0, "<I"),
    ("should_terminate", 4, "<I"),
    ("has_terminated", 8, "<I"),
    ("messages_processed", 16, "<Q"),
    ("messages_in_flight", 24, "<Q"),
    ("input_head", 32, "<Q"),
    ("input_tail", 40, "<Q"),
    ("output_head", 48, "<Q"),
    ("output_tail", 56, "<Q"),
    ("input_capacity", 64, "<I"),
    ("output_capacity", 68, "<I"),
    ("input_mask", 72, "<I"),
    ("output_mask", 76, "<I"),
    ("hlc_physical", 80, "<Q"),
    ("hlc_logical", 88, "<Q"),
    ("last_error", 96, "<I"),
    ("error_count", 100, "<I"),
]
IDS = [f for f, *_ in LAYOUT]


def distinct_value(fmt: str, offset: int) -> int:
    """A value whose every byte is non-zero and differs between fields."""
    size = struct.calcsize(fmt)
    return int.from_bytes(bytes((offset + i + 1) | 0x80 for i in range(size)), "little")


def test_size_and_dtype():
    assert CONTROL_BLOCK_SIZE == 128
    assert CONTROL_BLOCK_DTYPE.itemsize == 128
    cb = ControlBlock()
    assert cb.buffer.nbytes == 128
    assert cb.buffer.ctypes.data % 128 == 0
    assert not cb.buffer.any()


def test_public_fields_are_exactly_the_documented_ones():
    assert list(ControlBlock().snapshot()) == IDS


@pytest.mark.parametrize("field, offset, fmt", LAYOUT, ids=IDS)
def test_attribute_write_lands_at_documented_offset(field, offset, fmt):
    cb = ControlBlock()
    value = distinct_value(fmt, offset)
    setattr(cb, field, value)
    raw = cb.buffer.tobytes()
    size = struct.calcsize(fmt)
    assert struct.unpack_from(fmt, raw, offset)[0] == value
    assert not raw[:offset].strip(b"\0") and not raw[offset + size:].strip(b"\0")
    assert getattr(cb, field) == value
    assert type(getattr(cb, field)) is int


@pytest.mark.parametrize("field, offset, fmt", LAYOUT, ids=IDS)
def test_raw_write_reads_back_through_attribute(field, offset, fmt):
    buf = bytearray(128)
    value = distinct_value(fmt, offset)
    struct.pack_into(fmt, buf, offset, value)
    assert getattr(ControlBlock(buf), field) == value


def test_all_fields_together_and_reserved_bytes_stay_zero():
    cb = ControlBlock()
    for field, offset, fmt in LAYOUT:
        setattr(cb, field, distinct_value(fmt, offset))
    raw = cb.buffer.tobytes()
    for field, offset, fmt in LAYOUT:
        assert struct.unpack_from(fmt, raw, offset)[0] == distinct_value(fmt, offset), field
    assert raw[12:16] == b"\0" * 4  # padding
    assert raw[104:128] == b"\0" * 24  # reserved
    assert cb.snapshot() == {f: distinct_value(fmt, off) for f, off, fmt in LAYOUT}


def test_attach_to_an_existing_buffer():
    mem = np.zeros(512, dtype=np.uint8)
    a = ControlBlock(mem[128:256])
    a.is_active = 1
    a.messages_processed = 2**40 + 5
    assert mem[128] == 1
    assert struct.unpack_from("<Q", mem.tobytes(), 128 + 16)[0] == 2**40 + 5
    b = ControlBlock(mem[128:256])
    assert b.is_active == 1 and b.messages_processed == 2**40 + 5
    b.should_terminate = 1
    assert a.should_terminate == 1
    assert not mem[:128].any() and not mem[256:].any()


def test_attach_to_bytearray_and_larger_buffer():
    buf = bytearray(200)
    cb = ControlBlock(buf)
    cb.error_count = 3
    assert struct.unpack_from("<I", buf, 100)[0] == 3
    assert cb.buffer.nbytes == 128


def test_too_small_or_read_only_buffer_is_refused():
    with pytest.raises(ValueError, match="128 bytes"):
        ControlBlock(bytearray(127))
    with pytest.raises(ValueError, match="read-only"):
        ControlBlock(bytes(128))
    with pytest.raises(ValueError, match="contiguous"):
        ControlBlock(np.zeros(256, dtype=np.uint8)[::2])


def test_add_changes_only_its_counter():
    cb = ControlBlock()
    cb.messages_processed = 10
    cb.add("messages_processed", 5)
    cb.add("messages_processed", 2**33)
    cb.add("error_count", 1)
    cb.add("messages_in_flight", 3)
    cb.add("messages_in_flight", -3)
    raw = cb.buffer.tobytes()
    assert struct.unpack_from("<Q", raw, 16)[0] == 15 + 2**33
    assert struct.unpack_from("<I", raw, 100)[0] == 1
    assert struct.unpack_from("<Q", raw, 24)[0] == 0
    snap = cb.snapshot()
    nonzero = {k: v for k, v in snap.items() if v}
    assert nonzero == {"messages_processed": 15 + 2**33, "error_count": 1}


def test_add_wraps_at_the_top_and_refuses_going_below_zero():
    cb = ControlBlock()
    cb.error_count = 2**32 - 1
    cb.add("error_count", 2)
    assert cb.error_count == 1  # like a device's 32-bit atomic add
    with pytest.raises(ValueError, match="below zero"):
        cb.add("messages_in_flight", -1)
    assert cb.messages_in_flight == 0
    with pytest.raises(KeyError):
        cb.add("no_such_counter", 1)


def test_init_queues():
    cb = ControlBlock()
    cb.init_queues(1024, 256)
    raw = cb.buffer.tobytes()
    assert struct.unpack_from("<4I", raw, 64) == (1024, 256, 1023, 255)


def test_values_out_of_range_are_refused():
    cb = ControlBlock()
    with pytest.raises(OverflowError):
        cb.is_active = -1
    with pytest.raises(OverflowError):
        cb.last_error = 2**32
    assert not cb.buffer.any()


def test_unknown_attribute_is_refused_and_repr():
    cb = ControlBlock()
    with pytest.raises(AttributeError):
        cb.is_actve = 1  # a typo must not silently create a field
    cb.is_active = 1
    cb.messages_processed = 7
    assert "active=1" in repr(cb) and "processed=7" in repr(cb)


def test_error_codes():
    assert ErrorCode.NONE == 0
    assert [int(c) for c in ErrorCode] == list(range(len(ErrorCode)))
    assert ErrorCode.HANDLER_EXCEPTION == 1 and ErrorCode.WRONG_MESSAGE_TYPE == 3
