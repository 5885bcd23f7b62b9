"""The C targets (``ringcore.lang.targets.c`` in its CUDA and OpenCL dialects), built by real compilers.

- The OpenCL C of every kernel (the corpus, ``ringcore.testing.kernels``, the demos and the kernels
  here) is built by PoCL in one program, and its batch entry points are *run* on PoCL: replies,
  status, final state, sends and clock ticks are compared with the reference (the Python function
  called directly, one message after another), bit for bit for integers.
- The CUDA C of the same kernels is compiled by nvcc (PTX), or skipped with the reason when nvcc is absent.
- ``map_build_log`` maps a broken build's diagnostics back to the user's Python lines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pyopencl as cl
import pytest

import ringcore
from ringcore import DeliveryResult, f32, f64, i8, i16, i32, i64, u8, u16, u32, u64
from ringcore.demo import hello_kernel, ping_pong, vector_add
from ringcore.errors import KernelCompileError
from ringcore.kernel import KernelDef
from ringcore.lang import lower
from ringcore.lang.ir import KernelIR
from ringcore.lang.targets import c, cuda, opencl
from ringcore.message import message_spec
from ringcore.testing import corpus as C
from ringcore.testing import kernels as K

# ==============================================================================================
# Kernels of this module (beyond the corpus): the C target's own corners
# ==============================================================================================

_BASE = 0x5EC00000


@ringcore.message(type_id=_BASE + 1)
class Mixed:
    """Every padding case of the payload layout rules."""

    flag: u8
    value: f64
    count: i32
    xyz: f32[3]
    ok: ringcore.bool
    small: u16
    big: i64
    grid: i16[2, 3]


@ringcore.kernel(id="c_layout")
def c_layout(ctx, msg: Mixed) -> Mixed:
    """Read and write every field of a padded layout."""
    return Mixed(flag=msg.flag + 1, value=msg.value * 2.0, count=-msg.count, xyz=msg.xyz, ok=not msg.ok,
                 small=msg.small ^ 0xFFFF, big=msg.big - 1, grid=msg.grid)


@ringcore.message(type_id=_BASE + 2)
class Ping:
    value: i32
    tag: u32


@ringcore.message(type_id=_BASE + 3)
class Stamp:
    delivered: u32
    full: u32
    physical: u64
    logical: u32
    calls: u32


class SenderState:
    calls: u32 = 0


@ringcore.kernel(id="c_sender", state=SenderState)
def c_sender(ctx, msg: Ping) -> Stamp:
    """A serial kernel that sends in a loop (by number and by name) and ticks the clock twice."""
    ctx.state.calls += 1
    delivered = u32(0)
    full = u32(0)
    for i in range(msg.tag % 4):
        r = ctx.send(msg.tag, Ping(value=msg.value + i32(i), tag=ctx.thread_id))
        if r == DeliveryResult.DELIVERED:
            delivered += 1
        elif r == DeliveryResult.QUEUE_FULL:
            full += 1
    t = ctx.now()
    if ctx.send("c_listener", msg) == DeliveryResult.QUEUE_FULL:
        full += 1
    t = ctx.now()
    return Stamp(delivered=delivered, full=full, physical=t.physical, logical=t.logical, calls=ctx.state.calls)


class AtomState:
    ci: i32 = 0
    cu: u32 = 0
    li: i64 = 0
    lu: u64 = 0
    ff: f32 = 0.0
    fd: f64 = 0.0
    mi: i32 = 0
    xu: u32 = 0
    ml: i64 = 0
    xl: u64 = 0
    mf: f32 = 0.0
    xf: f64 = 0.0
    arr: u32[4]


@ringcore.kernel(id="c_atomics", state=AtomState)
def c_atomics(ctx, msg: Ping) -> None:
    """Order-independent atomics on every 32/64-bit type, in parallel lanes."""
    v = msg.value
    ctx.atomic_add("ci", v)
    ctx.atomic_sub("cu", u32(v))
    ctx.atomic_add("li", i64(v) * 1000000007)
    ctx.atomic_sub("lu", u64(v))
    ctx.atomic_add("ff", f32(v))
    ctx.atomic_sub("fd", f64(v))
    ctx.atomic_min("mi", v)
    ctx.atomic_max("xu", u32(v))
    ctx.atomic_min("ml", i64(v) * 3)
    ctx.atomic_max("xl", u64(v))
    ctx.atomic_min("mf", f32(v))
    ctx.atomic_max("xf", f64(v))
    ctx.atomic_add("arr", 1, msg.tag % 4)


class SwapState:
    seen: u32 = 0
    xi: i32 = 5
    xl: u64 = 0
    xf: f32 = 0.0
    xd: f64 = 1.0
    ci: i32 = 0
    cf: f32 = 0.0
    cl: i64 = 0
    ml: i64 = 0
    mf: f32 = 0.0


@ringcore.message(type_id=_BASE + 4)
class Olds:
    a: i32
    b: u64
    c: f32
    d: f64
    e: i32
    f: f32
    g: i64
    h: i64
    k: f32


@ringcore.kernel(id="c_swaps", state=SwapState)
def c_swaps(ctx, msg: Ping) -> Olds:
    """Exchange and compare-and-swap (serial: a plain state write), replying every old value."""
    ctx.state.seen += 1
    a = ctx.atomic_exchange("xi", msg.value)
    b = ctx.atomic_exchange("xl", u64(msg.tag))
    c = ctx.atomic_exchange("xf", f32(msg.value) * 0.5)
    d = ctx.atomic_exchange("xd", f64(msg.tag))
    e = ctx.atomic_cas("ci", msg.value % 3, msg.value)
    f = ctx.atomic_cas("cf", f32(msg.value % 3), f32(msg.value))
    g = ctx.atomic_cas("cl", i64(msg.tag % 2), i64(msg.value))
    h = ctx.atomic_max("ml", i64(msg.value) - 5)
    k = ctx.atomic_min("mf", f32(msg.value) * 0.25)
    return Olds(a=a, b=b, c=c, d=d, e=e, f=f, g=g, h=h, k=k)


@ringcore.message(type_id=_BASE + 5)
class Window:
    start: i64
    stop: i64
    step: i64
    ustart: u64
    ustop: u64
    ustep: u64
    bstart: i8
    bstop: i8
    bstep: i8


@ringcore.message(type_id=_BASE + 6)
class Trips:
    n: u32
    last: i64
    un: u32
    ulast: u64
    bn: u32
    blast: i8


@ringcore.kernel(id="c_trips")
def c_trips(ctx, msg: Window) -> Trips:
    """range() trip counts at the edges of i64, u64 and i8 (no overflow, the loop variable after the loop)."""
    n = u32(0)
    last = msg.start
    for i in range(msg.start, msg.stop, msg.step):
        n += 1
        last = i
    un = u32(0)
    ulast = msg.ustart
    for j in range(msg.ustart, msg.ustop, msg.ustep):
        un += 1
        ulast = j
    bn = u32(0)
    blast = msg.bstart
    for k in range(msg.bstart, msg.bstop, msg.bstep):
        bn += 1
        blast = k
    return Trips(n=n, last=last, un=un, ulast=ulast, bn=bn, blast=blast)


class NarrowState:
    small: u16 = 0


@ringcore.kernel(id="c_narrow_atomic", state=NarrowState)
def c_narrow_atomic(ctx, msg: Ping) -> None:
    ctx.atomic_add("small", 1)


def _window(start: int, stop: int, step: int, ustart: int, ustop: int, ustep: int, bstart: int, bstop: int,
            bstep: int) -> tuple:
    return (start, stop, step, ustart, ustop, ustep, bstart, bstop, bstep)


I64_MIN, I64_MAX, U64_MAX = -(2**63), 2**63 - 1, 2**64 - 1
TRIP_WINDOWS = [
    _window(0, 10, 1, 0, 10, 1, 0, 10, 1),
    _window(10, 0, -1, 10, 0, 1, 10, 0, -1),
    _window(I64_MIN, I64_MAX, I64_MAX, 0, U64_MAX, 2**63, -128, 127, 127),
    _window(I64_MAX, I64_MIN, I64_MIN, U64_MAX - 5, U64_MAX, 2, 127, -128, -128),
    _window(I64_MIN, I64_MAX, 2**62, 1, U64_MAX, U64_MAX, -128, 127, 50),
    _window(I64_MAX, I64_MIN, -(2**61), U64_MAX - 1, U64_MAX, U64_MAX, 127, -128, -1),
    _window(-5, 5, 3, 5, 5, 1, 5, -5, -3),
    _window(I64_MAX - 3, I64_MAX, 1, 2**63 - 2, 2**63 + 2, 1, -128, -127, 1),
    _window(I64_MIN + 3, I64_MIN, -1, 7, 100, 93, 0, -1, -1),
    _window(0, 0, 5, 100, 7, 3, 100, -100, -7),
]


# -- a generated module: every operator of every scalar type, on exhaustive edge pairs -----------

INTS = ["i8", "i16", "i32", "i64", "u8", "u16", "u32", "u64"]
FLOATS = ["f32", "f64"]


def _semantics_source() -> str:
    lines = ["import ringcore", "from ringcore import " + ", ".join(INTS + FLOATS), ""]
    tid = _BASE + 0x100

    def msg(name: str, fields: list[tuple[str, str]]) -> None:
        nonlocal tid
        tid += 1
        lines.extend(["", f"@ringcore.message(type_id={tid})", f"class {name}:"])
        lines.extend(f"    {f}: {t}" for f, t in fields)

    for t in INTS:
        msg(f"Pair_{t}", [("a", t), ("b", t)])
        ops = ["add", "sub", "mul", "fdiv", "mod", "shl", "shr", "band", "bor", "bxor", "neg", "inv", "ab", "mn",
               "mx", "cl"]
        cmps = ["lt", "le", "eq", "ne", "gt", "ge", "nz"]
        msg(f"Ops_{t}", [(o, t) for o in ops] + [(x, "ringcore.bool") for x in cmps]
            + [(f"to_{u}", u) for u in INTS + FLOATS])
        lines += ["", f'@ringcore.kernel(id="c_ops_{t}")', f"def ops_{t}(ctx, msg: Pair_{t}) -> Ops_{t}:",
                  "    a = msg.a", "    b = msg.b", f"    return Ops_{t}(",
                  "        add=a + b, sub=a - b, mul=a * b, fdiv=a // b, mod=a % b, shl=a << b, shr=a >> b,",
                  "        band=a & b, bor=a | b, bxor=a ^ b, neg=-a, inv=~a, ab=abs(a), mn=min(a, b), mx=max(a, b),",
                  "        cl=ringcore.clamp(a, b, a ^ b),",
                  "        lt=a < b, le=a <= b, eq=a == b, ne=a != b, gt=a > b, ge=a >= b, nz=ringcore.bool(a),",
                  "        " + ", ".join(f"to_{u}={u}(a)" for u in INTS + FLOATS) + ",",
                  "    )"]
    for t in FLOATS:
        msg(f"Trio_{t}", [("a", t), ("b", t), ("c", t)])
        exact = ["add", "sub", "mul", "div", "fdiv", "mod", "neg", "ab", "mn", "mx", "cl", "sqrt", "floor", "ceil"]
        cmps = ["lt", "le", "eq", "ne", "gt", "ge", "nan", "nz"]
        msg(f"Fops_{t}", [(o, t) for o in exact] + [(x, "ringcore.bool") for x in cmps]
            + [(f"to_{u}", u) for u in FLOATS])
        lines += ["", f'@ringcore.kernel(id="c_fops_{t}")', f"def fops_{t}(ctx, msg: Trio_{t}) -> Fops_{t}:",
                  "    a = msg.a", "    b = msg.b", "    c = msg.c", f"    return Fops_{t}(",
                  "        add=a + b, sub=a - b, mul=a * b, div=a / b, fdiv=a // b, mod=a % b, neg=-a, ab=abs(a),",
                  "        mn=min(a, b), mx=max(a, b), cl=ringcore.clamp(a, b, c), sqrt=ringcore.sqrt(a),",
                  "        floor=ringcore.floor(a), ceil=ringcore.ceil(a),",
                  "        lt=a < b, le=a <= b, eq=a == b, ne=a != b, gt=a > b, ge=a >= b, nan=ringcore.isnan(a),",
                  "        nz=ringcore.bool(a), " + ", ".join(f"to_{u}={u}(a)" for u in FLOATS) + ",",
                  "    )"]
        msg(f"Math_{t}", [(o, t) for o in ("fma", "pw", "ex", "lg", "sn", "cs", "th")])
        lines += ["", f'@ringcore.kernel(id="c_math_{t}")', f"def math_{t}(ctx, msg: Trio_{t}) -> Math_{t}:",
                  "    a = msg.a", "    b = msg.b", "    c = msg.c", f"    return Math_{t}(",
                  "        fma=ringcore.fma(a, b, c), pw=ringcore.pow(a, b), ex=ringcore.exp(a), lg=ringcore.log(a),",
                  "        sn=ringcore.sin(a), cs=ringcore.cos(a), th=ringcore.tanh(a),",
                  "    )"]
        # float -> int casts fail the lane on NaN, inf and |x| >= 2**63: a kernel of their own.
        msg(f"Toint_{t}", [(f"to_{u}", u) for u in INTS])
        lines += ["", f'@ringcore.kernel(id="c_ftoi_{t}")', f"def ftoi_{t}(ctx, msg: Trio_{t}) -> Toint_{t}:",
                  "    a = msg.a", f"    return Toint_{t}(" + ", ".join(f"to_{u}={u}(a)" for u in INTS) + ")"]
    return "\n".join(lines) + "\n"


def _import_source(name: str, source: str, directory: Path) -> Any:
    path = directory / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # message annotations resolve through the module
    spec.loader.exec_module(mod)
    return mod


_SEM_DIR = Path(tempfile.mkdtemp(prefix="ringcore-c-sem-"))
SEM = _import_source("ringcore_c_semantics", _semantics_source(), _SEM_DIR)
SEM_KERNELS = [v for v in vars(SEM).values() if isinstance(v, KernelDef)]


# ==============================================================================================
# Entries: every kernel run on PoCL and compared with the reference
# ==============================================================================================

#: Reply fields of parallel kernels holding ctx.now()'s logical counter: on a device, lanes take
#: ticks in any order (the values are checked as a set instead).
TICK_FIELDS = {"corpus_now_logical": ("l1", "l2"), "corpus_now_full": ("logical",)}

#: Math builtins other than sqrt are not correctly rounded on devices (OpenCL allows several ulps).
_MATH_TOLERANCE = "ulps4"


def _extra_entries() -> list[C.CorpusEntry]:
    E = C.CorpusEntry
    out = [
        E(c_layout, uses_64bit=True),
        E(c_sender, serial=True, uses_now=True, sends=("c_listener",), sends_by_number=True,
          domains={"tag": C.Domain(0, 12, 0.1)}),
        E(c_atomics, domains={"value": C.Domain(-1000, 1000, 0.0)}, uses_64bit=True),
        E(c_swaps, serial=True, domains={"value": C.Domain(-1000, 1000, 0.0)}, uses_64bit=True),
        E(c_trips, uses_64bit=True),
    ]
    for k in SEM_KERNELS:
        tol = _MATH_TOLERANCE if k.id.startswith("c_math_") else "exact"
        out.append(E(k, tolerance=tol, uses_64bit=True))
    return out


def _testing_entries() -> list[C.CorpusEntry]:
    E = C.CorpusEntry
    small = {"value": C.Domain(-50, 50, 0.3)}
    return [
        E(K.echo), E(K.tee, sends=("echo",)), E(K.accumulate, serial=True), E(K.histogram, serial=True),
        E(K.sink, serial=True), E(K.bounce, sends_by_number=True, domains={"remaining": C.Domain(0, 3, 0.2)}),
        E(K.relay, sends_by_number=True), E(K.router, sends_by_number=True),
        E(K.flood, sends_by_number=True, domains={"count": C.Domain(0, 9, 0.0)}),
        E(K.fragile, domains=small), E(K.evens_only, domains=small), E(K.thermometer, serial=True),
    ]


def _demo_kernels() -> list[KernelDef]:
    return [v for mod in (hello_kernel, ping_pong, vector_add) for v in vars(mod).values() if isinstance(v, KernelDef)]


def _demo_entries() -> list[C.CorpusEntry]:
    return [C.CorpusEntry(k, tolerance="ulp1", serial=lower(k).serial) for k in _demo_kernels()]


ENTRIES: list[C.CorpusEntry] = [*C.CORPUS, *_testing_entries(), *_demo_entries(), *_extra_entries()]


def _all_kernels() -> list[KernelDef]:
    seen: dict[str, KernelDef] = {}
    for e in ENTRIES:
        seen.setdefault(e.kernel.id, e.kernel)
    return list(seen.values())


def _lowered() -> list[KernelIR]:
    """The IR of every kernel the frontend accepts (one it refuses fails its own entry's test, not the
    shared program)."""
    out = []
    for k in _all_kernels():
        try:
            out.append(lower(k))
        except KernelCompileError:
            continue
    return out


# ==============================================================================================
# Running a batch on PoCL
# ==============================================================================================

#: The environment the device sees in these tests.
PHYSICAL = 1_700_000_123_456_789
LOGICAL_BASE = 40
OUTBOX_CAPACITY = 4096


@dataclasses.dataclass
class Ocl:
    ctx: Any
    queue: Any
    device: Any
    programs: dict

    def build(self, kirs: list[KernelIR]) -> Any:
        """One program with the prelude once and every kernel's part (cached)."""
        key = tuple(id(k) for k in kirs)
        prg = self.programs.get(key)
        if prg is None:
            src = opencl.prelude() + "".join(opencl.emit_parts(k)[1] for k in kirs)
            prg = cl.Program(self.ctx, src).build(options=opencl.build_options(self.device))
            self.programs[key] = prg
        return prg


