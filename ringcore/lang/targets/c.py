"""The C emitter shared by the CUDA and OpenCL targets (``cuda.py``, ``opencl.py``).

``emit(kir, dialect)`` turns a :class:`~ringcore.lang.ir.KernelIR` into one
self-contained source (no ``#include``: NVRTC has no system headers): a
prelude of fixed-width types and helpers implementing the IR's semantics
exactly, then the kernel's structs, functions, handler and batch entry point.
``emit_parts`` returns the two halves separately, so that several kernels can
share one program (the prelude once, then each kernel's part: every name in a
kernel's part carries the kernel's identifier).

The ABI (what a backend needs)
==============================

Identifiers
    ``ident = c_ident(kir.name)``: the kernel id itself when it is a plain C
    identifier, otherwise a sanitised form with an 8-hex-digit hash of the id
    appended (so two ids never collide). :func:`symbols` gives every derived
    name and size.

Structs (byte-identical to the numpy dtypes, checked by compile-time asserts)
    ``rc_header``         the 64-byte message header (``ringcore.HEADER_DTYPE``);
    ``rc_in_<ident>``     the input payload (``kir.input.dtype``);
    ``rc_out_<ident>``    the reply payload (``kir.output.dtype``);
    ``rc_state_<ident>``  the kernel state (``kir.state_dtype``);
    ``rc_env``            the per-batch environment (:data:`ENV_DTYPE`, 64 bytes);
    ``rc_outbox_head``    the 24-byte head of an outbox record (:data:`OUTBOX_HEAD_DTYPE`).
    Fields are named ``f_<field>`` (the header's and env's keep their names).
    A struct with no fields (a 0-byte payload or state) holds one dummy byte:
    never use ``sizeof`` for strides, use the ``RC_*_SIZE_<ident>`` macros
    (``IN``, ``SLOT``, ``OUT``, ``STATE``, ``OUTBOX_STRIDE``), which come from
    the dtypes (``OUT`` is 0 when the kernel never replies).

The environment ``rc_env`` (one per kernel, in global memory; :data:`ENV_DTYPE`)::

    offset type field            written by
    0      u64  hlc_physical     host: ctx.now().physical for this batch
    8      u32  hlc_logical      host: logical base; the k-th tick of the batch gets hlc_logical + k
    12     u32  kernel_number    host: ctx.kernel_number
    16     u32  tick_count       device (atomic increment per ctx.now()); host zeroes it per batch
    20     u32  outbox_capacity  host: records the outbox buffer holds
    24     u32  outbox_count     device (atomic increment per ctx.send()/publish()); host zeroes it
                                 per batch; the records written are min(outbox_count, outbox_capacity)
    28     u32  (padding)
    32     u64  claimed          persistent loop only: the next message index a work-group may claim
                                 (the host sets it to the input queue's tail at launch)
    40..63      reserved         zero

    A persistent loop keeps one rc_env per kernel and refreshes ``hlc_*`` /
    drains the outbox and resets the counters between its own "batches".

The handler (a device function; a persistent loop calls it per message)::

    rc_u32 rc_handle_<ident>(RC_GLOBAL const rc_header *hdr, RC_GLOBAL const rc_in_<ident> *msg,
                             RC_GLOBAL rc_out_<ident> *out, RC_GLOBAL rc_state_<ident> *state,
                             RC_GLOBAL rc_env *env, RC_GLOBAL rc_u8 *outbox, rc_u32 thread_id)

    (RC_GLOBAL is __global in OpenCL C and empty in CUDA.) ``hdr`` is the
    message's header (``ctx.header``), ``thread_id`` is ``ctx.thread_id``.
    ``out`` must not alias ``msg``; the reply payload is written field by field
    (padding untouched) and only when the handler replies. A serial kernel's
    handler must be called for one message at a time, in order. It returns a
    status word:

    ``STATUS_NO_REPLY`` (0)      handled, no reply
    ``STATUS_REPLY`` (1)         handled, reply payload written to ``*out``
    ``STATUS_FAILED | site``     failed (bit 31 set) at error site ``site``
                                 (1-based: ``kir.errors[site - 1]``); no reply;
                                 state writes and sends made before the failure stay.

The batch entry point (one launch per batch)::

    OpenCL: __kernel void rc_batch_<ident>(const rc_u32 n, __global const rc_u8 *in_slots,
                __global rc_u8 *replies, __global rc_u32 *status, __global rc_u8 *state,
                __global rc_env *env, __global rc_u8 *outbox)
    CUDA:   extern "C" __global__ void rc_batch_<ident>(<the same parameters, no __global>)

    ``in_slots``: ``n`` input slots (``kir.input.slot_dtype``: header then payload),
    stride ``RC_SLOT_SIZE_<ident>``; ``replies``: ``n`` reply payloads, stride
    ``RC_OUT_SIZE_<ident>`` (any non-null buffer when that is 0); ``status``: ``n``
    u32 words as above, each stored after its lane's other writes (in OpenCL behind a
    ``write_mem_fence``, so a host polling SVM may take a status as the lane's
    completion); ``state``: the state record (a dummy buffer when there is none);
    ``env``: the rc_env above; ``outbox``: ``outbox_capacity`` records
    (a dummy buffer when the capacity is 0). ``ctx.thread_id`` is the message's
    index in the batch. A non-serial kernel runs one work-item (thread) per
    message: launch at least ``n`` (extra ones return at once). A serial kernel
    (``kir.serial``) runs the whole batch, in order, on work-item 0: launch one.

The outbox (``ctx.send``, ``ctx.publish``): records of ``outbox_stride(kir)`` bytes (a multiple of 8)::

    offset type field
    0      u32  lane       the sending lane (its thread_id)
    4      u32  seq        the record's index among its lane's sends and publishes (0, 1, ...)
    8      u32  target     a kernel number; (flags & 1) an index into kir.send_targets;
                           (flags & 2) an index into publish_topics(kir)
    12     u32  type_id    the message's type id
    16     u32  flags      bit 0 (SEND_TARGET_IS_NAME), bit 1 (RECORD_IS_PUBLISH)
    20     u32  size       payload bytes (the message spec's dtype itemsize)
    24     ...  payload    the message's payload record (its C layout)

    A send claims a record with an atomic increment of ``env->outbox_count``;
    when the claimed index is below ``outbox_capacity`` the record is written
    and the send returns DELIVERED (1), else QUEUE_FULL (2); a publish returns
    1 when recorded and 0 when there was no room (the device cannot know the
    number of subscribers). ``seq`` counts every attempt of the lane, recorded
    or not. The backend delivers the records after the batch in (lane, seq)
    order (:func:`read_outbox` decodes them so); parallel lanes write records
    in any order, a serial kernel's are already in order.

The persistent loop (one launch for the kernel's life)::

    RC_KERNEL_ENTRY void rc_persist_<ident>(volatile rc_u8 *inq, volatile rc_u8 *doneq,
        volatile rc_u32 *control, rc_u8 *state, rc_env *env, rc_u8 *outbox, const rc_u32 max_batch)
        (OpenCL: __kernel, pointers __global; CUDA: extern "C" __global__)

    ``inq`` is the kernel's input RingQueue (``ringcore.queue``: head at 0, tail at 128,
    capacity at 272, slots at 384) in memory host and device share (fine-grain SVM,
    mapped pinned memory); the host produces, the loop consumes. ``doneq`` is a
    RingQueue of completion records (:func:`done_dtype`: the request's 64-byte header,
    the status word at 64, the reply payload at 72; stride ``Symbols.done_size``); the
    loop produces, the host consumes. ``control`` is the kernel's ControlBlock
    (``ringcore.control``): the loop reads ``is_active`` and ``should_terminate`` and
    writes nothing there. Launch one or more work-groups (blocks) of any size; ``env->claimed``
    (:data:`ENV_CLAIMED`) must hold the input queue's tail at launch, and the completion queue's
    head must equal it (message ``i`` completes into record ``i``). Work-item 0 of each group polls;
    when the kernel is active and messages are queued beyond ``claimed`` it claims up to ``max_batch``
    of them (no more than the completion queue has room for) by a compare-and-swap on ``claimed``
    (devices without 64-bit atomics must launch one group), the group handles them (message ``k`` of
    the claim on work-item ``k % size``, ``ctx.thread_id = k``; a serial kernel must be launched as
    one group of one work-item), then work-item 0 waits for the groups that claimed earlier messages
    to publish theirs and publishes, behind a release fence, the input tail (the slots are free) and
    then the completion head: every message is handled exactly once and completes in queue order.
    A message whose ``type_id`` is not the kernel's is not handled (status 0; the host reports it).
    ``should_terminate`` ends the loop at each group's next poll (a group finishes and publishes a
    claim it holds first); messages still queued stay queued. Kernels for which
    :func:`persistent_refusal` gives a reason (sends, publishes, ``ctx.now()``) must
    not run in it.

Ticks (``ctx.now()``): ``physical = env->hlc_physical``; ``logical =
env->hlc_logical + atomic_inc(&env->tick_count)``. After the batch the host
advances its clock by ``tick_count`` logical steps.

Atomics on state fields: 32-bit integers natively; 64-bit integers natively
(OpenCL: ``cl_khr_int64_base_atomics``; min/max by a compare-and-swap loop);
floats by a compare-and-swap loop on the bit pattern. 8/16-bit and bool fields
cannot be updated atomically (KernelCompileError).

Float arithmetic: no fast-math, no contraction (``#pragma OPENCL FP_CONTRACT
OFF``; CUDA uses the ``__fadd_rn`` family, which is never contracted, and the
backend passes ``cuda.NVRTC_OPTIONS``). Compiler diagnostics point at the
user's Python lines through ``#line`` directives; :func:`map_build_log` turns a
build log into ``(python line or None, message)`` pairs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import linecache
import math
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

import numpy as np

from ...errors import KernelCompileError
from ...message import HEADER_DTYPE, HEADER_SIZE, MessageSpec
from ...queue import QUEUE_HEADER_SIZE, QUEUE_LAYOUT
from ...types import ArrayType, RingType, ScalarType, struct_dtype
from ..ir import (
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
    Eval,
    Expr,
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
    Stmt,
    Tick,
    Unary,
    While,
    walk_exprs,
    walk_stmts,
)

__all__ = [
    "Dialect", "OPENCL", "CUDA", "emit", "emit_parts", "prelude", "c_ident", "symbols", "Symbols",
    "map_build_log", "compile_error", "ENV_DTYPE", "ENV_CLAIMED", "OUTBOX_HEAD_DTYPE", "OUTBOX_HEAD_SIZE", "outbox_stride", "send_specs",
    "read_outbox", "OutboxRecord", "decode_status", "STATUS_NO_REPLY", "STATUS_REPLY", "STATUS_FAILED",
    "SEND_TARGET_IS_NAME", "RECORD_IS_PUBLISH", "publish_topics", "done_dtype", "DONE_STATUS", "DONE_REPLY",
    "persistent_refusal",
]

STATUS_NO_REPLY = 0
STATUS_REPLY = 1
#: Bit 31 of a status word: the lane failed; the low 31 bits hold the error site (1-based).
STATUS_FAILED = 0x80000000
# The RingQueue layout the persistent loop polls (ringcore.queue).
_Q_HEAD, _Q_TAIL, _Q_CAPACITY, _Q_SLOTS = (QUEUE_LAYOUT["head"], QUEUE_LAYOUT["tail"], QUEUE_LAYOUT["capacity"],
                                          QUEUE_HEADER_SIZE)
#: Offsets in a completion record (:func:`done_dtype`): the status word, and the reply payload.
DONE_STATUS = HEADER_SIZE
DONE_REPLY = HEADER_SIZE + 8
#: Bit 0 of an outbox record's flags: ``target`` indexes ``kir.send_targets``.
SEND_TARGET_IS_NAME = 1
#: Bit 1 of an outbox record's flags: the record is a ``ctx.publish``; ``target`` indexes ``publish_topics(kir)``.
RECORD_IS_PUBLISH = 2

ENV_DTYPE = np.dtype({
    "names": ["hlc_physical", "hlc_logical", "kernel_number", "tick_count", "outbox_capacity",
              "outbox_count", "_pad", "claimed", "_reserved"],
    "formats": ["<u8", "<u4", "<u4", "<u4", "<u4", "<u4", "<u4", "<u8", ("u1", 24)],
    "offsets": [0, 8, 12, 16, 20, 24, 28, 32, 40],
    "itemsize": 64,
})
#: Offset of ``claimed`` in rc_env: the next message index a persistent loop's work-group may claim.
ENV_CLAIMED = 32

OUTBOX_HEAD_DTYPE = np.dtype({
    "names": ["lane", "seq", "target", "type_id", "flags", "size"],
    "formats": ["<u4"] * 6,
    "offsets": [0, 4, 8, 12, 16, 20],
    "itemsize": 24,
})
OUTBOX_HEAD_SIZE = OUTBOX_HEAD_DTYPE.itemsize


# -- dialects --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Dialect:
    """What differs between CUDA C++ and OpenCL C."""

    name: str  # "cuda" | "opencl"
    ext: str  # the generated file's pseudo-name suffix (for #line)
    i64_suffix: str
    u64_suffix: str

    @property
    def is_cuda(self) -> bool:
        return self.name == "cuda"


OPENCL = Dialect("opencl", "cl", "L", "UL")
CUDA = Dialect("cuda", "cu", "LL", "ULL")

_INT_BITS = (8, 16, 32, 64)
_INT_TYPES = [f"{k}{b}" for b in _INT_BITS for k in "ui"]
_FLOAT_TYPES = ["f32", "f64"]

_OCL_TYPES = {"u8": "uchar", "u16": "ushort", "u32": "uint", "u64": "ulong",
              "i8": "char", "i16": "short", "i32": "int", "i64": "long", "f32": "float", "f64": "double"}
_CUDA_TYPES = {"u8": "unsigned char", "u16": "unsigned short", "u32": "unsigned int", "u64": "unsigned long long",
               "i8": "signed char", "i16": "short", "i32": "int", "i64": "long long", "f32": "float",
               "f64": "double"}


def _tname(t: ScalarType) -> str:
    """The helper suffix of a scalar type: u8 .. i64, f32, f64, bool (DELIVERY is u32)."""
    if t.kind == "b":
        return "bool"
    return f"{t.kind}{t.bits}"


def _ctype(t: ScalarType) -> str:
    return f"rc_{_tname(t)}"


# -- the prelude -----------------------------------------------------------------------------------


def _opencl_head() -> str:
    lines = [
        "/* ringcore kernel language: OpenCL C (prelude) */",
        "#pragma OPENCL FP_CONTRACT OFF",
        "#ifdef cl_khr_fp64",
        "#pragma OPENCL EXTENSION cl_khr_fp64 : enable",
        "#define RC_HAS_F64 1",
        "#endif",
        "#ifdef cl_khr_int64_base_atomics",
        "#pragma OPENCL EXTENSION cl_khr_int64_base_atomics : enable",
        "#define RC_HAS_ATOMIC64 1",
        "#endif",
        "#define RC_GLOBAL __global",
        "#define RC_FN static inline",
        "#define RC_HANDLER",
        "#define RC_STATIC_ASSERT(cond, tag) typedef char rc_assert_##tag[(cond) ? 1 : -1]",
        "#define RC_ASSERT_OFFSET(type, field, off, tag) RC_STATIC_ASSERT(__builtin_offsetof(type, field) == (off), tag)",
        "#define RC_F32_BITS(x) as_uint(x)",
        "#define RC_F32_FROM_BITS(x) as_float(x)",
        "#define RC_F64_BITS(x) as_ulong(x)",
        "#define RC_F64_FROM_BITS(x) as_double(x)",
        "#define RC_ATOMIC_INC_U32(p) atomic_inc(p)",
        "#define RC_KERNEL_ENTRY __kernel",
        "#define RC_LOCAL_ID ((rc_u32)get_local_id(0))",
        "#define RC_LOCAL_SIZE ((rc_u32)get_local_size(0))",
        "#define RC_SHARED __local",
        "#define RC_BARRIER barrier(CLK_LOCAL_MEM_FENCE | CLK_GLOBAL_MEM_FENCE)",
        "#define RC_ACQUIRE_FENCE read_mem_fence(CLK_GLOBAL_MEM_FENCE)",
        "#define RC_RELEASE_FENCE write_mem_fence(CLK_GLOBAL_MEM_FENCE)",
    ]
    for k, v in _OCL_TYPES.items():
        if k == "f64":
            lines.append(f"#ifdef RC_HAS_F64\ntypedef {v} rc_{k};\n#endif")
        else:
            lines.append(f"typedef {v} rc_{k};")
    lines.append("typedef uchar rc_bool;")
    return "\n".join(lines)


def _cuda_head() -> str:
    lines = [
        "/* ringcore kernel language: CUDA C++ for NVRTC/nvcc (prelude); compile with cuda.NVRTC_OPTIONS */",
        "#pragma nv_diag_suppress 177 /* a helper or local declared but never referenced */",
        "#pragma nv_diag_suppress 550 /* a local set but never used */",
        "#define RC_HAS_F64 1",
        "#define RC_HAS_ATOMIC64 1",
        "#define RC_GLOBAL",
        "#define RC_FN static __device__ __forceinline__",
        "#define RC_HANDLER __device__",
        "#define RC_STATIC_ASSERT(cond, tag) static_assert(cond, #tag)",
        "#ifdef __CUDACC_RTC__",
        "/* NVRTC knows no offsetof builtin: field offsets are checked where the same source is built by nvcc */",
        "#define RC_ASSERT_OFFSET(type, field, off, tag)",
        "#else",
        "#define RC_ASSERT_OFFSET(type, field, off, tag) RC_STATIC_ASSERT(__builtin_offsetof(type, field) == (off), tag)",
        "#endif",
        "#define RC_F32_BITS(x) __float_as_uint(x)",
        "#define RC_F32_FROM_BITS(x) __uint_as_float(x)",
        "#define RC_F64_BITS(x) ((rc_u64)__double_as_longlong(x))",
        "#define RC_F64_FROM_BITS(x) __longlong_as_double((long long)(x))",
        "#define RC_ATOMIC_INC_U32(p) atomicAdd((p), 1u)",
        '#define RC_KERNEL_ENTRY extern "C" __global__',
        "#define RC_LOCAL_ID ((rc_u32)threadIdx.x)",
        "#define RC_LOCAL_SIZE ((rc_u32)blockDim.x)",
        "#define RC_SHARED __shared__",
        "#define RC_BARRIER __syncthreads()",
        "#define RC_ACQUIRE_FENCE __threadfence_system()",
        "#define RC_RELEASE_FENCE __threadfence_system()",
    ]
    for k, v in _CUDA_TYPES.items():
        lines.append(f"typedef {v} rc_{k};")
    lines.append("typedef unsigned char rc_bool;")
    return "\n".join(lines)


def _int_helpers(d: Dialect) -> str:
    out = []
    for b in _INT_BITS:
        for k in "ui":
            n = f"{k}{b}"
            T = f"rc_{n}"
            U = f"rc_u{b}"
            W = "rc_u32" if b <= 32 else "rc_u64"
            wrap = f"({T})({U})"
            out.append(f"RC_FN {T} rc_add_{n}({T} a, {T} b) {{ return {wrap}(({W})a + ({W})b); }}")
            out.append(f"RC_FN {T} rc_sub_{n}({T} a, {T} b) {{ return {wrap}(({W})a - ({W})b); }}")
            out.append(f"RC_FN {T} rc_mul_{n}({T} a, {T} b) {{ return {wrap}(({W})a * ({W})b); }}")
            out.append(f"RC_FN {T} rc_neg_{n}({T} a) {{ return {wrap}(({W})0 - ({W})a); }}")
            if k == "u":
                out.append(f"RC_FN {T} rc_floordiv_{n}({T} a, {T} b) {{ return b == 0 ? ({T})0 : ({T})(a / b); }}")
                out.append(f"RC_FN {T} rc_mod_{n}({T} a, {T} b) {{ return b == 0 ? ({T})0 : ({T})(a % b); }}")
                out.append(f"RC_FN {T} rc_lshift_{n}({T} a, {T} b) {{ return b >= {b} ? ({T})0 : {wrap}(({W})a << b); }}")
                out.append(f"RC_FN {T} rc_rshift_{n}({T} a, {T} b) {{ return b >= {b} ? ({T})0 : ({T})(a >> b); }}")
                out.append(f"RC_FN {T} rc_abs_{n}({T} a) {{ return a; }}")
            else:
                out.append(
                    f"RC_FN {T} rc_floordiv_{n}({T} a, {T} b) {{\n"
                    f"    if (b == 0) return ({T})0;\n"
                    f"    if (b == -1) return rc_neg_{n}(a);\n"
                    f"    {T} q = ({T})(a / b), r = ({T})(a % b);\n"
                    f"    if (r != 0 && ((r < 0) != (b < 0))) q = ({T})(q - 1);\n"
                    f"    return q;\n}}")
                out.append(
                    f"RC_FN {T} rc_mod_{n}({T} a, {T} b) {{\n"
                    f"    if (b == 0 || b == -1) return ({T})0;\n"
                    f"    {T} r = ({T})(a % b);\n"
                    f"    if (r != 0 && ((r < 0) != (b < 0))) r = ({T})(r + b);\n"
                    f"    return r;\n}}")
                out.append(f"RC_FN {T} rc_lshift_{n}({T} a, {T} b) "
                           f"{{ return (b < 0 || b >= {b}) ? ({T})0 : {wrap}(({W})a << b); }}")
                out.append(
                    f"RC_FN {T} rc_rshift_{n}({T} a, {T} b) {{\n"
                    f"    if (b < 0 || b >= {b}) return a < 0 ? ({T})-1 : ({T})0;\n"
                    f"    return a < 0 ? ({T})~(({T})~a >> b) : ({T})(a >> b);\n}}")
                out.append(f"RC_FN {T} rc_abs_{n}({T} a) {{ return a < 0 ? rc_neg_{n}(a) : a; }}")
            out.append(f"RC_FN {T} rc_min_{n}({T} a, {T} b) {{ return b < a ? b : a; }}")
            out.append(f"RC_FN {T} rc_max_{n}({T} a, {T} b) {{ return b > a ? b : a; }}")
    out.append("RC_FN rc_bool rc_min_bool(rc_bool a, rc_bool b) { return b < a ? b : a; }")
    out.append("RC_FN rc_bool rc_max_bool(rc_bool a, rc_bool b) { return b > a ? b : a; }")
    return "\n".join(out)


def _float_helpers(d: Dialect, bits: int) -> str:
    n = f"f{bits}"
    T = f"rc_{n}"
    half = "0.5f" if bits == 32 else "0.5"
    one = "1.0f" if bits == 32 else "1.0"
    zero = "0.0f" if bits == 32 else "0.0"
    if d.is_cuda:
        s = "f" if bits == 32 else ""
        p = "__f" if bits == 32 else "__d"
        ops = {"add": f"{p}add_rn(a, b)", "sub": f"{p}sub_rn(a, b)", "mul": f"{p}mul_rn(a, b)",
               "div": f"{p}div_rn(a, b)"}
        m = {name: f"{name}{s}" for name in ("fmod", "floor", "ceil", "copysign", "fabs", "exp", "log", "sin",
                                             "cos", "tanh", "pow")}
        m["sqrt"] = f"{p}sqrt_rn"
        m["fma"] = "__fmaf_rn" if bits == 32 else "__fma_rn"
    else:
        ops = {"add": "a + b", "sub": "a - b", "mul": "a * b", "div": "a / b"}
        m = {name: name for name in ("fmod", "floor", "ceil", "copysign", "fabs", "exp", "log", "sin", "cos",
                                     "tanh", "pow", "sqrt", "fma")}
    lim = "9223372036854775808.0f" if bits == 32 else "9223372036854775808.0"
    out = [f"RC_FN {T} rc_{op}_{n}({T} a, {T} b) {{ return {expr}; }}" for op, expr in ops.items()]
    out += [
        f"RC_FN {T} rc_neg_{n}({T} a) {{ return -a; }}",
        f"RC_FN {T} rc_abs_{n}({T} a) {{ return {m['fabs']}(a); }}",
        f"RC_FN {T} rc_min_{n}({T} a, {T} b) {{ return b < a ? b : a; }}",
        f"RC_FN {T} rc_max_{n}({T} a, {T} b) {{ return b > a ? b : a; }}",
        f"RC_FN {T} rc_pow_{n}({T} a, {T} b) {{ return {m['pow']}(a, b); }}",
        f"RC_FN {T} rc_fma_{n}({T} a, {T} b, {T} c) {{ return {m['fma']}(a, b, c); }}",
        f"RC_FN rc_bool rc_isnan_{n}({T} a) {{ return (rc_bool)(a != a); }}",
    ]
    for f in ("sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil"):
        out.append(f"RC_FN {T} rc_{f}_{n}({T} a) {{ return {m[f]}(a); }}")
    # numpy's npy_divmod, step by step (see ir.py).
    out.append(
        f"RC_FN {T} rc_divmod_{n}({T} a, {T} b, {T} *modulus) {{\n"
        f"    {T} mod = {m['fmod']}(a, b), div, floordiv;\n"
        f"    if (b == {zero}) {{ *modulus = mod; return rc_div_{n}(a, b); }}\n"
        f"    div = rc_div_{n}(rc_sub_{n}(a, mod), b);\n"
        f"    if (mod != {zero}) {{\n"
        f"        if ((b < {zero}) != (mod < {zero})) {{ mod = rc_add_{n}(mod, b); div = rc_sub_{n}(div, {one}); }}\n"
        f"    }} else {{\n"
        f"        mod = {m['copysign']}({zero}, b);\n"
        f"    }}\n"
        f"    if (div != {zero}) {{\n"
        f"        floordiv = {m['floor']}(div);\n"
        f"        if (rc_sub_{n}(div, floordiv) > {half}) floordiv = rc_add_{n}(floordiv, {one});\n"
        f"    }} else {{\n"
        f"        floordiv = {m['copysign']}({zero}, rc_div_{n}(a, b));\n"
        f"    }}\n"
        f"    *modulus = mod;\n"
        f"    return floordiv;\n}}")
    out.append(f"RC_FN {T} rc_floordiv_{n}({T} a, {T} b) {{ {T} m; return rc_divmod_{n}(a, b, &m); }}")
    out.append(f"RC_FN {T} rc_mod_{n}({T} a, {T} b) {{ {T} m; rc_divmod_{n}(a, b, &m); return m; }}")
    # float -> int: truncate toward zero to i64 (0 when not finite or out of range: the frontend fails
    # the lane before that can happen; this only keeps the C conversion defined).
    out.append(f"RC_FN rc_i64 rc_ftoi_{n}({T} x) {{ return (x >= -{lim} && x < {lim}) ? (rc_i64)x : (rc_i64)0; }}")
    text = "\n".join(out)
    if bits == 64:
        text = "#ifdef RC_HAS_F64\n" + text + "\n#endif"
    return text


def _atomic_helpers(d: Dialect) -> str:
    out = []
    G = "RC_GLOBAL"
    # Native 32-bit integer atomics.
    for n in ("i32", "u32"):
        T = f"rc_{n}"
        if d.is_cuda:
            P = "int" if n == "i32" else "unsigned int"
            fns = {"add": "atomicAdd", "sub": "atomicSub", "min": "atomicMin", "max": "atomicMax",
                   "exchange": "atomicExch"}
            for op, f in fns.items():
                out.append(f"RC_FN {T} rc_atomic_{op}_{n}({G} {T} *p, {T} v) {{ return ({T}){f}(({P} *)p, ({P})v); }}")
            out.append(f"RC_FN {T} rc_atomic_cas_{n}({G} {T} *p, {T} e, {T} v) "
                       f"{{ return ({T})atomicCAS(({P} *)p, ({P})e, ({P})v); }}")
        else:
            V = f"volatile {G} {T} *"
            fns = {"add": "atomic_add", "sub": "atomic_sub", "min": "atomic_min", "max": "atomic_max",
                   "exchange": "atomic_xchg"}
            for op, f in fns.items():
                out.append(f"RC_FN {T} rc_atomic_{op}_{n}({G} {T} *p, {T} v) {{ return {f}(({V})p, v); }}")
            out.append(f"RC_FN {T} rc_atomic_cas_{n}({G} {T} *p, {T} e, {T} v) "
                       f"{{ return atomic_cmpxchg(({V})p, e, v); }}")
    # 64-bit integers: add/sub/exchange/cas natively, min/max by a CAS loop.
    a64 = []
    for n in ("i64", "u64"):
        T = f"rc_{n}"
        if d.is_cuda:
            U = "unsigned long long"
            a64.append(f"RC_FN {T} rc_atomic_add_{n}({G} {T} *p, {T} v) {{ return ({T})atomicAdd(({U} *)p, ({U})v); }}")
            a64.append(f"RC_FN {T} rc_atomic_sub_{n}({G} {T} *p, {T} v) "
                       f"{{ return ({T})atomicAdd(({U} *)p, ({U})0 - ({U})v); }}")
            a64.append(f"RC_FN {T} rc_atomic_exchange_{n}({G} {T} *p, {T} v) "
                       f"{{ return ({T})atomicExch(({U} *)p, ({U})v); }}")
            a64.append(f"RC_FN {T} rc_atomic_cas_{n}({G} {T} *p, {T} e, {T} v) "
                       f"{{ return ({T})atomicCAS(({U} *)p, ({U})e, ({U})v); }}")
        else:
            V = f"volatile {G} {T} *"
            a64.append(f"RC_FN {T} rc_atomic_add_{n}({G} {T} *p, {T} v) {{ return atom_add(({V})p, v); }}")
            a64.append(f"RC_FN {T} rc_atomic_sub_{n}({G} {T} *p, {T} v) {{ return atom_sub(({V})p, v); }}")
            a64.append(f"RC_FN {T} rc_atomic_exchange_{n}({G} {T} *p, {T} v) {{ return atom_xchg(({V})p, v); }}")
            a64.append(f"RC_FN {T} rc_atomic_cas_{n}({G} {T} *p, {T} e, {T} v) "
                       f"{{ return atom_cmpxchg(({V})p, e, v); }}")
        for op, cmp in (("min", "<"), ("max", ">")):
            a64.append(
                f"RC_FN {T} rc_atomic_{op}_{n}({G} {T} *p, {T} v) {{\n"
                f"    {T} old = *(volatile {G} {T} *)p;\n"
                f"    while (v {cmp} old) {{\n"
                f"        {T} prev = rc_atomic_cas_{n}(p, old, v);\n"
                f"        if (prev == old) break;\n"
                f"        old = prev;\n"
                f"    }}\n"
                f"    return old;\n}}")
    out.append("#ifdef RC_HAS_ATOMIC64\n" + "\n".join(a64) + "\n#endif")
    # Floats: a CAS loop on the bit pattern.
    for bits in (32, 64):
        n = f"f{bits}"
        T = f"rc_{n}"
        B = f"rc_u{bits}"
        FB, TB = f"RC_F{bits}_FROM_BITS", f"RC_F{bits}_BITS"
        fl = []
        news = {"add": f"rc_add_{n}(o, v)", "sub": f"rc_sub_{n}(o, v)", "min": f"rc_min_{n}(o, v)",
                "max": f"rc_max_{n}(o, v)", "exchange": "v"}
        for op, new in news.items():
            fl.append(
                f"RC_FN {T} rc_atomic_{op}_{n}({G} {T} *p, {T} v) {{\n"
                f"    {G} {B} *q = ({G} {B} *)p;\n"
                f"    {B} old = *(volatile {G} {B} *)q;\n"
                f"    for (;;) {{\n"
                f"        {T} o = {FB}(old);\n"
                f"        {B} prev = rc_atomic_cas_u{bits}(q, old, {TB}({new}));\n"
                f"        if (prev == old) return o;\n"
                f"        old = prev;\n"
                f"    }}\n}}")
        fl.append(
            f"RC_FN {T} rc_atomic_cas_{n}({G} {T} *p, {T} e, {T} v) {{\n"
            f"    {G} {B} *q = ({G} {B} *)p;\n"
            f"    {B} old = *(volatile {G} {B} *)q;\n"
            f"    for (;;) {{\n"
            f"        {T} o = {FB}(old);\n"
            f"        if (!(o == e)) return o;\n"
            f"        {B} prev = rc_atomic_cas_u{bits}(q, old, {TB}(v));\n"
            f"        if (prev == old) return o;\n"
            f"        old = prev;\n"
            f"    }}\n}}")
        body = "\n".join(fl)
        if bits == 64:
            body = "#if defined(RC_HAS_F64) && defined(RC_HAS_ATOMIC64)\n" + body + "\n#endif"
        out.append(body)
    return "\n".join(out)


def _struct_from_dtype(cname: str, dtype: np.dtype, fields: dict[str, Any], prefix: str,
                       names: dict[str, str] | None = None) -> tuple[str, list[str]]:
    """A C struct byte-identical to ``dtype`` (explicit padding) and its compile-time assertions.

    ``fields``: field name -> ScalarType/ArrayType (or a numpy dtype for fixed structs);
    ``names``: field name -> C member name.
    """
    lines = ["typedef struct {"]
    asserts: list[str] = []
    cur = 0
    pad = 0
    items = sorted(((dtype.fields[nm][1], nm) for nm in dtype.names or ()), key=lambda x: x[0])
    for off, nm in items:
        fdt = dtype.fields[nm][0]
        if nm.startswith("_") and prefix == "":
            continue  # reserved bytes of a fixed struct: covered by padding
        if off > cur:
            lines.append(f"    rc_u8 _pad{pad}[{off - cur}];")
            pad += 1
        t = fields[nm]
        member = names[nm] if names else nm
        if isinstance(t, ArrayType):
            lines.append(f"    {_ctype(t.elem)} {member}[{t.size}];")
        else:
            st = t if isinstance(t, ScalarType) else _scalar_of_dtype(t)
            lines.append(f"    {_ctype(st)} {member};")
        asserts.append(f"RC_ASSERT_OFFSET({cname}, {member}, {off}, {cname}_{member}_offset);")
        cur = off + fdt.itemsize
    if dtype.itemsize > cur:
        lines.append(f"    rc_u8 _pad{pad}[{dtype.itemsize - cur}];")
    if dtype.itemsize == 0:
        lines.append("    rc_u8 _empty; /* a 0-byte record: use the size macro, not sizeof */")
    else:
        asserts.append(f"RC_STATIC_ASSERT(sizeof({cname}) == {dtype.itemsize}, {cname}_size);")
    lines.append(f"}} {cname};")
    return "\n".join(lines), asserts


def _scalar_of_dtype(dt: np.dtype) -> ScalarType:
    from ...types import scalar_type

    return scalar_type(dt)


def _fixed_structs() -> str:
    hdr_fields = {n: HEADER_DTYPE.fields[n][0] for n in HEADER_DTYPE.names}
    h, ha = _struct_from_dtype("rc_header", HEADER_DTYPE, hdr_fields, "")
    env_fields = {n: ENV_DTYPE.fields[n][0] for n in ENV_DTYPE.names}
    e, ea = _struct_from_dtype("rc_env", ENV_DTYPE, env_fields, "")
    ob_fields = {n: OUTBOX_HEAD_DTYPE.fields[n][0] for n in OUTBOX_HEAD_DTYPE.names}
    o, oa = _struct_from_dtype("rc_outbox_head", OUTBOX_HEAD_DTYPE, ob_fields, "")
    return "\n".join([
        "/* The 64-byte message header (ringcore.HEADER_DTYPE). */", h, *ha,
        "/* The per-batch environment (ringcore.lang.targets.c.ENV_DTYPE). */", e, *ea,
        "/* The head of an outbox record (ringcore.lang.targets.c.OUTBOX_HEAD_DTYPE); the payload follows. */",
        o, *oa,
        f"#define RC_STATUS_NO_REPLY {STATUS_NO_REPLY}u",
        f"#define RC_STATUS_REPLY {STATUS_REPLY}u",
        f"#define RC_STATUS_FAILED 0x{STATUS_FAILED:08x}u",
        "#define RC_FAIL(site) (RC_STATUS_FAILED | (rc_u32)(site))",
        f"#define RC_HEADER_SIZE {HEADER_SIZE}",
        f"#define RC_OUTBOX_HEAD_SIZE {OUTBOX_HEAD_SIZE}",
    ])


_PRELUDES: dict[str, str] = {}


def prelude(d: Dialect) -> str:
    """The dialect's prelude: types, semantic helpers, atomics, the header/env/outbox structs.

    It is the same for every kernel, so several kernels' parts can follow one prelude.
    """
    p = _PRELUDES.get(d.name)
    if p is None:
        head = _cuda_head() if d.is_cuda else _opencl_head()
        p = "\n".join([head, _int_helpers(d), _float_helpers(d, 32), _float_helpers(d, 64), _atomic_helpers(d),
                       _fixed_structs(), "/* end of the ringcore prelude */", ""])
        _PRELUDES[d.name] = p
    return p


# -- names -----------------------------------------------------------------------------------------


def _sanitize(s: str) -> str:
    out = []
    for ch in s:
        if ch.isascii() and (ch.isalnum() or ch == "_"):
            out.append(ch)
        else:
            out.append("_" if ch.isascii() else f"_u{ord(ch):x}_")
    r = "".join(out)
    return r or "_"


def c_ident(name: str) -> str:
    """A valid C identifier derived from a kernel id: the id itself when it is a plain identifier
    (a letter, then letters, digits and single underscores); otherwise a sanitised form with an
    8-hex-digit hash of the id appended, so that two ids never share an identifier."""
    s = _sanitize(name)
    if s == name and s[0].isalpha() and "__" not in s:
        return s
    if not s[0].isalpha():
        s = "k" + s
    s = f"{s}_{hashlib.sha256(name.encode()).hexdigest()[:8]}"
    return re.sub("_+", "_", s)


class Symbols(NamedTuple):
    """The C names a backend needs for one kernel."""

    ident: str
    handler: str
    entry: str
    in_struct: str
    out_struct: str
    state_struct: str
    in_size: int
    slot_size: int
    out_size: int
    state_size: int
    outbox_stride: int
    persist: str
    done_size: int


def _state_dtype(kir: KernelIR) -> np.dtype:
    return kir.state_dtype if kir.state_dtype is not None else struct_dtype(kir.state)


def symbols(kir: KernelIR) -> Symbols:
    i = c_ident(kir.name)
    return Symbols(
        ident=i, handler=f"rc_handle_{i}", entry=f"rc_batch_{i}", in_struct=f"rc_in_{i}", out_struct=f"rc_out_{i}",
        state_struct=f"rc_state_{i}", in_size=kir.input.dtype.itemsize, slot_size=kir.input.slot_dtype.itemsize,
        out_size=kir.output.dtype.itemsize if kir.output is not None else 0,
        state_size=_state_dtype(kir).itemsize, outbox_stride=outbox_stride(kir),
        persist=f"rc_persist_{i}", done_size=done_dtype(kir).itemsize,
    )


def persistent_refusal(kir: KernelIR) -> str | None:
    """Why ``kir`` cannot run in the persistent loop (None: it can).

    The loop answers messages without the host in between: a ``ctx.send``/``ctx.publish`` would need the
    host's delivery answer (the target's queue, its type, the hop limit) before the kernel goes on, and
    ``ctx.now()`` the host's clock for every message."""
    if outbox_stride(kir):
        return ("it sends or publishes (ctx.send/ctx.publish), whose delivery result only the host knows "
                "before the kernel goes on")
    if kir.uses_now:
        return "it reads ctx.now(), which takes the host's clock per batch"
    return None


