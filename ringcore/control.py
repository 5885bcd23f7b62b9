"""ControlBlock: the 128-byte structure through which host and kernel coordinate.

The layout is the same on every backend (little-endian, 128-byte aligned)::

    offset  type  field               written by
    0       u32   is_active           host (1 = process messages, 0 = hold them)
    4       u32   should_terminate    host (1 = leave the loop)
    8       u32   has_terminated      kernel (1 = the loop has exited)
    12      u32   (padding)
    16      u64   messages_processed  kernel
    24      u64   messages_in_flight  kernel (claimed from the queue, not yet finished)
    32      u64   input_head          kernel (mirror of the input queue's head)
    40      u64   input_tail          kernel (mirror of the input queue's tail)
    48      u64   output_head         kernel (mirror of the output queue's head)
    56      u64   output_tail         kernel (mirror of the output queue's tail)
    64      u32   input_capacity      host, at launch (a power of two)
    68      u32   output_capacity     host, at launch (a power of two)
    72      u32   input_mask          host, at launch (input_capacity - 1)
    76      u32   output_mask         host, at launch (output_capacity - 1)
    80      u64   hlc_physical        kernel (its HLC state)
    88      u64   hlc_logical         kernel
    96      u32   last_error          kernel (an ErrorCode; 0 = none)
    100     u32   error_count         kernel
    104..127      reserved            zero

Each field has one writer. The host never performs a read-modify-write on a
field the kernel owns (and vice versa): it writes only its flags, with single
stores, and reads the rest. The queue indices here are mirrors for monitoring,
refreshed by the kernel side after every batch; the authoritative indices live
in each RingQueue's own header, where each side writes only its own index.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np

from ._memory import aligned_zeros, byte_view

__all__ = ["ControlBlock", "CONTROL_BLOCK_DTYPE", "CONTROL_BLOCK_SIZE", "ErrorCode"]

CONTROL_BLOCK_DTYPE = np.dtype(
    {
        "names": [
            "is_active", "should_terminate", "has_terminated", "_pad",
            "messages_processed", "messages_in_flight",
            "input_head", "input_tail", "output_head", "output_tail",
            "input_capacity", "output_capacity", "input_mask", "output_mask",
            "hlc_physical", "hlc_logical", "last_error", "error_count", "_reserved",
        ],
        "formats": [
            "<u4", "<u4", "<u4", "<u4", "<u8", "<u8", "<u8", "<u8", "<u8", "<u8",
            "<u4", "<u4", "<u4", "<u4", "<u8", "<u8", "<u4", "<u4", ("u1", 24),
        ],
        "offsets": [0, 4, 8, 12, 16, 24, 32, 40, 48, 56, 64, 68, 72, 76, 80, 88, 96, 100, 104],
        "itemsize": 128,
    }
)
CONTROL_BLOCK_SIZE = 128


class ErrorCode(enum.IntEnum):
    """Values of ``last_error`` and of an error reply's ``status``."""

    NONE = 0
    HANDLER_EXCEPTION = 1
    """The handler raised."""
    NO_REPLY = 2
    """A message sent with ``call`` was handled without producing a reply."""
    WRONG_MESSAGE_TYPE = 3
    """A message's type id does not match the kernel's input type."""
    OUTPUT_FULL = 4
    """The output queue stayed full until termination; the reply could not be published."""
    DEVICE_ERROR = 5
    """The backend's device reported a failure."""


class ControlBlock:
    """A typed view over 128 bytes of host-visible memory.

    Each field is an attribute (``cb.is_active = 1``, ``cb.messages_processed``)
    backed by a one-element view of its bytes, so a read or write is a single
    load or store of that field alone.

    :param buffer: at least 128 writable bytes (pinned, SVM or host memory);
        a new zeroed, 128-byte aligned block when omitted.
    """

    __slots__ = ("buffer", "_views")

    def __init__(self, buffer: Any = None) -> None:
        if buffer is None:
            buffer = aligned_zeros(CONTROL_BLOCK_SIZE)
        self.buffer = byte_view(buffer, CONTROL_BLOCK_SIZE, "a ControlBlock")
        self._views = {
            name: self.buffer[off:off + dt.itemsize].view(dt)
            for name, (dt, off) in CONTROL_BLOCK_DTYPE.fields.items()
            if not name.startswith("_")
        }

    def add(self, name: str, n: int) -> None:
        """Add ``n`` (possibly negative) to a counter; only the counter's owner may call this.

        The counter wraps at the top of its width, as a device's atomic add does;
        taking it below zero is refused (that is a bookkeeping bug).
        """
        view = self._views[name]
        value = int(view[0]) + n
        if value < 0:
            raise ValueError(f"{name} = {int(view[0])} cannot go below zero (adding {n})")
        view[0] = value & ((1 << (view.dtype.itemsize * 8)) - 1)

    def init_queues(self, input_capacity: int, output_capacity: int) -> None:
        """Record both queues' capacities and masks (host, at launch)."""
        self.input_capacity = input_capacity
        self.output_capacity = output_capacity
        self.input_mask = input_capacity - 1
        self.output_mask = output_capacity - 1

    def snapshot(self) -> dict[str, int]:
        """Every field's current value."""
        return {n: int(v[0]) for n, v in self._views.items()}

    def __repr__(self) -> str:
        s = self.snapshot()
        return (f"<ControlBlock active={s['is_active']} terminate={s['should_terminate']} "
                f"terminated={s['has_terminated']} processed={s['messages_processed']} "
                f"errors={s['error_count']}>")


def _field(name: str) -> property:
    def get(self: ControlBlock) -> int:
        return int(self._views[name][0])

    def set(self: ControlBlock, value: int) -> None:
        self._views[name][0] = value

    return property(get, set, doc=f"The ``{name}`` field.")


for _name in CONTROL_BLOCK_DTYPE.names:
    if not _name.startswith("_"):
        setattr(ControlBlock, _name, _field(_name))
del _name
