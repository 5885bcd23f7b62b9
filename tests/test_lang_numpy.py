"""The numpy target: generated ``run`` against the reference semantics.

Two kinds of tests. Hand-built IR for the operations whose edges matter
(wrapping, ``//`` and ``%`` with negatives and zero, shifts, casts, ``min``/
``max`` with NaN, masks with early return inside loops, break/continue,
atomics' old values, serial state), each run in both the vectorised and the
serial code shape and compared with an independent Python computation. Then
real ``@ringcore.kernel`` functions lowered by the frontend, where the
reference is the kernel function itself, called message by message.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import random
import traceback
import zlib
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import ringcore
from ringcore import DeliveryResult, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64
from ringcore._hostloop import KernelContext
from ringcore.hlc import HlcTimestamp
from ringcore.kernel import StateSpec
from ringcore.lang import ir
from ringcore.lang.host import field_arrays, state_arrays
from ringcore.lang.ir import (
    ArrayCopy,
    ArrayZero,
    Assign,
    Atomic,
    Binary,
    Break,
    Builtin,
    CallFunc,
    Cast,
    Compare,
    Const,
    Continue,
    CtxValue,
    ErrorSite,
    Eval,
    Fail,
    For,
    Function,
    If,
    KernelIR,
    Load,
    Logical,
    MsgValue,
    Publish,
    Ref,
    Return,
    Select,
    Send,
    Tick,
    Unary,
    While,
)
from ringcore.lang.targets import numpy as target
from ringcore.message import HEADER_DTYPE, MessageHeader, message_spec
from ringcore.testing.kernels import Reading
from ringcore.types import bool_

# -- the harness ----------------------------------------------------------------------------------

_VERDICTS = [DeliveryResult.DELIVERED, DeliveryResult.DELIVERED, DeliveryResult.QUEUE_FULL,
             DeliveryResult.NOT_FOUND, DeliveryResult.DELIVERED, DeliveryResult.MAX_HOPS_EXCEEDED]


def _verdict(target: Any, record_bytes: bytes) -> DeliveryResult:
    """A delivery result that depends only on the message (so run order does not matter)."""
    return _VERDICTS[zlib.crc32(str(target).encode() + record_bytes) % len(_VERDICTS)]


class RecordingEnv:
    """The numpy target's ``env``: records sends and clock ticks, decides deliveries by content."""

    def __init__(self, n: int, kernel_number: int, specs: dict[int, Any]) -> None:
        self.thread_id = np.arange(n, dtype=np.uint32)
        self.kernel_number = np.uint32(kernel_number)
        self.specs = specs
        self.sent: list[tuple[int, Any, int, bytes]] = []
        self.ticks = np.zeros(n, np.int64)
        self.calls = 0

    def send(self, target, type_id, lanes, fields):
        assert lanes.dtype == np.int64 and np.all(np.diff(lanes) > 0)
        spec = self.specs[type_id]
        assert set(fields) <= set(spec.fields)
        recs = np.zeros(len(lanes), spec.dtype)
        for name, values in fields.items():
            assert len(values) == len(lanes), name
            col = recs[name]
            col[...] = values.reshape(col.shape) if col.ndim > 1 else values
        codes = np.empty(len(lanes), np.uint32)
        for k, lane in enumerate(lanes.tolist()):
            t = target if isinstance(target, str) else int(target[k])
            raw = recs[k].tobytes()
            self.sent.append((lane, t, type_id, raw))
            codes[k] = ir.DELIVERY_CODES[_verdict(t, raw)]
        self.calls += 1
        return codes

    def publish(self, topic, type_id, lanes, fields):
        codes = self.send(f"topic:{topic}", type_id, lanes, fields)
        return (codes * 3 + 1).astype(np.uint32)  # "subscribers reached": any function of the message

    def header(self, name):
        return self.headers[name]

    def now(self, lanes):
        phys = np.array([1_000_000 + 1000 * lane + self.ticks[lane] for lane in lanes.tolist()], np.uint64)
        logical = np.array([self.ticks[lane] for lane in lanes.tolist()], np.uint32)
        self.ticks[lanes] += 1
        return phys, logical


class _RefRuntime:
    def __init__(self) -> None:
        self.sent: list[tuple[int, Any, int, bytes]] = []
        self.lane = 0

    def publish(self, topic, msg, _source=None):
        code = ir.DELIVERY_CODES[self._forward(None, f"topic:{topic}", msg, None)]
        return code * 3 + 1

    def _forward(self, source, target, msg, parent):
        spec = message_spec(msg)
        rec = np.zeros(1, spec.dtype)  # zeroed padding, as in RecordingEnv
        rec[0] = msg.payload()
        raw = rec.tobytes()
        t = target if isinstance(target, str) else int(target)
        self.sent.append((self.lane, t, spec.type_id, raw))
        return _verdict(t, raw)


class _RefClock:
    def __init__(self, runtime: _RefRuntime) -> None:
        self.rt = runtime
        self.ticks: dict[int, int] = {}

    def tick(self):
        lane = self.rt.lane
        k = self.ticks.get(lane, 0)
        self.ticks[lane] = k + 1
        return HlcTimestamp(1_000_000 + 1000 * lane + k, k)


@dataclasses.dataclass
class Outcome:
    has_reply: np.ndarray
    replies: np.ndarray | None
    failed: dict[int, str]  # lane -> exception kind
    state: np.ndarray | None
    sent: list


def make_headers(n: int, seed: int = 0) -> np.ndarray:
    """Message headers with every field set to something (for ``ctx.header.<field>``)."""
    rng = np.random.default_rng(seed)
    h = np.zeros(n, HEADER_DTYPE)
    for name in HEADER_DTYPE.names:
        dt = HEADER_DTYPE.fields[name][0]
        h[name] = rng.integers(0, min(np.iinfo(dt).max, 2**40), n, dtype=np.int64).astype(dt)
    return h


def run_reference(kernel, records: np.ndarray, state: np.ndarray | None, kernel_number: int = 7,
                  headers: np.ndarray | None = None) -> Outcome:
    """Call the kernel's Python function on each message, in order (the reference semantics)."""
    rt = _RefRuntime()
    handle = SimpleNamespace(state_array=state, name=kernel.id, number=kernel_number, clock=_RefClock(rt),
                             runtime=rt)
    ctx = KernelContext(handle)
    n = len(records)
    out_t = kernel.output_type
    replies = np.zeros(n, out_t.dtype) if out_t is not None else None
    has_reply = np.zeros(n, bool)
    failed: dict[int, str] = {}
    headers = headers if headers is not None else make_headers(n)
    with np.errstate(all="ignore"):
        for i in range(n):
            ctx.thread_id = i
            ctx.header = MessageHeader._make(headers[i].tolist())
            rt.lane = i
            msg = kernel.input_type.from_record(records[i])
            try:
                r = kernel.func(ctx, msg)
            except Exception as exc:  # noqa: BLE001 (the reference's failure)
                failed[i] = type(exc).__name__
                continue
            if r is not None:
                replies[i] = r.payload()
                has_reply[i] = True
    return Outcome(has_reply, replies, failed, state, rt.sent)


def run_numpy(kir: KernelIR, records: np.ndarray, state: np.ndarray | None, kernel_number: int = 7,
              src: str | None = None, headers: np.ndarray | None = None) -> tuple[Outcome, RecordingEnv]:
    src = src if src is not None else target.emit(kir)
    run = target.load(src, kir)
    n = len(records)
    specs = {}
    for s in ir.walk_stmts(kir.body + [st for f in kir.funcs.values() for st in f.body]):
        for e in ir.stmt_exprs(s):
            for x in ir.walk_exprs(e):
                if isinstance(x, (Send, Publish)):
                    specs[x.msg.spec.type_id] = x.msg.spec
    env = RecordingEnv(n, kernel_number, specs)
    env.headers = headers if headers is not None else make_headers(n)
    replies = np.zeros(n, kir.output.dtype) if kir.output is not None else None
    out = field_arrays(replies, kir.output.fields) if replies is not None else None
    inp = field_arrays(records, kir.input.fields)
    has_reply, status = run(n, inp, out, state_arrays(state), env)
    assert has_reply.dtype == np.bool_ and has_reply.shape == (n,)
    assert status.dtype == np.uint32 and status.shape == (n,)
    failed = {int(i): kir.errors[int(status[i]) - 1].kind for i in np.flatnonzero(status)}
    assert not (has_reply & (status != 0)).any()
    return Outcome(has_reply, replies, failed, state, env.sent), env


