"""The kernel language: one Python handler, compiled to numpy, CUDA C, OpenCL C and WGSL.

``lower(kernel)`` runs the frontend (Python source -> typed IR, with every
check); ``compile(kernel, target)`` returns a target's generated source. Both
are cached: the IR on the kernel, the sources by the IR's fingerprint and the
target, so a recompile costs a dictionary lookup.
"""

from __future__ import annotations

import importlib
import threading
from typing import TYPE_CHECKING, Any

from ..errors import KernelCompileError
from .builtins import ceil, clamp, cos, exp, floor, fma, func, isnan, log, pow, sin, sqrt, tanh
from .targets import TARGET_MODULES, TARGETS

if TYPE_CHECKING:  # the IR is imported on first use: ``import ringcore`` stays fast
    from .ir import KernelIR

__all__ = [
    "lower", "compile", "load_numpy", "clear_cache", "TARGETS",
    "func", "sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil", "pow", "fma", "clamp", "isnan",
]

_lock = threading.Lock()
_sources: dict[tuple[str, str], str] = {}
_numpy: dict[str, Any] = {}


def lower(kernel: Any) -> "KernelIR":
    """The typed IR of a ``@ringcore.kernel`` (cached on the kernel); raises KernelCompileError."""
    kir = getattr(kernel, "_ringcore_ir", None)
    if kir is None:
        from .frontend import lower_kernel

        kir = lower_kernel(kernel)
        kernel._ringcore_ir = kir
    return kir


def compile(kernel: Any, target: str = "numpy") -> str:  # noqa: A001 (ringcore.compile is the API)
    """The source ``target`` generates for ``kernel``: ``"numpy"``, ``"cuda"``, ``"opencl"`` or ``"wgsl"``.

    Raises KernelCompileError when the kernel uses something outside the
    language, or something the target lacks (64-bit types on WGSL).
    """
    if target not in TARGET_MODULES:
        raise ValueError(f"unknown kernel target {target!r}; the targets are {', '.join(TARGETS)}")
    kir = lower(kernel)
    key = (kir.fingerprint(), target)
    src = _sources.get(key)
    if src is None:
        src = importlib.import_module(TARGET_MODULES[target]).emit(kir)
        with _lock:
            _sources[key] = src
    return src


def load_numpy(kernel: Any):
    """The numpy target's ``run(n, inp, out, state, env)`` for ``kernel`` (compiled once, cached)."""
    kir = lower(kernel)
    fp = kir.fingerprint()
    run = _numpy.get(fp)
    if run is None:
        src = compile(kernel, "numpy")
        from .targets.numpy import load

        run = load(src, kir)
        with _lock:
            _numpy[fp] = run
    return run


def clear_cache() -> None:
    """Forget every generated source (kernels keep their IR)."""
    with _lock:
        _sources.clear()
        _numpy.clear()


_ = KernelCompileError  # re-exported through ringcore.errors
