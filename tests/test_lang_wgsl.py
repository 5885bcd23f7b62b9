"""The WGSL target: every module is validated by naga, and kernels run for real on a software adapter.

wgpu-py (naga, then Mesa's llvmpipe or lavapipe here) compiles every generated
module into a compute pipeline with the target's explicit bind group layout:
that is where WGSL validation errors surface. The kernels then run on real
buffers, following ``ringcore.lang.targets.wgsl``'s ABI, and their replies,
final state, per-lane failures and sends are compared with reference mode (the
Python function called directly, message by message, through
``ringcore.testing.corpus.run_reference``): bit for bit for integers, within the
corpus entry's ulp tolerance for floats. Sends and clock ticks are answered by
the ABI's scripted mode with the corpus's ``delivery_for``/``now_for``, so both
runs see the same answers; the directory mode (the production one) is tested
against hand-computed results.

Kernels that compute with 64-bit values must be refused at compile time with
a KernelCompileError naming the construct and its line.
"""

from __future__ import annotations

import importlib
import inspect
import os
import pkgutil
import tempfile

if not os.environ.get("XDG_RUNTIME_DIR"):
    # wgpu-native warns when XDG_RUNTIME_DIR is unset; give it a private directory (mode 0700).
    os.environ["XDG_RUNTIME_DIR"] = tempfile.mkdtemp(prefix="ringcore-xdg-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import wgpu  # noqa: E402

import ringcore  # noqa: E402
import ringcore.demo  # noqa: E402
import ringcore.testing.kernels as K  # noqa: E402
from ringcore import f32, f64, i8, i16, i32, u8, u16, u32, u64  # noqa: E402
from ringcore.errors import KernelCompileError  # noqa: E402
from ringcore.kernel import KernelDef  # noqa: E402
from ringcore.lang import ir, lower  # noqa: E402
from ringcore.lang.targets import wgsl  # noqa: E402
from ringcore.testing.corpus import (  # noqa: E402
    CORPUS,
    CorpusEntry,
    Domain,
    RunResult,
    assert_same,
    delivery_for,
    make_headers,
    now_for,
    run_reference,
    subscribers_for,
)

CODE = {r: c for r, c in ir.DELIVERY_CODES.items()}
DELIVERED, QUEUE_FULL, NOT_FOUND, MAX_HOPS, WRONG_TYPE, TERMINATED = 1, 2, 3, 4, 5, 6
SCRIPT_STRIDE = 64
KERNEL_NUMBER = 7


# ==============================================================================================
# A minimal host for the ABI (what the wgpu backend does, without the runtime around it)
# ==============================================================================================


class Gpu:
    """One wgpu device on the software adapter, with the WGSL target's explicit bind group layout."""

    def __init__(self) -> None:
        self.adapter = wgpu.gpu.request_adapter_sync(power_preference="low-power")
        assert self.adapter is not None, "no WebGPU adapter (install Mesa's llvmpipe/lavapipe)"
        self.device = self.adapter.request_device_sync()
        entries = [{"binding": b, "visibility": wgpu.ShaderStage.COMPUTE, "buffer": {"type": kind}}
                   for b, (_name, kind) in wgsl.BINDINGS.items()]
        self.bind_layout = self.device.create_bind_group_layout(entries=entries)
        self.layout = self.device.create_pipeline_layout(bind_group_layouts=[self.bind_layout])
        self._pipelines: dict[str, object] = {}

    def pipeline(self, src: str):
        """Validate ``src`` (naga) and build its compute pipeline; raises on a validation error."""
        p = self._pipelines.get(src)
        if p is None:
            module = self.device.create_shader_module(code=src)
            p = self.device.create_compute_pipeline(
                layout=self.layout, compute={"module": module, "entry_point": wgsl.ENTRY_POINT})
            self._pipelines[src] = p
        return p

    def buffer(self, data: bytes, uniform: bool = False):
        data = bytes(data)
        size = max(16, -(-len(data) // 16) * 16)
        data = data + bytes(size - len(data))
        usage = (wgpu.BufferUsage.UNIFORM if uniform else wgpu.BufferUsage.STORAGE) | \
            wgpu.BufferUsage.COPY_SRC | wgpu.BufferUsage.COPY_DST
        return self.device.create_buffer_with_data(data=data, usage=usage)

    def read(self, buf, nbytes: int) -> bytes:
        # Reading back also waits for the dispatch (wgpu-py 0.32's on_submitted_work_done_sync is broken).
        return bytes(self.device.queue.read_buffer(buf))[:nbytes]


@pytest.fixture(scope="module")
def gpu() -> Gpu:
    return Gpu()


class Dispatch:
    """What one dispatch left in the buffers."""

    def __init__(self, status, replies, state, outbox, directory) -> None:
        self.status, self.replies, self.state, self.outbox, self.directory = status, replies, state, outbox, directory


def execute(gpu: Gpu, kir: ir.KernelIR, payloads: np.ndarray, *, state: np.ndarray | None = None,
            headers: np.ndarray | None = None, hops: int = 0, hlc_logical: int = 0, outbox_capacity: int = 64, max_hops: int = 255,
            directory: np.ndarray | None = None, dir_len: int = 0, flags: int = 0, script_stride: int = 0,
            groups: tuple[int, int, int] | None = None) -> Dispatch:
    """Run one batch of ``payloads`` through ``kir``'s WGSL module, following the ABI."""
    a = wgsl.abi(kir)
    pipe = gpu.pipeline(wgsl.emit(kir))
    n = len(payloads)
    slots = np.zeros(n, kir.input.slot_dtype)
    slots["payload"] = payloads
    if headers is not None:
        slots["header"] = headers
    else:
        slots["header"]["hops"] = hops
        slots["header"]["type_id"] = kir.input.type_id
    params = a.params(n, kernel_number=KERNEL_NUMBER, hlc_logical=hlc_logical, outbox_capacity=outbox_capacity,
                      max_hops=max_hops, dir_len=dir_len, flags=flags, script_stride=script_stride)
    st_bytes = state.tobytes() if state is not None else b""
    dir_words = directory if directory is not None else np.zeros(1, "<u4")
    bufs = [
        gpu.buffer(params.tobytes(), uniform=True),
        gpu.buffer(slots.tobytes()),
        gpu.buffer(bytes(n * a.reply_bytes)),
        gpu.buffer(bytes(4 * n)),
        gpu.buffer(st_bytes),
        gpu.buffer(bytes(4 * a.outbox_words(max(outbox_capacity, 1)))),  # its record array needs one element
        gpu.buffer(np.asarray(dir_words, "<u4").tobytes()),
    ]
    bind = gpu.device.create_bind_group(layout=gpu.bind_layout, entries=[
        {"binding": i, "resource": {"buffer": b, "offset": 0, "size": b.size}} for i, b in enumerate(bufs)])
    enc = gpu.device.create_command_encoder()
    cp = enc.begin_compute_pass()
    cp.set_pipeline(pipe)
    cp.set_bind_group(0, bind)
    cp.dispatch_workgroups(*(groups or a.dispatch(n)))
    cp.end()
    gpu.device.queue.submit([enc.finish()])
    status = np.frombuffer(gpu.read(bufs[3], 4 * n), "<u4").copy()
    replies = None
    if kir.output is not None:
        replies = np.frombuffer(gpu.read(bufs[2], n * a.reply_bytes), kir.output.dtype, count=n).copy() \
            if a.reply_bytes else np.zeros(n, kir.output.dtype)
    new_state = None
    if state is not None:
        new_state = np.frombuffer(gpu.read(bufs[4], len(st_bytes)), state.dtype, count=len(state)).copy()
    outbox = np.frombuffer(gpu.read(bufs[5], 4 * a.outbox_words(outbox_capacity)), "<u4").copy()
    directory_after = np.frombuffer(gpu.read(bufs[6], 4 * len(dir_words)), "<u4").copy()
    return Dispatch(status, replies, new_state, outbox, directory_after)


def run_wgsl(gpu: Gpu, entry: CorpusEntry, inputs: np.ndarray, state: np.ndarray | None = None) -> RunResult:
    """Run ``entry`` on the software adapter in scripted mode; a RunResult comparable with the reference.

    The k-th send of lane L is answered ``delivery_for(target, L, k)``; since the target of a send is
    only known once the kernel ran up to it, the answers are refined until they agree with the
    targets the kernel used (each round fixes at least the first wrong answer of each lane).
    """
    kir = lower(entry.kernel)
    a = wgsl.abi(kir)
    n = len(inputs)
    S = SCRIPT_STRIDE
    base = entry.new_state() if state is None else state
    ticks_tab = np.array([[now_for(lane, k)[1] for k in range(S)] for lane in range(n)], "<u4") \
        if kir.uses_now else np.zeros((n, S), "<u4")
    codes = np.zeros((n, S), "<u4")
    if a.send_specs:
        codes[:] = [[CODE[delivery_for(0, lane, k)] for k in range(S)] for lane in range(n)]
    subs = np.zeros((n, S), "<u4")
    if a.topics:  # one table for every topic: the k-th publish of a lane answers for the topic it used
        subs_for = {t: np.array([[subscribers_for(t, lane, k) for k in range(S)] for lane in range(n)], "<u4")
                    for t in a.topics}
        subs[:] = subs_for[a.topics[0]]
    specs = {s.type_id: s for s in a.send_specs}
    headers = make_headers(entry, n)
    for _round in range(S + 2):
        script = np.zeros(a.script_words(n, S), "<u4")
        script[:n * S] = codes.reshape(-1)
        script[n * S:2 * n * S] = ticks_tab.reshape(-1)
        script[2 * n * S + n:] = subs.reshape(-1)
        d = execute(gpu, kir, inputs, state=None if base is None else base.copy(), outbox_capacity=2 * n * S,
                    headers=headers, directory=script, flags=wgsl.FLAG_SCRIPTED, script_stride=S)
        claimed, _ticks, results, records = a.read_outbox(d.outbox, 2 * n * S)
        assert claimed <= 2 * n * S
        sends: list[list[tuple[str | int, int, bytes]]] = [[] for _ in range(n)]
        publishes: list[list[tuple[str, int, bytes]]] = [[] for _ in range(n)]
        for rec in records[np.argsort(records["lane"], kind="stable")]:
            lane = int(rec["lane"])
            spec = specs[int(rec["type_id"])]
            payload = rec["payload"].tobytes()[:spec.dtype.itemsize]
            (publishes if a.is_publish(rec) else sends)[lane].append(
                (a.send_target(rec), int(rec["type_id"]), payload))
        assert max((len(s) for s in sends + publishes), default=0) < S, "a lane sent more than the script covers"
        want_subs = subs.copy()
        for lane, lane_pubs in enumerate(publishes):
            for k, (topic, _t, _p) in enumerate(lane_pubs):
                want_subs[lane, k] = subs_for[topic][lane, k]
        want = codes.copy()
        for lane, lane_sends in enumerate(sends):
            for k, (target, _t, _p) in enumerate(lane_sends):
                want[lane, k] = CODE[delivery_for(target, lane, k)]
        if (want == codes).all() and (want_subs == subs).all():
            break
        codes, subs = want, want_subs
    else:
        raise AssertionError("the scripted send answers did not settle")
    got_codes = [int(r["code"]) & 0xFF for r in records if not a.is_publish(r)]
    assert sum(results) == len(got_codes) and all(1 <= c <= 6 for c in got_codes)
    status = d.status
    has_reply = status == wgsl.STATUS_REPLIED
    errors: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    for i in np.flatnonzero(status & wgsl.STATUS_FAILED).tolist():
        site = int(status[i]) & ~wgsl.STATUS_FAILED
        assert 0 < site <= len(kir.errors), f"lane {i}: status {int(status[i]):#x} names no error site"
        errors[i] = kir.errors[site - 1].kind
        details[i] = kir.errors[site - 1].describe(kir.filename)
    ok = (status == 0) | (status == wgsl.STATUS_REPLIED) | ((status & wgsl.STATUS_FAILED) != 0)
    assert ok.all(), f"unknown status words {np.unique(status[~ok])}"
    replies = None
    if d.replies is not None:
        replies = np.zeros(n, kir.output.dtype)
        replies[has_reply] = d.replies[has_reply]
    tick_counts = d.directory[2 * n * S:2 * n * S + n].astype(int).tolist() if kir.uses_now else [0] * n
    return RunResult(has_reply, replies, errors, details, d.state, sends, tick_counts, publishes)


def check_against_reference(gpu: Gpu, entry: CorpusEntry, inputs: np.ndarray) -> None:
    ref = run_reference(entry, inputs, headers=make_headers(entry, len(inputs)))
    got = run_wgsl(gpu, entry, inputs)
    assert_same(entry, ref, got, inputs, tolerance=entry.tolerance, ordered=entry.serial)


def frontend_or_xfail(kernel: KernelDef) -> ir.KernelIR:
    """The kernel's IR; a kernel the frontend itself refuses is the frontend's bug (test_lang_corpus)."""
    try:
        return lower(kernel)
    except KernelCompileError as exc:
        if "64-bit" in str(exc):
            raise
        pytest.xfail(f"the frontend refuses this kernel (tracked in test_lang_corpus): {str(exc).splitlines()[0]}")


# ==============================================================================================
# The corpus: every kernel validates and runs like the reference, or is refused for 64-bit use
# ==============================================================================================


@pytest.mark.parametrize("entry", CORPUS, ids=lambda e: e.name)
def test_corpus_kernel(gpu: Gpu, entry: CorpusEntry):
    if entry.uses_64bit:
        with pytest.raises(KernelCompileError) as exc_info:
            wgsl.emit(lower(entry.kernel))
        err = exc_info.value
        first, last = entry.kernel.func.__code__.co_firstlineno, \
            entry.kernel.func.__code__.co_firstlineno + len(inspect.getsourcelines(entry.kernel.func)[0])
        assert "64-bit" in str(err) and err.target == "wgsl"
        assert first <= err.line <= last, (err.line, first, last)
        assert f"corpus.py:{err.line}," in str(err)
        return
    kir = frontend_or_xfail(entry.kernel)
    gpu.pipeline(wgsl.emit(kir))
    check_against_reference(gpu, entry, entry.edge_inputs())
    check_against_reference(gpu, entry, entry.make_inputs(np.random.default_rng(7), 300))


# ==============================================================================================
# ringcore.testing.kernels and the demos
# ==============================================================================================


TESTING_KERNELS = [getattr(K, n) for n in K.__all__ if isinstance(getattr(K, n), KernelDef)]


def _demo_kernels() -> list[KernelDef]:
    found: dict[int, KernelDef] = {}
    for info in pkgutil.iter_modules(ringcore.demo.__path__):
        mod = importlib.import_module(f"ringcore.demo.{info.name}")
        for obj in vars(mod).values():
            if isinstance(obj, KernelDef):
                found[id(obj)] = obj
    return list(found.values())


DEMO_KERNELS = _demo_kernels()


def test_there_are_demo_kernels():
    assert {k.id for k in DEMO_KERNELS} >= {"vector_add"}


@pytest.mark.parametrize("kernel", TESTING_KERNELS + DEMO_KERNELS, ids=lambda k: k.id)
def test_testing_and_demo_kernels_validate(gpu: Gpu, kernel: KernelDef):
    kir = lower(kernel)
    try:
        src = wgsl.emit(kir)
    except KernelCompileError as exc:
        assert "64-bit" in str(exc)
        assert kir.uses_64bit is not None or any(
            (t.elem if isinstance(t, ringcore.types.ArrayType) else t).bits == 64
            for t in [*kir.input.fields.values(), *kir.state.values()])
        return
    gpu.pipeline(src)
    assert src == ringcore.lang.compile(kernel, "wgsl")


_TESTING_DOMAINS = {
    "flood": {"count": Domain(0, 12, 0.0), "target": Domain(0, 12, 0.2)},
    "router": {"target": Domain(0, 12, 0.2)},
    "bounce": {"peer": Domain(0, 12, 0.2)},
}


@pytest.mark.parametrize("kernel", TESTING_KERNELS, ids=lambda k: k.id)
def test_testing_kernels_match_reference(gpu: Gpu, kernel: KernelDef):
    kir = lower(kernel)
    entry = CorpusEntry(kernel, domains=_TESTING_DOMAINS.get(kernel.id, {}), serial=kir.serial,
                        sends=tuple(kir.send_targets))
    check_against_reference(gpu, entry, entry.make_inputs(np.random.default_rng(3), 200))
    if kernel.id != "flood":  # its edge counts (2**32 - 1 sends) would not end in reference mode either
        check_against_reference(gpu, entry, entry.edge_inputs())


def test_vector_add_matches_numpy(gpu: Gpu):
    from ringcore.demo.vector_add import Operands, vector_add

    rng = np.random.default_rng(1)
    inp = np.zeros(1000, Operands.dtype)
    inp["a"] = rng.standard_normal((1000, 16)).astype(np.float32)
    inp["b"] = rng.standard_normal((1000, 16)).astype(np.float32)
    d = execute(gpu, lower(vector_add), inp)
    assert (d.status == wgsl.STATUS_REPLIED).all()
    assert np.array_equal(d.replies["c"], inp["a"] + inp["b"])


# ==============================================================================================
# Kernels of this module: what the corpus does not stress for WGSL
# ==============================================================================================

_B = 0xC0F50000


@ringcore.message(type_id=_B + 1)
class Stamp:
    id: u64
    x: i32
    big: u64[2]
    scale: f64


@ringcore.message(type_id=_B + 2)
class StampOut:
    id: u64
    x: i32
    untouched: f64
    big: u64[2]


@ringcore.kernel(id="wgsl_wide_copy")
def wide_copy(ctx, msg: Stamp) -> StampOut:
    """64-bit fields only copied whole: allowed (moved as two u32 words)."""
    ctx.send("wgsl_sink", msg)
    if msg.x < 0:
        return None
    return StampOut(id=msg.id, x=msg.x + 1, big=msg.big)


@ringcore.kernel(id="wgsl_sum64")
def sum64(ctx, msg: Stamp) -> StampOut:
    out_x = msg.x * 2
    return StampOut(id=msg.id + 1, x=out_x)  # SUM64_LINE


@ringcore.kernel(id="wgsl_physical")
def physical(ctx, msg: K.Num) -> K.Echoed:
    t = ctx.now()
    late = t.physical > 5  # PHYSICAL_LINE
    return K.Echoed(value=msg.value, doubled=i32(late), tag=t.logical)


@ringcore.kernel(id="wgsl_f64_local")
def f64_local(ctx, msg: K.Num) -> K.Echoed:
    y = f64(msg.value) * 0.5  # F64_LINE
    return K.Echoed(value=i32(y), doubled=0, tag=msg.tag)


class Wide:
    total: u64 = 0


@ringcore.kernel(id="wgsl_u64_atomic", state=Wide)
def u64_atomic(ctx, msg: K.Num) -> None:
    ctx.atomic_add("total", u64(msg.tag))  # U64_ATOMIC_LINE


class Narrow:
    c: u16 = 0


@ringcore.kernel(id="wgsl_u16_atomic", state=Narrow)
def u16_atomic(ctx, msg: K.Num) -> None:
    ctx.atomic_add("c", u16(1))  # U16_ATOMIC_LINE


class Acc:
    total: f32 = 0.5
    lo: i32 = 1000
    hi: i32 = -1000
    umin: u32 = 4000000000
    n: u32 = 0
    hist: u32[4]
    fmax: f32 = -1.0


@ringcore.kernel(id="wgsl_atomics_mix", state=Acc)
def atomics_mix(ctx, msg: K.Num) -> None:
    """Parallel atomics whose final state does not depend on the order (f32 sums stay exact)."""
    ctx.atomic_add("total", f32(msg.value % 1000))
    ctx.atomic_sub("total", f32(0.25))
    ctx.atomic_min("lo", msg.value)
    ctx.atomic_max("hi", msg.value)
    ctx.atomic_min("umin", msg.tag)
    ctx.atomic_add("n", u32(1))
    ctx.atomic_add("hist", u32(1), msg.tag % 4)
    ctx.atomic_max("fmax", f32(msg.value) * f32(0.5))


class CasState:
    owner: i32 = -1
    fslot: f32 = 0.0


@ringcore.kernel(id="wgsl_cas", state=CasState)
def cas_once(ctx, msg: K.Num) -> K.Echoed:
    """Exactly one lane wins each compare-and-swap (which one depends on the order)."""
    prev = ctx.atomic_cas("owner", -1, msg.value)
    fprev = ctx.atomic_cas("fslot", f32(0.0), f32(1.5))
    xch = ctx.atomic_exchange("fslot", f32(2.0))
    return K.Echoed(value=prev, doubled=i32(fprev * f32(2.0)), tag=u32(xch > f32(1.0)))


class Bytes:
    b: u8[6]
    s: i16[3]
    flag: ringcore.bool = False
    last: i8 = 0
    w: u16 = 65530


@ringcore.kernel(id="wgsl_subword_state", state=Bytes)
def subword_state(ctx, msg: K.Num) -> K.Echoed:
    """Serial: 8/16-bit and bool state fields written with read-modify-write of their words."""
    i = msg.tag % 6
    ctx.state.b[i] += u8(msg.value)
    ctx.state.s[msg.tag % 3] -= i16(msg.value)
    ctx.state.flag = not ctx.state.flag
    ctx.state.last = i8(msg.value)
    ctx.state.w += u16(3)
    return K.Echoed(value=i32(ctx.state.b[i]) - i32(ctx.state.s[msg.tag % 3]),
                    doubled=i32(ctx.state.last) * 2 + i32(ctx.state.flag), tag=u32(ctx.state.w))


@ringcore.func
def checked_div(a: i32, b: i32) -> i32:
    if b == 0:
        raise ZeroDivisionError("division by zero in checked_div")
    return a // b


@ringcore.func
def twice_div(a: i32, b: i32) -> i32:
    q = checked_div(a, b)
    if q > 100:
        raise ValueError("quotient above 100")
    return q + checked_div(a, b)


@ringcore.kernel(id="wgsl_calls")
def calls(ctx, msg: K.Num) -> K.Echoed:
    """Failures inside nested @ringcore.func calls fail the lane with the right site."""
    x = twice_div(msg.value, i32(msg.tag % 3))
    return K.Echoed(value=x, doubled=checked_div(x, i32(msg.tag % 2)), tag=msg.tag)


@ringcore.kernel(id="my-kernel v2.0/weird")
def keywords(ctx, msg: K.Num) -> K.Echoed:
    """Locals named like WGSL keywords and builtins, and an id that is no identifier."""
    loop = msg.value
    let = loop + 1
    var = let * 2
    fn = var - loop
    target = u32(fn)
    struct = target ^ msg.tag
    select = i32(struct % 7)
    array = select
    override = array + 1
    workgroup = override
    for bitcast in range(3):
        workgroup += bitcast
    return K.Echoed(value=workgroup, doubled=select, tag=struct)


class Clock:
    seen: u32 = 0


@ringcore.kernel(id="wgsl_clock", state=Clock)
def clock(ctx, msg: K.Num) -> K.Echoed:
    """Serial: two ticks per message."""
    ctx.state.seen += 1
    a = ctx.now()
    b = ctx.now()
    return K.Echoed(value=i32(a.logical), doubled=i32(b.logical), tag=ctx.state.seen)


@ringcore.message(type_id=_B + 3)
class F3:
    x: f32
    y: f32
    z: f32


@ringcore.message(type_id=_B + 4)
class Specials:
    diff: f32
    zero_r: f32
    zero_l: f32
    plus_nz: f32
    lt: ringcore.bool
    ge: ringcore.bool
    not_lt: ringcore.bool
    eq_self: ringcore.bool
    mn: f32
    mx: f32
    fm: f32


@ringcore.kernel(id="wgsl_specials")
def specials(ctx, msg: F3) -> Specials:
    """What a compiler assuming finite math rewrites: x - x, x * 0, compare-and-select, ..."""
    return Specials(diff=msg.x - msg.x, zero_r=msg.x * 0.0, zero_l=0.0 * msg.y, plus_nz=msg.x + -0.0,
                    lt=msg.x < msg.y, ge=msg.x >= msg.y, not_lt=not (msg.x < msg.y), eq_self=msg.x == msg.x,
                    mn=min(msg.x, msg.y), mx=max(msg.y, msg.x), fm=ringcore.fma(msg.x, msg.y, msg.z))


@ringcore.message(type_id=_B + 5)
class Fm:
    v: f32


@ringcore.kernel(id="wgsl_fma")
def fma_only(ctx, msg: F3) -> Fm:
    return Fm(v=ringcore.fma(msg.x, msg.y, msg.z))


@ringcore.kernel(id="wgsl_publisher")
def publisher(ctx, msg: K.Num) -> K.Echoed:
    """ctx.publish in the directory mode: the topic's subscriber count; 0 when the outbox is full."""
    n = ctx.publish("wgsl.all", K.Num(value=msg.value, tag=msg.tag))
    m = u32(0)
    if msg.value < 0:
        m = ctx.publish("wgsl.negative", K.Num(value=-msg.value, tag=msg.tag))
    return K.Echoed(value=msg.value, doubled=i32(m), tag=n)


@ringcore.message(type_id=_B + 6)
class Arrs:
    v: u8[5]
    w: i16[3]
    k: u32


@ringcore.message(type_id=_B + 7)
class ArrsOut:
    v: u8[5]
    w: i16[3]
    s: f32


class ArrState:
    v: u8[5]
    w: i16[3]


@ringcore.func
def refuse_seven(x: u32) -> None:
    if x % 16 == 7:
        raise ValueError("seven")


@ringcore.kernel(id="wgsl_array_copies", state=ArrState)
def array_copies(ctx, msg: Arrs) -> ArrsOut:
    """Whole sub-word arrays copied between the message, the state, a local and the reply."""
    ctx.state.v = msg.v
    refuse_seven(msg.k)
    loc = i16[3]()
    ctx.state.w = msg.w
    for i in range(3):  # (loc = ctx.state.w would share the state's array in Python: refused)
        loc[i] = ctx.state.w[i]
    return ArrsOut(v=ctx.state.v, w=loc, s=f32(msg.v[1]) if msg.k > 3 else f32(2.5))


def _line(func, marker: str) -> int:
    lines, first = inspect.getsourcelines(func)
    return first + next(i for i, ln in enumerate(lines) if marker in ln)


@pytest.mark.parametrize("kernel, marker, construct", [
    (sum64, "SUM64_LINE", "msg.id is u64"),
    (physical, "PHYSICAL_LINE", "ctx.now().physical is u64"),
    (f64_local, "F64_LINE", "is f64"),
    (u64_atomic, "U64_ATOMIC_LINE", "u64"),
], ids=["u64 arithmetic", "ctx.now().physical", "f64 local", "u64 atomic"])
def test_64bit_use_is_refused_with_its_line(kernel, marker, construct):
    line = _line(kernel.func, marker)
    with pytest.raises(KernelCompileError) as exc_info:
        ringcore.lang.compile(kernel, "wgsl")
    err = exc_info.value
    text = str(err)
    assert construct in text and "WGSL has no 64-bit" in text, text
    assert f"test_lang_wgsl.py:{line}," in text, text
    assert err.line == line and err.target == "wgsl"
    assert marker in text  # the source line is shown
    assert "use 32-bit fields" in text or "use ctx.now().logical" in text


def test_narrow_atomics_are_refused():
    with pytest.raises(KernelCompileError) as exc_info:
        wgsl.emit(lower(u16_atomic))
    text = str(exc_info.value)
    assert "32-bit" in text and "u16" in text
    assert f"test_lang_wgsl.py:{_line(u16_atomic.func, 'U16_ATOMIC_LINE')}," in text


def test_untouched_64bit_fields_are_copied_as_words(gpu: Gpu):
    kir = lower(wide_copy)
    entry = CorpusEntry(wide_copy, sends=("wgsl_sink",))
    rng = np.random.default_rng(5)
    inp = np.zeros(100, Stamp.dtype)
    inp["id"] = rng.integers(0, 2**63, 100, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    inp["x"] = rng.integers(-50, 50, 100)
    inp["big"] = rng.integers(0, 2**63, (100, 2), dtype=np.uint64)
    inp["scale"] = rng.standard_normal(100)
    check_against_reference(gpu, entry, inp)
    d = execute(gpu, kir, inp)
    ok = inp["x"] >= 0
    assert np.array_equal(d.status == wgsl.STATUS_REPLIED, ok)
    assert np.array_equal(d.replies["id"][ok], inp["id"][ok])
    assert np.array_equal(d.replies["big"][ok], inp["big"][ok])
    assert (d.replies["untouched"][ok] == 0).all()


def test_atomics_in_parallel(gpu: Gpu):
    kir = lower(atomics_mix)
    assert not kir.serial and kir.atomics == {"total", "lo", "hi", "umin", "n", "hist", "fmax"}
    entry = CorpusEntry(atomics_mix)
    rng = np.random.default_rng(11)
    inp = np.zeros(3000, K.Num.dtype)
    inp["value"] = rng.integers(-5000, 5000, 3000)
    inp["tag"] = rng.integers(0, 2**32, 3000, dtype=np.uint64).astype(np.uint32)
    check_against_reference(gpu, entry, inp)
    check_against_reference(gpu, entry, entry.edge_inputs())
    src = wgsl.emit(kir)
    assert "atomic<i32>" in src and "atomicCompareExchangeWeak" in src  # i32 min/max native, f32 by CAS


def test_compare_and_swap_has_one_winner(gpu: Gpu):
    kir = lower(cas_once)
    inp = np.zeros(500, K.Num.dtype)
    inp["value"] = np.arange(500) + 10
    state = cas_once.state.new()
    d = execute(gpu, kir, inp, state=state)
    assert (d.status == wgsl.STATUS_REPLIED).all()
    prev = d.replies["value"]
    assert (prev == -1).sum() == 1
    winner = int(inp["value"][prev == -1][0])
    assert (prev[prev != -1] == winner).all() and int(d.state["owner"][0]) == winner
    assert (d.replies["doubled"] == 0).sum() == 1  # one lane saw 0.0 and stored 1.5
    assert float(d.state["fslot"][0]) == 2.0


def test_subword_state_fields(gpu: Gpu):
    entry = CorpusEntry(subword_state, serial=True)
    assert lower(subword_state).serial
    check_against_reference(gpu, entry, entry.make_inputs(np.random.default_rng(2), 400))
    check_against_reference(gpu, entry, entry.edge_inputs())


def test_whole_array_copies(gpu: Gpu):
    entry = CorpusEntry(array_copies, serial=True, failures=("ValueError",))
    inp = entry.make_inputs(np.random.default_rng(9), 300)
    inp["k"] = np.arange(300) % 40
    check_against_reference(gpu, entry, inp)


def test_failures_propagate_out_of_functions(gpu: Gpu):
    entry = CorpusEntry(calls, failures=("ZeroDivisionError", "ValueError"))
    inp = entry.make_inputs(np.random.default_rng(4), 300)
    inp["value"][:100] = np.arange(100) * 7 - 300
    ref = run_reference(entry, inp)
    assert {"ZeroDivisionError", "ValueError", None} <= set(ref.errors)
    check_against_reference(gpu, entry, inp)


def test_keywords_and_odd_kernel_ids(gpu: Gpu):
    kir = lower(keywords)
    src = wgsl.emit(kir)
    assert "fn rc_kernel_my_kernel_v2_0_weird(" in src
    check_against_reference(gpu, CorpusEntry(keywords), CorpusEntry(keywords).make_inputs(
        np.random.default_rng(8), 100))


def test_many_workgroups_and_a_second_dispatch_dimension(gpu: Gpu):
    kir = lower(K.echo)
    n = 5000
    inp = np.zeros(n, K.Num.dtype)
    inp["value"] = np.arange(n) - 2500
    inp["tag"] = np.arange(n)
    d = execute(gpu, kir, inp)
    assert (d.status == wgsl.STATUS_REPLIED).all()
    assert np.array_equal(d.replies["doubled"], inp["value"] * 2) and np.array_equal(d.replies["tag"], inp["tag"])
    # The same batch as a 2-D grid (what abi.dispatch does beyond 65535 workgroups): 40 x 2 groups of 64.
    d2 = execute(gpu, kir, inp, groups=(40, 2, 1))
    assert (d2.status == wgsl.STATUS_REPLIED).all() and np.array_equal(d2.replies, d.replies)
    a = wgsl.abi(kir)
    assert a.dispatch(1) == (1, 1, 1) and a.dispatch(65) == (2, 1, 1)
    assert a.dispatch(65535 * 64) == (65535, 1, 1)
    assert a.dispatch(65535 * 64 + 1) == (65535, 2, 1)
    assert wgsl.abi(lower(K.accumulate)).dispatch(10**6) == (1, 1, 1)


def test_status_names_the_error_site(gpu: Gpu):
    kir = lower(K.fragile)
    inp = np.zeros(64, K.Num.dtype)
    inp["value"] = np.arange(64) - 32
    d = execute(gpu, kir, inp)
    failed = (d.status & wgsl.STATUS_FAILED) != 0
    assert np.array_equal(failed, inp["value"] < 0)
    sites = set((d.status[failed] & 0x7FFFFFFF).tolist())
    assert len(sites) == 1 and kir.errors[sites.pop() - 1].kind == "ValueError"
    assert (d.status[~failed] == wgsl.STATUS_REPLIED).all()


def _f32_grid(rng: np.random.Generator, n: int) -> np.ndarray:
    """f32 values of every magnitude and the special ones."""
    v = (rng.standard_normal(n) * 10.0 ** rng.integers(-40, 39, n)).astype(np.float32)
    specials_ = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, 1e-45, -1e-45, 3.4028235e38,
                          1.1754944e-38], np.float32)
    k = rng.random(n) < 0.2
    v[k] = specials_[rng.integers(0, len(specials_), k.sum())]
    return v


def test_float_specials_survive_a_finite_math_compiler(gpu: Gpu):
    entry = CorpusEntry(specials, tolerance="ulp1")
    rng = np.random.default_rng(21)
    inp = np.zeros(4000, F3.dtype)
    for f in ("x", "y", "z"):
        inp[f] = _f32_grid(rng, 4000)
    check_against_reference(gpu, entry, inp)
    d = execute(gpu, lower(specials), inp)
    nz = np.signbit(d.replies["plus_nz"]) & (inp["x"] == 0)
    assert np.array_equal(nz, np.signbit(inp["x"]) & (inp["x"] == 0))  # -0.0 + -0.0 stays -0.0
    assert np.isnan(d.replies["diff"][np.isinf(inp["x"])]).all()


def _fma_exact(x: np.float32, y: np.float32, z: np.float32) -> np.float32:
    """fma rounded once, from exact rationals (builtins.fma's f64 sum can round twice)."""
    from fractions import Fraction

    if not (np.isfinite(x) and np.isfinite(y) and np.isfinite(z)):
        return np.float32(np.float64(x) * np.float64(y) + np.float64(z))
    q = Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z))
    if abs(q) >= Fraction(2) ** 128 - Fraction(2) ** 103:  # rounds to infinity
        return np.float32(np.inf if q > 0 else -np.inf)
    f = np.float32(float(q))
    cands = [f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))]
    return min(cands, key=lambda c: (abs(Fraction(float(c)) - q), int(np.float32(c).view(np.uint32)) & 1))


