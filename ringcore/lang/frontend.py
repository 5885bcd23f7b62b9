"""The kernel language's frontend: a handler's Python source -> typed IR, with every check.

Typing follows numpy 2's rules for scalars (NEP 50), because the reference
semantics is the Python function run on numpy scalars:

- message fields, state fields, casts (``ringcore.f32(x)``) and the values
  derived from them are *strong*: they have a fixed type;
- Python literals, module constants, ``range`` loop variables and locals that
  only ever hold such values are *weak*: they take the type of the strong
  operand they meet (a float literal next to an f32 is an f32), and default to
  i32 / f32 / bool on the targets;
- anything numpy would silently widen to 64 bits (i32 + u32, i32 + f32,
  int / int) is a compile error that asks for an explicit cast.

Everything that is the same on every target happens here: casts are made
explicit, comparison chains, short-circuit operators and conditional
expressions whose operands can fail or have effects become statements,
message-typed locals become one local per field, indices are made linear,
negative indices are normalised and bounds are checked (a lane that fails gets
an error site), effects (atomics, sends, calls) are hoisted into temporaries in
Python's evaluation order.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import linecache
import math
import textwrap
import types as _pytypes
from typing import Any

import numpy as np

from .. import types as rt
from ..errors import KernelCompileError, TypeDefinitionError
from ..k2k import DeliveryResult
from ..message import HEADER_DTYPE, MessageSpec, is_message_type, message_spec
from ..types import ArrayType, ScalarType, resolve_type, struct_dtype
from . import builtins as lb
from .ir import (
    ATOMIC_OPS,
    DELIVERY,
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
    ErrorSite,
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
    walk_exprs,
    walk_stmts,
)

__all__ = ["lower_kernel"]

I32, U32, I64, U64, F32, F64, BOOL = rt.i32, rt.u32, rt.i64, rt.u64, rt.f32, rt.f64, rt.bool_

_MATH = {lb.sqrt: "sqrt", lb.exp: "exp", lb.log: "log", lb.sin: "sin", lb.cos: "cos", lb.tanh: "tanh",
         lb.floor: "floor", lb.ceil: "ceil", lb.pow: "pow", lb.fma: "fma", lb.clamp: "clamp", lb.isnan: "isnan"}
_PY_BUILTINS = {abs: "abs", min: "min", max: "max"}
_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.FloorDiv: "floordiv",
           ast.Mod: "mod", ast.Pow: "pow", ast.LShift: "lshift", ast.RShift: "rshift", ast.BitAnd: "and_",
           ast.BitOr: "or_", ast.BitXor: "xor"}
_PYSYM = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%", "pow": "**",
          "lshift": "<<", "rshift": ">>", "and_": "&", "or_": "|", "xor": "^"}
_CMPOPS = {ast.Eq: "eq", ast.NotEq: "ne", ast.Lt: "lt", ast.LtE: "le", ast.Gt: "gt", ast.GtE: "ge"}
_ATOMIC_METHODS = {f"atomic_{op}": op for op in ATOMIC_OPS}
_UNSUPPORTED_STMT = {
    ast.Try: ("try", "kernels cannot catch exceptions; check the condition with if, or let the message fail"),
    ast.With: ("with", "kernels have no context managers; remove the with block"),
    ast.FunctionDef: ("a nested function", "define it at module level with @ringcore.func"),
    ast.AsyncFunctionDef: ("an async function", "kernels are plain functions"),
    ast.ClassDef: ("a class", "declare message and state classes at module level"),
    ast.Global: ("global", "kernels cannot rebind module variables; keep the value in kernel state"),
    ast.Nonlocal: ("nonlocal (a closure over mutable state)", "keep the value in kernel state"),
    ast.Delete: ("del", "remove the del statement"),
    ast.Import: ("import", "import at module level"),
    ast.ImportFrom: ("import", "import at module level"),
    ast.AsyncFor: ("async for", "use for i in range(...)"),
    ast.AsyncWith: ("async with", "remove it"),
    ast.Match: ("match", "use if/elif/else"),
}
if hasattr(ast, "TryStar"):
    _UNSUPPORTED_STMT[ast.TryStar] = _UNSUPPORTED_STMT[ast.Try]
_UNSUPPORTED_EXPR = {
    ast.List: ("a list", "use a fixed-size local array, e.g. xs = ringcore.i32[4]()"),
    ast.ListComp: ("a list comprehension", "use a for loop over range(...) and a local array"),
    ast.Dict: ("a dict", "use message or state fields, or a local array"),
    ast.DictComp: ("a dict comprehension", "use a for loop and a local array"),
    ast.Set: ("a set", "use a local array"),
    ast.SetComp: ("a set comprehension", "use a for loop and a local array"),
    ast.GeneratorExp: ("a generator expression", "use a for loop over range(...)"),
    ast.Lambda: ("a lambda", "define a @ringcore.func function at module level"),
    ast.Yield: ("yield (a generator)", "return a reply; a kernel handles one message per call"),
    ast.YieldFrom: ("yield from (a generator)", "return a reply"),
    ast.Await: ("await", "kernels are synchronous"),
    ast.JoinedStr: ("an f-string", "kernels have no strings; return numbers in the reply"),
    ast.Tuple: ("a tuple", "use separate variables or a local array"),
    ast.Starred: ("*unpacking", "pass arguments one by one"),
    ast.NamedExpr: ("the := operator", "assign in a separate statement"),
    ast.Slice: ("a slice", "index one element at a time in a for loop"),
}


@dataclasses.dataclass
class _Val:
    """A scalar value during lowering: its IR expression, whether it is weak, and its constant value."""

    e: Expr
    weak: bool = False
    const: Any = None  # a Python int/float/bool when known at compile time

    @property
    def type(self) -> ScalarType:
        return self.e.type


@dataclasses.dataclass
class _Arr:
    """An array (or a partly indexed multi-dimensional one): where it lives and the rest of its shape."""

    space: str
    name: str
    elem: ScalarType
    shape: tuple[int, ...]
    offset: Expr | None  # linear offset of the sub-array; None means 0
    label: str  # how the user wrote it, for messages
    full: ArrayType


@dataclasses.dataclass
class _MsgRef:
    """A message value: the input message, a message-typed local, or a constructor's fields."""

    spec: MessageSpec
    kind: str  # "input" | "local" | "ctor"
    name: str = ""
    fields: dict[str, Any] | None = None


@dataclasses.dataclass
class _NowRef:
    physical: str
    logical: str


class _Static:
    """A compile-time Python object (a module, a type, a function, a class...)."""

    def __init__(self, obj: Any) -> None:
        self.obj = obj


class _CtxObj:
    pass


class _StateObj:
    pass


class _HeaderObj:
    pass


def _int_range(t: ScalarType) -> tuple[int, int]:
    if t.kind == "b":
        return 0, 1
    if t.kind == "u":
        return 0, (1 << t.bits) - 1
    return -(1 << (t.bits - 1)), (1 << (t.bits - 1)) - 1


def _fits(value: Any, t: ScalarType) -> bool:
    if t.is_float:
        return True
    if isinstance(value, float):
        return False
    lo, hi = _int_range(t)
    return lo <= int(value) <= hi


def _widens(src: ScalarType, dst: ScalarType) -> bool:
    """Whether every value of ``src`` is exactly representable in ``dst`` (a safe implicit store)."""
    if src is dst or src == dst:
        return True
    if src is DELIVERY or dst is DELIVERY or src.kind == "b" or dst.kind == "b":
        return False
    if dst.is_float:
        if src.is_float:
            return dst.bits >= src.bits
        return src.bits < {32: 24, 64: 53}[dst.bits]
    if src.is_float:
        return False
    lo, hi = _int_range(src)
    dlo, dhi = _int_range(dst)
    return dlo <= lo and hi <= dhi


def _promote(a: ScalarType, b: ScalarType) -> ScalarType | None:
    """numpy's result type of two strong operands, or None where it would silently widen to 64 bits."""
    if a is b:
        return a
    if a.kind == "b" or b.kind == "b" or a is DELIVERY or b is DELIVERY:
        return None
    if a.is_float and b.is_float:
        return a if a.bits >= b.bits else b
    if a.is_float or b.is_float:
        f, i = (a, b) if a.is_float else (b, a)
        return f if _widens(i, f) else None
    if a.kind == b.kind:
        return a if a.bits >= b.bits else b
    s, u = (a, b) if a.kind == "i" else (b, a)
    return s if s.bits > u.bits else None


class _Unit:
    """What one kernel's compilation shares across the functions it lowers."""

    def __init__(self, filename: str) -> None:
        self.filename = filename
        self.errors: list[ErrorSite] = []
        self.funcs: dict[str, Function] = {}
        self.func_keys: dict[Any, str] = {}
        self.stack: list[Any] = []
        self.send_targets: list[str] = []
        self.atomics: set[str] = set()
        self.plain_state_writes = False
        self.state_reads: set[str] = set()
        self.uses_64bit: tuple[str, Pos | None] | None = None
        self.uses_now = False
        self.func_sources: list[str] = []

    def site(self, kind: str, text: str, pos: Pos | None) -> int:
        es = ErrorSite(kind, text, pos)
        for i, e in enumerate(self.errors):
            if e == es:
                return i + 1
        self.errors.append(es)
        return len(self.errors)


class _Source:
    """A function's source, parsed, with the offsets that map AST positions to the file."""

    def __init__(self, func: Any, what: str) -> None:
        try:
            lines, first, self.filename = _source_lines(func)
        except (OSError, TypeError, IndexError) as exc:
            raise KernelCompileError(
                f"cannot read the source of {what} {func.__qualname__!r} ({exc}); kernels must be defined "
                "in a .py file (not typed at an interactive prompt or built with exec)",
                filename=func.__code__.co_filename, construct="source") from None
        raw = "".join(lines)
        self.text = textwrap.dedent(raw)
        self.indent = len(lines[0]) - len(lines[0].lstrip()) if lines else 0
        self.first = first if first > 0 else 1
        self.lines = self.text.splitlines()
        tree = ast.parse(self.text)
        self.fdef = next(n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)))
        self.raw_lines = raw.splitlines()

    def pos(self, node: ast.AST) -> Pos:
        return Pos(getattr(node, "lineno", 1) + self.first - 1, getattr(node, "col_offset", 0) + self.indent)

    def error(self, node: ast.AST | None, construct: str, what: str, hint: str = "") -> KernelCompileError:
        if node is None:
            node = self.fdef
        p = self.pos(node)
        rel = getattr(node, "lineno", 1) - 1
        src = self.raw_lines[rel] if 0 <= rel < len(self.raw_lines) else ""
        caret = " " * p.col + "^"
        text = f"{self.filename}:{p.line}:{p.col + 1}: {what}\n    {src}\n    {caret}"
        if hint:
            text += f"\n{hint}"
        return KernelCompileError(text, filename=self.filename, line=p.line, col=p.col + 1, construct=construct)


def _source_lines(func: Any) -> tuple[list[str], int, str]:
    """A function's source lines, its first line and its file.

    Read straight from the code object and linecache: ``inspect.getsourcelines``
    first maps every loaded module to its file, which costs tens of milliseconds.
    """
    code = func.__code__
    filename = code.co_filename
    lines = linecache.getlines(filename, func.__globals__)
    first = code.co_firstlineno
    if not lines or first > len(lines):
        found, first = inspect.getsourcelines(func)
        return found, first, inspect.getsourcefile(func) or filename
    return inspect.getblock(lines[first - 1:]), first, filename


