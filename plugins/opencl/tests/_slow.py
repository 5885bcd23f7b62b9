"""A kernel that takes a while per message: for tests that terminate while the device is busy."""

from __future__ import annotations

import ringcore
from ringcore import u32
from ringcore.testing import kernels as K


class SlowState:
    done: u32 = 0
    acc: u32 = 0


@ringcore.kernel(id="ocl_slow", state=SlowState)
def slow(ctx, msg: K.Num) -> None:
    """A serial kernel: ``msg.tag`` rounds of an LCG per message, then count the message."""
    acc = u32(0)
    for i in range(u32(msg.tag)):
        acc = acc * u32(1664525) + u32(i)
    ctx.state.acc = acc  # kept: a compiler may not drop the loop
    ctx.state.done += 1