def test_fma_rounds_once(gpu: Gpu):
    rng = np.random.default_rng(33)
    n = 6000
    inp = np.zeros(n, F3.dtype)
    for f in ("x", "y", "z"):
        inp[f] = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30, n)).astype(np.float32)
    # cancellation: z = -x*y rounded, so that the result is the product's rounding error
    with np.errstate(over="ignore"):
        inp["z"][:1000] = -(inp["x"][:1000] * inp["y"][:1000])
    inp["z"][1000:1200] = np.float32(1e-45)
    got = execute(gpu, lower(fma_only), inp).replies["v"]
    with np.errstate(all="ignore"):
        want = np.array([_fma_exact(*r) for r in inp[["x", "y", "z"]].tolist()], np.float32)
    both_nan = np.isnan(want) & np.isnan(got)
    bad = np.flatnonzero((want.view(np.uint32) != got.view(np.uint32)) & ~both_nan)
    assert not len(bad), [(inp[i], want[i], got[i]) for i in bad[:5]]
    assert (got[:1000] != 0).sum() > 500  # WGSL's own fma (unfused on llvmpipe) gives 0 there


# ==============================================================================================
# The directory mode (production): delivery decided on the device like the CPU runtime does
# ==============================================================================================


def directory(a: wgsl.WgslAbi, entries: dict[int, tuple[int, int, int]], dir_len: int,
              names: dict[str, int] | None = None) -> np.ndarray:
    words = np.zeros(a.directory_words(dir_len), "<u4")
    for i, name in enumerate(a.send_targets):
        words[i] = (names or {}).get(name, wgsl.NO_KERNEL)
    base = a.dir_entries
    for k, (state, type_id, free) in entries.items():
        words[base + 4 * k:base + 4 * k + 3] = (state, type_id, free)
    return words