def _bits(a: np.ndarray) -> np.ndarray:
    """An array's bytes, row by row (bit-exact comparison: NaN payloads and signed zeros count)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).reshape(len(a), -1) if len(a) else a.view(np.uint8)


def assert_same(ref: Outcome, got: Outcome, *, ordered_sends: bool = True) -> None:
    assert got.failed == ref.failed
    np.testing.assert_array_equal(got.has_reply, ref.has_reply)
    if ref.replies is not None:
        lanes = np.flatnonzero(ref.has_reply)
        for name in ref.replies.dtype.names:
            a, b = ref.replies[name][lanes], got.replies[name][lanes]
            if not np.array_equal(_bits(a), _bits(b)):
                bad = [int(lanes[i]) for i in range(len(lanes)) if not np.array_equal(_bits(a[i:i + 1]),
                                                                                       _bits(b[i:i + 1]))]
                raise AssertionError(f"reply field {name!r} differs at lanes {bad[:10]}: "
                                     f"reference {a[np.searchsorted(lanes, bad[:5])]} "
                                     f"numpy {b[np.searchsorted(lanes, bad[:5])]}")
    if ref.state is not None:
        for name in ref.state.dtype.names:
            assert np.array_equal(_bits(ref.state[name]), _bits(got.state[name])), \
                f"state.{name}: reference {ref.state[name]} numpy {got.state[name]}"
    if ordered_sends:  # per lane, in order; across lanes the order is the target's business
        key = lambda r: r[0]  # noqa: E731
        assert sorted(got.sent, key=key) == sorted(ref.sent, key=key)


def compare_kernel(kernel, records: np.ndarray, state_init: Any = None, *, check_serial_too: bool = True,
                   kernel_number: int = 7) -> tuple[Outcome, Outcome]:
    """Lower ``kernel``, run the numpy target on ``records`` and compare with the reference."""
    kir = ringcore.lang.lower(kernel)
    st_ref = kernel.state.new() if kernel.state is not None else None
    st_np = kernel.state.new() if kernel.state is not None else None
    if state_init is not None:
        state_init(st_ref)
        state_init(st_np)
    ref = run_reference(kernel, records, st_ref, kernel_number)
    got, _ = run_numpy(kir, records, st_np, kernel_number)
    try:
        assert_same(ref, got)
    except AssertionError:
        print(target.emit(kir))
        raise
    if check_serial_too and not kir.serial:
        # The same IR run one message at a time must agree too.
        skir = dataclasses.replace(kir, serial=True)
        st2 = kernel.state.new() if kernel.state is not None else None
        if state_init is not None:
            state_init(st2)
        got2, _ = run_numpy(skir, records, st2, kernel_number)
        try:
            assert_same(ref, got2)
        except AssertionError:
            print(target.emit(skir))
            raise
    return ref, got


# -- real kernels, lowered by the frontend, against the kernel function itself -------------------------

_T = 0x7E5700A0


@ringcore.message(type_id=_T + 1)
class LoopIn:
    n: i32
    k: i32
    lim: i32


@ringcore.message(type_id=_T + 2)
class LoopOut:
    acc: i32
    code: i32
    last: i32


@ringcore.kernel(id="np_loops")
def loops_kernel(ctx, msg: LoopIn) -> LoopOut | None:
    acc = 0
    last = -1
    for i in range(msg.n):
        last = i
        if i == msg.k:
            return LoopOut(acc=acc, code=1, last=i)
        if i % 3 == 1:
            continue
        acc += i
        if acc > msg.lim:
            break
    if msg.n == 13:
        return None
    return LoopOut(acc=acc, code=2, last=last)


@ringcore.message(type_id=_T + 3)
class CollatzIn:
    x: u32
    cap: u32
    strict: bool_


@ringcore.message(type_id=_T + 4)
class CollatzOut:
    steps: u32
    x: u32


@ringcore.kernel(id="np_collatz")
def collatz_kernel(ctx, msg: CollatzIn) -> CollatzOut:
    x = msg.x
    steps = u32(0)
    while x != 1:
        if x % 2 == 0:
            x = x // 2
        else:
            x = 3 * x + 1
        steps += 1
        if steps >= msg.cap:
            if msg.strict:
                raise ValueError("too many steps")
            break
    return CollatzOut(steps=steps, x=x)


@ringcore.func
def safe_div(a: i32, b: i32) -> i32:
    if b == 0:
        raise ZeroDivisionError("division by zero")
    return a // b


@ringcore.func
def first_multiple(x: i32, m: i32) -> i32:
    for j in range(1, 20):
        if (x * j) % m == 0:
            return j
    return -1


@ringcore.message(type_id=_T + 5)
class FuncIn:
    a: i32
    b: i32


@ringcore.message(type_id=_T + 6)
class FuncOut:
    q: i32
    j: i32


@ringcore.kernel(id="np_funcs")
def funcs_kernel(ctx, msg: FuncIn) -> FuncOut:
    j = 0
    if msg.a > 0:
        j = first_multiple(msg.a, msg.b | 1)
    q = safe_div(msg.a, msg.b) + safe_div(msg.b, msg.a)
    return FuncOut(q=q, j=j)


@ringcore.message(type_id=_T + 7)
class LutIn:
    k: i32
    bias: i32
    w: f32[4]


@ringcore.message(type_id=_T + 8)
class LutOut:
    t: i32[8]
    s: i32
    pick: i32
    w: f32[4]
    wsum: f32


@ringcore.message(type_id=_T + 21)
class Table:
    t: i32[8]
    u: i32[4]


@ringcore.kernel(id="np_lut")
def lut_kernel(ctx, msg: LutIn) -> LutOut:
    tab = Table()
    for i in range(8):
        tab.t[i] = i * i - msg.bias
    tab.u[0] = 3
    tab.u[1] = 1
    tab.u[2] = 4
    tab.u[3] = 1
    j = msg.k % 8
    tab.t[j] = tab.t[j] + tab.u[msg.k % 4]
    s = 0
    for i in range(8):
        s += tab.t[i]
    res = LutOut(w=msg.w)
    wsum = f32(0.0)
    for i in range(4):
        wsum += res.w[i] * f32(i)
    if msg.bias > 5:
        res.w[msg.k % 4] = f32(-1.0)
    for i in range(8):  # res.t = tab.t would alias in Python: kernels copy element by element
        res.t[i] = tab.t[i]
    res.s = s
    res.pick = tab.t[(msg.k + 3) % 8]
    res.wsum = wsum
    return res


class AtomState:
    count: u32 = 0
    bins: u32[8]
    lo: i32 = 1000
    hi: f32 = -1.0
    slot: u32 = 5
    flag: u32 = 0
    fsum: f32 = 0.5
    dec: i64 = 0


@ringcore.message(type_id=_T + 9)
class AtomIn:
    k: i32
    v: i32
    f: f32
    u: u32


@ringcore.message(type_id=_T + 10)
class AtomOut:
    count: u32
    bin: u32
    lo: i32
    hi: f32
    slot: u32
    flag: u32
    fsum: f32
    dec: i64


@ringcore.kernel(id="np_atomics", state=AtomState)
def atomics_kernel(ctx, msg: AtomIn) -> AtomOut | None:
    if msg.k == 99:
        return None
    c = ctx.atomic_add("count", 1)
    b = ctx.atomic_add("bins", 1, msg.k % 8)
    lo = ctx.atomic_min("lo", msg.v)
    hi = ctx.atomic_max("hi", msg.f)
    sl = ctx.atomic_exchange("slot", msg.u)
    fl = ctx.atomic_cas("flag", msg.u % 4, msg.u)
    fs = ctx.atomic_add("fsum", msg.f)
    d = ctx.atomic_sub("dec", i64(msg.v))
    return AtomOut(count=c, bin=b, lo=lo, hi=hi, slot=sl, flag=fl, fsum=fs, dec=d)


@ringcore.message(type_id=_T + 11)
class MathIn:
    x: f32
    y: f32
    d: f64
    i: i32
    u: u8


@ringcore.message(type_id=_T + 12)
class MathOut:
    trunc: i32
    small: i8
    big: u64
    back: f32
    mn: f32
    mx: f32
    ab: i32
    cl: f32
    fm: f32
    sq: f32
    fl: f64
    nan: bool_
    sel: f32
    b: bool_
    ui: u8
    fd: f32
    fm2: f32
    dd: f64


@ringcore.kernel(id="np_math")
def math_kernel(ctx, msg: MathIn) -> MathOut:
    x = msg.x
    t = 0
    s = i8(0)
    big = u64(0)
    if not ringcore.isnan(x) and -1e9 < x < 1e9:
        t = i32(x)
        s = i8(x)
        big = u64(i64(x))
    return MathOut(
        trunc=t, small=s, big=big,
        back=f32(msg.i),
        mn=min(x, msg.y), mx=max(x, msg.y),
        ab=abs(msg.i),
        cl=ringcore.clamp(x, f32(-1.0), f32(1.0)),
        fm=ringcore.fma(x, msg.y, f32(0.25)),
        sq=ringcore.sqrt(abs(x)),
        fl=ringcore.floor(msg.d),
        nan=ringcore.isnan(x) or x > msg.y,
        sel=x if msg.i > 0 else msg.y,
        b=ringcore.bool(msg.i) and msg.u > 3,
        ui=msg.u * 3 + 7,
        fd=x // msg.y,
        fm2=x % msg.y,
        dd=msg.d / 3.0,
    )


@ringcore.message(type_id=_T + 13)
class Ping:
    v: u32


@ringcore.message(type_id=_T + 14)
class Clock:
    phys: u64
    logical: u32
    tid: u32
    kn: u32
    later: u64


@ringcore.kernel(id="np_clock")
def clock_kernel(ctx, msg: Ping) -> Clock | None:
    if msg.v % 5 == 0:
        return None
    t = ctx.now()
    later = t.physical
    if msg.v % 2 == 0:
        t2 = ctx.now()
        later = t2.physical
    return Clock(phys=t.physical, logical=t.logical, tid=ctx.thread_id, kn=ctx.kernel_number, later=later)


class TallyState:
    best: i32[4]
    total: i64 = 0
    seen: u32 = 0


@ringcore.message(type_id=_T + 15)
class TallyIn:
    k: u32
    v: i32


@ringcore.message(type_id=_T + 16)
class TallyOut:
    best: i32
    total: i64
    seen: u32


@ringcore.kernel(id="np_tally", state=TallyState)
def tally_kernel(ctx, msg: TallyIn) -> TallyOut | None:
    ctx.state.seen += 1
    slot = msg.k % 4
    if msg.v > ctx.state.best[slot]:
        ctx.state.best[slot] = msg.v
    ctx.state.total += i64(msg.v)
    if msg.k == 7:
        return None
    while ctx.state.total > 1000:
        ctx.state.total -= 1000
    return TallyOut(best=ctx.state.best[slot], total=ctx.state.total, seen=ctx.state.seen)


@ringcore.message(type_id=_T + 17)
class Vec:
    a: f32[16]
    n: u32


@ringcore.message(type_id=_T + 18)
class VecTotal:
    total: f32
    count: u32


LIMIT = 20


@ringcore.kernel(id="np_overrun")
def overrun_kernel(ctx, msg: Vec) -> VecTotal:
    s = f32(0.0)
    c = u32(0)
    for i in range(LIMIT):
        if i == msg.n:
            break
        s += msg.a[i]
        c += 1
    return VecTotal(total=s, count=c)


@ringcore.kernel(id="np_partial_sum")
def partial_sum_kernel(ctx, msg: Vec) -> VecTotal:
    s = f32(0.0)
    c = u32(0)
    for i in range(16):
        if i % 4 == 3:
            continue
        if i == 13:
            break
        s += msg.a[i]
        c += 1
    k = u32(0)
    while k < msg.n:
        s += msg.a[k % 16] * f32(0.5)
        k += 1
    return VecTotal(total=s, count=c + k)


class CfgState:
    scale: f32 = 2.5
    table: i32[4]


@ringcore.kernel(id="np_cfg", state=CfgState)
def cfg_kernel(ctx, msg: TallyIn) -> TallyOut:
    v = ctx.state.table[msg.k % 4]
    return TallyOut(best=v + i32(ctx.state.scale), total=i64(msg.v), seen=msg.k)


@ringcore.message(type_id=_T + 19)
class Spray:
    target: u32
    count: u32
    base: i32


@ringcore.message(type_id=_T + 20)
class Sprayed:
    sent: u32
    why: u32


@ringcore.kernel(id="np_spray")
def spray_kernel(ctx, msg: Spray) -> Sprayed:
    sent = u32(0)
    why = u32(0)
    for i in range(msg.count):
        r = ctx.send(msg.target, LoopIn(n=msg.base + i, k=i, lim=0))
        if r != DeliveryResult.DELIVERED:
            why = u32(1) if r == DeliveryResult.QUEUE_FULL else u32(2)
            break
        sent += 1
    ctx.send("np_loops", LoopIn(n=msg.base, k=-1, lim=1))
    return Sprayed(sent=sent, why=why)


def _records(kernel, _n: int, /, **columns) -> np.ndarray:
    r = kernel.input_type.array(_n)
    for k, v in columns.items():
        r[k] = v
    return r


_rng = np.random.default_rng


def _specials32(rng, n: int) -> np.ndarray:
    """f32 values with the awkward ones mixed in: NaN, infinities, signed zeros, huge and tiny."""
    x = (rng.standard_normal(n) * 10).astype(np.float32)
    sp = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 3e9, -3e9, 1e-40, 127.9, -128.5, 255.5, 1.5, -2.5],
                  np.float32)
    idx = rng.random(n) < 0.3
    x[idx] = rng.choice(sp, int(idx.sum()))
    return x


def test_loops_with_early_return_break_continue():
    rng = _rng(1)
    n = 600
    recs = _records(loops_kernel, n, n=rng.integers(-3, 25, n), k=rng.integers(-1, 25, n),
                    lim=rng.integers(-5, 120, n))
    recs["n"][:5] = 13
    ref, _ = compare_kernel(loops_kernel, recs)
    codes = ref.replies["code"][ref.has_reply]
    assert {1, 2} <= set(codes.tolist()) and (~ref.has_reply).any()


def test_while_loop_with_break_and_failure():
    rng = _rng(2)
    n = 400
    recs = _records(collatz_kernel, n, x=rng.integers(0, 60, n), cap=rng.integers(0, 40, n),
                    strict=rng.random(n) < 0.3)
    ref, _ = compare_kernel(collatz_kernel, recs)
    assert ref.failed and ref.has_reply.sum() > n // 2


def test_functions_fail_and_return_early():
    rng = _rng(3)
    n = 500
    recs = _records(funcs_kernel, n, a=rng.integers(-20, 20, n), b=rng.integers(-6, 7, n))
    recs["a"][:3] = [-2**31, -2**31, 7]
    recs["b"][:3] = [-1, 0, -2**31]
    ref, _ = compare_kernel(funcs_kernel, recs)
    assert set(ref.failed.values()) == {"ZeroDivisionError"} and ref.has_reply.any()


def test_message_local_arrays_with_lane_indices():
    rng = _rng(4)
    n = 300
    recs = _records(lut_kernel, n, k=rng.integers(-50, 50, n), bias=rng.integers(-10, 10, n),
                    w=rng.standard_normal((n, 4)))
    compare_kernel(lut_kernel, recs)


def test_atomics_return_old_values_in_lane_order():
    rng = _rng(5)
    n = 700
    v = rng.integers(-2000, 2000, n)
    f = rng.standard_normal(n).astype(np.float32)
    f[::37] = np.nan
    f[::41] = -0.0
    recs = _records(atomics_kernel, n, k=rng.integers(-30, 30, n), v=v, f=f, u=rng.integers(0, 8, n))
    recs["k"][::9] = 99
    compare_kernel(atomics_kernel, recs)


def test_atomics_wrap_and_float_order():
    rng = _rng(6)
    n = 300
    recs = _records(atomics_kernel, n, k=rng.integers(0, 3, n), v=rng.integers(-2**31, 2**31, n),
                    f=(rng.standard_normal(n) * 1e7).astype(np.float32), u=rng.integers(0, 2**32, n))

    def init(st):
        st["count"] = 2**32 - 100
        st["bins"] = 2**32 - 150
        st["fsum"] = 3.0e7
        st["dec"] = -2**63 + 50
        st["hi"] = np.nan  # a NaN that is there first stays (Python's max keeps its first argument)
    compare_kernel(atomics_kernel, recs, init)


def test_casts_min_max_and_math_builtins():
    rng = _rng(7)
    n = 2000
    x = _specials32(rng, n)
    y = _specials32(rng, n)
    d = rng.standard_normal(n) * 1e3
    d[::11] = np.nan
    recs = _records(math_kernel, n, x=x, y=y, d=d, i=rng.integers(-2**31, 2**31, n), u=rng.integers(0, 256, n))
    recs["i"][:4] = [-2**31, 2**31 - 1, 0, -1]
    compare_kernel(math_kernel, recs)


def test_clock_thread_id_and_kernel_number():
    n = 50
    recs = _records(clock_kernel, n, v=np.arange(n))
    ref, _ = compare_kernel(clock_kernel, recs, kernel_number=11)
    assert (ref.replies["kn"][ref.has_reply] == 11).all()
    assert (ref.replies["tid"][ref.has_reply] == np.flatnonzero(ref.has_reply)).all()


def test_serial_kernel_sees_state_of_earlier_messages():
    rng = _rng(8)
    n = 400
    recs = _records(tally_kernel, n, k=rng.integers(0, 9, n), v=rng.integers(-100, 400, n))
    kir = ringcore.lang.lower(tally_kernel)
    assert kir.serial
    ref, _ = compare_kernel(tally_kernel, recs)
    assert ref.state["seen"][0] == n


def test_uniform_index_out_of_range_fails_every_lane():
    rng = _rng(9)
    n = 64
    recs = _records(overrun_kernel, n, a=rng.standard_normal((n, 16)), n=rng.integers(0, 30, n))
    ref, _ = compare_kernel(overrun_kernel, recs)
    assert set(ref.failed) == {i for i in range(n) if recs["n"][i] >= 16}
    assert len(ref.failed) and ref.has_reply.any()


def test_uniform_break_and_continue_and_lane_while():
    rng = _rng(10)
    n = 200
    recs = _records(partial_sum_kernel, n, a=rng.standard_normal((n, 16)), n=rng.integers(0, 40, n))
    compare_kernel(partial_sum_kernel, recs)


def test_read_only_state_is_uniform():
    rng = _rng(11)
    n = 100
    recs = _records(cfg_kernel, n, k=rng.integers(0, 100, n), v=rng.integers(-5, 5, n))

    def init(st):
        st["table"] = [10, -20, 30, -40]
    kir = ringcore.lang.lower(cfg_kernel)
    assert not kir.serial
    compare_kernel(cfg_kernel, recs, init)


def test_sends_in_a_loop_with_break():
    rng = _rng(12)
    n = 300
    recs = _records(spray_kernel, n, target=rng.integers(0, 4, n), count=rng.integers(0, 7, n),
                    base=rng.integers(-100, 100, n))
    ref, got = compare_kernel(spray_kernel, recs)
    assert len(ref.sent) > n and set(ref.replies["why"].tolist()) >= {0, 1, 2}


@pytest.mark.parametrize("name", ["echo", "tee", "accumulate", "histogram", "sink", "bounce", "relay", "router",
                                  "flood", "fragile", "evens_only", "thermometer"])
def test_conformance_kernels(name):
    from ringcore.testing import kernels as K

    kernel = getattr(K, name)
    rng = _rng(13)
    n = 300
    spec = kernel.input_type
    recs = spec.array(n)
    for field, t in spec.fields.items():
        if t.kind == "f":
            recs[field] = rng.standard_normal(n) * 100
        elif t.kind == "u":
            recs[field] = rng.integers(0, 9, n)
        else:
            recs[field] = rng.integers(-100, 100, n)
    compare_kernel(kernel, recs)


def test_vector_add_demo_kernel():
    from ringcore.demo import vector_add as V

    rng = _rng(14)
    n = 1000
    recs = _records(V.vector_add, n, a=_specials32(rng, n * 16).reshape(n, 16),
                    b=_specials32(rng, n * 16).reshape(n, 16))
    ref, got = compare_kernel(V.vector_add, recs)
    assert got.has_reply.all()


# -- hand-built IR: operations at their edges, against Python computations ---------------------------

_INTS = [u8, u16, u32, u64, i8, i16, i32, i64]
_FLOATS = [f32, f64]
_ALL = _INTS + _FLOATS + [bool_]
_next_type_id = [0x7E570400]


def _message(name: str, **fields):
    """A message class built at run time (the hand-built kernels need one per type combination)."""
    _next_type_id[0] += 1
    cls = type(name, (), {"__annotations__": dict(fields), "__module__": __name__})
    return ringcore.message(type_id=_next_type_id[0])(cls)


def _kir(name, inp, out, body, locals_=None, *, state=None, serial=False, funcs=None, errors=None) -> KernelIR:
    return KernelIR(
        name=name, input=message_spec(inp), output=message_spec(out) if out is not None else None,
        state=dict(state or {}), locals=dict(locals_ or {}), body=body, funcs=dict(funcs or {}),
        errors=list(errors or []), send_targets=[], serial=serial, atomics=frozenset(), uses_64bit=None,
        uses_now=False, filename="<hand-built>", first_line=1, source="",
    )


def _msg(name, t):
    return Load(t, Ref("msg", name, None, t))


def _loc(name, t):
    return Load(t, Ref("local", name, None, t))


def _elem(space, name, t, size, index):
    return Load(t, Ref(space, name, index, t[size] if False else ArrayTypeOf(t, size)))


def ArrayTypeOf(t, size):  # noqa: N802 (reads like a type)
    return t[size]


def _wrap(v: int, t) -> int:
    v &= (1 << t.bits) - 1
    if t.kind == "i" and v >= 1 << (t.bits - 1):
        v -= 1 << t.bits
    return v


def _edge_values(t) -> list:
    if t.kind == "b":
        return [False, True]
    if t.is_integer:
        lo, hi = (0, (1 << t.bits) - 1) if t.kind == "u" else (-(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1)
        vals = {lo, hi, lo + 1, hi - 1, 0, 1, 2, 3, 7, t.bits - 1, t.bits, t.bits + 1, 100 % (hi + 1)}
        if t.kind == "i":
            vals |= {-1, -2, -3, -7, -t.bits}
        return sorted(v for v in vals if lo <= v <= hi)
    return [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 3.0, -7.0, 0.1, 1e30, -1e-30, math.inf, -math.inf, math.nan,
            float(np.finfo(t.dtype).max), float(np.finfo(t.dtype).tiny) / 4]


def _same(a, b) -> bool:
    """Bit-exact equality of two scalars of one type (NaNs equal each other)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.dtype.kind == "f" and np.isnan(a) and np.isnan(b):
        return True
    return a.tobytes() == b.tobytes()


