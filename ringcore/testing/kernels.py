"""Messages and kernels used by ringcore's conformance suites.

Every handler here is written in the restricted style the kernel compiler
accepts (scalar arithmetic on message and state fields, ``if``, ``for ... in
range(...)``, fixed arrays in state, ``ctx.send``), so that a backend that
compiles kernels for a device runs exactly these functions. Fields are 32-bit
so that targets without 64-bit integers (WGSL) can run every kernel.

Type ids live in one block (``0xC0DE0001`` and up) so they do not collide with
a plugin's own test messages.
"""

from __future__ import annotations

import ringcore
from ringcore import DeliveryResult, f32, i32, u32

__all__ = [
    "Num", "Echoed", "Total", "Ball", "Hop", "HopDone", "Route", "Routed", "Flood", "Flooded", "Reading",
    "echo", "tee", "accumulate", "histogram", "sink", "bounce", "relay", "router", "flood", "fragile", "evens_only",
    "thermometer",
    "DELIVERY_CODES", "NO_PEER",
]

_BASE = 0xC0DE0000


@ringcore.message(type_id=_BASE + 1)
class Num:
    """A request: a value and a tag the reply carries back."""

    value: i32
    tag: u32


@ringcore.message(type_id=_BASE + 2)
class Echoed:
    """The reply of :func:`echo`, :func:`fragile` and :func:`evens_only`."""

    value: i32
    doubled: i32
    tag: u32


@ringcore.message(type_id=_BASE + 3)
class Total:
    """The running totals of :func:`accumulate` and :func:`histogram`."""

    count: u32
    total: i32
    tag: u32


@ringcore.message(type_id=_BASE + 4)
class Ball:
    """Bounced between two kernels: ``remaining`` hops to go; ``peer`` is the other kernel's number."""

    remaining: u32
    hits: u32
    peer: u32


@ringcore.message(type_id=_BASE + 5)
class Hop:
    """Forwarded by :func:`relay` to itself until a send fails."""

    count: u32


@ringcore.message(type_id=_BASE + 6)
class HopDone:
    count: u32
    code: u32


@ringcore.message(type_id=_BASE + 7)
class Route:
    """Asks :func:`router` to send ``Num(value)`` to kernel number ``target``."""

    target: u32
    value: i32


@ringcore.message(type_id=_BASE + 8)
class Routed:
    code: u32


@ringcore.message(type_id=_BASE + 9)
class Flood:
    """Asks :func:`flood` to send ``count`` messages to kernel number ``target``."""

    target: u32
    count: u32


@ringcore.message(type_id=_BASE + 10)
class Flooded:
    delivered: u32
    full: u32
    other: u32


@ringcore.message(type_id=_BASE + 11)
class Reading:
    """A float payload (pub/sub)."""

    celsius: f32
    tag: u32


#: ``code`` values in Routed / HopDone / Flooded, decoded.
DELIVERY_CODES = {
    1: DeliveryResult.DELIVERED,
    2: DeliveryResult.QUEUE_FULL,
    3: DeliveryResult.NOT_FOUND,
    4: DeliveryResult.MAX_HOPS_EXCEEDED,
    5: DeliveryResult.WRONG_TYPE,
    6: DeliveryResult.TERMINATED,
}
#: A ``Ball.peer`` meaning "the send failed".
NO_PEER = 0xFFFFFFFF


@ringcore.kernel(id="echo")
def echo(ctx, msg: Num) -> Echoed:
    """Reply with the value, twice the value, and the tag."""
    return Echoed(value=msg.value, doubled=msg.value * 2, tag=msg.tag)


@ringcore.kernel(id="tee")
def tee(ctx, msg: Num) -> Echoed:
    """Forward the message to ``echo`` (the call's reply obligation goes with it) and reply too."""
    ctx.send("echo", msg)
    return Echoed(value=msg.value, doubled=msg.value * 2, tag=msg.tag)


class AccumulateState:
    count: u32 = 0
    total: i32 = 1000  # a non-zero initial value: launch must honour declared initial state


@ringcore.kernel(id="accumulate", state=AccumulateState)
def accumulate(ctx, msg: Num) -> Total:
    """Add the value to a running total kept in state; reply with the totals so far."""
    ctx.state.count += 1
    ctx.state.total += msg.value
    return Total(count=ctx.state.count, total=ctx.state.total, tag=msg.tag)


