"""The kernel language's typed IR: what the frontend produces and every target consumes.

The frontend (``frontend.py``) does all the work that is the same for every
target: type checking, implicit-literal typing, casts, the lowering of
comparison chains, of short-circuit operators and conditional expressions whose
operands can fail or have effects, of ``msg``-typed locals into per-field
locals, of multi-dimensional indices into linear ones, of Python's negative
indices, and the bounds checks. A target therefore sees a small, explicit
language whose semantics are fixed here, once:

Types
    Every expression has a :class:`~ringcore.types.ScalarType` (``expr.type``).
    Arrays (message fields, state fields, local arrays) have an
    :class:`~ringcore.types.ArrayType`; they appear only behind a :class:`Ref`.
    ``DELIVERY`` is the type of ``ctx.send``'s result: a u32 holding one of the
    ``DELIVERY_CODES``.

Integer arithmetic
    ``add``, ``sub``, ``mul``, ``neg``: wrapping, in the operation's type (an
    ``u8`` sum wraps at 256: C targets must truncate after promoting).
    ``floordiv``: Python's floor division; ``x // 0 == 0``;
    ``MIN // -1 == MIN`` (wraps). ``mod``: Python's modulo (the sign of the
    divisor); ``x % 0 == 0``; ``MIN % -1 == 0``. These are numpy's rules.
    ``lshift``: ``0`` when the shift count is negative or >= the width in bits,
    else the wrapped shift. ``rshift``: arithmetic for signed types, logical for
    unsigned; a count that is negative or >= the width gives ``-1`` for a
    negative signed value and ``0`` otherwise. ``and_``/``or_``/``xor``/``invert``:
    two's complement bitwise. On ``bool`` operands ``and_``/``or_``/``xor`` are
    logical.
Float arithmetic
    IEEE 754 in the operation's type (f32 stays f32; no fast-math, no
    contraction into fma). ``div`` is true division (floats only: the frontend
    rejects ``/`` on integers). ``floordiv`` and ``mod`` follow numpy's
    ``npy_divmod`` exactly: ``mod = fmod(a, b)``; if ``b == 0``:
    ``floordiv = a / b``, ``mod`` stays ``fmod``'s NaN; otherwise
    ``div = (a - mod) / b``, and when ``mod != 0`` and its sign differs from
    ``b``'s, ``mod += b`` and ``div -= 1``; when ``mod == 0`` it becomes
    ``copysign(0, b)``; ``floordiv = floor(div)``, plus one when
    ``div - floor(div) > 0.5``; when ``div == 0`` it is ``copysign(0, a / b)``.
    ``pow``: floats only (numpy's ``power``).
Comparisons
    Operands have the same type; the result is ``bool``. NaN compares unequal to
    everything (``ne`` is true).
Casts (:class:`Cast`)
    int -> int: wrap (two's complement truncation or sign/zero extension).
    float -> int: truncate toward zero to a 64-bit signed value, then wrap to the
    target type (the frontend has already checked the value is finite and
    ``|x| < 2**63``; the lane fails otherwise). int -> float and
    float -> float: round to nearest even. x -> bool: ``x != 0``.
    bool -> number: 0 or 1.
Builtins (:class:`Builtin`)
    ``abs`` (wrapping for signed ints: ``abs(MIN) == MIN``; identity for
    unsigned), ``min``/``max`` of two values with Python's rule: ``min(a, b)`` is
    ``b if b < a else a`` and ``max(a, b)`` is ``b if b > a else a`` (so a NaN
    first argument wins), ``clamp(x, lo, hi) == min(max(x, lo), hi)``; float only:
    ``sqrt exp log sin cos tanh floor ceil pow fma isnan`` (``isnan`` gives
    ``bool``; ``fma(a, b, c)`` is ``a * b + c`` with one rounding: for f32 the
    reference computes it exactly in f64 and rounds once).

Control flow
    Structured only: :class:`If`, :class:`While`, :class:`For`, :class:`Break`,
    :class:`Continue`, :class:`Return`, :class:`Fail`. Conditions are ``bool``
    expressions without effects and without failure points (the frontend hoists
    any into statements). :class:`For` evaluates ``start``, ``stop`` and ``step``
    once, before the loop; ``step`` is never zero (checked by the frontend, which
    inserts a :class:`Fail` for a runtime zero); it runs
    ``max(0, ceil((stop - start) / step))`` iterations computed without
    overflow, and assigns ``var = start + k * step`` (exact) at the start of
    iteration ``k``. After the loop, ``var`` keeps the value of the last
    iteration (unchanged if there was none), as in Python.

Failure
    :class:`Fail` ends the current message's handler with the error site's
    number (``KernelIR.errors[site - 1]``); its reply is not sent and its state
    writes so far stay (as in Python). Index errors, a runtime ``range`` step of
    zero, an impossible float -> int cast and ``raise`` all become ``Fail``.

Kernel state
    A kernel whose ``serial`` flag is set (it writes state with plain
    assignments, or reads a field it also updates atomically) must process the
    messages of a batch one after the other, in order. Otherwise messages may
    run in parallel; :class:`Atomic` updates are then the only state writes.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any, Union

from ..k2k import DeliveryResult
from ..message import HEADER_DTYPE, MessageSpec
from ..types import ArrayType, RingType, ScalarType

__all__ = [
    "Pos", "DELIVERY", "DELIVERY_CODES",
    "Expr", "Const", "Load", "Unary", "Binary", "Compare", "Logical", "Select", "Cast", "Builtin",
    "Atomic", "Send", "Publish", "CtxValue", "CallFunc", "Ref", "MsgValue",
    "Stmt", "Assign", "ArrayCopy", "ArrayZero", "If", "While", "For", "Break", "Continue", "Return",
    "Fail", "Eval", "Tick",
    "ErrorSite", "Function", "KernelIR", "walk_stmts", "walk_exprs", "stmt_exprs",
    "UNARY_OPS", "BINARY_OPS", "COMPARE_OPS", "BUILTINS", "ATOMIC_OPS", "CTX_VALUES",
]

#: The type of ``ctx.send``'s result: a u32 holding one of DELIVERY_CODES.
DELIVERY = ScalarType("delivery", "<u4", "uint32_t", "u32")

#: DeliveryResult -> the u32 code a compiled kernel sees (the same numbers on every target).
DELIVERY_CODES: dict[DeliveryResult, int] = {
    DeliveryResult.DELIVERED: 1,
    DeliveryResult.QUEUE_FULL: 2,
    DeliveryResult.NOT_FOUND: 3,
    DeliveryResult.MAX_HOPS_EXCEEDED: 4,
    DeliveryResult.WRONG_TYPE: 5,
    DeliveryResult.TERMINATED: 6,
}

UNARY_OPS = frozenset({"neg", "invert", "not"})
BINARY_OPS = frozenset({"add", "sub", "mul", "div", "floordiv", "mod", "pow",
                        "lshift", "rshift", "and_", "or_", "xor"})
COMPARE_OPS = frozenset({"eq", "ne", "lt", "le", "gt", "ge"})
#: Builtin name -> number of arguments.
BUILTINS = {
    "abs": 1, "min": 2, "max": 2, "clamp": 3,
    "sqrt": 1, "exp": 1, "log": 1, "sin": 1, "cos": 1, "tanh": 1, "floor": 1, "ceil": 1,
    "pow": 2, "fma": 3, "isnan": 1,
}
#: Atomic read-modify-write operations on kernel state; each returns the old value.
ATOMIC_OPS = frozenset({"add", "sub", "min", "max", "exchange", "cas"})
#: ``ctx`` values a kernel can read, and their types' names. ``header.<field>`` reads a field of the
#: current message's 64-byte header (ringcore.message.HEADER_DTYPE; e.g. ``header.hops``, a u8).
CTX_VALUES = {"thread_id": "u32", "kernel_number": "u32",
              **{f"header.{name}": {1: "u8", 4: "u32", 8: "u64"}[HEADER_DTYPE.fields[name][0].itemsize]
                 for name in HEADER_DTYPE.names}}


@dataclasses.dataclass(frozen=True)
class Pos:
    """A position in the user's source file: 1-based line, 0-based column."""

    line: int
    col: int