def _pocl_device() -> Any:
    # PoCL caches compiled kernels under POCL_CACHE_DIR (the Makefile exports one); never in $HOME here.
    os.environ.setdefault("POCL_CACHE_DIR", tempfile.mkdtemp(prefix="ringcore-pocl-"))
    platforms = cl.get_platforms()
    assert platforms, "no OpenCL platform: install pyopencl[pocl] (the test extra) to build the OpenCL target"
    for p in platforms:
        if "portable" in p.name.lower() or "pocl" in p.name.lower():
            return p.get_devices()[0]
    return platforms[0].get_devices()[0]


@pytest.fixture(scope="session")
def ocl() -> Ocl:
    dev = _pocl_device()
    ctx = cl.Context([dev])
    return Ocl(ctx, cl.CommandQueue(ctx), dev, {})


@pytest.fixture(scope="session")
def all_program(ocl: Ocl) -> Any:
    """Every kernel of this module's entries in one PoCL program (one build: PoCL builds are slow)."""
    kirs = _lowered()
    idents = [c.symbols(k).ident for k in kirs]
    assert len(set(idents)) == len(idents), "two kernels share a C identifier"
    try:
        return ocl.build(kirs)
    except cl.Error:
        bad = []
        for k in kirs:  # find the culprits, with their mapped diagnostics
            try:
                ocl.build([k])
            except cl.Error as exc:
                bad.append(f"{k.name}: {c.map_build_log(str(exc), k)[:5]}")
        raise AssertionError("the OpenCL program does not build:\n" + "\n".join(bad)) from None


