"""The numpy target: a kernel's IR -> Python source running a whole batch of messages per call.

``emit(kir)`` returns the source of a module defining ``run(n, inp, out,
state, env)`` (the ABI is in :mod:`ringcore.lang.targets`); ``load(src, kir)``
executes it and returns ``run``. The CPU backend calls ``run`` once per batch.

Two shapes of generated code:

Vectorised (``kir.serial`` False)
    Every message of the batch is a *lane*. A value that can differ between
    lanes is a numpy array with one element per lane (local arrays: one row
    per lane); a value that cannot (constants, state that the kernel only
    reads, ``ctx.kernel_number``, loop counters of ``range`` loops with
    uniform bounds, locals computed only from those) is computed once, as a
    numpy scalar of its exact type. Which locals are uniform is decided
    statically (:class:`_Uniformity`). Control flow that depends on lanes
    becomes masks: a mask is ``None`` (every lane) or a bool array; each block
    runs under one, ``if`` computes the masks of both branches and skips a
    branch no lane takes, loops run while some lane is still in them, and
    ``return``/``raise``/``break``/``continue`` remove lanes from the masks.
    A batch in which no lane diverges runs with ``None`` masks throughout, so
    its code is plain numpy on whole columns.

Serial (``kir.serial`` True)
    A Python loop over the messages, in order, running scalar code on numpy
    scalars of the exact types (so integers wrap as in the reference), with
    real ``if``/``while``/``return``; state writes go through to the state
    arrays, so each message sees its predecessors' updates.

Either way the whole batch runs under ``np.errstate(all="ignore")``: integer
arithmetic wraps and floats follow IEEE 754 silently, as in the reference. The
numpy operators already have the IR's semantics for ``//``, ``%`` (also on
floats: ``npy_divmod``), shifts and integer casts; the helpers below add the
rest (Python's ``min``/``max``, ``fma``, float -> int casts through int64,
atomics in lane order).
"""

from __future__ import annotations

import linecache
import re
from typing import Any

import numpy as np

from ...types import ArrayType, ScalarType
from ..builtins import fma32, fma64
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
    stmt_exprs,
    walk_exprs,
    walk_stmts,
)

__all__ = ["emit", "load", "KernelFail"]


# -- runtime helpers (the generated module imports them by name) ---------------------------------


class KernelFail(Exception):
    """Raised by a serial kernel's functions to fail the current message with error ``site``."""

    def __init__(self, site: int) -> None:
        super().__init__(site)
        self.site = site


def _and(m: Any, c: np.ndarray) -> np.ndarray:
    """Lanes of mask ``m`` where the per-lane condition ``c`` holds."""
    return c if m is None else m & c


def _andnot(m: Any, c: np.ndarray) -> np.ndarray:
    """Lanes of mask ``m`` where ``c`` does not hold."""
    return ~c if m is None else m & ~c


def _mand(a: Any, b: Any) -> Any:
    """The intersection of two masks (None: every lane)."""
    if a is None:
        return b
    if b is None:
        return a
    return a & b


def _minus(a: Any, b: Any, z: np.ndarray) -> Any:
    """Lanes of mask ``a`` not in mask ``b``; ``z`` is the empty mask."""
    if b is None:
        return z
    if a is None:
        return ~b
    return a & ~b


def _or(a: Any, b: Any) -> Any:
    return None if a is None or b is None else a | b


def _norm(m: Any) -> Any:
    """``None`` for a mask that holds every lane (so later code takes the unmasked path)."""
    return None if m is None or m.all() else m


def _any(m: Any) -> bool:
    return m is None or bool(m.any())


def _lanes(m: Any, n: int) -> np.ndarray:
    """The lanes of a mask, as increasing int64 indices."""
    return np.arange(n, dtype=np.int64) if m is None else np.flatnonzero(m).astype(np.int64, copy=False)


def _isvec(v: Any) -> bool:
    return isinstance(v, np.ndarray) and v.ndim > 0


def _st(m: Any, v: Any, old: np.ndarray) -> np.ndarray:
    """Store ``v`` (per-lane array or uniform scalar) into a per-lane local for the lanes of ``m``."""
    if m is None:
        return v if _isvec(v) else np.full(old.shape, v, old.dtype)
    return np.where(m, v, old)


def _setcol(a: np.ndarray, m: Any, i: Any, v: Any) -> None:
    """``a[lane, i] = v`` for the lanes of ``m`` (``i`` uniform)."""
    if m is None:
        a[:, i] = v
    elif _isvec(v):
        a[m, i] = v[m]
    else:
        a[m, i] = v


def _setel(a: np.ndarray, m: Any, j: np.ndarray, v: Any) -> None:
    """``a[lane, j[lane]] = v`` for the lanes of ``m`` (``j`` per lane, already clipped)."""
    lanes = _lanes(m, a.shape[0])
    a[lanes, j[lanes] if _isvec(j) else j] = v[lanes] if _isvec(v) else v


def _copyrows(a: np.ndarray, m: Any, src: np.ndarray) -> None:
    """Copy a whole array (per-lane rows, or one uniform array) into a per-lane local array."""
    if m is None:
        a[...] = src
    elif src.ndim == a.ndim:
        a[m] = src[m]
    else:
        a[m] = src


def _zerorows(a: np.ndarray, m: Any) -> None:
    if m is None:
        a[...] = 0
    else:
        a[m] = 0


def _put(dst: np.ndarray, m: Any, v: Any) -> None:
    """Write a reply field (or the has_reply flags) for the lanes of ``m``."""
    if m is None:
        dst[...] = v
    elif isinstance(v, np.ndarray) and v.ndim == dst.ndim:
        dst[m] = v[m]
    else:
        dst[m] = v


def _fail(status: np.ndarray, m: Any, site: int) -> None:
    if m is None:
        status[...] = site
    else:
        status[m] = site


def _acc(failed: Any, m: Any) -> Any:
    """Add the lanes of mask ``m`` to a function's failed lanes (False: none yet)."""
    if failed is False:
        return m
    return _or(failed, m)


def _ix(j: Any, size: int) -> Any:
    """A per-lane index made safe for lanes that are not running (theirs may be anything)."""
    return np.clip(j, 0, size - 1)


def _cu(i: Any, size: int) -> Any:
    """A uniform index made safe for code that no lane runs (its bounds check failed every lane)."""
    return i if 0 <= i < size else 0


