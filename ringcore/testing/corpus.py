"""The kernel language's corpus: kernels that together use every construct, with their inputs.

Each :class:`CorpusEntry` holds a real ``@ringcore.kernel`` written in the
kernel language, a generator of random inputs and a set of edge-case inputs
(numpy structured arrays of the kernel's input payload dtype), the initial
state to run it from, and what a target must reproduce of it: the tolerance on
floats, whether it needs 64-bit types (WGSL refuses it), whether it is serial,
which reply or state fields hold order-dependent atomic results, and the
``ctx`` services it uses.

The harness runs an entry two ways and returns comparable results:

- :func:`run_reference` calls the kernel's Python function directly, one
  message after another, with a :class:`~ringcore._hostloop.KernelContext`
  (the reference semantics: what ``ringcore.runtime("cpu",
  execution="reference")`` does);
- :func:`run_numpy` runs the numpy target's ``run(n, inp, out, state, env)``
  over the whole batch with a :class:`RecordingEnv`.

:func:`compare` lists the differences between two :class:`RunResult` (which
lanes reply, the replies bit for bit or within the entry's tolerance, which
lanes fail and why, the final state, the kernel-to-kernel sends of each lane in
order). A device backend's differential suite builds its own ``run_<target>``
returning a RunResult and reuses the rest::

    from ringcore.testing.corpus import CORPUS, compare, run_reference

    @pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.name)
    def test_opencl_matches_reference(entry):
        inputs = entry.edge_inputs()
        diffs = compare(entry, run_reference(entry, inputs), run_opencl(entry, inputs),
                        tolerance=entry.tolerance, ordered=entry.serial)
        assert not diffs, "\\n".join(diffs)

Sends and clock ticks are answered deterministically from the lane and the
count of earlier sends (ticks) of that lane, so every way of running a batch
sees the same answers: :func:`delivery_for` and :func:`now_for`.

Type ids live in their own block (``0xC0E00001`` and up), apart from
:mod:`ringcore.testing.kernels` (``0xC0DE0000``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import ringcore
from ringcore import DeliveryResult, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64
from ringcore._hostloop import KernelContext
from ringcore.hlc import HlcTimestamp
from ringcore.kernel import KernelDef
from ringcore.message import HEADER_DTYPE, MessageFlags, MessageHeader, is_message_type
from ringcore.types import ArrayType, ScalarType, scalar_type

__all__ = [
    "CorpusEntry", "CORPUS", "RunResult", "RecordingEnv",
    "run_reference", "run_numpy", "compare", "assert_same",
    "delivery_for", "now_for", "subscribers_for", "make_headers", "KERNEL_NUMBER", "UNKNOWN_KERNEL", "NOW_BASE",
    "scalar_edges", "random_scalars", "random_inputs", "edge_inputs", "Domain",
]

_BASE = 0xC0E00000

#: The kernel number a corpus kernel runs as (``ctx.kernel_number``).
KERNEL_NUMBER = 7
#: A kernel number that no kernel has: a send to it is NOT_FOUND.
UNKNOWN_KERNEL = 0xDEAD
#: The physical time (µs) of the test clock's first tick.
NOW_BASE = 1_700_000_000_000_000

# -- every scalar type in messages -------------------------------------------------------------


@ringcore.message(type_id=_BASE + 1)
class AllTypes:
    """One field of every scalar type."""

    a_u8: u8
    a_u16: u16
    a_u32: u32
    a_u64: u64
    a_i8: i8
    a_i16: i16
    a_i32: i32
    a_i64: i64
    a_f32: f32
    a_f64: f64
    a_bool: ringcore.bool


# -- integer arithmetic, one pair of messages per type -----------------------------------------


@ringcore.message(type_id=_BASE + 2)
class PairI8:
    a: i8
    b: i8


@ringcore.message(type_id=_BASE + 3)
class ArithI8:
    add: i8
    sub: i8
    mul: i8
    fdiv: i8
    mod: i8
    neg: i8


@ringcore.message(type_id=_BASE + 4)
class PairI16:
    a: i16
    b: i16


@ringcore.message(type_id=_BASE + 5)
class ArithI16:
    add: i16
    sub: i16
    mul: i16
    fdiv: i16
    mod: i16
    neg: i16


@ringcore.message(type_id=_BASE + 6)
class PairI32:
    a: i32
    b: i32


@ringcore.message(type_id=_BASE + 7)
class ArithI32:
    add: i32
    sub: i32
    mul: i32
    fdiv: i32
    mod: i32
    neg: i32


@ringcore.message(type_id=_BASE + 8)
class PairI64:
    a: i64
    b: i64


@ringcore.message(type_id=_BASE + 9)
class ArithI64:
    add: i64
    sub: i64
    mul: i64
    fdiv: i64
    mod: i64
    neg: i64


@ringcore.message(type_id=_BASE + 10)
class PairU8:
    a: u8
    b: u8


@ringcore.message(type_id=_BASE + 11)
class ArithU8:
    add: u8
    sub: u8
    mul: u8
    fdiv: u8
    mod: u8
    neg: u8


@ringcore.message(type_id=_BASE + 12)
class PairU16:
    a: u16
    b: u16


@ringcore.message(type_id=_BASE + 13)
class ArithU16:
    add: u16
    sub: u16
    mul: u16
    fdiv: u16
    mod: u16
    neg: u16


@ringcore.message(type_id=_BASE + 14)
class PairU32:
    a: u32
    b: u32


@ringcore.message(type_id=_BASE + 15)
class ArithU32:
    add: u32
    sub: u32
    mul: u32
    fdiv: u32
    mod: u32
    neg: u32


@ringcore.message(type_id=_BASE + 16)
class PairU64:
    a: u64
    b: u64


@ringcore.message(type_id=_BASE + 17)
class ArithU64:
    add: u64
    sub: u64
    mul: u64
    fdiv: u64
    mod: u64
    neg: u64


@ringcore.kernel(id="corpus_arith_i8")
def arith_i8(ctx, msg: PairI8) -> ArithI8:
    """i8: wrapping + - * and unary -, Python // and % (negative operands, x // 0 == 0, MIN // -1)."""
    return ArithI8(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b,
                   fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.kernel(id="corpus_arith_i16")
def arith_i16(ctx, msg: PairI16) -> ArithI16:
    """i16: wrapping + - * and unary -, Python // and % (negative operands, x // 0 == 0, MIN // -1)."""
    return ArithI16(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b,
                    fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.kernel(id="corpus_arith_i32")
def arith_i32(ctx, msg: PairI32) -> ArithI32:
    """i32: wrapping + - * and unary -, Python // and % (negative operands, x // 0 == 0, MIN // -1)."""
    return ArithI32(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b,
                    fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.kernel(id="corpus_arith_i64")
def arith_i64(ctx, msg: PairI64) -> ArithI64:
    """i64: wrapping + - * and unary -, Python // and % (negative operands, x // 0 == 0, MIN // -1)."""
    return ArithI64(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b,
                    fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.kernel(id="corpus_arith_u8")
def arith_u8(ctx, msg: PairU8) -> ArithU8:
    """u8: wrapping + - * (a u8 sum wraps at 256) and unary - (wraps), // and % with zero divisors."""
    return ArithU8(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b,
                   fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.kernel(id="corpus_arith_u16")
def arith_u16(ctx, msg: PairU16) -> ArithU16:
    """u16: wrapping + - * and unary -, // and % with zero divisors (C promotes u16 to int: must truncate)."""
    return ArithU16(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b,
                    fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.kernel(id="corpus_arith_u32")
def arith_u32(ctx, msg: PairU32) -> ArithU32:
    """u32: wrapping + - * and unary -, // and % with zero divisors."""
    return ArithU32(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b,
                    fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.kernel(id="corpus_arith_u64")
def arith_u64(ctx, msg: PairU64) -> ArithU64:
    """u64: wrapping + - * and unary -, // and % with zero divisors."""
    return ArithU64(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b,
                    fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.message(type_id=_BASE + 18)
class AllTypesOut:
    """The reply of :func:`every_type`: one field of every scalar type."""

    r_u8: u8
    r_u16: u16
    r_u32: u32
    r_u64: u64
    r_i8: i8
    r_i16: i16
    r_i32: i32
    r_i64: i64
    r_f32: f32
    r_f64: f64
    r_bool: ringcore.bool


@ringcore.kernel(id="corpus_every_type")
def every_type(ctx, msg: AllTypes) -> AllTypesOut:
    """Every scalar type in a message and a reply, each with a wrapping (or IEEE) update by a literal."""
    return AllTypesOut(
        r_u8=msg.a_u8 + 1, r_u16=msg.a_u16 * 3, r_u32=msg.a_u32 - 1, r_u64=msg.a_u64 + 7,
        r_i8=msg.a_i8 - 1, r_i16=msg.a_i16 * 2, r_i32=msg.a_i32 + 1, r_i64=msg.a_i64 * 5,
        r_f32=msg.a_f32 * 2.5, r_f64=msg.a_f64 - 0.1, r_bool=not msg.a_bool,
    )


# -- bitwise operators and shifts --------------------------------------------------------------


@ringcore.message(type_id=_BASE + 19)
class BitsIn:
    a: i32
    b: i32
    u: u32
    v: u32
    p: ringcore.bool
    q: ringcore.bool


@ringcore.message(type_id=_BASE + 20)
class BitsOut:
    and_i: i32
    or_i: i32
    xor_i: i32
    inv_i: i32
    and_u: u32
    or_u: u32
    xor_u: u32
    inv_u: u32
    mask_u: u32
    and_b: ringcore.bool
    or_b: ringcore.bool
    xor_b: ringcore.bool


@ringcore.kernel(id="corpus_bitwise")
def bitwise(ctx, msg: BitsIn) -> BitsOut:
    """& | ^ ~ on i32 (two's complement) and u32, with hex literals; & | ^ on bools (logical)."""
    return BitsOut(
        and_i=msg.a & msg.b, or_i=msg.a | msg.b, xor_i=msg.a ^ msg.b, inv_i=~msg.a,
        and_u=msg.u & msg.v, or_u=msg.u | msg.v, xor_u=msg.u ^ msg.v, inv_u=~msg.u,
        mask_u=(msg.u & 0xFF00FF00) | (msg.v & 0x00FF00FF),
        and_b=msg.p & msg.q, or_b=msg.p | msg.q, xor_b=msg.p ^ msg.q,
    )


@ringcore.message(type_id=_BASE + 21)
class Shift32In:
    a: i32
    s: i32
    u: u32
    t: u32


@ringcore.message(type_id=_BASE + 22)
class Shift32Out:
    l_i: i32
    r_i: i32
    l_u: u32
    r_u: u32
    l_lit: i32
    r_lit: u32
    r_neg: i32


@ringcore.kernel(id="corpus_shifts32")
def shifts32(ctx, msg: Shift32In) -> Shift32Out:
    """<< and >> on i32 (arithmetic right shift) and u32 (logical), counts 0, 31, 32, > 32, negative."""
    return Shift32Out(l_i=msg.a << msg.s, r_i=msg.a >> msg.s, l_u=msg.u << msg.t, r_u=msg.u >> msg.t,
                      l_lit=msg.a << 3, r_lit=msg.u >> 31, r_neg=-msg.a >> 1)


@ringcore.message(type_id=_BASE + 23)
class ShiftSmallIn:
    a8: i8
    s8: i8
    u8v: u8
    t8: u8
    a16: i16
    s16: i16
    u16v: u16
    t16: u16


@ringcore.message(type_id=_BASE + 24)
class ShiftSmallOut:
    l8: i8
    r8: i8
    lu8: u8
    ru8: u8
    l16: i16
    r16: i16
    lu16: u16
    ru16: u16


@ringcore.kernel(id="corpus_shifts_small")
def shifts_small(ctx, msg: ShiftSmallIn) -> ShiftSmallOut:
    """Shifts on 8- and 16-bit types: the result wraps to the width; counts of width and beyond give 0 or -1."""
    return ShiftSmallOut(l8=msg.a8 << msg.s8, r8=msg.a8 >> msg.s8, lu8=msg.u8v << msg.t8, ru8=msg.u8v >> msg.t8,
                         l16=msg.a16 << msg.s16, r16=msg.a16 >> msg.s16,
                         lu16=msg.u16v << msg.t16, ru16=msg.u16v >> msg.t16)


@ringcore.message(type_id=_BASE + 25)
class Shift64In:
    a: i64
    s: i64
    u: u64
    t: u64


@ringcore.message(type_id=_BASE + 26)
class Shift64Out:
    l_i: i64
    r_i: i64
    l_u: u64
    r_u: u64
    bits: u64


@ringcore.kernel(id="corpus_shifts64")
def shifts64(ctx, msg: Shift64In) -> Shift64Out:
    """Shifts, & | ^ ~ on i64 and u64, counts 0, 63, 64 and beyond, negative."""
    return Shift64Out(l_i=msg.a << msg.s, r_i=msg.a >> msg.s, l_u=msg.u << msg.t, r_u=msg.u >> msg.t,
                      bits=(~msg.u & 0xFFFF0000FFFF0000) ^ (msg.u | msg.t))


# -- literal typing ----------------------------------------------------------------------------


@ringcore.message(type_id=_BASE + 27)
class LitIn:
    x: i32
    y: u8
    f: f32
    h: i16


@ringcore.message(type_id=_BASE + 28)
class LitOut:
    a: i32
    b: i32
    c: u8
    d: f32
    e: f32
    g: u8
    h: i16
    k: i32
    m: ringcore.bool


@ringcore.kernel(id="corpus_literals")
def literals(ctx, msg: LitIn) -> LitOut:
    """Python literals are weak: they take the other operand's type (u8 + 200 wraps, f32 * 0.1 is f32)."""
    a = msg.x + 1
    b = 2 * msg.x - 0x7F
    c = msg.y + 200
    d = msg.f * 0.1 + 1
    e = 1.5 - msg.f / 3
    g = msg.y // 3 + msg.y % 7
    h = msg.h * -3 + 1000
    k = 3
    k = k * msg.x
    return LitOut(a=a, b=b, c=c, d=d, e=e, g=g, h=h, k=k, m=msg.y > 250)


# -- floats ------------------------------------------------------------------------------------


@ringcore.message(type_id=_BASE + 29)
class F32Pair:
    a: f32
    b: f32


@ringcore.message(type_id=_BASE + 30)
class F32Arith:
    add: f32
    sub: f32
    mul: f32
    div: f32
    fdiv: f32
    mod: f32
    neg: f32


@ringcore.kernel(id="corpus_float32")
def float32(ctx, msg: F32Pair) -> F32Arith:
    """f32 + - * / and unary -, // and % (numpy's npy_divmod: signs, zero divisor, inf, NaN) in IEEE f32."""
    return F32Arith(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b, div=msg.a / msg.b,
                    fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a)


@ringcore.message(type_id=_BASE + 31)
class F64Pair:
    a: f64
    b: f64


@ringcore.message(type_id=_BASE + 32)
class F64Arith:
    add: f64
    sub: f64
    mul: f64
    div: f64
    fdiv: f64
    mod: f64
    neg: f64


@ringcore.kernel(id="corpus_float64")
def float64(ctx, msg: F64Pair) -> F64Arith:
    """f64 + - * / and unary -, // and % (npy_divmod), with f64 literals."""
    return F64Arith(add=msg.a + msg.b, sub=msg.a - msg.b, mul=msg.a * msg.b, div=msg.a / msg.b,
                    fdiv=msg.a // msg.b, mod=msg.a % msg.b, neg=-msg.a * 1.0)


@ringcore.message(type_id=_BASE + 33)
class MathIn:
    x: f32
    y: f32
    z: f32


@ringcore.message(type_id=_BASE + 34)
class MathOut:
    sqrt: f32
    exp: f32
    log: f32
    sin: f32
    cos: f32
    tanh: f32
    floor: f32
    ceil: f32
    fma: f32
    clamp: f32
    absv: f32
    mn: f32
    mx: f32
    nan: ringcore.bool


@ringcore.kernel(id="corpus_math32")
def math32(ctx, msg: MathIn) -> MathOut:
    """The math builtins on f32: sqrt exp log sin cos tanh floor ceil fma clamp isnan abs min max."""
    return MathOut(
        sqrt=ringcore.sqrt(msg.x), exp=ringcore.exp(msg.x), log=ringcore.log(msg.x),
        sin=ringcore.sin(msg.x), cos=ringcore.cos(msg.x), tanh=ringcore.tanh(msg.x),
        floor=ringcore.floor(msg.x), ceil=ringcore.ceil(msg.x),
        fma=ringcore.fma(msg.x, msg.y, msg.z), clamp=ringcore.clamp(msg.x, msg.y, msg.z),
        absv=abs(msg.x), mn=min(msg.x, msg.y), mx=max(msg.x, msg.y), nan=ringcore.isnan(msg.x),
    )


@ringcore.message(type_id=_BASE + 107)
class PowOut:
    pow: f32
    pw: f32
    sq: f32
    half: f32


@ringcore.kernel(id="corpus_pow32")
def pow32(ctx, msg: F32Pair) -> PowOut:
    """ringcore.pow and ** on f32, with runtime and constant exponents."""
    return PowOut(pow=ringcore.pow(msg.a, msg.b), pw=msg.a ** msg.b, sq=msg.a ** 2, half=ringcore.pow(msg.b, 0.5))


@ringcore.message(type_id=_BASE + 35)
class Math64In:
    x: f64
    y: f64
    z: f64


@ringcore.message(type_id=_BASE + 36)
class Math64Out:
    sqrt: f64
    exp: f64
    log: f64
    sin: f64
    cos: f64
    tanh: f64
    floor: f64
    ceil: f64
    clamp: f64
    absv: f64
    nan: ringcore.bool


@ringcore.kernel(id="corpus_math64")
def math64(ctx, msg: Math64In) -> Math64Out:
    """The float math builtins on f64 (they keep their argument's precision)."""
    return Math64Out(
        sqrt=ringcore.sqrt(msg.x), exp=ringcore.exp(msg.x), log=ringcore.log(msg.x),
        sin=ringcore.sin(msg.x), cos=ringcore.cos(msg.x), tanh=ringcore.tanh(msg.x),
        floor=ringcore.floor(msg.x), ceil=ringcore.ceil(msg.x), clamp=ringcore.clamp(msg.x, msg.y, msg.z),
        absv=abs(msg.x), nan=ringcore.isnan(msg.x),
    )


@ringcore.message(type_id=_BASE + 111)
class Fma64Out:
    fused: f64
    cancel: f64


@ringcore.kernel(id="corpus_fma64")
def fma64(ctx, msg: Math64In) -> Fma64Out:
    """ringcore.fma on f64: one rounding (fma(x, y, -(x*y)) is the rounding error of x*y, not 0)."""
    return Fma64Out(fused=ringcore.fma(msg.x, msg.y, msg.z), cancel=ringcore.fma(msg.x, msg.y, -(msg.x * msg.y)))


@ringcore.message(type_id=_BASE + 108)
class Pow64Out:
    pow: f64
    pw: f64


@ringcore.kernel(id="corpus_pow64")
def pow64(ctx, msg: F64Pair) -> Pow64Out:
    """ringcore.pow and ** on f64."""
    return Pow64Out(pow=ringcore.pow(msg.a, msg.b), pw=msg.a ** msg.b)


@ringcore.message(type_id=_BASE + 37)
class MinMaxIn:
    a: i32
    b: i32
    c: i32
    u: u16
    v: u16
    s: i8


@ringcore.message(type_id=_BASE + 38)
class MinMaxOut:
    abs_a: i32
    min_ab: i32
    max_ab: i32
    clamp_a: i32
    abs_u: u16
    min_uv: u16
    max_uv: u16
    clamp_u: u16
    abs_s: i8
    min_lit: i32
    max_lit: i8


@ringcore.kernel(id="corpus_minmax_int")
def minmax_int(ctx, msg: MinMaxIn) -> MinMaxOut:
    """abs (abs(MIN) == MIN), min, max and clamp on signed and unsigned ints, with literal arguments."""
    return MinMaxOut(
        abs_a=abs(msg.a), min_ab=min(msg.a, msg.b), max_ab=max(msg.a, msg.b),
        clamp_a=ringcore.clamp(msg.a, msg.b, msg.c),
        abs_u=abs(msg.u), min_uv=min(msg.u, msg.v), max_uv=max(msg.u, msg.v),
        clamp_u=ringcore.clamp(msg.u, 100, 60000), abs_s=abs(msg.s),
        min_lit=min(msg.a, 10), max_lit=max(-5, msg.s),
    )


@ringcore.message(type_id=_BASE + 39)
class NanMinMaxOut:
    mn: f32
    mx: f32
    mn_rev: f32
    mx_rev: f32
    clamp: f32
    absv: f32
    mn_lit: f32


@ringcore.kernel(id="corpus_nan_minmax")
def nan_minmax(ctx, msg: F32Pair) -> NanMinMaxOut:
    """Python's min/max rule on floats: a NaN (or -0.0 vs 0.0 tie) as first argument wins; clamp of NaN."""
    return NanMinMaxOut(mn=min(msg.a, msg.b), mx=max(msg.a, msg.b), mn_rev=min(msg.b, msg.a),
                        mx_rev=max(msg.b, msg.a), clamp=ringcore.clamp(msg.a, -1.0, msg.b), absv=abs(msg.b),
                        mn_lit=min(msg.a, 0.0))


# -- comparisons and boolean logic -------------------------------------------------------------


@ringcore.message(type_id=_BASE + 40)
class CmpIn:
    a: i32
    b: i32
    u: u32
    v: u32
    x: f32
    y: f32


@ringcore.message(type_id=_BASE + 41)
class CmpOut:
    eq_i: ringcore.bool
    ne_i: ringcore.bool
    lt_i: ringcore.bool
    le_i: ringcore.bool
    gt_i: ringcore.bool
    ge_i: ringcore.bool
    lt_u: ringcore.bool
    ge_u: ringcore.bool
    eq_f: ringcore.bool
    ne_f: ringcore.bool
    lt_f: ringcore.bool
    le_f: ringcore.bool
    gt_f: ringcore.bool
    ge_f: ringcore.bool
    lit: ringcore.bool


@ringcore.kernel(id="corpus_compare")
def compare_ops(ctx, msg: CmpIn) -> CmpOut:
    """== != < <= > >= on i32, u32 (unsigned order) and f32 (NaN unequal to everything, -0.0 == 0.0)."""
    return CmpOut(
        eq_i=msg.a == msg.b, ne_i=msg.a != msg.b, lt_i=msg.a < msg.b, le_i=msg.a <= msg.b,
        gt_i=msg.a > msg.b, ge_i=msg.a >= msg.b, lt_u=msg.u < msg.v, ge_u=msg.u >= msg.v,
        eq_f=msg.x == msg.y, ne_f=msg.x != msg.y, lt_f=msg.x < msg.y, le_f=msg.x <= msg.y,
        gt_f=msg.x > msg.y, ge_f=msg.x >= msg.y, lit=msg.u > 4000000000,
    )


@ringcore.message(type_id=_BASE + 42)
class ChainIn:
    a: i32
    b: i32
    c: i32
    x: f32
    y: f32
    z: f32
    v: i32[4]


@ringcore.message(type_id=_BASE + 43)
class ChainOut:
    r1: ringcore.bool
    r2: ringcore.bool
    r3: ringcore.bool
    r4: ringcore.bool
    r5: ringcore.bool
    r6: ringcore.bool
    r7: ringcore.bool


@ringcore.kernel(id="corpus_compare_chain")
def compare_chain(ctx, msg: ChainIn) -> ChainOut:
    """Comparison chains (a < b <= c, a == b == c, 0 <= i < 4 guarding an index, mixed directions)."""
    r7 = False
    if 0 <= msg.a < 4 and msg.v[msg.a] > 0:
        r7 = True
    return ChainOut(r1=msg.a < msg.b <= msg.c, r2=msg.a == msg.b == msg.c, r3=msg.x < msg.y < msg.z,
                    r4=msg.a < msg.b > msg.c, r5=0 <= msg.a < 10, r6=msg.x <= msg.y != msg.z, r7=r7)


@ringcore.message(type_id=_BASE + 44)
class GuardIn:
    a: f32[8]
    i: i32
    d: i32
    n: i32


@ringcore.message(type_id=_BASE + 45)
class GuardOut:
    g1: ringcore.bool
    g2: ringcore.bool
    g3: ringcore.bool
    g4: ringcore.bool
    g5: ringcore.bool
    v: f32


@ringcore.func
def positive_checked(d: i32) -> ringcore.bool:
    """True when ``d`` > 0; a negative ``d`` is an error (fails the message)."""
    if d < 0:
        raise ValueError("negative divisor")
    return d > 0


@ringcore.kernel(id="corpus_short_circuit")
def short_circuit(ctx, msg: GuardIn) -> GuardOut:
    """and/or/not short-circuit: a guard keeps an index (or a failing call) from being evaluated."""
    i = msg.i
    g1 = i < 8 and msg.a[i] > 0
    g2 = i >= 8 or msg.a[i] < 0
    g3 = msg.d == 0 or positive_checked(msg.d)
    g4 = not (i >= 0 and i < 8 and msg.a[i] == 0.0)
    g5 = msg.n > 0 and msg.n < 100 and not msg.n == 50
    v = 0.0
    if -8 <= i < 8 and (msg.a[i] > 1.0 or msg.a[i] < -1.0):
        v = msg.a[i]
    return GuardOut(g1=g1, g2=g2, g3=g3, g4=g4, g5=g5, v=v)


@ringcore.message(type_id=_BASE + 46)
class CondIn:
    a: f32[8]
    i: i32
    x: i32
    y: i32


@ringcore.message(type_id=_BASE + 47)
class CondOut:
    r1: i32
    r2: f32
    r3: i32
    r4: i32
    r5: f32


@ringcore.kernel(id="corpus_conditional_expr")
def conditional_expr(ctx, msg: CondIn) -> CondOut:
    """Conditional expressions, nested ones, and one whose branch indexes only when the condition allows."""
    r1 = msg.x if msg.x > msg.y else msg.y
    r2 = msg.a[msg.i] if 0 <= msg.i < 8 else -1.0
    r3 = -1 if msg.x < 0 else (0 if msg.x == 0 else 1)
    r4 = msg.x // msg.y if msg.y != 0 else 12345
    r5 = msg.a[0] * 2.0 if msg.a[0] == msg.a[0] else 0.0
    return CondOut(r1=r1, r2=r2, r3=r3, r4=r4, r5=r5)


@ringcore.message(type_id=_BASE + 48)
class BoolIn:
    p: ringcore.bool
    q: ringcore.bool
    r: ringcore.bool
    x: i32


@ringcore.message(type_id=_BASE + 49)
class BoolOut:
    a: ringcore.bool
    b: ringcore.bool
    c: ringcore.bool
    d: ringcore.bool
    e: ringcore.bool
    n: i32


@ringcore.kernel(id="corpus_bool_logic")
def bool_logic(ctx, msg: BoolIn) -> BoolOut:
    """bool fields and locals: and/or/not, bool == bool, a bool as an if condition, bool -> int casts."""
    a = msg.p and msg.q or msg.r
    b = not msg.p
    c = (msg.x > 0) == msg.q
    d = msg.p != msg.r
    e = not (msg.p or msg.q) and not msg.r
    n = 0
    if msg.p:
        n += 1
    if not msg.q:
        n += 2
    if msg.r and msg.x > 5:
        n += 4
    n = n + i32(msg.p) * 8
    return BoolOut(a=a, b=b, c=c, d=d, e=e, n=n)


@ringcore.message(type_id=_BASE + 110)
class AndOrOut:
    first_true: i32
    both: i32
    either: i32
    neither: ringcore.bool


@ringcore.kernel(id="corpus_and_or_values")
def and_or_values(ctx, msg: PairI32) -> AndOrOut:
    """and / or on integers give one of their operands, as in Python (``x or default``)."""
    return AndOrOut(first_true=(msg.a | 4) or msg.b, both=msg.a and msg.b, either=msg.a or msg.b,
                    neither=not (msg.a or msg.b))


# -- casts -------------------------------------------------------------------------------------


@ringcore.message(type_id=_BASE + 50)
class CastIn:
    a: i32
    u: u32
    b: u8
    c: i8
    h: i16
    w: u16
    p: ringcore.bool


@ringcore.message(type_id=_BASE + 51)
class CastOut:
    to_i8: i8
    to_u8: u8
    to_i16: i16
    to_u16: u16
    to_u32: u32
    u_to_i32: i32
    b_to_i32: i32
    c_to_i32: i32
    c_to_u8: u8
    c_to_u16: u16
    w_to_i16: i16
    h_to_u32: u32
    a_to_bool: ringcore.bool
    u_to_bool: ringcore.bool
    p_to_i32: i32
    p_to_u8: u8


@ringcore.kernel(id="corpus_casts_int")
def casts_int(ctx, msg: CastIn) -> CastOut:
    """int -> int casts: narrowing wraps, widening sign- or zero-extends; int <-> bool."""
    return CastOut(
        to_i8=i8(msg.a), to_u8=u8(msg.a), to_i16=i16(msg.a), to_u16=u16(msg.u), to_u32=u32(msg.a),
        u_to_i32=i32(msg.u), b_to_i32=i32(msg.b), c_to_i32=i32(msg.c), c_to_u8=u8(msg.c),
        c_to_u16=u16(msg.c), w_to_i16=i16(msg.w), h_to_u32=u32(msg.h),
        a_to_bool=ringcore.bool(msg.a), u_to_bool=ringcore.bool(msg.u), p_to_i32=i32(msg.p), p_to_u8=ringcore.u8(msg.p),
    )


@ringcore.message(type_id=_BASE + 52)
class Cast64In:
    a: i32
    u: u32
    x: i64
    y: u64


@ringcore.message(type_id=_BASE + 53)
class Cast64Out:
    a_i64: i64
    a_u64: u64
    u_i64: i64
    x_i32: i32
    x_u32: u32
    y_i32: i32
    y_i64: i64
    x_u64: u64
    x_i8: i8
    y_u16: u16


@ringcore.kernel(id="corpus_casts_int64")
def casts_int64(ctx, msg: Cast64In) -> Cast64Out:
    """Casts between 32- and 64-bit integers: sign/zero extension and wrapping truncation."""
    return Cast64Out(a_i64=i64(msg.a), a_u64=u64(msg.a), u_i64=i64(msg.u), x_i32=i32(msg.x), x_u32=u32(msg.x),
                     y_i32=i32(msg.y), y_i64=i64(msg.y), x_u64=u64(msg.x), x_i8=i8(msg.x), y_u16=u16(msg.y))


@ringcore.message(type_id=_BASE + 54)
class FloatCastIn:
    x: f32


@ringcore.message(type_id=_BASE + 55)
class FloatCastOut:
    to_i32: i32
    to_u8: u8
    to_i8: i8
    to_u16: u16
    to_i16: i16
    to_u32: u32
    to_bool: ringcore.bool
    ok: ringcore.bool


@ringcore.kernel(id="corpus_casts_float_int")
def casts_float_int(ctx, msg: FloatCastIn) -> FloatCastOut:
    """f32 -> int casts truncate toward zero, then wrap (u8(300.7) == 44, u32(-1.5) == 2**32 - 1).

    Only finite values below 2**62 are cast; the others reply with ok=False.
    """
    if ringcore.isnan(msg.x) or abs(msg.x) >= 4.0e18:
        return FloatCastOut(to_bool=ringcore.bool(msg.x), ok=False)
    return FloatCastOut(to_i32=i32(msg.x), to_u8=u8(msg.x), to_i8=i8(msg.x), to_u16=u16(msg.x),
                        to_i16=i16(msg.x), to_u32=u32(msg.x), to_bool=ringcore.bool(msg.x), ok=True)


@ringcore.message(type_id=_BASE + 56)
class FloatCastFailOut:
    v: i32


@ringcore.kernel(id="corpus_cast_nonfinite")
def cast_nonfinite(ctx, msg: FloatCastIn) -> FloatCastFailOut:
    """f32 -> i32 of NaN and +-inf fails the message (ValueError), as in Python; x - x is NaN exactly for those."""
    finite = not ringcore.isnan(msg.x - msg.x)
    if finite and abs(msg.x) >= 1.0e18:
        return FloatCastFailOut(v=-1)
    return FloatCastFailOut(v=i32(msg.x))


@ringcore.kernel(id="corpus_cast_huge")
def cast_huge(ctx, msg: FloatCastIn) -> FloatCastFailOut | None:
    """f32 -> i32 of finite values at or beyond 2**63 (where the IR says the lane fails)."""
    finite = not ringcore.isnan(msg.x - msg.x)
    if finite and abs(msg.x) >= 9.2e18:
        return FloatCastFailOut(v=i32(msg.x))
    return None


@ringcore.message(type_id=_BASE + 57)
class IntFloatIn:
    a: i32
    u: u32
    b: u8
    h: i16
    x: f32
    p: ringcore.bool


@ringcore.message(type_id=_BASE + 58)
class IntFloatOut:
    a_f32: f32
    u_f32: f32
    b_f32: f32
    h_f32: f32
    p_f32: f32
    x_f32: f32
    x_bool: ringcore.bool
    mix: f32


@ringcore.kernel(id="corpus_casts_int_float")
def casts_int_float(ctx, msg: IntFloatIn) -> IntFloatOut:
    """int -> f32 rounds to nearest even (2**24 + 1 -> 2**24); bool -> f32; f32 -> bool (NaN is True)."""
    return IntFloatOut(a_f32=f32(msg.a), u_f32=f32(msg.u), b_f32=f32(msg.b), h_f32=ringcore.f32(msg.h),
                       p_f32=f32(msg.p), x_f32=f32(msg.x), x_bool=ringcore.bool(msg.x),
                       mix=f32(msg.a) * 0.5 + msg.x)


@ringcore.message(type_id=_BASE + 59)
class F64CastIn:
    d: f64
    x: f32
    n: i64
    m: u64


@ringcore.message(type_id=_BASE + 60)
class F64CastOut:
    d_f32: f32
    x_f64: f64
    d_i64: i64
    d_u64: u64
    d_i32: i32
    n_f64: f64
    m_f64: f64
    n_f32: f32
    m_f32: f32
    ok: ringcore.bool


@ringcore.kernel(id="corpus_casts_f64")
def casts_f64(ctx, msg: F64CastIn) -> F64CastOut:
    """f64 <-> f32 (round to nearest, overflow to inf), f64 <-> i64/u64/i32, i64/u64 -> f32 rounding."""
    out = F64CastOut(d_f32=f32(msg.d), x_f64=f64(msg.x), n_f64=f64(msg.n), m_f64=f64(msg.m),
                     n_f32=f32(msg.n), m_f32=f32(msg.m), ok=False)
    if msg.d == msg.d and -9.0e18 < msg.d < 9.0e18:
        out.d_i64 = i64(msg.d)
        out.d_u64 = u64(msg.d)
        out.d_i32 = i32(msg.d)
        out.ok = True
    return out


# -- control flow ------------------------------------------------------------------------------


@ringcore.message(type_id=_BASE + 61)
class Classify:
    x: i32
    f: f32


@ringcore.message(type_id=_BASE + 62)
class Classified:
    kind: i32
    fkind: i32
    flags: u32


@ringcore.kernel(id="corpus_if_elif_else")
def if_elif_else(ctx, msg: Classify) -> Classified:
    """if / elif / else chains, nested ifs, an if without else, NaN falling through to else."""
    if msg.x < 0:
        kind = 1
    elif msg.x == 0:
        kind = 2
    elif msg.x < 100:
        if msg.x % 2 == 0:
            kind = 3
        else:
            kind = 4
    else:
        kind = 5
    if msg.f > 0.0:
        fkind = 1
    elif msg.f < 0.0:
        fkind = -1
    elif msg.f == 0.0:
        fkind = 0
    else:
        fkind = 99
    flags = u32(0)
    if msg.x > 1000:
        flags = flags | 1
    if msg.f >= 1000.0:
        flags = flags | 2
    return Classified(kind=kind, fkind=fkind, flags=flags)


@ringcore.message(type_id=_BASE + 63)
class Vec16:
    v: i32[16]
    f: f32[16]


@ringcore.message(type_id=_BASE + 64)
class LoopSums:
    s1: i32
    s2: i32
    s3: i32
    s4: i32
    s5: i32
    s6: f32
    last: i32


@ringcore.kernel(id="corpus_for_const")
def for_const(ctx, msg: Vec16) -> LoopSums:
    """for over constant ranges: range(16), range(2, 8), range(1, 16, 3), range(15, -1, -4), empty ranges."""
    s1 = 0
    for i in range(16):
        s1 += msg.v[i]
    s2 = 0
    for i in range(2, 8):
        s2 = s2 * 3 + msg.v[i]
    s3 = 0
    for i in range(1, 16, 3):
        s3 += msg.v[i] ^ i
    s4 = 0
    for i in range(15, -1, -4):
        s4 = s4 - msg.v[i]
    s5 = 7
    last = -1
    for j in range(0):
        s5 += 1
        last = j
    for j in range(8, 2):
        s5 += 2
        last = j
    s6 = 0.0
    for k in range(16):
        s6 = s6 + msg.f[k] * 0.5
    return LoopSums(s1=s1, s2=s2, s3=s3, s4=s4, s5=s5, s6=s6, last=last)


@ringcore.message(type_id=_BASE + 65)
class RangeIn:
    start: i32
    stop: i32
    step: i32
    n: u32


@ringcore.message(type_id=_BASE + 66)
class RangeOut:
    total: i32
    count: i32
    last: i32
    total2: i32
    count_n: u32
    last_n: u32


@ringcore.kernel(id="corpus_for_runtime")
def for_runtime(ctx, msg: RangeIn) -> RangeOut:
    """range with runtime bounds: 1, 2 and 3 arguments, negative steps, a zero step (ValueError), and the
    loop variable keeping its last value after the loop (or its earlier value when the loop never ran)."""
    start = ringcore.clamp(msg.start, -20, 20)
    stop = ringcore.clamp(msg.stop, -20, 20)
    total = 0
    count = 0
    i = -999
    for i in range(start, stop, msg.step):
        total += i
        count += 1
    last = i
    total2 = 0
    for j in range(start, stop):
        total2 = (total2 * 3 + j) % 1000
    n = min(msg.n, 12)
    count_n = u32(0)
    k = 77
    for k in range(n):
        count_n += k
    return RangeOut(total=total, count=count, last=last, total2=total2, count_n=count_n, last_n=k)


@ringcore.message(type_id=_BASE + 67)
class DownIn:
    n: i32
    v: u16[10]


@ringcore.message(type_id=_BASE + 68)
class DownOut:
    order: u32
    sum_even: u32
    countdown: i32


@ringcore.kernel(id="corpus_for_negative_step")
def for_negative_step(ctx, msg: DownIn) -> DownOut:
    """Counting down: range(9, -1, -1) over an array, range(10, -1, -2), range(n, 0, -1) with runtime n."""
    order = u32(0)
    for i in range(9, -1, -1):
        order = order * 3 + u32(msg.v[i] % 3)
    sum_even = u32(0)
    for i in range(10, -1, -2):
        if i < 10:
            sum_even += u32(msg.v[i])
    countdown = 0
    n = ringcore.clamp(msg.n, -3, 30)
    for i in range(n, 0, -1):
        countdown = (countdown * 2 - i) % 100000
    return DownOut(order=order, sum_even=sum_even, countdown=countdown)


@ringcore.message(type_id=_BASE + 69)
class WhileIn:
    x: u32
    limit: i32


@ringcore.message(type_id=_BASE + 70)
class WhileOut:
    steps: i32
    peak: u32
    final: u32
    bits: i32


@ringcore.kernel(id="corpus_while")
def while_loop(ctx, msg: WhileIn) -> WhileOut:
    """while loops: a Collatz walk with a cap (u32 3x+1 wraps), while True with break, a bit count."""
    x = msg.x
    steps = 0
    peak = x
    while x != 1 and steps < 300:
        if x % 2 == 0:
            x = x // 2
        else:
            x = 3 * x + 1
        if x > peak:
            peak = x
        steps += 1
    y = msg.x
    bits = 0
    while True:
        if y == 0:
            break
        bits += i32(y & 1)
        y = y >> 1
    limit = ringcore.clamp(msg.limit, 0, 50)
    while limit > 0:
        limit -= 3
    return WhileOut(steps=steps + limit, peak=peak, final=x, bits=bits)


@ringcore.message(type_id=_BASE + 71)
class BreakIn:
    v: i32[12]
    stop: i32


@ringcore.message(type_id=_BASE + 72)
class BreakOut:
    pos_sum: i32
    first_stop: i32
    pairs: i32
    skipped: i32
    wsum: i32


@ringcore.kernel(id="corpus_break_continue")
def break_continue(ctx, msg: BreakIn) -> BreakOut:
    """break and continue in for and while loops, and a break in an inner loop leaving the outer one running."""
    pos_sum = 0
    first_stop = -1
    skipped = 0
    for i in range(12):
        if msg.v[i] < 0:
            skipped += 1
            continue
        if msg.v[i] == msg.stop:
            first_stop = i
            break
        pos_sum += msg.v[i] % 1000
    pairs = 0
    for i in range(4):
        for j in range(4):
            if j > i:
                break
            if (msg.v[i] + msg.v[j]) % 2 == 0:
                continue
            pairs += 1
    wsum = 0
    k = 0
    while k < 12:
        k += 1
        if msg.v[k - 1] % 3 == 0:
            continue
        if wsum > 1000000:
            break
        wsum += msg.v[k - 1] % 100
    return BreakOut(pos_sum=pos_sum, first_stop=first_stop, pairs=pairs, skipped=skipped, wsum=wsum)


@ringcore.message(type_id=_BASE + 73)
class FindIn:
    v: i32[8]
    target: i32
    mode: u8


@ringcore.message(type_id=_BASE + 74)
class Found:
    index: i32
    steps: i32


@ringcore.kernel(id="corpus_early_return")
def early_return(ctx, msg: FindIn) -> Found | None:
    """Early returns: return None before any work, a reply from inside a for loop and a while loop."""
    if msg.mode == 0:
        return None
    if msg.mode == 1:
        for i in range(8):
            if msg.v[i] == msg.target:
                return Found(index=i, steps=i + 1)
        return Found(index=-1, steps=8)
    steps = 0
    k = 7
    while k >= 0:
        steps += 1
        if msg.v[k] > msg.target:
            if msg.mode == 2:
                return None
            return Found(index=k, steps=steps)
        k -= 1
    return Found(index=-2, steps=steps)


class RaiseState:
    count: u32 = 0
    ok: u32 = 0


@ringcore.message(type_id=_BASE + 75)
class RaiseIn:
    x: i32
    v: i32[4]


@ringcore.message(type_id=_BASE + 76)
class RaiseOut:
    x: i32
    count: u32


@ringcore.func
def not_unlucky(v: i32) -> None:
    """Returns nothing; raises for 13 (called as a statement)."""
    if v == 13:
        raise RuntimeError("unlucky element")


@ringcore.kernel(id="corpus_raise", state=RaiseState)
def raise_errors(ctx, msg: RaiseIn) -> RaiseOut:
    """raise fails the message with its exception, also from a function; state written before the raise
    stays (serial kernel)."""
    ctx.state.count += 1
    if msg.x < 0:
        raise ValueError("negative x")
    for i in range(4):
        not_unlucky(msg.v[i])
    if msg.x == 0:
        raise ZeroDivisionError("zero x")
    ctx.state.ok += 1
    return RaiseOut(x=msg.x, count=ctx.state.count)


@ringcore.message(type_id=_BASE + 77)
class IdxIn:
    a: i32[8]
    m: i16[3, 4]
    i: i32
    j: i32
    k: u8


@ringcore.message(type_id=_BASE + 78)
class IdxOut:
    x: i32
    y: i16
    z: i32
    last: i32


@ringcore.kernel(id="corpus_index")
def index_checks(ctx, msg: IdxIn) -> IdxOut:
    """Runtime indices: Python's negative indices count from the end; an index out of range (1-D or
    either axis of a 2-D array, message or local) fails the message with IndexError."""
    x = msg.a[msg.i]
    y = msg.m[msg.i % 3, msg.j]
    loc = i32[4]()
    loc[msg.k] = 5
    loc[-1] = loc[-1] + 1
    return IdxOut(x=x, y=y, z=loc[3] + loc[0] * 10, last=msg.a[-1])


@ringcore.message(type_id=_BASE + 79)
class LocalIn:
    a: f32[16]
    v: u8[12]


@ringcore.message(type_id=_BASE + 80)
class LocalOut:
    acc: f32[4]
    hist: i32[4]
    grid_sum: u32
    diag: u8[3]


@ringcore.kernel(id="corpus_local_arrays")
def local_arrays(ctx, msg: LocalIn) -> LocalOut:
    """Local arrays: f32[4]() and i32[4]() (zero-filled), a 2-D u8[3, 4]() grid, whole arrays in a reply."""
    acc = f32[4]()
    for i in range(16):
        acc[i % 4] += msg.a[i]
    hist = i32[4]()
    grid = u8[3, 4]()
    for i in range(12):
        hist[msg.v[i] % 4] += 1
        grid[i // 4, i % 4] = msg.v[i] * 3
    total = u32(0)
    for r in range(3):
        for c in range(4):
            total += u32(grid[r, c])
    diag = u8[3]()
    for r in range(3):
        diag[r] = grid[r, r]
    return LocalOut(acc=acc, hist=hist, grid_sum=total, diag=diag)


class GridState:
    grid: i32[3, 3]
    seen: u32 = 0


@ringcore.message(type_id=_BASE + 81)
class MatIn:
    m: i32[3, 3]
    w: f32[2, 4]
    r: u8
    c: u8


@ringcore.message(type_id=_BASE + 82)
class MatOut:
    t: i32[3, 3]
    row_sums: f32[2]
    trace: i32
    cell: i32


@ringcore.kernel(id="corpus_arrays_2d", state=GridState)
def arrays_2d(ctx, msg: MatIn) -> MatOut:
    """2-D arrays in messages, replies and state: m[i, j] reads and writes, a transpose, a state grid."""
    out = MatOut()
    for i in range(3):
        for j in range(3):
            out.t[j, i] = msg.m[i, j]
    for r in range(2):
        s = 0.0
        for c in range(4):
            s += msg.w[r, c]
        out.row_sums[r] = s
    out.trace = msg.m[0, 0] + msg.m[1, 1] + msg.m[2, 2]
    ctx.state.grid[msg.r % 3, msg.c % 3] += 1
    ctx.state.seen += 1
    out.cell = ctx.state.grid[msg.r % 3, msg.c % 3]
    return out


@ringcore.message(type_id=_BASE + 83)
class VecIn:
    a: f32[16]
    b: f32[16]


@ringcore.message(type_id=_BASE + 84)
class VecOut:
    c: f32[16]


@ringcore.kernel(id="corpus_vector_add")
def vector_add(ctx, msg: VecIn) -> VecOut:
    """The vector-add kernel: 16 f32 per message, a message-typed local filled element by element."""
    out = VecOut()
    for i in range(16):
        out.c[i] = msg.a[i] + msg.b[i]
    return out


@ringcore.message(type_id=_BASE + 85)
class BuildIn:
    a: f32[4]
    k: i32
    flag: ringcore.bool


@ringcore.message(type_id=_BASE + 86)
class Built:
    c: f32[4]
    d: f32[4]
    k: i32
    scaled: f32


@ringcore.kernel(id="corpus_message_local")
def message_local(ctx, msg: BuildIn) -> Built | None:
    """Message-typed locals: out = Built(); out.c[i] = ...; out.k = ...; return out; Built(c=msg.a) copies."""
    out = Built()
    for i in range(4):
        out.c[i] = msg.a[3 - i]
    out.k = msg.k * 2
    out.scaled = 1.5
    if msg.k < 0:
        return None
    if msg.flag:
        copy = Built(c=msg.a, d=out.c, k=msg.k, scaled=out.scaled * 2.0)
        return copy
    out.d[0] = out.c[0] + 1.0
    return out


class SinkState:
    count: u32 = 0
    total: i32 = 0
    big: u32 = 0


@ringcore.kernel(id="corpus_sink_no_reply", state=SinkState)
def sink_no_reply(ctx, msg: PairI32) -> None:
    """A kernel declaring no reply type (-> None): it only updates its state; bare return and fall-through."""
    ctx.state.count += 1
    if msg.a > 1000000:
        ctx.state.big += 1
        return
    ctx.state.total += msg.a - msg.b


# -- functions and constants -------------------------------------------------------------------


@ringcore.func
def sq(x: f32) -> f32:
    """x squared."""
    return x * x


@ringcore.func
def hypot2(a: f32, b: f32) -> f32:
    """sqrt(a*a + b*b), calling sq (a function calling a function)."""
    return ringcore.sqrt(sq(a) + sq(b))


@ringcore.func
def sign_i(x: i32) -> i32:
    """-1, 0 or 1: early returns in a function."""
    if x < 0:
        return -1
    if x > 0:
        return 1
    return 0


@ringcore.func
def gcd(a: u32, b: u32) -> u32:
    """Euclid's algorithm: a while loop over function locals."""
    x = a
    y = b
    while y != 0:
        t = x % y
        x = y
        y = t
    return x


@ringcore.func
def twice_plus(x: i32, k: i32) -> i32:
    """Assigns to its own parameter."""
    x = x * 2
    return x + k


@ringcore.func
def checked_div(a: i32, b: i32) -> i32:
    """a // b, but raises for a zero divisor (the message fails)."""
    if b == 0:
        raise ZeroDivisionError("checked_div by zero")
    return a // b


@ringcore.func
def sum4(v0: i32, v1: i32, v2: i32, v3: i32) -> i32:
    """A function with a local array and a loop."""
    tmp = i32[4]()
    tmp[0] = v0
    tmp[1] = v1
    tmp[2] = v2
    tmp[3] = v3
    s = 0
    for i in range(4):
        s += sign_i(tmp[i]) * tmp[i]
    return s


@ringcore.message(type_id=_BASE + 87)
class FuncIn:
    x: f32
    y: f32
    a: i32
    b: i32
    u: u32
    w: u32


@ringcore.message(type_id=_BASE + 88)
class FuncOut:
    h: f32
    s: i32
    g: u32
    t: i32
    d: i32
    n: i32


@ringcore.kernel(id="corpus_funcs")
def funcs(ctx, msg: FuncIn) -> FuncOut:
    """@ringcore.func calls: typed parameters, function calling function, loops, early return, raise."""
    h = hypot2(msg.x, msg.y)
    s = sign_i(msg.a) + sign_i(msg.b) * 3
    g = gcd(msg.u, msg.w)
    t = twice_plus(msg.a, 5)
    d = checked_div(msg.a, msg.b)
    n = sum4(msg.a, msg.b, -msg.a, 7)
    return FuncOut(h=h, s=s, g=g, t=t, d=d, n=n)


SCALE = 3
OFFSET = 0.25
LIMIT = 1000
MASK = 0xFF
NEG = -7
COUNT = 6
ENABLED = True


@ringcore.message(type_id=_BASE + 89)
class ConstIn:
    x: i32
    f: f32
    v: i32[8]


@ringcore.message(type_id=_BASE + 90)
class ConstOut:
    a: i32
    b: f32
    c: i32
    d: i32
    e: ringcore.bool


@ringcore.kernel(id="corpus_constants")
def constants(ctx, msg: ConstIn) -> ConstOut:
    """Module-level numeric constants: weak like literals (x * SCALE is i32, f + OFFSET is f32), as range bounds."""
    a = msg.x * SCALE + NEG
    b = msg.f + OFFSET
    c = 0
    for i in range(COUNT):
        c += msg.v[i] & MASK
    d = min(msg.x, LIMIT)
    return ConstOut(a=a, b=b, c=c, d=d, e=ENABLED and msg.x > LIMIT)


# -- kernel state ------------------------------------------------------------------------------


class CounterState:
    count: u32 = 0
    total: i32 = 1000
    last: f32 = -1.0
    flag: ringcore.bool = False
    hist: u32[8]
    small: i16[2, 4]


@ringcore.message(type_id=_BASE + 91)
class CountIn:
    x: i32
    f: f32


@ringcore.message(type_id=_BASE + 92)
class CountOut:
    count: u32
    total: i32
    last: f32
    flag: ringcore.bool
    bin: u32
    cell: i16


@ringcore.kernel(id="corpus_state_serial", state=CounterState)
def state_serial(ctx, msg: CountIn) -> CountOut:
    """Plain state reads and writes (a serial kernel): += on scalars (wrapping), assignment of f32 and bool,
    a 1-D and a 2-D state array indexed at run time; each message sees the previous one's writes."""
    prev = ctx.state.last
    ctx.state.count += 1
    ctx.state.total += msg.x
    ctx.state.last = msg.f
    ctx.state.flag = msg.x > 0
    ctx.state.hist[msg.x % 8] += 1
    ctx.state.small[msg.x % 2, msg.x % 4] -= 1000
    return CountOut(count=ctx.state.count, total=ctx.state.total, last=prev, flag=ctx.state.flag,
                    bin=ctx.state.hist[msg.x % 8], cell=ctx.state.small[msg.x % 2, msg.x % 4])


class AllTypesState:
    s_u8: u8 = 250
    s_u16: u16 = 65530
    s_u32: u32 = 0
    s_u64: u64 = 2**64 - 3
    s_i8: i8 = 120
    s_i16: i16 = -32760
    s_i32: i32 = 2**31 - 10
    s_i64: i64 = -(2**63) + 5
    s_f32: f32 = 0.0
    s_f64: f64 = 1.0
    s_bool: ringcore.bool = False


@ringcore.kernel(id="corpus_state_every_type", state=AllTypesState)
def state_every_type(ctx, msg: AllTypes) -> AllTypesOut:
    """State fields of every scalar type, updated from the message; integer fields wrap at their width."""
    ctx.state.s_u8 += msg.a_u8
    ctx.state.s_u16 -= msg.a_u16
    ctx.state.s_u32 ^= msg.a_u32
    ctx.state.s_u64 += msg.a_u64
    ctx.state.s_i8 -= msg.a_i8
    ctx.state.s_i16 += msg.a_i16
    ctx.state.s_i32 += msg.a_i32
    ctx.state.s_i64 -= msg.a_i64
    if not ringcore.isnan(msg.a_f32):
        ctx.state.s_f32 += msg.a_f32
    ctx.state.s_f64 = ctx.state.s_f64 * 0.5 + msg.a_f64
    ctx.state.s_bool = ctx.state.s_bool != msg.a_bool
    return AllTypesOut(r_u8=ctx.state.s_u8, r_u16=ctx.state.s_u16, r_u32=ctx.state.s_u32, r_u64=ctx.state.s_u64,
                       r_i8=ctx.state.s_i8, r_i16=ctx.state.s_i16, r_i32=ctx.state.s_i32, r_i64=ctx.state.s_i64,
                       r_f32=ctx.state.s_f32, r_f64=ctx.state.s_f64, r_bool=ctx.state.s_bool)


class TableState:
    gain: f32 = 2.0
    offset: i32 = -3
    table: i32[8]


@ringcore.kernel(id="corpus_state_readonly", state=TableState)
def state_readonly(ctx, msg: CountIn) -> CountOut:
    """State only read (a lookup table and parameters): the kernel is not serial."""
    v = ctx.state.table[msg.x % 8] + ctx.state.offset
    return CountOut(count=u32(msg.x % 8), total=v, last=msg.f * ctx.state.gain)


class AtomicState:
    count: u32 = 0
    total: i32 = 0
    neg: i32 = 100
    bins: u32[8]


@ringcore.message(type_id=_BASE + 93)
class Ticket:
    ticket: u32
    bin: u32


@ringcore.kernel(id="corpus_atomics_add_sub", state=AtomicState)
def atomics_add_sub(ctx, msg: CountIn) -> Ticket:
    """atomic_add / atomic_sub on scalar and array state fields (a parallel kernel); they return the old value."""
    old = ctx.atomic_add("count", 1)
    ctx.atomic_add("total", msg.x)
    ctx.atomic_sub("neg", msg.x)
    b = ctx.atomic_add("bins", 1, msg.x % 8)
    return Ticket(ticket=old, bin=b)


class ExtremaState:
    lo: i32 = 2**31 - 1
    hi: i32 = -(2**31)
    ulo: u32 = 2**32 - 1
    uhi: u32 = 0
    peaks: i32[4]


@ringcore.message(type_id=_BASE + 94)
class ExtremaIn:
    x: i32
    u: u32
    k: u8


@ringcore.message(type_id=_BASE + 95)
class ExtremaOut:
    lo: i32
    hi: i32
    peak: i32


@ringcore.kernel(id="corpus_atomics_minmax", state=ExtremaState)
def atomics_minmax(ctx, msg: ExtremaIn) -> ExtremaOut:
    """atomic_min / atomic_max on i32 and u32 fields and on array elements (index= keyword)."""
    lo = ctx.atomic_min("lo", msg.x)
    hi = ctx.atomic_max("hi", msg.x)
    ctx.atomic_min("ulo", msg.u)
    ctx.atomic_max("uhi", msg.u)
    peak = ctx.atomic_max("peaks", msg.x, index=msg.k % 4)
    return ExtremaOut(lo=lo, hi=hi, peak=peak)


class ClaimState:
    last: i32 = -1
    owner: u32 = 0
    slots: u32[4]
    swaps: u32 = 0


@ringcore.message(type_id=_BASE + 96)
class ClaimIn:
    x: i32
    id: u32


@ringcore.message(type_id=_BASE + 97)
class ClaimOut:
    prev: i32
    won: ringcore.bool
    slot_owner: u32


@ringcore.kernel(id="corpus_atomics_xchg_cas", state=ClaimState)
def atomics_xchg_cas(ctx, msg: ClaimIn) -> ClaimOut:
    """atomic_exchange and atomic_cas (compare-exchange) on scalars and array elements."""
    prev = ctx.atomic_exchange("last", msg.x)
    old = ctx.atomic_cas("owner", 0, msg.id)
    slot = ctx.atomic_cas("slots", 0, msg.id, msg.id % 4)
    if slot == 0:
        ctx.atomic_add("swaps", 1)
    return ClaimOut(prev=prev, won=old == 0, slot_owner=slot)


class MixedState:
    hits: u32 = 0
    seen: u32 = 0


@ringcore.kernel(id="corpus_atomic_then_read", state=MixedState)
def atomic_then_read(ctx, msg: CountIn) -> Ticket:
    """Reading a field that is also updated atomically makes the kernel serial (the read must see earlier messages)."""
    ctx.atomic_add("hits", 1)
    ctx.atomic_add("seen", u32(msg.x & 3))
    return Ticket(ticket=ctx.state.hits, bin=ctx.state.seen)


# -- ctx services ------------------------------------------------------------------------------


@ringcore.message(type_id=_BASE + 98)
class IdOut:
    lane: u32
    kn: u32
    mixed: u32
    parity: ringcore.bool


@ringcore.kernel(id="corpus_ctx_ids")
def ctx_ids(ctx, msg: PairI32) -> IdOut:
    """ctx.thread_id (the message's index in its batch) and ctx.kernel_number, both u32."""
    lane = ctx.thread_id
    return IdOut(lane=lane, kn=ctx.kernel_number, mixed=lane * 3 + ctx.kernel_number + u32(msg.a & 0xFF),
                 parity=lane % 2 == 0)


@ringcore.message(type_id=_BASE + 99)
class TickOut:
    l1: u32
    l2: u32
    later: ringcore.bool


@ringcore.kernel(id="corpus_now_logical")
def now_logical(ctx, msg: PairI32) -> TickOut:
    """ctx.now() twice, reading only the logical counter (no 64-bit use)."""
    t1 = ctx.now()
    t2 = ctx.now()
    if msg.a < 0:
        t2 = ctx.now()
    return TickOut(l1=t1.logical, l2=t2.logical, later=t2.logical != t1.logical)


@ringcore.message(type_id=_BASE + 100)
class StampIn:
    base: u64
    x: i32


@ringcore.message(type_id=_BASE + 101)
class StampOut:
    physical: u64
    logical: u32
    since: u64
    x: i32
    corr: u64


@ringcore.kernel(id="corpus_now_full")
def now_full(ctx, msg: StampIn) -> StampOut:
    """ctx.now()'s physical time (u64 µs) and logical counter, with u64 arithmetic on it; a u64 header field."""
    t = ctx.now()
    if msg.x > 0:
        t = ctx.now()
    return StampOut(physical=t.physical, logical=t.logical, since=t.physical - msg.base, x=msg.x,
                    corr=ctx.header.correlation_id ^ msg.base)


@ringcore.message(type_id=_BASE + 102)
class Note:
    """What the sending kernels send."""

    value: i32
    seq: u32
    data: f32[2]


@ringcore.message(type_id=_BASE + 103)
class SendIn:
    value: i32
    count: u32
    target: u32


@ringcore.message(type_id=_BASE + 104)
class SendOut:
    delivered: u32
    full: u32
    other: u32
    code: u32


@ringcore.kernel(id="corpus_send_named")
def send_named(ctx, msg: SendIn) -> SendOut:
    """ctx.send to kernels named by a string, in a loop and conditionally; branching on the DeliveryResult."""
    delivered = u32(0)
    full = u32(0)
    other = u32(0)
    n = msg.count % 5
    for i in range(n):
        r = ctx.send("corpus_listener", Note(value=msg.value + i32(i), seq=u32(i)))
        if r == DeliveryResult.DELIVERED:
            delivered += 1
        elif r == DeliveryResult.QUEUE_FULL:
            full += 1
        else:
            other += 1
    code = u32(0)
    if msg.value < 0:
        r2 = ctx.send("corpus_audit", Note(value=-msg.value, seq=msg.count))
        if r2 == DeliveryResult.NOT_FOUND:
            code = 3
        elif r2 != DeliveryResult.DELIVERED:
            code = 9
        else:
            code = 1
    return SendOut(delivered=delivered, full=full, other=other, code=code)


@ringcore.kernel(id="corpus_send_number")
def send_number(ctx, msg: SendIn) -> SendOut | None:
    """ctx.send to kernel numbers (from the message, ctx.kernel_number, an unknown one); forwarding the
    input message itself; sending a message-typed local; no reply once forwarded."""
    note = Note()
    note.value = msg.value
    note.seq = msg.count
    note.data[0] = 1.5
    note.data[1] = f32(msg.value)
    r = ctx.send(msg.target, note)
    code = u32(0)
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
    if msg.count % 3 == 0:
        ctx.send(ctx.kernel_number, Note(value=msg.value * 2, seq=ctx.thread_id))
    if msg.count % 4 == 1:
        fwd = ctx.send(msg.target ^ 1, msg)
        if fwd == DeliveryResult.DELIVERED:
            return None
    return SendOut(code=code)


@ringcore.message(type_id=_BASE + 109)
class HeaderOut:
    hops: u8
    source: u32
    kind: u32
    prio: u8
    logical: u32
    subscribers: u32
    same: ringcore.bool


@ringcore.kernel(id="corpus_header_publish")
def header_publish(ctx, msg: PairI32) -> HeaderOut:
    """ctx.header's fields (msg.header is the same header) and ctx.publish to topics, conditionally."""
    n = u32(0)
    if msg.a > 0:
        n = ctx.publish("corpus.values", Note(value=msg.a, seq=ctx.header.hlc_logical))
    if msg.b < 0:
        n += ctx.publish("corpus.negative", Note(value=msg.b, seq=u32(ctx.header.hops)))
    return HeaderOut(hops=ctx.header.hops + 1, source=ctx.header.source_kernel, kind=ctx.header.type_id,
                     prio=msg.header.priority, logical=ctx.header.hlc_logical, subscribers=n,
                     same=msg.header.source_kernel == ctx.header.source_kernel)


# -- Python ints and floats in locals ----------------------------------------------------------


@ringcore.message(type_id=_BASE + 105)
class UntypedIn:
    v: i32[8]
    f: f32[4]
    h: u16


@ringcore.message(type_id=_BASE + 106)
class UntypedOut:
    acc: i32
    facc: f32
    mixed: u16
    count: i32


@ringcore.kernel(id="corpus_untyped_locals")
def untyped_locals(ctx, msg: UntypedIn) -> UntypedOut:
    """Locals that start as Python literals (acc = 0, facc = 0.0) take i32 / f32 on targets and the
    message's types once combined with its fields; counters stay small, so reference and targets agree."""
    acc = 0
    count = 0
    for i in range(8):
        acc = acc + msg.v[i]
        if msg.v[i] > 0:
            count += 1
    facc = 0.0
    for i in range(4):
        facc += msg.f[i] * 0.5
    mixed = msg.h
    mixed += 7
    mixed *= 3
    return UntypedOut(acc=acc, facc=facc, mixed=mixed, count=count)


# ==============================================================================================
# Inputs
# ==============================================================================================


def _int_bounds(t: ScalarType) -> tuple[int, int]:
    if t.kind == "u":
        return 0, (1 << t.bits) - 1
    return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1


_F32 = np.finfo(np.float32)
_F64 = np.finfo(np.float64)


def _unique(values: Sequence[Any]) -> list[Any]:
    """``values`` without repeats, telling -0.0 from 0.0 and NaN from -NaN."""
    seen: dict[Any, Any] = {}
    for v in values:
        key = (type(v).__name__, repr(v), math.copysign(1.0, v) if isinstance(v, float) else 0)
        seen.setdefault(key, v)
    return list(seen.values())


def scalar_edges(t: ScalarType) -> list[Any]:
    """The edge-case values of a scalar type: 0, +-1, MIN, MAX and their neighbours for integers;
    zeros of both signs, NaN, +-inf, the largest and smallest normals, denormals, and values around
    2**24 (f32) or 2**53 (f64), 2**31, 2**32 and 2**63 for floats."""
    if t.kind == "b":
        return [False, True]
    if t.is_integer:
        lo, hi = _int_bounds(t)
        vals = [0, 1, 2, 3, 7, 8, hi, hi - 1, hi // 2, hi // 2 + 1, lo, lo + 1]
        if t.kind == "i":
            vals += [-1, -2, -3, -7, -8]
        else:
            vals += [hi - 2, 1 << (t.bits - 1)]
        return _unique(vals)
    fi = _F32 if t.bits == 32 else _F64
    mant = 24 if t.bits == 32 else 53
    vals = [0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 1.5, -2.5, 3.0, 7.0, -7.0, 0.1, math.nan, -math.nan, math.inf,
            -math.inf, float(fi.max), -float(fi.max), float(fi.tiny), -float(fi.tiny),
            float(fi.smallest_subnormal), -float(fi.smallest_subnormal), float(fi.tiny) / 3,
            2.0 ** mant, 2.0 ** mant - 1, 2.0 ** mant + 2, -(2.0 ** mant), 2.0 ** 31, -(2.0 ** 31), 2.0 ** 32,
            2.0 ** 63, -(2.0 ** 63), 1e20, -1e20, 300.7, -300.7, 1e-3]
    return _unique(vals)


def random_scalars(rng: np.random.Generator, t: ScalarType, size: int | tuple[int, ...]) -> np.ndarray:
    """Random values of ``t``: a mix of the full range, small values and edge values."""
    shape = (size,) if isinstance(size, int) else size
    n = int(np.prod(shape))
    if t.kind == "b":
        return rng.integers(0, 2, n).astype(bool).reshape(shape)
    pick = rng.random(n)
    if t.is_integer:
        lo, hi = _int_bounds(t)
        full = rng.integers(lo, hi, n, endpoint=True, dtype=np.int64 if t.kind == "i" or t.bits < 64 else np.uint64)
        small = rng.integers(max(lo, -20), min(hi, 20), n, endpoint=True)
        edges = np.array(scalar_edges(t), dtype=object)[rng.integers(0, len(scalar_edges(t)), n)]
        out = full.astype(t.dtype)
        m = pick < 0.3
        out[m] = small[m].astype(t.dtype)
        m = pick >= 0.85
        out[m] = [int(v) for v in edges[m]]
        return out.reshape(shape)
    with np.errstate(all="ignore"):
        top = 127 if t.bits == 32 else 1023
        uni = rng.uniform(-10, 10, n)
        logu = np.sign(rng.random(n) - 0.5) * 10.0 ** rng.uniform(-6, 6, n)
        wide = np.sign(rng.random(n) - 0.5) * np.exp2(rng.uniform(-top - 20, top + 1, n))
        ints = rng.integers(-40, 40, n).astype(np.float64)
        mant = 24 if t.bits == 32 else 53
        near = 2.0 ** mant + rng.integers(-4, 5, n)
        edges = np.array(scalar_edges(t), dtype=np.float64)[rng.integers(0, len(scalar_edges(t)), n)]
        vals = np.select([pick < 0.35, pick < 0.6, pick < 0.7, pick < 0.8, pick < 0.85], [uni, logu, wide, ints, near],
                         edges)
        return vals.astype(t.dtype).reshape(shape)


@dataclasses.dataclass(frozen=True)
class Domain:
    """How to draw one input field, where the type's full range is not what the kernel wants.

    :param lo, hi: random integers (inclusive) or floats come from this range ...
    :param p_full: ... except this fraction, drawn from the whole type (edge values included);
    :param edges: extra edge-case values for :func:`edge_inputs` (added to the type's).
    """

    lo: float | int | None = None
    hi: float | int | None = None
    p_full: float = 0.2
    edges: tuple = ()


def _field_random(rng: np.random.Generator, t: ScalarType, shape: tuple[int, ...], dom: Domain | None) -> np.ndarray:
    full = random_scalars(rng, t, shape)
    if dom is None or dom.lo is None:
        if dom is not None and dom.edges:
            n = int(np.prod(shape))
            extra = np.array(dom.edges, dtype=object)[rng.integers(0, len(dom.edges), n)].reshape(shape)
            m = rng.random(shape) < 0.2
            full[m] = extra[m].astype(t.dtype)
        return full
    if t.is_integer or t.kind == "b":
        part = rng.integers(int(dom.lo), int(dom.hi), shape, endpoint=True).astype(t.dtype)
    else:
        part = rng.uniform(float(dom.lo), float(dom.hi), shape).astype(t.dtype)
    return np.where(rng.random(shape) < dom.p_full, full, part)


def _types(dtype: np.dtype, name: str) -> tuple[ScalarType, tuple[int, ...]]:
    sub = dtype.fields[name][0]
    if sub.subdtype is not None:
        return scalar_type(sub.subdtype[0]), sub.subdtype[1]
    return scalar_type(sub), ()


def random_inputs(dtype: np.dtype, rng: np.random.Generator, n: int,
                  domains: Mapping[str, Domain] | None = None) -> np.ndarray:
    """``n`` random payload records of ``dtype``; ``domains`` narrows some fields."""
    out = np.zeros(n, dtype)
    for name in dtype.names or ():
        t, shape = _types(dtype, name)
        out[name] = _field_random(rng, t, (n, *shape), (domains or {}).get(name))
    return out


def edge_inputs(dtype: np.dtype, domains: Mapping[str, Domain] | None = None, *, limit: int = 1024) -> np.ndarray:
    """Edge-case payload records of ``dtype``: every edge value of every field, combined.

    When the scalar fields' edge values have at most ``limit`` combinations, every
    combination is a record; otherwise each field cycles through its values at a
    different stride, and the first two scalar fields still meet in every pair.
    Array elements cycle through their type's edge values.
    """
    names = list(dtype.names or ())
    edges: dict[str, list] = {}
    for name in names:
        t, _ = _types(dtype, name)
        extra = list((domains or {}).get(name, Domain()).edges)
        edges[name] = _unique([*extra, *scalar_edges(t)])
    scalars = [nm for nm in names if not _types(dtype, nm)[1]]
    arrays = [nm for nm in names if _types(dtype, nm)[1]]
    rows: list[dict[str, Any]] = []
    combos = math.prod(len(edges[nm]) for nm in scalars) if scalars else 0
    if scalars and combos <= limit:
        for values in itertools.product(*(edges[nm] for nm in scalars)):
            rows.append(dict(zip(scalars, values)))
    elif scalars:
        longest = max(len(edges[nm]) for nm in scalars)
        for k in range(4 * longest):
            rows.append({nm: edges[nm][(k * (i + 1) + k // len(edges[nm])) % len(edges[nm])]
                         for i, nm in enumerate(scalars)})
        if len(scalars) >= 2:
            a, b = scalars[:2]
            for k, (x, y) in enumerate(itertools.product(edges[a], edges[b])):
                rows.append({nm: edges[nm][(k + i) % len(edges[nm])] for i, nm in enumerate(scalars)} | {a: x, b: y})
    # Enough rows for every array field to hold each of its edge values somewhere.
    need = max([-(-len(edges[nm]) // math.prod(_types(dtype, nm)[1])) for nm in arrays], default=1)
    if not rows:
        rows = [{}]
    rows = [rows[k % len(rows)] for k in range(max(len(rows), need))]
    out = np.zeros(len(rows), dtype)
    for k, row in enumerate(rows):
        for nm, v in row.items():
            out[nm][k] = v
    for nm in arrays:
        t, shape = _types(dtype, nm)
        size = math.prod(shape)
        vals = edges[nm]
        flat = np.array([[vals[(k * size + j) % len(vals)] for j in range(size)] for k in range(len(rows))],
                        dtype=object)
        with np.errstate(all="ignore"):
            out[nm] = flat.astype(np.float64 if t.is_float else object).astype(t.dtype).reshape(len(rows), *shape)
    return out


# ==============================================================================================
# Entries
# ==============================================================================================


@dataclasses.dataclass(frozen=True)
class CorpusEntry:
    """One corpus kernel and everything needed to run and check it.

    :param kernel: the ``@ringcore.kernel``.
    :param domains: input fields drawn from narrower ranges (see :class:`Domain`).
    :param initial_state: None (the declared initial state) or field -> value overrides.
    :param tolerance: ``"exact"`` (every bit), ``"ulp1"`` (f32 + - * / sqrt: a device may be 1 ulp off) or
        ``"ulps4"`` (transcendental functions on device targets). The numpy target is always bit-exact.
    :param numpy_tolerance: what the numpy target must meet (``"exact"``: it is bit-exact on the CPU).
    :param uses_64bit: the kernel needs u64/i64/f64 (WGSL must refuse it with a compile error).
    :param serial: the kernel writes state with plain assignments (or reads what it updates atomically):
        messages run one after another, in order, on every target.
    :param unordered: reply fields (and ``"state.<field>"``) whose values depend on the order in which
        parallel lanes ran their atomics; a device target may differ there (see :func:`compare`).
    :param sends: the kernel names ``ctx.send`` uses, in first-use order (the IR's ``send_targets``).
    :param sends_by_number: the kernel also sends to kernel numbers.
    :param publishes: the topics ``ctx.publish`` uses.
    :param uses_now: the kernel calls ``ctx.now()``.
    :param failures: the exception kinds a message may fail with (``"IndexError"``, ...).
    :param constructs: what the kernel exercises (for the coverage table).
    """

    kernel: KernelDef
    domains: Mapping[str, Domain] = dataclasses.field(default_factory=dict)
    initial_state: Mapping[str, Any] | None = None
    tolerance: str = "exact"
    numpy_tolerance: str = "exact"
    uses_64bit: bool = False
    serial: bool = False
    unordered: tuple[str, ...] = ()
    sends: tuple[str, ...] = ()
    sends_by_number: bool = False
    publishes: tuple[str, ...] = ()
    uses_now: bool = False
    failures: tuple[str, ...] = ()
    constructs: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.kernel.id

    @property
    def input_dtype(self) -> np.dtype:
        return self.kernel.input_type.dtype

    def make_inputs(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` random input payload records."""
        return random_inputs(self.input_dtype, rng, n, self.domains)

    def edge_inputs(self) -> np.ndarray:
        """The edge-case input payload records (deterministic)."""
        return edge_inputs(self.input_dtype, self.domains)

    def new_state(self) -> np.ndarray | None:
        """A fresh state record (shape (1,)) with the initial state, or None for a stateless kernel."""
        if self.kernel.state is None:
            return None
        st = self.kernel.state.new()
        for field, value in (self.initial_state or {}).items():
            st[field] = value
        return st


_IDX = Domain(-10, 10, 0.1, (-9, -8, -1, 0, 7, 8, 9))

CORPUS: list[CorpusEntry] = [
    CorpusEntry(arith_i8, constructs=("i8", "add", "sub", "mul", "floordiv", "mod", "neg", "wrap")),
    CorpusEntry(arith_i16, constructs=("i16", "add", "sub", "mul", "floordiv", "mod", "neg", "wrap")),
    CorpusEntry(arith_i32, constructs=("i32", "add", "sub", "mul", "floordiv", "mod", "neg", "wrap")),
    CorpusEntry(arith_i64, uses_64bit=True, constructs=("i64", "add", "sub", "mul", "floordiv", "mod", "neg")),
    CorpusEntry(arith_u8, constructs=("u8", "add", "sub", "mul", "floordiv", "mod", "neg", "wrap")),
    CorpusEntry(arith_u16, constructs=("u16", "add", "sub", "mul", "floordiv", "mod", "neg", "wrap")),
    CorpusEntry(arith_u32, constructs=("u32", "add", "sub", "mul", "floordiv", "mod", "neg", "wrap")),
    CorpusEntry(arith_u64, uses_64bit=True, constructs=("u64", "add", "sub", "mul", "floordiv", "mod", "neg")),
    CorpusEntry(every_type, uses_64bit=True, tolerance="ulp1",
                constructs=("every scalar type in messages", "weak literals", "not")),
    CorpusEntry(bitwise, constructs=("and_", "or_", "xor", "invert", "bool bitwise", "hex literal")),
    CorpusEntry(shifts32, domains={"s": Domain(-2, 40, 0.3, (0, 1, 31, 32, 33, -1, -32, 100)),
                                   "t": Domain(0, 40, 0.3, (0, 1, 31, 32, 33, 64))},
                constructs=("lshift", "rshift", "shift counts")),
    CorpusEntry(shifts_small, domains={"s8": Domain(-2, 20, 0.2, (0, 7, 8, 9, -1)),
                                       "t8": Domain(0, 20, 0.2, (0, 7, 8, 9, 16)),
                                       "s16": Domain(-2, 20, 0.2, (0, 15, 16, 17, -1)),
                                       "t16": Domain(0, 20, 0.2, (0, 15, 16, 17, 32))},
                constructs=("lshift", "rshift", "i8", "u8", "i16", "u16")),
    CorpusEntry(shifts64, uses_64bit=True, domains={"s": Domain(-2, 70, 0.2, (0, 1, 63, 64, 65, -1)),
                                                    "t": Domain(0, 70, 0.2, (0, 1, 63, 64, 65, 128))},
                constructs=("lshift", "rshift", "i64", "u64", "invert")),
    CorpusEntry(literals, tolerance="ulp1", constructs=("weak literals", "untyped local", "div")),
    CorpusEntry(float32, tolerance="ulp1", constructs=("f32", "add", "sub", "mul", "div", "floordiv", "mod", "neg")),
    CorpusEntry(float64, tolerance="ulp1", uses_64bit=True,
                constructs=("f64", "add", "sub", "mul", "div", "floordiv", "mod", "neg")),
    CorpusEntry(math32, tolerance="ulps4", constructs=(
        "sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil", "fma", "clamp", "abs", "min", "max", "isnan")),
    CorpusEntry(math64, tolerance="ulps4", uses_64bit=True,
                constructs=("f64 builtins", "sqrt", "exp", "log", "sin", "cos", "tanh")),
    CorpusEntry(fma64, tolerance="ulp1", uses_64bit=True, constructs=("f64 fma",)),
    CorpusEntry(pow32, tolerance="ulps4", constructs=("pow", "**", "constant exponent")),
    CorpusEntry(pow64, tolerance="ulps4", uses_64bit=True, constructs=("f64 pow", "**")),
    CorpusEntry(minmax_int, constructs=("abs", "min", "max", "clamp", "int builtins")),
    CorpusEntry(nan_minmax, constructs=("min/max NaN rule", "-0.0")),
    CorpusEntry(compare_ops, constructs=("eq", "ne", "lt", "le", "gt", "ge", "NaN compare")),
    CorpusEntry(compare_chain, domains={"a": Domain(-3, 12, 0.3), "b": Domain(-3, 12, 0.3),
                                        "c": Domain(-3, 12, 0.3)},
                constructs=("comparison chain", "chain guarding an index")),
    CorpusEntry(short_circuit, domains={"i": _IDX, "d": Domain(-3, 3, 0.2), "n": Domain(-5, 120, 0.1, (50, 100))},
                failures=("IndexError", "ValueError"),
                constructs=("and", "or", "not", "short-circuit guard", "short-circuit failing call")),
    CorpusEntry(conditional_expr, domains={"i": _IDX, "y": Domain(-3, 3, 0.3)},
                constructs=("conditional expression", "nested conditional", "guarded index")),
    CorpusEntry(and_or_values, constructs=("and/or value semantics",)),
    CorpusEntry(bool_logic, constructs=("bool", "and", "or", "not", "bool condition", "bool cast")),
    CorpusEntry(casts_int, constructs=("cast int->int", "narrowing wrap", "widening", "int<->bool")),
    CorpusEntry(casts_int64, uses_64bit=True, constructs=("cast i64/u64", "narrowing wrap", "widening")),
    CorpusEntry(casts_float_int, constructs=("cast f32->int", "truncation", "wrap", "f32->bool")),
    CorpusEntry(cast_nonfinite, failures=("ValueError",), constructs=("cast failing on NaN/inf",)),
    CorpusEntry(cast_huge, failures=("ValueError",), constructs=("cast of |x| >= 2**63",)),
    CorpusEntry(casts_int_float, tolerance="ulp1", domains={"a": Domain(2**24 - 8, 2**24 + 8, 0.5)},
                constructs=("cast int->f32", "rounding near 2**24", "bool->f32", "f32->bool")),
    CorpusEntry(casts_f64, uses_64bit=True, constructs=("cast f64<->f32", "cast f64<->int", "i64/u64->f32")),
    CorpusEntry(if_elif_else, domains={"x": Domain(-5, 120, 0.3)}, constructs=("if", "elif", "else", "nested if")),
    CorpusEntry(for_const, tolerance="ulp1",
                constructs=("for range const", "range 2-arg", "range 3-arg", "negative step", "empty range")),
    CorpusEntry(for_runtime, domains={"start": Domain(-25, 25, 0.2), "stop": Domain(-25, 25, 0.2),
                                      "step": Domain(-4, 4, 0.2, (0, 1, -1)), "n": Domain(0, 16, 0.2)},
                failures=("ValueError",),
                constructs=("for range runtime", "runtime step", "zero step", "loop var after loop")),
    CorpusEntry(for_negative_step, domains={"n": Domain(-4, 35, 0.2)},
                constructs=("negative step", "runtime bound", "nested loops")),
    CorpusEntry(while_loop, domains={"x": Domain(0, 1000, 0.5)}, constructs=("while", "while True", "break")),
    CorpusEntry(break_continue, domains={"stop": Domain(-3, 10, 0.3)},
                constructs=("break", "continue", "nested break", "while continue")),
    CorpusEntry(early_return, domains={"mode": Domain(0, 3, 0.1), "target": Domain(-5, 5, 0.3)},
                constructs=("early return", "return in loop", "return None")),
    CorpusEntry(raise_errors, serial=True, domains={"x": Domain(-3, 10, 0.3)},
                failures=("ValueError", "RuntimeError", "ZeroDivisionError"),
                constructs=("raise", "state kept after failure")),
    CorpusEntry(index_checks, domains={"i": _IDX, "j": Domain(-6, 6, 0.1, (-5, -4, -1, 0, 3, 4)),
                                       "k": Domain(0, 5, 0.1, (0, 3, 4, 255))},
                failures=("IndexError",), constructs=("runtime index", "negative index", "IndexError", "2-D index")),
    CorpusEntry(local_arrays, tolerance="ulp1",
                constructs=("local array", "2-D local array", "array in reply", "augmented array element")),
    CorpusEntry(arrays_2d, serial=True, tolerance="ulp1",
                constructs=("2-D message array", "2-D state array", "message-typed local")),
    CorpusEntry(vector_add, tolerance="ulp1", constructs=("vector add", "message-typed local")),
    CorpusEntry(message_local, tolerance="ulp1", domains={"k": Domain(-3, 100, 0.1)},
                constructs=("message-typed local", "whole-array field copy", "return None")),
    CorpusEntry(sink_no_reply, serial=True, constructs=("no reply type", "bare return", "state")),
    CorpusEntry(funcs, tolerance="ulp1", domains={"b": Domain(-3, 3, 0.5)}, failures=("ZeroDivisionError",),
                constructs=("@ringcore.func", "func calls func", "func early return", "func raise", "func loop")),
    CorpusEntry(constants, tolerance="ulp1", constructs=("module constants",)),
    CorpusEntry(state_serial, serial=True, initial_state={"total": 2**31 - 5}, domains={"x": Domain(-20, 20, 0.3)},
                constructs=("state read", "state write", "state array", "2-D state array", "serial")),
    CorpusEntry(state_every_type, serial=True, uses_64bit=True, tolerance="ulp1",
                constructs=("every scalar type in state",)),
    CorpusEntry(state_readonly, initial_state={"table": np.arange(8, dtype=np.int32) * 11 - 40},
                constructs=("state read only", "parallel")),
    CorpusEntry(atomics_add_sub, unordered=("ticket", "bin"),
                constructs=("atomic_add", "atomic_sub", "atomic on array element", "parallel")),
    CorpusEntry(atomics_minmax, unordered=("lo", "hi", "peak"),
                constructs=("atomic_min", "atomic_max", "atomic index keyword", "parallel")),
    CorpusEntry(atomics_xchg_cas, domains={"id": Domain(0, 9, 0.1)},
                unordered=("prev", "won", "slot_owner", "state.last", "state.owner", "state.slots", "state.swaps"),
                constructs=("atomic_exchange", "atomic_cas", "parallel")),
    CorpusEntry(atomic_then_read, serial=True, constructs=("atomic then read", "serial")),
    CorpusEntry(ctx_ids, constructs=("thread_id", "kernel_number")),
    CorpusEntry(now_logical, uses_now=True, constructs=("ctx.now logical",)),
    CorpusEntry(now_full, uses_now=True, uses_64bit=True, domains={"base": Domain(NOW_BASE - 100, NOW_BASE + 5000)},
                constructs=("ctx.now physical", "u64 arithmetic")),
    CorpusEntry(send_named, sends=("corpus_listener", "corpus_audit"), domains={"count": Domain(0, 20, 0.2)},
                constructs=("ctx.send by name", "DeliveryResult", "send in loop")),
    CorpusEntry(send_number, sends_by_number=True,
                domains={"target": Domain(0, 12, 0.1, (UNKNOWN_KERNEL, UNKNOWN_KERNEL ^ 1, KERNEL_NUMBER)),
                         "count": Domain(0, 12, 0.2)},
                constructs=("ctx.send by number", "forward input message", "send message-typed local")),
    CorpusEntry(header_publish, publishes=("corpus.values", "corpus.negative"),
                constructs=("ctx.header", "msg.header", "ctx.publish")),
    CorpusEntry(untyped_locals, tolerance="ulp1", constructs=("untyped local", "augmented assignment")),
]


# ==============================================================================================
# The harness
# ==============================================================================================

_CODES = {
    DeliveryResult.DELIVERED: 1, DeliveryResult.QUEUE_FULL: 2, DeliveryResult.NOT_FOUND: 3,
    DeliveryResult.MAX_HOPS_EXCEEDED: 4, DeliveryResult.WRONG_TYPE: 5, DeliveryResult.TERMINATED: 6,
}
_CYCLE = (DeliveryResult.DELIVERED, DeliveryResult.DELIVERED, DeliveryResult.QUEUE_FULL, DeliveryResult.DELIVERED,
          DeliveryResult.TERMINATED, DeliveryResult.DELIVERED, DeliveryResult.MAX_HOPS_EXCEEDED,
          DeliveryResult.WRONG_TYPE, DeliveryResult.DELIVERED)


def delivery_for(target: str | int, lane: int, k: int) -> DeliveryResult:
    """The test runtime's answer to the ``k``-th send (from 0) of lane ``lane`` to ``target``.

    A kernel number of :data:`UNKNOWN_KERNEL` and a name starting ``"corpus_audit"`` on odd lanes are
    NOT_FOUND; otherwise the answer cycles through every DeliveryResult by lane and k.
    """
    if isinstance(target, str):
        if target.startswith("corpus_audit") and lane % 2 == 1:
            return DeliveryResult.NOT_FOUND
    elif target == UNKNOWN_KERNEL:
        return DeliveryResult.NOT_FOUND
    return _CYCLE[(lane * 5 + k) % len(_CYCLE)]


def now_for(lane: int, k: int) -> tuple[int, int]:
    """The test clock's ``(physical, logical)`` for the ``k``-th tick (from 0) of lane ``lane``."""
    return NOW_BASE + lane * 1_000 + k * 7, k * 3 + lane % 5


def subscribers_for(topic: str, lane: int, k: int) -> int:
    """How many subscribers the test runtime says the ``k``-th publish of lane ``lane`` reached."""
    return (lane + 2 * k + len(topic)) % 4


def make_headers(entry: CorpusEntry, n: int) -> np.ndarray:
    """The message headers of a test batch of ``n`` messages (``ctx.header``), varied by lane."""
    h = np.zeros(n, HEADER_DTYPE)
    i = np.arange(n, dtype=np.uint64)
    h["message_id"] = 1000 + i
    h["correlation_id"] = np.where(i % 3 == 0, 0, 0x1_0000_0000 + i * 7919)
    h["hlc_physical"] = NOW_BASE - 50 + i
    h["hlc_logical"] = i % 7
    h["hlc_node"] = i % 4
    h["source_kernel"] = i % 5
    h["dest_kernel"] = KERNEL_NUMBER
    h["type_id"] = entry.kernel.input_type.type_id
    h["reply_to"] = np.where(i % 2 == 0, 0, i % 5)
    h["priority"] = i % 4
    h["flags"] = np.where(i % 3 == 0, int(MessageFlags.EXPECTS_REPLY), int(MessageFlags.K2K))
    h["hops"] = i % 17
    h["send_ns"] = 10**12 + i * 1000
    return h


def _message_types() -> dict[int, type]:
    from . import kernels

    found: dict[int, type] = {}
    for mod in (globals(), vars(kernels)):
        for obj in list(mod.values()):
            if is_message_type(obj):
                found[obj.type_id] = obj
    return found


_MESSAGES = _message_types()


@dataclasses.dataclass
class RunResult:
    """What running a batch did, in a form every way of running it produces.

    :param has_reply: which lanes replied.
    :param replies: the replies (the output payload dtype; zero where a lane did not reply), or None.
    :param errors: per lane, the kind of exception that failed it (``"IndexError"``) or None.
    :param details: per lane, the failure's text (informative, not compared).
    :param state: the final state record (shape (1,)), or None.
    :param sends: per lane, its sends in order: ``(target, type_id, payload bytes)``.
    :param ticks: per lane, how many times it called ``ctx.now()``.
    :param publishes: per lane, its publishes in order: ``(topic, type_id, payload bytes)``.
    """

    has_reply: np.ndarray
    replies: np.ndarray | None
    errors: list[str | None]
    details: list[str | None]
    state: np.ndarray | None
    sends: list[list[tuple[str | int, int, bytes]]]
    ticks: list[int]
    publishes: list[list[tuple[str, int, bytes]]]


def _payload_bytes(type_id: int, fields: Mapping[str, Any] | None = None, msg: Any = None) -> bytes:
    cls = _MESSAGES.get(type_id)
    if msg is not None:
        cls = type(msg)
    if cls is None:
        raise AssertionError(f"a send of unknown message type id {type_id:#x}")
    rec = np.zeros(1, cls.dtype)
    if msg is not None:
        rec[0] = msg.payload()
    else:
        for name, value in (fields or {}).items():
            rec[name] = np.asarray(value).reshape(rec[name].shape)
    return rec.tobytes()


def _norm_target(target: Any) -> str | int:
    return target if isinstance(target, str) else int(target)


class _Clock:
    def __init__(self, node: int) -> None:
        self.node = node
        self.lane = 0
        self.count = 0

    def tick(self) -> HlcTimestamp:
        physical, logical = now_for(self.lane, self.count)
        self.count += 1
        return HlcTimestamp(physical, logical, self.node)

    def now(self) -> HlcTimestamp:
        return HlcTimestamp(*now_for(self.lane, self.count), self.node)


class _Runtime:
    def __init__(self) -> None:
        self.lane = 0
        self.sent: list[tuple[str | int, int, bytes]] = []
        self.published: list[tuple[str, int, bytes]] = []

    def _forward(self, handle: Any, target: Any, msg: Any, header: Any) -> DeliveryResult:
        t = _norm_target(target)
        k = len(self.sent)
        self.sent.append((t, type(msg).type_id, _payload_bytes(type(msg).type_id, msg=msg)))
        return delivery_for(t, self.lane, k)

    def publish(self, topic: str, msg: Any, _source: Any = None) -> int:
        k = len(self.published)
        self.published.append((topic, type(msg).type_id, _payload_bytes(type(msg).type_id, msg=msg)))
        return subscribers_for(topic, self.lane, k)


class _Handle:
    """What KernelContext needs of a KernelHandle."""

    def __init__(self, kernel: KernelDef, state: np.ndarray | None) -> None:
        self.kernel = kernel
        self.name = kernel.id
        self.number = KERNEL_NUMBER
        self.state_array = state
        self.clock = _Clock(KERNEL_NUMBER)
        self.runtime = _Runtime()


def run_reference(entry: CorpusEntry, inputs: np.ndarray, state: np.ndarray | None = None,
                  headers: np.ndarray | None = None) -> RunResult:
    """Run the kernel's Python function on each input record in order: the reference semantics.

    ``ctx`` is a :class:`~ringcore._hostloop.KernelContext` on a stand-in kernel handle: its state
    is ``state`` (default: the entry's initial state; updated in place), its sends are recorded and
    answered by :func:`delivery_for`, its publishes by :func:`subscribers_for`, its clock by
    :func:`now_for`; ``ctx.header`` comes from ``headers`` (default :func:`make_headers`). As in the
    CPU backend's reference executor, integer overflow wraps silently and an exception fails only its
    message.
    """
    kernel = entry.kernel
    n = len(inputs)
    if state is None:
        state = entry.new_state()
    handle = _Handle(kernel, state)
    ctx = KernelContext(handle)
    out_t = kernel.output_type
    replies = np.zeros(n, out_t.dtype) if out_t is not None else None
    has_reply = np.zeros(n, bool)
    errors: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    sends: list[list[tuple[str | int, int, bytes]]] = []
    publishes: list[list[tuple[str, int, bytes]]] = []
    ticks: list[int] = []
    from_record = kernel.input_type.from_record
    if headers is None:
        headers = make_headers(entry, n)
    with np.errstate(all="ignore"):
        for i in range(n):
            ctx.thread_id = np.uint32(i)
            handle.clock.lane = handle.runtime.lane = i
            handle.clock.count = 0
            handle.runtime.sent = []
            handle.runtime.published = []
            msg = from_record(inputs[i])
            msg.header = ctx.header = MessageHeader._make(headers[i].tolist())
            try:
                out = kernel.func(ctx, msg)
                if out is not None:
                    if type(out) is not out_t:
                        raise TypeError(f"the kernel returned {type(out).__qualname__}, declared {out_t}")
                    replies[i] = out.payload()
                    has_reply[i] = True
            except Exception as exc:  # the message fails; the others go on
                errors[i] = type(exc).__name__
                details[i] = f"{type(exc).__name__}: {exc}"
            sends.append(handle.runtime.sent)
            publishes.append(handle.runtime.published)
            ticks.append(handle.clock.count)
    return RunResult(has_reply, replies, errors, details, state, sends, ticks, publishes)


class RecordingEnv:
    """The ``env`` of the numpy target's ``run``: records sends, publishes and ticks per lane.

    Answers sends with :func:`delivery_for`, publishes with :func:`subscribers_for` and ticks with
    :func:`now_for`, counting per lane, so the answers do not depend on the order in which the target
    visits lanes; ``header(name)`` gives a field of ``headers``.
    """

    def __init__(self, n: int, headers: np.ndarray, kernel_number: int = KERNEL_NUMBER,
                 specs: Mapping[int, Any] | None = None) -> None:
        self.n = n
        #: type id -> what has a ``dtype`` (a MessageSpec or message class), for the messages the kernel sends.
        self.specs: dict[int, Any] = {**_MESSAGES, **(specs or {})}
        self.headers = headers
        self.thread_id = np.arange(n, dtype=np.uint32)
        self.kernel_number = np.uint32(kernel_number)
        self.sends: list[list[tuple[str | int, int, bytes]]] = [[] for _ in range(n)]
        self.publishes: list[list[tuple[str, int, bytes]]] = [[] for _ in range(n)]
        self.ticks = [0] * n

    def header(self, name: str) -> np.ndarray:
        return self.headers[name]

    @staticmethod
    def _lanes(lanes: Any) -> np.ndarray:
        lanes = np.asarray(lanes)
        if lanes.dtype.kind == "b":
            raise AssertionError("env lanes must be int64 indices, not a mask")
        lanes = lanes.astype(np.int64).reshape(-1)
        if len(lanes) > 1 and not (np.diff(lanes) > 0).all():
            raise AssertionError(f"env lanes must be increasing: {lanes}")
        return lanes

    def _records(self, type_id: int, m: int, fields: Mapping[str, Any]) -> np.ndarray:
        cls = self.specs.get(int(type_id))
        if cls is None:
            raise AssertionError(f"a message of unknown type id {int(type_id):#x}")
        rec = np.zeros(m, cls.dtype)
        for name, value in fields.items():
            if value is None:
                continue
            rec[name] = np.broadcast_to(np.asarray(value), rec[name].shape) if np.ndim(value) == 0 else \
                np.asarray(value).reshape(rec[name].shape)
        return rec

    def publish(self, topic: str, type_id: int, lanes: Any, fields: Mapping[str, Any]) -> np.ndarray:
        lanes = self._lanes(lanes)
        rec = self._records(type_id, len(lanes), fields)
        counts = np.zeros(len(lanes), np.uint32)
        for j, lane in enumerate(lanes.tolist()):
            k = len(self.publishes[lane])
            self.publishes[lane].append((topic, int(type_id), rec[j:j + 1].tobytes()))
            counts[j] = subscribers_for(topic, lane, k)
        return counts

    def send(self, target: Any, type_id: int, lanes: Any, fields: Mapping[str, Any]) -> np.ndarray:
        lanes = self._lanes(lanes)
        m = len(lanes)
        rec = self._records(type_id, m, fields)
        if isinstance(target, str):
            targets: list[str | int] = [target] * m
        else:
            targets = [int(t) for t in np.broadcast_to(np.asarray(target), (m,))]
        codes = np.zeros(m, np.uint32)
        for j, lane in enumerate(lanes.tolist()):
            k = len(self.sends[lane])
            self.sends[lane].append((targets[j], int(type_id), rec[j:j + 1].tobytes()))
            codes[j] = _CODES[delivery_for(targets[j], lane, k)]
        return codes

    def now(self, lanes: Any) -> tuple[np.ndarray, np.ndarray]:
        lanes = self._lanes(lanes)
        phys = np.zeros(len(lanes), np.uint64)
        logical = np.zeros(len(lanes), np.uint32)
        for j, lane in enumerate(lanes.tolist()):
            p, lg = now_for(lane, self.ticks[lane])
            self.ticks[lane] += 1
            phys[j], logical[j] = p, lg
        return phys, logical


def _state_views(state: np.ndarray | None) -> dict[str, np.ndarray]:
    views: dict[str, np.ndarray] = {}
    if state is None:
        return views
    for name in state.dtype.names or ():
        v = state[name]
        v = v.reshape(-1) if v.ndim > 1 else v
        assert np.shares_memory(v, state), name
        views[name] = v
    return views


def run_numpy(entry: CorpusEntry, inputs: np.ndarray, state: np.ndarray | None = None,
              headers: np.ndarray | None = None) -> RunResult:
    """Run the batch through the numpy target (``ringcore.lang.load_numpy``) with a :class:`RecordingEnv`."""
    from ringcore.lang import load_numpy, lower
    from ringcore.lang.host import sent_specs

    kernel = entry.kernel
    kir = lower(kernel)
    run = load_numpy(kernel)
    n = len(inputs)
    if state is None:
        state = entry.new_state()
    inp = {name: np.ascontiguousarray(inputs[name]).reshape(n, -1) if inputs[name].ndim > 1
           else np.ascontiguousarray(inputs[name]) for name in inputs.dtype.names}
    out_t = kernel.output_type
    out = None
    if out_t is not None:
        out = {}
        for name in out_t.dtype.names:
            t, shape = _types(out_t.dtype, name)
            out[name] = np.zeros((n, math.prod(shape)) if shape else n, t.dtype)
    env = RecordingEnv(n, make_headers(entry, n) if headers is None else headers, specs=sent_specs(kir))
    with np.errstate(all="ignore"):
        has_reply, status = run(n, inp, out, _state_views(state), env)
    has_reply = np.asarray(has_reply, bool).reshape(n)
    status = np.asarray(status).reshape(n)
    replies = None
    if out_t is not None:
        replies = np.zeros(n, out_t.dtype)
        for name in out_t.dtype.names:
            replies[name][has_reply] = out[name][has_reply].reshape(replies[name][has_reply].shape)
    errors: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    for i in np.flatnonzero(status).tolist():
        site = kir.errors[int(status[i]) - 1]
        errors[i] = site.kind
        details[i] = site.describe(kir.filename)
    return RunResult(has_reply, replies, errors, details, state, env.sends, env.ticks, env.publishes)


# -- comparing ---------------------------------------------------------------------------------


def _ordered_bits(a: np.ndarray) -> np.ndarray:
    """Floats as integers whose difference counts ulps (NaNs are handled by the caller)."""
    ibits = a.view(np.int32 if a.dtype.itemsize == 4 else np.int64).astype(np.int64)
    big = np.int64(0x7FFFFFFF if a.dtype.itemsize == 4 else 0x7FFFFFFFFFFFFFFF)
    return np.where(ibits < 0, -(ibits & big), ibits)


def _field_diff(name: str, ref: np.ndarray, got: np.ndarray, tolerance: str) -> np.ndarray:
    """Per-row mismatch mask for one field (rows are the first axis)."""
    ref = ref.reshape(len(ref), -1)
    got = got.reshape(len(got), -1)
    width = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[ref.dtype.itemsize]
    if ref.dtype.kind != "f":  # bools too: a bool is the byte 0 or 1
        return (ref.view(width) != got.view(width)).any(axis=1)
    both_nan = np.isnan(ref) & np.isnan(got)
    if tolerance == "exact":
        return ((ref.view(width) != got.view(width)) & ~both_nan).any(axis=1)
    ulps = {"ulp1": 1, "ulps4": 4}[tolerance]
    with np.errstate(all="ignore"):
        dist = np.abs(_ordered_bits(ref) - _ordered_bits(got))
    bad = ~both_nan & ((np.isnan(ref) != np.isnan(got)) | (dist > ulps))
    return bad.any(axis=1)


def compare(entry: CorpusEntry, ref: RunResult, got: RunResult, *, tolerance: str = "exact",
            ordered: bool = True, inputs: np.ndarray | None = None) -> list[str]:
    """The differences between two runs of one batch, as readable lines (empty: the same).

    :param tolerance: ``"exact"`` compares every bit (so -0.0 differs from 0.0), except that a NaN
        equals any NaN: IEEE 754 leaves the sign and payload of a computed NaN open, and numpy's own
        scalar and array loops pick different ones (NaN + -NaN); ``"ulp1"`` / ``"ulps4"`` allow float
        fields that many ulps apart.
    :param ordered: False for a target that ran a parallel kernel's lanes in another order than the
        reference: the entry's ``unordered`` fields are then not compared.
    :param inputs: the batch, to show the input of a differing lane.
    """
    if tolerance not in ("exact", "ulp1", "ulps4"):
        raise ValueError(f"tolerance={tolerance!r}")
    skip = set(entry.unordered) if not ordered else set()
    diffs: list[str] = []

    def lane(i: int) -> str:
        return f"lane {i}" + (f" (input {inputs[i]!r})" if inputs is not None else "")

    n = len(ref.has_reply)
    if len(got.has_reply) != n:
        return [f"{n} lanes in the reference, {len(got.has_reply)} in the other run"]
    for i in range(n):
        if ref.errors[i] != got.errors[i]:
            diffs.append(f"{lane(i)}: reference {ref.details[i] or 'succeeds'}; other {got.details[i] or 'succeeds'}")
    fail = np.array([e is not None for e in got.errors], bool)
    if (got.has_reply & fail).any():
        diffs.append(f"lanes {np.flatnonzero(got.has_reply & fail).tolist()} both failed and replied")
    for i in np.flatnonzero(ref.has_reply != got.has_reply).tolist():
        diffs.append(f"{lane(i)}: reference {'replies' if ref.has_reply[i] else 'does not reply'}, "
                     f"other {'replies' if got.has_reply[i] else 'does not reply'}")
    both = ref.has_reply & got.has_reply
    if ref.replies is not None and both.any():
        for name in ref.replies.dtype.names:
            if name in skip:
                continue
            bad = _field_diff(name, ref.replies[name][both], got.replies[name][both], tolerance)
            for i in np.flatnonzero(both)[bad][:5].tolist():
                diffs.append(f"{lane(i)}: reply field {name}: reference {ref.replies[name][i]!r}, "
                             f"other {got.replies[name][i]!r}")
    if ref.state is not None:
        for name in ref.state.dtype.names:
            if f"state.{name}" in skip:
                continue
            if _field_diff(name, ref.state[name], got.state[name], tolerance).any():
                diffs.append(f"final state field {name}: reference {ref.state[name][0]!r}, "
                             f"other {got.state[name][0]!r}")
    for i in range(n):
        if ref.sends[i] != got.sends[i]:
            diffs.append(f"{lane(i)}: sends differ: reference {_show_sends(ref.sends[i])}, "
                         f"other {_show_sends(got.sends[i])}")
        if ref.publishes[i] != got.publishes[i]:
            diffs.append(f"{lane(i)}: publishes differ: reference {_show_sends(ref.publishes[i])}, "
                         f"other {_show_sends(got.publishes[i])}")
        if ref.ticks[i] != got.ticks[i]:
            diffs.append(f"{lane(i)}: ctx.now() called {ref.ticks[i]} times in the reference, "
                         f"{got.ticks[i]} in the other")
    return diffs


def _show_sends(sends: Sequence[tuple[str | int, int, bytes]]) -> str:
    shown = []
    for target, type_id, data in sends:
        cls = _MESSAGES.get(type_id)
        body = repr(cls.from_record(np.frombuffer(data, cls.dtype)[0])) if cls else data.hex()
        shown.append(f"{target!r} <- {body}")
    return "[" + ", ".join(shown) + "]"


def assert_same(entry: CorpusEntry, ref: RunResult, got: RunResult, inputs: np.ndarray, **kwargs: Any) -> None:
    """Raise AssertionError listing the differences (at most 20) between two runs."""
    diffs = compare(entry, ref, got, inputs=inputs, **kwargs)
    if diffs:
        more = f"\n... and {len(diffs) - 20} more" if len(diffs) > 20 else ""
        raise AssertionError(f"{entry.name}: {len(diffs)} differences\n" + "\n".join(diffs[:20]) + more)


_ = (ArrayType,)