def _buf(ocl: Ocl, data: np.ndarray) -> Any:
    mf = cl.mem_flags
    raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1)
    if raw.size == 0:
        raw = np.zeros(8, np.uint8)
    return cl.Buffer(ocl.ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=raw)


def _read(ocl: Ocl, buf: Any, nbytes: int) -> np.ndarray:
    out = np.empty(buf.size, np.uint8)
    cl.enqueue_copy(ocl.queue, out, buf)
    return out[:nbytes]


@dataclasses.dataclass
class DeviceRun:
    result: C.RunResult
    status: np.ndarray
    env: np.void
    logicals: list[int]


def run_opencl(ocl: Ocl, program: Any, kernel: KernelDef | KernelIR, inputs: np.ndarray, state: np.ndarray | None,
               *, capacity: int = OUTBOX_CAPACITY, kernel_number: int = C.KERNEL_NUMBER,
               headers: np.ndarray | None = None) -> DeviceRun:
    """Run one batch through ``rc_batch_<ident>`` on PoCL and return it as the corpus harness's RunResult."""
    kir = kernel if isinstance(kernel, KernelIR) else lower(kernel)
    sym = c.symbols(kir)
    n = len(inputs)
    slots = np.zeros(n, kir.input.slot_dtype)
    slots["payload"] = inputs
    slots["header"] = headers if headers is not None else np.zeros(n, ringcore.HEADER_DTYPE)
    assert slots.dtype.itemsize == sym.slot_size
    state_dtype = c._state_dtype(kir)
    st = state if state is not None else np.zeros(1, state_dtype)
    assert st.dtype.itemsize == sym.state_size
    env = np.zeros(1, c.ENV_DTYPE)
    env["hlc_physical"], env["hlc_logical"] = PHYSICAL, LOGICAL_BASE
    env["kernel_number"], env["outbox_capacity"] = kernel_number, capacity
    stride = sym.outbox_stride
    status = np.full(n, 0xDEADBEEF, np.uint32)
    bufs = [_buf(ocl, slots), _buf(ocl, np.zeros(n * sym.out_size, np.uint8)), _buf(ocl, status), _buf(ocl, st),
            _buf(ocl, env), _buf(ocl, np.zeros(capacity * stride, np.uint8))]
    entry = cl.Kernel(program, sym.entry)
    gsize = 1 if kir.serial else max(n, 1)
    entry(ocl.queue, (gsize,), None, np.uint32(n), *bufs)
    replies_raw = _read(ocl, bufs[1], n * sym.out_size)
    status = _read(ocl, bufs[2], 4 * n).view(np.uint32)
    new_state = _read(ocl, bufs[3], st.nbytes).view(st.dtype).copy() if state is not None else None
    env_out = _read(ocl, bufs[4], c.ENV_DTYPE.itemsize).view(c.ENV_DTYPE)[0]
    outbox = _read(ocl, bufs[5], capacity * stride)
    has_reply, sites = c.decode_status(status)
    known = (status == c.STATUS_NO_REPLY) | (status == c.STATUS_REPLY) | (sites > 0)
    assert known.all(), f"lanes {np.flatnonzero(~known)[:10]} left an invalid status {status[~known][:10]}"
    replies = None
    if kir.output is not None:
        replies = replies_raw.view(kir.output.dtype).copy() if sym.out_size else np.zeros(n, kir.output.dtype)
        replies[~has_reply] = np.zeros(1, kir.output.dtype)[0]
    errors: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    for i in np.flatnonzero(sites).tolist():
        site = kir.errors[int(sites[i]) - 1]
        errors[i], details[i] = site.kind, site.describe(kir.filename)
    sends: list[list[tuple[str | int, int, bytes]]] = [[] for _ in range(n)]
    publishes: list[list[tuple[str, int, bytes]]] = [[] for _ in range(n)]
    count = min(int(env_out["outbox_count"]), capacity)
    for rec in c.read_outbox(kir, outbox, count):
        (publishes if rec.publish else sends)[rec.lane].append((rec.target, rec.spec.type_id, rec.payload.tobytes()))
    result = C.RunResult(has_reply, replies, errors, details, new_state, sends, [0] * n, publishes)
    return DeviceRun(result, status, env_out, [])