def _ulps(a, b) -> int:
    a, b = np.asarray(a), np.asarray(b)
    if np.isnan(a) or np.isnan(b) or np.isinf(a) or np.isinf(b):
        return 0 if _same(a, b) else 1 << 30
    it = np.int32 if a.dtype == np.float32 else np.int64
    ia, ib = int(a.view(it)), int(b.view(it))
    ia = ia if ia >= 0 else -(ia & ((1 << (a.dtype.itemsize * 8 - 1)) - 1))
    ib = ib if ib >= 0 else -(ib & ((1 << (b.dtype.itemsize * 8 - 1)) - 1))
    return abs(ia - ib)


def _run_three_ways(name, t_in, t_out, make_expr, pairs, oracle, arity=2, lane_ulps=0):
    """Evaluate ``make_expr(operands...)`` on every tuple of ``pairs`` and compare with ``oracle``.

    Three ways: lanes (msg fields, vectorised), lanes run serially, and uniform (constants, one numpy
    scalar per value, the vectorised target's scalar path).
    """
    fields = {f"x{k}": t_in[k] for k in range(arity)}
    In = _message(f"{name}_in", **fields)
    Out = _message(f"{name}_out", r=t_out)
    ops = [_msg(f"x{k}", t_in[k]) for k in range(arity)]
    body = [Return(MsgValue(message_spec(Out), {"r": make_expr(*ops)}))]
    recs = np.zeros(len(pairs), message_spec(In).dtype)
    for k in range(arity):
        recs[f"x{k}"] = [p[k] for p in pairs]
    expected = [oracle(*p) for p in pairs]
    for serial in (False, True):
        got, _ = run_numpy(_kir(name, In, Out, body, serial=serial), recs, None)
        assert got.has_reply.all() and not got.failed
        for p, e, g in zip(pairs, expected, got.replies["r"]):
            e = np.asarray(e, t_out.dtype)
            ok = _same(e, g) or (lane_ulps and not serial and _ulps(e, g) <= lane_ulps)
            assert ok, f"{name}{p}: expected {e!r}, got {g!r} (serial={serial})"
    # The uniform path: all operands constant, so the generated code computes numpy scalars.
    size = len(pairs)
    Out2 = _message(f"{name}_uout", r=t_out[size])
    arr = t_out[size]
    body2 = [ArrayZero(Ref("local", "res", None, arr))]
    for j, p in enumerate(pairs):
        consts = [Const(t_in[k], p[k]) for k in range(arity)]
        body2.append(Assign(Ref("local", "res", Const(i32, j), t_out), make_expr(*consts)))
    body2.append(Return(MsgValue(message_spec(Out2), {"r": Ref("local", "res", None, arr)})))
    kir2 = _kir(name + "_u", In, Out2, body2, {"res": arr})
    src = target.emit(kir2)
    assert "np.zeros((n," not in src  # every value here is uniform
    got2, _ = run_numpy(kir2, recs[:3], None, src=src)
    for j, (p, e) in enumerate(zip(pairs, expected)):
        for lane in range(min(3, len(recs))):
            g = got2.replies["r"][lane][j]
            assert _same(np.asarray(e, t_out.dtype), g), f"{name}{p} uniform: expected {e!r}, got {g!r}"