# -- expressions ---------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Expr:
    type: ScalarType
    pos: Pos | None = dataclasses.field(default=None, kw_only=True)


@dataclasses.dataclass(eq=False)
class Const(Expr):
    """A constant; ``value`` is a Python int, float or bool already in the type's range."""

    value: int | float | bool


@dataclasses.dataclass(eq=False)
class Ref:
    """A storage location.

    :param space: ``"local"`` (a local variable or local array of the current
        function), ``"msg"`` (a field of the input message; read-only) or
        ``"state"`` (a field of the kernel's state).
    :param name: the local's name or the field's name.
    :param index: for an element of an array, its linear (row-major) index, an
        integer expression already checked to be in range; None for a scalar or
        for a whole array (whole arrays appear only in ArrayCopy and MsgValue).
    :param type: the scalar type of the element, or the ArrayType of a whole array.
    """

    space: str
    name: str
    index: Expr | None
    type: RingType

    @property
    def is_whole_array(self) -> bool:
        return isinstance(self.type, ArrayType)


@dataclasses.dataclass(eq=False)
class Load(Expr):
    """Read a scalar (or one array element) from ``ref``."""

    ref: Ref


@dataclasses.dataclass(eq=False)
class Unary(Expr):
    """``neg`` (wrapping for ints), ``invert`` (ints only), ``not`` (operand bool)."""

    op: str
    operand: Expr