@contextlib.contextmanager
def device_services(capacity: int = OUTBOX_CAPACITY):
    """Make the reference's ctx.send, ctx.publish and ctx.now answer as the C target does: DELIVERED
    (a publish: 1) while the outbox has room, QUEUE_FULL (0) after; (PHYSICAL, LOGICAL_BASE + k) for
    the k-th tick of the batch."""
    sent = [0]
    ticks = [0]

    def delivery_for(target: Any, lane: int, k: int) -> DeliveryResult:
        sent[0] += 1
        return DeliveryResult.DELIVERED if sent[0] <= capacity else DeliveryResult.QUEUE_FULL

    def subscribers_for(topic: str, lane: int, k: int) -> int:
        sent[0] += 1
        return 1 if sent[0] <= capacity else 0

    def now_for(lane: int, k: int) -> tuple[int, int]:
        ticks[0] += 1
        return PHYSICAL, LOGICAL_BASE + ticks[0] - 1

    mp = pytest.MonkeyPatch()
    mp.setattr(C, "delivery_for", delivery_for)
    mp.setattr(C, "now_for", now_for)
    mp.setattr(C, "subscribers_for", subscribers_for)
    try:
        yield
    finally:
        mp.undo()


def check_entry(ocl: Ocl, program: Any, entry: C.CorpusEntry, inputs: np.ndarray, *,
                capacity: int = OUTBOX_CAPACITY) -> None:
    kir = lower(entry.kernel)
    headers = C.make_headers(entry, len(inputs))
    with device_services(capacity):
        ref = C.run_reference(entry, inputs, entry.new_state(), headers=headers)
    run = run_opencl(ocl, program, entry.kernel, inputs, entry.new_state(), capacity=capacity, headers=headers)
    got = run.result
    # The device counts ticks per batch, not per lane: check the total, then take the lanes' counts.
    assert int(run.env["tick_count"]) == sum(ref.ticks), "ctx.now() calls"
    got.ticks = list(ref.ticks)
    records = sum(len(s) for s in ref.sends) + sum(len(p) for p in ref.publishes)
    assert int(run.env["outbox_count"]) == records, "ctx.send() and ctx.publish() calls"
    # The outbox keeps the sends that found room (the first `capacity`, in lane order for a serial kernel).
    assert records <= capacity or not any(ref.publishes), "overflow tests use kernels that only send"
    room = capacity
    for lane, s in enumerate(ref.sends):
        ref.sends[lane], room = s[:room], max(0, room - len(s))
    ordered = kir.serial
    check = entry
    if kir.uses_now and not kir.serial and ref.replies is not None:
        fields = TICK_FIELDS[entry.name]
        check = dataclasses.replace(entry, unordered=(*entry.unordered, *fields))
        ordered = False
        taken = np.concatenate([got.replies[f][got.has_reply] for f in fields]).astype(np.int64)
        assert set(taken.tolist()) <= set(range(LOGICAL_BASE, LOGICAL_BASE + int(run.env["tick_count"])))
    C.assert_same(check, ref, got, inputs, tolerance=entry.tolerance, ordered=ordered)
    if entry.unordered and not kir.serial:
        # Order-dependent atomic results: a batch of one message has one order.
        one = inputs[:1]
        with device_services(capacity):
            ref1 = C.run_reference(entry, one, entry.new_state(), headers=headers[:1])
        got1 = run_opencl(ocl, program, entry.kernel, one, entry.new_state(), capacity=capacity,
                          headers=headers[:1]).result
        got1.ticks = list(ref1.ticks)
        C.assert_same(entry, ref1, got1, one, tolerance=entry.tolerance, ordered=True)