def _int_oracle(op, t):
    bits = t.bits

    def f(a, b):
        a, b = int(a), int(b)
        if op == "add":
            return _wrap(a + b, t)
        if op == "sub":
            return _wrap(a - b, t)
        if op == "mul":
            return _wrap(a * b, t)
        if op == "floordiv":
            return 0 if b == 0 else _wrap(a // b, t)
        if op == "mod":
            return 0 if b == 0 else _wrap(a % b, t)
        if op == "lshift":
            return 0 if b < 0 or b >= bits else _wrap(a << b, t)
        if op == "rshift":
            if b < 0 or b >= bits:
                return -1 if a < 0 else 0
            return a >> b
        if op == "and_":
            return _wrap(a & b, t)
        if op == "or_":
            return _wrap(a | b, t)
        if op == "xor":
            return _wrap(a ^ b, t)
        raise AssertionError(op)
    return f


@pytest.mark.parametrize("t", _INTS, ids=lambda t: t.name)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "floordiv", "mod", "lshift", "rshift", "and_", "or_", "xor"])
def test_integer_binary_ops_wrap_and_follow_python(op, t):
    vals = _edge_values(t)
    pairs = [(a, b) for a in vals for b in vals]
    _run_three_ways(f"int_{op}_{t.name}", [t, t], t, lambda a, b: Binary(t, op, a, b), pairs, _int_oracle(op, t))


def _np_divmod(a, b):
    """numpy's npy_divmod, written out from the IR's documentation (floor division and modulo of floats)."""
    a, b = np.asarray(a)[()], np.asarray(b)[()]
    mod = np.fmod(a, b)
    if b == 0:
        return a / b, mod
    div = (a - mod) / b
    if mod != 0:
        if (b < 0) != (mod < 0):
            mod = mod + b
            div = div - 1
    else:
        mod = np.copysign(a.dtype.type(0), b)
    if div != 0:
        fl = np.floor(div)
        if div - fl > 0.5:
            fl = fl + 1
    else:
        fl = np.copysign(a.dtype.type(0), a / b)
    return fl, mod


@pytest.mark.parametrize("t", _FLOATS, ids=lambda t: t.name)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "floordiv", "mod", "pow"])
def test_float_binary_ops(op, t):
    vals = [t.dtype.type(v) for v in _edge_values(t)]
    pairs = [(a, b) for a in vals for b in vals]
    ref = {
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b, "pow": lambda a, b: a ** b,
        "floordiv": lambda a, b: _np_divmod(a, b)[0], "mod": lambda a, b: _np_divmod(a, b)[1],
    }[op]
    with np.errstate(all="ignore"):
        _run_three_ways(f"float_{op}_{t.name}", [t, t], t, lambda a, b: Binary(t, op, a, b), pairs, ref)


