"""The WGSL target: a WebGPU compute shader that runs a kernel over a batch of messages.

``emit(kir)`` returns a WGSL module; ``abi(kir)`` describes the buffers a host
binds to run it (the wgpu backend follows it; so does tests/test_lang_wgsl.py,
whose ``execute`` and ``run_wgsl`` are a complete minimal host). Everything is
little-endian and 32-bit: WGSL has no 64-bit integers, no 8/16-bit storage and
no storable ``bool``; those fields are read and written inside their u32 words.

The ABI
-------
One bind group (group 0) with these seven bindings, always declared. Create an
*explicit* bind group layout with all seven (``BINDINGS`` gives each one's
buffer binding type): ``layout="auto"`` drops the bindings a kernel does not
use. Bind buffers of at least 16 bytes (a kernel without state or replies still
declares them), the outbox at least 36 (its header and one record word).

=====  =============  ==================  ===================================================
 #     name           binding type        contents
=====  =============  ==================  ===================================================
 0     ``rc_params``  uniform             12 u32 words, ``WgslAbi.params(...)``: ``n`` (lanes),
                                          ``kernel_number``, ``hlc_logical`` (what the batch's
                                          first ``ctx.now()`` returns as ``.logical``),
                                          ``outbox_capacity`` (records), ``max_hops``,
                                          ``dir_len`` (kernel numbers in the directory),
                                          ``flags`` (``FLAG_SCRIPTED``), ``script_stride``,
                                          ``zero`` (MUST be 0: float operations xor one
                                          operand's bits with it, which keeps the shader
                                          compiler from rewriting ``x - x`` to 0 and the like),
                                          three reserved words
 1     ``rc_in``      read-only-storage   the batch's input slots exactly as in a RingQueue:
                                          ``n`` records of ``kir.input.slot_dtype`` (64-byte
                                          header, then the payload; the stride is a multiple
                                          of 8). ``ctx.header.*`` reads the header;
                                          ``ctx.send`` reads its ``hops``
 2     ``rc_out``     storage             replies: ``n`` records of ``kir.output.dtype``
                                          (stride ``itemsize``, a multiple of 8, maybe 0). A
                                          replying lane writes all of its record, padding
                                          zeroed; others leave theirs untouched
 3     ``rc_status``  storage             ``n`` u32: 0 = done without a reply, 1
                                          (``STATUS_REPLIED``) = replied, ``0x80000000 | site``
                                          (``STATUS_FAILED``) = failed at
                                          ``kir.errors[site - 1]`` (its state writes and
                                          sends so far stay, as in Python)
 4     ``rc_state``   storage             the state record (``kir.state_dtype``), in place;
                                          keep it across dispatches. Fields in
                                          ``kir.atomics`` are ``atomic<u32>`` or
                                          ``atomic<i32>`` words (f32 ones hold the bits)
 5     ``rc_outbox``  storage             sends and publishes (below)
 6     ``rc_dir``     storage             what sends and publishes are answered from (below)
=====  =============  ==================  ===================================================

Dispatch ``abi(kir).dispatch(n)`` workgroups. A parallel kernel has workgroup
size 64, one invocation per message (lane ``gid.x + gid.y * num_workgroups.x *
64``: beyond 65535 workgroups the grid gets a second dimension); a serial one
(``kir.serial``) has workgroup size 1 and its single invocation runs the ``n``
messages in order. ``ctx.thread_id`` is the lane.

**The outbox** (u32 words): word 0 counts records claimed (atomic; it may pass
``outbox_capacity``: ``min(count, capacity)`` records were written); word 1
counts ``ctx.now()`` calls; words 2-7 count sends by result code 1-6
(DELIVERED, QUEUE_FULL, NOT_FOUND, MAX_HOPS_EXCEEDED, WRONG_TYPE, TERMINATED);
then ``abi.record_words``-word records (``abi.record_dtype``):
``[lane, target, type_id, code]`` and the message's payload record (padding
zeroed), sized for the largest type the kernel sends or publishes. Every send
*attempt* has a record (so the host sees failures too); only code 1 ones are
to be delivered. ``code`` is the DELIVERY code | (name index + 1) << 8 for a
send to ``kir.send_targets[name index]`` (``target`` is then the kernel number
the directory gave, or ``NO_KERNEL``), or ``PUBLISH_BIT | subscribers`` for a
publish (``target`` is then the index in ``abi.topics``). A lane's records are
in its order; different lanes' records of a parallel kernel are in no
particular order (sort by lane, stably). A lane with a DELIVERED send
forwarded its message (the reply obligation goes with it). ``read_outbox`` and
``send_target`` decode it.

**The directory** (u32 words, in the normal mode): one word per name in
``abi.send_targets`` (its kernel number, or ``NO_KERNEL``), one per topic in
``abi.topics`` (its subscriber count, what ``ctx.publish`` returns), then from
word ``abi.dir_entries`` four words per kernel number ``k < dir_len``:
``[state, type_id, free, 0]`` with state ``DIR_NONE`` (no such kernel),
``DIR_RUNNING`` or ``DIR_TERMINATED`` (terminated or terminating), the type id
its queue takes, and how many more messages it accepts in this dispatch
(decremented atomically by each DELIVERED send; ``NO_KERNEL`` = unlimited).
A send is decided as the CPU runtime does: NOT_FOUND (``k >= dir_len`` or
``DIR_NONE``), TERMINATED, WRONG_TYPE, MAX_HOPS_EXCEEDED (input ``hops`` + 1
> ``max_hops``), QUEUE_FULL (no free slot, or no room in the outbox, which
gives the slot back), else DELIVERED. A publish without room in the outbox
reached no one (0).

**Scripted mode** (``flags & FLAG_SCRIPTED``, for differential tests): with
``S = script_stride``, the directory instead holds ``abi.script_words(n, S)``
words: the code of lane L's k-th send at ``L*S + k``, the ``.logical`` of its
k-th ``ctx.now()`` at ``n*S + L*S + k``, its count of ``ctx.now()`` calls
(written by the kernel) at ``2*n*S + L``, the subscriber count of its k-th
publish at ``2*n*S + n + L*S + k`` (k >= S: NOT_FOUND, 0, 0).

Semantics
---------
Everything in ``ir.py``'s docstring, exactly, on any conforming WebGPU
implementation, including those that compile WGSL with a finite-math
assumption (WGSL allows it; Mesa's llvmpipe does it: it folds ``x - x`` to 0
and turns compare-and-select into ``fmin``): float comparisons test NaN by the
bits first, one operand of each float operation goes through an identity the
compiler cannot see through, NaN and infinities are made from bits, never from
constant expressions. Exact by construction: integer arithmetic with wrapping,
shifts, floor division and modulo (on magnitudes with unsigned operations:
signed ``%`` of negative numbers is undefined in GLSL, which WGSL may become),
casts (float -> int wraps the exact bits; int -> float rounds to nearest even
by hand), ``abs`` ``min`` ``max`` ``clamp`` ``isnan`` ``floor`` ``ceil``,
float ``//`` and ``%`` (an exact ``fmod`` ported from musl, then numpy's
``npy_divmod``), ``fma`` (Boldo and Melquiond's emulation with Dekker products
and rounding to odd: WGSL's ``fma`` may round twice, and does on llvmpipe) and
atomics. ``+ - * /`` and ``sqrt`` are the device's IEEE operations (WGSL allows
``/`` 2.5 ulp). ``exp log sin cos tanh pow`` are computed here rather than by
the device (whose versions are far off for large or tiny arguments): Cody-Waite
``exp``, a double-f32 ``log``, Payne-Hanek reduction on integers for
``sin``/``cos`` with musl's polynomials, ``pow`` as ``exp(y * ln|x|)`` in
double-f32 with C's special cases; within 3 ulp of numpy on the test corpus.

64-bit
------
A kernel that computes with a 64-bit value (a u64/i64/f64 field, header field,
local, expression, cast or atomic, or ``ctx.now().physical``) raises
KernelCompileError at compile time, naming the construct and its line. A
64-bit message or state field that is only *moved* whole (a message forwarded
unchanged, a reply field set from the same field of the input or state, a
constant, or left zero) is copied as two u32 words. Atomics need 32-bit
fields.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Callable

import numpy as np

from ...errors import KernelCompileError
from ...message import HEADER_DTYPE, HEADER_SIZE, MessageSpec
from ...types import ArrayType, ScalarType, struct_dtype
from ..ir import (
    DELIVERY_CODES,
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
    Pos,
    Publish,
    Ref,
    Return,
    Select,
    Send,
    Stmt,
    Tick,
    Unary,
    While,
    stmt_exprs,
    walk_exprs,
    walk_stmts,
)
from .c import STATUS_FAILED as C_STATUS_FAILED
from .c import STATUS_REPLY

__all__ = ["emit", "abi", "WgslAbi", "ENTRY_POINT", "BINDINGS", "STATUS_REPLIED", "STATUS_FAILED",
           "PARAMS_WORDS", "OUTBOX_HEADER_WORDS", "RECORD_HEADER_WORDS", "DIR_ENTRY_WORDS",
           "DIR_NONE", "DIR_RUNNING", "DIR_TERMINATED", "NO_KERNEL", "FLAG_SCRIPTED", "PUBLISH_BIT", "python_line", "PY_LINE_MARK"]

ENTRY_POINT = "rc_main"
WORKGROUP_SIZE = 64
#: Binding number -> (name, buffer binding type in WebGPU's spelling).
BINDINGS = {
    0: ("rc_params", "uniform"),
    1: ("rc_in", "read-only-storage"),
    2: ("rc_out", "storage"),
    3: ("rc_status", "storage"),
    4: ("rc_state", "storage"),
    5: ("rc_outbox", "storage"),
    6: ("rc_dir", "storage"),
}
# The status words are the C targets' (``c.decode_status`` reads both).
STATUS_REPLIED = STATUS_REPLY
STATUS_FAILED = C_STATUS_FAILED
PARAMS_WORDS = 12
OUTBOX_HEADER_WORDS = 8
RECORD_HEADER_WORDS = 4
DIR_ENTRY_WORDS = 4
DIR_NONE, DIR_RUNNING, DIR_TERMINATED = 0, 1, 2
NO_KERNEL = 0xFFFFFFFF
#: ``rc_params.flags`` bit: answer sends and ticks from the script in ``rc_dir`` (differential tests).
FLAG_SCRIPTED = 1
#: Set in an outbox record's ``code`` word for a ``ctx.publish`` (the rest is the subscriber count).
PUBLISH_BIT = 0x80000000
_MAX_GROUPS_X = 65535

_DELIVERED = DELIVERY_CODES[next(r for r in DELIVERY_CODES if r.name == "DELIVERED")]
_CODES = {r.name: c for r, c in DELIVERY_CODES.items()}


@dataclasses.dataclass(frozen=True)
class WgslAbi:
    """How a host runs a kernel's WGSL module (see the module docstring)."""

    entry_point: str
    workgroup_size: int
    serial: bool
    in_slot_bytes: int
    reply_bytes: int
    state_bytes: int
    record_words: int
    send_targets: tuple[str, ...]
    send_specs: tuple[MessageSpec, ...]
    topics: tuple[str, ...] = ()

    def dispatch(self, n: int) -> tuple[int, int, int]:
        """Workgroup counts for a batch of ``n`` messages."""
        if self.serial:
            return (1, 1, 1)
        groups = max(1, -(-n // self.workgroup_size))
        if groups <= _MAX_GROUPS_X:
            return (groups, 1, 1)
        return (_MAX_GROUPS_X, -(-groups // _MAX_GROUPS_X), 1)

    def outbox_words(self, capacity: int) -> int:
        """The outbox's size in u32 words for ``capacity`` records."""
        return OUTBOX_HEADER_WORDS + capacity * self.record_words

    @property
    def dir_entries(self) -> int:
        """The word where the directory's per-kernel entries start (after the names and topics)."""
        return len(self.send_targets) + len(self.topics)

    def directory_words(self, dir_len: int) -> int:
        """The directory's size in u32 words for kernel numbers ``0 .. dir_len - 1``."""
        return self.dir_entries + DIR_ENTRY_WORDS * dir_len

    @staticmethod
    def script_words(n: int, stride: int) -> int:
        """The directory's size in u32 words in scripted mode: send answers, tick values, tick
        counts, publish answers."""
        return 3 * n * stride + n

    @staticmethod
    def params(n: int, *, kernel_number: int = 0, hlc_logical: int = 0, outbox_capacity: int = 0,
               max_hops: int = 255, dir_len: int = 0, flags: int = 0, script_stride: int = 0) -> np.ndarray:
        """The 12 words of ``rc_params`` (``zero`` must be 0)."""
        return np.array([n, kernel_number, hlc_logical, outbox_capacity, max_hops, dir_len, flags, script_stride,
                         0, 0, 0, 0], dtype="<u4")

    @property
    def record_dtype(self) -> np.dtype:
        """One outbox record: ``code`` is the DELIVERY code | (name index + 1) << 8 (0: sent by number)."""
        return np.dtype([("lane", "<u4"), ("target", "<u4"), ("type_id", "<u4"), ("code", "<u4"),
                         ("payload", "<u4", (self.record_words - RECORD_HEADER_WORDS,))])

    def read_outbox(self, words: np.ndarray, capacity: int) -> tuple[int, int, np.ndarray, np.ndarray]:
        """``(claimed, ticks, results, records)`` from the outbox's words after a dispatch.

        ``results[c - 1]`` counts sends with code ``c``; ``records`` (``record_dtype``) are those
        written, in claim order (stable-sort by lane for the reference order).
        """
        words = np.asarray(words, dtype="<u4")
        claimed, ticks = int(words[0]), int(words[1])
        m = min(claimed, capacity)
        body = words[OUTBOX_HEADER_WORDS:OUTBOX_HEADER_WORDS + m * self.record_words]
        return claimed, ticks, words[2:8].copy(), body.view(self.record_dtype).copy()

    @staticmethod
    def is_publish(record: np.void) -> bool:
        """Whether an outbox record is a ``ctx.publish`` (else a ``ctx.send``)."""
        return bool(int(record["code"]) & PUBLISH_BIT)

    def send_target(self, record: np.void) -> str | int:
        """A record's target as the kernel wrote it: the name it sends to, the kernel number, or
        the topic of a publish."""
        if self.is_publish(record):
            return self.topics[int(record["target"])]
        name1 = int(record["code"]) >> 8
        return self.send_targets[name1 - 1] if name1 else int(record["target"])


#: The comment before the WGSL of each Python source line's statements: ``// py <line>``.
PY_LINE_MARK = "// py "
_WGSL_POS = re.compile(r"wgsl:(\d+):\d+")


def python_line(src: str, message: str) -> int | None:
    """The user's Python line that a shader compiler's message about ``src`` points into (naga names
    positions ``wgsl:<line>:<col>``): the nearest ``// py <line>`` mark above it; None if there is none."""
    m = _WGSL_POS.search(message)
    if m is None:
        return None
    lines = src.splitlines()
    for text in reversed(lines[:int(m.group(1))]):
        text = text.strip()
        if text.startswith(PY_LINE_MARK):
            return int(text[len(PY_LINE_MARK):])
    return None


def abi(kir: KernelIR) -> WgslAbi:
    """The buffer sizes and dispatch shape of ``emit(kir)``'s module."""
    sends = _send_specs(kir)
    topics = _topics(kir)
    rec = RECORD_HEADER_WORDS + max((s.dtype.itemsize // 4 for s in sends), default=0)
    return WgslAbi(
        entry_point=ENTRY_POINT,
        workgroup_size=1 if kir.serial else WORKGROUP_SIZE,
        serial=kir.serial,
        in_slot_bytes=kir.input.slot_dtype.itemsize,
        reply_bytes=kir.output.dtype.itemsize if kir.output is not None else 0,
        state_bytes=_state_dtype(kir).itemsize,
        record_words=rec,
        send_targets=tuple(kir.send_targets),
        send_specs=tuple(sends),
        topics=tuple(topics),
    )


def _send_specs(kir: KernelIR) -> list[MessageSpec]:
    specs: dict[int, MessageSpec] = {}
    for body in [kir.body] + [f.body for f in kir.funcs.values()]:
        for s in walk_stmts(body):
            for e in stmt_exprs(s):
                for x in walk_exprs(e):
                    if isinstance(x, (Send, Publish)):
                        specs.setdefault(id(x.msg.spec), x.msg.spec)
    return list(specs.values())


def _topics(kir: KernelIR) -> list[str]:
    topics: dict[str, None] = {}
    for s in walk_stmts(kir.body):
        for e in stmt_exprs(s):
            for x in walk_exprs(e):
                if isinstance(x, Publish):
                    topics.setdefault(x.topic, None)
    return list(topics)


def _state_dtype(kir: KernelIR) -> np.dtype:
    if kir.state_dtype is not None:
        return np.dtype(kir.state_dtype)
    return struct_dtype(kir.state)


# -- names and types ------------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _sanitise(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_]", "_", name)
    s = re.sub(r"_+", "_", s).strip("_")
    return s or "x"


def _vt(t: ScalarType) -> str:
    """The WGSL type holding a value of ``t`` (always 32-bit; small ints are kept canonical)."""
    if t.kind == "b":
        return "bool"
    if t.kind == "f":
        return "f32"
    return "i32" if t.kind == "i" else "u32"


def _tk(t: ScalarType) -> str:
    """A helper-name key for ``t``."""
    if t.kind == "u" and t.bits == 32:
        return "u32"
    return t.name


def _zero(t: ScalarType) -> str:
    return {"bool": "false", "f32": "0.0f", "i32": "0i", "u32": "0u"}[_vt(t)]


def _f32_text(v: float) -> str | None:
    """A WGSL literal for a finite normal (or +0) f32, else None."""
    x = np.float32(v)
    bits = int(x.view(np.uint32))
    if bits == 0:
        return "0.0f"
    e = (bits >> 23) & 0xFF
    if e == 0 or e == 0xFF:
        return None
    s = repr(float(x))
    if "e" not in s and "." not in s:
        s += ".0"
    return f"({s}f)" if s.startswith("-") else f"{s}f"


def _f32_bits(v: float) -> int:
    return int(np.float32(v).view(np.uint32))


# -- errors ---------------------------------------------------------------------------------------


class _Located(Exception):
    def __init__(self, construct: str, what: str, hint: str, pos: Pos | None) -> None:
        super().__init__(what)
        self.construct, self.what, self.hint, self.pos = construct, what, hint, pos


def _compile_error(kir: KernelIR, err: _Located) -> KernelCompileError:
    fname = os.path.basename(kir.filename) if kir.filename else "<kernel>"
    pos = err.pos
    if pos is not None:
        where = f"{fname}:{pos.line}, col {pos.col + 1}"
    else:
        where = f"{fname}:{kir.first_line}"
    text = f"{err.what} ({where}); {err.hint}" if err.hint else f"{err.what} ({where})"
    if pos is not None:
        line = _source_line(kir, pos.line)
        if line is not None:
            text += f"\n    {line}\n    {' ' * pos.col}^"
    return KernelCompileError(
        f"kernel {kir.name!r} cannot run on WGSL: {text}", filename=kir.filename,
        line=pos.line if pos else kir.first_line, col=(pos.col + 1) if pos else 0, construct=err.construct,
        target="wgsl")


def _source_line(kir: KernelIR, line: int) -> str | None:
    try:
        with open(kir.filename, encoding="utf-8") as f:
            lines = f.read().splitlines()
        if 0 < line <= len(lines):
            return lines[line - 1].rstrip()
    except OSError:
        pass
    lines = kir.source.splitlines()
    i = line - kir.first_line
    if 0 <= i < len(lines):
        return lines[i].rstrip()
    return None


_HINT64 = "use 32-bit fields (u32, i32, f32), or run on a backend with 64-bit support"


def _describe_ref(ref: Ref) -> str:
    if ref.space == "msg":
        return f"msg.{ref.name}"
    if ref.space == "state":
        return f"ctx.state.{ref.name}"
    return f"local {ref.name.replace('__', '.')!r}"


def _no64(t: ScalarType | ArrayType, what: str, pos: Pos | None) -> None:
    elem = t.elem if isinstance(t, ArrayType) else t
    if isinstance(elem, ScalarType) and elem.bits == 64:
        kind = "floats" if elem.kind == "f" else "integers"
        raise _Located(what, f"WGSL has no 64-bit {kind}: {what} is {elem.name}", _HINT64, pos)


def _bits64(t: ScalarType | ArrayType) -> bool:
    return (t.elem if isinstance(t, ArrayType) else t).bits == 64


def _is_word_copy(v: Expr | Ref | None) -> bool:
    """A message field value that moves 64-bit data without computing with it."""
    if v is None or isinstance(v, Const):
        return True
    if isinstance(v, Ref):
        return v.space in ("msg", "state") and v.index is None
    return isinstance(v, Load) and v.ref.space in ("msg", "state") and (
        v.ref.index is None or _max_bits(v.ref.index) <= 32)


def _max_bits(e: Expr) -> int:
    return max(x.type.bits for x in walk_exprs(e))


def _check_64bit(kir: KernelIR) -> None:
    """Raise _Located for the first 64-bit computation (anything but whole-field copies)."""
    used_locals = _used_locals(kir.body)

    def check_expr(e: Expr, pos: Pos | None) -> None:
        p = e.pos or pos
        if isinstance(e, (Send, Publish)):
            if isinstance(e, Send) and isinstance(e.target, Expr):
                check_expr(e.target, p)
            check_msg(e.msg, p)
            return
        for c in _kids(e):
            check_expr(c, p)
        if isinstance(e, Load):
            _no64(e.ref.type, _describe_ref(e.ref), p)
        elif isinstance(e, Atomic):
            _no64(e.type, f"ctx.atomic_{e.op} on {e.ref.name!r}", p)
        elif isinstance(e, Cast):
            _no64(e.operand.type, f"a cast from {e.operand.type.name}", p)
            _no64(e.type, f"ringcore.{e.type.name}(...)", p)
        elif isinstance(e, Const):
            _no64(e.type, f"the constant {e.value!r}", p)
        elif isinstance(e, CtxValue):
            _no64(e.type, f"ctx.{e.name}", p)
        else:
            _no64(e.type, "this expression", p)

    def check_msg(m: MsgValue, pos: Pos | None) -> None:
        for f, v in m.fields.items():
            t = m.spec.fields[f]
            elem = t.elem if isinstance(t, ArrayType) else t
            if elem.bits == 64 and _is_word_copy(v):
                if isinstance(v, Load) and v.ref.index is not None:
                    check_expr(v.ref.index, pos)
                continue
            if isinstance(v, Expr):
                check_expr(v, pos)
            elif isinstance(v, Ref):
                _no64(v.type, _describe_ref(v), pos)

    def check_body(body: list[Stmt], local_types: dict) -> None:
        for s in walk_stmts(body):
            if isinstance(s, Tick):
                if s.physical is not None and s.physical.name in used_locals:
                    raise _Located("ctx.now().physical",
                                   "WGSL has no 64-bit integers: ctx.now().physical is u64", "use ctx.now().logical "
                                   "(u32), or run on a backend with 64-bit support",
                                   _first_read(kir.body, s.physical.name) or s.pos)
                continue
            if isinstance(s, Return) and isinstance(s.value, MsgValue):
                check_msg(s.value, s.pos)
                continue
            for e in stmt_exprs(s):
                check_expr(e, s.pos)
            if isinstance(s, Assign):
                _no64(s.ref.type, _describe_ref(s.ref), s.pos)
            if isinstance(s, ArrayCopy):
                _no64(s.dst.type, _describe_ref(s.dst), s.pos)
                _no64(s.src.type, _describe_ref(s.src), s.pos)
            if isinstance(s, ArrayZero):
                _no64(s.ref.type, _describe_ref(s.ref), s.pos)
            if isinstance(s, For):
                _no64(local_types.get(s.var, s.start.type), f"local {s.var!r}", s.pos)

    check_body(kir.body, kir.locals)
    for fn in kir.funcs.values():
        for pname, pt in fn.params:
            _no64(pt, f"parameter {pname!r} of {fn.name}", fn.pos)
        if fn.ret is not None:
            _no64(fn.ret, f"the result of {fn.name}", fn.pos)
        check_body(fn.body, fn.locals)
    # Whatever the frontend noted and the walk above did not see (defensive).
    for name, t in kir.locals.items():
        if name in used_locals:
            _no64(t, f"local {name.replace('__', '.')!r}", None)


def _first_read(body: list[Stmt], name: str) -> Pos | None:
    """Where local ``name`` is first read."""
    for s in walk_stmts(body):
        for e in stmt_exprs(s):
            for x in walk_exprs(e):
                if isinstance(x, Load) and x.ref.space == "local" and x.ref.name == name:
                    return x.pos or s.pos
    return None


def _used_locals(body: list[Stmt]) -> set[str]:
    """Locals that are read or written by anything but a Tick."""
    used: set[str] = set()

    def ref(r: Ref | None) -> None:
        if r is not None and r.space == "local":
            used.add(r.name)

    for s in walk_stmts(body):
        if isinstance(s, Assign):
            ref(s.ref)
        elif isinstance(s, ArrayCopy):
            ref(s.dst)
            ref(s.src)
        elif isinstance(s, ArrayZero):
            ref(s.ref)
        elif isinstance(s, For):
            used.add(s.var)
        elif isinstance(s, Return) and isinstance(s.value, MsgValue):
            for v in s.value.fields.values():
                if isinstance(v, Ref):
                    ref(v)
        for e in stmt_exprs(s):
            for x in walk_exprs(e):
                if isinstance(x, (Load, Atomic)):
                    ref(x.ref)
                elif isinstance(x, (Send, Publish)):
                    for v in x.msg.fields.values():
                        if isinstance(v, Ref):
                            ref(v)
    return used


def _kids(e: Expr) -> list[Expr]:
    """``e``'s operands in Python's evaluation order."""
    if isinstance(e, Load):
        return [e.ref.index] if e.ref.index is not None else []
    if isinstance(e, Unary):
        return [e.operand]
    if isinstance(e, (Binary, Compare, Logical)):
        return [e.left, e.right]
    if isinstance(e, Select):
        return [e.cond, e.a, e.b]
    if isinstance(e, Cast):
        return [e.operand]
    if isinstance(e, (Builtin, CallFunc)):
        return list(e.args)
    if isinstance(e, Atomic):
        out = [e.expected] if e.expected is not None else []
        out.append(e.value)
        if e.ref.index is not None:
            out.append(e.ref.index)
        return out
    if isinstance(e, (Send, Publish)):
        out = [e.target] if isinstance(e, Send) and isinstance(e.target, Expr) else []
        out.extend(v for v in e.msg.fields.values() if isinstance(v, Expr))
        return out
    return []


# -- the emitter ----------------------------------------------------------------------------------


@dataclasses.dataclass
class _Seg:
    """A run of words of the state record: a plain ``array<u32, n>`` or one atomic field."""

    member: str
    word: int  # first word within the record
    words: int
    atomic: ScalarType | None = None


class _Fn:
    """Per-function emission context."""

    def __init__(self, kind: str, ret: ScalarType | None, names: dict[str, str], types: dict) -> None:
        self.kind = kind  # "kernel" | "func"
        self.ret = ret
        self.names = names
        self.types = types
        self.tmp = 0


class _Emitter:
    def __init__(self, kir: KernelIR) -> None:
        self.kir = kir
        self.abi = abi(kir)
        self.helpers: dict[str, str] = {}
        self.lines: list[str] = []
        self.ind = 1
        self.fn: _Fn | None = None
        self._impure: dict[int, bool] = {}
        self.in_words = kir.input.slot_dtype.itemsize // 4
        self.payload_off = HEADER_SIZE
        self.out_words = self.abi.reply_bytes // 4
        self.state_dt = _state_dtype(kir)
        self.segs, self.field_seg = self._state_segments()
        self.func_names = {name: f"f_{_sanitise(name)}" for name in kir.funcs}
        self._check_names()

    # -- setup --------------------------------------------------------------------------------

    def _check_names(self) -> None:
        seen: dict[str, str] = {}
        for k, v in list(self.func_names.items()):
            base, i = v, 2
            while v in seen:
                v = f"{base}_{i}"
                i += 1
            seen[v] = k
            self.func_names[k] = v

    def _state_segments(self) -> tuple[list[_Seg], dict[str, tuple[_Seg, int]]]:
        dt = self.state_dt
        words = dt.itemsize // 4
        kir = self.kir
        atomic_at: dict[int, tuple[str, ScalarType, int]] = {}
        for name in kir.atomics:
            t = kir.state[name]
            elem = t.elem if isinstance(t, ArrayType) else t
            off = dt.fields[name][1]
            size = t.size if isinstance(t, ArrayType) else 1
            atomic_at[off // 4] = (name, elem, size)
        segs: list[_Seg] = []
        w = 0
        plain_start = 0
        while w < words:
            if w in atomic_at:
                if w > plain_start:
                    segs.append(_Seg(f"w{plain_start}", plain_start, w - plain_start))
                name, elem, size = atomic_at[w]
                segs.append(_Seg(f"a_{_sanitise(name)}_{w}", w, size, elem))
                w += size
                plain_start = w
            else:
                w += 1
        if words > plain_start:
            segs.append(_Seg(f"w{plain_start}", plain_start, words - plain_start))
        field_seg: dict[str, tuple[_Seg, int]] = {}
        for name in dt.names or ():
            off = dt.fields[name][1]
            for seg in segs:
                if seg.word * 4 <= off < (seg.word + seg.words) * 4:
                    field_seg[name] = (seg, off - seg.word * 4)
                    break
        return segs, field_seg

    # -- output helpers -----------------------------------------------------------------------

    def line(self, text: str) -> None:
        self.lines.append("    " * self.ind + text)

    def need(self, name: str, make: Callable[[], str]) -> str:
        if name not in self.helpers:
            self.helpers[name] = ""  # reserve (helpers may need others)
            self.helpers[name] = make()
        return name

    def tmp(self, prefix: str = "t") -> str:
        assert self.fn is not None
        self.fn.tmp += 1
        return f"rc_{prefix}{self.fn.tmp}"

    def let(self, text: str) -> str:
        if _IDENT.match(text) or re.fullmatch(r"\(?-?[0-9][0-9a-fx.e+-]*[uif]?\)?|true|false", text):
            return text
        name = self.tmp()
        self.line(f"let {name} = {text};")
        return name

    # -- small helper functions ---------------------------------------------------------------

    def sx(self, bits: int) -> str:
        sh = 32 - bits
        return self.need(f"rc_sx{bits}", lambda: (
            f"fn rc_sx{bits}(x: i32) -> i32 {{ return (x << {sh}u) >> {sh}u; }}"))

    def wrap(self, t: ScalarType, x: str) -> str:
        if t.bits >= 32 or t.kind not in "ui":
            return x
        if t.kind == "u":
            return f"({x} & {hex((1 << t.bits) - 1)}u)"
        return f"{self.sx(t.bits)}({x})"

    def f32_bits_fn(self) -> str:
        return self.need("rc_f32_bits", lambda: "fn rc_f32_bits(b: u32) -> f32 { return bitcast<f32>(b); }")

    def nan(self) -> str:
        return f"{self.f32_bits_fn()}(0x7fc00000u)"

    def isnan_fn(self) -> str:
        return self.need("rc_isnan", lambda: (
            "fn rc_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }"))

    def isinf_fn(self) -> str:
        return self.need("rc_isinf", lambda: (
            "fn rc_isinf(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) == 0x7f800000u; }"))

    def copysign_fn(self) -> str:
        return self.need("rc_copysign", lambda: (
            "fn rc_copysign(x: f32, y: f32) -> f32 {\n"
            "    return bitcast<f32>((bitcast<u32>(x) & 0x7fffffffu) | (bitcast<u32>(y) & 0x80000000u));\n}"))

    def opaque(self, vt: str) -> str:
        """An identity the shader compiler cannot see through (rc_params.zero is 0 at run time)."""
        assert vt == "f32"
        return self.need("rc_opq_f32", lambda: (
            "fn rc_opq_f32(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) ^ rc_params.zero); }"))

    # -- constants ----------------------------------------------------------------------------

    def const(self, t: ScalarType, v: int | float | bool) -> str:
        vt = _vt(t)
        if vt == "bool":
            return "true" if v else "false"
        if vt == "f32":
            text = _f32_text(float(v))
            return text if text is not None else f"{self.f32_bits_fn()}({hex(_f32_bits(float(v)))}u)"
        iv = int(v)
        if vt == "u32":
            return f"{iv & 0xFFFFFFFF}u"
        if iv == -(1 << 31):
            return "bitcast<i32>(0x80000000u)"
        return f"({iv}i)" if iv < 0 else f"{iv}i"

    # -- expressions --------------------------------------------------------------------------

    def impure(self, e: Expr) -> bool:
        k = id(e)
        r = self._impure.get(k)
        if r is None:
            r = isinstance(e, (CallFunc, Atomic, Send, Publish)) or any(self.impure(c) for c in _kids(e))
            self._impure[k] = r
        return r

    def seq(self, es: list[Expr]) -> list[str]:
        """Emit ``es`` in order; an operand evaluated before an impure one is bound to a ``let`` first."""
        later = [False] * len(es)
        acc = False
        for i in range(len(es) - 1, -1, -1):
            later[i] = acc
            acc = acc or self.impure(es[i])
        out = []
        for e, lat in zip(es, later):
            t = self.ex(e)
            out.append(self.let(t) if lat else t)
        return out

    def ex(self, e: Expr) -> str:
        if isinstance(e, (Send, Publish)):
            # The target first, then the message's fields (evaluated in order by msg_fields).
            k = []
            if isinstance(e, Send) and isinstance(e.target, Expr):
                t = self.ex(e.target)
                if any(isinstance(v, Expr) and self.impure(v) for v in e.msg.fields.values()):
                    t = self.let(t)
                k.append(t)
            return self.compose(e, k)
        kids = _kids(e)
        texts = self.seq(kids) if (kids and self.impure(e)) else [self.ex(k) for k in kids]
        return self.compose(e, texts)

    def is_const(self, e: Expr) -> bool:
        return isinstance(e, Const)

    def compose(self, e: Expr, k: list[str]) -> str:
        if isinstance(e, Const):
            return self.const(e.type, e.value)
        if isinstance(e, Load):
            return self.load(e.ref, k[0] if k else None, e.ref.index)
        if isinstance(e, CtxValue):
            return self.ctx_value(e)
        if isinstance(e, Unary):
            return self.unary(e, k[0])
        if isinstance(e, Binary):
            return self.binary(e, k[0], k[1])
        if isinstance(e, Compare):
            return self.compare(e, k[0], k[1])
        if isinstance(e, Logical):
            return f"({k[0]} {'&&' if e.op == 'and' else '||'} {k[1]})"
        if isinstance(e, Select):
            return f"select({k[2]}, {k[1]}, {k[0]})"
        if isinstance(e, Cast):
            return self.cast(e.operand.type, e.type, k[0], self.is_const(e.operand))
        if isinstance(e, Builtin):
            return self.builtin(e, k)
        if isinstance(e, CallFunc):
            return self.call(e, k)
        if isinstance(e, Atomic):
            return self.atomic(e, k)
        if isinstance(e, Send):
            return self.send(e, k)
        if isinstance(e, Publish):
            return self.publish(e, k)
        raise TypeError(f"unknown IR expression {type(e).__name__}")

    def unary(self, e: Unary, a: str) -> str:
        t = e.type
        if e.op == "not":
            return f"(!{a})"
        if e.op == "neg":
            if t.kind == "f":
                return f"(-{a})"
            return self.int_op("neg", t) + f"({a})"
        if e.op == "invert":
            if t.kind == "b":
                return f"(!{a})"
            return self.wrap(t, f"(~{a})") if t.kind == "u" else f"(~{a})"
        raise TypeError(f"unknown unary op {e.op}")

    def binary(self, e: Binary, a: str, b: str) -> str:
        t, op = e.type, e.op
        if t.kind == "b":
            sym = {"and_": "&", "or_": "|", "xor": "!="}.get(op)
            if sym is None:
                raise TypeError(f"{op} on bool")
            return f"({a} {sym} {b})"
        if t.kind == "f":
            if op in ("add", "sub", "mul", "div"):
                # One operand (not a constant one, when the other is not) goes through the opaque
                # identity, so that the shader compiler cannot rewrite x - x, x * 0.0, ... (and
                # nothing is evaluated at shader-creation time, where inf or NaN is an error).
                if self.is_const(e.left) and not self.is_const(e.right):
                    a = f"{self.opaque('f32')}({a})"
                else:
                    b = f"{self.opaque('f32')}({b})"
                sym = {"add": "+", "sub": "-", "mul": "*", "div": "/"}[op]
                return f"({a} {sym} {b})"
            if op == "floordiv":
                return f"{self.ffloordiv()}({a}, {b})"
            if op == "mod":
                return f"{self.fmod_py()}({a}, {b})"
            if op == "pow":
                return f"{self.fpow()}({a}, {b})"
            raise TypeError(f"{op} on floats")
        if op in ("and_", "or_", "xor"):
            sym = {"and_": "&", "or_": "|", "xor": "^"}[op]
            return f"({a} {sym} {b})"
        return f"{self.int_op(op, t)}({a}, {b})"

    def compare(self, e: Compare, a: str, b: str) -> str:
        if e.left.type.kind == "f":
            return f"{self.fcmp(e.op)}({a}, {b})"
        sym = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[e.op]
        if e.left.type.kind == "b" and e.op not in ("eq", "ne"):
            a, b = f"select(0u, 1u, {a})", f"select(0u, 1u, {b})"
        return f"({a} {sym} {b})"

    # -- integer helpers ----------------------------------------------------------------------

    def int_op(self, op: str, t: ScalarType) -> str:
        name = f"rc_{op}_{_tk(t)}"
        return self.need(name, lambda: self._int_op_src(name, op, t))

    def _int_op_src(self, name: str, op: str, t: ScalarType) -> str:
        vt = _vt(t)
        signed = t.kind == "i"
        z = "0i" if signed else "0u"
        bits = t.bits
        w = lambda x: self.wrap(t, x)  # noqa: E731
        if op == "neg":
            return f"fn {name}(a: {vt}) -> {vt} {{ return {w(f'({z} - a)')}; }}"
        head = f"fn {name}(a: {vt}, b: {vt}) -> {vt} {{\n"
        if op in ("add", "sub", "mul"):
            sym = {"add": "+", "sub": "-", "mul": "*"}[op]
            return head + f"    return {w(f'(a {sym} b)')};\n}}"
        if op == "floordiv":
            if not signed:
                return head + "    if (b == 0u) { return 0u; }\n    return a / b;\n}"
            # On magnitudes with unsigned division only: signed % and / of negative operands are
            # undefined in some of WGSL's targets (GLSL), whatever WGSL says.
            return head + (
                "    if (b == 0i) { return 0i; }\n"
                "    let ua = select(bitcast<u32>(a), 0u - bitcast<u32>(a), a < 0i);\n"
                "    let ub = select(bitcast<u32>(b), 0u - bitcast<u32>(b), b < 0i);\n"
                "    let q = ua / ub;\n"
                "    if ((a < 0i) == (b < 0i)) {\n"
                f"        return {w('bitcast<i32>(q)')};\n"
                "    }\n"
                f"    return {w('bitcast<i32>(0u - (q + select(0u, 1u, q * ub != ua)))')};\n}}")
        if op == "mod":
            if not signed:
                return head + "    if (b == 0u) { return 0u; }\n    return a % b;\n}"
            return head + (
                "    if (b == 0i) { return 0i; }\n"
                "    let ua = select(bitcast<u32>(a), 0u - bitcast<u32>(a), a < 0i);\n"
                "    let ub = select(bitcast<u32>(b), 0u - bitcast<u32>(b), b < 0i);\n"
                "    let r = bitcast<i32>(ua % ub);\n"
                "    if (r == 0i) { return 0i; }\n"
                "    if (b > 0i) { return select(r, b - r, a < 0i); }\n"
                "    return select(r + b, 0i - r, a < 0i);\n}")
        if op == "lshift":
            bad = f"b < 0i || b >= {bits}i" if signed else f"b >= {bits}u"
            return head + f"    if ({bad}) {{ return {z}; }}\n    return {w('(a << u32(b))')};\n}}"
        if op == "rshift":
            if signed:
                return head + (
                    f"    if (b < 0i || b >= {bits}i) {{ return select(0i, -1i, a < 0i); }}\n"
                    "    return a >> u32(b);\n}")
            return head + f"    if (b >= {bits}u) {{ return 0u; }}\n    return a >> b;\n}}"
        raise TypeError(f"unknown integer op {op}")

    # -- casts --------------------------------------------------------------------------------

    def cast(self, src: ScalarType, dst: ScalarType, x: str, const: bool) -> str:
        sv, dv = _vt(src), _vt(dst)
        if src.name == dst.name or (src.kind == dst.kind and src.bits == dst.bits and src.kind != "b"):
            return x
        if dst.kind == "b":
            if src.kind == "f":
                return f"{self.fcmp('ne')}({x}, 0.0f)"
            return f"({x} != {_zero(src)})"
        if src.kind == "b":
            one = {"u32": "1u", "i32": "1i", "f32": "1.0f"}[dv]
            return f"select({_zero(dst)}, {one}, {x})"
        if src.kind == "f":
            if dst.kind == "f":
                return x
            bits = f"{self.ftoi()}({x})"
            if dst.kind == "u":
                return self.wrap(dst, bits)
            return self.wrap(dst, f"bitcast<i32>({bits})")
        if dst.kind == "f":
            if src.bits < 32:
                return f"f32({x})"
            return f"{self.itof(src)}({x})"
        # int -> int
        v = x if sv == dv else f"bitcast<{dv}>({x})"
        if dst.bits < 32 and (dst.bits < src.bits or src.kind != dst.kind):
            return self.wrap(dst, v)
        return v

    def ftoi(self) -> str:
        return self.need("rc_ftoi", lambda: (
            "// trunc(x) modulo 2**32 (two's complement bits), exact for every finite x\n"
            "fn rc_ftoi(x: f32) -> u32 {\n"
            "    let t = trunc(x);\n"
            "    if (abs(t) < 2147483648.0f) { return bitcast<u32>(i32(t)); }\n"
            "    let b = bitcast<u32>(t);\n"
            "    let e = (b >> 23u) & 0xffu;\n"
            "    let m = (b & 0x7fffffu) | 0x800000u;\n"
            "    var r = 0u;\n"
            "    if (e < 182u) { r = m << (e - 150u); }\n"
            "    if ((b & 0x80000000u) != 0u) { r = 0u - r; }\n"
            "    return r;\n}"))

    def itof(self, src: ScalarType) -> str:
        u = self.need("rc_u32_to_f32", lambda: (
            "// round to nearest even, by hand (WGSL lets a conversion round either way)\n"
            "fn rc_u32_to_f32(x: u32) -> f32 {\n"
            "    if (x < 0x1000000u) { return f32(x); }\n"
            "    let s = firstLeadingBit(x) - 23u;\n"
            "    var m = x >> s;\n"
            "    let rem = x & ((1u << s) - 1u);\n"
            "    let half = 1u << (s - 1u);\n"
            "    if (rem > half || (rem == half && (m & 1u) == 1u)) { m = m + 1u; }\n"
            "    return f32(m) * bitcast<f32>((127u + s) << 23u);\n}"))
        if src.kind == "u":
            return u
        return self.need("rc_i32_to_f32", lambda: (
            "fn rc_i32_to_f32(x: i32) -> f32 {\n"
            "    if (x < 0i) { return -rc_u32_to_f32(0u - bitcast<u32>(x)); }\n"
            "    return rc_u32_to_f32(bitcast<u32>(x));\n}"))

    # -- float helpers ------------------------------------------------------------------------

    def fmod_c(self) -> str:
        self.isnan_fn()
        nan = self.nan()
        return self.need("rc_fmod", lambda: (
            "// C fmodf, exact (musl's algorithm on the bit patterns)\n"
            "fn rc_fmod(x: f32, y: f32) -> f32 {\n"
            "    var ux = bitcast<u32>(x);\n"
            "    var uy = bitcast<u32>(y);\n"
            "    var ex = i32((ux >> 23u) & 0xffu);\n"
            "    var ey = i32((uy >> 23u) & 0xffu);\n"
            "    let sx = ux & 0x80000000u;\n"
            f"    if ((uy << 1u) == 0u || rc_isnan(y) || ex == 255i) {{ return {nan}; }}\n"
            "    if ((ux << 1u) <= (uy << 1u)) {\n"
            "        if ((ux << 1u) == (uy << 1u)) { return bitcast<f32>(sx); }\n"
            "        return x;\n"
            "    }\n"
            "    if (ex == 0i) {\n"
            "        var i = ux << 9u;\n"
            "        loop { if ((i >> 31u) != 0u) { break; } ex = ex - 1i; i = i << 1u; }\n"
            "        ux = ux << u32(1i - ex);\n"
            "    } else {\n"
            "        ux = (ux & 0x7fffffu) | 0x800000u;\n"
            "    }\n"
            "    if (ey == 0i) {\n"
            "        var j = uy << 9u;\n"
            "        loop { if ((j >> 31u) != 0u) { break; } ey = ey - 1i; j = j << 1u; }\n"
            "        uy = uy << u32(1i - ey);\n"
            "    } else {\n"
            "        uy = (uy & 0x7fffffu) | 0x800000u;\n"
            "    }\n"
            "    loop {\n"
            "        if (ex <= ey) { break; }\n"
            "        let d = ux - uy;\n"
            "        if ((d >> 31u) == 0u) {\n"
            "            if (d == 0u) { return bitcast<f32>(sx); }\n"
            "            ux = d;\n"
            "        }\n"
            "        ux = ux << 1u;\n"
            "        ex = ex - 1i;\n"
            "    }\n"
            "    let d = ux - uy;\n"
            "    if ((d >> 31u) == 0u) {\n"
            "        if (d == 0u) { return bitcast<f32>(sx); }\n"
            "        ux = d;\n"
            "    }\n"
            "    loop { if ((ux >> 23u) != 0u) { break; } ux = ux << 1u; ex = ex - 1i; }\n"
            "    if (ex > 0i) {\n"
            "        ux = (ux - 0x800000u) | (u32(ex) << 23u);\n"
            "    } else {\n"
            "        ux = ux >> u32(1i - ex);\n"
            "    }\n"
            "    return bitcast<f32>(ux | sx);\n}"))

    def fdiv0(self) -> str:
        self.isnan_fn()
        nan = self.nan()
        return self.need("rc_fdiv0", lambda: (
            "// a / b for b == +-0, IEEE\n"
            "fn rc_fdiv0(a: f32, b: f32) -> f32 {\n"
            f"    if ((bitcast<u32>(a) & 0x7fffffffu) == 0u || rc_isnan(a)) {{ return {nan}; }}\n"
            "    return bitcast<f32>(0x7f800000u | ((bitcast<u32>(a) ^ bitcast<u32>(b)) & 0x80000000u));\n}"))

    def ffloordiv(self) -> str:
        self.fmod_c()
        self.fdiv0()
        self.copysign_fn()
        nan = self.nan()
        return self.need("rc_floordiv_f32", lambda: (
            "// numpy's npy_divmod (floor division)\n"
            "fn rc_floordiv_f32(a: f32, b: f32) -> f32 {\n"
            f"    if (rc_isnan(a) || rc_isnan(b)) {{ return {nan}; }}\n"
            "    if ((bitcast<u32>(b) & 0x7fffffffu) == 0u) { return rc_fdiv0(a, b); }\n"
            "    let m = rc_fmod(a, b);\n"
            f"    if (rc_isnan(m)) {{ return {nan}; }}\n"
            "    var div = (a - rc_opq_f32(m)) / rc_opq_f32(b);\n"
            "    if (m != 0.0f) {\n"
            "        if ((b < 0.0f) != (m < 0.0f)) { div = div - 1.0f; }\n"
            "    }\n"
            "    if (div != 0.0f) {\n"
            "        var fd = floor(div);\n"
            "        if (div - rc_opq_f32(fd) > 0.5f) { fd = fd + 1.0f; }\n"
            "        return fd;\n"
            "    }\n"
            "    return rc_copysign(0.0f, a / rc_opq_f32(b));\n}"))

    def fmod_py(self) -> str:
        self.fmod_c()
        self.copysign_fn()
        nan = self.nan()
        return self.need("rc_mod_f32", lambda: (
            "// numpy's npy_divmod (remainder)\n"
            "fn rc_mod_f32(a: f32, b: f32) -> f32 {\n"
            f"    if (rc_isnan(a) || rc_isnan(b)) {{ return {nan}; }}\n"
            "    var m = rc_fmod(a, b);\n"
            "    if ((bitcast<u32>(b) & 0x7fffffffu) == 0u || rc_isnan(m)) { return m; }\n"
            "    if (m != 0.0f) {\n"
            "        if ((b < 0.0f) != (m < 0.0f)) { m = m + rc_opq_f32(b); }\n"
            "    } else {\n"
            "        m = rc_copysign(0.0f, b);\n"
            "    }\n"
            "    return m;\n}"))

    # Float helpers below never rely on the device for NaN, infinities or signed zeros (WGSL lets an
    # implementation assume there are none, and Mesa's compiler does: x - x becomes 0, a compare-and-
    # select becomes fmin): special values are told apart by their bits, and one operand of a float
    # operation goes through rc_opq_f32 (an identity the compiler cannot see through: it xors the
    # bits with rc_params.zero) so that no algebraic rewrite applies.

    def fcmp(self, op: str) -> str:
        self.isnan_fn()
        self.opaque("f32")
        nm = f"rc_f{op}"
        if op == "ne":
            body = "return rc_isnan(a) || rc_isnan(b) || a != rc_opq_f32(b);"
        else:
            sym = {"eq": "==", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            body = f"return !rc_isnan(a) && !rc_isnan(b) && a {sym} rc_opq_f32(b);"
        return self.need(nm, lambda: f"fn {nm}(a: f32, b: f32) -> bool {{ {body} }}")

    def ff_fns(self) -> None:
        """Exact products and sums of f32 (Dekker, Knuth): the building blocks of fma and pow."""
        self.opaque("f32")
        self.need("rc_two_sum", lambda: (
            "// (s, e) with s + e == a + b exactly\n"
            "fn rc_two_sum(a: f32, b: f32) -> vec2<f32> {\n"
            "    let s = a + rc_opq_f32(b);\n"
            "    let bb = s - rc_opq_f32(a);\n"
            "    return vec2<f32>(s, (a - rc_opq_f32(s - rc_opq_f32(bb))) + (b - rc_opq_f32(bb)));\n}"))
        self.need("rc_split", lambda: (
            "// Veltkamp's split: hi + lo == a, each with at most 12 significant bits\n"
            "fn rc_split(a: f32) -> vec2<f32> {\n"
            "    let t = a * rc_opq_f32(4097.0f);\n"
            "    let hi = t - rc_opq_f32(t - rc_opq_f32(a));\n"
            "    return vec2<f32>(hi, a - rc_opq_f32(hi));\n}"))
        self.need("rc_two_prod", lambda: (
            "// (p, e) with p + e == a * b exactly (Dekker; no fused multiply-add needed)\n"
            "fn rc_two_prod(a: f32, b: f32) -> vec2<f32> {\n"
            "    let p = a * rc_opq_f32(b);\n"
            "    let x = rc_split(a);\n"
            "    let y = rc_split(b);\n"
            "    let e = ((x.x * rc_opq_f32(y.x) - rc_opq_f32(p)) + x.x * rc_opq_f32(y.y) + x.y * rc_opq_f32(y.x))\n"
            "        + x.y * rc_opq_f32(y.y);\n"
            "    return vec2<f32>(p, e);\n}"))

    def ffma(self) -> str:
        self.ff_fns()
        self.isnan_fn()
        self.isinf_fn()
        return self.need("rc_fma", lambda: (
            "// a * b + c rounded once (WGSL's fma may round twice): Boldo and Melquiond's emulation with\n"
            "// rounding to odd. Inputs beyond 2**100 (where the split overflows) fall back to a * b + c.\n"
            "// a + b rounded to odd (the nearest below or above whose last bit is 1, unless exact)\n"
            "fn rc_add_odd(a: f32, b: f32) -> f32 {\n"
            "    let w = rc_two_sum(a, b);\n"
            "    let vb = bitcast<u32>(w.x);\n"
            "    if (w.y == 0.0f || (vb & 1u) == 1u || rc_isinf(w.x)) { return w.x; }\n"
            "    if ((w.y > 0.0f) == (w.x > 0.0f)) { return bitcast<f32>(vb + 1u); }\n"
            "    return bitcast<f32>(vb - 1u);\n}\n"
            "\n"
            "// finite a, b, c with |a|, |b| < 2**100; the last addition to odd when the result is scaled next\n"
            "fn rc_fma_core(a: f32, b: f32, c: f32, odd: bool) -> f32 {\n"
            "    let u = rc_two_prod(a, b);\n"
            "    if (rc_isinf(u.x)) { return u.x + rc_opq_f32(c); }\n"
            "    let t = rc_two_sum(c, u.x);\n"
            "    if (rc_isinf(t.x)) { return t.x; }\n"
            "    let v = rc_add_odd(t.y, u.y);\n"
            "    if ((bitcast<u32>(v) & 0x7fffffffu) == 0u) { return t.x; }\n"
            "    if (odd) { return rc_add_odd(t.x, v); }\n"
            "    return t.x + rc_opq_f32(v);\n}\n"
            "\n"
            "// Scaled by 2**+-64 where the split would overflow (an operand >= 2**100) or the product's\n"
            "// error term would underflow (a product below 2**-60).\n"
            "fn rc_fma(a: f32, b: f32, c: f32) -> f32 {\n"
            "    if (rc_isnan(a) || rc_isnan(b) || rc_isinf(a) || rc_isinf(b)) { return a * rc_opq_f32(b) + rc_opq_f32(c); }\n"
            "    if (rc_isnan(c) || rc_isinf(c)) { return c; }\n"
            "    let ea = bitcast<u32>(a) & 0x7fffffffu;\n"
            "    let eb = bitcast<u32>(b) & 0x7fffffffu;\n"
            "    let up = bitcast<f32>(0x5f800000u);\n"
            "    let down = bitcast<f32>(0x1f800000u);\n"
            "    if (ea == 0u || eb == 0u) { return a * rc_opq_f32(b) + rc_opq_f32(c); }\n"
            "    if (max(ea, eb) >= 0x71800000u) {\n"
            "        if (min(ea, eb) >= 0x71800000u) { return a * rc_opq_f32(b) + rc_opq_f32(c); }\n"
            "        if (ea >= eb) { return rc_fma_core(a * down, b, c * down, false) * up; }\n"
            "        return rc_fma_core(a, b * down, c * down, false) * up;\n"
            "    }\n"
            "    if (bitcast<f32>(ea) * rc_opq_f32(bitcast<f32>(eb)) < 8.673617e-19f) {\n"
            "        if ((bitcast<u32>(c) & 0x7fffffffu) >= 0x53800000u) { return c; }\n"
            "        var sa = a;\n"
            "        var sb = b;\n"
            "        if (ea <= eb) { sa = a * up; } else { sb = b * up; }\n"
            "        let r = rc_fma_core(sa, sb, c * up, false) * down;\n"
            "        if ((bitcast<u32>(r) & 0x7fffffffu) >= 0x800000u) { return r; }\n"
            "        // a subnormal result: round to odd first, so that scaling rounds once, correctly\n"
            "        return rc_fma_core(sa, sb, c * up, true) * down;\n"
            "    }\n"
            "    return rc_fma_core(a, b, c, false);\n}"))

    def fexp(self) -> str:
        self.isnan_fn()
        self.opaque("f32")
        inf = f"{self.f32_bits_fn()}(0x7f800000u)"
        return self.need("rc_exp_dd", lambda: (
            "// exp(h + l) for a double-f32 argument: Cody and Waite's reduction, a polynomial, 2**n\n"
            "fn rc_exp_dd(h: f32, l: f32) -> f32 {\n"
            f"    if (h > 89.0f) {{ return {inf}; }}\n"
            "    if (h < -104.0f) { return 0.0f; }\n"
            "    let n = round(h * 1.4426950408889634f);\n"
            "    let r = ((h - rc_opq_f32(n * 0.693145751953125f)) - rc_opq_f32(n * 1.4286067653301859e-06f))\n"
            "        + rc_opq_f32(l);\n"
            "    let p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666666666666666f + r * (0.041666666666666664f\n"
            "        + r * (0.008333333333333333f + r * (0.001388888888888889f + r * 0.0001984126984126984f))))));\n"
            "    let k = i32(n);\n"
            "    if (k > 127i) { return p * bitcast<f32>(0x7f000000u) * bitcast<f32>(u32(k - 127i + 127i) << 23u); }\n"
            "    if (k < -126i) { return p * bitcast<f32>(0x00800000u) * bitcast<f32>(u32(k + 126i + 127i) << 23u); }\n"
            "    return p * bitcast<f32>(u32(k + 127i) << 23u);\n}"))

    def flog_dd(self) -> str:
        self.ff_fns()
        return self.need("rc_log_dd", lambda: (
            "// ln(x) as a double-f32 (hi, lo), x > 0 finite: x = 2**k * m, ln m = 2 atanh(s), s = (m-1)/(m+1)\n"
            "fn rc_log_dd(x: f32) -> vec2<f32> {\n"
            "    var b = bitcast<u32>(x);\n"
            "    var k = 0i;\n"
            "    if (b < 0x800000u) { b = bitcast<u32>(x * 16777216.0f); k = -24i; }\n"
            "    k = k + i32(b >> 23u) - 127i;\n"
            "    var mb = (b & 0x7fffffu) | 0x3f800000u;\n"
            "    if (mb > 0x3fb504f3u) { mb = mb - 0x800000u; k = k + 1i; }\n"
            "    let u = bitcast<f32>(mb) - 1.0f;\n"
            "    let d = rc_two_sum(2.0f, u);\n"
            "    let sh = u / rc_opq_f32(d.x);\n"
            "    let p = rc_two_prod(sh, d.x);\n"
            "    let sl = (((u - rc_opq_f32(p.x)) - rc_opq_f32(p.y)) - sh * rc_opq_f32(d.y)) / rc_opq_f32(d.x);\n"
            "    let z = sh * sh;\n"
            "    let tail = 2.0f * sh * z * (0.3333333333333333f + z * (0.2f + z * (0.14285714285714285f\n"
            "        + z * (0.1111111111111111f + z * (0.09090909090909091f + z * 0.07692307692307693f)))));\n"
            "    let fk = f32(k);\n"
            "    let s1 = rc_two_sum(fk * 0.693145751953125f, 2.0f * sh);\n"
            "    let lo = s1.y + (fk * 1.4286067653301859e-06f + (2.0f * sl + tail));\n"
            "    let hi = s1.x + rc_opq_f32(lo);\n"
            "    return vec2<f32>(hi, lo - rc_opq_f32(hi - rc_opq_f32(s1.x)));\n}"))

    def fpow(self) -> str:
        self.isnan_fn()
        self.isinf_fn()
        self.fexp()
        self.flog_dd()
        nan = self.nan()
        inf = f"{self.f32_bits_fn()}(0x7f800000u)"
        return self.need("rc_pow_f32", lambda: (
            "// numpy's power for f32: C powf's special cases, then exp(y * ln|x|) in double-f32\n"
            "fn rc_pow_f32(x: f32, y: f32) -> f32 {\n"
            "    let xb = bitcast<u32>(x);\n"
            "    let yb = bitcast<u32>(y);\n"
            "    if ((yb & 0x7fffffffu) == 0u || xb == 0x3f800000u) { return 1.0f; }\n"
            f"    if (rc_isnan(x) || rc_isnan(y)) {{ return {nan}; }}\n"
            "    let ax = bitcast<f32>(xb & 0x7fffffffu);\n"
            "    let ay = bitcast<f32>(yb & 0x7fffffffu);\n"
            "    let xneg = (xb & 0x80000000u) != 0u;\n"
            "    if (rc_isinf(y)) {\n"
            "        if (ax == 1.0f) { return 1.0f; }\n"
            f"        if ((ax > 1.0f) == (y > 0.0f)) {{ return {inf}; }}\n"
            "        return 0.0f;\n"
            "    }\n"
            "    let yint = floor(ay) == ay;\n"
            "    var yodd = false;\n"
            "    if (yint && ay < 16777216.0f) { yodd = (u32(ay) & 1u) == 1u; }\n"
            "    var r: f32;\n"
            "    if (rc_isinf(x) || (xb & 0x7fffffffu) == 0u) {\n"
            f"        if ((y < 0.0f) == ((xb & 0x7fffffffu) == 0u)) {{ r = {inf}; }} else {{ r = 0.0f; }}\n"
            "    } else {\n"
            f"        if (xneg && !yint) {{ return {nan}; }}\n"
            "        if (ax == 1.0f) { return select(1.0f, -1.0f, xneg && yodd); }\n"
            "        // |y| >= 2**100: |y * ln|x|| >= 2**76, far beyond the range\n"
            f"        if (ay >= 1.2676506e30f) {{ if ((ax > 1.0f) == (y > 0.0f)) {{ return {inf}; }} return 0.0f; }}\n"
            "        let l = rc_log_dd(ax);\n"
            "        let t = rc_two_prod(y, l.x);\n"
            "        r = rc_exp_dd(t.x, t.y + y * rc_opq_f32(l.y));\n"
            "    }\n"
            "    if (xneg && yodd) { r = -r; }\n"
            "    return r;\n}"))

    def fsincos(self) -> None:
        """sin and cos: Payne and Hanek's reduction by pi/2 on integers (exact for every f32), then
        musl's __sindf/__cosdf polynomials."""
        self.need("rc_2_over_pi", lambda: (
            "// the bits of 2/pi after the binary point, after a zero word\n"
            "var<private> rc_2_over_pi: array<u32, 9> = array<u32, 9>(0u, 0xa2f9836eu, 0x4e441529u, 0xfc2757d1u,\n"
            "    0xf534ddc0u, 0xdb629599u, 0x3c439041u, 0xfe5163abu, 0xdebbc561u);"))
        self.need("RcRed", lambda: "struct RcRed {\n    r: f32,\n    q: u32,\n}")
        self.need("rc_sindf", lambda: (
            "fn rc_sindf(x: f32) -> f32 {\n"
            "    let z = x * x;\n"
            "    let w = z * z;\n"
            "    let r = -0.000198393348360966317347f + z * 0.0000027183114939898219064f;\n"
            "    let s = z * x;\n"
            "    return (x + s * (-0.166666666416265235595f + z * 0.0083333293858894631756f)) + s * w * r;\n}"))
        self.need("rc_cosdf", lambda: (
            "fn rc_cosdf(x: f32) -> f32 {\n"
            "    let z = x * x;\n"
            "    let w = z * z;\n"
            "    let r = -0.00138867637746099294692f + z * 0.0000243904487962774090654f;\n"
            "    return ((1.0f + z * -0.499999997251031003120f) + w * 0.0416666233237390631894f) + (w * z) * r;\n}"))
        self.need("rc_rem_pio2", lambda: (
            "// |x| = q * pi/2 + r (mod 2 pi), |r| <= pi/4, for finite |x| >= pi/4\n"
            "fn rc_rem_pio2(ax: f32) -> RcRed {\n"
            "    let b = bitcast<u32>(ax);\n"
            "    let m = (b & 0x7fffffu) | 0x800000u;\n"
            "    // |x| = m * 2**e; the 96 bits of 2/pi from bit e - 1 on give |x| * 2/pi mod 4 to 2**-64\n"
            "    let s = ((b >> 23u) & 0xffu) - 120u;\n"
            "    let wi = s >> 5u;\n"
            "    let sh = s & 31u;\n"
            "    var w0 = rc_2_over_pi[wi];\n"
            "    var w1 = rc_2_over_pi[wi + 1u];\n"
            "    var w2 = rc_2_over_pi[wi + 2u];\n"
            "    if (sh != 0u) {\n"
            "        w0 = (w0 << sh) | (w1 >> (32u - sh));\n"
            "        w1 = (w1 << sh) | (w2 >> (32u - sh));\n"
            "        w2 = (w2 << sh) | (rc_2_over_pi[wi + 3u] >> (32u - sh));\n"
            "    }\n"
            "    var l = array<u32, 6>(w2 & 0xffffu, w2 >> 16u, w1 & 0xffffu, w1 >> 16u, w0 & 0xffffu, w0 >> 16u);\n"
            "    var p = array<u32, 8>();\n"
            "    let m0 = m & 0xffffu;\n"
            "    let m1 = m >> 16u;\n"
            "    var c = 0u;\n"
            "    for (var i = 0u; i < 6u; i = i + 1u) { let t = l[i] * m0 + c; p[i] = t & 0xffffu; c = t >> 16u; }\n"
            "    p[6] = c;\n"
            "    c = 0u;\n"
            "    for (var i = 0u; i < 6u; i = i + 1u) {\n"
            "        let t = p[i + 1u] + l[i] * m1 + c;\n"
            "        p[i + 1u] = t & 0xffffu;\n"
            "        c = t >> 16u;\n"
            "    }\n"
            "    p[7] = p[7] + c;\n"
            "    // the product has 94 bits after the binary point\n"
            "    var q = (p[5] >> 14u) & 3u;\n"
            "    var fh = (p[3] >> 14u) | (p[4] << 2u) | (p[5] << 18u);\n"
            "    var fl = (p[1] >> 14u) | (p[2] << 2u) | (p[3] << 18u);\n"
            "    var neg = false;\n"
            "    if ((fh & 0x80000000u) != 0u) {\n"
            "        q = q + 1u;\n"
            "        neg = true;\n"
            "        fh = ~fh + select(0u, 1u, fl == 0u);\n"
            "        fl = 0u - fl;\n"
            "    }\n"
            "    if (fh == 0u && fl == 0u) { return RcRed(0.0f, q & 3u); }\n"
            "    var lz: u32;\n"
            "    if (fh != 0u) { lz = 31u - firstLeadingBit(fh); } else { lz = 63u - firstLeadingBit(fl); }\n"
            "    if (lz >= 32u) {\n"
            "        fh = fl << (lz - 32u);\n"
            "        fl = 0u;\n"
            "    } else if (lz > 0u) {\n"
            "        fh = (fh << lz) | (fl >> (32u - lz));\n"
            "        fl = fl << lz;\n"
            "    }\n"
            "    let a = f32(fh >> 8u) * bitcast<f32>(0x33800000u);\n"
            "    let a2 = f32(((fh & 0xffu) << 16u) | (fl >> 16u)) * bitcast<f32>(0x27800000u);\n"
            "    let scale = bitcast<f32>((127u - lz) << 23u);\n"
            "    var r = (a * 1.5707963705062866f + (a * -4.371139000186243e-08f + a2 * 1.5707963705062866f)) * scale;\n"
            "    if (neg) { r = -r; }\n"
            "    return RcRed(r, q & 3u);\n}"))

    def builtin(self, e: Builtin, k: list[str]) -> str:
        name = e.name
        vt = _vt(e.args[0].type) if e.args else _vt(e.type)
        if name == "abs":
            at = e.args[0].type
            if at.kind == "u" or at.kind == "b":
                return k[0]
            if at.kind == "f":
                return self.need("rc_fabs", lambda: (
                    "fn rc_fabs(x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(x) & 0x7fffffffu); }")) + f"({k[0]})"
            nm = f"rc_abs_{_tk(at)}"
            neg = self.wrap(at, "(0i - a)")
            return self.need(nm, lambda: f"fn {nm}(a: i32) -> i32 {{ return select(a, {neg}, a < 0i); }}") + f"({k[0]})"
        if name in ("min", "max", "clamp"):
            mn = self.minmax("min", vt)
            mx = self.minmax("max", vt)
            if name == "min":
                return f"{mn}({k[0]}, {k[1]})"
            if name == "max":
                return f"{mx}({k[0]}, {k[1]})"
            return f"{mn}({mx}({k[0]}, {k[1]}), {k[2]})"
        if name == "isnan":
            return f"{self.isnan_fn()}({k[0]})"
        if name in ("floor", "ceil"):
            return f"{name}({k[0]})"
        if name == "fma":
            return f"{self.ffma()}({k[0]}, {k[1]}, {k[2]})"
        if name == "pow":
            return f"{self.fpow()}({k[0]}, {k[1]})"
        return f"{self.fmath(name)}({k[0]})"

    def minmax(self, which: str, vt: str) -> str:
        nm = f"rc_{which}_{vt}"
        if vt == "bool":
            cond = "(!b) & a" if which == "min" else "b & (!a)"
        elif vt == "f32":
            cond = f"{self.fcmp('lt' if which == 'min' else 'gt')}(b, a)"
        else:
            cond = "b < a" if which == "min" else "b > a"
        return self.need(nm, lambda: f"fn {nm}(a: {vt}, b: {vt}) -> {vt} {{ return select(a, b, {cond}); }}")

    def fmath(self, name: str) -> str:
        self.isnan_fn()
        self.isinf_fn()
        self.opaque("f32")
        nan = self.nan()
        inf = f"{self.f32_bits_fn()}(0x7f800000u)"
        if name in ("sin", "cos"):
            self.fsincos()
        if name in ("exp", "tanh"):
            self.fexp()
        if name == "log":
            self.flog_dd()
        if name == "sin":
            body = (f"    if (rc_isnan(x) || rc_isinf(x)) {{ return {nan}; }}\n"
                    "    let ab = bitcast<u32>(x) & 0x7fffffffu;\n"
                    "    if (ab < 0x39800000u) { return x; }\n"
                    "    if (ab <= 0x3f490fdau) { return rc_sindf(x); }\n"
                    "    let red = rc_rem_pio2(bitcast<f32>(ab));\n"
                    "    var v: f32;\n"
                    "    if (red.q == 0u) { v = rc_sindf(red.r); } else if (red.q == 1u) { v = rc_cosdf(red.r); }\n"
                    "    else if (red.q == 2u) { v = -rc_sindf(red.r); } else { v = -rc_cosdf(red.r); }\n"
                    "    if ((bitcast<u32>(x) & 0x80000000u) != 0u) { v = -v; }\n"
                    "    return v;")
        elif name == "cos":
            body = (f"    if (rc_isnan(x) || rc_isinf(x)) {{ return {nan}; }}\n"
                    "    let ab = bitcast<u32>(x) & 0x7fffffffu;\n"
                    "    if (ab < 0x39800000u) { return 1.0f; }\n"
                    "    if (ab <= 0x3f490fdau) { return rc_cosdf(x); }\n"
                    "    let red = rc_rem_pio2(bitcast<f32>(ab));\n"
                    "    if (red.q == 0u) { return rc_cosdf(red.r); }\n"
                    "    if (red.q == 1u) { return -rc_sindf(red.r); }\n"
                    "    if (red.q == 2u) { return -rc_cosdf(red.r); }\n"
                    "    return rc_sindf(red.r);")
        elif name == "sqrt":
            body = (f"    if (rc_isnan(x) || (bitcast<u32>(x) > 0x80000000u)) {{ return {nan}; }}\n"
                    "    if ((bitcast<u32>(x) & 0x7fffffffu) == 0u || rc_isinf(x)) { return x; }\n"
                    "    return sqrt(x);")
        elif name == "exp":
            body = ("    if (rc_isnan(x)) { return x; }\n"
                    f"    if (x > 88.72283172607422f) {{ return {inf}; }}\n"
                    "    if (x < -103.97207641601562f) { return 0.0f; }\n"
                    "    return rc_exp_dd(x, 0.0f);")
        elif name == "log":
            body = (f"    if (rc_isnan(x) || bitcast<u32>(x) > 0x80000000u) {{ return {nan}; }}\n"
                    f"    if ((bitcast<u32>(x) & 0x7fffffffu) == 0u) {{ return -{inf}; }}\n"
                    "    if (rc_isinf(x)) { return x; }\n"
                    "    return rc_log_dd(x).x;")
        elif name == "tanh":
            body = ("    if (rc_isnan(x)) { return x; }\n"
                    "    let ab = bitcast<u32>(x) & 0x7fffffffu;\n"
                    "    let ax = bitcast<f32>(ab);\n"
                    "    var t: f32;\n"
                    "    if (ab < 0x39800000u) { return x; }\n"
                    "    if (ax > 9.1f) {\n"
                    "        t = 1.0f;\n"
                    "    } else if (ax < 0.55f) {\n"
                    "        let z = ax * ax;\n"
                    + "        var p = " + _TANH_COEFS[-1] + "f;\n"
                    + "".join(f"        p = {c}f + z * p;\n" for c in reversed(_TANH_COEFS[:-1]))
                    + "        t = ax + ax * (z * p);\n"
                    "    } else {\n"
                    "        t = 1.0f - 2.0f / (rc_exp_dd(2.0f * ax, 0.0f) + 1.0f);\n"
                    "    }\n"
                    "    if ((bitcast<u32>(x) & 0x80000000u) != 0u) { t = -t; }\n"
                    "    return t;")
        else:
            raise TypeError(f"unknown builtin {name}")
        nm = f"rc_{name}"
        return self.need(nm, lambda: f"fn {nm}(x: f32) -> f32 {{\n{body}\n}}")

    # -- storage access -----------------------------------------------------------------------

    def local_name(self, name: str) -> str:
        assert self.fn is not None
        return self.fn.names[name]

    def idx_u32(self, idx: Expr | None, text: str | None) -> str | None:
        if idx is None or text is None:
            return None
        return text if _vt(idx.type) == "u32" else f"u32({text})"

    def load(self, ref: Ref, idx_text: str | None, idx: Expr | None) -> str:
        t = ref.type
        assert isinstance(t, ScalarType)
        if ref.space == "local":
            n = self.local_name(ref.name)
            return f"{n}[{idx_text}]" if idx_text is not None else n
        ui = self.idx_u32(idx, idx_text)
        if ref.space == "msg":
            off = self.kir.input.dtype.fields[ref.name][1]
            return self.buf_load("in", "rc_in", "rc_ib", off, ui, t, idx)
        seg, off = self.field_seg[ref.name]
        if seg.atomic is not None:
            p = f"&rc_state.{seg.member}[{ui if ui is not None else '0u'}]"
            v = f"atomicLoad({p})"
            return f"bitcast<f32>({v})" if t.kind == "f" else v
        return self.buf_load(f"st_{seg.member}", f"rc_state.{seg.member}", None, off, ui, t, idx)

    def byte_fns(self, tag: str, arr: str, bits: int) -> tuple[str, str]:
        mask = hex((1 << bits) - 1)
        ld = f"rc_{tag}_ld{bits}"
        st = f"rc_{tag}_st{bits}"
        sel = "(b & 3u)" if bits == 8 else "(b & 2u)"
        self.need(ld, lambda: (
            f"fn {ld}(b: u32) -> u32 {{ return ({arr}[b >> 2u] >> ({sel} * 8u)) & {mask}u; }}"))
        if tag != "in":
            self.need(st, lambda: (
                f"fn {st}(b: u32, v: u32) {{\n"
                f"    let sh = {sel} * 8u;\n"
                f"    {arr}[b >> 2u] = ({arr}[b >> 2u] & ~({mask}u << sh)) | ((v & {mask}u) << sh);\n}}"))
        return ld, st

    def elem_addr(self, base_words: str | None, off: int, esize: int, ui: str | None, idx: Expr | None,
                  bytes_: bool) -> str:
        const_i = 0
        if idx is not None and isinstance(idx, Const):
            const_i, ui = int(idx.value), None
        if bytes_:
            c = off + const_i * esize
            parts = [f"{base_words} * 4u"] if base_words is not None else []
            if ui is not None:
                parts.append(ui if esize == 1 else f"{ui} * {esize}u")
        else:
            c = off // 4 + const_i * (esize // 4)
            parts = [base_words] if base_words is not None else []
            if ui is not None:
                parts.append(ui if esize <= 4 else f"{ui} * {esize // 4}u")
        if c or not parts:
            parts.append(f"{c}u")
        return " + ".join(parts)

    def buf_load(self, tag: str, arr: str, base: str | None, off: int, ui: str | None, t: ScalarType,
                 idx: Expr | None) -> str:
        size = t.dtype.itemsize
        if size == 4:
            w = f"{arr}[{self.elem_addr(base, off, 4, ui, idx, False)}]"
            return {"u32": w, "i32": f"bitcast<i32>({w})", "f32": f"bitcast<f32>({w})"}[_vt(t)]
        ld, _ = self.byte_fns(tag, arr, size * 8)
        v = f"{ld}({self.elem_addr(base, off, size, ui, idx, True)})"
        if t.kind == "b":
            return f"({v} != 0u)"
        if t.kind == "i":
            return f"{self.sx(t.bits)}(bitcast<i32>({v}))"
        return v

    def to_bits(self, t: ScalarType, v: str) -> str:
        vt = _vt(t)
        if vt == "bool":
            return f"select(0u, 1u, {v})"
        if vt == "u32":
            return v
        return f"bitcast<u32>({v})"

    def buf_store(self, tag: str, arr: str, base: str | None, off: int, ui: str | None, t: ScalarType,
                  idx: Expr | None, v: str) -> None:
        size = t.dtype.itemsize
        bits = self.to_bits(t, v)
        if size == 4:
            self.line(f"{arr}[{self.elem_addr(base, off, 4, ui, idx, False)}] = {bits};")
            return
        _, st = self.byte_fns(tag, arr, size * 8)
        self.line(f"{st}({self.elem_addr(base, off, size, ui, idx, True)}, {bits});")

    def store(self, ref: Ref, ui_text: str | None, idx: Expr | None, v: str) -> None:
        t = ref.type
        assert isinstance(t, ScalarType)
        if ref.space == "local":
            n = self.local_name(ref.name)
            self.line(f"{n}[{ui_text}] = {v};" if ui_text is not None else f"{n} = {v};")
            return
        if ref.space != "state":
            raise TypeError(f"cannot store into {ref.space}")
        ui = self.idx_u32(idx, ui_text)
        seg, off = self.field_seg[ref.name]
        if seg.atomic is not None:
            val = f"bitcast<u32>({v})" if t.kind == "f" else v
            self.line(f"atomicStore(&rc_state.{seg.member}[{ui if ui is not None else '0u'}], {val});")
            return
        self.buf_store(f"st_{seg.member}", f"rc_state.{seg.member}", None, off, ui, t, idx, v)

    # -- statements ---------------------------------------------------------------------------

    def block(self, body: list[Stmt]) -> None:
        self.ind += 1
        for s in body:
            self.stmt(s)
        self.ind -= 1

    def fail_return(self) -> str:
        assert self.fn is not None
        if self.fn.kind == "kernel":
            return f"return {hex(STATUS_FAILED)}u | rc_fail;"
        if self.fn.ret is None:
            return "return;"
        return f"return {_zero(self.fn.ret)};"

    def stmt(self, s: Stmt) -> None:
        if s.pos is not None and s.pos.line != getattr(self, "_py_line", None):
            self._py_line = s.pos.line
            self.line(f"{PY_LINE_MARK}{s.pos.line}")  # lets python_line() map a validation error back
        try:
            self._stmt(s)
        except _Located as err:
            if err.pos is None and s.pos is not None:
                err.pos = s.pos
            raise

    def _stmt(self, s: Stmt) -> None:
        if isinstance(s, Assign):
            es = [s.value] + ([s.ref.index] if s.ref.index is not None else [])
            texts = self.seq(es)
            self.store(s.ref, texts[1] if len(texts) > 1 else None, s.ref.index, texts[0])
        elif isinstance(s, Eval):
            t = self.ex(s.expr)
            if t and not _IDENT.match(t):
                self.line(f"_ = {t};")
        elif isinstance(s, If):
            c = self.ex(s.cond)
            self.line(f"if ({c}) {{")
            self.block(s.then)
            if s.orelse:
                self.line("} else {")
                self.block(s.orelse)
            self.line("}")
        elif isinstance(s, While):
            self.line("loop {")
            self.ind += 1
            c = self.ex(s.cond)
            self.line(f"if (!({c})) {{ break; }}")
            self.ind -= 1
            self.block(s.body)
            self.line("}")
        elif isinstance(s, For):
            self.for_(s)
        elif isinstance(s, Break):
            self.line("break;")
        elif isinstance(s, Continue):
            self.line("continue;")
        elif isinstance(s, Return):
            self.return_(s)
        elif isinstance(s, Fail):
            assert self.fn is not None
            if self.fn.kind == "kernel":
                self.line(f"return {hex(STATUS_FAILED | s.site)}u;")
            else:
                self.line(f"rc_fail = {s.site}u;")
                self.line(self.fail_return())
        elif isinstance(s, ArrayZero):
            t = s.ref.type
            assert isinstance(t, ArrayType)
            if s.ref.space != "local":
                raise TypeError("ArrayZero on a non-local array")
            self.line(f"{self.local_name(s.ref.name)} = array<{_vt(t.elem)}, {t.size}>();")
        elif isinstance(s, ArrayCopy):
            self.array_copy(s.dst, s.src)
        elif isinstance(s, Tick):
            if self.fn is None or self.fn.kind != "kernel":
                raise TypeError("ctx.now() outside the kernel")
            v = f"{self.tick_fn()}(rc_lane, rc_ntick)"
            if s.logical is not None and s.logical.name in self.used:
                self.line(f"{self.local_name(s.logical.name)} = {v};")
            else:
                self.line(f"_ = {v};")
            self.line("rc_ntick = rc_ntick + 1u;")
        else:
            raise TypeError(f"unknown IR statement {type(s).__name__}")

    def for_(self, s: For) -> None:
        start, stop, step = self.seq([s.start, s.stop, s.step])
        t = s.start.type
        vt = _vt(t)
        var = self.local_name(s.var)
        trip = self.trip_fn(vt)
        n = self.tmp("n")
        k = self.tmp("k")
        start, step = self.let(start), self.let(step)
        self.line(f"let {n} = {trip}({start}, {stop}, {step});")
        self.line(f"for (var {k} = 0u; {k} < {n}; {k} = {k} + 1u) {{")
        self.ind += 1
        if vt == "u32":
            self.line(f"{var} = {start} + {k} * {step};")
        else:
            self.line(f"{var} = bitcast<i32>(bitcast<u32>({start}) + {k} * bitcast<u32>({step}));")
        self.ind -= 1
        self.block(s.body)
        self.line("}")

    def trip_fn(self, vt: str) -> str:
        if vt == "u32":
            return self.need("rc_trip_u32", lambda: (
                "// iterations of range(a, b, s), s != 0, without overflow\n"
                "fn rc_trip_u32(a: u32, b: u32, s: u32) -> u32 {\n"
                "    if (b <= a || s == 0u) { return 0u; }\n"
                "    return (b - a - 1u) / s + 1u;\n}"))
        return self.need("rc_trip_i32", lambda: (
            "// iterations of range(a, b, s), s != 0, without overflow\n"
            "fn rc_trip_i32(a: i32, b: i32, s: i32) -> u32 {\n"
            "    if (s > 0i) {\n"
            "        if (b <= a) { return 0u; }\n"
            "        return (bitcast<u32>(b) - bitcast<u32>(a) - 1u) / bitcast<u32>(s) + 1u;\n"
            "    }\n"
            "    if (s == 0i || b >= a) { return 0u; }\n"
            "    return (bitcast<u32>(a) - bitcast<u32>(b) - 1u) / (0u - bitcast<u32>(s)) + 1u;\n}"))

    # -- arrays and messages ------------------------------------------------------------------

    def array_copy(self, dst: Ref, src: Ref) -> None:
        t = dst.type
        assert isinstance(t, ArrayType)
        if dst.space == "local" and src.space == "local":
            self.line(f"{self.local_name(dst.name)} = {self.local_name(src.name)};")
            return
        i = self.tmp("i")
        iexpr = Load(_U32, Ref("local", "__rc_index__", None, _U32))
        self.line(f"for (var {i} = 0u; {i} < {t.size}u; {i} = {i} + 1u) {{")
        self.ind += 1
        v = self.load(Ref(src.space, src.name, iexpr, t.elem), i, iexpr)
        self.store(Ref(dst.space, dst.name, iexpr, t.elem), i, iexpr, v)
        self.ind -= 1
        self.line("}")

    def msg_fields(self, m: MsgValue) -> list[tuple[str, object]]:
        """Evaluate a message's field values in order: texts for scalars, Refs for arrays, and for
        64-bit fields ``("const", value)`` or ``("ref", Ref, index text)`` (moved as words)."""
        evals: list[Expr] = []
        for f, v in m.fields.items():
            if _bits64(m.spec.fields[f]):
                if isinstance(v, Load) and v.ref.index is not None:
                    evals.append(v.ref.index)
            elif isinstance(v, Expr):
                evals.append(v)
        texts = iter(self.seq(evals))
        out: list[tuple[str, object]] = []
        for f, v in m.fields.items():
            if _bits64(m.spec.fields[f]):
                if isinstance(v, Const):
                    out.append((f, ("const", v.value)))
                elif isinstance(v, Load):
                    out.append((f, ("ref", v.ref, next(texts) if v.ref.index is not None else None)))
                elif isinstance(v, Ref):
                    out.append((f, ("ref", v, None)))
                else:
                    out.append((f, None))
            elif isinstance(v, Expr):
                out.append((f, next(texts)))
            else:
                out.append((f, v))
        return out

    def write_msg(self, spec: MessageSpec, values: list, tag: str, arr: str, base: str) -> None:
        """Write a whole payload record (padding zeroed) at word ``base`` of ``arr``."""
        dt = spec.dtype
        nwords = dt.itemsize // 4
        full = [False] * nwords
        for f, t in spec.fields.items():
            elem = t.elem if isinstance(t, ArrayType) else t
            if elem.dtype.itemsize >= 4:
                off = dt.fields[f][1]
                size = t.dtype.itemsize if isinstance(t, ArrayType) else elem.dtype.itemsize
                for w in range(off // 4, (off + size) // 4):
                    full[w] = True
        for w in range(nwords):
            if not full[w]:
                self.line(f"{arr}[{base} + {w}u] = 0u;" if w else f"{arr}[{base}] = 0u;")
        for f, v in values:
            t = spec.fields[f]
            off = dt.fields[f][1]
            elem = t.elem if isinstance(t, ArrayType) else t
            if elem.bits == 64:
                self.copy_words64(spec, f, v, arr, base)
                continue
            if isinstance(t, ScalarType):
                if v is None:
                    if elem.dtype.itemsize >= 4:
                        self.line(f"{arr}[{base} + {off // 4}u] = 0u;")
                    continue
                self.buf_store(tag, arr, base, off, None, t, None, v)
                continue
            if v is None:
                if elem.dtype.itemsize >= 4:
                    i = self.tmp("i")
                    self.line(f"for (var {i} = 0u; {i} < {t.size}u; {i} = {i} + 1u) {{ "
                              f"{arr}[{base} + {off // 4}u + {i}] = 0u; }}")
                continue
            assert isinstance(v, Ref)
            i = self.tmp("i")
            iexpr = Load(_U32, Ref("local", "__rc_index__", None, _U32))
            self.line(f"for (var {i} = 0u; {i} < {t.size}u; {i} = {i} + 1u) {{")
            self.ind += 1
            val = self.load(Ref(v.space, v.name, iexpr, elem), i, iexpr)
            self.buf_store(tag, arr, base, off, i, elem, iexpr, val)
            self.ind -= 1
            self.line("}")

    def copy_words64(self, spec: MessageSpec, f: str, v, arr: str, base: str) -> None:
        t = spec.fields[f]
        off = spec.dtype.fields[f][1] // 4
        nw = t.dtype.itemsize // 4
        if v is None:
            for w in range(nw):
                self.line(f"{arr}[{base} + {off + w}u] = 0u;")
            return
        if v[0] == "const":
            elem = t.elem if isinstance(t, ArrayType) else t
            raw = int(np.array(v[1], dtype=elem.dtype).view(np.uint64)) if elem.kind == "f" else int(v[1])
            raw &= (1 << 64) - 1
            self.line(f"{arr}[{base} + {off}u] = {raw & 0xFFFFFFFF}u;")
            self.line(f"{arr}[{base} + {off + 1}u] = {raw >> 32}u;")
            return
        _, ref, idx_text = v
        if ref.space == "msg":
            soff = self.kir.input.dtype.fields[ref.name][1] // 4
            src_arr, sbase = "rc_in", "rc_ib + "
        elif ref.space == "state":
            seg, o = self.field_seg[ref.name]
            soff, src_arr, sbase = o // 4, f"rc_state.{seg.member}", ""
        else:
            raise TypeError(f"64-bit copy from {ref.space}")
        if idx_text is not None:
            it = self.idx_u32(ref.index, idx_text)
            for w in range(2):
                self.line(f"{arr}[{base} + {off + w}u] = {src_arr}[{sbase}{soff + w}u + {it} * 2u];")
            return
        n = min(ref.type.dtype.itemsize // 4, nw)
        if n <= 8:
            for w in range(n):
                self.line(f"{arr}[{base} + {off + w}u] = {src_arr}[{sbase}{soff + w}u];")
            return
        i = self.tmp("i")
        self.line(f"for (var {i} = 0u; {i} < {n}u; {i} = {i} + 1u) {{ "
                  f"{arr}[{base} + {off}u + {i}] = {src_arr}[{sbase}{soff}u + {i}]; }}")

    def return_(self, s: Return) -> None:
        assert self.fn is not None
        if self.fn.kind == "func":
            if isinstance(s.value, Expr):
                self.line(f"return {self.ex(s.value)};")
            else:
                self.line(self.fail_return() if self.fn.ret is not None else "return;")
            return
        if s.value is None:
            self.line("return 0u;")
            return
        assert isinstance(s.value, MsgValue)
        values = self.msg_fields(s.value)
        if self.out_words:
            self.write_msg(s.value.spec, values, "out", "rc_out", "rc_ob")
        self.line(f"return {STATUS_REPLIED}u;")

    # -- calls, atomics, sends ----------------------------------------------------------------

    def call(self, e: CallFunc, args: list[str]) -> str:
        text = f"{self.func_names[e.name]}({', '.join(args)})"
        if self.kir.funcs[e.name].ret is None:
            self.line(f"{text};")
            self.line(f"if (rc_fail != 0u) {{ {self.fail_return()} }}")
            return ""
        t = self.tmp()
        self.line(f"let {t} = {text};")
        self.line(f"if (rc_fail != 0u) {{ {self.fail_return()} }}")
        return t

    def atomic(self, e: Atomic, k: list[str]) -> str:
        ref = e.ref
        seg, _ = self.field_seg[ref.name]
        t = e.type
        if seg.atomic is None:
            raise TypeError(f"atomic on non-atomic state field {ref.name}")
        if t.bits != 32:
            raise _Located(f"ctx.atomic_{e.op}",
                           f"WGSL has atomics on 32-bit words only: ctx.atomic_{e.op} on {ref.name!r} ({t.name})",
                           "declare the field u32, i32 or f32", e.pos)
        vals = k[:2] if e.op == "cas" else k[:1]
        idx = k[-1] if ref.index is not None else "0u"
        if ref.index is not None and _vt(ref.index.type) != "u32":
            idx = f"u32({idx})"
        fn = self.atomic_fn(seg, e.op, t)
        r = self.tmp()
        self.line(f"let {r} = {fn}({idx}, {', '.join(vals)});")
        return r

    def atomic_fn(self, seg: _Seg, op: str, t: ScalarType) -> str:
        vt = _vt(t)
        nm = f"rc_atomic_{op}_{seg.member}"
        p = f"&rc_state.{seg.member}[i]"
        if op == "cas":
            params = f"i: u32, e: {vt}, d: {vt}"
        else:
            params = f"i: u32, v: {vt}"
        head = f"fn {nm}({params}) -> {vt} {{\n"
        if vt != "f32":
            native = {"add": "atomicAdd", "sub": "atomicSub", "min": "atomicMin", "max": "atomicMax",
                      "exchange": "atomicExchange"}
            if op in native:
                return self.need(nm, lambda: f"fn {nm}({params}) -> {vt} {{ return {native[op]}({p}, v); }}")
            return self.need(nm, lambda: head + (
                "    var old = e;\n"
                "    loop {\n"
                f"        let r = atomicCompareExchangeWeak({p}, e, d);\n"
                "        old = r.old_value;\n"
                "        if (r.exchanged || r.old_value != e) { break; }\n"
                "    }\n"
                "    return old;\n}"))
        if op == "exchange":
            return self.need(nm, lambda: head + f"    return bitcast<f32>(atomicExchange({p}, bitcast<u32>(v)));\n}}")
        if op == "cas":
            self.fcmp("eq")
            body = ("        if (!rc_feq(bitcast<f32>(old), e)) { break; }\n"
                    f"        let r = atomicCompareExchangeWeak({p}, old, bitcast<u32>(d));\n"
                    "        if (r.exchanged) { break; }\n"
                    "        old = r.old_value;\n")
        else:
            self.fcmp("lt")
            self.fcmp("gt")
            new = {"add": "fo + v", "sub": "fo - v", "min": "select(fo, v, rc_flt(v, fo))",
                   "max": "select(fo, v, rc_fgt(v, fo))"}[op]
            body = ("        let fo = bitcast<f32>(old);\n"
                    f"        let r = atomicCompareExchangeWeak({p}, old, bitcast<u32>({new}));\n"
                    "        if (r.exchanged) { break; }\n"
                    "        old = r.old_value;\n")
        return self.need(nm, lambda: head + f"    var old = atomicLoad({p});\n    loop {{\n{body}    }}\n"
                         "    return bitcast<f32>(old);\n}")

    def send(self, e: Send, k: list[str]) -> str:
        spec = e.msg.spec
        if isinstance(e.target, Expr):
            tgt, name1 = k[0], 0
        else:
            tgt, name1 = f"{NO_KERNEL}u", self.kir.send_targets.index(e.target) + 1
        values = self.msg_fields(e.msg)
        fn = self.need("rc_send", self._send_src)
        r = self.tmp("send")
        self.line(f"let {r} = {fn}({tgt}, {name1}u, {spec.type_id & 0xFFFFFFFF}u, rc_lane, rc_hops, rc_nsend);")
        self.line("rc_nsend = rc_nsend + 1u;")
        return self._outbox_payload(r, spec, values)

    def _outbox_payload(self, r: str, spec: MessageSpec, values: list[tuple[str, object]]) -> str:
        """Write a send's or publish's payload into the outbox record ``r`` claimed (``r.y``, when one was);
        the expression of its result (``r.x``)."""
        if spec.dtype.itemsize:
            self.line(f"if ({r}.y != {NO_KERNEL}u) {{")
            self.ind += 1
            pb = self.tmp("pay")
            self.line(f"let {pb} = {r}.y + {RECORD_HEADER_WORDS}u;")
            self.write_msg(spec, values, "ob", "rc_outbox.words", pb)
            self.ind -= 1
            self.line("}")
        return f"{r}.x"

    def _send_src(self) -> str:
        c = _CODES
        rw = self.abi.record_words
        return (
            "// ctx.send: decide the result (the CPU runtime's checks against the directory, or the\n"
            "// script), record the attempt in the outbox; returns (code, record word index or none)\n"
            "fn rc_send(tgt: u32, name1: u32, type_id: u32, lane: u32, hops: u32, kth: u32) -> vec2<u32> {\n"
            "    var k = tgt;\n"
            f"    var code = {c['NOT_FOUND']}u;\n"
            f"    var held = {NO_KERNEL}u;\n"
            f"    if ((rc_params.flags & {FLAG_SCRIPTED}u) != 0u) {{\n"
            f"        if (name1 != 0u) {{ k = {NO_KERNEL}u; }}\n"
            "        if (kth < rc_params.script_stride) {\n"
            "            code = atomicLoad(&rc_dir[lane * rc_params.script_stride + kth]);\n"
            "        }\n"
            "    } else {\n"
            "        if (name1 != 0u) { k = atomicLoad(&rc_dir[name1 - 1u]); }\n"
            f"        let e = {self.abi.dir_entries}u + k * {DIR_ENTRY_WORDS}u;\n"
            "        if (k < rc_params.dir_len) {\n"
            "            let st = atomicLoad(&rc_dir[e]);\n"
            f"            if (st == {DIR_NONE}u) {{\n"
            f"                code = {c['NOT_FOUND']}u;\n"
            f"            }} else if (st != {DIR_RUNNING}u) {{\n"
            f"                code = {c['TERMINATED']}u;\n"
            "            } else if (atomicLoad(&rc_dir[e + 1u]) != type_id) {\n"
            f"                code = {c['WRONG_TYPE']}u;\n"
            "            } else if (hops > rc_params.max_hops) {\n"
            f"                code = {c['MAX_HOPS_EXCEEDED']}u;\n"
            "            } else {\n"
            f"                code = {c['QUEUE_FULL']}u;\n"
            "                var f = atomicLoad(&rc_dir[e + 2u]);\n"
            "                loop {\n"
            "                    if (f == 0u) { break; }\n"
            f"                    if (f == {NO_KERNEL}u) {{ code = {_DELIVERED}u; break; }}\n"
            "                    let r = atomicCompareExchangeWeak(&rc_dir[e + 2u], f, f - 1u);\n"
            f"                    if (r.exchanged) {{ code = {_DELIVERED}u; held = e + 2u; break; }}\n"
            "                    f = r.old_value;\n"
            "                }\n"
            "            }\n"
            "        }\n"
            "    }\n"
            f"    var rec = {NO_KERNEL}u;\n"
            "    let slot = atomicAdd(&rc_outbox.count, 1u);\n"
            "    if (slot < rc_params.outbox_capacity) {\n"
            f"        rec = slot * {rw}u;  // rc_outbox.words starts at word {OUTBOX_HEADER_WORDS}\n"
            "        rc_outbox.words[rec] = lane;\n"
            "        rc_outbox.words[rec + 1u] = k;\n"
            "        rc_outbox.words[rec + 2u] = type_id;\n"
            "        rc_outbox.words[rec + 3u] = code | (name1 << 8u);\n"
            f"    }} else if (code == {_DELIVERED}u && (rc_params.flags & {FLAG_SCRIPTED}u) == 0u) {{\n"
            f"        code = {c['QUEUE_FULL']}u;\n"
            f"        if (held != {NO_KERNEL}u) {{ atomicAdd(&rc_dir[held], 1u); }}\n"
            "    }\n"
            "    if (code >= 1u && code <= 6u) { atomicAdd(&rc_outbox.results[code - 1u], 1u); }\n"
            "    return vec2<u32>(code, rec);\n}")

    def ctx_value(self, e: CtxValue) -> str:
        if e.name == "thread_id":
            return "rc_lane"
        if e.name == "kernel_number":
            return "rc_params.kernel_number"
        if e.name.startswith("header."):
            field = e.name[len("header."):]
            off = HEADER_DTYPE.fields[field][1]
            return self.buf_load("in", "rc_in", "rc_hb", off, None, e.type, None)
        raise TypeError(f"unknown ctx value {e.name}")

    def publish(self, e: Publish, k: list[str]) -> str:
        spec = e.msg.spec
        values = self.msg_fields(e.msg)
        fn = self.need("rc_publish", self._publish_src)
        r = self.tmp("pub")
        topic = self.abi.topics.index(e.topic)
        self.line(f"let {r} = {fn}({topic}u, {spec.type_id & 0xFFFFFFFF}u, rc_lane, rc_npub);")
        self.line("rc_npub = rc_npub + 1u;")
        return self._outbox_payload(r, spec, values)

    def _publish_src(self) -> str:
        rw = self.abi.record_words
        return (
            "// ctx.publish: the topic's subscriber count (from the directory, or the script); records the\n"
            "// publish in the outbox; returns (subscribers, record word index or none)\n"
            "fn rc_publish(topic: u32, type_id: u32, lane: u32, kth: u32) -> vec2<u32> {\n"
            "    var count = 0u;\n"
            f"    let scripted = (rc_params.flags & {FLAG_SCRIPTED}u) != 0u;\n"
            "    if (scripted) {\n"
            "        let s = rc_params.script_stride;\n"
            "        if (kth < s) { count = atomicLoad(&rc_dir[2u * rc_params.n * s + rc_params.n + lane * s + kth]); }\n"
            "    } else {\n"
            f"        count = atomicLoad(&rc_dir[{len(self.abi.send_targets)}u + topic]);\n"
            "    }\n"
            f"    var rec = {NO_KERNEL}u;\n"
            "    let slot = atomicAdd(&rc_outbox.count, 1u);\n"
            "    if (slot < rc_params.outbox_capacity) {\n"
            f"        rec = slot * {rw}u;\n"
            "        rc_outbox.words[rec] = lane;\n"
            "        rc_outbox.words[rec + 1u] = topic;\n"
            "        rc_outbox.words[rec + 2u] = type_id;\n"
            f"        rc_outbox.words[rec + 3u] = {hex(PUBLISH_BIT)}u | (count & 0x7fffffffu);\n"
            "    } else if (!scripted) {\n"
            "        count = 0u;\n"
            "    }\n"
            "    return vec2<u32>(count, rec);\n}")

    def tick_fn(self) -> str:
        return self.need("rc_tick", lambda: (
            "// ctx.now().logical: the batch's base plus a counter, or the script's answer\n"
            "fn rc_tick(lane: u32, kth: u32) -> u32 {\n"
            "    let t = atomicAdd(&rc_outbox.ticks, 1u);\n"
            f"    if ((rc_params.flags & {FLAG_SCRIPTED}u) == 0u) {{ return rc_params.hlc_logical + t; }}\n"
            "    let s = rc_params.script_stride;\n"
            "    let n = rc_params.n;\n"
            "    atomicStore(&rc_dir[2u * n * s + lane], kth + 1u);\n"
            "    if (kth < s) { return atomicLoad(&rc_dir[n * s + lane * s + kth]); }\n"
            "    return 0u;\n}"))

    # -- functions ----------------------------------------------------------------------------

    def local_names(self, types: dict, params: list[str]) -> dict[str, str]:
        names: dict[str, str] = {}
        taken: set[str] = set()
        for n in list(params) + [k for k in types if k not in params]:
            base = f"v_{_sanitise(n)}"
            v, i = base, 2
            while v in taken:
                v = f"{base}_{i}"
                i += 1
            taken.add(v)
            names[n] = v
        names["__rc_index__"] = "rc_index_unused"
        return names

    def decl_locals(self, types: dict, skip: set[str], used: set[str]) -> None:
        assert self.fn is not None
        for n, t in types.items():
            if n in skip or n not in used:
                continue
            if isinstance(t, ArrayType):
                self.line(f"var {self.fn.names[n]}: array<{_vt(t.elem)}, {t.size}>;")
            else:
                self.line(f"var {self.fn.names[n]}: {_vt(t)};")

    def function(self, f: Function) -> list[str]:
        pnames = [p for p, _ in f.params]
        names = self.local_names(f.locals, pnames)
        self.fn = _Fn("func", f.ret, names, f.locals)
        self.used = _used_locals(f.body) | set(pnames)
        self.lines = []
        self.ind = 1
        for p, _ in f.params:
            self.line(f"var {names[p]} = p_{names[p]};")
        self.decl_locals(f.locals, set(pnames), self.used)
        for s in f.body:
            self.stmt(s)
        if f.ret is not None:
            self.line(f"return {_zero(f.ret)};")
        params = ", ".join(f"p_{names[p]}: {_vt(t)}" for p, t in f.params)
        ret = f" -> {_vt(f.ret)}" if f.ret is not None else ""
        return [f"fn {self.func_names[f.name]}({params}){ret} {{"] + self.lines + ["}"]

    def kernel(self) -> list[str]:
        kir = self.kir
        names = self.local_names(kir.locals, [])
        self.fn = _Fn("kernel", None, names, kir.locals)
        self.used = _used_locals(kir.body)
        self.lines = []
        self.ind = 1
        self.line(f"let rc_hb = rc_lane * {self.in_words}u;")
        self.line(f"let rc_ib = rc_hb + {self.payload_off // 4}u;")
        self.line(f"let rc_ob = rc_lane * {self.out_words}u;")
        self.line("let rc_hops = ((rc_in[rc_hb + 13u] >> 16u) & 0xffu) + 1u;")
        self.line("var rc_nsend = 0u;")
        self.line("var rc_ntick = 0u;")
        self.line("var rc_npub = 0u;")
        self.decl_locals(kir.locals, set(), self.used)
        for s in kir.body:
            self.stmt(s)
        self.line("return 0u;")
        kname = f"rc_kernel_{_sanitise(kir.name)}"
        self.kname = kname
        return [f"fn {kname}(rc_lane: u32) -> u32 {{"] + self.lines + ["}"]

    # -- the module ---------------------------------------------------------------------------

    def module(self) -> str:
        kir = self.kir
        parts_funcs = []
        for f in kir.funcs.values():
            parts_funcs.append("\n".join(self.function(f)))
        kernel = "\n".join(self.kernel())
        st = self.state_struct()
        out = [
            f"// ringcore kernel {kir.name!r} ({os.path.basename(kir.filename)}:{kir.first_line}), "
            "generated by ringcore.lang.targets.wgsl",
            f"// input {kir.input.name}: slot {self.abi.in_slot_bytes} bytes; reply "
            f"{kir.output.name if kir.output else 'none'}: {self.abi.reply_bytes} bytes; "
            f"state {self.abi.state_bytes} bytes; outbox record {self.abi.record_words} words; "
            f"{'serial' if kir.serial else 'parallel'}",
            "",
            "struct RcParams {",
            "    n: u32,",
            "    kernel_number: u32,",
            "    hlc_logical: u32,",
            "    outbox_capacity: u32,",
            "    max_hops: u32,",
            "    dir_len: u32,",
            "    flags: u32,",
            "    script_stride: u32,",
            "    zero: u32,",
            "    reserved0: u32,",
            "    reserved1: u32,",
            "    reserved2: u32,",
            "}",
            "",
            st,
            "",
            "struct RcOutbox {",
            "    count: atomic<u32>,",
            "    ticks: atomic<u32>,",
            "    results: array<atomic<u32>, 6>,",
            "    words: array<u32>,",
            "}",
            "",
            "@group(0) @binding(0) var<uniform> rc_params: RcParams;",
            "@group(0) @binding(1) var<storage, read> rc_in: array<u32>;",
            "@group(0) @binding(2) var<storage, read_write> rc_out: array<u32>;",
            "@group(0) @binding(3) var<storage, read_write> rc_status: array<u32>;",
            "@group(0) @binding(4) var<storage, read_write> rc_state: RcState;",
            "@group(0) @binding(5) var<storage, read_write> rc_outbox: RcOutbox;",
            "@group(0) @binding(6) var<storage, read_write> rc_dir: array<atomic<u32>>;",
            "",
            "// the error site of a failed @ringcore.func call (0: none)",
            "var<private> rc_fail: u32;",
            "",
        ]
        for h in self.helpers.values():
            out.append(h)
            out.append("")
        for f in parts_funcs:
            out.append(f)
            out.append("")
        out.append(kernel)
        out.append("")
        if kir.serial:
            out += [
                "@compute @workgroup_size(1)",
                f"fn {ENTRY_POINT}() {{",
                "    for (var i = 0u; i < rc_params.n; i = i + 1u) {",
                "        rc_fail = 0u;",
                f"        rc_status[i] = {self.kname}(i);",
                "    }",
                "}",
            ]
        else:
            out += [
                f"@compute @workgroup_size({WORKGROUP_SIZE})",
                f"fn {ENTRY_POINT}(@builtin(global_invocation_id) gid: vec3<u32>, "
                "@builtin(num_workgroups) nwg: vec3<u32>) {",
                f"    let lane = gid.x + gid.y * nwg.x * {WORKGROUP_SIZE}u;",
                "    if (lane >= rc_params.n) { return; }",
                "    rc_fail = 0u;",
                f"    rc_status[lane] = {self.kname}(lane);",
                "}",
            ]
        return "\n".join(out) + "\n"

    def state_struct(self) -> str:
        lines = ["struct RcState {"]
        if not self.segs:
            lines.append("    unused: u32,")
        for seg in self.segs:
            if seg.atomic is None:
                lines.append(f"    {seg.member}: array<u32, {seg.words}>,")
            else:
                at = "i32" if seg.atomic.kind == "i" else "u32"
                lines.append(f"    {seg.member}: array<atomic<{at}>, {seg.words}>,")
        lines.append("}")
        return "\n".join(lines)


_U32 = ScalarType("u32", "<u4", "uint32_t", "u32")
#: tanh's Taylor coefficients of x**3, x**5, ... x**23 (|x| < 0.55 leaves a relative error below 2**-32).
_TANH_COEFS = ["-0.3333333333333333", "0.13333333333333333", "-0.05396825396825397", "0.021869488536155203", "-0.008863235529902197", "0.003592128036572481", "-0.0014558343870513183", "0.000590027440945586", "-0.00023912911424355248", "9.691537956929451e-05", "-3.927832388331683e-05"]


def _check_atomics(kir: KernelIR) -> None:
    for name in kir.atomics:
        t = kir.state[name]
        elem = t.elem if isinstance(t, ArrayType) else t
        if elem.bits != 32 or elem.kind == "b":
            pos = None
            for body in [kir.body]:
                for s in walk_stmts(body):
                    for e in stmt_exprs(s):
                        for x in walk_exprs(e):
                            if isinstance(x, Atomic) and x.ref.name == name and pos is None:
                                pos = x.pos or s.pos
            if elem.bits == 64:
                _no64(elem, f"ctx.atomic_* on {name!r}", pos)
            raise _Located("atomic", f"WGSL has atomics on 32-bit words only: ctx.state.{name} is {elem.name}",
                           "declare the field u32, i32 or f32", pos)


def emit(kir: KernelIR) -> str:
    """The WGSL module for ``kir`` (see the module docstring for its ABI).

    Raises KernelCompileError when the kernel computes with 64-bit values or
    uses atomics on fields narrower than 32 bits.
    """
    try:
        _check_64bit(kir)
        _check_atomics(kir)
        return _Emitter(kir).module()
    except _Located as err:
        raise _compile_error(kir, err) from None
