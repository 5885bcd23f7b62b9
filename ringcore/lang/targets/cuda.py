"""The CUDA target: ``emit(kir) -> str`` (the shared C emitter, ``c.py``, in its CUDA dialect).

The source is CUDA C++ with no ``#include`` (NVRTC has no system headers); see
``c.py`` for the ABI (structs, the ``rc_handle_<ident>`` device function a
persistent loop calls, the ``extern "C" __global__ rc_batch_<ident>`` entry
point, the outbox, the status words).

Float semantics: the arithmetic goes through ``__fadd_rn``/``__fmul_rn``/...,
which the compiler never contracts into FMAs, division and sqrt through
``__fdiv_rn``/``__fsqrt_rn`` (correctly rounded), ``fma`` through
``__fmaf_rn``. The backend must still compile with :data:`NVRTC_OPTIONS`
(``--fmad=false`` above all, no ``--use_fast_math``, no flush-to-zero) so that
nothing else in the source is contracted or approximated; with nvcc use
:data:`NVCC_OPTIONS`. Atomics need compute capability 3.5 or later.
"""

from __future__ import annotations

from ..ir import KernelIR
from . import c

__all__ = ["emit", "emit_parts", "prelude", "DIALECT", "NVRTC_OPTIONS", "NVCC_OPTIONS"]

DIALECT = c.CUDA

#: Options for ``cupy.RawModule(code=..., options=NVRTC_OPTIONS)`` / nvrtcCompileProgram (add the
#: architecture, e.g. ``--gpu-architecture=compute_80``).
NVRTC_OPTIONS: tuple[str, ...] = ("--fmad=false", "--prec-div=true", "--prec-sqrt=true", "--ftz=false",
                                  "--std=c++17")
#: The same for the nvcc command line.
NVCC_OPTIONS: tuple[str, ...] = ("-fmad=false", "-prec-div=true", "-prec-sqrt=true", "-ftz=false", "-std=c++17")


def prelude() -> str:
    """The CUDA prelude shared by every kernel of a module."""
    return c.prelude(DIALECT)


def emit_parts(kir: KernelIR) -> tuple[str, str]:
    """``(prelude, kernel part)``: put several kernels in one module with one prelude."""
    return c.emit_parts(kir, DIALECT)


def emit(kir: KernelIR) -> str:
    """The CUDA C++ source of ``kir``."""
    return c.emit(kir, DIALECT)