@pytest.mark.parametrize("t", _INTS + _FLOATS, ids=lambda t: t.name)
@pytest.mark.parametrize("op", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparisons(op, t):
    vals = [t.dtype.type(v) for v in _edge_values(t)]
    pairs = [(a, b) for a in vals for b in vals]
    py = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "lt": lambda a, b: a < b,
          "le": lambda a, b: a <= b, "gt": lambda a, b: a > b, "ge": lambda a, b: a >= b}[op]
    _run_three_ways(f"cmp_{op}_{t.name}", [t, t], bool_, lambda a, b: Compare(bool_, op, a, b), pairs,
                    lambda a, b: bool(py(float(a), float(b)) if t.is_float else py(int(a), int(b))))


@pytest.mark.parametrize("t", _INTS, ids=lambda t: t.name)
def test_integer_unary_abs_min_max(t):
    vals = _edge_values(t)
    singles = [(v,) for v in vals]
    _run_three_ways(f"neg_{t.name}", [t], t, lambda a: Unary(t, "neg", a), singles, lambda a: _wrap(-a, t), 1)
    _run_three_ways(f"inv_{t.name}", [t], t, lambda a: Unary(t, "invert", a), singles, lambda a: _wrap(~a, t), 1)
    _run_three_ways(f"abs_{t.name}", [t], t, lambda a: Builtin(t, "abs", [a]), singles,
                    lambda a: _wrap(abs(a), t), 1)
    pairs = [(a, b) for a in vals for b in vals]
    _run_three_ways(f"min_{t.name}", [t, t], t, lambda a, b: Builtin(t, "min", [a, b]), pairs,
                    lambda a, b: b if b < a else a)
    _run_three_ways(f"max_{t.name}", [t, t], t, lambda a, b: Builtin(t, "max", [a, b]), pairs,
                    lambda a, b: b if b > a else a)
    triples = [(a, b, c) for a in vals[::2] for b in vals[::3] for c in vals[::3]]
    _run_three_ways(f"clamp_{t.name}", [t, t, t], t, lambda a, b, c: Builtin(t, "clamp", [a, b, c]), triples,
                    lambda a, b, c: min(max(a, b), c), 3)


@pytest.mark.parametrize("t", _FLOATS, ids=lambda t: t.name)
def test_float_builtins_follow_the_reference(t):
    from ringcore.lang import builtins as B

    vals = [t.dtype.type(v) for v in _edge_values(t)]
    singles = [(v,) for v in vals]
    with np.errstate(all="ignore"):
        for name in ["sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil"]:
            _run_three_ways(f"{name}_{t.name}", [t], t, lambda a, name=name: Builtin(t, name, [a]), singles,
                            getattr(B, name), 1)
        _run_three_ways(f"fabs_{t.name}", [t], t, lambda a: Builtin(t, "abs", [a]), singles, abs, 1)
        _run_three_ways(f"fneg_{t.name}", [t], t, lambda a: Unary(t, "neg", a), singles, lambda a: -a, 1)
        _run_three_ways(f"isnan_{t.name}", [t], bool_, lambda a: Builtin(bool_, "isnan", [a]), singles, B.isnan, 1)
        pairs = [(a, b) for a in vals for b in vals]
        # Python's min/max: a NaN first argument wins, a NaN second argument loses; -0.0 vs 0.0 keeps the first.
        _run_three_ways(f"fmin_{t.name}", [t, t], t, lambda a, b: Builtin(t, "min", [a, b]), pairs, min)
        _run_three_ways(f"fmax_{t.name}", [t, t], t, lambda a, b: Builtin(t, "max", [a, b]), pairs, max)
        _run_three_ways(f"fpow_{t.name}", [t, t], t, lambda a, b: Builtin(t, "pow", [a, b]), pairs, B.pow)
        triples = [(a, b, c) for a in vals[::2] for b in vals[::2] for c in vals[::3]]
        _run_three_ways(f"fma_{t.name}", [t, t, t], t, lambda a, b, c: Builtin(t, "fma", [a, b, c]), triples,
                        B.fma, 3)
        _run_three_ways(f"fclamp_{t.name}", [t, t, t], t, lambda a, b, c: Builtin(t, "clamp", [a, b, c]),
                        triples, B.clamp, 3)


def _exact_fma64(a, b, c):
    """The reference's f64 fma (exact rationals, rounded once)."""
    from ringcore.lang import builtins as B

    return B.fma(np.float64(a), np.float64(b), np.float64(c))


def test_fma_f64_rounds_once_on_lanes():
    rng = _rng(50)
    n = 3000
    a = rng.standard_normal(n) * np.exp2(rng.integers(-60, 60, n))
    b = rng.standard_normal(n) * np.exp2(rng.integers(-60, 60, n))
    c = -a * b * (1 + rng.standard_normal(n) * 2.0 ** -40)  # heavy cancellation: the product's low bits matter
    c[::3] = rng.standard_normal(len(c[::3]))
    a[:6] = [1e300, 1e-300, 3.0, 0.0, -0.0, 1 + 2 ** -30]
    b[:6] = [1e300, 1e-300, np.inf, -5.0, 2.0, 1 - 2 ** -30]
    c[:6] = [1.0, 2.0 ** -1074, 1.0, -0.0, -0.0, -1.0]
    triples = list(zip(a.tolist(), b.tolist(), c.tolist()))
    _run_three_ways("fma64_lanes", [f64, f64, f64], f64, lambda x, y, z: Builtin(f64, "fma", [x, y, z]),
                    triples[:300], _exact_fma64, 3)
    In = _message("fma64_many_in", x0=f64, x1=f64, x2=f64)
    Out = _message("fma64_many_out", r=f64)
    body = [Return(MsgValue(message_spec(Out), {"r": Builtin(f64, "fma", [_msg("x0", f64), _msg("x1", f64),
                                                                          _msg("x2", f64)])}))]
    recs = np.zeros(n, message_spec(In).dtype)
    recs["x0"], recs["x1"], recs["x2"] = a, b, c
    got, _ = run_numpy(_kir("fma64_many", In, Out, body), recs, None)
    for i, (x, y, z) in enumerate(triples):
        assert _same(_exact_fma64(x, y, z), got.replies["r"][i]), (x, y, z)


def test_pow_on_lanes_equals_scalar_pow():
    """numpy's array ``power`` differs from its scalar ``**`` (libm); the target must give the latter."""
    rng = _rng(51)
    for t in (f32, f64):
        n = 20000
        a = (np.abs(rng.standard_normal(n)) * 10).astype(t.dtype)
        b = (rng.standard_normal(n) * 3).astype(t.dtype)
        a[::7] = -np.round(a[::7])
        b[::11] = np.round(b[::11])
        In = _message(f"pow_many_{t.name}_in", x0=t, x1=t)
        Out = _message(f"pow_many_{t.name}_out", r=t)
        body = [Return(MsgValue(message_spec(Out), {"r": Binary(t, "pow", _msg("x0", t), _msg("x1", t))}))]
        recs = np.zeros(n, message_spec(In).dtype)
        recs["x0"], recs["x1"] = a, b
        got, _ = run_numpy(_kir("pow_many", In, Out, body), recs, None)
        with np.errstate(all="ignore"):
            want = [x ** y for x, y in zip(a, b)]
        bad = [i for i, (w, g) in enumerate(zip(want, got.replies["r"])) if not _same(w, g)]
        assert not bad, [(a[i], b[i], want[i], got.replies["r"][i]) for i in bad[:5]]


def test_fma_f32_rounds_once():
    # a*b+c where the f32 product alone would round away the answer.
    a = np.float32(1 + 2 ** -12)
    c = np.float32(-(1 + 2 ** -11))
    _run_three_ways("fma_once", [f32, f32, f32], f32, lambda x, y, z: Builtin(f32, "fma", [x, y, z]),
                    [(a, a, c)], lambda x, y, z: np.float32(2 ** -24), 3)


def _round_int(v: int, mant: int) -> float:
    """``v`` rounded to ``mant`` significant bits, to nearest, ties to even (exactly)."""
    if v == 0:
        return 0.0
    s, m = (-1 if v < 0 else 1), abs(v)
    shift = m.bit_length() - mant
    if shift > 0:
        q, r = divmod(m, 1 << shift)
        half = 1 << (shift - 1)
        if r > half or (r == half and q & 1):
            q += 1
        m = q << shift
    return s * float(m)


def _cast_oracle(src, dst):
    def f(x):
        if dst.kind == "b":
            return bool(x != 0) if not (src.is_float and np.isnan(x)) else True
        if src.kind == "b":
            return int(bool(x)) if not dst.is_float else float(bool(x))
        if dst.is_integer:
            v = math.trunc(float(x)) if src.is_float else int(x)
            return _wrap(v, dst)
        if src.is_integer:
            with np.errstate(over="ignore"):
                return dst.dtype.type(_round_int(int(x), 24 if dst.bits == 32 else 53))
        with np.errstate(over="ignore"):
            return dst.dtype.type(x)
    return f


@pytest.mark.parametrize("src", _ALL, ids=lambda t: t.name)
def test_casts(src):
    vals = _edge_values(src)
    if src.is_float:
        vals += [127.9, -128.5, 255.99, -0.99, 2.0 ** 62, -(2.0 ** 63) + 2 ** 40, 65535.7, 4294967295.5]
    for dst in _ALL:
        xs = vals
        if src.is_float and dst.is_integer:
            xs = [v for v in vals if math.isfinite(v) and abs(v) < 2.0 ** 63]  # the frontend checks the rest
        singles = [(src.dtype.type(v),) for v in xs]
        _run_three_ways(f"cast_{src.name}_{dst.name}", [src], dst, lambda a, dst=dst: Cast(dst, a), singles,
                        _cast_oracle(src, dst), 1)