@dataclasses.dataclass(eq=False)
class Binary(Expr):
    """``left op right``; both operands have ``type`` (see the module docstring for semantics)."""

    op: str
    left: Expr
    right: Expr


@dataclasses.dataclass(eq=False)
class Compare(Expr):
    """``left op right`` -> bool; both operands have the same type."""

    op: str
    left: Expr
    right: Expr


@dataclasses.dataclass(eq=False)
class Logical(Expr):
    """``left and right`` / ``left or right`` on bools, short-circuit (``right`` is pure and cannot fail)."""

    op: str  # "and" | "or"
    left: Expr
    right: Expr


@dataclasses.dataclass(eq=False)
class Select(Expr):
    """``a if cond else b``; ``a`` and ``b`` are pure and cannot fail, so both may be evaluated."""

    cond: Expr
    a: Expr
    b: Expr


@dataclasses.dataclass(eq=False)
class Cast(Expr):
    """Convert ``operand`` to ``type`` (see the module docstring)."""

    operand: Expr


@dataclasses.dataclass(eq=False)
class Builtin(Expr):
    """A math builtin (``BUILTINS``); arguments have the same type (``type``, except ``isnan``: bool)."""

    name: str
    args: list[Expr]


@dataclasses.dataclass(eq=False)
class Atomic(Expr):
    """An atomic read-modify-write of a state field (or element); returns the old value.

    ``cas`` stores ``value`` when the old value equals ``expected``.
    """

    op: str
    ref: Ref
    value: Expr
    expected: Expr | None = None


@dataclasses.dataclass(eq=False)
class MsgValue:
    """A whole message: ``fields`` maps every field of ``spec`` to a scalar Expr or an array Ref
    (None: all zeros)."""

    spec: MessageSpec
    fields: dict[str, Expr | Ref | None]


@dataclasses.dataclass(eq=False)
class Send(Expr):
    """``ctx.send(target, msg)``: deliver ``msg`` to another kernel; type DELIVERY.

    ``target`` is a u32 expression (a kernel number) or a str (a kernel name,
    resolved by the runtime: the same for every lane).
    """

    target: Expr | str
    msg: MsgValue


@dataclasses.dataclass(eq=False)
class Publish(Expr):
    """``ctx.publish(topic, msg)``: publish ``msg`` on ``topic`` (a str, the same for every lane);
    type u32: how many subscribers received it."""

    topic: str
    msg: MsgValue


@dataclasses.dataclass(eq=False)
class CtxValue(Expr):
    """``ctx.thread_id`` (the message's index in its batch), ``ctx.kernel_number``, or
    ``header.<field>``: a field of the current message's header (see CTX_VALUES)."""

    name: str