class _Lowerer:
    """Lowers one function (the kernel handler or a @ringcore.func) to IR statements."""

    def __init__(self, unit: _Unit, src: _Source, func: Any, *, kernel: Any = None,
                 params: dict[str, ScalarType] | None = None, ret: ScalarType | None = None,
                 known: dict[str, Any] | None = None) -> None:
        self.unit = unit
        self.src = src
        self.func = func
        self.kernel = kernel
        self.params = params or {}
        self.ret = ret
        self.known: dict[str, Any] = dict(known or {})  # local -> ScalarType | ("weak", kind) | ArrayType | ...
        self.candidates: dict[str, list[tuple[ScalarType, bool, ast.AST]]] = {}
        self.locals: dict[str, Any] = {}
        self.msg_locals: dict[str, MessageSpec] = {}
        self.now_locals: dict[str, _NowRef] = {}
        self.ranges: dict[str, tuple[int, int]] = {}
        self.assigned_in: list[set[str]] = []
        self.tmp = 0
        self.loop_depth = 0
        self.globals = dict(func.__globals__)
        if func.__closure__:
            for name, cell in zip(func.__code__.co_freevars, func.__closure__):
                try:
                    self.globals[name] = cell.cell_contents
                except ValueError:
                    pass
            self.freevars = set(func.__code__.co_freevars)
        else:
            self.freevars = set()
        args = src.fdef.args
        names = [a.arg for a in args.posonlyargs + args.args]
        if kernel is not None:
            self.ctx_name, self.msg_name = names[0], names[1]
            self.in_spec = kernel.input_spec
            self.out_spec = kernel.output_spec
            self.state_fields = dict(kernel.state.fields) if kernel.state is not None else {}
        else:
            self.ctx_name = self.msg_name = None
            self.in_spec = self.out_spec = None
            self.state_fields = {}
            for n, t in self.params.items():
                self.locals[n] = t
        self.defined: set[str] = set(self.params)

    # -- errors and positions ------------------------------------------------------------------

    def err(self, node: ast.AST | None, construct: str, what: str, hint: str = "") -> KernelCompileError:
        return self.src.error(node, construct, what, hint)

    def pos(self, node: ast.AST) -> Pos:
        return self.src.pos(node)

    def note64(self, t: Any, construct: str, node: ast.AST) -> None:
        elem = t.elem if isinstance(t, ArrayType) else t
        if isinstance(elem, ScalarType) and elem.bits == 64 and self.unit.uses_64bit is None:
            self.unit.uses_64bit = (construct, self.pos(node))

    def fail(self, out: list[Stmt], kind: str, text: str, node: ast.AST) -> Fail:
        s = Fail(self.unit.site(kind, text, self.pos(node)), pos=self.pos(node))
        out.append(s)
        return s

    def new_tmp(self, t: ScalarType) -> str:
        self.tmp += 1
        name = f"_t{self.tmp}"
        self.locals[name] = t
        self.defined.add(name)
        return name

    def spill(self, v: _Val, out: list[Stmt], node: ast.AST) -> _Val:
        """Evaluate ``v`` into a temporary (so it is evaluated once, here)."""
        if isinstance(v.e, Const) or (isinstance(v.e, Load) and v.e.ref.space == "local" and v.e.ref.index is None
                                      and v.e.ref.name.startswith("_t")):
            return v
        name = self.new_tmp(v.type)
        out.append(Assign(Ref("local", name, None, v.type), v.e, pos=self.pos(node)))
        return _Val(Load(v.type, Ref("local", name, None, v.type), pos=v.e.pos), v.weak, v.const)

    # -- locals and their types ----------------------------------------------------------------

    def local_type(self, name: str) -> tuple[ScalarType, bool]:
        """The type a local is read with, and whether it is weak."""
        k = self.known.get(name)
        if isinstance(k, ScalarType):
            return k, False
        if isinstance(k, tuple) and k[0] == "weak":
            return {"int": I32, "float": F32, "bool": BOOL}[k[1]], True
        if isinstance(k, tuple) and k[0] == "range":
            return k[1], True
        if name in self.params:
            return self.params[name], False
        cands = self.candidates.get(name, [])
        strong = [c for c, weak, _ in cands if not weak]
        if strong:
            return strong[0], False
        if any(c.is_float for c, _, _ in cands):
            return F32, True
        if cands and all(c.kind == "b" for c, _, _ in cands):
            return BOOL, True
        t = self.locals.get(name)
        if isinstance(t, ScalarType) and not cands:
            return t, False  # a compiler temporary or a clock reading
        return I32, True

    def record(self, name: str, v: _Val, node: ast.AST) -> ScalarType:
        """Note a scalar assigned to local ``name``; returns the type to store it as."""
        if name in self.params:
            t = self.params[name]
            return t
        cands = self.candidates.setdefault(name, [])
        if not v.weak:
            for t, weak, _ in cands:
                if not weak and t is not v.type:
                    raise self.err(node, "local variable", f"local {name!r} holds values of different types "
                                   f"({t.name}, {v.type.name})", f"give it one type: cast the values, e.g. "
                                   f"{name} = ringcore.{t.name}(...)")
        cands.append((v.type, v.weak, node))
        k = self.known.get(name)
        if isinstance(k, ScalarType):
            return k
        if isinstance(k, tuple):
            return self.local_type(name)[0]
        return v.type

    def resolve_locals(self) -> dict[str, Any]:
        """Final local types from the candidates seen in this pass."""
        out: dict[str, Any] = {}
        for name, cands in self.candidates.items():
            if isinstance(self.known.get(name), tuple) and self.known[name][0] == "range":
                out[name] = self.known[name]
                strong = [c for c in cands if not c[1]]
                if strong:
                    t, _, node = strong[0]
                    raise self.err(node, "loop variable", f"{name!r} is a for-loop variable and cannot also hold "
                                   f"a {t.name} value", "use a different variable name")
                continue
            strong = {}
            for t, weak, node in cands:
                if not weak:
                    strong.setdefault(t, node)
            if len(strong) > 1:
                names = ", ".join(t.name for t in strong)
                node = list(strong.values())[1]
                raise self.err(node, "local variable", f"local {name!r} holds values of different types ({names})",
                               f"give it one type: cast the values, e.g. {name} = ringcore.{next(iter(strong)).name}(...)")
            if strong:
                t = next(iter(strong))
                for ct, weak, node in cands:
                    if weak and ct.is_float and not t.is_float:
                        raise self.err(node, "local variable", f"local {name!r} is {t.name} but is assigned a float",
                                       f"cast it: ringcore.{t.name}(x), or make {name} a float")
                out[name] = t
            else:
                kinds = {("float" if t.is_float else "bool" if t.kind == "b" else "int") for t, _, _ in cands}
                out[name] = ("weak", "float" if "float" in kinds else "int" if "int" in kinds else "bool")
        return out

    # -- entry points ----------------------------------------------------------------------------

    def lower_body(self) -> list[Stmt]:
        body = self.src.fdef.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]
        out: list[Stmt] = []
        self.block(body, out)
        return out

    # -- statements ----------------------------------------------------------------------------

    def block(self, stmts: list[ast.stmt], out: list[Stmt]) -> None:
        for s in stmts:
            self.stmt(s, out)

    def stmt(self, s: ast.stmt, out: list[Stmt]) -> None:
        p = self.pos(s)
        if isinstance(s, ast.Assign):
            if len(s.targets) != 1:
                for t in s.targets:
                    self.assign(t, s.value, out, s)
                return
            self.assign(s.targets[0], s.value, out, s)
        elif isinstance(s, ast.AnnAssign):
            if not isinstance(s.target, ast.Name):
                raise self.err(s, "annotated assignment", "only a local variable can be annotated")
            try:
                t = resolve_type(self.static_value(s.annotation), where=f"local {s.target.id!r}")
            except (TypeDefinitionError, KernelCompileError) as exc:
                raise self.err(s.annotation, "annotation", str(exc).splitlines()[0]) from None
            if not isinstance(t, ScalarType):
                raise self.err(s, "annotated assignment", "annotate scalars only; create arrays with f32[4]()")
            name = s.target.id
            self.check_name(name, s)
            if name in self.candidates or (self.known.get(name) not in (None, t)):
                raise self.err(s, "annotated assignment", f"local {name!r} is annotated after its first assignment")
            self.known[name] = t
            self.locals[name] = t
            if s.value is not None:
                self.assign(s.target, s.value, out, s)
        elif isinstance(s, ast.AugAssign):
            op = _BINOPS.get(type(s.op))
            if op is None:
                raise self.err(s, "operator", f"the {type(s.op).__name__} operator is not supported")
            self.augassign(s, op, out)
        elif isinstance(s, ast.If):
            self.if_stmt(s, out)
        elif isinstance(s, ast.For):
            self.for_stmt(s, out)
        elif isinstance(s, ast.While):
            self.while_stmt(s, out)
        elif isinstance(s, ast.Break):
            if not self.loop_depth:
                raise self.err(s, "break", "break outside a loop")
            out.append(Break(pos=p))
        elif isinstance(s, ast.Continue):
            if not self.loop_depth:
                raise self.err(s, "continue", "continue outside a loop")
            out.append(Continue(pos=p))
        elif isinstance(s, ast.Return):
            self.return_stmt(s, out)
        elif isinstance(s, ast.Raise):
            self.raise_stmt(s, out)
        elif isinstance(s, ast.Assert):
            cond = self.test(s.test, out)
            text = "assertion failed"
            if s.msg is not None:
                if not (isinstance(s.msg, ast.Constant) and isinstance(s.msg.value, str)):
                    raise self.err(s.msg, "assert message", "an assert message must be a string literal")
                text = s.msg.value
            body: list[Stmt] = []
            self.fail(body, "AssertionError", text, s)
            out.append(If(Unary(BOOL, "not", cond.e, pos=p), body, [], pos=p))
        elif isinstance(s, ast.Expr):
            v = s.value
            if isinstance(v, ast.Constant) and isinstance(v.value, str):
                return  # a string statement is a comment
            if isinstance(v, ast.Constant) and v.value is Ellipsis:
                return
            res = self.expr(v, out)
            if isinstance(res, _Val) and not isinstance(res.e, (Const, Load)):
                if any(isinstance(x, (Atomic, Send, CallFunc)) for x in walk_exprs(res.e)):
                    out.append(Eval(res.e, pos=p))
        elif isinstance(s, ast.Pass):
            pass
        elif type(s) in _UNSUPPORTED_STMT:
            what, hint = _UNSUPPORTED_STMT[type(s)]
            raise self.err(s, what, f"{what} is not supported in kernels", hint)
        else:
            raise self.err(s, type(s).__name__, f"the {type(s).__name__} statement is not supported in kernels")

    def check_name(self, name: str, node: ast.AST) -> None:
        if name in (self.ctx_name, self.msg_name):
            raise self.err(node, "assignment", f"{name!r} is the handler's parameter and cannot be reassigned",
                           "use a new local variable")
        if name.startswith("_t") and name[2:].isdigit():
            raise self.err(node, "local variable", f"{name!r} is reserved for the compiler's temporaries",
                           "rename the variable")
        if name in self.freevars:
            raise self.err(node, "closure", f"{name!r} is a variable of an enclosing function",
                           "define the kernel at module level and keep changing values in kernel state")
        for s in self.assigned_in:
            s.add(name)

    def assign(self, target: ast.expr, value: ast.expr, out: list[Stmt], node: ast.stmt) -> None:
        p = self.pos(node)
        if isinstance(target, ast.Name):
            name = target.id
            self.check_name(name, target)
            # Whole arrays, messages and clocks are bound by name.
            if isinstance(value, ast.Call):
                special = self.special_local(name, value, out, node)
                if special:
                    return
            if name in self.msg_locals or name in self.now_locals or isinstance(self.locals.get(name), ArrayType):
                rhs = self.expr(value, out)
                self.assign_compound(name, rhs, out, node)
                return
            if isinstance(value, ast.Name) and value.id == self.msg_name:
                self.bind_msg_local(name, self.in_spec, node)
                self.copy_msg(name, _MsgRef(self.in_spec, "input"), out, node)
                return
            rhs = self.expr(value, out)
            if isinstance(rhs, _MsgRef):
                self.bind_msg_local(name, rhs.spec, node)
                self.copy_msg(name, rhs, out, node)
                return
            if isinstance(rhs, _Arr):
                raise self.err(value, "array assignment", f"{name!r} would alias an array",
                               f"copy it into a local array: {name} = ringcore.{rhs.elem.name}"
                               f"[{', '.join(map(str, rhs.shape))}](); then assign elements in a loop")
            v = self.scalar(rhs, value)
            t = self.record(name, v, node)
            self.locals.setdefault(name, t)
            self.note64(t, f"local {name!r}", node)
            out.append(Assign(Ref("local", name, None, t), self.coerce_local(v, t, value), pos=p))
            self.defined.add(name)
            return
        if isinstance(target, (ast.Attribute, ast.Subscript)):
            place = self.place(target, out)
            if isinstance(place, _Arr) and place.space == "local":
                # In Python this would make the field share the other array (an alias);
                # kernels copy arrays, so the two would differ after a later write.
                raise self.err(target, "array assignment", f"{ast.unparse(target)} = ... would share the array "
                               "in Python, but kernels copy it", f"build the message with it instead "
                               f"(Out({target.attr if isinstance(target, ast.Attribute) else 'field'}=...)), "
                               "or copy element by element in a for loop")
            if isinstance(place, _Arr):
                rhs = self.expr(value, out)
                if not isinstance(rhs, _Arr):
                    raise self.err(value, "array assignment", f"{place.label} is an array; assign an array of the "
                                   "same shape, or index it", f"{place.label}[i] = ...")
                self.copy_array(place, rhs, out, node)
                return
            v = self.scalar(self.expr(value, out), value)
            out.append(Assign(place, self.coerce_store(v, place.type, value, self.ref_label(target)), pos=p))
            return
        if isinstance(target, ast.Tuple):
            raise self.err(target, "tuple unpacking", "tuple unpacking is not supported in kernels",
                           "assign each variable in its own statement")
        raise self.err(target, "assignment", f"cannot assign to {ast.unparse(target)}")

    def assign_compound(self, name: str, rhs: Any, out: list[Stmt], node: ast.stmt) -> None:
        if name in self.msg_locals:
            if not isinstance(rhs, _MsgRef) or rhs.spec is not self.msg_locals[name]:
                raise self.err(node, "assignment", f"{name!r} holds a {self.msg_locals[name].name} message; "
                               "assign a message of the same type")
            self.copy_msg(name, rhs, out, node)
            return
        if isinstance(self.locals.get(name), ArrayType):
            # Rebinding the name to another array would share that array in Python (a later write
            # to either shows in both); kernels copy, so the two would differ.
            raise self.err(node, "assignment", f"{name!r} is a local array; {name} = ... would make it share "
                           "another array in Python, but kernels copy", f"assign elements ({name}[i] = ...) "
                           "in a for loop")
        raise self.err(node, "assignment", f"{name!r} holds a clock reading; use a new name")

    def special_local(self, name: str, call: ast.Call, out: list[Stmt], node: ast.stmt) -> bool:
        """``x = f32[4]()``, ``out = Out(...)``, ``t = ctx.now()``: locals that are not scalars."""
        p = self.pos(node)
        if self.is_ctx_call(call, "now"):
            if call.args or call.keywords:
                raise self.err(call, "ctx.now", "ctx.now() takes no arguments")
            ref = self.now_locals.get(name)
            if ref is None:
                if name in self.locals or name in self.msg_locals:
                    raise self.err(node, "assignment", f"{name!r} already holds another kind of value; use a new name")
                ref = _NowRef(f"{name}__physical", f"{name}__logical")
                self.now_locals[name] = ref
                self.locals[ref.physical] = U64
                self.locals[ref.logical] = U32
            self.unit.uses_now = True
            out.append(Tick(Ref("local", ref.physical, None, U64), Ref("local", ref.logical, None, U32), pos=p))
            self.defined.add(name)
            return True
        obj = self.static_or_none(call.func)
        if isinstance(obj, ArrayType):
            if call.args or call.keywords:
                raise self.err(call, "local array", f"{ast.unparse(call.func)}() takes no arguments (it is all zeros)",
                               f"{name} = {ast.unparse(call.func)}(); then assign elements")
            prev = self.locals.get(name)
            if prev is not None and prev != obj:
                raise self.err(node, "local array", f"{name!r} already has type {prev!r}")
            if name in self.candidates or name in self.msg_locals:
                raise self.err(node, "local array", f"{name!r} already holds another kind of value; use a new name")
            if obj.size > 4096:
                raise self.err(call, "local array", f"local array of {obj.size} elements is too large "
                               "(at most 4096)", "keep large data in kernel state")
            self.locals[name] = obj
            self.note64(obj, f"local array {name!r}", node)
            out.append(ArrayZero(Ref("local", name, None, obj), pos=p))
            self.defined.add(name)
            return True
        return False

    def bind_msg_local(self, name: str, spec: MessageSpec, node: ast.AST) -> None:
        prev = self.msg_locals.get(name)
        if prev is not None and prev is not spec:
            raise self.err(node, "assignment", f"{name!r} holds a {prev.name}; it cannot also hold a {spec.name}")
        if prev is None and (name in self.locals or name in self.candidates):
            raise self.err(node, "assignment", f"{name!r} already holds another kind of value; use a new name")
        if prev is None:
            self.msg_locals[name] = spec
            for f, t in spec.fields.items():
                self.locals[f"{name}__{f}"] = t
        self.defined.add(name)

    def copy_msg(self, name: str, src: _MsgRef, out: list[Stmt], node: ast.AST) -> None:
        mv = self.msg_value(src, node, out)
        p = self.pos(node)
        for f, t in mv.spec.fields.items():
            dst = Ref("local", f"{name}__{f}", None, t)
            v = mv.fields[f]
            if isinstance(t, ArrayType):
                if v is None:
                    out.append(ArrayZero(dst, pos=p))
                elif not (isinstance(v, Ref) and v.space == "local" and v.name == dst.name):
                    out.append(ArrayCopy(dst, v, pos=p))
            else:
                out.append(Assign(dst, v if v is not None else Const(t, 0), pos=p))

    def copy_array(self, dst: _Arr, src: _Arr, out: list[Stmt], node: ast.AST) -> None:
        if dst.space == "msg":
            raise self.err(node, "assignment", "the input message is read-only", "build the reply in a new message")
        if src.shape != dst.shape or src.elem is not dst.elem:
            raise self.err(node, "array assignment", f"{dst.label} is {dst.elem.name}{list(dst.shape)} but the value "
                           f"is {src.elem.name}{list(src.shape)}", "copy element by element with a cast")
        if dst.offset is not None or src.offset is not None:
            raise self.err(node, "array assignment", "copy rows of a multi-dimensional array element by element")
        if dst.space == "state":
            self.unit.plain_state_writes = True
        if src.space == "state":
            self.unit.state_reads.add(src.name)
        out.append(ArrayCopy(Ref(dst.space, dst.name, None, dst.full), Ref(src.space, src.name, None, src.full),
                             pos=self.pos(node)))

    def augassign(self, s: ast.AugAssign, op: str, out: list[Stmt]) -> None:
        target = s.target
        if isinstance(target, ast.Name):
            cur = self.expr(target, out)
            rhs = self.expr(s.value, out)
            v = self.binop(op, self.scalar(cur, target), self.scalar(rhs, s.value), s, out)
            name = target.id
            self.check_name(name, target)
            t = self.record(name, v, s)
            out.append(Assign(Ref("local", name, None, t), self.coerce_local(v, t, s), pos=self.pos(s)))
            return
        place = self.place(target, out)
        if isinstance(place, _Arr):
            raise self.err(s, "augmented assignment", "augmented assignment to a whole array is not supported",
                           "update it element by element")
        # Evaluate the place once (its index is already a checked temporary or constant).
        if place.index is not None:
            place = Ref(place.space, place.name, self.spill(_Val(place.index), out, s).e, place.type)
        if place.space == "state":
            self.unit.state_reads.add(place.name)
        cur = _Val(Load(place.type, place, pos=self.pos(s)))
        rhs = self.scalar(self.expr(s.value, out), s.value)
        v = self.binop(op, cur, rhs, s, out)
        out.append(Assign(place, self.coerce_store(v, place.type, s, self.ref_label(target)), pos=self.pos(s)))

    def if_stmt(self, s: ast.If, out: list[Stmt]) -> None:
        cond = self.test(s.test, out)
        if cond.const is not None:  # a constant condition (e.g. a module flag): only one branch exists
            self.block(s.body if cond.const else s.orelse, out)
            return
        then: list[Stmt] = []
        orelse: list[Stmt] = []
        before = set(self.defined)
        self.block(s.body, then)
        after_then = self.defined
        self.defined = set(before)
        self.block(s.orelse, orelse)
        after_else = self.defined
        t_exits = _ends(then)
        e_exits = _ends(orelse)
        if t_exits and e_exits:
            self.defined = after_then | after_else
        elif t_exits:
            self.defined = after_else
        elif e_exits:
            self.defined = after_then
        else:
            self.defined = after_then & after_else
        out.append(If(cond.e, then, orelse, pos=self.pos(s)))

    def while_stmt(self, s: ast.While, out: list[Stmt]) -> None:
        if s.orelse:
            raise self.err(s.orelse[0], "while/else", "while ... else is not supported", "use a flag variable")
        pre: list[Stmt] = []
        cond = self.test(s.test, pre)
        body: list[Stmt] = []
        before = set(self.defined)
        self.loop_depth += 1
        self.block(s.body, body)
        self.loop_depth -= 1
        self.defined = before
        p = self.pos(s)
        if pre:
            stop: list[Stmt] = [Break(pos=p)]
            out.append(While(Const(BOOL, True), pre + [If(Unary(BOOL, "not", cond.e, pos=p), stop, [], pos=p)] + body,
                             pos=p))
        else:
            out.append(While(cond.e, body, pos=p))

    def for_stmt(self, s: ast.For, out: list[Stmt]) -> None:
        if s.orelse:
            raise self.err(s.orelse[0], "for/else", "for ... else is not supported", "use a flag variable")
        if not isinstance(s.target, ast.Name):
            raise self.err(s.target, "for target", "the loop variable must be a single name",
                           "for i in range(n): ...")
        it = s.iter
        if not (isinstance(it, ast.Call) and self.static_or_none(it.func) is range):
            what = ast.unparse(it)
            raise self.err(it, "for loop", f"kernels loop over range(...) only, not {what}",
                           "for i in range(len(arr)): use arr[i]")
        if it.keywords or not 1 <= len(it.args) <= 3:
            raise self.err(it, "range", "range() takes 1 to 3 positional arguments")
        args = [self.scalar(self.expr(a, out), a) for a in it.args]
        for a, node in zip(args, it.args):
            if not (a.type.is_integer or (a.weak and a.const is not None and isinstance(a.const, int)
                                          and not isinstance(a.const, bool))):
                raise self.err(node, "range", f"range() needs integers, got {a.type.name}",
                               f"cast it: ringcore.i32({ast.unparse(node)})")
        if len(args) == 1:
            start, stop, step = _Val(Const(I32, 0), True, 0), args[0], _Val(Const(I32, 1), True, 1)
        elif len(args) == 2:
            start, stop, step = args[0], args[1], _Val(Const(I32, 1), True, 1)
        else:
            start, stop, step = args
        # The loop variable is a Python int in the reference: weak, i32 unless a bound is 64-bit.
        strong = [a.type for a in (start, stop, step) if not a.weak]
        vt = I32
        if any(t.bits == 64 for t in strong):
            # u64 bounds (and non-negative constants) iterate as u64, anything signed as i64.
            unsigned = all(t.kind == "u" for t in strong) and all(
                a.const is None or a.const >= 0 for a in (start, stop, step) if a.weak)
            vt = U64 if unsigned else I64
        bounds = []
        for a, node in zip((start, stop, step), it.args if len(it.args) == 3 else [None] * 3):
            if a.const is not None and not _fits(a.const, vt):
                raise self.err(node or it, "range", f"range bound {a.const} does not fit {vt.name}")
            bounds.append(self.convert(a, vt))
        p = self.pos(s)
        if step.const is not None and step.const == 0:
            raise self.err(it, "range", "range() step must not be zero")
        name = s.target.id
        self.check_name(name, s.target)
        self.known[name] = ("range", vt)
        self.locals[name] = vt
        self.candidates.setdefault(name, [])
        if step.const is None:
            start_v = self.spill(_Val(bounds[0]), out, s).e
            stop_v = self.spill(_Val(bounds[1]), out, s).e
            step_v = self.spill(_Val(bounds[2]), out, s).e
            bad: list[Stmt] = []
            self.fail(bad, "ValueError", "range() arg 3 must not be zero", it)
            out.append(If(Compare(BOOL, "eq", step_v, Const(vt, 0), pos=p), bad, [], pos=p))
            bounds = [start_v, stop_v, step_v]
        body: list[Stmt] = []
        before = set(self.defined)
        self.defined.add(name)
        assigned: set[str] = set()
        self.assigned_in.append(assigned)
        # Known bounds let indexing by the loop variable skip its bounds check.
        rng = None
        if all(isinstance(b, Const) for b in bounds) and name not in _assigned_names(s.body):
            r = range(bounds[0].value, bounds[1].value, bounds[2].value)
            if len(r):
                rng = (min(r[0], r[-1]), max(r[0], r[-1]))
        saved = self.ranges.get(name)
        if rng is not None:
            self.ranges[name] = rng
        else:
            self.ranges.pop(name, None)
        self.loop_depth += 1
        self.block(s.body, body)
        self.loop_depth -= 1
        self.assigned_in.pop()
        for outer in self.assigned_in:
            outer |= assigned
        if saved is not None:
            self.ranges[name] = saved
        else:
            self.ranges.pop(name, None)
        self.defined = before
        out.append(For(name, bounds[0], bounds[1], bounds[2], body, pos=p))

    def return_stmt(self, s: ast.Return, out: list[Stmt]) -> None:
        p = self.pos(s)
        if self.kernel is None:  # a @ringcore.func
            if s.value is None or (isinstance(s.value, ast.Constant) and s.value.value is None):
                if self.ret is not None:
                    raise self.err(s, "return", f"this function returns {self.ret.name}; return a value")
                out.append(Return(None, pos=p))
                return
            if self.ret is None:
                raise self.err(s, "return", "this function is annotated -> None (or not at all) but returns a value",
                               "annotate the return type, e.g. -> ringcore.f32")
            v = self.scalar(self.expr(s.value, out), s.value)
            out.append(Return(self.coerce_store(v, self.ret, s.value, "the return value"), pos=p))
            return
        if s.value is None or (isinstance(s.value, ast.Constant) and s.value.value is None):
            out.append(Return(None, pos=p))
            return
        val = self.expr(s.value, out)
        if isinstance(s.value, ast.Name) and s.value.id == self.msg_name:
            val = _MsgRef(self.in_spec, "input")
        if not isinstance(val, _MsgRef):
            raise self.err(s.value, "return", "a kernel returns its reply message or None, "
                           f"not {ast.unparse(s.value)}",
                           f"return {self.out_spec.name if self.out_spec else 'None'}(...)")
        if self.out_spec is None:
            raise self.err(s, "return", f"kernel {self.kernel.id!r} declares no reply type but returns a "
                           f"{val.spec.name}", f"annotate the handler -> {val.spec.name} | None")
        if val.spec is not self.out_spec:
            raise self.err(s.value, "return", f"kernel {self.kernel.id!r} replies with {self.out_spec.name}, "
                           f"not {val.spec.name}")
        out.append(Return(self.msg_value(val, s.value, out), pos=p))

    def raise_stmt(self, s: ast.Raise, out: list[Stmt]) -> None:
        exc = s.exc
        if exc is None:
            raise self.err(s, "raise", "a bare raise re-raises nothing in a kernel", 'raise ValueError("why")')
        cls_node, args = (exc.func, exc.args) if isinstance(exc, ast.Call) else (exc, [])
        cls = self.static_or_none(cls_node)
        if not (isinstance(cls, type) and issubclass(cls, Exception)):
            raise self.err(exc, "raise", f"raise an exception class with an optional message, not {ast.unparse(exc)}",
                           'raise ValueError("negative value")')
        if len(args) > 1 or (args and not (isinstance(args[0], ast.Constant) and isinstance(args[0].value, str))) \
                or (isinstance(exc, ast.Call) and exc.keywords):
            raise self.err(exc, "raise", "the exception's message must be one string literal",
                           'raise ValueError("negative value")')
        self.fail(out, cls.__name__, args[0].value if args else "", s)

    # -- places (assignment targets) -----------------------------------------------------------

    def ref_label(self, node: ast.expr) -> str:
        return ast.unparse(node)

    def place(self, node: ast.expr, out: list[Stmt]) -> Ref | _Arr:
        """An assignable location: a state field, a message-local field, or an array element."""
        if isinstance(node, ast.Attribute):
            base = self.expr(node.value, out)
            if isinstance(base, _StateObj):
                t = self.state_field(node.attr, node)
                self.unit.plain_state_writes = True
                if isinstance(t, ArrayType):
                    return _Arr("state", node.attr, t.elem, t.shape, None, ast.unparse(node), t)
                self.note64(t, f"state field {node.attr!r}", node)
                return Ref("state", node.attr, None, t)
            if isinstance(base, _MsgRef) and base.kind == "local":
                t = base.spec.fields.get(node.attr)
                if t is None:
                    raise self.err(node, "message field", f"{base.spec.name} has no field {node.attr!r}; its fields "
                                   f"are {sorted(base.spec.fields)}")
                name = f"{base.name}__{node.attr}"
                if isinstance(t, ArrayType):
                    return _Arr("local", name, t.elem, t.shape, None, ast.unparse(node), t)
                self.note64(t, f"field {base.spec.name}.{node.attr}", node)
                return Ref("local", name, None, t)
            if isinstance(base, _MsgRef) and base.kind == "input":
                raise self.err(node, "assignment", f"the input message {self.msg_name!r} is read-only",
                               f"build the reply instead: out = {self.out_spec.name if self.out_spec else 'Out'}(...)")
            raise self.err(node, "assignment", f"cannot assign to {ast.unparse(node)}")
        if isinstance(node, ast.Subscript):
            arr = self.expr(node.value, out)
            if not isinstance(arr, _Arr):
                raise self.err(node, "subscript", f"{ast.unparse(node.value)} is not an array")
            if arr.space == "msg":
                raise self.err(node, "assignment", f"the input message {self.msg_name!r} is read-only",
                               "copy the values into the reply")
            if arr.space == "state":
                self.unit.plain_state_writes = True
            return self.index(arr, node, out)
        raise self.err(node, "assignment", f"cannot assign to {ast.unparse(node)}")

    def state_field(self, name: str, node: ast.AST) -> Any:
        t = self.state_fields.get(name)
        if t is None:
            if not self.state_fields:
                raise self.err(node, "state", f"kernel {self.kernel.id!r} declares no state",
                               "declare it: @ringcore.kernel(state=MyState)")
            raise self.err(node, "state field", f"the kernel state has no field {name!r}; its fields are "
                           f"{sorted(self.state_fields)}")
        return t

    def index(self, arr: _Arr, node: ast.Subscript, out: list[Stmt]) -> Ref | _Arr:
        """Index ``arr`` with ``node.slice``: a checked element Ref, or a sub-array for a partial index."""
        idx_nodes = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if any(isinstance(n, ast.Slice) for n in idx_nodes):
            raise self.err(node.slice, "a slice", "slices are not supported in kernels",
                           "index one element at a time in a for loop")
        if len(idx_nodes) > len(arr.shape):
            raise self.err(node, "subscript", f"{arr.label} has {len(arr.shape)} dimension(s), indexed with "
                           f"{len(idx_nodes)}")
        offset = arr.offset
        p = self.pos(node)
        shape = arr.shape
        for k, inode in enumerate(idx_nodes):
            dim = shape[k]
            stride = math.prod(shape[k + 1:])
            v = self.scalar(self.expr(inode, out), inode)
            if not (v.type.is_integer or (v.const is not None and isinstance(v.const, int)
                                          and not isinstance(v.const, bool))):
                raise self.err(inode, "subscript", f"an index must be an integer, not {v.type.name}",
                               f"cast it: ringcore.i32({ast.unparse(inode)})")
            if v.const is not None:
                i = int(v.const)
                if not -dim <= i < dim:
                    raise self.err(inode, "subscript", f"index {i} is out of range for {arr.label} ({dim} elements)")
                lin: Expr = Const(I32, (i + dim if i < 0 else i) * stride, pos=p)
            else:
                lin = self.checked_index(v, dim, arr.label, inode, out)
                if stride != 1:
                    lin = Binary(I32, "mul", lin, Const(I32, stride), pos=p)
            offset = lin if offset is None else self.fold_add(offset, lin, p)
        if len(idx_nodes) < len(arr.shape):
            rest = shape[len(idx_nodes):]
            return _Arr(arr.space, arr.name, arr.elem, rest, offset, ast.unparse(node), arr.full)
        self.note64(arr.elem, ast.unparse(node), node)
        return Ref(arr.space, arr.name, offset, arr.elem)

    @staticmethod
    def fold_add(a: Expr, b: Expr, p: Pos) -> Expr:
        if isinstance(a, Const) and isinstance(b, Const):
            return Const(I32, a.value + b.value, pos=p)
        return Binary(I32, "add", a, b, pos=p)

    def checked_index(self, v: _Val, dim: int, label: str, node: ast.AST, out: list[Stmt]) -> Expr:
        """A runtime index: Python's negative indices, a bounds check (the lane fails), as i32."""
        p = self.pos(node)
        e = v.e
        if isinstance(e, Load) and e.ref.space == "local" and e.ref.name in self.ranges:
            lo, hi = self.ranges[e.ref.name]
            if 0 <= lo and hi < dim:
                return e if e.type is I32 else Cast(I32, e, pos=p)
        t = v.type if not v.weak else v.type
        if t.kind == "b":
            raise self.err(node, "subscript", "an index must be an integer, not bool")
        if t.bits < 32:  # u8/u16/i8/i16: checked as i32
            t = I32
            e = Cast(t, e, pos=p)
        text = f"index out of range for {label} ({dim} elements)"
        if t.kind != "i":
            e = self.spill(_Val(e), out, node).e
            bad: Expr = Compare(BOOL, "ge", e, Const(t, dim), pos=p)
        else:
            name = self.new_tmp(t)
            ref = Ref("local", name, None, t)
            out.append(Assign(ref, e, pos=p))
            neg = [Assign(ref, Binary(t, "add", Load(t, ref), Const(t, dim), pos=p), pos=p)]
            out.append(If(Compare(BOOL, "lt", Load(t, ref), Const(t, 0), pos=p), neg, [], pos=p))
            e = Load(t, ref, pos=p)
            bad = Logical(BOOL, "or", Compare(BOOL, "lt", e, Const(t, 0), pos=p),
                          Compare(BOOL, "ge", e, Const(t, dim), pos=p), pos=p)
        body: list[Stmt] = []
        self.fail(body, "IndexError", text, node)
        out.append(If(bad, body, [], pos=p))
        return e if t is I32 else Cast(I32, e, pos=p)

    # -- expressions ---------------------------------------------------------------------------

    def scalar(self, v: Any, node: ast.AST) -> _Val:
        if isinstance(v, _Val):
            return v
        if isinstance(v, _Arr):
            raise self.err(node, "array", f"{v.label} is an array here; index it ({v.label}[i])")
        if isinstance(v, _MsgRef):
            raise self.err(node, "message", f"{ast.unparse(node)} is a whole {v.spec.name} message here; use one of "
                           f"its fields ({', '.join(v.spec.fields)})")
        if isinstance(v, _NowRef):
            raise self.err(node, "ctx.now", "use the timestamp's .physical or .logical")
        if isinstance(v, (_CtxObj, _StateObj, _HeaderObj)):
            raise self.err(node, "ctx", f"{ast.unparse(node)} is not a value", "use ctx.state.<field>")
        if isinstance(v, _Static):
            return self.static_scalar(v.obj, node)
        raise self.err(node, "expression", f"{ast.unparse(node)} is not a number")

    def static_scalar(self, obj: Any, node: ast.AST) -> _Val:
        p = self.pos(node)
        if isinstance(obj, bool) or isinstance(obj, np.bool_):
            return _Val(Const(BOOL, bool(obj), pos=p), isinstance(obj, bool), bool(obj))
        if isinstance(obj, DeliveryResult):
            return _Val(Const(DELIVERY, DELIVERY_CODES[obj], pos=p), False, None)
        if isinstance(obj, int):
            return _Val(Const(I32 if _fits(obj, I32) else I64, int(obj), pos=p), True, int(obj))
        if isinstance(obj, float):
            return _Val(Const(F32, obj, pos=p), True, obj)
        if isinstance(obj, np.generic) and obj.dtype.kind in "uif":
            t = rt.scalar_type(obj.dtype)
            self.note64(t, ast.unparse(node), node)
            val = obj.item()
            return _Val(Const(t, val, pos=p), False, None)
        name = ast.unparse(node)
        if callable(obj):
            raise self.err(node, "call", f"{name} is a function; call it (only @ringcore.func functions, casts and "
                           "math builtins can be called)")
        what = type(obj).__name__
        if isinstance(obj, (list, tuple, dict, set)):
            raise self.err(node, f"a {what}", f"{name} is a {what}; kernels use numbers, message fields, state "
                           "and local arrays", "keep the data in kernel state or a message field")
        if isinstance(obj, str):
            raise self.err(node, "a string", f"{name} is a string; kernels have no strings")
        raise self.err(node, what, f"{name} is a {what}, which kernels cannot use",
                       "use a module-level number, a message field or kernel state")

    def expr(self, node: ast.expr, out: list[Stmt]) -> Any:
        p = self.pos(node)
        if isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, bool):
                return _Val(Const(BOOL, v, pos=p), True, v)
            if isinstance(v, int):
                return _Val(Const(I32 if _fits(v, I32) else I64, v, pos=p), True, v)
            if isinstance(v, float):
                return _Val(Const(F32, v, pos=p), True, v)
            if isinstance(v, str):
                raise self.err(node, "a string", "strings are not supported in kernels (except as a raise message)",
                               "return numbers in the reply")
            if v is None:
                raise self.err(node, "None", "None is only allowed as `return None` in kernels")
            raise self.err(node, type(v).__name__, f"the constant {v!r} is not supported in kernels")
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Attribute):
            return self.attribute(node, out)
        if isinstance(node, ast.Subscript):
            arr = self.expr(node.value, out)
            if isinstance(arr, _Static):
                raise self.err(node, "subscript", f"{ast.unparse(node)}: create local arrays with "
                               f"{ast.unparse(node)}() (with the parentheses)")
            if not isinstance(arr, _Arr):
                raise self.err(node, "subscript", f"{ast.unparse(node.value)} is not an array")
            ref = self.index(arr, node, out)
            if isinstance(ref, _Arr):
                return ref
            if ref.space == "state":
                self.unit.state_reads.add(ref.name)
            return _Val(Load(ref.type, ref, pos=p))
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.err(node, "operator", f"the {type(node.op).__name__} operator is not supported")
            left = self.scalar(self.expr(node.left, out), node.left)
            mark = len(out)
            right = self.scalar(self.expr(node.right, out), node.right)
            left = self.order(left, out, mark, node)
            return self.binop(op, left, right, node, out)
        if isinstance(node, ast.UnaryOp):
            return self.unary(node, out)
        if isinstance(node, ast.BoolOp):
            return self.boolop(node, out)
        if isinstance(node, ast.Compare):
            return self.compare(node, out)
        if isinstance(node, ast.IfExp):
            return self.ifexp(node, out)
        if isinstance(node, ast.Call):
            return self.call(node, out)
        if type(node) in _UNSUPPORTED_EXPR:
            what, hint = _UNSUPPORTED_EXPR[type(node)]
            raise self.err(node, what, f"{what} is not supported in kernels", hint)
        raise self.err(node, type(node).__name__, f"{type(node).__name__} expressions are not supported in kernels")

    def order(self, first: _Val, out: list[Stmt], mark: int, node: ast.AST) -> _Val:
        """Keep Python's left-to-right order: if evaluating a later operand emitted statements (an atomic,
        a send, a call) and ``first`` reads state, evaluate ``first`` into a temporary before them."""
        if len(out) == mark or not any(isinstance(x, Load) and x.ref.space == "state" for x in walk_exprs(first.e)):
            return first
        tail = out[mark:]
        del out[mark:]
        first = self.spill(first, out, node)
        out.extend(tail)
        return first

    def name(self, node: ast.Name) -> Any:
        n = node.id
        p = self.pos(node)
        if n == self.ctx_name:
            return _CtxObj()
        if n == self.msg_name:
            return _MsgRef(self.in_spec, "input")
        if n in self.msg_locals:
            self.check_defined(n, node)
            return _MsgRef(self.msg_locals[n], "local", n)
        if n in self.now_locals:
            self.check_defined(n, node)
            return self.now_locals[n]
        t = self.locals.get(n)
        if isinstance(t, ArrayType):
            self.check_defined(n, node)
            return _Arr("local", n, t.elem, t.shape, None, n, t)
        if n in self.locals or n in self.candidates or n in self.known or n in self.params:
            self.check_defined(n, node)
            lt, weak = self.local_type(n)
            if n in self.params:
                lt, weak = self.params[n], False
            return _Val(Load(lt, Ref("local", n, None, lt), pos=p), weak)
        if n in _assigned_names(self.src.fdef.body):
            raise self.err(node, "local variable", f"{n!r} is used before it is assigned")
        if n in self.globals:
            value = self.globals[n]
            if n in self.freevars and isinstance(value, (list, dict, set, bytearray, np.ndarray)):
                raise self.err(node, "closure over mutable state", f"{n!r} is a {type(value).__name__} captured "
                               "from an enclosing function (a closure over mutable state)",
                               "keep changing values in kernel state, and define the kernel at module level")
            return _Static(value)
        import builtins as _b

        if hasattr(_b, n):
            return _Static(getattr(_b, n))
        raise self.err(node, "name", f"name {n!r} is not defined")

    def check_defined(self, n: str, node: ast.AST) -> None:
        if n not in self.defined:
            raise self.err(node, "local variable", f"{n!r} may be used before it is assigned (not every path "
                           "to here assigns it)", f"give {n} a value before the branch or loop")

    def attribute(self, node: ast.Attribute, out: list[Stmt]) -> Any:
        base = self.expr(node.value, out)
        a = node.attr
        p = self.pos(node)
        if isinstance(base, _CtxObj):
            if a == "state":
                if not self.state_fields:
                    raise self.err(node, "state", f"kernel {self.kernel.id!r} declares no state",
                                   "declare it: @ringcore.kernel(state=MyState)")
                return _StateObj()
            if a in ("thread_id", "kernel_number"):
                return _Val(CtxValue(U32, a, pos=p))
            if a == "header":
                return _HeaderObj()
            if a in ("now", "send", "publish") or a in _ATOMIC_METHODS:
                raise self.err(node, f"ctx.{a}", f"ctx.{a} must be called")
            raise self.err(node, f"ctx.{a}", f"ctx has no {a!r} in compiled kernels; kernels can use ctx.state, "
                           "ctx.header, ctx.thread_id, ctx.kernel_number, ctx.now(), ctx.send(), ctx.publish(), "
                           "ctx.atomic_*()")
        if isinstance(base, _HeaderObj):
            if a not in HEADER_DTYPE.names:
                raise self.err(node, "ctx.header", f"the message header has no field {a!r}; its fields are "
                               f"{', '.join(HEADER_DTYPE.names)}")
            t = rt.scalar_type(HEADER_DTYPE.fields[a][0])
            self.note64(t, f"ctx.header.{a}", node)
            # MessageHeader holds Python ints: weak values, as in the reference.
            return _Val(CtxValue(t, f"header.{a}", pos=p), True)
        if isinstance(base, _StateObj):
            t = self.state_field(a, node)
            if isinstance(t, ArrayType):
                return _Arr("state", a, t.elem, t.shape, None, ast.unparse(node), t)
            self.note64(t, f"state field {a!r}", node)
            self.unit.state_reads.add(a)
            return _Val(Load(t, Ref("state", a, None, t), pos=p))
        if isinstance(base, _MsgRef):
            t = base.spec.fields.get(a)
            if t is None:
                if a == "header" and base.kind == "input":
                    return _HeaderObj()  # msg.header is ctx.header
                raise self.err(node, "message field", f"{base.spec.name} has no field {a!r}; its fields are "
                               f"{sorted(base.spec.fields)}")
            if base.kind == "ctor":
                v = base.fields.get(a)
                if isinstance(v, (Expr, Ref)) or v is None:
                    raise self.err(node, "message field", "read the field from a named message local",
                                   f"m = {base.spec.name}(...); m.{a}")
            space, name = ("msg", a) if base.kind == "input" else ("local", f"{base.name}__{a}")
            if isinstance(t, ArrayType):
                return _Arr(space, name, t.elem, t.shape, None, ast.unparse(node), t)
            self.note64(t, f"field {base.spec.name}.{a}", node)
            return _Val(Load(t, Ref(space, name, None, t), pos=p))
        if isinstance(base, _NowRef):
            if a == "physical":
                self.note64(U64, "ctx.now().physical", node)
                return _Val(Load(U64, Ref("local", base.physical, None, U64), pos=p))
            if a == "logical":
                return _Val(Load(U32, Ref("local", base.logical, None, U32), pos=p))
            raise self.err(node, "ctx.now", f"a timestamp has .physical and .logical, not .{a}")
        if isinstance(base, _Static):
            try:
                return _Static(getattr(base.obj, a))
            except AttributeError:
                raise self.err(node, "attribute", f"{ast.unparse(node.value)} has no attribute {a!r}") from None
        if isinstance(base, _Arr):
            raise self.err(node, "attribute", f"arrays have no attribute {a!r} in kernels",
                           f"use len({base.label}) for its length")
        raise self.err(node, "attribute", f"{ast.unparse(node)}: numbers have no attributes in kernels")

    def static_or_none(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Name):
            if node.id in (self.ctx_name, self.msg_name) or node.id in self.locals or node.id in self.msg_locals \
                    or node.id in self.candidates or node.id in self.now_locals:
                return None
            if node.id in self.globals:
                return self.globals[node.id]
            import builtins as _b

            return getattr(_b, node.id, None)
        if isinstance(node, ast.Attribute):
            base = self.static_or_none(node.value)
            if base is None:
                return None
            return getattr(base, node.attr, None)
        if isinstance(node, ast.Subscript):  # f32[4], u8[3, 4]: an array type
            base = self.static_or_none(node.value)
            if not isinstance(base, ScalarType):
                return None
            dims = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            shape = []
            for d in dims:
                v = d.value if isinstance(d, ast.Constant) else self.static_or_none(d)
                if not isinstance(v, int) or isinstance(v, bool):
                    raise self.err(d, "local array", f"array dimensions must be integer constants, not "
                                   f"{ast.unparse(d)}", "use a literal or a module-level int, e.g. f32[16]()")
                shape.append(v)
            try:
                return base[tuple(shape) if len(shape) > 1 else shape[0]]
            except TypeDefinitionError as exc:
                raise self.err(node, "local array", str(exc)) from None
        return None

    def static_value(self, node: ast.expr) -> Any:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        obj = self.static_or_none(node)
        if obj is None:
            raise self.err(node, "annotation", f"{ast.unparse(node)} is not a ringcore type")
        return obj

    def is_ctx_call(self, node: ast.expr, method: str) -> bool:
        return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == method
                and isinstance(node.func.value, ast.Name) and node.func.value.id == self.ctx_name)

    # -- operators -----------------------------------------------------------------------------

    def unify(self, a: _Val, b: _Val, node: ast.AST, what: str) -> ScalarType:
        """The common type of two operands (NEP 50), or a compile error where numpy would widen silently."""
        if a.weak and b.weak:
            if a.type.is_float or b.type.is_float:
                return F32
            if a.type.kind == "b" and b.type.kind == "b":
                return BOOL
            return I64 if I64 in (a.type, b.type) else I32
        if a.weak or b.weak:
            w, s = (a, b) if a.weak else (b, a)
            if w.type.is_float and not s.type.is_float:
                raise self.err(node, what, f"{what}: mixing a Python float with {s.type.name} would compute in f64",
                               f"cast the {s.type.name} value: ringcore.f32(...), or use an integer literal")
            if s.type.kind == "b" and w.type.kind != "b":
                raise self.err(node, what, f"{what} on a bool and a number",
                               "cast the bool: ringcore.i32(flag)")
            if s.type is DELIVERY:
                raise self.err(node, what, f"{what}: a delivery result compares only with DeliveryResult members",
                               "r == DeliveryResult.DELIVERED")
            if w.const is not None and not _fits(w.const, s.type):
                raise self.err(node, what, f"{w.const!r} does not fit {s.type.name}",
                               f"cast explicitly, e.g. ringcore.{s.type.name}(...) or use a wider type")
            return s.type
        t = _promote(a.type, b.type)
        if t is None:
            if a.type is DELIVERY or b.type is DELIVERY:
                raise self.err(node, what, f"{what}: a delivery result compares only with DeliveryResult members",
                               "r == DeliveryResult.DELIVERED")
            if a.type.kind == "b" or b.type.kind == "b":
                raise self.err(node, what, f"{what} on {a.type.name} and {b.type.name}: arithmetic on bool",
                               "cast it: ringcore.i32(flag)")
            wide = "f64" if (a.type.is_float or b.type.is_float) else "i64"
            raise self.err(node, what, f"{what} on {a.type.name} and {b.type.name}: numpy would silently widen "
                           f"to {wide}", f"cast one side explicitly, e.g. ringcore.{a.type.name}(...) or "
                           f"ringcore.{b.type.name}(...)")
        self.note64(t, what, node)
        return t

    def convert(self, v: _Val, t: ScalarType) -> Expr:
        """``v`` as type ``t`` (an implicit conversion the typing rules allowed)."""
        if v.type is t:
            return v.e
        if isinstance(v.e, Const) and v.const is not None:
            val = v.const
            if t.is_float:
                val = float(val)
            elif t.kind == "b":
                val = bool(val)
            else:
                val = int(val)
            return Const(t, val, pos=v.e.pos)
        return Cast(t, v.e, pos=v.e.pos)

    def coerce_local(self, v: _Val, t: ScalarType, node: ast.AST) -> Expr:
        if v.type is t:
            return v.e
        if v.weak:
            if v.const is not None and not _fits(v.const, t):
                raise self.err(node, "assignment", f"{v.const!r} does not fit {t.name}")
            return self.convert(v, t)
        if _widens(v.type, t):
            return Cast(t, v.e, pos=v.e.pos)
        raise self.err(node, "assignment", f"a {v.type.name} value is assigned to a {t.name} variable",
                       f"cast it: ringcore.{t.name}(...)")

    def coerce_store(self, v: _Val, t: ScalarType, node: ast.AST, label: str) -> Expr:
        """``v`` stored into a typed place: the same type, a weak value that fits, or a safe widening."""
        if v.type is t:
            return v.e
        if v.weak:
            if v.type.is_float and not t.is_float:
                raise self.err(node, "assignment", f"{label} is {t.name} but the value is a float",
                               f"cast it: ringcore.{t.name}(x) truncates toward zero")
            if v.const is not None and not _fits(v.const, t):
                raise self.err(node, "assignment", f"{v.const!r} does not fit {label} ({t.name})")
            if v.type.kind == "b" and t.kind != "b" and v.const is None:
                raise self.err(node, "assignment", f"{label} is {t.name} but the value is a bool",
                               f"cast it: ringcore.{t.name}(flag)")
            return self.convert(v, t)
        if _widens(v.type, t):
            return Cast(t, v.e, pos=v.e.pos)
        raise self.err(node, "assignment", f"{label} is {t.name} but the value is {v.type.name}",
                       f"cast it: ringcore.{t.name}(...)")

    def binop(self, op: str, a: _Val, b: _Val, node: ast.AST, out: list[Stmt]) -> _Val:
        p = self.pos(node)
        sym = _PYSYM[op]
        if a.const is not None and b.const is not None and a.weak and b.weak:
            return self.fold(op, a, b, node)
        if op == "pow":
            return self.power(a, b, node, out)
        t = self.unify(a, b, node, f"{sym}")
        weak = a.weak and b.weak
        if t.kind == "b" and op not in ("and_", "or_", "xor"):
            raise self.err(node, "operator", f"'{sym}' on bool values", "cast them: ringcore.i32(flag)")
        if op == "div" and not t.is_float:
            raise self.err(node, "/", f"'/' on integers ({a.type.name} / {b.type.name}) gives a 64-bit float in "
                           "Python and numpy", "use // for integer division, or cast: ringcore.f32(a) / ringcore.f32(b)")
        if op in ("lshift", "rshift", "and_", "or_", "xor") and t.is_float:
            raise self.err(node, "operator", f"'{sym}' needs integers, not {t.name}")
        if t is DELIVERY:
            raise self.err(node, "operator", "delivery results only compare with DeliveryResult members")
        if weak and op in ("floordiv", "mod") and t.is_integer and b.const == 0:
            raise self.err(node, _PYSYM[op], f"{_PYSYM[op]} by zero on Python integers raises ZeroDivisionError")
        if weak and op in ("floordiv", "mod") and t.is_integer and b.const is None:
            # Both are Python ints in the reference, where a zero divisor raises (numpy's give 0).
            rb = self.spill(_Val(self.convert(b, t)), out, node)
            bad: list[Stmt] = []
            self.fail(bad, "ZeroDivisionError", "integer division or modulo by zero", node)
            out.append(If(Compare(BOOL, "eq", rb.e, Const(t, 0), pos=p), bad, [], pos=p))
            return _Val(Binary(t, op, self.convert(a, t), rb.e, pos=p), weak)
        return _Val(Binary(t, op, self.convert(a, t), self.convert(b, t), pos=p), weak)

    def power(self, a: _Val, b: _Val, node: ast.AST, out: list[Stmt]) -> _Val:
        p = self.pos(node)
        if (a.type.is_float and not a.weak) or (b.type.is_float and not b.weak) or \
                (a.weak and b.weak and (a.type.is_float or b.type.is_float)):
            t = self.unify(a, b, node, "**")
            if not t.is_float:
                raise self.err(node, "**", "** mixes a float and an integer", "cast the integer to a float")
            return _Val(Binary(t, "pow", self.convert(a, t), self.convert(b, t), pos=p), a.weak and b.weak)
        if b.const is None or isinstance(b.const, float):
            raise self.err(node, "**", "integer ** needs a constant exponent", "use a loop, or cast to a float "
                           "and use ringcore.pow")
        n = int(b.const)
        if n < 0:
            raise self.err(node, "**", "integers to negative powers are not allowed (numpy refuses them)",
                           "cast to a float")
        t = a.type if not a.weak else a.type
        if t.kind == "b":
            raise self.err(node, "**", "** on bool", "cast it: ringcore.i32(flag)")
        if n == 0:
            return _Val(Const(t, 1, pos=p), a.weak, None)
        base = self.spill(a, out, node)
        acc: _Val | None = None
        cur = base
        while True:
            if n & 1:
                acc = cur if acc is None else _Val(Binary(t, "mul", acc.e, cur.e, pos=p), a.weak)
            n >>= 1
            if not n:
                break
            cur = self.spill(_Val(Binary(t, "mul", cur.e, cur.e, pos=p), a.weak), out, node)
        return acc

    def fold(self, op: str, a: _Val, b: _Val, node: ast.AST) -> _Val:
        x, y = a.const, b.const
        try:
            r = {
                "add": lambda: x + y, "sub": lambda: x - y, "mul": lambda: x * y, "div": lambda: x / y,
                "floordiv": lambda: x // y, "mod": lambda: x % y, "pow": lambda: x ** y,
                "lshift": lambda: x << y, "rshift": lambda: x >> y, "and_": lambda: x & y,
                "or_": lambda: x | y, "xor": lambda: x ^ y,
            }[op]()
        except (ZeroDivisionError, ValueError, OverflowError, TypeError) as exc:
            raise self.err(node, "constant expression", f"{ast.unparse(node)}: {exc}") from None
        if isinstance(r, complex):
            raise self.err(node, "constant expression", f"{ast.unparse(node)} is complex")
        return self.static_scalar(r, node)

    def unary(self, node: ast.UnaryOp, out: list[Stmt]) -> _Val:
        p = self.pos(node)
        if isinstance(node.op, ast.Not):
            v = self.test(node.operand, out)
            if v.const is not None:
                return _Val(Const(BOOL, not v.const, pos=p), True, not v.const)
            return _Val(Unary(BOOL, "not", v.e, pos=p))
        v = self.scalar(self.expr(node.operand, out), node.operand)
        if isinstance(node.op, ast.UAdd):
            return v
        if v.const is not None and v.weak:
            r = -v.const if isinstance(node.op, ast.USub) else ~v.const
            return self.static_scalar(r, node)
        if v.type.kind == "b" or v.type is DELIVERY:
            raise self.err(node, "operator", f"unary {ast.unparse(node)[0]} on {v.type.name}",
                           "use not for bools; cast to an integer type for arithmetic")
        if isinstance(node.op, ast.USub):
            return _Val(Unary(v.type, "neg", v.e, pos=p), v.weak)
        if v.type.is_float:
            raise self.err(node, "operator", "~ needs an integer")
        return _Val(Unary(v.type, "invert", v.e, pos=p), v.weak)

    def truth(self, v: _Val, node: ast.AST) -> _Val:
        """Python truthiness as a bool expression."""
        p = self.pos(node)
        if v.const is not None:
            return _Val(Const(BOOL, bool(v.const), pos=p), True, bool(v.const))
        if v.type.kind == "b":
            return _Val(v.e)
        if v.type is DELIVERY:
            return _Val(Compare(BOOL, "eq", v.e, Const(DELIVERY, DELIVERY_CODES[DeliveryResult.DELIVERED]), pos=p))
        return _Val(Compare(BOOL, "ne", v.e, Const(v.type, 0.0 if v.type.is_float else 0), pos=p))

    def test(self, node: ast.expr, out: list[Stmt]) -> _Val:
        return self.truth(self.scalar(self.expr(node, out), node), node)

    def boolop(self, node: ast.BoolOp, out: list[Stmt]) -> _Val:
        """``and``/``or``, short-circuit. On bools the result is a bool; on numbers it is Python's: the
        first operand that decides (``a or b`` is ``a`` when ``a`` is true, else ``b``)."""
        p = self.pos(node)
        op = "and" if isinstance(node.op, ast.And) else "or"
        first = self.scalar(self.expr(node.values[0], out), node.values[0])
        if first.type.kind != "b" or first.type is DELIVERY:
            return self.boolop_values(op, first, node, out)
        acc = self.truth(first, node.values[0])
        for vnode in node.values[1:]:
            if acc.const is not None:
                if (op == "and") != bool(acc.const):  # decided: False and ..., True or ...
                    return acc
                acc = self.test(vnode, out)
                continue
            pre: list[Stmt] = []
            rhs = self.test(vnode, pre)
            if not pre:
                acc = _Val(Logical(BOOL, op, acc.e, rhs.e, pos=p))
                continue
            # The right operand can fail or has effects: evaluate it only when Python would.
            name = self.new_tmp(BOOL)
            ref = Ref("local", name, None, BOOL)
            out.append(Assign(ref, acc.e, pos=p))
            cond = Load(BOOL, ref, pos=p) if op == "and" else Unary(BOOL, "not", Load(BOOL, ref), pos=p)
            out.append(If(cond, pre + [Assign(ref, rhs.e, pos=p)], [], pos=p))
            acc = _Val(Load(BOOL, ref, pos=p))
        return acc

    def boolop_values(self, op: str, first: _Val, node: ast.BoolOp, out: list[Stmt]) -> _Val:
        """``a or b`` / ``a and b`` on numbers: the deciding operand's value, as Python returns it."""
        p = self.pos(node)
        vals: list[tuple[_Val, list[Stmt], ast.AST]] = [(first, [], node.values[0])]
        for vnode in node.values[1:]:
            pre: list[Stmt] = []
            vals.append((self.scalar(self.expr(vnode, pre), vnode), pre, vnode))
        t = vals[0][0].type if not vals[0][0].weak else None
        acc_v = vals[0][0]
        for v, _, vnode in vals[1:]:
            t = self.unify(acc_v, v, vnode, f"'{op}'")
            acc_v = _Val(Const(t, 0), acc_v.weak and v.weak)
        if t is None:
            t = first.type
        if t is DELIVERY:
            raise self.err(node, op, f"'{op}' on delivery results", "compare them: r == DeliveryResult.DELIVERED")
        weak = all(v.weak for v, _, _ in vals)
        name = self.new_tmp(t)
        ref = Ref("local", name, None, t)
        out.append(Assign(ref, self.convert(vals[0][0], t), pos=p))
        # Nest: each later operand is evaluated only while the result is still undecided.
        target = out
        for v, pre, vnode in vals[1:]:
            cur = self.truth(_Val(Load(t, ref, pos=p)), vnode)
            cond = cur.e if op == "and" else Unary(BOOL, "not", cur.e, pos=p)
            inner: list[Stmt] = pre + [Assign(ref, self.convert(v, t), pos=p)]
            target.append(If(cond, inner, [], pos=p))
            target = inner
        return _Val(Load(t, ref, pos=p), weak)

    def compare(self, node: ast.Compare, out: list[Stmt]) -> _Val:
        p = self.pos(node)
        left = self.scalar(self.expr(node.left, out), node.left)
        result: _Val | None = None
        ops = list(zip(node.ops, node.comparators))
        for k, (opnode, rnode) in enumerate(ops):
            op = _CMPOPS.get(type(opnode))
            if op is None:
                raise self.err(node, "comparison", f"the {type(opnode).__name__} comparison is not supported",
                               "kernels compare numbers with == != < <= > >=")
            pre: list[Stmt] = []
            right = self.scalar(self.expr(rnode, pre), rnode)
            if k < len(ops) - 1:
                right = self.spill(right, pre, rnode)  # a middle operand is evaluated once
            if result is None:
                mark = len(out)
                out.extend(pre)
                left = self.order(left, out, mark, node)
                c = self.cmp(op, left, right, node)
                result = c
            else:
                if result.const is not None and not result.const:
                    break
                if not pre:
                    c = self.cmp(op, left, right, node)
                    result = _Val(Logical(BOOL, "and", result.e, c.e, pos=p)) if result.const is None else c
                else:
                    name = self.new_tmp(BOOL)
                    ref = Ref("local", name, None, BOOL)
                    out.append(Assign(ref, result.e, pos=p))
                    c = self.cmp(op, left, right, node)
                    out.append(If(Load(BOOL, ref), pre + [Assign(ref, c.e, pos=p)], [], pos=p))
                    result = _Val(Load(BOOL, ref, pos=p))
            left = right
        return result

    def cmp(self, op: str, a: _Val, b: _Val, node: ast.AST) -> _Val:
        p = self.pos(node)
        if a.const is not None and b.const is not None and a.weak and b.weak:
            r = {"eq": a.const == b.const, "ne": a.const != b.const, "lt": a.const < b.const,
                 "le": a.const <= b.const, "gt": a.const > b.const, "ge": a.const >= b.const}[op]
            return _Val(Const(BOOL, r, pos=p), True, r)
        if (a.type is DELIVERY) != (b.type is DELIVERY) and not (a.weak or b.weak):
            raise self.err(node, "comparison", "a delivery result compares only with DeliveryResult members",
                           "r == DeliveryResult.DELIVERED")
        if a.type is DELIVERY or b.type is DELIVERY:
            if a.weak or b.weak:
                raise self.err(node, "comparison", "a delivery result compares only with DeliveryResult members",
                               "r == DeliveryResult.DELIVERED")
            if op not in ("eq", "ne"):
                raise self.err(node, "comparison", "delivery results compare with == and != only")
            return _Val(Compare(BOOL, op, a.e, b.e, pos=p))
        t = self.unify(a, b, node, "comparison")
        return _Val(Compare(BOOL, op, self.convert(a, t), self.convert(b, t), pos=p))

    def ifexp(self, node: ast.IfExp, out: list[Stmt]) -> _Val:
        p = self.pos(node)
        cond = self.test(node.test, out)
        pa: list[Stmt] = []
        pb: list[Stmt] = []
        a = self.scalar(self.expr(node.body, pa), node.body)
        b = self.scalar(self.expr(node.orelse, pb), node.orelse)
        if cond.const is not None:
            out.extend(pa if cond.const else pb)
            return a if cond.const else b
        t = self.unify(a, b, node, "conditional expression")
        ea, eb = self.convert(a, t), self.convert(b, t)
        if not pa and not pb:
            return _Val(Select(t, cond.e, ea, eb, pos=p), a.weak and b.weak)
        name = self.new_tmp(t)
        ref = Ref("local", name, None, t)
        out.append(If(cond.e, pa + [Assign(ref, ea, pos=p)], pb + [Assign(ref, eb, pos=p)], pos=p))
        return _Val(Load(t, ref, pos=p), a.weak and b.weak)

    # -- calls ---------------------------------------------------------------------------------

    def call(self, node: ast.Call, out: list[Stmt]) -> Any:
        p = self.pos(node)
        f = node.func
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == self.ctx_name \
                and self.ctx_name is not None:
            return self.ctx_call(f.attr, node, out)
        obj = self.static_or_none(f)
        if obj is None:
            target = ast.unparse(f)
            raise self.err(node, "call", f"{target}(...) is not callable in kernels",
                           "kernels call @ringcore.func functions, casts like ringcore.f32(x), and math builtins")
        if node.keywords and not is_message_type(obj):
            raise self.err(node, "keyword arguments", f"{ast.unparse(f)}() takes positional arguments in kernels")
        if isinstance(obj, ScalarType):
            if len(node.args) != 1:
                raise self.err(node, "cast", f"ringcore.{obj.name}(x) takes one argument")
            return self.cast(obj, self.scalar(self.expr(node.args[0], out), node.args[0]), node, out)
        if isinstance(obj, ArrayType):
            raise self.err(node, "local array", "assign a new local array to a name: buf = "
                           f"{ast.unparse(f)}()")
        if is_message_type(obj):
            return self.construct(message_spec(obj), node, out)
        if obj in _PY_BUILTINS:
            return self.builtin(_PY_BUILTINS[obj], node, out)
        if any(obj is k for k in _MATH):
            return self.builtin(_MATH[obj], node, out)
        if obj is len:
            if len(node.args) != 1:
                raise self.err(node, "len", "len() takes one array")
            arr = self.expr(node.args[0], out)
            if not isinstance(arr, _Arr):
                raise self.err(node, "len", f"len() of {ast.unparse(node.args[0])}: only arrays have a length")
            return _Val(Const(I32, arr.shape[0], pos=p), True, arr.shape[0])
        if getattr(obj, "__ringcore_func__", False):
            return self.call_func(obj, node, out)
        if obj in (int, float, bool):
            raise self.err(node, f"{obj.__name__}()", f"{obj.__name__}() gives a Python {obj.__name__} "
                           "(64-bit, or unbounded) and is not a kernel cast",
                           f"use ringcore.{ {'int': 'i32', 'float': 'f32', 'bool': 'bool'}[obj.__name__]}(x)")
        if obj is range:
            raise self.err(node, "range", "range() is only allowed as a for loop's iterable")
        name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or ast.unparse(f)
        mod = getattr(obj, "__module__", "") or ""
        hint = "kernels call @ringcore.func functions, casts like ringcore.f32(x), and math builtins"
        if mod in ("math", "numpy") or mod.startswith("numpy"):
            short = getattr(obj, "__name__", "")
            if short in ("sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil", "pow", "fma", "isnan"):
                hint = f"use ringcore.{short}(x), which keeps the argument's precision"
        if isinstance(obj, _pytypes.FunctionType):
            hint = f"decorate {name} with @ringcore.func (and annotate its parameters with ringcore types)"
        raise self.err(node, "call", f"calls to arbitrary Python ({name}) are not supported in kernels", hint)

    def cast(self, t: ScalarType, v: _Val, node: ast.AST, out: list[Stmt]) -> _Val:
        p = self.pos(node)
        self.note64(t, f"ringcore.{t.name}(...)", node)
        if v.const is not None:
            try:
                c = t(v.const)
            except (ValueError, OverflowError) as exc:
                raise self.err(node, "cast", f"{ast.unparse(node)}: {exc}") from None
            val = bool(c) if t.kind == "b" else float(c) if t.is_float else int(c)
            return _Val(Const(t, val, pos=p), False, None)
        if v.type is t:
            return _Val(v.e)
        if v.type is DELIVERY:
            raise self.err(node, "cast", "a delivery result cannot be cast; compare it with DeliveryResult members")
        if v.type.is_float and t.is_integer:
            # The reference refuses NaN, inf and values beyond +-2**63; so do the targets (the lane fails).
            tv = self.spill(v, out, node)
            bad: list[Stmt] = []
            self.fail(bad, "ValueError", f"cannot cast a non-finite or out-of-range ({v.type.name}) value to "
                      f"{t.name}", node)
            ok = Compare(BOOL, "lt", Builtin(v.type, "abs", [tv.e], pos=p), Const(v.type, 2.0 ** 63), pos=p)
            out.append(If(Unary(BOOL, "not", ok, pos=p), bad, [], pos=p))
            return _Val(Cast(t, tv.e, pos=p))
        return _Val(Cast(t, v.e, pos=p))

    def builtin(self, name: str, node: ast.Call, out: list[Stmt]) -> _Val:
        p = self.pos(node)
        args: list[_Val] = []
        for a in node.args:
            mark = len(out)
            v = self.scalar(self.expr(a, out), a)
            args = [self.order(x, out, mark, node) for x in args]
            args.append(v)
        if name in ("min", "max"):
            if len(args) < 2:
                raise self.err(node, name, f"{name}() takes two or more numbers in kernels")
            acc = args[0]
            for b in args[1:]:
                t = self.unify(acc, b, node, f"{name}()")
                if acc.const is not None and b.const is not None and acc.weak and b.weak:
                    r = min(acc.const, b.const) if name == "min" else max(acc.const, b.const)
                    acc = self.static_scalar(r, node)
                    continue
                acc = _Val(Builtin(t, name, [self.convert(acc, t), self.convert(b, t)], pos=p), acc.weak and b.weak)
            return acc
        want = {"abs": 1, "clamp": 3, "pow": 2, "fma": 3}.get(name, 1)
        if len(args) != want:
            raise self.err(node, name, f"{name}() takes {want} argument(s)")
        if name == "abs":
            v = args[0]
            if v.const is not None and v.weak:
                return self.static_scalar(abs(v.const), node)
            if v.type.kind == "b" or v.type is DELIVERY:
                raise self.err(node, "abs", f"abs() of {v.type.name}")
            return _Val(Builtin(v.type, "abs", [v.e], pos=p), v.weak)
        if name == "clamp":
            t = self.unify(args[0], args[1], node, "clamp()")
            t = self.unify(_Val(Const(t, 0), all(a.weak for a in args[:2])), args[2], node, "clamp()")
            return _Val(Builtin(t, "clamp", [self.convert(a, t) for a in args], pos=p), all(a.weak for a in args))
        # Float functions: numpy ufuncs keep f32 as f32; a Python float computes in f64.
        strong = [a for a in args if not a.weak]
        if not strong:
            if all(a.const is not None for a in args):
                f = getattr(lb, name)
                r = f(*[np.float64(a.const) for a in args])
                if name == "isnan":
                    return _Val(Const(BOOL, bool(r), pos=p), False, None)
                return _Val(Const(F64, float(r), pos=p), False, None)
            raise self.err(node, name, f"ringcore.{name}() of a Python number computes in f64",
                           f"cast the argument: ringcore.{name}(ringcore.f32(x))")
        t = strong[0].type
        for a in args:
            if a.weak:
                if not a.type.is_float and a.const is None:
                    raise self.err(node, name, f"ringcore.{name}() takes floats", "cast: ringcore.f32(x)")
                continue
            if not a.type.is_float:
                raise self.err(node, name, f"ringcore.{name}() takes floats, not {a.type.name}",
                               f"cast it: ringcore.{name}(ringcore.f32(x))")
            if a.type is not t:
                raise self.err(node, name, f"ringcore.{name}() of {t.name} and {a.type.name}",
                               "cast the arguments to one float type")
        conv = [self.convert(a, t) for a in args]
        rtype = BOOL if name == "isnan" else t
        return _Val(Builtin(rtype, name, conv, pos=p))

    def construct(self, spec: MessageSpec, node: ast.Call, out: list[Stmt]) -> _MsgRef:
        names = list(spec.fields)
        if len(node.args) > len(names):
            raise self.err(node, "message", f"{spec.name} takes {len(names)} fields, got {len(node.args)} positional")
        given: dict[str, ast.expr] = dict(zip(names, node.args))
        for kw in node.keywords:
            if kw.arg is None:
                raise self.err(kw.value, "**unpacking", "**unpacking is not supported in kernels")
            if kw.arg not in spec.fields:
                raise self.err(kw.value, "message field", f"{spec.name} has no field {kw.arg!r}; its fields are "
                               f"{names}")
            if kw.arg in given:
                raise self.err(kw.value, "message field", f"{spec.name} got field {kw.arg!r} twice")
            given[kw.arg] = kw.value
        fields: dict[str, Any] = {}
        defaults = spec.cls().payload() if hasattr(spec.cls, "payload") else None
        for f, t in spec.fields.items():
            if f in given:
                vnode = given[f]
                mark = len(out)
                v = self.expr(vnode, out)
                for k, prev in list(fields.items()):
                    if isinstance(prev, Expr):
                        fields[k] = self.order(_Val(prev), out, mark, node).e
                label = f"{spec.name}.{f}"
                if isinstance(t, ArrayType):
                    if isinstance(v, _Arr):
                        if v.shape != t.shape or v.elem is not t.elem or v.offset is not None:
                            raise self.err(vnode, "message field", f"{label} is {t!r} but the value is "
                                           f"{v.elem.name}{list(v.shape)}")
                        if v.space == "state":
                            self.unit.state_reads.add(v.name)
                        fields[f] = Ref(v.space, v.name, None, v.full)
                    else:
                        raise self.err(vnode, "message field", f"{label} is an array {t!r}; pass an array of that "
                                       "shape (a message field, a state field or a local array)")
                else:
                    sv = self.scalar(v, vnode)
                    self.note64(t, f"field {label}", vnode)
                    fields[f] = self.coerce_store(sv, t, vnode, label)
            else:
                if isinstance(t, ArrayType):
                    if defaults is not None and np.any(np.asarray(defaults[list(spec.fields).index(f)]) != 0):
                        raise self.err(node, "message field", f"{spec.name}.{f} has a non-zero default array, "
                                       "which kernels cannot build", f"pass {f}=... explicitly")
                    fields[f] = None
                else:
                    d = defaults[list(spec.fields).index(f)] if defaults is not None else 0
                    val = d.item() if hasattr(d, "item") else d
                    fields[f] = Const(t, bool(val) if t.kind == "b" else val, pos=self.pos(node))
        return _MsgRef(spec, "ctor", fields=fields)

    def msg_value(self, m: _MsgRef, node: ast.AST, out: list[Stmt]) -> MsgValue:
        p = self.pos(node)
        if m.kind == "ctor":
            return MsgValue(m.spec, dict(m.fields))
        fields: dict[str, Any] = {}
        for f, t in m.spec.fields.items():
            space, name = ("msg", f) if m.kind == "input" else ("local", f"{m.name}__{f}")
            if isinstance(t, ArrayType):
                fields[f] = Ref(space, name, None, t)
            else:
                fields[f] = Load(t, Ref(space, name, None, t), pos=p)
        return MsgValue(m.spec, fields)

    def ctx_call(self, method: str, node: ast.Call, out: list[Stmt]) -> Any:
        p = self.pos(node)
        if self.kernel is None:
            raise self.err(node, "ctx", "ctx is only available in the kernel handler")
        if method == "now":
            if node.args or node.keywords:
                raise self.err(node, "ctx.now", "ctx.now() takes no arguments")
            name = f"_now{self.tmp + 1}"
            self.tmp += 1
            ref = _NowRef(f"{name}__physical", f"{name}__logical")
            self.locals[ref.physical] = U64
            self.locals[ref.logical] = U32
            self.unit.uses_now = True
            out.append(Tick(Ref("local", ref.physical, None, U64), Ref("local", ref.logical, None, U32), pos=p))
            return ref
        if method == "send":
            if len(node.args) != 2 or node.keywords:
                raise self.err(node, "ctx.send", "ctx.send(target, message) takes two arguments")
            tnode, mnode = node.args
            if isinstance(tnode, ast.Constant) and isinstance(tnode.value, str):
                target: Any = tnode.value
                if target not in self.unit.send_targets:
                    self.unit.send_targets.append(target)
            else:
                obj = self.static_or_none(tnode)
                if isinstance(obj, str):
                    target = obj
                    if target not in self.unit.send_targets:
                        self.unit.send_targets.append(target)
                else:
                    tv = self.scalar(self.expr(tnode, out), tnode)
                    if not (tv.type.is_integer or (tv.weak and tv.const is not None)) or tv.type.kind == "b":
                        raise self.err(tnode, "ctx.send", "the target is a kernel name (a string) or a kernel "
                                       f"number (an unsigned integer), not {tv.type.name}")
                    if tv.const is not None and not _fits(tv.const, U32):
                        raise self.err(tnode, "ctx.send", f"kernel number {tv.const} does not fit u32")
                    target = self.spill(_Val(self.convert(tv, U32) if tv.weak or tv.type.kind == "u"
                                             else Cast(U32, tv.e, pos=p)), out, tnode).e
            mv = self.expr(mnode, out)
            if not isinstance(mv, _MsgRef):
                raise self.err(mnode, "ctx.send", "ctx.send sends a message: ctx.send(target, Msg(...))")
            value = self.msg_value(mv, mnode, out)
            name = self.new_tmp(DELIVERY)
            ref = Ref("local", name, None, DELIVERY)
            out.append(Assign(ref, Send(DELIVERY, target, value, pos=p), pos=p))
            return _Val(Load(DELIVERY, ref, pos=p))
        if method in _ATOMIC_METHODS:
            op = _ATOMIC_METHODS[method]
            want = 3 if op == "cas" else 2
            if node.keywords:
                if any(k.arg != "index" for k in node.keywords):
                    raise self.err(node, f"ctx.{method}", f"ctx.{method} takes only index= as a keyword")
            args = list(node.args) + [k.value for k in node.keywords]
            if len(args) not in (want, want + 1):
                sig = "field, expected, desired[, index]" if op == "cas" else "field, value[, index]"
                raise self.err(node, f"ctx.{method}", f"ctx.{method}({sig})")
            fnode = args[0]
            if not (isinstance(fnode, ast.Constant) and isinstance(fnode.value, str)):
                raise self.err(fnode, f"ctx.{method}", "name the state field with a string literal",
                               f'ctx.{method}("count", 1)')
            field = fnode.value
            ft = self.state_field(field, fnode)
            if isinstance(ft, ArrayType):
                if len(args) != want + 1:
                    raise self.err(node, f"ctx.{method}", f"state field {field!r} is an array: pass the element's "
                                   "index as the last argument")
                arr = _Arr("state", field, ft.elem, ft.shape, None, f"ctx.state.{field}", ft)
                fake = ast.Subscript(value=fnode, slice=args[-1], ctx=ast.Load())
                ast.copy_location(fake, args[-1])
                ref = self.index(arr, fake, out)
                if isinstance(ref, _Arr):
                    raise self.err(node, f"ctx.{method}", "index every dimension of the array")
                et = ft.elem
            else:
                if len(args) != want:
                    raise self.err(node, f"ctx.{method}", f"state field {field!r} is a scalar: no index")
                ref = Ref("state", field, None, ft)
                et = ft
            if et.kind == "b":
                raise self.err(node, f"ctx.{method}", f"atomics work on numbers; {field!r} is bool")
            self.note64(et, f"ctx.{method} on {field!r}", node)
            vals = []
            for vnode in args[1:want]:
                v = self.scalar(self.expr(vnode, out), vnode)
                vals.append(self.spill(_Val(self.coerce_store(v, et, vnode, f"state field {field!r}")), out, vnode).e)
            self.unit.atomics.add(field)
            name = self.new_tmp(et)
            tref = Ref("local", name, None, et)
            if op == "cas":
                e = Atomic(et, "cas", ref, vals[1], vals[0], pos=p)
            else:
                e = Atomic(et, op, ref, vals[0], pos=p)
            out.append(Assign(tref, e, pos=p))
            return _Val(Load(et, tref, pos=p))
        if method == "publish":
            if len(node.args) != 2 or node.keywords:
                raise self.err(node, "ctx.publish", "ctx.publish(topic, message) takes two arguments")
            tnode, mnode = node.args
            topic = tnode.value if isinstance(tnode, ast.Constant) else self.static_or_none(tnode)
            if not isinstance(topic, str):
                raise self.err(tnode, "ctx.publish", "the topic must be a string literal or a module-level string",
                               'ctx.publish("sensors.temp", msg)')
            mv = self.expr(mnode, out)
            if not isinstance(mv, _MsgRef):
                raise self.err(mnode, "ctx.publish", "ctx.publish publishes a message: ctx.publish(topic, Msg(...))")
            name = self.new_tmp(U32)
            ref = Ref("local", name, None, U32)
            out.append(Assign(ref, Publish(U32, topic, self.msg_value(mv, mnode, out), pos=p), pos=p))
            return _Val(Load(U32, ref, pos=p))
        raise self.err(node, f"ctx.{method}", f"ctx has no method {method!r} in kernels; kernels can call "
                       "ctx.now(), ctx.send(), ctx.atomic_add/sub/min/max/exchange/cas()")

    def call_func(self, fn: Any, node: ast.Call, out: list[Stmt]) -> _Val:
        p = self.pos(node)
        args: list[_Val] = []
        for a in node.args:
            mark = len(out)
            v = self.expr(a, out)
            args = [self.order(x, out, mark, node) for x in args]
            args.append(self.scalar(v, a))
        fname, params, ret = _lower_func(self.unit, fn, node, self)
        if len(args) != len(params):
            raise self.err(node, "call", f"{fn.__name__}() takes {len(params)} argument(s), got {len(args)}")
        conv = [self.coerce_store(v, t, a, f"parameter {n!r} of {fn.__name__}")
                for v, (n, t), a in zip(args, params, node.args)]
        if ret is None:
            out.append(Eval(CallFunc(I32, fname, conv, pos=p), pos=p))
            return _Val(Const(I32, 0, pos=p), True, None)
        name = self.new_tmp(ret)
        ref = Ref("local", name, None, ret)
        out.append(Assign(ref, CallFunc(ret, fname, conv, pos=p), pos=p))
        return _Val(Load(ret, ref, pos=p))


