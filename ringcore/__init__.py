"""ringcore: GPU-native persistent actors and a parallel transaction runtime.

Write a ring-kernel handler once in Python; ringcore runs it on CUDA, OpenCL,
WebGPU or the CPU, whichever is best here::

    import ringcore

    @ringcore.message(type_id=1)
    class Add:
        x: ringcore.i32

    @ringcore.message(type_id=2)
    class Total:
        total: ringcore.i64

    class Sum:
        total: ringcore.i64 = 0

    @ringcore.kernel(state=Sum)
    def adder(ctx, msg: Add) -> Total:
        ctx.state.total += msg.x
        return Total(total=ctx.state.total)

    with ringcore.runtime("auto") as rt:
        k = rt.launch(adder)
        print(k.call(Add(x=5)).total)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from . import errors, execution
from .control import CONTROL_BLOCK_SIZE, ControlBlock, ErrorCode
from .errors import *  # noqa: F403
from .hlc import HlcClock, HlcTimestamp
from .hookspecs import hookimpl
from .k2k import DeliveryResult
from .kernel import KernelDef, KernelMode, KernelState, LaunchOptions, OverflowPolicy, kernel
from .lang import compile, func  # noqa: A004  (ringcore.compile is the kernel compiler)
from .lang.builtins import ceil, clamp, cos, exp, floor, fma, isnan, log, pow, sin, sqrt, tanh  # noqa: A004
from .message import (
    HEADER_DTYPE,
    HEADER_SIZE,
    CorrelationId,
    MessageFlags,
    MessageHeader,
    MessageId,
    Priority,
    message,
)
from .plugins import BackendSpec, ProbeResult, StoreSpec, VmSpec, create_runtime, get_registry
from .queue import QueueStats, RingQueue
from .runtime import DeviceInfo, KernelHandle, KernelStatus, RingKernelRuntime
from .telemetry import KernelMetrics
from .types import ArrayType, ScalarType, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64
from .types import bool_ as bool  # noqa: A001  (ringcore.bool is the 1-byte boolean type)

try:
    __version__ = version("ringcore")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

# ``ringcore.runtime`` is the runtime module and, called, creates a runtime:
# ringcore.runtime("auto"), ringcore.runtime("cpu").
from . import runtime  # noqa: E402

__all__ = [
    "__version__",
    "errors",
    "execution",
    # types
    "u8", "u16", "u32", "u64", "i8", "i16", "i32", "i64", "f32", "f64", "bool",
    "ScalarType", "ArrayType",
    # messages
    "message", "MessageHeader", "MessageFlags", "MessageId", "CorrelationId", "Priority",
    "HEADER_DTYPE", "HEADER_SIZE",
    # kernels
    "kernel", "KernelDef", "KernelMode", "KernelState", "LaunchOptions", "OverflowPolicy",
    "runtime", "create_runtime", "RingKernelRuntime", "KernelHandle", "KernelStatus", "KernelMetrics",
    "DeviceInfo", "DeliveryResult",
    # the kernel language
    "compile", "func", "sqrt", "exp", "log", "sin", "cos", "tanh", "floor", "ceil", "pow", "fma", "clamp", "isnan",
    # building blocks
    "RingQueue", "QueueStats", "HlcClock", "HlcTimestamp", "ControlBlock", "CONTROL_BLOCK_SIZE", "ErrorCode",
    # plugins
    "hookimpl", "BackendSpec", "ProbeResult", "StoreSpec", "VmSpec", "get_registry",
    *errors.__all__,
]