def test_directory_decides_each_delivery_result(gpu: Gpu):
    kir = lower(K.router)
    a = wgsl.abi(kir)
    num = K.Num.type_id
    dirw = directory(a, {1: (wgsl.DIR_RUNNING, num, 5), 2: (wgsl.DIR_TERMINATED, num, 5),
                         3: (wgsl.DIR_RUNNING, K.Ball.type_id, 5), 4: (wgsl.DIR_RUNNING, num, 0),
                         5: (wgsl.DIR_NONE, 0, 0), 6: (wgsl.DIR_RUNNING, num, wgsl.NO_KERNEL)}, dir_len=8)
    inp = np.zeros(8, K.Route.dtype)
    inp["target"] = [1, 2, 3, 4, 5, 6, 9999, 1]
    inp["value"] = np.arange(8) * 10
    d = execute(gpu, kir, inp, directory=dirw, dir_len=8)
    assert d.replies["code"].tolist() == [DELIVERED, TERMINATED, WRONG_TYPE, QUEUE_FULL, NOT_FOUND,
                                          DELIVERED, NOT_FOUND, DELIVERED]
    claimed, ticks, results, recs = a.read_outbox(d.outbox, 64)
    assert claimed == 8 and ticks == 0 and results.tolist() == [3, 1, 2, 0, 1, 1]
    recs = recs[np.argsort(recs["lane"], kind="stable")]
    assert recs["lane"].tolist() == list(range(8)) and (recs["type_id"] == num).all()
    assert recs["target"].tolist() == inp["target"].tolist()
    assert [int(c) & 0xFF for c in recs["code"]] == d.replies["code"].tolist()
    sent = recs["payload"][:, :K.Num.dtype.itemsize // 4].copy().view(K.Num.dtype).reshape(-1)
    assert sent["value"].tolist() == inp["value"].tolist() and (sent["tag"] == 0).all()
    assert d.directory[4 * 1 + 2] == 3  # two deliveries to kernel 1 took two of its five free slots
    assert d.directory[4 * 6 + 2] == wgsl.NO_KERNEL  # "do not limit" stays


def test_directory_queue_full_and_outbox_full(gpu: Gpu):
    kir = lower(K.flood)
    a = wgsl.abi(kir)
    dirw = directory(a, {3: (wgsl.DIR_RUNNING, K.Num.type_id, 4)}, dir_len=4)
    inp = np.zeros(1, K.Flood.dtype)
    inp["target"], inp["count"] = 3, 10
    d = execute(gpu, kir, inp, directory=dirw, dir_len=4)
    assert (d.replies["delivered"][0], d.replies["full"][0], d.replies["other"][0]) == (4, 6, 0)
    assert d.directory[4 * 3 + 2] == 0
    _, _, results, recs = a.read_outbox(d.outbox, 64)
    assert results.tolist() == [4, 6, 0, 0, 0, 0] and len(recs) == 10
    # An outbox with room for 3 records: the 4th delivery is QUEUE_FULL and gives its queue slot back.
    dirw = directory(a, {3: (wgsl.DIR_RUNNING, K.Num.type_id, 100)}, dir_len=4)
    d = execute(gpu, kir, inp, directory=dirw, dir_len=4, outbox_capacity=3)
    assert (d.replies["delivered"][0], d.replies["full"][0]) == (3, 7)
    assert d.directory[4 * 3 + 2] == 97
    claimed, _, _, recs = a.read_outbox(d.outbox, 3)
    assert claimed == 10 and len(recs) == 3 and recs["payload"][:, 0].tolist() == [0, 1, 2]


def test_directory_max_hops_and_names(gpu: Gpu):
    kir = lower(K.relay)
    a = wgsl.abi(kir)
    dirw = directory(a, {KERNEL_NUMBER: (wgsl.DIR_RUNNING, K.Hop.type_id, 10)}, dir_len=8)
    inp = np.zeros(1, K.Hop.dtype)
    d = execute(gpu, kir, inp, directory=dirw, dir_len=8, hops=4, max_hops=5)
    assert d.status[0] == 0  # forwarded, no reply
    d = execute(gpu, kir, inp, directory=dirw, dir_len=8, hops=5, max_hops=5)
    assert d.status[0] == wgsl.STATUS_REPLIED and d.replies["code"][0] == MAX_HOPS
    # tee sends to "echo" by name: resolved through the directory's name words.
    kir = lower(K.tee)
    a = wgsl.abi(kir)
    assert a.send_targets == ("echo",)
    inp = np.zeros(2, K.Num.dtype)
    inp["value"] = [3, 4]
    for names, code in (({"echo": 2}, DELIVERED), ({}, NOT_FOUND)):
        dirw = directory(a, {2: (wgsl.DIR_RUNNING, K.Num.type_id, 10)}, dir_len=4, names=names)
        d = execute(gpu, kir, inp, directory=dirw, dir_len=4)
        _, _, results, recs = a.read_outbox(d.outbox, 64)
        assert results[code - 1] == 2 and [a.send_target(r) for r in recs] == ["echo", "echo"]
        assert sorted(recs["target"].tolist()) == [names.get("echo", wgsl.NO_KERNEL)] * 2


def test_directory_publish(gpu: Gpu):
    kir = lower(publisher)
    a = wgsl.abi(kir)
    assert a.topics == ("wgsl.all", "wgsl.negative") and a.dir_entries == 2
    dirw = directory(a, {}, dir_len=0)
    dirw[:2] = [3, 5]
    inp = np.zeros(6, K.Num.dtype)
    inp["value"] = [1, -2, 3, -4, 5, -6]
    d = execute(gpu, kir, inp, directory=dirw)
    assert d.replies["tag"].tolist() == [3] * 6 and d.replies["doubled"].tolist() == [0, 5, 0, 5, 0, 5]
    claimed, _, results, recs = a.read_outbox(d.outbox, 64)
    assert claimed == 9 and results.sum() == 0
    assert all(a.is_publish(r) for r in recs)
    recs = recs[np.argsort(recs["lane"], kind="stable")]
    assert [a.send_target(r) for r in recs] == ["wgsl.all", "wgsl.all", "wgsl.negative", "wgsl.all", "wgsl.all",
                                                "wgsl.negative", "wgsl.all", "wgsl.all", "wgsl.negative"]
    sent = recs["payload"][:, :2].copy().view(K.Num.dtype).reshape(-1)
    assert sent["value"].tolist() == [1, -2, 2, 3, -4, 4, 5, -6, 6]
    # No room in the outbox: nobody got it.
    d = execute(gpu, lower(publisher), inp[:1], directory=dirw, outbox_capacity=0)
    assert d.replies["tag"][0] == 0


def test_clock_ticks_from_the_batch_base(gpu: Gpu):
    kir = lower(clock)
    assert kir.serial and kir.uses_now
    inp = np.zeros(5, K.Num.dtype)
    d = execute(gpu, kir, inp, state=clock.state.new(), hlc_logical=100)
    assert d.replies["value"].tolist() == [100, 102, 104, 106, 108]
    assert d.replies["doubled"].tolist() == [101, 103, 105, 107, 109]
    assert d.replies["tag"].tolist() == [1, 2, 3, 4, 5]
    assert wgsl.abi(kir).read_outbox(d.outbox, 64)[1] == 10


# ==============================================================================================
# The module itself
# ==============================================================================================


def test_emit_is_deterministic_and_names_the_abi():
    kir = lower(K.histogram)
    src = wgsl.emit(kir)
    assert src == wgsl.emit(kir)
    for b, (name, kind) in wgsl.BINDINGS.items():
        access = {"uniform": "var<uniform>", "read-only-storage": "var<storage, read>",
                  "storage": "var<storage, read_write>"}[kind]
        assert f"@group(0) @binding({b}) {access} {name}:" in src
    a = wgsl.abi(kir)
    assert a.serial and a.workgroup_size == 1 and "@workgroup_size(1)" in src
    assert a.in_slot_bytes == K.Num.slot_dtype.itemsize and a.reply_bytes == K.Total.dtype.itemsize
    assert a.state_bytes == K.histogram.state.dtype.itemsize
    for spec in (K.Num, K.Total, K.Ball, K.Flood, K.Reading):
        assert spec.slot_dtype.itemsize % 8 == 0 and spec.dtype.itemsize % 8 == 0


def test_float_constants_are_exact_and_never_const_evaluated_to_inf():
    assert wgsl._f32_text(0.1) == "0.10000000149011612f"
    assert wgsl._f32_text(-2.5) == "(-2.5f)"
    assert wgsl._f32_text(float("inf")) is None and wgsl._f32_text(float("nan")) is None
    assert wgsl._f32_text(1e-45) is None and wgsl._f32_text(-0.0) is None  # by bit pattern
    assert wgsl._sanitise("9 lives!") == "9_lives" and wgsl._sanitise("***") == "x"
