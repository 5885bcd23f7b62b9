"""The kernel language's math builtins, as plain Python functions (the reference semantics).

Each keeps its argument's type, as the compiled targets do: ``ringcore.sqrt``
of an f32 is an f32 (``math.sqrt`` would give a 64-bit Python float). Python's
own ``abs``, ``min`` and ``max`` are builtins of the language too.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil", "pow", "fma", "fma32", "fma64", "clamp",
           "isnan",
           "func"]

_FLOATS = (np.float32, np.float64, float)


def _float(x: Any, name: str) -> Any:
    if isinstance(x, _FLOATS):
        return x
    raise TypeError(f"ringcore.{name} takes a float (f32 or f64), got {type(x).__name__} {x!r}; "
                    f"cast it first, e.g. ringcore.{name}(ringcore.f32(x))")


def _unary(ufunc: Any, name: str):
    def f(x: Any) -> Any:
        with np.errstate(all="ignore"):
            return ufunc(_float(x, name))
    f.__name__ = f.__qualname__ = name
    f.__doc__ = f"``{name}(x)`` of a float, in its own precision (numpy's ``{ufunc.__name__}``)."
    return f


sqrt = _unary(np.sqrt, "sqrt")
exp = _unary(np.exp, "exp")
log = _unary(np.log, "log")
sin = _unary(np.sin, "sin")
cos = _unary(np.cos, "cos")
tanh = _unary(np.tanh, "tanh")
floor = _unary(np.floor, "floor")
ceil = _unary(np.ceil, "ceil")


def pow(x: Any, y: Any) -> Any:  # noqa: A001 (the kernel language's name)
    """``x ** y`` for floats, as numpy's array ``power`` and C's ``pow`` compute it.

    (numpy's *scalar* ``np.power`` differs on a few IEEE special cases, e.g.
    ``pow(-inf, 0.5)``: NaN instead of +inf; ``**`` on numpy scalars does not.)
    """
    _float(x, "pow")
    _float(y, "pow")
    with np.errstate(all="ignore"):
        return x ** y


def fma(a: Any, b: Any, c: Any) -> Any:
    """``a * b + c`` rounded once (see :func:`fma32` and :func:`fma64`)."""
    for v in (a, b, c):
        _float(v, "fma")
    with np.errstate(all="ignore"):
        if isinstance(a, np.float32) and isinstance(b, np.float32) and isinstance(c, np.float32):
            return fma32(a, b, c)[()]
        return np.float64(fma64(float(a), float(b), float(c)))


def fma32(a: Any, b: Any, c: Any) -> np.ndarray:
    """f32 ``a * b + c`` rounded once, for scalars or arrays (the numpy target uses it too).

    The product of two f32 is exact in f64; the f64 sum is rounded *to odd* (its
    last bit set when inexact), and an f64 rounded to odd rounds to f32 exactly as
    the infinitely precise value would (53 >= 24 + 2 bits).
    """
    with np.errstate(all="ignore"):
        p = np.asarray(a, np.float64) * np.asarray(b, np.float64)
        c8 = np.asarray(c, np.float64)
        s = p + c8
        bb = s - p
        err = (p - (s - bb)) + (c8 - bb)  # the sum's rounding error (TwoSum), exact
        step = (err != 0) & ((s.view(np.int64) & 1) == 0) & np.isfinite(s)
        if np.any(step):
            s = np.where(step, np.nextafter(s, np.where(err > 0, np.inf, -np.inf)), s)
        return np.asarray(s).astype(np.float32)


def fma64(a: float, b: float, c: float) -> float:
    """``a * b + c`` in double precision with one rounding (exact rational arithmetic, then rounded)."""
    if math.isfinite(a) and math.isfinite(b) and math.isfinite(c):
        exact = Fraction(a) * Fraction(b) + Fraction(c)
        if exact == 0:
            # IEEE signs of zero: an exactly zero product keeps its sign through the sum
            # ((-0.0 * 1.0) + -0.0 is -0.0); a cancellation of non-zero terms rounds to +0.0.
            return a * b + c if (a == 0 or b == 0) else 0.0
        try:
            return float(exact)
        except OverflowError:
            return math.inf if exact > 0 else -math.inf
    if math.isfinite(a) and math.isfinite(b):
        return c  # a finite product cannot cancel an infinity or a NaN
    return a * b + c


def clamp(x: Any, lo: Any, hi: Any) -> Any:
    """``min(max(x, lo), hi)``, with Python's ``min``/``max`` (the first argument wins ties and NaN)."""
    return min(max(x, lo), hi)


def isnan(x: Any) -> Any:
    """Whether a float is NaN (a bool)."""
    return np.isnan(_float(x, "isnan"))


def func(f: Any) -> Any:
    """Mark ``f`` as callable from kernels (and from other functions); it stays a plain function.

    Parameters need ringcore type annotations (``def lerp(a: f32, b: f32, t: f32) -> f32``).
    """
    if not callable(f) or not hasattr(f, "__code__"):
        raise TypeError(f"@ringcore.func decorates a function, not {f!r}")
    f.__ringcore_func__ = True
    return f