def test_int_to_f32_rounds_once():
    # 2**24 + 1 + 2**-? : int64 values whose f64 rounding would then round the wrong way to f32.
    v = (1 << 60) + (1 << 36) + 1  # exactly halfway-plus-a-bit for f32, but f64 drops the +1
    got = _cast_oracle(i64, f32)(v)
    assert got == np.float32(float((1 << 60) + (1 << 37)))
    _run_three_ways("cast_i64_f32_once", [i64], f32, lambda a: Cast(f32, a), [(np.int64(v),)], _cast_oracle(i64, f32), 1)


def test_logical_and_select():
    pairs = [(a, b) for a in (False, True) for b in (False, True)]
    _run_three_ways("and", [bool_, bool_], bool_, lambda a, b: Logical(bool_, "and", a, b), pairs, lambda a, b: a and b)
    _run_three_ways("or", [bool_, bool_], bool_, lambda a, b: Logical(bool_, "or", a, b), pairs, lambda a, b: a or b)
    _run_three_ways("not", [bool_], bool_, lambda a: Unary(bool_, "not", a), [(False,), (True,)], lambda a: not a, 1)
    _run_three_ways("bxor", [bool_, bool_], bool_, lambda a, b: Binary(bool_, "xor", a, b), pairs,
                    lambda a, b: a != b)
    triples = [(c, a, b) for c in (False, True) for a in (-5, 7) for b in (2**31 - 1, -2**31)]
    _run_three_ways("select", [bool_, i32, i32], i32, lambda c, a, b: Select(i32, c, a, b), triples,
                    lambda c, a, b: a if c else b, 3)


# -- random kernels: the mask logic against the reference -------------------------------------------

_FUZZ_HEADER = '''
import ringcore
from ringcore import i32, u32, f32

@ringcore.message(type_id={tid1})
class FzIn:
    a: i32
    b: i32
    n: u32
    f: f32
    v: i32[8]
    w: i32[4]

@ringcore.message(type_id={tid2})
class FzOut:
    a: i32
    b: i32
    c: i32
    f: f32
    t: i32[4]

@ringcore.message(type_id={tid3})
class FzTab:
    t: i32[4]

class FzState:
    cnt: i32 = 0
    hist: u32[4]

'''


class _FuzzKernel:
    """A random kernel: nested if/for/while, break/continue, return/raise, a function, atomics."""

    def __init__(self, seed):
        self.r = random.Random(seed)
        self.seed = seed
        self.loopvars = []
        self.depth = 0
        self.in_loop = 0
        self.whiles = 0

    def var(self):
        opts = ["a", "b", "c"] + [f"i32({v})" for v in self.loopvars]
        return self.r.choice(opts)

    def atom(self):
        k = self.r.random()
        if k < 0.5:
            return self.var()
        if k < 0.65:
            return f"i32({self.r.randint(-9, 9)})"
        if k < 0.75:
            return "msg.a"
        if k < 0.85:
            return f"msg.v[{self.var()} % 8]"
        if k < 0.9:
            return f"tab.t[{self.var()} % 4]"
        return "i32(msg.n)"

    def expr(self, d=0):
        if d > 1 or self.r.random() < 0.35:
            return self.atom()
        k = self.r.random()
        if k < 0.7:
            op = self.r.choice(["+", "-", "*", "//", "%", "&", "|", "^", ">>", "<<"])
            right = self.expr(d + 1)
            if op in (">>", "<<"):
                right = f"({right} & 7)"
            return f"({self.expr(d + 1)} {op} {right})"
        if k < 0.75:
            return f"({self.var()} {self.r.choice(['and', 'or'])} {self.var()})"
        if k < 0.8:
            return f"min({self.var()}, {self.var()})"
        if k < 0.85:
            return f"abs({self.var()})"
        if k < 0.9:
            return f"g(({self.expr(d+1)}), {self.var()})"
        return f"({self.expr(d + 1)} if {self.cond(d + 1)} else {self.expr(d + 1)})"

    def cond(self, d=0):
        k = self.r.random()
        if k < 0.6:
            op = self.r.choice(["<", "<=", ">", ">=", "==", "!="])
            return f"{self.expr(d + 1)} {op} {self.expr(d + 1)}"
        if k < 0.75:
            return f"{self.var()} % {self.r.randint(2, 5)} == {self.r.randint(0, 1)}"
        if k < 0.85 and d < 2:
            return f"({self.cond(d + 1)}) {self.r.choice(['and', 'or'])} ({self.cond(d + 1)})"
        if k < 0.9:
            return f"msg.f > f32({self.r.randint(-3, 3)})"
        return f"not ({self.cond(d + 1)})"

    def block(self, ind, n=None):
        n = n if n is not None else self.r.randint(1, 4)
        out = []
        for _ in range(n):
            out.extend(self.stmt(ind))
        return out

    def stmt(self, ind):
        p = "    " * ind
        k = self.r.random()
        deep = self.depth >= 3
        if k < 0.35 or deep and k < 0.8:
            v = self.r.choice(["a", "b", "c"])
            return [f"{p}{v} = {self.expr()}"]
        if k < 0.4:
            return [f"{p}ff = ff * f32(0.5) + f32({v})" for v in [self.r.choice(['a', 'b', 'c'])]]
        if k < 0.45:
            return [f"{p}tab.t[{self.var()} % 4] = {self.expr()}"]
        if k < 0.46:
            return [f"{p}{self.r.choice(['tab = FzTab()', 'tab = FzTab(t=msg.w)'])}"]
        if k < 0.47:
            return [f"{p}c = c ^ i32(ctx.thread_id) ^ i32(ctx.header.hops) ^ i32(ctx.header.type_id & u32(7))"]
        if k < 0.48:
            return [f"{p}ctx.atomic_add(\"cnt\", {self.var()})", f"{p}ctx.atomic_add(\"hist\", u32(1), {self.var()} % 4)"]
        if k < 0.6 and not deep:
            self.depth += 1
            out = [f"{p}if {self.cond()}:"] + self.block(ind + 1)
            if self.r.random() < 0.5:
                out += [f"{p}else:"] + self.block(ind + 1)
            self.depth -= 1
            return out
        if k < 0.7 and not deep:
            self.depth += 1
            lv = f"i{len(self.loopvars)}"
            rng = self.r.choice([f"{self.r.randint(0, 6)}", "msg.n % 5", f"{self.var()} % 4", f"1, {self.var()} % 6, 2",
                                 "5, -1, -2"])
            out = [f"{p}for {lv} in range({rng}):"]
            self.loopvars.append(lv)
            self.in_loop += 1
            out += self.block(ind + 1)
            self.in_loop -= 1
            self.loopvars.pop()
            self.depth -= 1
            return out
        if k < 0.76 and not deep:
            self.depth += 1
            w = f"w{self.whiles}"
            self.whiles += 1
            out = [f"{p}{w} = i32(0)", f"{p}while ({self.cond()}) and {w} < {self.r.randint(1, 6)}:", f"{p}    {w} += 1"]
            self.in_loop += 1
            out += self.block(ind + 1)
            self.in_loop -= 1
            self.depth -= 1
            return out
        if k < 0.84 and self.in_loop:
            return [f"{p}if {self.cond()}:", f"{p}    {self.r.choice(['break', 'continue'])}"]
        if k < 0.9:
            if self.r.random() < 0.3:
                return [f"{p}if {self.cond()}:", f"{p}    return None"]
            return [f"{p}if {self.cond()}:", f"{p}    return FzOut(a=a, b=b, c={self.expr()}, f=ff, t=tab.t)"]
        if k < 0.93:
            return [f"{p}if {self.cond()}:", f"{p}    raise ValueError(\"boom\")"]
        if k < 0.96:
            return [f"{p}c = msg.v[{self.var()}]"]  # may be out of range: IndexError
        v = self.r.choice(["a", "b", "c"])
        return [f"{p}{v} += {self.expr()}"]

    def func(self):
        lines = ["@ringcore.func", "def g(x: i32, y: i32) -> i32:"]
        r = self.r
        lines.append(f"    for j in range({r.randint(0, 4)}):")
        lines.append(f"        if (x + j) % {r.randint(2, 5)} == 0:")
        lines.append("            return x * j - y")
        lines.append("        x = x ^ (y >> (j & 7))")
        if r.random() < 0.4:
            lines.append(f"    if y == {r.randint(-5, 5)}:")
            lines.append("        raise ZeroDivisionError(\"y\")")
        lines.append("    return x // (y | 1)")
        return lines

    def module(self, tid):
        src = _FUZZ_HEADER.format(tid1=tid, tid2=tid + 1, tid3=tid + 2)
        src += "\n".join(self.func()) + "\n\n\n"
        body = ["    a = msg.a", "    b = msg.b", "    c = i32(0)", "    ff = msg.f", "    tab = FzTab()"]
        body += self.block(1, self.r.randint(3, 8))
        body.append("    return FzOut(a=a, b=b, c=c, f=ff, t=tab.t)")
        src += f'@ringcore.kernel(id="fuzz_{self.seed}", state=FzState)\ndef kernel(ctx, msg: FzIn) -> FzOut | None:\n'
        src += "\n".join(body) + "\n"
        return src