def _flood_inputs(rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(300, K.Flood.dtype)  # at most 2700 sends: within the outbox, so every one is delivered
    out["target"] = rng.integers(0, 2**32, len(out), dtype=np.uint64)
    out["count"] = rng.integers(0, 10, len(out))
    return out


#: Kernels whose edge-case inputs would loop for ever (a count of 2**32 - 1) or that need special windows.
SPECIAL_INPUTS = {
    "flood": _flood_inputs,
    "c_trips": lambda rng: np.array(TRIP_WINDOWS, Window.dtype),
}


def _inputs(entry: C.CorpusEntry, n_random: int = 200) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(entry.name.encode()))
    special = SPECIAL_INPUTS.get(entry.name)
    if special is not None:
        return special(rng)
    return np.concatenate([entry.edge_inputs(), entry.make_inputs(rng, n_random)])


#: Entries where the *reference* disagrees with IEEE 754 / C99 (which the C targets follow), outside this
#: target's files, as ``name -> reason``. Strict: when the reference is fixed the XPASS fails, and the entry
#: must go. (Empty: the reference's pow and f64 fma now follow C.)
REFERENCE_DEVIATIONS: dict[str, str] = {}


def _entry_params() -> list[Any]:
    out = []
    for e in ENTRIES:
        reason = REFERENCE_DEVIATIONS.get(e.name)
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(e, id=e.name, marks=marks))
    return out


@pytest.mark.parametrize("entry", _entry_params())
def test_opencl_runs_like_the_reference(ocl: Ocl, all_program: Any, entry: C.CorpusEntry) -> None:
    """Every kernel, on edge-case and random inputs, gives the reference's replies, failures, state,
    sends and ticks when run on PoCL (bit for bit, except float tolerances the corpus allows)."""
    check_entry(ocl, all_program, entry, _inputs(entry))


def _trips_ir() -> KernelIR:
    """c_trips built by hand, with For loops over i64, u64 and i8 values (the IR the frontend should give)."""
    from ringcore.lang import ir

    def load(space: str, name: str, t: Any) -> ir.Load:
        return ir.Load(t, ir.Ref(space, name, None, t))

    def ref(name: str, t: Any) -> ir.Ref:
        return ir.Ref("local", name, None, t)

    body: list[ir.Stmt] = []
    locals_: dict[str, Any] = {}
    fields: dict[str, Any] = {}
    for prefix, t, var in (("", i64, "i"), ("u", u64, "j"), ("b", i8, "k")):
        n, last = f"{prefix}n", f"{prefix}last"
        locals_.update({n: u32, last: t, var: t})
        start, stop, step = (load("msg", f"{prefix or ''}{w}", t) for w in ("start", "stop", "step"))
        body += [
            ir.Assign(ref(n, u32), ir.Const(u32, 0)),
            ir.Assign(ref(last, t), load("msg", f"{prefix}start", t)),
            ir.For(var, start, stop, step, [
                ir.Assign(ref(n, u32), ir.Binary(u32, "add", load("local", n, u32), ir.Const(u32, 1))),
                ir.Assign(ref(last, t), load("local", var, t)),
            ]),
        ]
        fields[n] = load("local", n, u32)
        fields[last] = load("local", last, t)
    out_spec = message_spec(Trips)
    body.append(ir.Return(ir.MsgValue(out_spec, fields)))
    return KernelIR(name="c_trips_by_hand", input=message_spec(Window), output=out_spec, state={},
                    locals=locals_, body=body, funcs={}, errors=[], send_targets=[], serial=False,
                    atomics=frozenset(), uses_64bit=None, uses_now=False, filename=__file__, first_line=1,
                    source="")


def test_for_trip_counts_at_the_edges(ocl: Ocl) -> None:
    """``range()`` trip counts and the loop variable after the loop, for i64, u64 and i8 bounds at the
    edges of their types (no overflow), checked against Python's range."""
    kir = _trips_ir()
    inputs = np.array(TRIP_WINDOWS, Window.dtype)
    run = run_opencl(ocl, ocl.build([kir]), kir, inputs, None)
    assert run.status.tolist() == [c.STATUS_REPLY] * len(inputs)
    r = run.result.replies
    for k, w in enumerate(TRIP_WINDOWS):
        for prefix, (a, b, s) in (("", w[0:3]), ("u", w[3:6]), ("b", w[6:9])):
            rng = range(a, b, s)
            assert int(r[f"{prefix}n"][k]) == len(rng), (k, prefix)
            assert int(r[f"{prefix}last"][k]) == (rng[-1] if len(rng) else a), (k, prefix)