@dataclasses.dataclass(eq=False)
class CallFunc(Expr):
    """A call of a ``@ringcore.func`` function (``KernelIR.funcs[name]``)."""

    name: str
    args: list[Expr]


# -- statements ----------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class Stmt:
    pos: Pos | None = dataclasses.field(default=None, kw_only=True)


@dataclasses.dataclass(eq=False)
class Assign(Stmt):
    """Store ``value`` (of the ref's scalar type) into a scalar ref or array element."""

    ref: Ref
    value: Expr


@dataclasses.dataclass(eq=False)
class ArrayCopy(Stmt):
    """Copy a whole array into another of the same ArrayType."""

    dst: Ref
    src: Ref


@dataclasses.dataclass(eq=False)
class ArrayZero(Stmt):
    """Set every element of a local array to zero (``f32[8]()``, ``Out()``)."""

    ref: Ref


@dataclasses.dataclass(eq=False)
class If(Stmt):
    cond: Expr
    then: list[Stmt]
    orelse: list[Stmt]


@dataclasses.dataclass(eq=False)
class While(Stmt):
    cond: Expr
    body: list[Stmt]


@dataclasses.dataclass(eq=False)
class For(Stmt):
    """``for var in range(start, stop, step)`` (see the module docstring)."""

    var: str
    start: Expr
    stop: Expr
    step: Expr
    body: list[Stmt]


@dataclasses.dataclass(eq=False)
class Break(Stmt):
    pass


@dataclasses.dataclass(eq=False)
class Continue(Stmt):
    pass


@dataclasses.dataclass(eq=False)
class Return(Stmt):
    """End the handler (or function). In a kernel ``value`` is the reply (a MsgValue) or None
    (no reply); in a function it is the result Expr (None for a function returning nothing)."""

    value: MsgValue | Expr | None


@dataclasses.dataclass(eq=False)
class Fail(Stmt):
    """End the handler with error site ``site`` (1-based index into ``KernelIR.errors``)."""

    site: int


@dataclasses.dataclass(eq=False)
class Eval(Stmt):
    """Evaluate an expression for its effect (an atomic, a send, a call) and discard the value."""

    expr: Expr


@dataclasses.dataclass(eq=False)
class Tick(Stmt):
    """``ctx.now()``: tick the kernel's HLC; store its physical time (u64) and logical counter
    (u32) into the local refs given (either may be None when unused)."""

    physical: Ref | None
    logical: Ref | None


# -- containers ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ErrorSite:
    """Why a lane failed, for the error reported to the caller.

    :param kind: the Python exception it corresponds to (``"IndexError"``, ``"ValueError"``...).
    :param text: the message, e.g. ``"index 9 is out of range for msg.a (16 elements)"`` minus
        the runtime value.
    """

    kind: str
    text: str
    pos: Pos | None

    def describe(self, filename: str) -> str:
        where = f" (at {filename}:{self.pos.line})" if self.pos is not None else ""
        return f"{self.kind}: {self.text}{where}"


@dataclasses.dataclass(eq=False)
class Function:
    """A ``@ringcore.func`` function, specialised for its argument types.

    ``locals`` holds every local (parameters included) by name with its type;
    a function cannot touch ``ctx``, the message or the state, but can fail
    (``Fail``) and call other functions (never recursively).
    """

    name: str
    params: list[tuple[str, ScalarType]]
    ret: ScalarType | None
    locals: dict[str, RingType]
    body: list[Stmt]
    pos: Pos | None = None