def _trips(a: Any, b: Any, c: Any) -> int:
    """Iterations of ``range(a, b, c)`` (0 for a zero step, which has already failed every lane)."""
    a, b, c = int(a), int(b), int(c)
    if c == 0:
        return 0
    return max(0, -((a - b) // c))


def _tripsv(a: Any, b: Any, c: Any) -> np.ndarray:
    """Per-lane iterations of ``range(a, b, c)``, as uint64, without overflow."""
    a, b, c = np.asarray(a), np.asarray(b), np.asarray(c)
    if a.dtype.kind == "u":
        a, b, c = (x.astype(np.uint64) for x in (a, b, c))
        d = np.where(b > a, b - a, np.uint64(0))
        s = np.where(c == 0, np.uint64(1), c)
        t = d // s + (d % s != 0)
        return np.where(c == 0, np.uint64(0), t).astype(np.uint64)
    a, b, c = (x.astype(np.int64) for x in (a, b, c))
    pos = c > 0
    ok = np.where(pos, b > a, a > b) & (c != 0)
    d = np.where(pos, b - a, a - b).astype(np.uint64)  # exact: the difference is positive where ok
    s = np.where(pos, c, -c).astype(np.uint64)
    s = np.where(s == 0, np.uint64(1), s)
    t = d // s + (d % s != 0)
    return np.where(ok, t, np.uint64(0)).astype(np.uint64)


def _maxtrips(t: np.ndarray, m: Any) -> int:
    sel = t if m is None else t[m]
    return int(sel.max()) if sel.size else 0


def _itv(a: Any, c: Any, k: int, dt: Any) -> Any:
    """``a + k * c`` in ``dt`` (wrapping: the exact value is in range, so the result is exact)."""
    return a + c * np.array(k).astype(dt)


def _mins(a: Any, b: Any) -> Any:
    return b if b < a else a


def _maxs(a: Any, b: Any) -> Any:
    return b if b > a else a


def _minv(a: Any, b: Any) -> Any:
    return np.where(b < a, b, a)


def _maxv(a: Any, b: Any) -> Any:
    return np.where(b > a, b, a)


def _fma32(a: Any, b: Any, c: Any) -> Any:
    """f32 fma, rounded once: the reference's own ``builtins.fma32``."""
    return fma32(a, b, c)[()]


_WIDER = {np.dtype(np.float32): np.dtype(np.float64)}
if np.finfo(np.longdouble).nmant >= 63:  # x87 extended (or better): 11 more bits than f64
    _WIDER[np.dtype(np.float64)] = np.dtype(np.longdouble)


def _powv(a: Any, b: Any) -> np.ndarray:
    """``a ** b`` per lane, equal to numpy's scalar ``**`` (libm's pow, the reference) on every lane.

    numpy's array loop for ``power`` is a different (SIMD) implementation that
    differs in the last place. So: compute in a wider type and round; where the
    wide result lies near the middle between two values of the type (so that
    libm's own rounding could go either way), or anything is special (zero,
    negative or non-finite operands, results beyond the normal range), take the
    scalar ``**`` itself.
    """
    a, b = np.broadcast_arrays(np.asarray(a), np.asarray(b))
    dt = a.dtype
    wide = _WIDER.get(dt)
    if wide is None:  # no wider type here: the scalar path on every lane
        hard = np.ones(a.shape, bool)
        r = np.zeros(a.shape, dt)
    else:
        w = np.power(a.astype(wide), b.astype(wide))
        r = w.astype(dt)
        lo = r.astype(wide)
        toward = np.where(w > lo, np.array(np.inf, dt), np.array(-np.inf, dt))
        hi = np.nextafter(r, toward).astype(wide)
        gap = np.abs(hi - lo)
        near_mid = np.abs(w - (lo + hi) / 2) < gap / 16
        tiny = np.finfo(dt).tiny
        hard = (near_mid | ~np.isfinite(w) | ~np.isfinite(a) | ~np.isfinite(b) | (a <= 0)
                | (np.abs(r) < tiny) | (np.abs(r) > np.finfo(dt).max / 2))
    for i in np.flatnonzero(hard).tolist():
        r.flat[i] = a.flat[i] ** b.flat[i]
    return r


_SPLIT = 134217729.0  # 2**27 + 1: Dekker's splitting constant for float64


def _two_sum(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = x + y
    bb = s - x
    return s, (x - (s - bb)) + (y - bb)


def _fma64(a: Any, b: Any, c: Any) -> np.ndarray:
    """f64 ``a * b + c`` with one rounding per lane (the reference's ``fma64``), vectorised.

    Dekker's exact product, an exact sum, and Boldo and Melquiond's rounding to
    odd of the low part (``RN(th + RO(tl + ul))`` is the correctly rounded
    result; zeros are signed as IEEE's fma signs them, as in the reference). Lanes where the
    product could overflow or underflow, or an operand is not finite, take the
    exact scalar computation (:func:`_fma64s`).
    """
    a, b, c = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in (a, b, c)))
    f8 = np.float64
    # Exact product a*b = uh + ul (Dekker).
    ca, cb = a * _SPLIT, b * _SPLIT
    ah = ca - (ca - a)
    bh = cb - (cb - b)
    al, bl = a - ah, b - bh
    uh = a * b
    ul = ((ah * bh - uh) + ah * bl + al * bh) + al * bl
    th, tl = _two_sum(c, uh)
    v, e = _two_sum(tl, ul)
    # Round v to odd: when inexact and its last bit is even, step toward the exact value.
    even = (v.view(np.int64) & 1) == 0
    step = (e != 0) & even
    v = np.where(step, np.nextafter(v, np.where(e > 0, f8(np.inf), f8(-np.inf))), v)
    r = th + v
    big, small = 2.0 ** 500, 2.0 ** -450
    safe = (np.isfinite(a) & np.isfinite(b) & np.isfinite(c) & (np.abs(a) < big) & (np.abs(b) < big)
            & (np.abs(c) < 2.0 ** 1000) & (((np.abs(a) > small) & (np.abs(b) > small)) | (a == 0) | (b == 0)))
    zero = (a == 0) | (b == 0)
    r = np.where(zero & safe, a * b + c, r)  # an exact zero product: IEEE's signed-zero sum
    for i in np.flatnonzero(~safe).tolist():
        r.flat[i] = _fma64s(a.flat[i], b.flat[i], c.flat[i])
    return r


def _fma64s(a: Any, b: Any, c: Any) -> np.float64:
    """f64 ``a * b + c`` with one rounding, for scalars: the reference's own ``builtins.fma64``."""
    return np.float64(fma64(float(a), float(b), float(c)))


def _typed_int(dt: Any):
    """A fast ``dt(x)`` for loop counters: numpy 2 takes ~0.7 us to make a scalar from a Python int."""
    dt = np.dtype(dt)
    info = np.iinfo(dt)
    lo, hi = max(int(info.min), -256), min(int(info.max), 4095)
    table = tuple(np.arange(lo, hi + 1, dtype=np.int64).astype(dt))
    make = dt.type

    def typed(x: int) -> Any:
        i = x - lo
        return table[i] if 0 <= i < len(table) else make(x)

    typed.__name__ = f"_t{dt.name}"
    return typed


def _fill(lanes: np.ndarray, v: Any, dt: Any) -> np.ndarray:
    return np.full(len(lanes), v, dt)


def _tile(lanes: np.ndarray, a: np.ndarray) -> np.ndarray:
    return np.tile(a, (len(lanes), 1))


def _zfill(lanes: np.ndarray, dt: Any, size: int | None) -> np.ndarray:
    return np.zeros(len(lanes) if size is None else (len(lanes), size), dt)


def _scatter(n: int, lanes: np.ndarray, vals: Any, dt: Any) -> np.ndarray:
    r = np.zeros(n, dt)
    r[lanes] = vals
    return r


def _merge(m: Any, lanes: np.ndarray, vals: Any, old: np.ndarray) -> np.ndarray:
    if m is None:
        return np.asarray(vals, old.dtype)
    r = old.copy()
    r[lanes] = vals
    return r


def _seq(op: str, cur: Any, vals: np.ndarray, exps: Any, dt: Any) -> tuple[np.ndarray, Any]:
    """Apply atomic ``op`` with ``vals`` one after another to a slot holding ``cur``: (old values, final)."""
    k = len(vals)
    if op in ("add", "sub"):
        ufunc = np.add if op == "add" else np.subtract
        acc = ufunc.accumulate(np.concatenate((np.array([cur], dt), vals)), dtype=dt)
        return acc[:-1], acc[-1]
    if op == "exchange":
        return np.concatenate((np.array([cur], dt), vals[:-1])), vals[-1]
    if op in ("min", "max"):
        simple = dt.kind != "f"
        if not simple:
            allv = np.concatenate((np.array([cur], dt), vals))
            simple = not (np.isnan(allv).any() or (allv == 0).any())
        if simple:
            ufunc = np.minimum if op == "min" else np.maximum
            acc = ufunc.accumulate(np.concatenate((np.array([cur], dt), vals)), dtype=dt)
            return acc[:-1], acc[-1]
    old = np.empty(k, dt)
    pick = _mins if op == "min" else _maxs
    for j in range(k):  # cas, and min/max of floats with NaN or signed zeros: Python's rule, in order
        old[j] = cur
        if op == "cas":
            if cur == exps[j]:
                cur = vals[j]
        else:
            cur = pick(cur, vals[j])
    return old, cur


def _atomic(op: str, arr: np.ndarray, idx: Any, m: Any, n: int, val: Any, exp: Any = None) -> np.ndarray:
    """An atomic read-modify-write of state ``arr`` by the lanes of ``m``, in lane order.

    Returns every lane's old value (zero for lanes that are not running), exactly
    as running the lanes one after another would.
    """
    dt = arr.dtype
    lanes = _lanes(m, n)
    k = len(lanes)
    if k == 0:
        return np.zeros(n, dt)
    vals = val[lanes] if _isvec(val) else np.full(k, val, dt)
    exps = None
    if op == "cas":
        exps = exp[lanes] if _isvec(exp) else np.full(k, exp, dt)
    if not _isvec(idx):
        slot = 0 if idx is None else int(idx)
        old, final = _seq(op, arr[slot], vals, exps, dt)
        arr[slot] = final
    else:
        pos = idx[lanes].astype(np.intp)
        order = np.argsort(pos, kind="stable")
        sp, sv = pos[order], vals[order]
        se = exps[order] if exps is not None else None
        uniq, starts = np.unique(sp, return_index=True)
        if op in ("add", "sub") and dt.kind in "ui":
            # Integer addition wraps, so it is associative: per-slot exclusive prefix sums.
            cs = np.cumsum(sv, dtype=dt)
            before = np.where(starts > 0, cs[starts - 1], dt.type(0)).astype(dt)
            counts = np.diff(np.append(starts, k))
            group = np.repeat(np.arange(len(uniq)), counts)
            excl = cs - sv - before[group]
            base = arr[uniq]
            totals = cs[np.append(starts[1:], k) - 1] - before
            if op == "add":
                old_sorted = base[group] + excl
                arr[uniq] = base + totals
            else:
                old_sorted = base[group] - excl
                arr[uniq] = base - totals
        else:
            old_sorted = np.empty(k, dt)
            bounds = np.append(starts, k)
            for g, slot in enumerate(uniq.tolist()):
                lo, hi = bounds[g], bounds[g + 1]
                o, final = _seq(op, arr[slot], sv[lo:hi], None if se is None else se[lo:hi], dt)
                old_sorted[lo:hi] = o
                arr[slot] = final
        old = np.empty(k, dt)
        old[order] = old_sorted
    if m is None:
        return old
    out = np.zeros(n, dt)
    out[lanes] = old
    return out


_RUNTIME = [
    "KernelFail", "_and", "_andnot", "_mand", "_minus", "_or", "_norm", "_any", "_lanes", "_st", "_setcol",
    "_setel", "_copyrows", "_zerorows", "_put", "_fail", "_acc", "_ix", "_cu", "_trips", "_tripsv",
    "_maxtrips", "_itv", "_mins", "_maxs", "_minv", "_maxv", "_fma32", "_fill", "_tile", "_zfill",
    "_scatter", "_merge", "_atomic", "_powv", "_fma64", "_fma64s", "_typed_int",
]


# -- static analysis -----------------------------------------------------------------------------

_EFFECTS = (Atomic, Send, Publish, CallFunc)


def _effectful(e: Expr) -> bool:
    return any(isinstance(x, _EFFECTS) for x in walk_exprs(e))


def _assigned(body: list[Stmt]) -> set[str]:
    """Locals written anywhere in ``body``."""
    out: set[str] = set()
    for s in walk_stmts(body):
        if isinstance(s, Assign) and s.ref.space == "local":
            out.add(s.ref.name)
        elif isinstance(s, ArrayCopy) and s.dst.space == "local":
            out.add(s.dst.name)
        elif isinstance(s, ArrayZero) and s.ref.space == "local":
            out.add(s.ref.name)
        elif isinstance(s, Tick):
            out.update(r.name for r in (s.physical, s.logical) if r is not None)
        elif isinstance(s, For):
            out.add(s.var)
    return out


def _local_loads(body: list[Stmt], name: str) -> int:
    n = 0
    for s in walk_stmts(body):
        for e in stmt_exprs(s):
            for x in walk_exprs(e):
                if isinstance(x, Load) and x.ref.space == "local" and x.ref.name == name:
                    n += 1
        if isinstance(s, ArrayCopy) and s.src.space == "local" and s.src.name == name:
            n += 1
        if isinstance(s, Return) and isinstance(s.value, MsgValue):
            n += sum(1 for v in s.value.fields.values() if isinstance(v, Ref) and v.space == "local"
                     and v.name == name)
        for e in stmt_exprs(s):
            for x in walk_exprs(e):
                if isinstance(x, Send):
                    n += sum(1 for v in x.msg.fields.values() if isinstance(v, Ref) and v.space == "local"
                             and v.name == name)
    return n


def _free_loads(stmts: list[Stmt], name: str) -> int:
    """Loads of local ``name`` that can see a value from outside a ``for name in ...`` loop.

    Inside such a loop's body the variable is that loop's own; its bounds are
    evaluated before, so they count.
    """
    n = 0
    for s in stmts:
        if isinstance(s, For):
            n += sum(_local_loads([Eval(x)], name) for x in (s.start, s.stop, s.step))
            if s.var != name:
                n += _free_loads(s.body, name)
            continue
        if isinstance(s, If):
            n += _local_loads([Eval(s.cond)], name) + _free_loads(s.then, name) + _free_loads(s.orelse, name)
        elif isinstance(s, While):
            n += _local_loads([Eval(s.cond)], name) + _free_loads(s.body, name)
        else:
            n += _local_loads([s], name)
    return n


def _dead(stmts: list[Stmt]) -> bool:
    """Whether control never reaches the end of ``stmts``."""
    return any(_stmt_dead(s) for s in stmts)


def _stmt_dead(s: Stmt) -> bool:
    if isinstance(s, (Return, Fail, Break, Continue)):
        return True
    if isinstance(s, If):
        return _dead(s.then) and _dead(s.orelse)
    return False


def _mentions(s: Stmt, name: str) -> bool:
    """Whether statement ``s`` (or one inside it) reads or writes local ``name``."""
    for st in walk_stmts([s]):
        refs: list[Ref] = []
        if isinstance(st, Assign):
            refs.append(st.ref)
        elif isinstance(st, ArrayCopy):
            refs += [st.dst, st.src]
        elif isinstance(st, ArrayZero):
            refs.append(st.ref)
        elif isinstance(st, Tick):
            refs += [r for r in (st.physical, st.logical) if r is not None]
        elif isinstance(st, Return) and isinstance(st.value, MsgValue):
            refs += [v for v in st.value.fields.values() if isinstance(v, Ref)]
        elif isinstance(st, For) and st.var == name:
            return True
        for e in stmt_exprs(st):
            for x in walk_exprs(e):
                if isinstance(x, Load):
                    refs.append(x.ref)
                elif isinstance(x, Send | Publish):
                    refs += [v for v in x.msg.fields.values() if isinstance(v, Ref)]
        if any(r.space == "local" and r.name == name for r in refs):
            return True
    return False


class _Uniformity:
    """Which locals of a vectorised function hold the same value in every running lane.

    A local is uniform when every assignment to it stores a uniform value under
    uniform control flow (not inside an ``if`` or loop whose condition, trip
    count or ``break``/``continue`` depend on the lane). Lanes that return or
    fail leave for good, so those do not make control flow non-uniform.
    """

    def __init__(self, body: list[Stmt], varying: set[str], may_fail: set[str]) -> None:
        self.varying = set(varying)
        self.may_fail = may_fail
        while True:
            before = len(self.varying)
            self._walk(body, False, frozenset())
            if len(self.varying) == before:
                break

    def uniform(self, e: Expr, bound: Any) -> bool:
        if isinstance(e, Const):
            return True
        if isinstance(e, Load):
            r = e.ref
            if r.space == "msg":
                return False
            if r.index is not None and not self.uniform(r.index, bound):
                return False
            if r.space == "state":
                return True  # read-only in a parallel kernel
            if r.index is None and r.name in bound:
                return True
            return r.name not in self.varying
        if isinstance(e, CtxValue):
            return e.name == "kernel_number"
        if isinstance(e, _EFFECTS):
            return False
        if isinstance(e, Unary | Cast):
            return self.uniform(e.operand, bound)
        if isinstance(e, Binary | Compare | Logical):
            return self.uniform(e.left, bound) and self.uniform(e.right, bound)
        if isinstance(e, Select):
            return all(self.uniform(x, bound) for x in (e.cond, e.a, e.b))
        if isinstance(e, Builtin):
            return all(self.uniform(x, bound) for x in e.args)
        raise TypeError(f"unknown expression {e!r}")

    def ref_uniform(self, r: Ref) -> bool:
        """Whether a whole array is the same in every lane."""
        if r.space == "msg":
            return False
        if r.space == "state":
            return True
        return r.name not in self.varying

    def for_binds(self, s: For, bound: Any) -> bool:
        """Whether the loop variable is one Python value per iteration inside the body."""
        return (self.uniform(s.start, bound) and self.uniform(s.step, bound)
                and s.var not in _assigned(s.body))

    def loop_divergent(self, s: While | For, div: bool, bound: Any) -> tuple[bool, Any]:
        """(whether the body runs under lane-dependent control, the bound loop variables inside it)."""
        if isinstance(s, While):
            d = div or not self.uniform(s.cond, bound)
            inner = bound
        else:
            d = div or not all(self.uniform(x, bound) for x in (s.start, s.stop, s.step))
            inner = bound | {s.var} if self.for_binds(s, bound) else bound - {s.var}
        return d or self._escapes(s.body, False, inner), inner

    def _escapes(self, stmts: list[Stmt], div: bool, bound: Any) -> bool:
        """Whether some lanes may break/continue while others go on (at this loop's level)."""
        for s in stmts:
            if isinstance(s, (Break, Continue)) and div:
                return True
            if isinstance(s, If):
                d = div or not self.uniform(s.cond, bound)
                if self._escapes(s.then, d, bound) or self._escapes(s.orelse, d, bound):
                    return True
        return False

    def _mark(self, name: str) -> None:
        self.varying.add(name)

    def _walk(self, stmts: list[Stmt], div: bool, bound: Any) -> None:
        for s in stmts:
            if isinstance(s, Assign):
                r = s.ref
                if r.space == "local" and (div or not self.uniform(s.value, bound)
                                           or (r.index is not None and not self.uniform(r.index, bound))):
                    self._mark(r.name)
            elif isinstance(s, ArrayCopy):
                if s.dst.space == "local" and (div or not self.ref_uniform(s.src)):
                    self._mark(s.dst.name)
            elif isinstance(s, ArrayZero):
                if div and s.ref.space == "local":
                    self._mark(s.ref.name)
            elif isinstance(s, Tick):
                for r in (s.physical, s.logical):
                    if r is not None:
                        self._mark(r.name)
            elif isinstance(s, If):
                d = div or not self.uniform(s.cond, bound)
                self._walk(s.then, d, bound)
                self._walk(s.orelse, d, bound)
            elif isinstance(s, While):
                d, inner = self.loop_divergent(s, div, bound)
                self._walk(s.body, d, inner)
            elif isinstance(s, For):
                d, inner = self.loop_divergent(s, div, bound)
                if d or not (self.uniform(s.start, bound) and self.uniform(s.step, bound)):
                    self._mark(s.var)
                self._walk(s.body, d, inner)


def _func_may_fail(funcs: dict[str, Function]) -> set[str]:
    """Names of the functions that can fail (directly or through a call)."""
    direct: dict[str, set[str]] = {}
    failing: set[str] = set()
    for name, f in funcs.items():
        calls: set[str] = set()
        for s in walk_stmts(f.body):
            if isinstance(s, Fail):
                failing.add(name)
            for e in stmt_exprs(s):
                calls.update(x.name for x in walk_exprs(e) if isinstance(x, CallFunc))
        direct[name] = calls
    changed = True
    while changed:
        changed = False
        for name, calls in direct.items():
            if name not in failing and calls & failing:
                failing.add(name)
                changed = True
    return failing


# -- code generation -----------------------------------------------------------------------------

_BINOPS = {"add": "+", "sub": "-", "mul": "*", "div": "/", "floordiv": "//", "mod": "%",
           "lshift": "<<", "rshift": ">>", "and_": "&", "or_": "|", "xor": "^"}
_CMPOPS = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}
_MATH = {"sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil"}


