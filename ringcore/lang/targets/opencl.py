"""The OpenCL C target: ``emit(kir) -> str`` (the shared C emitter, ``c.py``, in its OpenCL dialect).

The source is OpenCL C 1.2 with no ``#include``; see ``c.py`` for the ABI
(structs, the handler, the ``rc_batch_<ident>`` entry point, the outbox, the
status words). Build it with :func:`build_options` (or at least
:data:`OPENCL_BUILD_OPTIONS`): never with ``-cl-fast-relaxed-math``,
``-cl-mad-enable``, ``-cl-unsafe-math-optimizations``, ``-cl-finite-math-only``
or ``-cl-denorms-are-zero``, which would break the IR's float semantics. The
source itself turns contraction off (``#pragma OPENCL FP_CONTRACT OFF``).

f64 needs ``cl_khr_fp64`` and atomics on 64-bit state fields need
``cl_khr_int64_base_atomics``: on a device without them the build fails
(for the atomics with an ``#error`` naming the field).
"""

from __future__ import annotations

from typing import Any

from ..ir import KernelIR
from . import c

__all__ = ["emit", "emit_parts", "prelude", "DIALECT", "OPENCL_BUILD_OPTIONS", "CORRECTLY_ROUNDED_OPTION",
           "build_options"]

DIALECT = c.OPENCL

#: Options every build of the generated source takes.
OPENCL_BUILD_OPTIONS: tuple[str, ...] = ("-cl-std=CL1.2",)
#: Correctly rounded f32 division and sqrt, where the device supports it (see :func:`build_options`).
CORRECTLY_ROUNDED_OPTION = "-cl-fp32-correctly-rounded-divide-sqrt"


def build_options(device: Any = None) -> list[str]:
    """The build options for a ``pyopencl.Device`` (or for any device when None): the base options,
    plus ``-cl-fp32-correctly-rounded-divide-sqrt`` when the device advertises
    CL_FP_CORRECTLY_ROUNDED_DIVIDE_SQRT."""
    opts = list(OPENCL_BUILD_OPTIONS)
    if device is not None:
        try:
            import pyopencl as cl

            if device.single_fp_config & cl.device_fp_config.CORRECTLY_ROUNDED_DIVIDE_SQRT:
                opts.append(CORRECTLY_ROUNDED_OPTION)
        except Exception:  # an old driver without the query: build without the option
            pass
    return opts


def prelude() -> str:
    """The OpenCL prelude shared by every kernel of a program."""
    return c.prelude(DIALECT)


def emit_parts(kir: KernelIR) -> tuple[str, str]:
    """``(prelude, kernel part)``: put several kernels in one program with one prelude."""
    return c.emit_parts(kir, DIALECT)


def emit(kir: KernelIR) -> str:
    """The OpenCL C source of ``kir``."""
    return c.emit(kir, DIALECT)