_CUSTOM_LOOP = """
/* A persistent-style loop of a backend's own: a grid-stride loop over the slots, calling the handler. */
{kq} void my_loop_{i}(const rc_u32 n, {g}const rc_u8 *slots, {g}rc_u8 *replies, {g}rc_u32 *status,
                      {g}rc_u8 *state, {g}rc_env *env, {g}rc_u8 *outbox, const rc_u32 stride) {{
    for (rc_u32 i = {gid}; i < n; i += stride) {{
        {g}const rc_u8 *slot = slots + (rc_u64)i * RC_SLOT_SIZE_{i};
        status[i] = rc_handle_{i}(({g}const rc_header *)slot, ({g}const rc_in_{i} *)(slot + RC_HEADER_SIZE),
                                  ({g}rc_out_{i} *)(replies + (rc_u64)i * RC_OUT_SIZE_{i}),
                                  ({g}rc_state_{i} *)state, env, outbox, i);
    }}
}}
"""


def test_handler_is_callable_from_a_backends_own_loop(ocl: Ocl, tmp_path: Path) -> None:
    """The device function ``rc_handle_<ident>`` is the ABI a persistent loop uses: call it from a
    grid-stride loop of our own (run on PoCL, compiled by nvcc)."""
    kir = lower(K.fragile)
    i = c.symbols(kir).ident
    src = opencl.emit(kir) + _CUSTOM_LOOP.format(kq="__kernel", g="__global ", gid="(rc_u32)get_global_id(0)", i=i)
    prg = cl.Program(ocl.ctx, src).build(options=opencl.build_options(ocl.device))
    inputs = np.zeros(1000, K.Num.dtype)
    inputs["value"] = np.arange(1000) - 10
    inputs["tag"] = np.arange(1000) * 3
    slots = np.zeros(1000, kir.input.slot_dtype)
    slots["payload"] = inputs
    bufs = [_buf(ocl, slots), _buf(ocl, np.zeros(1000, K.Echoed.dtype)), _buf(ocl, np.zeros(1000, np.uint32)),
            _buf(ocl, np.zeros(8, np.uint8)), _buf(ocl, np.zeros(1, c.ENV_DTYPE)), _buf(ocl, np.zeros(8, np.uint8))]
    cl.Kernel(prg, f"my_loop_{i}")(ocl.queue, (64,), None, np.uint32(1000), *bufs, np.uint32(64))
    status = _read(ocl, bufs[2], 4000).view(np.uint32)
    replies = _read(ocl, bufs[1], 1000 * K.Echoed.dtype.itemsize).view(K.Echoed.dtype)
    ok = inputs["value"] >= 0
    assert (status[ok] == c.STATUS_REPLY).all() and (status[~ok] == (c.STATUS_FAILED | 1)).all()
    assert kir.errors[0].kind == "ValueError"
    assert (replies["doubled"][ok] == inputs["value"][ok] * 2).all() and (replies["tag"][ok] == inputs["tag"][ok]).all()
    if _nvcc() is not None:
        cu = cuda.emit(kir) + _CUSTOM_LOOP.format(kq='extern "C" __global__', g="",
                                                 gid="(rc_u32)(blockIdx.x * blockDim.x + threadIdx.x)", i=i)
        r = compile_cuda(cu, tmp_path, "loop")
        assert r.returncode == 0, r.stderr[-3000:]


def _local_arrays_ir() -> KernelIR:
    """vector add through local arrays, by hand: ArrayZero, ArrayCopy from the message, element
    loads and stores, a whole local array as a reply field, and a Fail on a bad lane."""
    from ringcore.lang import ir

    op, vs = message_spec(vector_add.Operands), message_spec(vector_add.VecSum)
    arr = f32[16]
    i = ir.Load(i32, ir.Ref("local", "i", None, i32))
    t_i = ir.Ref("local", "t", i, f32)
    body: list[ir.Stmt] = [
        ir.ArrayZero(ir.Ref("local", "z", None, arr)),
        ir.ArrayCopy(ir.Ref("local", "t", None, arr), ir.Ref("msg", "a", None, arr)),
        ir.For("i", ir.Const(i32, 0), ir.Const(i32, 16), ir.Const(i32, 1), [
            ir.Assign(t_i, ir.Binary(f32, "add", ir.Load(f32, t_i), ir.Load(f32, ir.Ref("msg", "b", i, f32)))),
            ir.Assign(ir.Ref("local", "z", i, f32),
                      ir.Binary(f32, "add", ir.Load(f32, ir.Ref("local", "z", i, f32)), ir.Const(f32, 1.0))),
        ]),
        ir.If(ir.Compare(ringcore.bool, "ne", ir.Load(f32, ir.Ref("local", "z", ir.Const(i32, 15), f32)),
                         ir.Const(f32, 1.0)), [ir.Fail(1)], []),
        ir.If(ir.Builtin(ringcore.bool, "isnan", [ir.Load(f32, ir.Ref("local", "t", ir.Const(i32, 0), f32))]),
              [ir.Fail(2)], []),
        ir.Return(ir.MsgValue(vs, {"c": ir.Ref("local", "t", None, arr)})),
    ]
    errors = [ir.ErrorSite("AssertionError", "z", None), ir.ErrorSite("ValueError", "nan", None)]
    return KernelIR(name="c_local_arrays_by_hand", input=op, output=vs, state={},
                    locals={"t": arr, "z": arr, "i": i32}, body=body, funcs={}, errors=errors, send_targets=[],
                    serial=False, atomics=frozenset(), uses_64bit=None, uses_now=False, filename=__file__,
                    first_line=1, source="")


def test_local_arrays(ocl: Ocl) -> None:
    kir = _local_arrays_ir()
    rng = np.random.default_rng(3)
    inputs = np.zeros(300, vector_add.Operands.dtype)
    inputs["a"] = rng.normal(size=(300, 16)).astype(np.float32)
    inputs["b"] = rng.normal(size=(300, 16)).astype(np.float32)
    inputs["a"][7, 0] = np.nan
    run = run_opencl(ocl, ocl.build([kir]), kir, inputs, None)
    ok = np.arange(300) != 7
    assert (run.status[ok] == c.STATUS_REPLY).all() and run.status[7] == c.STATUS_FAILED | 2
    assert run.result.errors[7] == "ValueError"
    assert np.array_equal(run.result.replies["c"][ok], (inputs["a"] + inputs["b"])[ok])