@dataclasses.dataclass(eq=False)
class KernelIR:
    """A compiled kernel handler, ready for a target.

    :param name: the kernel's id (a valid identifier is derived by targets).
    :param input: the input message's spec; ``output`` the reply's (None: the kernel never replies).
    :param state: field name -> type of the kernel state (empty when it has none).
    :param locals: every local of the handler (scalars and arrays) with its type.
    :param body: the handler.
    :param funcs: the functions it calls (directly or not), by their unique names.
    :param errors: error sites, numbered from 1 (``Fail.site``).
    :param send_targets: kernel names ``ctx.send`` uses, in first-use order.
    :param serial: the messages of a batch must be processed one after another (see the module doc).
    :param atomics: state fields updated atomically.
    :param uses_64bit: (construct, Pos) of the first 64-bit use, for targets without 64-bit types.
    :param filename: the source file; ``first_line`` the line of the ``def``.
    """

    name: str
    input: MessageSpec
    output: MessageSpec | None
    state: dict[str, RingType]
    locals: dict[str, RingType]
    body: list[Stmt]
    funcs: dict[str, Function]
    errors: list[ErrorSite]
    send_targets: list[str]
    serial: bool
    atomics: frozenset[str]
    uses_64bit: tuple[str, Pos | None] | None
    uses_now: bool
    filename: str
    first_line: int
    source: str
    state_dtype: Any = None

    def fingerprint(self) -> str:
        """A hash of the IR itself (and the layouts it reads and writes): the compile cache's key.

        Computed once per KernelIR. Two kernels that lower to the same IR share
        their generated code; a change of a module constant the kernel uses
        changes the IR, so it never reuses stale code.
        """
        fp = self.__dict__.get("_fingerprint")
        if fp is None:
            h = hashlib.sha256()
            parts = [self.name, self.filename, str(self.first_line), str(self.serial), repr(sorted(self.atomics)),
                     str(self.input.type_id), str(self.input.dtype.descr),
                     "" if self.output is None else f"{self.output.type_id}{self.output.dtype.descr}",
                     repr(sorted((k, repr(v)) for k, v in self.state.items())),
                     repr(sorted((k, repr(v)) for k, v in self.locals.items())),
                     repr(self.send_targets), repr([(e.kind, e.text, e.pos) for e in self.errors]),
                     format_stmts(self.body)]
            for name, f in sorted(self.funcs.items()):
                parts.append(f"{name}{f.params}{f.ret}{sorted((k, repr(v)) for k, v in f.locals.items())}")
                parts.append(format_stmts(f.body))
            for part in parts:
                h.update(part.encode())
                h.update(b"\0")
            fp = h.hexdigest()
            self.__dict__["_fingerprint"] = fp
        return fp


Node = Union[Expr, Stmt]


def walk_stmts(body: list[Stmt]):
    """Every statement of ``body``, nested ones included (pre-order)."""
    for s in body:
        yield s
        if isinstance(s, If):
            yield from walk_stmts(s.then)
            yield from walk_stmts(s.orelse)
        elif isinstance(s, (While, For)):
            yield from walk_stmts(s.body)


def _children(e: Any):
    if isinstance(e, Load):
        if e.ref.index is not None:
            yield e.ref.index
    elif isinstance(e, Unary):
        yield e.operand
    elif isinstance(e, (Binary, Compare, Logical)):
        yield e.left
        yield e.right
    elif isinstance(e, Select):
        yield from (e.cond, e.a, e.b)
    elif isinstance(e, Cast):
        yield e.operand
    elif isinstance(e, (Builtin, CallFunc)):
        yield from e.args
    elif isinstance(e, Atomic):
        if e.ref.index is not None:
            yield e.ref.index
        yield e.value
        if e.expected is not None:
            yield e.expected
    elif isinstance(e, (Send, Publish)):
        if isinstance(e, Send) and isinstance(e.target, Expr):
            yield e.target
        for v in e.msg.fields.values():
            if isinstance(v, Expr):
                yield v


def walk_exprs(e: Expr):
    """``e`` and every expression inside it (pre-order)."""
    yield e
    for c in _children(e):
        yield from walk_exprs(c)


def stmt_exprs(s: Stmt):
    """The expressions a statement evaluates directly (not those of nested statements)."""
    if isinstance(s, Assign):
        if s.ref.index is not None:
            yield s.ref.index
        yield s.value
    elif isinstance(s, (If, While)):
        yield s.cond
    elif isinstance(s, For):
        yield from (s.start, s.stop, s.step)
    elif isinstance(s, Return):
        if isinstance(s.value, Expr):
            yield s.value
        elif isinstance(s.value, MsgValue):
            for v in s.value.fields.values():
                if isinstance(v, Expr):
                    yield v
    elif isinstance(s, Eval):
        yield s.expr