def _np(t: ScalarType) -> str:
    """The numpy scalar type of ``t``, as source."""
    return "np.bool_" if t.kind == "b" else f"np.{t.dtype.name}"


def _ident(s: str) -> str:
    return re.sub(r"\W", "_", s)


class _Mask:
    """A mask variable of the generated code; ``all`` when it is statically known to be None."""

    def __init__(self, name: str, all_lanes: bool) -> None:
        self.name = name
        self.all = all_lanes


class _Module:
    """Everything one generated module holds: constants, functions and ``run``."""

    def __init__(self, kir: KernelIR) -> None:
        self.kir = kir
        self.consts: dict[tuple[str, str], str] = {}
        self.const_lines: list[str] = []
        self.may_fail = _func_may_fail(kir.funcs)
        self.func_names = {name: "f_" + _ident(name) for name in kir.funcs}
        self.src_lines = kir.source.splitlines()

    def const(self, t: ScalarType, value: Any) -> str:
        key = (t.name, repr(value))
        name = self.consts.get(key)
        if name is not None:
            return name
        if t.kind == "b":
            name, code = ("k_true", "np.True_") if value else ("k_false", "np.False_")
        elif t.is_integer:
            v = int(value)
            name = f"k_{t.name}_{'m' if v < 0 else ''}{abs(v)}"
            code = f"{_np(t)}({v})"
        else:
            v = float(value)
            r = repr(v)
            name = "k_" + t.name + "_" + r.replace("-", "m").replace(".", "_").replace("+", "p")
            code = f"{_np(t)}({r})" if np.isfinite(v) else f"{_np(t)}({r!r})"
        self.consts[key] = name
        self.const_lines.append(f"{name} = {code}")
        return name

    def typed_int(self, t: ScalarType) -> str:
        """The name of the module's fast converter of Python ints to ``t`` (loop counters)."""
        name = f"_t{t.dtype.name}"
        key = ("typed", name)
        if key not in self.consts:
            self.consts[key] = name
            self.const_lines.append(f"{name} = _typed_int({_np(t)})")
        return name

    def range_values(self, t: ScalarType, a: int, b: int, c: int) -> str | None:
        """A module constant: the values of ``range(a, b, c)`` as ``t`` scalars (None when long)."""
        r = range(a, b, c)
        if len(r) > 4096:
            return None
        name = "r_" + t.name + "_" + "_".join(("m" if v < 0 else "") + str(abs(v)) for v in (a, b, c))
        key = ("range", name)
        if key not in self.consts:
            self.consts[key] = name
            vals = ", ".join(str(v) for v in r)
            self.const_lines.append(f"{name} = tuple(np.array([{vals}], np.int64).astype({_np(t)}))"
                                    if t.dtype != np.uint64 or b <= 2**63 else
                                    f"{name} = tuple({_np(t)}(v) for v in range({a}, {b}, {c}))")
        return name

    def zero(self, t: ScalarType) -> str:
        return self.const(t, False if t.kind == "b" else (0.0 if t.is_float else 0))

    def source_line(self, line: int) -> str:
        k = line - self.kir.first_line
        if 0 <= k < len(self.src_lines):
            return self.src_lines[k].strip()
        return ""

    def source(self) -> str:
        kir = self.kir
        funcs: list[str] = []
        for f in kir.funcs.values():
            g = _FnGen(self, f.body, f.locals, is_kernel=False, serial=kir.serial, func=f)
            funcs.append(g.function())
        g = _FnGen(self, kir.body, kir.locals, is_kernel=True, serial=kir.serial)
        run = g.function()
        mode = "serial: one message after another, in order" if kir.serial else \
            "vectorised over the batch (one lane per message)"
        head = [
            f"# Generated by ringcore's numpy target for kernel {kir.name!r} ({kir.filename}:{kir.first_line}).",
            f"# {mode}. The ABI of run() is in ringcore/lang/targets/__init__.py.",
            "import numpy as np",
            "",
            "from ringcore.lang.targets.numpy import (",
        ]
        names = list(_RUNTIME)
        for i in range(0, len(names), 8):
            head.append("    " + ", ".join(names[i:i + 8]) + ",")
        head.append(")")
        head.append("")
        parts = ["\n".join(head)]
        if self.const_lines:
            parts.append("\n".join(self.const_lines) + "\n")
        parts.extend(funcs)
        parts.append(run)
        return "\n\n".join(parts) + "\n"