@pytest.mark.parametrize("seed", range(150))
def test_random_kernels_match_the_reference(seed, tmp_path):
    """Random programs (typed so that the reference wraps like the IR), vectorised and serial."""
    src = _FuzzKernel(seed).module(0x7E590000 + 4 * seed)
    path = tmp_path / f"fuzz_kernel_{seed}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"fuzz_kernel_{seed}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rng = _rng(seed)
    n = 200
    recs = _records(mod.kernel, n, a=rng.integers(-20, 20, n), b=rng.integers(-20, 20, n), n=rng.integers(0, 9, n),
                    f=rng.standard_normal(n) * 3, v=rng.integers(-10, 10, (n, 8)), w=rng.integers(-10, 10, (n, 4)))
    recs["a"][:3] = [2**31 - 1, -2**31, 0]
    compare_kernel(mod.kernel, recs)


# -- hand-built IR: atomics, range trip counts, structure ----------------------------------------------


def _seq_atomic(op, old, v, e):
    """One atomic step in the reference's words (KernelContext): the new value."""
    if op == "add":
        return old + v
    if op == "sub":
        return old - v
    if op == "min":
        return min(old, v)
    if op == "max":
        return max(old, v)
    if op == "exchange":
        return v
    return v if old == e else old  # cas


@pytest.mark.parametrize("where", ["scalar", "uniform_index", "lane_index"])
@pytest.mark.parametrize("t", [i32, u8, i64, f32, f64], ids=lambda t: t.name)
@pytest.mark.parametrize("op", ["add", "sub", "min", "max", "exchange", "cas"])
def test_atomic_ops_in_lane_order(op, t, where):
    In = _message(f"at_{op}_{t.name}_{where}_in", k=i32, v=t, e=t, skip=bool_)
    Out = _message(f"at_{op}_{t.name}_{where}_out", r=t)
    arr_t = t[4]
    if where == "scalar":
        ref = Ref("state", "sc", None, t)
    elif where == "uniform_index":
        ref = Ref("state", "arr", Const(i32, 2), t)
    else:
        ref = Ref("state", "arr", _msg("k", i32), t)
    atomic = Atomic(t, op, ref, _msg("v", t), _msg("e", t) if op == "cas" else None)
    body = [
        If(_msg("skip", bool_), [Return(None)], []),
        Assign(Ref("local", "r", None, t), atomic),
        Return(MsgValue(message_spec(Out), {"r": _loc("r", t)})),
    ]
    rng = _rng(21)
    n = 500
    vals = [t.dtype.type(v) for v in _edge_values(t)]
    recs = np.zeros(n, message_spec(In).dtype)
    recs["k"] = rng.integers(0, 4, n)
    recs["v"] = rng.choice(np.array(vals, t.dtype), n)
    recs["e"] = rng.choice(np.array(vals, t.dtype), n)
    recs["skip"] = rng.random(n) < 0.2
    if op == "cas":  # make some compares succeed: expect what is probably there
        recs["e"][1::3] = recs["v"][:-1:3]
    state_t = StateSpec("S", {"sc": t, "arr": arr_t}, {})
    for serial in (False, True):
        st = state_t.new()
        st["sc"] = vals[len(vals) // 2]
        st["arr"] = vals[:4]
        expect_state = st.copy()
        expected = {}
        with np.errstate(all="ignore"):
            for lane in range(n):
                if recs["skip"][lane]:
                    continue
                if where == "scalar":
                    cell = expect_state["sc"]
                    slot = 0
                else:
                    cell = expect_state["arr"][0]
                    slot = 2 if where == "uniform_index" else int(recs["k"][lane])
                old = cell[slot]
                expected[lane] = old
                cell[slot] = _seq_atomic(op, old, recs["v"][lane], recs["e"][lane])
        kir = _kir(f"at_{op}", In, Out, body, {"r": t}, state={"sc": t, "arr": arr_t}, serial=serial)
        got, _ = run_numpy(kir, recs, st)
        assert got.has_reply.tolist() == [lane in expected for lane in range(n)]
        for lane, old in expected.items():
            assert _same(old, got.replies["r"][lane]), f"lane {lane}: old {old!r}, got {got.replies['r'][lane]!r}"
        assert _bits(expect_state["sc"]).tobytes() == _bits(st["sc"]).tobytes(), (expect_state["sc"], st["sc"])
        assert _bits(expect_state["arr"][0]).tobytes() == _bits(st["arr"][0]).tobytes(), \
            (expect_state["arr"], st["arr"])


def _range_cases(t):
    vals = _edge_values(t)
    rng = random.Random(t.bits * 7 + (t.kind == "u"))
    steps = [v for v in vals if v != 0 and abs(v) < 2**40] + ([-1, -2, -7, -(2 ** (t.bits - 1))]
                                                              if t.kind == "i" else [1 << (t.bits - 1)])
    cases = []
    for _ in range(300):
        a, b = rng.choice(vals), rng.choice(vals)
        if rng.random() < 0.5:
            b = max(min(a + rng.randint(-12, 12), max(vals)), min(vals))
        cases.append((a, b, rng.choice(steps)))
    return cases


@pytest.mark.parametrize("t", [i8, u8, i32, u32, i64, u64], ids=lambda t: t.name)
@pytest.mark.parametrize("shape", ["lanes", "uniform_start_step", "uniform"])
def test_range_loops_trip_counts_and_final_value(t, shape):
    """``for x in range(a, b, c)`` at the edges of its type: trip counts without overflow, and ``x`` after."""
    In = _message(f"rg_{t.name}_{shape}_in", a=t, b=t, c=t)
    Out = _message(f"rg_{t.name}_{shape}_out", count=i32, last=t)
    cases = _range_cases(t)
    ends = {"a": _msg("a", t), "b": _msg("b", t), "c": _msg("c", t)}
    if shape != "lanes":
        ends["a"] = Load(t, Ref("state", "a", None, t))
        ends["c"] = Load(t, Ref("state", "c", None, t))
    if shape == "uniform":
        ends["b"] = Load(t, Ref("state", "b", None, t))
    count, x = _loc("count", i32), _loc("x", t)
    body = [
        Assign(Ref("local", "count", None, i32), Const(i32, 0)),
        Assign(Ref("local", "x", None, t), Const(t, 5)),
        For("x", ends["a"], ends["b"], ends["c"], [
            Assign(Ref("local", "count", None, i32), Binary(i32, "add", count, Const(i32, 1))),
            If(Compare(bool_, "ge", count, Const(i32, 40)), [Break()], []),
        ]),
        Return(MsgValue(message_spec(Out), {"count": count, "last": x})),
    ]

    def expect(a, b, c):
        cnt, last = 0, 5
        for v in range(a, b, c):
            cnt, last = cnt + 1, v
            if cnt >= 40:
                break
        return cnt, last

    state = {"a": t, "b": t, "c": t}
    for serial in (False, True):
        kir = _kir(f"rg_{t.name}", In, Out, body, {"count": i32, "x": t}, state=state, serial=serial)
        src = target.emit(kir)
        groups = [cases] if shape == "lanes" else \
            [[cs for cs in cases if (cs[0], cs[2]) == key] for key in sorted({(a, c) for a, _, c in cases})[:12]]
        if shape == "uniform":
            groups = [[cs] for cs in cases[:40]]
        for group in groups:
            recs = np.zeros(len(group), message_spec(In).dtype)
            for j, name in enumerate("abc"):
                recs[name] = np.array([cs[j] for cs in group], dtype=object).astype(t.dtype)
            st = StateSpec("S", state, {}).new()
            for j, name in enumerate("abc"):
                st[name] = group[0][j]
            got, _ = run_numpy(kir, recs, st, src=src)
            for lane, (a, b, c) in enumerate(group):
                cnt, last = expect(a, b, c)
                assert (int(got.replies["count"][lane]), int(got.replies["last"][lane])) == (cnt, last), \
                    f"range({a}, {b}, {c}) as {t.name}: expected {cnt} trips, last {last}; got " \
                    f"{got.replies['count'][lane]}, {got.replies['last'][lane]} (serial={serial})"


@ringcore.kernel(id="np_publish")
def publish_kernel(ctx, msg: Ping) -> Clock | None:
    if msg.v % 3 == 0:
        reached = ctx.publish("news", Ping(v=msg.v + ctx.header.hops))
        return Clock(phys=ctx.header.message_id, logical=reached, tid=u32(ctx.header.hops), kn=ctx.header.type_id,
                     later=ctx.header.send_ns)
    return None


def test_publish_and_header_fields():
    n = 90
    recs = _records(publish_kernel, n, v=np.arange(n))
    ref, got = compare_kernel(publish_kernel, recs)
    assert ref.has_reply.sum() == 30 and len(ref.sent) == 30


def test_generated_code_is_plain_numpy_without_divergence():
    from ringcore.demo import vector_add as V

    src = ringcore.compile(V.vector_add, "numpy")
    # The elementwise loop is one operation over the rows' slices, with no masks: a batch without
    # divergence runs at numpy speed, reading each message once.
    assert "v_out__c[:, 0:16] = (m_a[:, 0:16] + m_b[:, 0:16])" in src
    assert "np.where" not in src and "_st(" not in src and "_put(" not in src
    assert "# line 51: out.c[i] = msg.a[i] + msg.b[i]" in src


def test_tracebacks_show_generated_lines():
    kir = ringcore.lang.lower(echo_float_kernel)
    src = target.emit(kir)
    run = target.load(src, kir)
    with pytest.raises(KeyError) as info:
        run(3, {}, None, {}, SimpleNamespace())  # no input fields: fails inside the generated code
    frames = [f for f in traceback.extract_tb(info.value.__traceback__) if f.filename == f"<ringcore numpy {kir.name}>"]
    assert frames and frames[-1].line == src.splitlines()[frames[-1].lineno - 1].strip()
    assert "inp[" in frames[-1].line


@ringcore.kernel(id="np_echo_float")
def echo_float_kernel(ctx, msg: Reading) -> Reading:
    return Reading(celsius=msg.celsius * 2.0, tag=msg.tag)


def test_empty_batch():
    kir = ringcore.lang.lower(loops_kernel)
    for serial in (False, True):
        got, env = run_numpy(dataclasses.replace(kir, serial=serial), loops_kernel.input_type.array(0), None)
        assert got.has_reply.shape == (0,) and env.calls == 0


def test_large_batch_without_divergence_matches():
    from ringcore.demo import vector_add as V

    n = 65536
    rng = _rng(30)
    recs = _records(V.vector_add, n, a=rng.standard_normal((n, 16)), b=rng.standard_normal((n, 16)))
    got, _ = run_numpy(ringcore.lang.lower(V.vector_add), recs, None)
    assert got.has_reply.all()
    assert np.array_equal(got.replies["c"], recs["a"] + recs["b"])


def test_hand_built_function_loop_tick_and_copy():
    """A function with a lane-dependent while, continue, early return and failure, called twice per
    iteration of a kernel loop (once only for its effect), with a clock tick under a mask."""
    In = _message("hb_in", lim=i32, w=i32[4])
    Out = _message("hb_out", cnt=i32, p=u64, lg=u32, tid=u32)
    x, lim, s, k = _loc("x", i32), _loc("lim", i32), _loc("s", i32), _loc("k", i32)

    def c(v):
        return Const(i32, v)

    def set_(name, t, v):
        return Assign(Ref("local", name, None, t), v)

    h = Function("h", [("x", i32), ("lim", i32)], i32, {"x": i32, "lim": i32, "s": i32, "k": i32}, [
        set_("s", i32, c(0)), set_("k", i32, c(0)),
        While(Compare(bool_, "lt", k, lim), [
            set_("k", i32, Binary(i32, "add", k, c(1))),
            If(Compare(bool_, "eq", Binary(i32, "mod", k, c(3)), c(0)), [Continue()], []),
            If(Compare(bool_, "eq", Binary(i32, "add", x, k), c(13)), [Fail(2)], []),
            set_("s", i32, Binary(i32, "add", s, Binary(i32, "mul", x, k))),
            If(Compare(bool_, "gt", s, c(100)), [Return(Binary(i32, "sub", s, c(100)))], []),
        ]),
        Return(s),
    ])
    arr = i32[4]
    elem = Load(i32, Ref("local", "arr", _loc("i", i32), i32))
    call = CallFunc(i32, "h", [elem, _msg("lim", i32)])
    cnt = _loc("cnt", i32)
    body = [
        set_("cnt", i32, c(0)),
        set_("p", u64, Const(u64, 0)), set_("lg", u32, Const(u32, 0)),
        ArrayCopy(Ref("local", "arr", None, arr), Ref("msg", "w", None, arr)),
        For("i", c(0), c(4), c(1), [
            If(Compare(bool_, "lt", elem, c(0)), [Continue()], []),
            Eval(CallFunc(i32, "h", [elem, _msg("lim", i32)])),
            set_("r", i32, call),
            If(Compare(bool_, "eq", Binary(i32, "mod", _loc("r", i32), c(2)), c(0)),
               [Tick(Ref("local", "p", None, u64), Ref("local", "lg", None, u32))], []),
            set_("cnt", i32, Binary(i32, "add", cnt, _loc("r", i32))),
            If(Compare(bool_, "gt", cnt, c(150)), [Fail(1)], []),
        ]),
        Return(MsgValue(message_spec(Out), {"cnt": cnt, "p": _loc("p", u64), "lg": _loc("lg", u32),
                                            "tid": CtxValue(u32, "thread_id")})),
    ]
    errors = [ErrorSite("OverflowError", "too much", None), ErrorSite("ValueError", "unlucky", None)]
    locals_ = {"cnt": i32, "p": u64, "lg": u32, "arr": arr, "i": i32, "r": i32}

    class Failed(Exception):
        def __init__(self, site):
            self.site = site

    def h_ref(xv, limv):
        sv = kv = 0
        while kv < limv:
            kv += 1
            if kv % 3 == 0:
                continue
            if xv + kv == 13:
                raise Failed(2)
            sv += xv * kv
            if sv > 100:
                return sv - 100
        return sv

    def kernel_ref(lane, limv, w):
        cntv, p, lg, ticks = 0, 0, 0, 0
        for i in range(4):
            if w[i] < 0:
                continue
            h_ref(w[i], limv)
            r = h_ref(w[i], limv)
            if r % 2 == 0:
                p, lg, ticks = 1_000_000 + 1000 * lane + ticks, ticks, ticks + 1
            cntv += r
            if cntv > 150:
                raise Failed(1)
        return cntv, p, lg

    rng = _rng(40)
    n = 400
    recs = np.zeros(n, message_spec(In).dtype)
    recs["lim"] = rng.integers(-2, 12, n)
    recs["w"] = rng.integers(-3, 14, (n, 4))
    kinds: set[int] = set()
    for serial in (False, True):
        kir = _kir("hb", In, Out, body, locals_, funcs={"h": h}, errors=errors, serial=serial)
        got, _ = run_numpy(kir, recs, None)
        for lane in range(n):
            try:
                want = kernel_ref(lane, int(recs["lim"][lane]), [int(v) for v in recs["w"][lane]])
            except Failed as exc:
                assert not got.has_reply[lane] and got.failed.get(lane) == errors[exc.site - 1].kind, lane
                kinds.add(exc.site)
                continue
            row = got.replies[lane]
            assert got.has_reply[lane], lane
            assert (int(row["cnt"]), int(row["p"]), int(row["lg"]), int(row["tid"])) == (*want, lane), \
                (lane, serial, want, row)
        assert (got.replies["lg"][got.has_reply] > 0).any() and (got.replies["p"][got.has_reply] > 0).any()
    assert kinds == {1, 2}


@ringcore.kernel(id="np_local_arrays")
def local_arrays_kernel(ctx, msg: LutIn) -> LutOut:
    t = i32[8]()
    for i in range(8):
        t[i] = i * i - msg.bias
    u = i32[4]()  # the same in every lane: one small array, not one row per lane
    u[0] = 3
    u[1] = 1
    u[2] = 4
    u[3] = 1
    grid = u8[3, 4]()
    for r in range(3):
        for c in range(4):
            grid[r, c] = u8(r * 4 + c) * u8(msg.k)
    j = msg.k % 8
    t[j] = t[j] + u[msg.k % 4] + i32(grid[msg.k % 3, (msg.k + 1) % 4])
    w = f32[4]()
    wsum = f32(0.0)
    for i in range(4):
        w[i] = msg.w[3 - i]
        if w[i] < 0.0:
            w[i] = -w[i]
            continue
        wsum += w[i]
    s = 0
    for i in range(8):
        s += t[i]
    return LutOut(t=t, s=s, pick=t[(msg.k + 3) % 8], w=w, wsum=wsum)


def test_local_arrays():
    rng = _rng(60)
    n = 400
    recs = _records(local_arrays_kernel, n, k=rng.integers(-50, 50, n), bias=rng.integers(-10, 10, n),
                    w=rng.standard_normal((n, 4)))
    compare_kernel(local_arrays_kernel, recs)
    src = ringcore.compile(local_arrays_kernel, "numpy")
    assert "v_u = np.zeros(4, np.int32)" in src  # uniform local array
    assert "v_t = o_t" in src  # returned as the reply's own field: no copy


# -- elementwise loops as whole-slice operations ---------------------------------------------------


@ringcore.message(type_id=_T + 0x70)
class SliceIn:
    a: ringcore.i16[8]
    b: ringcore.i16[8]
    g: ringcore.f32[2, 3]


@ringcore.message(type_id=_T + 0x71)
class SliceOut:
    s: ringcore.i16[8]
    q: ringcore.i16[8]
    h: ringcore.f32[2, 3]
    last: ringcore.i32


@ringcore.kernel(id="slice_loops")
def slice_loops(ctx, msg: SliceIn) -> SliceOut:
    out = SliceOut()
    t = ringcore.i16[8]()
    for i in range(8):
        t[i] = msg.a[i] * 3 - msg.b[i]  # wraps at 16 bits
        out.s[i] = t[i] // msg.b[i]  # reads the element just written; // by zero gives 0
    for i in range(1, 8, 2):
        out.q[i] = -t[i] if t[i] < 0 else t[i]
    for j in range(3):
        out.last = j  # not an element assignment: runs as a loop
    return out


def test_elementwise_loops_run_as_slices_and_match_the_reference():
    src = ringcore.compile(slice_loops, "numpy")
    assert "[:, 0:8]" in src and "[:, 1:8:2]" in src
    rng = _rng(70)
    n = 500
    recs = _records(slice_loops, n, a=rng.integers(-2 ** 15, 2 ** 15, (n, 8)),
                    b=rng.integers(-4, 4, (n, 8)), g=rng.standard_normal((n, 2, 3)))
    compare_kernel(slice_loops, recs)