class HistogramState:
    bins: u32[8]
    seen: u32 = 0


@ringcore.kernel(id="histogram", state=HistogramState)
def histogram(ctx, msg: Num) -> Total:
    """Count values by ``value % 8`` in a fixed array; reply with the sum over all bins."""
    ctx.state.bins[msg.value % 8] += 1
    ctx.state.seen += 1
    n = 0
    for i in range(8):
        n += ctx.state.bins[i]
    return Total(count=n, total=msg.value % 8, tag=msg.tag)


class SinkState:
    count: u32 = 0
    total: i32 = 0


@ringcore.kernel(id="sink", state=SinkState)
def sink(ctx, msg: Num) -> None:
    """Count and sum what arrives; never reply."""
    ctx.state.count += 1
    ctx.state.total += msg.value


@ringcore.kernel(id="bounce")
def bounce(ctx, msg: Ball) -> Ball | None:
    """Send the ball back to ``peer`` until no hops remain, then reply to the host's call."""
    if msg.remaining == 0:
        return Ball(remaining=0, hits=msg.hits, peer=ctx.kernel_number)
    r = ctx.send(msg.peer, Ball(remaining=msg.remaining - 1, hits=msg.hits + 1, peer=ctx.kernel_number))
    if r == DeliveryResult.DELIVERED:
        return None
    return Ball(remaining=msg.remaining, hits=msg.hits, peer=NO_PEER)


@ringcore.kernel(id="relay")
def relay(ctx, msg: Hop) -> HopDone | None:
    """Forward to itself with ``count + 1`` until a send fails; reply with the count and why."""
    r = ctx.send(ctx.kernel_number, Hop(count=msg.count + 1))
    if r == DeliveryResult.DELIVERED:
        return None
    code = 0
    if r == DeliveryResult.MAX_HOPS_EXCEEDED:
        code = 4
    elif r == DeliveryResult.QUEUE_FULL:
        code = 2
    return HopDone(count=msg.count, code=code)


@ringcore.kernel(id="router")
def router(ctx, msg: Route) -> Routed:
    """Send ``Num(value)`` to kernel ``target`` and reply with the delivery result's code."""
    r = ctx.send(msg.target, Num(value=msg.value, tag=0))
    code = 0
    if r == DeliveryResult.DELIVERED:
        code = 1
    elif r == DeliveryResult.QUEUE_FULL:
        code = 2
    elif r == DeliveryResult.NOT_FOUND:
        code = 3
    elif r == DeliveryResult.MAX_HOPS_EXCEEDED:
        code = 4
    elif r == DeliveryResult.WRONG_TYPE:
        code = 5
    elif r == DeliveryResult.TERMINATED:
        code = 6
    return Routed(code=code)


@ringcore.kernel(id="flood")
def flood(ctx, msg: Flood) -> Flooded:
    """Send ``count`` Num messages to ``target``; reply how many were delivered or refused as full."""
    delivered = 0
    full = 0
    other = 0
    for i in range(msg.count):
        r = ctx.send(msg.target, Num(value=i, tag=i))
        if r == DeliveryResult.DELIVERED:
            delivered += 1
        elif r == DeliveryResult.QUEUE_FULL:
            full += 1
        else:
            other += 1
    return Flooded(delivered=delivered, full=full, other=other)


@ringcore.kernel(id="fragile")
def fragile(ctx, msg: Num) -> Echoed:
    """Like echo, but a negative value is an error."""
    if msg.value < 0:
        raise ValueError("negative value")
    return Echoed(value=msg.value, doubled=msg.value * 2, tag=msg.tag)


@ringcore.kernel(id="evens_only")
def evens_only(ctx, msg: Num) -> Echoed | None:
    """Reply to even values only."""
    if msg.value % 2 == 0:
        return Echoed(value=msg.value, doubled=msg.value * 2, tag=msg.tag)
    return None


class ThermometerState:
    count: u32 = 0
    hottest: f32 = -273.0


@ringcore.kernel(id="thermometer", state=ThermometerState)
def thermometer(ctx, msg: Reading) -> None:
    """Count readings and keep the highest."""
    ctx.state.count += 1
    if msg.celsius > ctx.state.hottest:
        ctx.state.hottest = msg.celsius