class _FnGen:
    """Generates the Python code of the kernel's ``run`` or of one ``@ringcore.func`` function."""

    def __init__(self, mod: _Module, body: list[Stmt], local_types: dict[str, Any], *, is_kernel: bool,
                 serial: bool, func: Function | None = None) -> None:
        self.mod = mod
        self.kir = mod.kir
        self.body = body
        self.types = local_types
        self.is_kernel = is_kernel
        self.serial = serial
        self.func = func
        self.lines: list[str] = []
        self.prefix = ""
        self.ind = 0
        self.ntmp = 0
        self.names: dict[str, str] = {}
        used: set[str] = set()
        for name in local_types:
            base = "v_" + _ident(name)
            cand, k = base, 1
            while cand in used:
                k += 1
                cand = f"{base}_{k}"
            used.add(cand)
            self.names[name] = cand
        self.bound: dict[str, tuple[str, int | None, int | None]] = {}
        self.loops: list[str | None] = []  # break-mask variable of each enclosing loop (None: no break)
        self.last_line: int | None = None
        self.uses: set[str] = set()  # prologue bindings the body needs
        params = [p for p, _ in func.params] if func is not None else []
        self.an = None if serial else _Uniformity(body, set(params), mod.may_fail)
        self.needs_alive = not serial and self._loops_may_exit(body)
        self.zmask = "_Z"
        self.aliases, self.skip_zero = self._reply_aliases() if is_kernel and not serial else ({}, set())
        self.state_scalars, self.state_lists = self._state_cache() if is_kernel and serial else (set(), set())

    def _reply_aliases(self) -> tuple[dict[str, str], set[int]]:
        """Per-lane local arrays that can live in the reply's own field (no copy at ``return``).

        A local array that every ``return`` mentioning it puts into the same reply
        field can be that field: the caller zero-fills ``out``, lanes that reply
        with something else overwrite their row, and the rows of lanes that do not
        reply are not read. Its first zeroing is then free when nothing touched it before.
        """
        kir = self.kir
        if kir.output is None:
            return {}, set()
        uses: dict[str, set[str]] = {}
        for s in walk_stmts(self.body):
            if isinstance(s, Return) and isinstance(s.value, MsgValue):
                for field, v in s.value.fields.items():
                    if isinstance(v, Ref) and v.space == "local":
                        uses.setdefault(v.name, set()).add(field)
        aliases: dict[str, str] = {}
        for name, fields in uses.items():
            t = self.types.get(name)
            if len(fields) != 1 or not isinstance(t, ArrayType) or name not in self.an.varying:
                continue
            field = next(iter(fields))
            if kir.output.fields.get(field) == t and field not in aliases.values():
                aliases[name] = field
        skip: set[int] = set()
        for name in aliases:
            for s in self.body:
                if _mentions(s, name):
                    if isinstance(s, ArrayZero) and s.ref.name == name:
                        skip.add(id(s))
                    break
        return aliases, skip

    def _state_cache(self) -> tuple[set[str], set[str]]:
        """State a serial kernel keeps in Python variables for the batch (written back at the end).

        Scalar fields, and array fields of at most 1024 elements that are only
        used element by element (as a list of numpy scalars: an element access
        costs a tenth of a numpy one). Nothing else reads the state while
        ``run`` runs.
        """
        scalars: set[str] = set()
        arrays: set[str] = set()
        whole: set[str] = set()
        for st in walk_stmts(self.body):
            refs: list[Ref] = []
            if isinstance(st, Assign):
                refs.append(st.ref)
            elif isinstance(st, ArrayCopy):
                whole.update(r.name for r in (st.dst, st.src) if r.space == "state")
            elif isinstance(st, ArrayZero) and st.ref.space == "state":
                whole.add(st.ref.name)
            elif isinstance(st, Return) and isinstance(st.value, MsgValue):
                whole.update(v.name for v in st.value.fields.values() if isinstance(v, Ref) and v.space == "state")
            for e in stmt_exprs(st):
                for x in walk_exprs(e):
                    if isinstance(x, Load | Atomic):
                        refs.append(x.ref)
                    elif isinstance(x, Send | Publish):
                        whole.update(v.name for v in x.msg.fields.values() if isinstance(v, Ref) and v.space == "state")
            for r in refs:
                if r.space == "state":
                    (scalars if isinstance(self.kir.state[r.name], ScalarType) else arrays).add(r.name)
        lists = {a for a in arrays - whole if self.kir.state[a].size <= 1024}
        return scalars, lists

    def scell(self, name: str, idx: str | None) -> str:
        """A state element as a serial kernel reads and assigns it."""
        if name in self.state_scalars:
            self.uses.add(f"state:{name}")
            return f"sv_{name}"
        if name in self.state_lists:
            self.uses.add(f"state:{name}")
            return f"sl_{name}[{idx}]"
        a = self.arr("state", name)
        return f"{a}[0]" if idx is None else f"{a}[{idx}]"

    # -- emission helpers --

    def line(self, s: str, end: str = "\n") -> None:
        """Emit a line; ``end=""`` keeps ``s`` as the start of the next line (``el`` + ``if ...``)."""
        if end == "":
            self.prefix += s
            return
        self.lines.append("    " * self.ind + self.prefix + s)
        self.prefix = ""

    def tmp(self, hint: str = "t") -> str:
        self.ntmp += 1
        return f"_{hint}{self.ntmp}"

    def comment(self, s: Stmt) -> None:
        if s.pos is None or s.pos.line == self.last_line:
            return
        self.last_line = s.pos.line
        text = self.mod.source_line(s.pos.line) if self.is_kernel else ""
        self.line(f"# line {s.pos.line}: {text}" if text else f"# line {s.pos.line}")

    def U(self, e: Expr) -> bool:
        return True if self.serial else self.an.uniform(e, self.bound)

    def calls_may_fail(self, e: Expr) -> bool:
        return any(isinstance(x, CallFunc) and x.name in self.mod.may_fail for x in walk_exprs(e))

    def _may_exit(self, stmts: list[Stmt]) -> bool:
        """Whether a statement of ``stmts`` can return, fail or call a function that fails."""
        for s in walk_stmts(stmts):
            if isinstance(s, (Return, Fail)):
                return True
            if any(self.calls_may_fail(e) for e in stmt_exprs(s)):
                return True
        return False

    def _loops_may_exit(self, body: list[Stmt]) -> bool:
        return any(isinstance(s, (While, For)) and self._may_exit(s.body) for s in walk_stmts(body))

    def _may_narrow(self, stmts: list[Stmt], depth: int = 0) -> bool:
        """Whether running ``stmts`` can take lanes out of the mask it started with."""
        for s in stmts:
            if isinstance(s, (Return, Fail)):
                return True
            if isinstance(s, (Break, Continue)) and depth == 0:
                return True
            if any(self.calls_may_fail(e) for e in stmt_exprs(s)):
                return True
            if isinstance(s, If) and (self._may_narrow(s.then, depth) or self._may_narrow(s.orelse, depth)):
                return True
            if isinstance(s, (While, For)) and self._may_narrow(s.body, depth + 1):
                return True
        return False

    def name(self, local: str) -> str:
        return self.names[local]

    def local_type(self, name: str) -> Any:
        return self.types[name]

    def field_type(self, space: str, name: str) -> Any:
        if space == "msg":
            return self.kir.input.fields[name]
        if space == "state":
            return self.kir.state[name]
        return self.types[name]

    def arr(self, space: str, name: str) -> str:
        """The variable holding a message/state/reply field."""
        prefix = {"msg": "m_", "state": "s_", "out": "o_"}[space]
        v = prefix + name
        self.uses.add(f"{space}:{name}")
        return v

    # -- expressions --

    def ex(self, e: Expr, M: _Mask | None) -> str:
        """Source for ``e``; statements for its effects (atomics, sends, calls) are emitted first."""
        if not _effectful(e):
            return self.pure(e)
        kids = self.kids(e)
        codes: list[str] = []
        for i, k in enumerate(kids):
            c = self.ex(k, M)
            if not _effectful(k) and any(_effectful(x) for x in kids[i + 1:]):
                t = self.tmp()
                self.line(f"{t} = {c}")
                c = t
            codes.append(c)
        return self.node(e, codes, M)

    def pure(self, e: Expr) -> str:
        return self.node(e, [self.pure(k) for k in self.kids(e)], None)

    @staticmethod
    def kids(e: Expr) -> list[Expr]:
        if isinstance(e, Load):
            return [e.ref.index] if e.ref.index is not None else []
        if isinstance(e, Unary | Cast):
            return [e.operand]
        if isinstance(e, Binary | Compare | Logical):
            return [e.left, e.right]
        if isinstance(e, Select):
            return [e.cond, e.a, e.b]
        if isinstance(e, Builtin | CallFunc):
            return list(e.args)
        if isinstance(e, Atomic):
            out = [e.expected] if e.expected is not None else []
            out.append(e.value)
            if e.ref.index is not None:
                out.append(e.ref.index)
            return out
        if isinstance(e, Send | Publish):
            out = [e.target] if isinstance(e, Send) and isinstance(e.target, Expr) else []
            out.extend(v for v in e.msg.fields.values() if isinstance(v, Expr))
            return out
        return []

    def node(self, e: Expr, c: list[str], M: _Mask | None) -> str:
        if isinstance(e, Const):
            return self.mod.const(e.type, e.value)
        if isinstance(e, Load):
            return self.load(e.ref, c[0] if c else None)
        if isinstance(e, Unary):
            return f"(-{c[0]})" if e.op == "neg" else f"(~{c[0]})"
        if isinstance(e, Binary):
            if e.op == "pow":  # ``**``: numpy's scalar path (libm's pow), as in the reference
                return f"({c[0]} ** {c[1]})" if self.U(e) else f"_powv({c[0]}, {c[1]})"
            return f"({c[0]} {_BINOPS[e.op]} {c[1]})"
        if isinstance(e, Compare):
            return f"({c[0]} {_CMPOPS[e.op]} {c[1]})"
        if isinstance(e, Logical):
            return f"({c[0]} {'&' if e.op == 'and' else '|'} {c[1]})"
        if isinstance(e, Select):
            if self.U(e):
                return f"({c[1]} if {c[0]} else {c[2]})"
            return f"np.where({c[0]}, {c[1]}, {c[2]})"
        if isinstance(e, Cast):
            return self.cast(e.operand.type, e.type, c[0])
        if isinstance(e, Builtin):
            return self.builtin(e, c)
        if isinstance(e, CtxValue):
            if e.name == "kernel_number":
                self.uses.add("knum")
                return "knum"
            if e.name.startswith("header."):
                field = e.name.split(".", 1)[1]
                self.uses.add(f"header:{field}")
                if self.serial:
                    self.uses.add("lane")
                    return f"h_{field}[lane]"
                return f"h_{field}"
            self.uses.add("tid")
            return "tid"
        if isinstance(e, Atomic):
            return self.atomic(e, c, M)
        if isinstance(e, Send | Publish):
            return self.send(e, c, M)
        if isinstance(e, CallFunc):
            return self.call(e, c, M)
        raise TypeError(f"unknown expression {e!r}")

    def cast(self, src: ScalarType, dst: ScalarType, a: str) -> str:
        if src.name == dst.name or src.dtype == dst.dtype:
            return a
        if dst.kind == "b":
            return f"({a} != {self.mod.zero(src)})"
        if src.is_float and dst.is_integer:
            if dst.dtype == np.int64:
                return f"{a}.astype(np.int64)"
            return f"{a}.astype(np.int64).astype({_np(dst)})"
        return f"{a}.astype({_np(dst)})"

    def builtin(self, e: Builtin, c: list[str]) -> str:
        n = e.name
        u = self.U(e)
        if n == "abs":
            return c[0] if e.type.kind in "ub" else f"np.abs({c[0]})"
        if n in ("min", "max"):
            return f"_{n}{'s' if u else 'v'}({c[0]}, {c[1]})"
        if n == "clamp":
            s = "s" if u else "v"
            return f"_min{s}(_max{s}({c[0]}, {c[1]}), {c[2]})"
        if n in _MATH:
            return f"np.{n}({c[0]})"
        if n == "pow":  # the reference is ``x ** y`` on numpy scalars
            return f"({c[0]} ** {c[1]})" if u else f"_powv({c[0]}, {c[1]})"
        if n == "isnan":
            return f"np.isnan({c[0]})"
        if n == "fma":
            if e.type.dtype == np.float32:
                return f"_fma32({c[0]}, {c[1]}, {c[2]})"
            return f"_fma64{'s' if u else ''}({c[0]}, {c[1]}, {c[2]})"
        raise TypeError(f"unknown builtin {n!r}")

    def uidx(self, idx: Expr, code: str, size: int) -> str:
        """A uniform index, clipped unless it is provably in range."""
        lo = hi = None
        if isinstance(idx, Const):
            lo = hi = int(idx.value)
        elif isinstance(idx, Load) and idx.ref.space == "local" and idx.ref.index is None \
                and idx.ref.name in self.bound:
            _, lo, hi = self.bound[idx.ref.name]
        if lo is not None and hi is not None and 0 <= lo and hi < size:
            return code
        return f"_cu({code}, {size})"

    def load(self, r: Ref, idx: str | None) -> str:
        if self.serial:
            if r.space == "local":
                return self.name(r.name) if idx is None else f"{self.name(r.name)}[{idx}]"
            if r.space == "state":
                return self.scell(r.name, idx)
            a = self.arr(r.space, r.name)
            self.uses.add("lane")
            return f"{a}[lane]" if idx is None else f"{a}[lane, {idx}]"
        if r.space == "local":
            if r.index is None:
                if r.name in self.bound:
                    return self.bound[r.name][0]
                return self.name(r.name)
            v = self.name(r.name)
            rows = r.name in self.an.varying
        elif r.space == "msg":
            v = self.arr("msg", r.name)
            if r.index is None:
                return v
            rows = True
        else:
            v = self.arr("state", r.name)
            if r.index is None:
                return f"{v}[0]"
            rows = False
        size = self.field_type(r.space, r.name).size
        iu = self.U(r.index)
        if rows:
            if iu:
                return f"{v}[:, {self.uidx(r.index, idx, size)}]"
            self.uses.add("ar")
            return f"{v}[_ar, _ix({idx}, {size})]"
        if iu:
            return f"{v}[{self.uidx(r.index, idx, size)}]"
        return f"{v}[_ix({idx}, {size})]"

    def whole(self, r: Ref) -> tuple[str, bool]:
        """(source, per-lane rows?) of a whole array."""
        if r.space == "local":
            return self.name(r.name), (not self.serial and r.name in self.an.varying)
        a = self.arr(r.space, r.name)
        if r.space == "msg":
            if self.serial:
                self.uses.add("lane")
                return f"{a}[lane]", False
            return a, True
        return a, False

    # effects

    def atomic(self, e: Atomic, c: list[str], M: _Mask | None) -> str:
        c = list(c)
        exp = c.pop(0) if e.expected is not None else None
        val = c.pop(0)
        idx = c.pop(0) if e.ref.index is not None else None
        t = self.tmp("old")
        if self.serial:
            cell = self.scell(e.ref.name, idx)
            self.line(f"{t} = {cell}")
            if e.op == "cas":
                self.line(f"if {t} == {exp}:")
                self.line(f"    {cell} = {val}")
            else:
                new = {"add": f"{t} + {val}", "sub": f"{t} - {val}", "min": f"_mins({t}, {val})",
                       "max": f"_maxs({t}, {val})", "exchange": val}[e.op]
                self.line(f"{cell} = {new}")
            return t
        a = self.arr("state", e.ref.name)
        self.uses.add("n")
        extra = f", {exp}" if exp is not None else ""
        self.line(f"{t} = _atomic({e.op!r}, {a}, {idx if idx is not None else 'None'}, {M.name}, n, {val}{extra})")
        return t

    def send(self, e: Send | Publish, c: list[str], M: _Mask | None) -> str:
        """``ctx.send`` (``env.send``) or ``ctx.publish`` (``env.publish``) of one message per running lane."""
        c = list(c)
        publish = isinstance(e, Publish)
        target = c.pop(0) if not publish and isinstance(e.target, Expr) else None
        method = "env.publish" if publish else "env.send"
        dest = e.topic if publish else e.target
        spec = e.msg.spec
        r = self.tmp("published" if publish else "sent")
        if self.serial:
            self.uses.add("lane")
            lanes = "np.array([lane], np.int64)"
            tgt = repr(dest) if target is None else f"np.array([{target}], np.uint32)"
            fields = []
            for name, t in spec.fields.items():
                v = e.msg.fields.get(name)
                if isinstance(v, Expr):
                    code = c.pop(0)
                    fields.append(f"{name!r}: np.array([{code}], {_np(t)})")
                elif isinstance(v, Ref):
                    src, _ = self.whole(v)
                    fields.append(f"{name!r}: np.array({src}, {_np(t.elem)}).reshape(1, -1)")
                else:
                    fields.append(f"{name!r}: {self.zeros1(t)}")
            self.line(f"{r} = {method}({tgt}, {spec.type_id:#x}, {lanes}, {{{', '.join(fields)}}})[0]")
            return r
        lanes = self.tmp("lanes")
        self.uses.add("n")
        self.line(f"{lanes} = _lanes({M.name}, n)")
        if target is None:
            tgt = repr(dest)
        elif self.U(e.target):
            tgt = f"_fill({lanes}, {target}, np.uint32)"
        else:
            tgt = f"{target}[{lanes}]"
        fields = []
        for name, t in spec.fields.items():
            v = e.msg.fields.get(name)
            if isinstance(v, Expr):
                code = c.pop(0)
                fields.append(f"{name!r}: " + (f"_fill({lanes}, {code}, {_np(t)})" if self.U(v)
                                               else f"{code}[{lanes}]"))
            elif isinstance(v, Ref):
                src, rows = self.whole(v)
                fields.append(f"{name!r}: " + (f"{src}[{lanes}]" if rows else f"_tile({lanes}, {src})"))
            else:
                size = t.size if isinstance(t, ArrayType) else None
                dt = t.elem if isinstance(t, ArrayType) else t
                fields.append(f"{name!r}: _zfill({lanes}, {_np(dt)}, {size})")
        self.line(f"if len({lanes}):")
        self.line(f"    {r} = _scatter(n, {lanes}, {method}({tgt}, {spec.type_id:#x}, {lanes}, "
                  f"{{{', '.join(fields)}}}), np.uint32)")
        self.line("else:")
        self.line(f"    {r} = np.zeros(n, np.uint32)")
        return r

    def zeros1(self, t: Any) -> str:
        if isinstance(t, ArrayType):
            return f"np.zeros((1, {t.size}), {_np(t.elem)})"
        return f"np.zeros(1, {_np(t)})"

    def call(self, e: CallFunc, c: list[str], M: _Mask | None) -> str:
        fname = self.mod.func_names[e.name]
        r = self.tmp("r")
        if self.serial:
            self.line(f"{r} = {fname}({', '.join(c)})")
            return r
        f = self.kir.funcs[e.name]
        args = []
        for (_, ptype), code, ex in zip(f.params, c, e.args):
            args.append(f"np.full(n, {code}, {_np(ptype)})" if self.U(ex) else code)
        self.uses.add("n")
        failed = self.tmp("failed")
        self.line(f"{r}, {failed} = {fname}(n, {M.name}, status, {', '.join(args)})")
        if e.name in self.mod.may_fail:
            self.line(f"if {failed} is not False:")
            self.ind += 1
            self.line(f"{M.name} = _minus({M.name}, {failed}, {self.zmask})")
            if self.needs_alive:
                self.line(f"alive = _minus(alive, {failed}, {self.zmask})")
            if not self.is_kernel:
                self.line(f"failed = _acc(failed, {failed})")
            self.ind -= 1
            M.all = False
        return r

    # -- statements (vectorised) --

    def block(self, stmts: list[Stmt], M: _Mask) -> bool:
        """Emit ``stmts`` under mask ``M``; True when control never reaches the end."""
        for k, s in enumerate(stmts):
            rest = stmts[k + 1:]
            if rest and isinstance(s, If) and self.U(s.cond) and _dead(s.then) != _dead(s.orelse):
                # Every running lane takes the same branch, and one branch leaves the block: the rest
                # of the block belongs to the other branch (uniform locals must not see it otherwise).
                if _dead(s.then):
                    s = If(s.cond, s.then, s.orelse + rest, pos=s.pos)
                else:
                    s = If(s.cond, s.then + rest, s.orelse, pos=s.pos)
                return self.stmt(s, M)
            if self.stmt(s, M):
                return True
        return False

    def vblock(self, stmts: list[Stmt], M: _Mask) -> bool:
        """``block`` for the body of a Python ``if``/``else``: never empty."""
        start = len(self.lines)
        dead = self.block(stmts, M)
        if all(ln.strip().startswith("#") for ln in self.lines[start:]):
            self.line("pass")
        return dead

    def stmt(self, s: Stmt, M: _Mask) -> bool:
        self.comment(s)
        if isinstance(s, Assign):
            self.assign(s, M)
        elif isinstance(s, ArrayCopy):
            src, rows = self.whole(s.src)
            d = self.name(s.dst.name)
            if s.dst.name not in self.an.varying:
                self.line(f"{d}[...] = {src}")
            elif M.all:
                self.line(f"{d}[...] = {src}")
            else:
                self.line(f"_copyrows({d}, {M.name}, {src})")
        elif isinstance(s, ArrayZero):
            d = self.name(s.ref.name)
            t = self.local_type(s.ref.name)
            if id(s) in self.skip_zero:
                self.line(f"pass  # {d} is the reply field, which starts zeroed")
            elif s.ref.name in self.aliases:
                self.line(f"{d}[...] = 0" if M.all else f"_zerorows({d}, {M.name})")
            elif s.ref.name not in self.an.varying:
                self.line(f"{d} = np.zeros({t.size}, {_np(t.elem)})")
            elif M.all:
                self.uses.add("n")
                self.line(f"{d} = np.zeros((n, {t.size}), {_np(t.elem)})")
            else:
                self.line(f"_zerorows({d}, {M.name})")
        elif isinstance(s, If):
            return self.if_(s, M)
        elif isinstance(s, While):
            self.while_(s, M)
        elif isinstance(s, For):
            self.for_(s, M)
        elif isinstance(s, Break):
            brk = self.loops[-1]
            self.line(f"{brk} = _or({brk}, {M.name})" if not M.all else f"{brk} = None")
            return True
        elif isinstance(s, Continue):
            self.line("pass  # continue: these lanes wait for the next iteration")
            return True
        elif isinstance(s, Return):
            self.return_(s, M)
            return True
        elif isinstance(s, Fail):
            err = self.kir.errors[s.site - 1] if 0 < s.site <= len(self.kir.errors) else None
            note = f"  # {err.kind}: {err.text}" if err is not None else ""
            self.line(f"_fail(status, {M.name}, {s.site}){note}")
            if not self.is_kernel:
                self.line(f"failed = _acc(failed, {M.name})")
            self.kill(M)
            return True
        elif isinstance(s, Eval):
            if _effectful(s.expr):
                self.ex(s.expr, M)
        elif isinstance(s, Tick):
            self.uses.add("n")
            lanes = self.tmp("lanes")
            ph, lg = self.tmp("phys"), self.tmp("logical")
            self.line(f"{lanes} = _lanes({M.name}, n)")
            self.line(f"if len({lanes}):")
            self.ind += 1
            self.line(f"{ph}, {lg} = env.now({lanes})")
            for ref, v in ((s.physical, ph), (s.logical, lg)):
                if ref is not None:
                    d = self.name(ref.name)
                    self.line(f"{d} = _merge({M.name}, {lanes}, {v}, {d})")
            self.ind -= 1
        else:
            raise TypeError(f"unknown statement {s!r}")
        return False

    def kill(self, M: _Mask) -> None:
        """The lanes of ``M`` are done (returned or failed)."""
        if self.needs_alive:
            self.line("alive = " + (self.zmask if M.all else f"_minus(alive, {M.name}, {self.zmask})"))

    def assign(self, s: Assign, M: _Mask) -> None:
        r = s.ref
        idx = self.ex(r.index, M) if r.index is not None else None
        val = self.ex(s.value, M)
        if r.space != "local":
            raise TypeError(f"a parallel kernel writes {r.space}.{r.name} without an atomic")
        d = self.name(r.name)
        varying = r.name in self.an.varying
        if r.index is None:
            if not varying:
                self.line(f"{d} = {val}")
            elif M.all:
                self.uses.add("n")
                self.line(f"{d} = {val}" if not self.U(s.value) else
                          f"{d} = np.full(n, {val}, {_np(self.local_type(r.name))})")
            else:
                self.line(f"{d} = _st({M.name}, {val}, {d})")
            return
        size = self.local_type(r.name).size
        if not varying:
            self.line(f"{d}[{self.uidx(r.index, idx, size)}] = {val}")
        elif self.U(r.index):
            i = self.uidx(r.index, idx, size)
            self.line(f"{d}[:, {i}] = {val}" if M.all else f"_setcol({d}, {M.name}, {i}, {val})")
        else:
            self.uses.add("ar")
            if M.all:
                self.line(f"{d}[_ar, _ix({idx}, {size})] = {val}")
            else:
                self.line(f"_setel({d}, {M.name}, _ix({idx}, {size}), {val})")

    def if_(self, s: If, M: _Mask) -> bool:
        then_dead, else_dead = _dead(s.then), _dead(s.orelse)
        if self.U(s.cond):
            c = self.ex(s.cond, M)
            self.line(f"if {c}:")
            start_all = M.all
            self.ind += 1
            if self.vblock(s.then, M):
                self.line(f"{M.name} = {self.zmask}")
                M.all = False
            then_all = M.all
            self.ind -= 1
            M.all = start_all
            orelse = s.orelse
            if len(orelse) == 1 and isinstance(orelse[0], If) and self.U(orelse[0].cond):
                self.line("el", end="")  # ``elif``, continued by the inner ``if``
                self.if_(orelse[0], M)
                M.all = M.all and then_all
                return then_dead and else_dead
            if orelse:
                self.line("else:")
                self.ind += 1
                if self.vblock(orelse, M):
                    self.line(f"{M.name} = {self.zmask}")
                    M.all = False
                self.ind -= 1
            M.all = M.all and then_all
            return then_dead and else_dead
        c = self.tmp("c")
        self.line(f"{c} = {self.ex(s.cond, M)}")
        T = _Mask(self.tmp("then"), False)
        E = _Mask(self.tmp("else"), False)
        narrow_then, narrow_else = self._may_narrow(s.then), self._may_narrow(s.orelse)
        self.line(f"{T.name} = _and({M.name}, {c})")
        if s.orelse:
            self.line(f"{E.name} = _andnot({M.name}, {c})")
        if s.then:
            self.line(f"if {T.name}.any():")
            self.ind += 1
            self.line(f"{T.name} = _norm({T.name})")
            self.block(s.then, _Mask(T.name, False))
            if not s.orelse and narrow_then:
                # The lanes that skipped the branch, and those that came through it.
                if then_dead:
                    self.line(f"{M.name} = _norm(_andnot({M.name}, {c}))")
                else:
                    self.line(f"{M.name} = _norm(_or({T.name}, _andnot({M.name}, {c})))")
            self.ind -= 1
        if s.orelse:
            if len(s.orelse) == 1 and isinstance(s.orelse[0], If):
                # ``elif``: the inner ``if`` checks its own lanes, so it stays at this level (a long
                # elif chain must not nest one Python block per branch).
                self.line(f"{E.name} = _norm({E.name})")
                self.block(s.orelse, _Mask(E.name, False))
            else:
                self.line(f"if {E.name}.any():")
                self.ind += 1
                self.line(f"{E.name} = _norm({E.name})")
                self.block(s.orelse, _Mask(E.name, False))
                self.ind -= 1
            if narrow_then or narrow_else:
                live = [X.name for X, dead in ((T, then_dead), (E, else_dead)) if not dead]
                if not live:
                    self.line(f"{M.name} = {self.zmask}")
                elif len(live) == 1:
                    self.line(f"{M.name} = {live[0]}")
                else:
                    self.line(f"{M.name} = _norm(_or({live[0]}, {live[1]}))")
        if narrow_then or narrow_else:
            M.all = False
        return then_dead and else_dead

    def loop_head(self, M: _Mask, body: list[Stmt], brk: str | None, LM: _Mask) -> None:
        """Per-iteration upkeep of the loop mask: drop lanes that returned, failed or broke out."""
        if self.needs_alive and self._may_exit(body):
            self.line(f"{LM.name} = _mand({LM.name}, alive)")
        if brk is not None:
            self.line(f"{LM.name} = _minus({LM.name}, {brk}, {self.zmask})")

    def loop_tail(self, M: _Mask, body: list[Stmt]) -> None:
        if self._may_exit(body):
            self.line(f"{M.name} = _norm(_mand({M.name}, alive))")
            M.all = False

    def has_break(self, body: list[Stmt]) -> bool:
        def walk(stmts: list[Stmt]) -> bool:
            for s in stmts:
                if isinstance(s, Break):
                    return True
                if isinstance(s, If) and (walk(s.then) or walk(s.orelse)):
                    return True
            return False
        return walk(body)

    def while_(self, s: While, M: _Mask) -> None:
        narrows = self._may_narrow(s.body) or not self.U(s.cond)
        LM = _Mask(self.tmp("loop"), M.all and not narrows)
        brk = self.tmp("brk") if self.has_break(s.body) else None
        self.line(f"{LM.name} = {M.name}")
        if brk:
            self.line(f"{brk} = {self.zmask}")
        self.line("while True:")
        self.ind += 1
        self.loop_head(M, s.body, brk, LM)
        c = self.ex(s.cond, LM)
        if self.U(s.cond):
            self.line(f"if not {c}:")
            self.line("    break")
        else:
            self.line(f"{LM.name} = _norm(_and({LM.name}, {c}))")
        if not LM.all:
            self.line(f"if not _any({LM.name}):")
            self.line("    break")
        BM = _Mask(self.tmp("body"), LM.all)
        self.line(f"{BM.name} = {LM.name}")
        self.loops.append(brk)
        self.block(s.body, BM)
        self.loops.pop()
        self.ind -= 1
        self.loop_tail(M, s.body)

    def _slice_loop(self, s: For, M: _Mask) -> bool:
        """An elementwise loop over constant bounds as whole-slice operations, when that is exact.

        ``for i in range(16): out.c[i] = msg.a[i] + msg.b[i]`` becomes one statement over
        ``[:, 0:16]`` per assignment: each message's row is read once instead of once per
        iteration. Only when every lane runs the loop (no mask), every statement assigns an
        element ``[i]`` of a per-lane local array, and its value uses ``i`` only as the index
        ``[i]`` of per-lane arrays, with constants, arithmetic, comparisons, casts and
        conditional expressions (``np.where``): then the
        iterations are independent and running them side by side equals running them in order.
        """
        if self.serial or not M.all or not s.body:
            return False
        if not all(isinstance(x, Const) for x in (s.start, s.stop, s.step)):
            return False
        start, stop, step = (int(x.value) for x in (s.start, s.stop, s.step))
        r = range(start, stop, step) if step > 0 else range(0)
        if len(r) < 2:
            return False
        var = s.var

        def is_var(e: Any) -> bool:
            return isinstance(e, Load) and e.ref.space == "local" and e.ref.index is None and e.ref.name == var

        def array_row(ref: Ref) -> bool:  # a per-lane array indexed by exactly the loop variable
            if not is_var(ref.index) or not isinstance(self.field_type(ref.space, ref.name), ArrayType):
                return False
            if ref.space == "msg":
                return True
            return ref.space == "local" and ref.name in self.an.varying

        def pure(e: Any) -> bool:
            if isinstance(e, Const):
                return True
            if isinstance(e, Load):
                return e.ref.index is not None and array_row(e.ref)
            if isinstance(e, Unary | Cast):
                return pure(e.operand)
            if isinstance(e, Binary | Compare):
                return e.op != "pow" and pure(e.left) and pure(e.right)
            if isinstance(e, Select):
                return pure(e.cond) and pure(e.a) and pure(e.b)
            return False

        for st in s.body:
            if not (isinstance(st, Assign) and st.ref.index is not None and array_row(st.ref) and pure(st.value)):
                return False
            # Every index must be in range without a check (a failing lane would need a mask).
            refs = [st.ref] + [e.ref for e in walk_exprs(st.value) if isinstance(e, Load) and e.ref.index is not None]
            if any(max(r) >= self.field_type(x.space, x.name).size or min(r) < 0 for x in refs):
                return False
        sl = f"{start}:{r[-1] + 1}" + ("" if step == 1 else f":{step}")
        saved = self.bound.get(var)
        self.bound[var] = (sl, r[0], r[-1])
        try:
            for st in s.body:
                self.comment(st)
                self.assign(st, M)
        finally:
            if saved is not None:
                self.bound[var] = saved
            else:
                self.bound.pop(var, None)
        if var not in self.an.varying:  # Python leaves the variable at its last value
            self.line(f"{self.name(var)} = {self.mod.typed_int(self.local_type(var))}({r[-1]})")
        return True

    def for_(self, s: For, M: _Mask) -> None:
        if self._slice_loop(s, M):
            return
        ends = []
        for x, hint in ((s.start, "start"), (s.stop, "stop"), (s.step, "step")):
            if isinstance(x, Const):
                ends.append(str(int(x.value)))
                continue
            code = self.ex(x, M)
            if not re.fullmatch(r"[\w.]+", code):
                t = self.tmp(hint)
                self.line(f"{t} = {code}")
                code = t
            ends.append(code)
        a, b, c = ends
        ua, ub, uc = self.U(s.start), self.U(s.stop), self.U(s.step)
        T = self.local_type(s.var)
        var = self.name(s.var)
        var_varying = s.var in self.an.varying
        binds = self.an.for_binds(s, self.bound)
        trips = self.tmp("trips")
        per_lane = not (ua and ub and uc)
        narrows = self._may_narrow(s.body) or per_lane
        LM = _Mask(self.tmp("loop"), M.all and not narrows)
        if per_lane:
            tv = self.tmp("tripsv")
            typed = [self.mod.const(x.type, x.value) if isinstance(x, Const) else code
                     for x, code in ((s.start, a), (s.stop, b), (s.step, c))]
            self.line(f"{tv} = _tripsv({', '.join(typed)})")
            self.line(f"{trips} = _maxtrips({tv}, {M.name})")
        const = all(isinstance(x, Const) for x in (s.start, s.stop, s.step))
        if const:
            r = range(int(s.start.value), int(s.stop.value), int(s.step.value)) if int(s.step.value) else range(0)
            trip_code = str(len(r))
            lo, hi = (min(r[0], r[-1]), max(r[0], r[-1])) if len(r) else (0, 0)
        else:
            if not per_lane:
                self.line(f"{trips} = _trips({a}, {b}, {c})")
            trip_code = trips
            lo = hi = None
        brk = self.tmp("brk") if self.has_break(s.body) else None
        self.line(f"{LM.name} = {M.name}")
        if brk:
            self.line(f"{brk} = {self.zmask}")
        k = self.tmp("k")
        self.line(f"for {k} in range({trip_code}):")
        self.ind += 1
        self.loop_head(M, s.body, brk, LM)
        BM = _Mask(self.tmp("body"), LM.all)
        if per_lane:
            self.line(f"{BM.name} = _norm(_and({LM.name}, {k} < {tv}))")
            BM.all = False
        else:
            self.line(f"{BM.name} = {LM.name}")
        if not BM.all:
            self.line(f"if not _any({BM.name}):")
            self.line("    break")
        # The iteration's value of the loop variable.
        if ua and uc:
            table = self.mod.range_values(T, int(s.start.value), int(s.stop.value), int(s.step.value)) \
                if const else None
            if table is not None:
                itv = f"{table}[{k}]"
            else:
                s0 = a if isinstance(s.start, Const) else f"int({a})"
                st = c if isinstance(s.step, Const) else f"int({c})"
                term = k if st == "1" else f"{k} * {st}"
                itv = f"{self.mod.typed_int(T)}({term if s0 == '0' else f'{s0} + {term}'})"
        else:
            if isinstance(s.start, Const):
                a = self.mod.const(s.start.type, s.start.value)
            if isinstance(s.step, Const):
                c = self.mod.const(s.step.type, s.step.value)
            itv = f"_itv({a}, {c}, {k}, {_np(T)})"
        saved = self.bound.get(s.var)
        if binds:
            if not var_varying:
                self.line(f"{var} = {itv}")
                self.bound[s.var] = (var, lo, hi)
            else:
                it = self.tmp("i")
                self.line(f"{it} = {itv}")
                self.bound[s.var] = (it, lo, hi)
                if _free_loads(self.body, s.var):  # the variable is read after some loop over it
                    self.line(f"{var} = _st({BM.name}, {it}, {var})")
        else:
            self.bound.pop(s.var, None)
            if not var_varying:
                self.line(f"{var} = {itv}")
            else:
                self.line(f"{var} = _st({BM.name}, {itv}, {var})")
        self.loops.append(brk)
        self.block(s.body, BM)
        self.loops.pop()
        self.ind -= 1
        if saved is not None:
            self.bound[s.var] = saved
        else:
            self.bound.pop(s.var, None)
        self.loop_tail(M, s.body)

    def return_(self, s: Return, M: _Mask) -> None:
        v = s.value
        if self.is_kernel:
            if isinstance(v, MsgValue):
                for name in v.spec.fields:
                    fv = v.fields.get(name)
                    if fv is None:
                        continue  # the caller zero-fills the reply
                    if isinstance(fv, Ref) and fv.space == "local" and self.aliases.get(fv.name) == name:
                        continue  # that local array is this reply field already
                    src = self.ex(fv, M) if isinstance(fv, Expr) else self.whole(fv)[0]
                    o = self.arr("out", name)
                    self.line(f"{o}[...] = {src}" if M.all else f"_put({o}, {M.name}, {src})")
                self.line("has_reply[...] = True" if M.all else f"_put(has_reply, {M.name}, True)")
            self.kill(M)
            return
        if isinstance(v, Expr):
            code = self.ex(v, M)
            self.line(f"result = _st({M.name}, {code}, result)")
        self.kill(M)

    # -- statements (serial) --

    def sblock(self, stmts: list[Stmt]) -> None:
        start = len(self.lines)
        for s in stmts:
            self.sstmt(s)
            if _stmt_dead(s):
                break
        if len(self.lines) == start or all(ln.strip().startswith("#") for ln in self.lines[start:]):
            self.line("pass")

    def sstmt(self, s: Stmt) -> None:
        self.comment(s)
        if isinstance(s, Assign):
            r = s.ref
            idx = self.ex(r.index, None) if r.index is not None else None
            val = self.ex(s.value, None)
            if r.space == "local":
                d = self.name(r.name)
                self.line(f"{d} = {val}" if idx is None else f"{d}[{idx}] = {val}")
            else:
                self.line(f"{self.scell(r.name, idx)} = {val}")
        elif isinstance(s, ArrayCopy):
            src, _ = self.whole(s.src)
            d = self.name(s.dst.name) if s.dst.space == "local" else self.arr(s.dst.space, s.dst.name)
            self.line(f"{d}[...] = {src}")
        elif isinstance(s, ArrayZero):
            if s.ref.space == "local":
                t = self.local_type(s.ref.name)
                self.line(f"{self.name(s.ref.name)} = np.zeros({t.size}, {_np(t.elem)})")
            else:
                self.line(f"{self.arr(s.ref.space, s.ref.name)}[...] = 0")
        elif isinstance(s, If):
            self.line(f"if {self.ex(s.cond, None)}:")
            while True:
                self.ind += 1
                self.sblock(s.then)
                self.ind -= 1
                if len(s.orelse) == 1 and isinstance(s.orelse[0], If) and not _effectful(s.orelse[0].cond):
                    s = s.orelse[0]
                    self.line(f"elif {self.ex(s.cond, None)}:")
                    continue
                if s.orelse:
                    self.line("else:")
                    self.ind += 1
                    self.sblock(s.orelse)
                    self.ind -= 1
                break
        elif isinstance(s, While):
            self.line(f"while {self.ex(s.cond, None)}:")
            self.ind += 1
            self.sblock(s.body)
            self.ind -= 1
        elif isinstance(s, For):
            T = self.local_type(s.var)
            table = None
            if all(isinstance(x, Const) for x in (s.start, s.stop, s.step)) and int(s.step.value):
                table = self.mod.range_values(T, int(s.start.value), int(s.stop.value), int(s.step.value))
            if table is not None:
                self.line(f"for {self.name(s.var)} in {table}:")
                self.ind += 1
            else:
                ends = [str(int(x.value)) if isinstance(x, Const) else f"int({self.ex(x, None)})"
                        for x in (s.start, s.stop, s.step)]
                k = self.tmp("k")
                self.line(f"for {k} in range({', '.join(ends)}):")
                self.ind += 1
                self.line(f"{self.name(s.var)} = {self.mod.typed_int(T)}({k})")
            self.sblock(s.body)
            self.ind -= 1
        elif isinstance(s, Break):
            self.line("break")
        elif isinstance(s, Continue):
            self.line("continue")
        elif isinstance(s, Return):
            v = s.value
            if self.is_kernel:
                if isinstance(v, MsgValue):
                    for name in v.spec.fields:
                        fv = v.fields.get(name)
                        if fv is None:
                            continue
                        src = self.ex(fv, None) if isinstance(fv, Expr) else self.whole(fv)[0]
                        self.line(f"{self.arr('out', name)}[lane] = {src}")
                    self.line("has_reply[lane] = True")
                self.uses.add("lane")
                self.line("return")
            else:
                self.line(f"return {self.ex(v, None)}" if isinstance(v, Expr) else "return")
        elif isinstance(s, Fail):
            err = self.kir.errors[s.site - 1] if 0 < s.site <= len(self.kir.errors) else None
            note = f"  # {err.kind}: {err.text}" if err is not None else ""
            if self.is_kernel:
                self.uses.add("lane")
                self.line(f"status[lane] = {s.site}{note}")
                self.line("return")
            else:
                self.line(f"raise KernelFail({s.site}){note}")
        elif isinstance(s, Eval):
            if _effectful(s.expr):
                self.ex(s.expr, None)
        elif isinstance(s, Tick):
            self.uses.add("lane")
            ph, lg = self.tmp("phys"), self.tmp("logical")
            self.line(f"{ph}, {lg} = env.now(np.array([lane], np.int64))")
            for ref, v in ((s.physical, ph), (s.logical, lg)):
                if ref is not None:
                    t = self.local_type(ref.name)
                    self.line(f"{self.name(ref.name)} = {_np(t)}({v}[0])")
        else:
            raise TypeError(f"unknown statement {s!r}")

    # -- whole functions --

    def init_locals(self, skip: set[str], code: list[str]) -> None:
        """Initial values of the locals that ``code`` (the generated body) mentions."""
        text = "\n".join(code)
        for name, t in self.types.items():
            if name in skip:
                continue
            v = self.name(name)
            if not re.search(rf"\b{v}\b", text):
                continue
            if self.serial:
                if isinstance(t, ArrayType):
                    self.line(f"{v} = np.zeros({t.size}, {_np(t.elem)})")
                else:
                    self.line(f"{v} = {self.mod.zero(t)}")
            elif name in self.aliases:
                field = self.aliases[name]
                self.line(f"{v} = {self.arr('out', field)}  # returned only as reply field {field!r}: lives there")
            elif name in self.an.varying:
                if isinstance(t, ArrayType):
                    self.line(f"{v} = np.zeros((n, {t.size}), {_np(t.elem)})")
                else:
                    self.line(f"{v} = np.zeros(n, {_np(t)})")
            else:
                if isinstance(t, ArrayType):
                    self.line(f"{v} = np.zeros({t.size}, {_np(t.elem)})")
                else:
                    self.line(f"{v} = {self.mod.zero(t)}")

    def function(self) -> str:
        if self.is_kernel:
            return self.kernel_run()
        return self.func_def()

    def func_def(self) -> str:
        f = self.func
        fname = self.mod.func_names[f.name]
        params = [self.name(p) for p, _ in f.params]
        doc = f"# @ringcore.func {f.name}" + (f" (line {f.pos.line})" if f.pos is not None else "")
        if self.serial:
            self.ind = 1
            self.sblock(f.body)
            body = self.lines
            self.lines = []
            self.init_locals({p for p, _ in f.params}, body)
            return f"{doc}\ndef {fname}({', '.join(params)}):\n" + "\n".join(self.lines + body)
        self.ind = 1
        M = _Mask("mask", False)
        self.vblock(f.body, M)
        body = self.lines
        self.lines = []
        self.line("_Z = np.zeros(n, np.bool_)")
        if "ar" in self.uses:
            self.line("_ar = np.arange(n)")
        self.line("failed = False  # lanes that failed here (False: none; None: all)")
        if self.needs_alive:
            self.line("alive = mask")
        if f.ret is not None:
            self.line(f"result = np.zeros(n, {_np(f.ret)})")
        self.init_locals({p for p, _ in f.params}, body)
        out = [f"{doc}", f"def {fname}(n, mask, status, {', '.join(params)}):",
               f'    """{f.name}, vectorised: every lane of ``mask`` calls it; returns (result, failed lanes)."""']
        out.extend(self.lines)
        out.extend(body)
        out.append("    return " + ("result" if f.ret is not None else "None") + ", failed")
        return "\n".join(out)

    def kernel_run(self) -> str:
        kir = self.kir
        self.ind = 2
        if self.serial:
            self.sblock(kir.body)
            body = self.lines
            self.lines = []
            self.init_locals(set(), body)
            handler = self.lines + body
        else:
            self.line("mask = None  # every lane runs")
            self.block(kir.body, _Mask("mask", True))
            handler = self.lines
        self.lines = []
        self.ind = 1
        if not self.serial:
            self.init_locals(set(), handler)  # before the prologue: it may bind reply fields
        init = self.lines
        out = ['def run(n, inp, out, state, env):',
               f'    """Run kernel {kir.name!r} on a batch of n messages; returns (has_reply, status)."""',
               "    has_reply = np.zeros(n, np.bool_)",
               "    status = np.zeros(n, np.uint32)",
               "    if n == 0:",
               "        return has_reply, status"]
        pro: list[str] = []
        for u in sorted(self.uses):
            if ":" in u and not u.startswith("header:"):
                space, name = u.split(":", 1)
                src = {"msg": "inp", "state": "state", "out": "out"}[space]
                prefix = {"msg": "m_", "state": "s_", "out": "o_"}[space]
                col = f"{src}[{name!r}]"
                if self.serial and space == "msg" and isinstance(kir.input.fields[name], ScalarType):
                    col = f"list({col})  # numpy scalars: a list is faster to index"
                pro.append(f"{prefix}{name} = {col}")
        for u in sorted(self.uses):
            if u.startswith("header:"):
                field = u.split(":", 1)[1]
                col = f"env.header({field!r})"
                pro.append(f"h_{field} = " + (f"list({col})" if self.serial else col))
        cached = sorted(n for n in self.state_scalars | self.state_lists if f"state:{n}" in self.uses)
        for name in cached:
            pro.append(f"sv_{name} = s_{name}[0]" if name in self.state_scalars else f"sl_{name} = list(s_{name})")
        if "tid" in self.uses:
            pro.append("env_tid = list(env.thread_id)" if self.serial else "tid = env.thread_id")
        if "knum" in self.uses:
            pro.append("knum = np.uint32(env.kernel_number)")
        if self.serial:
            out.extend("    " + p for p in pro)
            out.append("")
            out.append("    def handle(lane):")
            scal = [f"sv_{n}" for n in cached if n in self.state_scalars]
            if scal:
                out.append(f"        nonlocal {', '.join(scal)}")
            if "tid" in self.uses:
                out.append("        tid = env_tid[lane]")
            out.extend(handler)
            out.append("")
            out.append('    with np.errstate(all="ignore"):  # fixed-width integers wrap, as in the reference')
            ind = "        "
            if cached:
                out.append("        try:")
                ind += "    "
            out.append(f"{ind}for lane in range(n):")
            if self.mod.may_fail:
                out.append(f"{ind}    try:")
                out.append(f"{ind}        handle(lane)")
                out.append(f"{ind}    except KernelFail as exc:")
                out.append(f"{ind}        status[lane] = exc.site")
            else:
                out.append(f"{ind}    handle(lane)")
            if cached:
                out.append("        finally:  # the state kept in variables goes back into the state record")
                for name in cached:
                    out.append(f"            s_{name}[0] = sv_{name}" if name in self.state_scalars
                               else f"            s_{name}[:] = sl_{name}")
            out.append("    return has_reply, status")
            return "\n".join(out)
        pro.append("_Z = np.zeros(n, np.bool_)  # the empty mask")
        if "ar" in self.uses:
            pro.append("_ar = np.arange(n)")
        if self.needs_alive:
            pro.append("alive = None  # lanes that have not returned or failed yet")
        out.extend("    " + p for p in pro)
        out.extend(init)
        out.append('    with np.errstate(all="ignore"):  # fixed-width integers wrap, as in the reference')
        out.extend(handler)
        out.append("    return has_reply, status")
        return "\n".join(out)


def emit(kir: KernelIR) -> str:
    """The numpy target's Python source for ``kir`` (defines ``run(n, inp, out, state, env)``)."""
    return _Module(kir).source()


def load(src: str, kir: KernelIR):
    """Execute source from :func:`emit` and return its ``run``; tracebacks show the generated lines."""
    filename = f"<ringcore numpy {kir.name}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    code = compile(src, filename, "exec")
    namespace: dict[str, Any] = {"__name__": f"ringcore_numpy_{_ident(kir.name)}", "__file__": filename}
    exec(code, namespace)  # noqa: S102 (generated code)
    return namespace["run"]