def test_outbox_full_gives_queue_full(ocl: Ocl, all_program: Any) -> None:
    """A send beyond the outbox's capacity returns QUEUE_FULL; the records kept are the first ones."""
    entry = C.CorpusEntry(c_sender, serial=True)
    inputs = np.zeros(6, Ping.dtype)
    inputs["tag"] = [3, 7, 11, 3, 2, 1]
    inputs["value"] = np.arange(6) * 10
    check_entry(ocl, all_program, entry, inputs, capacity=5)
    run = run_opencl(ocl, all_program, c_sender, inputs, entry.new_state(), capacity=5)
    assert int(run.env["outbox_count"]) == sum(int(t) % 4 + 1 for t in inputs["tag"])
    assert run.result.replies["full"].sum() == run.env["outbox_count"] - 5


def test_serial_ticks_and_sends_are_in_order(ocl: Ocl, all_program: Any) -> None:
    """A serial kernel's ticks and outbox records follow the message order exactly."""
    inputs = np.zeros(5, Ping.dtype)
    inputs["tag"] = [1, 2, 0, 3, 1]
    run = run_opencl(ocl, all_program, c_sender, inputs, c_sender.state.new())
    r = run.result.replies
    assert r["logical"].tolist() == [LOGICAL_BASE + 2 * i + 1 for i in range(5)]
    assert (r["physical"] == PHYSICAL).all() and r["calls"].tolist() == [1, 2, 3, 4, 5]
    kir = lower(c_sender)
    stride = c.outbox_stride(kir)
    assert stride % 8 == 0 and stride >= c.OUTBOX_HEAD_SIZE + Ping.dtype.itemsize
    lanes = [lane for lane, s in enumerate(run.result.sends) for _ in s]
    assert lanes == sorted(lanes) and len(lanes) == sum(t % 4 + 1 for t in inputs["tag"])
    assert run.result.sends[3][-1][0] == "c_listener" and run.result.sends[3][0][0] == 3


def test_parallel_atomics_order_independent_results(ocl: Ocl, all_program: Any) -> None:
    """Many lanes of 32/64-bit integer and float atomics (CAS loops for floats and 64-bit min/max)."""
    entry = C.CorpusEntry(c_atomics)
    rng = np.random.default_rng(5)
    inputs = np.zeros(4096, Ping.dtype)
    inputs["value"] = rng.integers(-1000, 1000, len(inputs))
    inputs["tag"] = rng.integers(0, 2**32, len(inputs), dtype=np.uint64)
    check_entry(ocl, all_program, entry, inputs)


# ==============================================================================================
# Compiling: every kernel in both dialects
# ==============================================================================================


def test_every_kernel_builds_on_pocl(all_program: Any) -> None:
    """The corpus, ringcore.testing.kernels, the demos and these kernels: one program, every entry point."""
    names = {k.function_name for k in all_program.all_kernels()}
    kirs = _lowered()
    assert len(kirs) >= len(C.CORPUS) // 2
    for k in kirs:
        assert c.symbols(k).entry in names


def _nvcc() -> str | None:
    return shutil.which("nvcc")


needs_nvcc = pytest.mark.skipif(_nvcc() is None and importlib.util.find_spec("cupy") is None,
                                reason="neither nvcc nor CuPy (NVRTC) is installed: the CUDA source cannot be compiled")


def compile_cuda(source: str, tmp: Path, name: str = "kernels") -> subprocess.CompletedProcess:
    """Compile CUDA C to PTX with nvcc (or NVRTC through CuPy); returns the process (rc, stderr)."""
    nvcc = _nvcc()
    if nvcc is None:
        import cupy  # pragma: no cover - only where CuPy is installed without nvcc

        try:
            cupy.RawModule(code=source, options=cuda.NVRTC_OPTIONS, backend="nvrtc").compile()
            return subprocess.CompletedProcess([], 0, "", "")
        except cupy.cuda.compiler.CompileException as exc:
            return subprocess.CompletedProcess([], 1, "", str(exc))
    path = tmp / f"{name}.cu"
    path.write_text(source)
    return subprocess.run([nvcc, "-arch=sm_80", "--ptx", "-x", "cu", *cuda.NVCC_OPTIONS, "-o", str(tmp / f"{name}.ptx"),
                           str(path)], capture_output=True, text=True, timeout=600)


@needs_nvcc
def test_every_kernel_compiles_for_cuda(tmp_path: Path) -> None:
    """The same kernels' CUDA C, one module, compiled to PTX (with the NVRTC option set's nvcc spelling)."""
    kirs = _lowered()
    src = cuda.prelude() + "".join(cuda.emit_parts(k)[1] for k in kirs)
    r = compile_cuda(src, tmp_path)
    assert r.returncode == 0, r.stderr[-5000:]
    ptx = (tmp_path / "kernels.ptx").read_text() if (tmp_path / "kernels.ptx").exists() else ""
    for k in kirs:  # the batch entry point and the persistent loop of every kernel
        assert f".entry {c.symbols(k).entry}(" in ptx or _nvcc() is None
        assert f".entry {c.symbols(k).persist}(" in ptx or _nvcc() is None


@needs_nvcc
def test_single_kernel_cuda_source_is_self_contained(tmp_path: Path) -> None:
    """``cuda.emit`` alone (prelude included, no #include) compiles."""
    r = compile_cuda(cuda.emit(lower(K.histogram)), tmp_path, "histogram")
    assert r.returncode == 0, r.stderr[-3000:]


def test_single_kernel_opencl_source_builds(ocl: Ocl) -> None:
    src = opencl.emit(lower(K.accumulate))
    assert "#include" not in src
    prg = cl.Program(ocl.ctx, src).build(options=opencl.build_options(ocl.device))
    assert c.symbols(lower(K.accumulate)).entry in {k.function_name for k in prg.all_kernels()}


# ==============================================================================================
# Build logs, layouts, names, errors
# ==============================================================================================


def _break_user_line(source: str, kir: KernelIR) -> tuple[str, int]:
    """Corrupt the first generated line that belongs to a user line; return the source and that line."""
    lines = source.splitlines()
    marker = "#line "
    for i, line in enumerate(lines):
        if line.startswith(marker) and line.endswith(c._c_string(kir.filename)):
            user_line = int(line.split()[1])
            lines[i + 1] = "    rc_undefined_thing = 1; " + lines[i + 1]
            return "\n".join(lines) + "\n", user_line
    raise AssertionError("no #line directive for the user's file")


