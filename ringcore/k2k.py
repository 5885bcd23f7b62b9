"""Kernel-to-kernel messaging: delivery results."""

from __future__ import annotations

import enum

__all__ = ["DeliveryResult", "DEFAULT_MAX_HOPS"]

#: A message forwarded more than this many times between kernels is refused.
DEFAULT_MAX_HOPS = 16


class DeliveryResult(enum.Enum):
    """The outcome of ``ctx.send`` to another kernel."""

    DELIVERED = "delivered"
    QUEUE_FULL = "queue_full"
    """The target's input queue was full; the message was not delivered (counted)."""
    NOT_FOUND = "not_found"
    """No kernel of that name (or number) runs in this runtime."""
    MAX_HOPS_EXCEEDED = "max_hops_exceeded"
    """The message had already been forwarded the maximum number of times."""
    WRONG_TYPE = "wrong_type"
    """The target kernel takes a different message type."""
    TERMINATED = "terminated"
    """The target kernel has terminated."""

    def __bool__(self) -> bool:
        return self is DeliveryResult.DELIVERED