def _ends(stmts: list[Stmt]) -> bool:
    """Whether a block always leaves (return, fail, break, continue) at its end."""
    if not stmts:
        return False
    last = stmts[-1]
    if isinstance(last, (Return, Fail, Break, Continue)):
        return True
    if isinstance(last, If):
        return _ends(last.then) and _ends(last.orelse)
    return False


def _assigned_names(stmts: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for s in stmts:
        for n in ast.walk(s):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                names.add(n.id)
    return names


def _func_signature(fn: Any, src: _Source) -> tuple[list[tuple[str, ScalarType]], ScalarType | None]:
    """A @ringcore.func's typed parameters and result, from its annotations."""
    args = src.fdef.args
    if args.vararg or args.kwarg or args.kwonlyargs or args.defaults or args.kw_defaults:
        raise src.error(src.fdef, "function signature", f"@ringcore.func {fn.__name__}: only plain positional "
                        "parameters are supported")
    try:
        import typing

        hints = typing.get_type_hints(fn)
    except Exception:
        hints = dict(getattr(fn, "__annotations__", {}))
    params = []
    for a in args.posonlyargs + args.args:
        ann = hints.get(a.arg)
        if ann is None:
            raise src.error(a, "function parameter", f"parameter {a.arg!r} of @ringcore.func {fn.__name__} needs a "
                            "ringcore type annotation", f"def {fn.__name__}({a.arg}: ringcore.f32, ...)")
        try:
            t = resolve_type(ann, where=f"parameter {a.arg!r} of {fn.__name__}")
        except TypeDefinitionError as exc:
            raise src.error(a, "function parameter", str(exc)) from None
        if not isinstance(t, ScalarType):
            raise src.error(a, "function parameter", f"parameter {a.arg!r}: functions take scalars, not arrays",
                            "pass the elements you need")
        params.append((a.arg, t))
    r = hints.get("return", None)
    ret = None
    if r is not None and r is not type(None):
        try:
            ret = resolve_type(r, where=f"the return type of {fn.__name__}")
        except TypeDefinitionError as exc:
            raise src.error(src.fdef, "function return", str(exc)) from None
        if not isinstance(ret, ScalarType):
            raise src.error(src.fdef, "function return", "functions return a scalar")
    return params, ret


def _lower_func(unit: _Unit, fn: Any, node: ast.AST, caller: _Lowerer) -> tuple[str, list, ScalarType | None]:
    key = fn
    if key in unit.func_keys:
        f = unit.funcs[unit.func_keys[key]]
        return f.name, f.params, f.ret
    if fn in unit.stack:
        chain = " -> ".join(g.__name__ for g in unit.stack[unit.stack.index(fn):]) + f" -> {fn.__name__}"
        raise caller.err(node, "recursion", f"recursion is not supported in kernels ({chain})",
                         "rewrite it as a loop")
    src = _Source(fn, "function")
    unit.func_sources.append(src.text)
    params, ret = _func_signature(fn, src)
    unit.stack.append(fn)
    try:
        lowerer = _run_passes(unit, src, fn, params=dict(params), ret=ret)
    finally:
        unit.stack.pop()
    name = f"{fn.__name__}_{len(unit.funcs)}"
    body = lowerer.final_body
    if ret is not None and not _ends(body):
        body.append(Fail(unit.site("TypeError", f"{fn.__name__}() reached its end without returning a "
                                   f"{ret.name}", src.pos(src.fdef)), pos=src.pos(src.fdef)))
    unit.funcs[name] = Function(name, params, ret, _final_locals(lowerer), body, pos=src.pos(src.fdef))
    unit.func_keys[key] = name
    return name, params, ret


def _final_locals(lw: _Lowerer) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, t in lw.locals.items():
        k = lw.known.get(name)
        if isinstance(k, ScalarType):
            out[name] = k
        elif isinstance(k, tuple):
            out[name] = lw.local_type(name)[0]
        else:
            out[name] = t
    return out


def _run_passes(unit: _Unit, src: _Source, func: Any, *, kernel: Any = None,
                params: dict[str, ScalarType] | None = None, ret: ScalarType | None = None) -> _Lowerer:
    """Lower until the local types are stable (a weak local's type depends on later assignments)."""
    # Every pass records the same error sites, send targets and state uses (they are deduplicated),
    # so the unit's records need no reset between passes.
    known: dict[str, Any] = {}
    for _ in range(6):
        lw = _Lowerer(unit, src, func, kernel=kernel, params=params, ret=ret, known=known)
        body = lw.lower_body()
        new = lw.resolve_locals()
        for k, v in lw.known.items():
            if k not in new and isinstance(v, ScalarType):
                new[k] = v
        if new == known:
            lw.final_body = body
            return lw
        known = new
    raise src.error(src.fdef, "local variable", "the local variables' types do not settle",
                    "give locals explicit types with casts")


def lower_kernel(kernel: Any) -> KernelIR:
    """Lower a KernelDef to a KernelIR, or raise KernelCompileError."""
    func = kernel.func
    if isinstance(func, _pytypes.MethodType):
        func = func.__func__
    src = _Source(func, "kernel")
    unit = _Unit(src.filename)
    for n in src.fdef.args.kwonlyargs:
        raise src.error(n, "kernel signature", "kernels take (ctx, msg) only")
    lw = _run_passes(unit, src, func, kernel=kernel)
    body = lw.final_body
    state = dict(kernel.state.fields) if kernel.state is not None else {}
    serial = unit.plain_state_writes or bool(unit.atomics & unit.state_reads)
    for s in walk_stmts(body):
        if isinstance(s, Return) and isinstance(s.value, MsgValue):
            for f, t in s.value.spec.fields.items():
                if unit.uses_64bit is None and (t.elem if isinstance(t, ArrayType) else t).bits == 64:
                    unit.uses_64bit = (f"reply field {s.value.spec.name}.{f} ({t!r})", s.pos)
    return KernelIR(
        name=kernel.id,
        input=kernel.input_spec,
        output=kernel.output_spec,
        state=state,
        locals=_final_locals(lw),
        body=body,
        funcs=unit.funcs,
        errors=unit.errors,
        send_targets=unit.send_targets,
        serial=serial,
        atomics=frozenset(unit.atomics),
        uses_64bit=unit.uses_64bit,
        uses_now=unit.uses_now,
        filename=src.filename,
        first_line=src.first,
        source=src.text + "".join(unit.func_sources),
        state_dtype=struct_dtype(state) if state else None,
    )