def test_map_build_log_points_at_the_python_line_opencl(ocl: Ocl) -> None:
    kir = lower(K.histogram)
    src, line = _break_user_line(opencl.emit(kir), kir)
    with pytest.raises(cl.Error) as info:
        cl.Program(ocl.ctx, src).build(options=opencl.build_options(ocl.device))
    diags = c.map_build_log(str(info.value), kir)
    assert any(ln == line and "rc_undefined_thing" in msg and msg.startswith("error") for ln, msg in diags), diags
    assert kir.first_line < line <= kir.first_line + 10


@needs_nvcc
def test_map_build_log_points_at_the_python_line_cuda(tmp_path: Path) -> None:
    kir = lower(K.histogram)
    src, line = _break_user_line(cuda.emit(kir), kir)
    r = compile_cuda(src, tmp_path, "broken")
    assert r.returncode != 0
    diags = c.map_build_log(r.stderr, kir)
    assert any(ln == line and "rc_undefined_thing" in msg for ln, msg in diags), diags


def test_map_build_log_formats() -> None:
    kir = lower(K.echo)
    f = kir.filename
    log = "\n".join([
        f"{f}:12:5: error: use of undeclared identifier 'x'",
        "<ringcore:echo.cl>:40:1: warning: unused variable 'y'",
        f'{f}(14): error: identifier "z" is undefined',
        f"error: {f}:15:43: use of undeclared identifier 'w'",
        "1 error generated.",
    ])
    assert c.map_build_log(log, kir) == [
        (12, "error: use of undeclared identifier 'x'"),
        (None, "<ringcore:echo.cl>:40:1: warning: unused variable 'y'"),
        (14, 'error: identifier "z" is undefined'),
        (15, "error: use of undeclared identifier 'w'"),
    ]


def test_layout_asserts_fire(ocl: Ocl, tmp_path: Path) -> None:
    """The compile-time layout checks really check: a wrong offset fails both builds."""
    kir = lower(c_layout)
    src = opencl.emit(kir)
    good = f"RC_ASSERT_OFFSET({c.symbols(kir).in_struct}, f_value, 8,"
    assert good in src
    bad = src.replace(good, good.replace(" 8,", " 4,"))
    with pytest.raises(cl.Error):
        cl.Program(ocl.ctx, bad).build(options=opencl.build_options(ocl.device))
    if _nvcc() is not None:
        r = compile_cuda(cuda.emit(kir).replace(good, good.replace(" 8,", " 4,")), tmp_path, "bad")
        assert r.returncode != 0 and "f_value" in r.stderr


def test_structs_match_the_dtypes() -> None:
    """Every member sits at its dtype offset (explicit padding), the record's size is the dtype's."""
    kir = lower(c_layout)
    src = c.emit(kir, c.OPENCL)
    name = c.symbols(kir).in_struct
    for field, (_dt, off) in Mixed.dtype.fields.items():
        assert f"RC_ASSERT_OFFSET({name}, f_{field}, {off}," in src
    assert f"sizeof({name}) == {Mixed.dtype.itemsize}" in src
    assert "rc_u8 _pad0[7];" in src  # flag (u8) then value (f64) at 8
    assert f"RC_SLOT_SIZE_{c.symbols(kir).ident} {Mixed.slot_dtype.itemsize}" in src
    assert c.ENV_DTYPE.itemsize == 64 and c.OUTBOX_HEAD_DTYPE.itemsize == c.OUTBOX_HEAD_SIZE == 24
    hdr = c.prelude(c.CUDA)
    for field, (_dt, off) in ringcore.HEADER_DTYPE.fields.items():
        assert f"RC_ASSERT_OFFSET(rc_header, {field}, {off}," in hdr


def test_identifiers_are_valid_and_distinct() -> None:
    import re

    ids = ["echo", "my-kernel", "my_kernel", "1st", "k.v2", "ключ", "a__b", "a_b", "_private", "k_private", "a b",
           "a_", "A1"]
    made = [c.c_ident(i) for i in ids]
    assert made[0] == "echo" and made[2] == "my_kernel"
    assert all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", m) and "__" not in m for m in made), made
    assert made[ids.index("a_b")] == "a_b" and made[ids.index("k_private")] == "k_private"
    assert len(set(made)) == len(made)


def test_narrow_atomics_are_a_compile_error() -> None:
    """8/16-bit fields have no device atomics: KernelCompileError naming the field, the line and the target."""
    for target in (cuda, opencl):
        with pytest.raises(KernelCompileError) as info:
            target.emit(lower(c_narrow_atomic))
        msg = str(info.value)
        assert "'small'" in msg and "u16" in msg and "atomic_add" in msg
        assert info.value.line == c_narrow_atomic.func.__code__.co_firstlineno + 2
        assert info.value.target in ("cuda", "opencl")


def test_build_options_never_relax_float_math(ocl: Ocl) -> None:
    opts = opencl.build_options(ocl.device)
    assert not any("fast-relaxed" in o or "mad-enable" in o or "unsafe" in o or "finite" in o for o in opts)
    assert "--fmad=false" in cuda.NVRTC_OPTIONS and "-fmad=false" in cuda.NVCC_OPTIONS
    assert "--use_fast_math" not in cuda.NVRTC_OPTIONS
    assert "#pragma OPENCL FP_CONTRACT OFF" in opencl.prelude()


def test_status_and_outbox_decoding() -> None:
    has, site = c.decode_status(np.array([0, 1, c.STATUS_FAILED | 3, c.STATUS_FAILED | 1], np.uint32))
    assert has.tolist() == [False, True, False, False] and site.tolist() == [0, 0, 3, 1]
    kir = lower(c_sender)
    stride = c.outbox_stride(kir)
    buf = np.zeros(2 * stride, np.uint8)
    heads = np.zeros(2, c.OUTBOX_HEAD_DTYPE)
    heads[0] = (4, 1, 0, Ping.type_id, c.SEND_TARGET_IS_NAME, Ping.dtype.itemsize)
    heads[1] = (4, 0, 9, Ping.type_id, 0, Ping.dtype.itemsize)
    for k in range(2):
        buf[k * stride:k * stride + 24] = heads[k:k + 1].view(np.uint8)
        buf[k * stride + 24:k * stride + 24 + Ping.dtype.itemsize] = np.array([(k + 5, 77)], Ping.dtype).view(np.uint8)
    recs = c.read_outbox(kir, buf, 2)
    assert [(r.lane, r.seq, r.target) for r in recs] == [(4, 0, 9), (4, 1, "c_listener")]
    assert int(recs[0].payload["value"]) == 6 and int(recs[1].payload["tag"]) == 77


_ = (f32, f64, i8, i16, i32, i64, u8, u16, u32, u64)