def done_dtype(kir: KernelIR) -> np.dtype:
    """The record a persistent loop writes per message into its completion queue (see the ABI):
    the request's header, the status word, and the reply payload (when the kernel has a reply type)."""
    names, formats, offsets = ["header", "status"], [HEADER_DTYPE, "<u4"], [0, DONE_STATUS]
    size = DONE_REPLY
    if kir.output is not None:
        names.append("reply")
        formats.append(kir.output.dtype)
        offsets.append(DONE_REPLY)
        size += -(-kir.output.dtype.itemsize // 8) * 8
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})


class _Names:
    """C names for a set of Python names (prefix + sanitised, deduplicated)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.map: dict[str, str] = {}
        self.used: set[str] = set()

    def __getitem__(self, name: str) -> str:
        c = self.map.get(name)
        if c is None:
            base = self.prefix + _sanitize(name)
            c, k = base, 1
            while c in self.used:
                c, k = f"{base}_{k}", k + 1
            self.map[name] = c
            self.used.add(c)
        return c


# -- sends and the outbox --------------------------------------------------------------------------


def _all_bodies(kir: KernelIR) -> Iterable[list[Stmt]]:
    yield kir.body
    for f in kir.funcs.values():
        yield f.body


def _all_exprs(body: list[Stmt]) -> Iterable[Expr]:
    from ..ir import stmt_exprs

    for s in walk_stmts(body):
        for e in stmt_exprs(s):
            yield from walk_exprs(e)


def publish_topics(kir: KernelIR) -> list[str]:
    """The topics ``ctx.publish`` uses, in first-use order (an outbox record's ``target`` indexes it)."""
    topics: list[str] = []
    for e in _all_exprs(kir.body):
        if isinstance(e, Publish) and e.topic not in topics:
            topics.append(e.topic)
    return topics


def send_specs(kir: KernelIR) -> list[MessageSpec]:
    """The message specs ``ctx.send`` and ``ctx.publish`` send, in first-use order (distinct by type id and
    layout)."""
    seen: dict[tuple, MessageSpec] = {}
    for e in _all_exprs(kir.body):
        if isinstance(e, (Send, Publish)):
            key = (e.msg.spec.type_id, str(e.msg.spec.dtype.descr), e.msg.spec.name)
            seen.setdefault(key, e.msg.spec)
    return list(seen.values())


def outbox_stride(kir: KernelIR) -> int:
    """Bytes per outbox record (a multiple of 8); 0 when the kernel never sends."""
    specs = send_specs(kir)
    if not specs:
        return 0
    size = OUTBOX_HEAD_SIZE + max(s.dtype.itemsize for s in specs)
    return -(-size // 8) * 8


class OutboxRecord(NamedTuple):
    """One send or publish a device recorded (the C targets' outbox; the WGSL target's is converted)."""

    lane: int
    seq: int
    target: int | str  # a kernel number, a kernel name, or (publish) a topic
    spec: MessageSpec
    payload: np.void
    publish: bool = False
    #: What the kernel was told: a send's DELIVERY code, a publish's subscriber count. None: DELIVERED / one
    #: subscriber, which a device that cannot ask the host assumes (the C targets).
    answer: int | None = None


def read_outbox(kir: KernelIR, outbox: Any, count: int) -> list[OutboxRecord]:
    """Decode the outbox after a batch: ``count`` is ``env.outbox_count`` (clipped to the capacity
    the buffer holds); records come back in delivery order, (lane, seq)."""
    stride = outbox_stride(kir)
    if stride == 0 or count <= 0:
        return []
    raw = np.frombuffer(memoryview(outbox).cast("B"), dtype=np.uint8) if not isinstance(outbox, np.ndarray) \
        else outbox.reshape(-1).view(np.uint8)
    count = min(count, raw.size // stride)
    by_type = {s.type_id: s for s in send_specs(kir)}
    recs = []
    for i in range(count):
        base = i * stride
        head = raw[base:base + OUTBOX_HEAD_SIZE].view(OUTBOX_HEAD_DTYPE)[0]
        spec = by_type[int(head["type_id"])]
        payload = raw[base + OUTBOX_HEAD_SIZE:base + OUTBOX_HEAD_SIZE + spec.dtype.itemsize].copy().view(spec.dtype)
        target: int | str = int(head["target"])
        flags = int(head["flags"])
        if flags & RECORD_IS_PUBLISH:
            target = publish_topics(kir)[int(target)]
        elif flags & SEND_TARGET_IS_NAME:
            target = kir.send_targets[int(target)]
        rec = payload[0] if spec.dtype.itemsize else np.zeros(1, spec.dtype)[0]
        recs.append(OutboxRecord(int(head["lane"]), int(head["seq"]), target, spec, rec,
                                 bool(flags & RECORD_IS_PUBLISH)))
    recs.sort(key=lambda r: (r.lane, r.seq))
    return recs


def decode_status(status: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(has_reply bool array, error site u32 array (0 = none))`` of a batch's status words."""
    s = np.asarray(status, dtype=np.uint32)
    failed = (s & np.uint32(STATUS_FAILED)) != 0
    return s == STATUS_REPLY, np.where(failed, s & np.uint32(0x7FFFFFFF), 0).astype(np.uint32)


# -- build logs ------------------------------------------------------------------------------------

_CLANG_DIAG = re.compile(r"^(?P<file>.*?):(?P<line>\d+):(?:(?P<col>\d+):)?\s*(?P<kind>fatal error|error|warning):\s*"
                         r"(?P<msg>.*)$")
# PoCL's build log: "error: file:line:col: message".
_POCL_DIAG = re.compile(r"^(?P<kind>fatal error|error|warning):\s*(?P<file>.*?):(?P<line>\d+):(?:(?P<col>\d+):)?\s*"
                        r"(?P<msg>.*)$")
_NV_DIAG = re.compile(r"^(?P<file>.*?)\((?P<line>\d+)\):\s*(?P<kind>error|warning)(?:\s*#[\w-]+)?:\s*(?P<msg>.*)$")


def _c_string(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isascii() and ch.isprintable():
            out.append(ch)
        else:
            out.append("?")
    return '"' + "".join(out) + '"'


def map_build_log(log: str, kir: KernelIR) -> list[tuple[int | None, str]]:
    """The diagnostics of a compiler's build log, each as ``(line in the user's file or None, message)``.

    Lines inside the kernel's Python code (through the ``#line`` directives)
    give the Python line number and ``"error: ..."``; diagnostics in generated
    code give None and the log line as it is. Works with clang-style logs
    (most OpenCL drivers: ``file:line:col: error: ...``), PoCL's
    (``error: file:line:col: ...``) and nvcc/NVRTC logs (``file(line): error: ...``).
    """
    names = {kir.filename, _c_string(kir.filename)[1:-1]}
    out: list[tuple[int | None, str]] = []
    for raw in log.splitlines():
        line = raw.strip()
        m = _POCL_DIAG.match(line) or _CLANG_DIAG.match(line) or _NV_DIAG.match(line)
        if m is None:
            continue
        f = m["file"].strip().strip('"')
        if f in names:
            out.append((int(m["line"]), f"{m['kind']}: {m['msg']}"))
        else:
            out.append((None, line))
    return out


def compile_error(kir: KernelIR, log: str, compiler: str, target: str) -> KernelCompileError:
    """The KernelCompileError for a device compiler's refusal of ``kir``'s generated source: at the user's
    Python line when the build ``log`` points into the kernel (:func:`map_build_log`), else at the
    kernel's first line, quoting the log's first error.

    :param compiler: who refused it, for the message ("the OpenCL compiler of <device>", "NVRTC ...").
    :param target: the kernel-language target ("opencl", "cuda").
    """
    diags = map_build_log(log, kir)
    errors = [d for d in diags if "error" in d[1][:20]] or diags
    at = next(((line, msg) for line, msg in errors if line is not None), None)
    report = ("This is a bug in ringcore's {} target or a device limit; run the kernel on the cpu backend "
              "meanwhile and report it with `ringcore info`").format({"opencl": "OpenCL", "cuda": "CUDA"}.get(
                  target, target))
    if at is not None:
        line, msg = at
        src = _source_line(kir, line).strip()
        shown = f"\n    {src}" if src else ""
        return KernelCompileError(f"{kir.filename}:{line}: {compiler} refused kernel {kir.name!r}: {msg}{shown}\n"
                                  f"{report}", filename=kir.filename, line=line, construct=f"{target} build",
                                  target=target)
    first = next((msg for _, msg in errors), None)
    if first is None:
        first = next((ln.strip() for ln in log.splitlines() if "error" in ln), log.strip()[-300:] or "no build log")
    return KernelCompileError(f"{kir.filename}:{kir.first_line}: {compiler} refused kernel {kir.name!r} in "
                              f"generated code: {first}\n{report}", filename=kir.filename, line=kir.first_line,
                              construct=f"{target} build", target=target)


# -- the kernel part -------------------------------------------------------------------------------


def _source_line(kir: KernelIR, line: int) -> str:
    text = linecache.getline(kir.filename, line)
    if not text and kir.source:
        lines = kir.source.splitlines()
        k = line - kir.first_line
        if 0 <= k < len(lines):
            text = lines[k]
    return text.rstrip("\n")


def _compile_error(kir: KernelIR, d: Dialect, pos: Any, construct: str, message: str) -> KernelCompileError:
    line = pos.line if pos is not None else kir.first_line
    col = pos.col if pos is not None else 0
    src = _source_line(kir, line)
    shown = f"\n    {src.strip()}" if src else ""
    return KernelCompileError(f"{kir.filename}:{line}:{col + 1}: {message}{shown}", filename=kir.filename,
                              line=line, col=col, construct=construct, target=d.name)


def _int_literal(d: Dialect, v: int, t: ScalarType) -> str:
    T = _ctype(t)
    v = int(v)
    if t.bits == 64:
        if t.kind == "u":
            return f"(({T}){v}{d.u64_suffix})"
        if v == -(1 << 63):
            return f"(({T})(-{(1 << 63) - 1}{d.i64_suffix} - 1))"
        return f"(({T}){v}{d.i64_suffix})"
    if t.kind == "u":
        return f"(({T}){v}u)"
    if v == -(1 << 31):
        return f"(({T})(-2147483647 - 1))"
    return f"(({T}){v})" if v >= 0 else f"(({T})({v}))"


def _float_literal(v: float, t: ScalarType) -> str:
    v = float(v)
    if t.bits == 32:
        if math.isfinite(v):
            return f"{float(np.float32(v))!r}f"
        bits = int(np.array(v, np.float32).view(np.uint32))
        return f"RC_F32_FROM_BITS(0x{bits:08x}u)"
    if math.isfinite(v):
        return f"{v!r}"
    bits = int(np.array(v, np.float64).view(np.uint64))
    return f"RC_F64_FROM_BITS((rc_u64)0x{bits:016x}UL)"


def _func_can_fail(kir: KernelIR) -> dict[str, bool]:
    can: dict[str, bool] = {}

    def visit(name: str, stack: tuple[str, ...]) -> bool:
        if name in can:
            return can[name]
        f = kir.funcs[name]
        r = any(isinstance(s, Fail) for s in walk_stmts(f.body))
        for e in _all_exprs(f.body):
            if isinstance(e, CallFunc) and e.name not in stack:
                r = visit(e.name, stack + (e.name,)) or r
        can[name] = r
        return r

    for n in kir.funcs:
        visit(n, (n,))
    return can


class _FnEmitter:
    """Emits one function body (the handler or a @func)."""

    def __init__(self, ke: _KernelEmitter, locals_: dict[str, RingType], is_handler: bool,
                 ret: ScalarType | None = None, fails: bool = False) -> None:
        self.ke = ke
        self.d = ke.d
        self.kir = ke.kir
        self.is_handler = is_handler
        self.ret = ret
        self.fails = fails  # a @func returning a status (it can fail)
        self.vars = _Names("v_")
        self.locals = locals_
        self.lines = ke.lines  # written straight into the kernel part (the #line numbers count on it)
        self.tmp = 0
        self.hoisted: dict[int, str] = {}
        self.directive: tuple[int, int] | None = None  # (line, index in lines) of the last user #line

    # -- output helpers
    def w(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def new_tmp(self, prefix: str = "t") -> str:
        self.tmp += 1
        return f"{prefix}_{self.tmp}"

    def line_directive(self, indent: int, pos: Any) -> None:
        if pos is None or pos.line < 1:
            return
        if self.directive is not None:
            line, at = self.directive
            if line + (len(self.lines) - at - 1) == pos.line:
                return  # the compiler already counts this line right
        self.lines.append(f"#line {pos.line} {self.ke.file_literal}")
        self.directive = (pos.line, len(self.lines) - 1)

    # -- references
    def array_base(self, ref: Ref) -> str:
        if ref.space == "local":
            return self.vars[ref.name]
        if ref.space == "msg":
            return f"msg->{self.ke.in_names[ref.name]}"
        if ref.space == "state":
            return f"state->{self.ke.state_names[ref.name]}"
        raise AssertionError(f"unknown ref space {ref.space!r}")

    def ref_lvalue(self, ref: Ref) -> str:
        base = self.array_base(ref)
        if ref.index is not None:
            return f"{base}[{self.expr(ref.index)}]"
        return base

    # -- expressions
    def expr(self, e: Expr) -> str:
        h = self.hoisted.get(id(e))
        if h is not None:
            return h
        d = self.d
        t = e.type
        if isinstance(e, Const):
            if t.kind == "b":
                return "((rc_bool)1)" if e.value else "((rc_bool)0)"
            if t.is_float:
                return _float_literal(e.value, t)
            return _int_literal(d, e.value, t)
        if isinstance(e, Load):
            if isinstance(e.ref.type, ArrayType) and e.ref.index is None:
                raise AssertionError("a whole array cannot be loaded as a value")
            return self.ref_lvalue(e.ref)
        if isinstance(e, CtxValue):
            if e.name == "thread_id":
                return "thread_id"
            if e.name == "kernel_number":
                return "env->kernel_number"
            if e.name.startswith("header.") and e.name[7:] in HEADER_DTYPE.names:
                return f"(({_ctype(t)})hdr->{e.name[7:]})"
            raise self.ke.error(e.pos, f"ctx.{e.name}", f"ctx.{e.name} is not available in compiled kernels")
        if isinstance(e, Unary):
            a = self.expr(e.operand)
            if e.op == "not":
                return f"((rc_bool)!({a}))"
            if e.op == "neg":
                return f"rc_neg_{_tname(t)}({a})"
            if e.op == "invert":
                if t.kind == "b":
                    return f"((rc_bool)!({a}))"
                return f"(({_ctype(t)})~({a}))"
            raise AssertionError(e.op)
        if isinstance(e, Binary):
            a, b = self.expr(e.left), self.expr(e.right)
            op = e.op
            if op in ("and_", "or_", "xor"):
                c = {"and_": "&", "or_": "|", "xor": "^"}[op]
                return f"(({_ctype(t)})(({a}) {c} ({b})))"
            if t.kind == "b":
                raise self.ke.error(e.pos, op, f"operator {op} on bool values is not supported")
            if op in ("div", "pow") and not t.is_float:
                raise self.ke.error(e.pos, op, f"operator {op} takes floats")
            return f"rc_{op}_{_tname(t)}({a}, {b})"
        if isinstance(e, Compare):
            a, b = self.expr(e.left), self.expr(e.right)
            c = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[e.op]
            return f"((rc_bool)(({a}) {c} ({b})))"
        if isinstance(e, Logical):
            a, b = self.expr(e.left), self.expr(e.right)
            c = "&&" if e.op == "and" else "||"
            return f"((rc_bool)(({a}) {c} ({b})))"
        if isinstance(e, Select):
            return f"(({self.expr(e.cond)}) ? ({self.expr(e.a)}) : ({self.expr(e.b)}))"
        if isinstance(e, Cast):
            return self.cast(e.operand, t)
        if isinstance(e, Builtin):
            args = [self.expr(x) for x in e.args]
            if e.name == "isnan":
                return f"rc_isnan_{_tname(e.args[0].type)}({args[0]})"
            if e.name == "clamp":
                n = _tname(t)
                return f"rc_min_{n}(rc_max_{n}({args[0]}, {args[1]}), {args[2]})"
            if e.name not in ("abs", "min", "max") and not t.is_float:
                raise self.ke.error(e.pos, e.name, f"{e.name}() takes floats")
            if e.name == "abs" and t.kind == "b":
                return f"(({args[0]}))"
            return f"rc_{e.name}_{_tname(t)}({', '.join(args)})"
        if isinstance(e, CallFunc):
            if self.ke.can_fail[e.name]:
                raise AssertionError("a call of a failing function must be hoisted")
            args = [self.expr(x) for x in e.args]
            return f"{self.ke.func_names[e.name]}({', '.join(args)})"
        if isinstance(e, (Atomic, Send, Publish)):
            raise AssertionError("effects must be hoisted")
        raise AssertionError(f"unknown expression {type(e).__name__}")

    def cast(self, x: Expr, t: ScalarType) -> str:
        s = x.type
        a = self.expr(x)
        T = _ctype(t)
        if (s.kind, s.bits) == (t.kind, t.bits):
            return a
        if t.kind == "b":
            return f"((rc_bool)(({a}) != 0))"
        if s.kind == "b":
            return f"(({T})({a}))"
        if s.is_float and t.is_integer:
            inner = f"rc_ftoi_{_tname(s)}({a})"
            if t.kind == "u":
                return f"(({T})(rc_u64){inner})"
            return f"(({T}){inner})"
        return f"(({T})({a}))"

    # -- hoisting (effects and failing calls, in Python's evaluation order)
    def _needs_hoist(self, e: Expr) -> bool:
        return isinstance(e, (Atomic, Send, Publish)) or (isinstance(e, CallFunc) and self.ke.can_fail[e.name])

    def _order(self, e: Expr, acc: list[tuple[Expr, bool]], lazy: bool) -> None:
        """Post-order list of (node, in a lazily evaluated operand) in evaluation order."""
        if isinstance(e, Logical):
            self._order(e.left, acc, lazy)
            self._order(e.right, acc, True)
        elif isinstance(e, Select):
            self._order(e.cond, acc, lazy)
            self._order(e.a, acc, True)
            self._order(e.b, acc, True)
        elif isinstance(e, Atomic):
            if e.expected is not None:
                self._order(e.expected, acc, lazy)
            self._order(e.value, acc, lazy)
            if e.ref.index is not None:
                self._order(e.ref.index, acc, lazy)
        elif isinstance(e, (Send, Publish)):
            if isinstance(e, Send) and isinstance(e.target, Expr):
                self._order(e.target, acc, lazy)
            for v in e.msg.fields.values():
                if isinstance(v, Expr):
                    self._order(v, acc, lazy)
        elif isinstance(e, Load):
            if e.ref.index is not None:
                self._order(e.ref.index, acc, lazy)
        elif isinstance(e, Unary) or isinstance(e, Cast):
            self._order(e.operand, acc, lazy)
        elif isinstance(e, (Binary, Compare)):
            self._order(e.left, acc, lazy)
            self._order(e.right, acc, lazy)
        elif isinstance(e, (Builtin, CallFunc)):
            for x in e.args:
                self._order(x, acc, lazy)
        acc.append((e, lazy))

    def hoist(self, indent: int, exprs: list[Expr]) -> None:
        """Evaluate the effects (atomics, sends, failing calls) of a statement's expressions into
        temporaries, in order; state loads evaluated before an effect are hoisted too."""
        order: list[tuple[Expr, bool]] = []
        for e in exprs:
            self._order(e, order, False)
        last = -1
        for i, (e, lazy) in enumerate(order):
            if self._needs_hoist(e):
                if lazy:
                    raise self.ke.error(e.pos, type(e).__name__,
                                        "an effect inside a short-circuit or conditional operand")
                last = i
        if last < 0:
            return
        for e, lazy in order[:last + 1]:
            if lazy or id(e) in self.hoisted:
                continue
            if self._needs_hoist(e):
                self.emit_effect(indent, e)
            elif isinstance(e, Load) and e.ref.space == "state":
                name = self.new_tmp()
                self.w(indent, f"{_ctype(e.type)} {name} = {self.expr(e)};")
                self.hoisted[id(e)] = name

    def emit_effect(self, indent: int, e: Expr) -> None:
        name = self.new_tmp()
        T = _ctype(e.type)
        if isinstance(e, Atomic):
            self.ke.check_atomic(e)
            ref = e.ref
            n = _tname(ref.type if isinstance(ref.type, ScalarType) else ref.type.elem)
            ptr = f"&{self.ref_lvalue(ref)}"
            if e.op == "cas":
                self.w(indent, f"{T} {name} = rc_atomic_cas_{n}({ptr}, {self.expr(e.expected)}, {self.expr(e.value)});")
            else:
                self.w(indent, f"{T} {name} = rc_atomic_{e.op}_{n}({ptr}, {self.expr(e.value)});")
        elif isinstance(e, CallFunc):
            args = [self.expr(x) for x in e.args]
            fn = self.ke.funcs_by_name[e.name]
            st = self.new_tmp("s")
            if fn.ret is not None:
                self.w(indent, f"{_ctype(fn.ret)} {name};")
                args.append(f"&{name}")
            self.w(indent, f"rc_u32 {st} = {self.ke.func_names[e.name]}({', '.join(args)});")
            self.w(indent, f"if ({st} != 0u) return {st};")
        elif isinstance(e, (Send, Publish)):
            self.emit_send(indent, e, name)
        else:
            raise AssertionError(type(e).__name__)
        self.hoisted[id(e)] = name

    def emit_send(self, indent: int, e: Send | Publish, name: str) -> None:
        ke = self.ke
        spec = e.msg.spec
        sname, fnames = ke.send_struct(spec)
        ok, full = "1u", "2u"  # DELIVERED, QUEUE_FULL
        if isinstance(e, Publish):
            target, flags = f"{publish_topics(ke.kir).index(e.topic)}u", RECORD_IS_PUBLISH
            ok, full = "1u", "0u"  # recorded for delivery: one delivery; no room: none
        elif isinstance(e.target, str):
            target, flags = f"{ke.kir.send_targets.index(e.target)}u", SEND_TARGET_IS_NAME
        else:
            target, flags = f"(rc_u32)({self.expr(e.target)})", 0
        slot = self.new_tmp("slot")
        rec = self.new_tmp("rec")
        self.w(indent, f"rc_u32 {name};")
        self.w(indent, "{")
        i = indent + 1
        self.w(i, f"rc_u32 {slot} = RC_ATOMIC_INC_U32(&env->outbox_count);")
        self.w(i, f"if ({slot} < env->outbox_capacity) {{")
        j = i + 1
        self.w(j, f"RC_GLOBAL rc_u8 *{rec} = outbox + (rc_u64){slot} * {ke.outbox_stride}u;")
        self.w(j, f"RC_GLOBAL rc_outbox_head *{rec}_h = (RC_GLOBAL rc_outbox_head *){rec};")
        self.w(j, f"RC_GLOBAL {sname} *{rec}_p = (RC_GLOBAL {sname} *)({rec} + RC_OUTBOX_HEAD_SIZE);")
        self.w(j, f"{rec}_h->lane = thread_id; {rec}_h->seq = rc_seq; {rec}_h->target = {target};")
        self.w(j, f"{rec}_h->type_id = {spec.type_id}u; {rec}_h->flags = {flags}u; "
                  f"{rec}_h->size = {spec.dtype.itemsize}u;")
        self.write_msg(j, spec, e.msg, f"{rec}_p", fnames)
        self.w(j, f"{name} = {ok};")
        self.w(i, "} else {")
        self.w(j, f"{name} = {full};")
        self.w(i, "}")
        self.w(i, "rc_seq = rc_seq + 1u;")
        self.w(indent, "}")

    def write_msg(self, indent: int, spec: MessageSpec, mv: MsgValue, ptr: str, fnames: dict[str, str]) -> None:
        for fname, ftype in spec.fields.items():
            member = f"{ptr}->{fnames[fname]}"
            v = mv.fields.get(fname)
            if isinstance(ftype, ArrayType):
                k = self.new_tmp("i")
                if v is None:
                    self.w(indent, f"for (rc_u32 {k} = 0; {k} < {ftype.size}u; {k}++) {member}[{k}] = 0;")
                else:
                    if not isinstance(v, Ref):
                        raise AssertionError(f"array field {fname} needs a Ref")
                    src = self.array_base(v)
                    self.w(indent, f"for (rc_u32 {k} = 0; {k} < {ftype.size}u; {k}++) {member}[{k}] = {src}[{k}];")
            else:
                if v is None:
                    val = "0"
                elif isinstance(v, Ref):
                    val = self.ref_lvalue(v)
                else:
                    val = self.expr(v)
                self.w(indent, f"{member} = {val};")

    # -- statements
    def block(self, indent: int, body: list[Stmt]) -> None:
        for s in body:
            self.stmt(indent, s)

    def stmt(self, indent: int, s: Stmt) -> None:
        self.line_directive(indent, s.pos)
        if isinstance(s, Assign):
            exprs = [s.value] + ([s.ref.index] if s.ref.index is not None else [])
            self.hoist(indent, exprs)
            self.w(indent, f"{self.ref_lvalue(s.ref)} = {self.expr(s.value)};")
        elif isinstance(s, Eval):
            self.hoist(indent, [s.expr])
            if id(s.expr) not in self.hoisted:
                self.w(indent, f"(void)({self.expr(s.expr)});")
        elif isinstance(s, ArrayCopy):
            t = s.dst.type
            assert isinstance(t, ArrayType)
            k = self.new_tmp("i")
            self.w(indent, f"for (rc_u32 {k} = 0; {k} < {t.size}u; {k}++) "
                           f"{self.array_base(s.dst)}[{k}] = {self.array_base(s.src)}[{k}];")
        elif isinstance(s, ArrayZero):
            t = s.ref.type
            assert isinstance(t, ArrayType)
            k = self.new_tmp("i")
            self.w(indent, f"for (rc_u32 {k} = 0; {k} < {t.size}u; {k}++) {self.array_base(s.ref)}[{k}] = 0;")
        elif isinstance(s, If):
            self.hoist(indent, [s.cond])
            self.w(indent, f"if ({self.expr(s.cond)}) {{")
            self.block(indent + 1, s.then)
            if s.orelse:
                self.w(indent, "} else {")
                self.block(indent + 1, s.orelse)
            self.w(indent, "}")
        elif isinstance(s, While):
            order: list[tuple[Expr, bool]] = []
            self._order(s.cond, order, False)
            if any(self._needs_hoist(e) for e, _ in order):
                self.w(indent, "for (;;) {")
                self.hoist(indent + 1, [s.cond])
                self.w(indent + 1, f"if (!({self.expr(s.cond)})) break;")
            else:
                self.w(indent, f"while ({self.expr(s.cond)}) {{")
            self.block(indent + 1, s.body)
            self.w(indent, "}")
        elif isinstance(s, For):
            self.emit_for(indent, s)
        elif isinstance(s, Break):
            self.w(indent, "break;")
        elif isinstance(s, Continue):
            self.w(indent, "continue;")
        elif isinstance(s, Fail):
            self.w(indent, f"return RC_FAIL({int(s.site)});")
        elif isinstance(s, Return):
            self.emit_return(indent, s)
        elif isinstance(s, Tick):
            k = self.new_tmp("tick")
            self.w(indent, f"{{ rc_u32 {k} = RC_ATOMIC_INC_U32(&env->tick_count);")
            if s.physical is not None:
                self.w(indent + 1, f"{self.ref_lvalue(s.physical)} = ({_ctype(s.physical.type)})env->hlc_physical;")
            if s.logical is not None:
                self.w(indent + 1,
                       f"{self.ref_lvalue(s.logical)} = ({_ctype(s.logical.type)})(env->hlc_logical + {k});")
            self.w(indent + 1, f"(void){k}; }}")
        else:
            raise AssertionError(f"unknown statement {type(s).__name__}")

    def emit_return(self, indent: int, s: Return) -> None:
        v = s.value
        if self.is_handler:
            if v is None:
                self.w(indent, "return RC_STATUS_NO_REPLY;")
                return
            if not isinstance(v, MsgValue):
                raise AssertionError("a kernel returns a message or None")
            self.hoist(indent, [x for x in v.fields.values() if isinstance(x, Expr)])
            self.write_msg(indent, v.spec, v, "out", self.ke.out_names)
            self.w(indent, "return RC_STATUS_REPLY;")
            return
        if self.fails:
            if v is not None:
                assert isinstance(v, Expr)
                self.hoist(indent, [v])
                self.w(indent, f"*rc_ret = {self.expr(v)};")
            self.w(indent, "return 0u;")
        else:
            if v is None:
                self.w(indent, "return;")
            else:
                assert isinstance(v, Expr)
                self.hoist(indent, [v])
                self.w(indent, f"return {self.expr(v)};")

    def emit_for(self, indent: int, s: For) -> None:
        t = s.start.type
        T = _ctype(t)
        W = "rc_u32" if t.bits <= 32 else "rc_u64"
        var = self.vars[s.var]
        n = self.new_tmp("n")
        k = self.new_tmp("k")
        const = all(isinstance(x, Const) for x in (s.start, s.stop, s.step))
        self.hoist(indent, [s.start, s.stop, s.step])
        if const:
            start, stop, step = (int(x.value) for x in (s.start, s.stop, s.step))
            if step == 0:
                count = 0
            else:
                count = max(0, -((start - stop) // step)) if step > 0 else max(0, -((stop - start) // -step))
            a, st = self.expr(s.start), self.expr(s.step)
            suffix = "u" if W == "rc_u32" else self.d.u64_suffix
            self.w(indent, f"{W} {n} = {count}{suffix};")
        else:
            a, b, st = self.new_tmp("start"), self.new_tmp("stop"), self.new_tmp("step")
            self.w(indent, f"{T} {a} = {self.expr(s.start)};")
            self.w(indent, f"{T} {b} = {self.expr(s.stop)};")
            self.w(indent, f"{T} {st} = {self.expr(s.step)};")
            self.w(indent, f"{W} {n} = 0;")
            self.w(indent, f"if ({st} > 0) {{ if ({a} < {b}) {n} = ({W})((({W})(({W}){b} - ({W}){a}) - 1u) "
                           f"/ ({W}){st} + 1u); }}")
            if t.kind == "i":
                self.w(indent, f"else if ({st} < 0) {{ if ({a} > {b}) {n} = ({W})((({W})(({W}){a} - ({W}){b}) - 1u) "
                               f"/ ({W})(({W})0 - ({W}){st}) + 1u); }}")
        self.w(indent, f"for ({W} {k} = 0; {k} < {n}; {k}++) {{")
        self.w(indent + 1, f"{var} = ({T})({W})(({W}){a} + {k} * ({W}){st});")
        self.block(indent + 1, s.body)
        self.w(indent, "}")

    # -- declarations
    def declare_locals(self, indent: int, skip: Iterable[str] = ()) -> None:
        skip = set(skip)
        for name, t in self.locals.items():
            if name in skip:
                continue
            if isinstance(t, ArrayType):
                self.w(indent, f"{_ctype(t.elem)} {self.vars[name]}[{t.size}] = {{0}};")
            else:
                self.w(indent, f"{_ctype(t)} {self.vars[name]} = 0;")


class _KernelEmitter:
    def __init__(self, kir: KernelIR, d: Dialect) -> None:
        self.kir = kir
        self.d = d
        self.sym = symbols(kir)
        self.ident = self.sym.ident
        self.file_literal = _c_string(kir.filename)
        self.gen_file = _c_string(f"<ringcore:{kir.name}.{d.ext}>")
        self.in_names = _Names("f_")
        self.out_names = _Names("f_")
        self.state_names = _Names("f_")
        self.can_fail = _func_can_fail(kir)
        self.funcs_by_name = dict(kir.funcs)
        fn = _Names(f"rc_fn_{self.ident}_")
        self.func_names = {name: fn[name] for name in kir.funcs}
        self.send_structs: dict[tuple, tuple[str, dict[str, str]]] = {}
        self.outbox_stride = outbox_stride(kir)
        self.lines: list[str] = []

    def error(self, pos: Any, construct: str, message: str) -> KernelCompileError:
        return _compile_error(self.kir, self.d, pos, construct, f"{message} (the {self.d.name} target)")

    def check_atomic(self, e: Atomic) -> None:
        t = e.ref.type if isinstance(e.ref.type, ScalarType) else e.ref.type.elem
        if t.kind == "b" or t.bits < 32:
            raise self.error(
                e.pos, f"atomic_{e.op}",
                f"atomic_{'compare_exchange' if e.op == 'cas' else e.op} on state field {e.ref.name!r} of type "
                f"{t.name}: the {self.d.name} target has atomics on 32- and 64-bit fields only; declare "
                f"{e.ref.name!r} as {'u32' if t.kind in 'ub' else 'i32'} (or another 32/64-bit type)")

    def send_struct(self, spec: MessageSpec) -> tuple[str, dict[str, str]]:
        key = (spec.type_id, str(spec.dtype.descr), spec.name)
        r = self.send_structs.get(key)
        if r is None:
            raise AssertionError("send struct not declared")
        return r

    def gen_line(self) -> None:
        """Point the compiler back at the generated code (the next line's number in this part)."""
        self.lines.append(f"#line {len(self.lines) + 2} {self.gen_file}")

    def struct(self, cname: str, dtype: np.dtype, fields: dict[str, RingType], names: _Names, what: str) -> None:
        m = {f: names[f] for f in fields}
        text, asserts = _struct_from_dtype(cname, dtype, fields, "f_", m)
        self.lines.append(f"/* {what} */")
        self.lines.extend(text.splitlines())
        self.lines.extend(asserts)

    def emit(self) -> str:
        kir, d, i = self.kir, self.d, self.ident
        L = self.lines
        L.append(f"#line 1 {self.gen_file}")
        L.append(f"/* ---- kernel {kir.name!r} ({kir.filename}:{kir.first_line}) ---- */")
        sym = self.sym
        L.append(f"#define RC_IN_SIZE_{i} {sym.in_size}")
        L.append(f"#define RC_SLOT_SIZE_{i} {sym.slot_size}")
        L.append(f"#define RC_OUT_SIZE_{i} {sym.out_size}")
        L.append(f"#define RC_STATE_SIZE_{i} {sym.state_size}")
        L.append(f"#define RC_OUTBOX_STRIDE_{i} {sym.outbox_stride}")
        L.append(f"#define RC_SERIAL_{i} {1 if kir.serial else 0}")
        self.struct(sym.in_struct, kir.input.dtype, kir.input.fields, self.in_names,
                    f"input payload: {kir.input.name}")
        if kir.output is not None:
            self.struct(sym.out_struct, kir.output.dtype, kir.output.fields, self.out_names,
                        f"reply payload: {kir.output.name}")
        else:
            L.append(f"typedef struct {{ rc_u8 _empty; }} {sym.out_struct}; /* the kernel never replies */")
        self.struct(sym.state_struct, _state_dtype(kir), kir.state, self.state_names, "kernel state")
        for k, spec in enumerate(send_specs(kir)):
            cname = f"rc_msg_{i}_{k}"
            names = _Names("f_")
            self.send_structs[(spec.type_id, str(spec.dtype.descr), spec.name)] = (
                cname, {f: names[f] for f in spec.fields})
            self.struct(cname, spec.dtype, spec.fields, names, f"sent message: {spec.name}")
        # 64-bit atomics need the extension on OpenCL.
        uses64 = [e for e in _all_exprs(kir.body) if isinstance(e, Atomic)
                  and (e.ref.type if isinstance(e.ref.type, ScalarType) else e.ref.type.elem).bits == 64]
        if uses64 and not d.is_cuda:
            L.append("#ifndef RC_HAS_ATOMIC64")
            L.append(f'#error "kernel {_c_string(kir.name)[1:-1]}: an atomic on the 64-bit state field '
                     f'{uses64[0].ref.name} needs cl_khr_int64_base_atomics, which this device lacks"')
            L.append("#endif")
        for name in self._func_order():
            self.emit_func(kir.funcs[name])
        self.emit_handler()
        self.emit_entry()
        self.emit_persistent()
        L.append("")
        return "\n".join(L)

    def _func_order(self) -> list[str]:
        """Callees before callers."""
        order: list[str] = []
        seen: set[str] = set()

        def visit(n: str) -> None:
            if n in seen:
                return
            seen.add(n)
            for e in _all_exprs(self.kir.funcs[n].body):
                if isinstance(e, CallFunc) and e.name in self.kir.funcs:
                    visit(e.name)
            order.append(n)

        for n in self.kir.funcs:
            visit(n)
        return order

    def emit_func(self, f: Function) -> None:
        fails = self.can_fail[f.name]
        fe = _FnEmitter(self, f.locals, False, f.ret, fails)
        params = [f"{_ctype(t)} {fe.vars[p]}" for p, t in f.params]
        if fails:
            if f.ret is not None:
                params.append(f"{_ctype(f.ret)} *rc_ret")
            ret = "rc_u32"
        else:
            ret = _ctype(f.ret) if f.ret is not None else "void"
        self.gen_line()
        self.lines.append(f"/* @ringcore.func {f.name} */")
        self.lines.append(f"RC_FN {ret} {self.func_names[f.name]}({', '.join(params) or 'void'}) {{")
        fe.declare_locals(1, skip=[p for p, _ in f.params])
        fe.block(1, f.body)
        self.gen_line()
        if fails:
            fe.w(1, "return 0u;")
        elif f.ret is not None:
            fe.w(1, f"return ({_ctype(f.ret)})0;")
        self.lines.append("}")

    def emit_handler(self) -> None:
        kir, sym = self.kir, self.sym
        fe = _FnEmitter(self, kir.locals, True)
        self.gen_line()
        self.lines.append(f"/* the handler of kernel {kir.name!r} */")
        self.lines.append(
            f"RC_HANDLER rc_u32 {sym.handler}(RC_GLOBAL const rc_header *hdr, RC_GLOBAL const {sym.in_struct} *msg, "
            f"RC_GLOBAL {sym.out_struct} *out, RC_GLOBAL {sym.state_struct} *state, RC_GLOBAL rc_env *env, "
            f"RC_GLOBAL rc_u8 *outbox, rc_u32 thread_id) {{")
        fe.w(1, "(void)hdr; (void)msg; (void)out; (void)state; (void)env; (void)outbox; (void)thread_id;")
        if self.outbox_stride:
            fe.w(1, "rc_u32 rc_seq = 0u;")
        fe.declare_locals(1)
        fe.block(1, kir.body)
        self.gen_line()
        self.lines.append("    return RC_STATUS_NO_REPLY;")
        self.lines.append("}")

    def emit_entry(self) -> None:
        kir, d, sym, i = self.kir, self.d, self.sym, self.ident
        G = "__global " if not d.is_cuda else ""
        params = (f"const rc_u32 n, {G}const rc_u8 *in_slots, {G}rc_u8 *replies, {G}rc_u32 *status, "
                  f"{G}rc_u8 *state, {G}rc_env *env, {G}rc_u8 *outbox")
        self.gen_line()
        L = self.lines
        if d.is_cuda:
            L.append(f'extern "C" __global__ void {sym.entry}({params}) {{')
            gid = "(rc_u32)(blockIdx.x * blockDim.x + threadIdx.x)"
        else:
            L.append(f"__kernel void {sym.entry}({params}) {{")
            gid = "(rc_u32)get_global_id(0)"
        call = (f"{sym.handler}(({G}const rc_header *)slot, ({G}const {sym.in_struct} *)(slot + RC_HEADER_SIZE), "
                f"({G}{sym.out_struct} *)(replies + (rc_u64)i * RC_OUT_SIZE_{i}), ({G}{sym.state_struct} *)state, "
                f"env, outbox, i)")
        # The status word is stored last, after a release fence: a host polling it in shared memory
        # (OpenCL SVM) sees the lane's reply and outbox records once it sees the status.
        fence = "write_mem_fence(CLK_GLOBAL_MEM_FENCE); " if not d.is_cuda else ""
        if kir.serial:
            L.append(f"    if ({gid} != 0u) return;")
            L.append("    for (rc_u32 i = 0; i < n; i++) {")
            L.append(f"        {G}const rc_u8 *slot = in_slots + (rc_u64)i * RC_SLOT_SIZE_{i};")
            L.append(f"        rc_u32 st = {call};")
            L.append(f"        {fence}status[i] = st;")
            L.append("    }")
        else:
            L.append(f"    rc_u32 i = {gid};")
            L.append("    if (i >= n) return;")
            L.append(f"    {G}const rc_u8 *slot = in_slots + (rc_u64)i * RC_SLOT_SIZE_{i};")
            L.append(f"    rc_u32 st = {call};")
            L.append(f"    {fence}status[i] = st;")
        L.append("}")


    def emit_persistent(self) -> None:
        """The persistent loop ``rc_persist_<ident>`` (one work-group / block; see the ABI)."""
        kir, sym, i = self.kir, self.sym, self.ident
        G = "RC_GLOBAL "
        V = f"{G}volatile "
        self.gen_line()
        L = self.lines
        L.append(f"/* the persistent loop of kernel {_c_string(kir.name)[1:-1]} */")
        L.append(f"RC_KERNEL_ENTRY void {sym.persist}({V}rc_u8 *inq, {V}rc_u8 *doneq, {V}rc_u32 *control, "
                 f"{G}rc_u8 *state, {G}rc_env *env, {G}rc_u8 *outbox, const rc_u32 max_batch) {{")
        body = f"""\
    const rc_u32 lid = RC_LOCAL_ID;
    const rc_u32 width = RC_LOCAL_SIZE;
    RC_SHARED rc_u64 rc_claim[3];
    {V}rc_u64 *in_head = ({V}rc_u64 *)(inq + {_Q_HEAD});
    {V}rc_u64 *in_tail = ({V}rc_u64 *)(inq + {_Q_TAIL});
    {V}rc_u64 *done_head = ({V}rc_u64 *)(doneq + {_Q_HEAD});
    {V}rc_u64 *done_tail = ({V}rc_u64 *)(doneq + {_Q_TAIL});
    {V}rc_u64 *claimed = ({V}rc_u64 *)((({G}rc_u8 *)env) + {ENV_CLAIMED});
    const rc_u64 in_mask = *({V}rc_u64 *)(inq + {_Q_CAPACITY}) - 1;
    const rc_u64 done_cap = *({V}rc_u64 *)(doneq + {_Q_CAPACITY});
    for (;;) {{
        if (lid == 0u) {{
            rc_u64 n = 0;
            rc_u64 first = 0;
            rc_u64 stop = 0;
            for (;;) {{
                if (control[1] != 0u) {{ stop = 1; break; }}  /* should_terminate */
                first = *claimed;  /* read before the head: claimed <= head then, whatever other groups do */
                rc_u64 head = *in_head;
                RC_ACQUIRE_FENCE;
                if (control[0] != 0u) {{  /* active */
                    /* message i completes into record i: records [done_tail, first) are taken */
                    rc_u64 room = done_cap - (first - *done_tail);
                    n = head - first;  /* 0: every queued message is claimed */
                    if (n > room) n = room;
                    if (n > (rc_u64)max_batch) n = (rc_u64)max_batch;
#ifdef RC_HAS_ATOMIC64
                    if (n != 0 && rc_atomic_cas_u64(({G}rc_u64 *)claimed, first, first + n) == first) break;
#else
                    if (n != 0) {{ *claimed = first + n; break; }}  /* one work-group only (see the ABI) */
#endif
                }}
            }}
            rc_claim[0] = n;
            rc_claim[1] = first;
            rc_claim[2] = stop;
        }}
        RC_BARRIER;
        const rc_u64 n = rc_claim[0];
        const rc_u64 first = rc_claim[1];
        if (rc_claim[2] != 0) break;
        for (rc_u64 k = lid; k < n; k += width) {{
            {G}const rc_u8 *slot = ({G}const rc_u8 *)(inq + {_Q_SLOTS} + ((first + k) & in_mask) * RC_SLOT_SIZE_{i});
            {G}rc_u8 *rec = ({G}rc_u8 *)(doneq + {_Q_SLOTS} + ((first + k) & (done_cap - 1)) * {sym.done_size});
            for (int w = 0; w < {HEADER_SIZE // 8}; w++) (({G}rc_u64 *)rec)[w] = (({G}const rc_u64 *)slot)[w];
            {G}const rc_header *hdr = ({G}const rc_header *)slot;
            rc_u32 st = RC_STATUS_NO_REPLY;
            if (hdr->type_id == {kir.input.type_id}u)
                st = {sym.handler}(hdr, ({G}const {sym.in_struct} *)(slot + RC_HEADER_SIZE),
                    ({G}{sym.out_struct} *)(rec + {DONE_REPLY}), ({G}{sym.state_struct} *)state, env, outbox, (rc_u32)k);
            *({G}rc_u32 *)(rec + {DONE_STATUS}) = st;
        }}
        RC_BARRIER;
        if (lid == 0u) {{
            /* publish in claim order: wait until the group that claimed the messages before these has
               published (its completion head is its last store) */
            while (*done_head != first) {{ }}
            RC_RELEASE_FENCE;
            *in_tail = first + n;  /* the input slots are free */
            RC_RELEASE_FENCE;
            *done_head = first + n;  /* the completion records are the host's */
        }}
        RC_BARRIER;  /* (PoCL runs a group's work-items as loops: the publish must close its region) */
    }}
}}"""
        L.extend(body.splitlines())


def emit_parts(kir: KernelIR, d: Dialect) -> tuple[str, str]:
    """``(prelude, kernel part)``: the prelude is shared; the kernel part's names all carry its identifier."""
    return prelude(d), _KernelEmitter(kir, d).emit()


def emit(kir: KernelIR, d: Dialect) -> str:
    """The complete source of ``kir`` in dialect ``d``."""
    pre, part = emit_parts(kir, d)
    return pre + part