def format_expr(e: Any) -> str:
    """A readable one-line form of an expression (for debugging and error messages)."""
    if isinstance(e, Const):
        return f"{e.value!r}:{e.type.name}"
    if isinstance(e, Load):
        return format_ref(e.ref)
    if isinstance(e, Unary):
        return f"({e.op} {format_expr(e.operand)})"
    if isinstance(e, (Binary, Compare, Logical)):
        return f"({format_expr(e.left)} {e.op}:{e.type.name} {format_expr(e.right)})"
    if isinstance(e, Select):
        return f"({format_expr(e.a)} if {format_expr(e.cond)} else {format_expr(e.b)})"
    if isinstance(e, Cast):
        return f"{e.type.name}({format_expr(e.operand)})"
    if isinstance(e, (Builtin, CallFunc)):
        return f"{e.name}({', '.join(format_expr(a) for a in e.args)})"
    if isinstance(e, Atomic):
        extra = f", expected={format_expr(e.expected)}" if e.expected is not None else ""
        return f"atomic_{e.op}({format_ref(e.ref)}, {format_expr(e.value)}{extra})"
    if isinstance(e, Send):
        t = repr(e.target) if isinstance(e.target, str) else format_expr(e.target)
        return f"send({t}, {format_msg(e.msg)})"
    if isinstance(e, Publish):
        return f"publish({e.topic!r}, {format_msg(e.msg)})"
    if isinstance(e, CtxValue):
        return f"ctx.{e.name}"
    if isinstance(e, Ref):
        return format_ref(e)
    return repr(e)


def format_ref(r: Ref) -> str:
    idx = f"[{format_expr(r.index)}]" if r.index is not None else ""
    return f"{r.space}.{r.name}{idx}"


def format_msg(m: MsgValue) -> str:
    parts = ", ".join(f"{k}={'0' if v is None else format_expr(v)}" for k, v in m.fields.items())
    return f"{m.spec.name}({parts})"


def format_stmts(body: list[Stmt], indent: int = 0) -> str:
    """A readable listing of statements (``ringcore.lang.ir.format_stmts(kir.body)``)."""
    pad = "  " * indent
    lines: list[str] = []
    for s in body:
        if isinstance(s, Assign):
            lines.append(f"{pad}{format_ref(s.ref)} = {format_expr(s.value)}")
        elif isinstance(s, ArrayCopy):
            lines.append(f"{pad}{format_ref(s.dst)} = copy {format_ref(s.src)}")
        elif isinstance(s, ArrayZero):
            lines.append(f"{pad}{format_ref(s.ref)} = zeros")
        elif isinstance(s, If):
            lines.append(f"{pad}if {format_expr(s.cond)}:")
            lines.append(format_stmts(s.then, indent + 1) or f"{pad}  pass")
            if s.orelse:
                lines.append(f"{pad}else:")
                lines.append(format_stmts(s.orelse, indent + 1))
        elif isinstance(s, While):
            lines.append(f"{pad}while {format_expr(s.cond)}:")
            lines.append(format_stmts(s.body, indent + 1) or f"{pad}  pass")
        elif isinstance(s, For):
            lines.append(f"{pad}for {s.var} in range({format_expr(s.start)}, {format_expr(s.stop)}, "
                         f"{format_expr(s.step)}):")
            lines.append(format_stmts(s.body, indent + 1) or f"{pad}  pass")
        elif isinstance(s, Return):
            v = s.value
            text = "" if v is None else format_msg(v) if isinstance(v, MsgValue) else format_expr(v)
            lines.append(f"{pad}return {text}".rstrip())
        elif isinstance(s, Fail):
            lines.append(f"{pad}fail {s.site}")
        elif isinstance(s, Eval):
            lines.append(f"{pad}{format_expr(s.expr)}")
        elif isinstance(s, Tick):
            lines.append(f"{pad}{format_ref(s.physical) if s.physical else '_'}, "
                         f"{format_ref(s.logical) if s.logical else '_'} = ctx.now()")
        else:
            lines.append(f"{pad}{type(s).__name__.lower()}")
    return "\n".join(lines)
