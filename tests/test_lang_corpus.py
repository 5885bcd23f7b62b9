"""The corpus (ringcore.testing.corpus): the numpy target reproduces reference mode bit for bit.

For every corpus kernel, on edge-case inputs, on random inputs from fixed seeds
and on hypothesis-drawn batches: the same lanes reply with the same bits, the
same lanes fail with the same exception kind, the final state is the same, and
each lane sends the same messages to the same kernels in the same order.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ringcore
from ringcore.errors import KernelCompileError
from ringcore.lang import ir, lower
from ringcore.testing.corpus import (
    CORPUS,
    NOW_BASE,
    CorpusEntry,
    RunResult,
    assert_same,
    compare,
    delivery_for,
    now_for,
    run_numpy,
    run_reference,
    scalar_edges,
)
from ringcore.types import SCALAR_TYPES, ArrayType, ScalarType

# Kernel name -> (why the compiler or reference gets it wrong today, the tests it breaks: "reference",
# "ir", "wgsl", "edge", "random<seed>", "hypothesis"). Each broken test is an xfail(strict=True), so it fails the suite
# once fixed (then remove the entry); the hypothesis test, whose draws may miss the bug, is skipped instead.
KNOWN_BUGS: dict[str, tuple[str, frozenset[str]]] = {}


def _entries(kind: str = "ir"):
    params = []
    for e in CORPUS:
        reason, kinds = KNOWN_BUGS.get(e.name, ("", frozenset()))
        if kind not in kinds:
            params.append(pytest.param(e, id=e.name))
        elif kind == "hypothesis":
            params.append(pytest.param(e, id=e.name, marks=pytest.mark.skip(reason=f"known bug: {reason}")))
        else:
            params.append(pytest.param(e, id=e.name, marks=pytest.mark.xfail(strict=True, reason=reason)))
    return params


# -- the corpus itself ---------------------------------------------------------------------------


def test_corpus_is_large_and_names_are_unique():
    assert len(CORPUS) >= 45
    names = [e.name for e in CORPUS]
    assert len(set(names)) == len(names)
    funcs = [e.kernel.func for e in CORPUS]
    assert len(set(funcs)) == len(funcs)
    for e in CORPUS:
        assert e.kernel.func.__doc__, f"{e.name} has no docstring saying what it exercises"
        assert e.tolerance in ("exact", "ulp1", "ulps4")
        assert 0xC0E00000 < e.kernel.input_type.type_id < 0xC0E10000
        if e.kernel.output_type is not None:
            assert 0xC0E00000 < e.kernel.output_type.type_id < 0xC0E10000


@pytest.mark.parametrize("entry", _entries("reference"))
def test_reference_runs_on_every_input(entry: CorpusEntry):
    """The kernels are valid Python: a message fails only with the kinds of error the entry expects."""
    for inputs in (entry.edge_inputs(), entry.make_inputs(np.random.default_rng(0), 300)):
        assert inputs.dtype == entry.input_dtype and len(inputs) > 0
        res = run_reference(entry, inputs)
        bad = {i: res.details[i] for i, e in enumerate(res.errors) if e is not None and e not in entry.failures}
        assert not bad, f"{entry.name}: unexpected failures in reference mode: {list(bad.items())[:5]}"
        if entry.kernel.output_type is not None and not entry.failures:
            assert res.has_reply.any(), f"{entry.name} never replies"


@pytest.mark.parametrize("entry", _entries("inputs"))
def test_inputs_are_deterministic_and_cover_the_edges(entry: CorpusEntry):
    a, b = entry.edge_inputs(), entry.edge_inputs()
    assert a.tobytes() == b.tobytes()
    r1 = entry.make_inputs(np.random.default_rng(5), 50)
    r2 = entry.make_inputs(np.random.default_rng(5), 50)
    assert r1.tobytes() == r2.tobytes() and len(r1) == 50
    # Every edge value of every scalar field's type appears in that field.
    for name in a.dtype.names:
        col = a[name].reshape(len(a), -1)
        for v in scalar_edges(_elem(a.dtype, name)):
            if isinstance(v, float) and np.isnan(v):
                assert np.isnan(col).any(), (name, v)
            elif isinstance(v, float) and v == 0:
                want = np.copysign(1.0, v)
                assert ((col == 0) & (np.copysign(1.0, col.astype(np.float64)) == want)).any(), (name, v)
            else:
                with np.errstate(all="ignore"):
                    assert (col == np.asarray(v).astype(col.dtype)).any(), (name, v)


def _elem(dtype: np.dtype, name: str) -> ScalarType:
    from ringcore.types import scalar_type

    sub = dtype.fields[name][0]
    return scalar_type(sub.subdtype[0] if sub.subdtype is not None else sub)


def test_edge_values_include_the_specials():
    f = scalar_edges(SCALAR_TYPES["f32"])
    assert any(np.isnan(v) for v in f) and np.inf in f and -np.inf in f
    assert any(v == 0 and np.copysign(1, v) < 0 for v in f)
    assert float(np.finfo(np.float32).smallest_subnormal) in f and 2.0 ** 24 + 2 in f
    i = scalar_edges(SCALAR_TYPES["i32"])
    assert {0, -1, 2**31 - 1, -(2**31)} <= set(i)
    assert 2**64 - 1 in scalar_edges(SCALAR_TYPES["u64"])


# -- the IR agrees with what the entry says --------------------------------------------------------


@pytest.mark.parametrize("entry", _entries())
def test_ir_flags_match_the_entry(entry: CorpusEntry):
    kir = lower(entry.kernel)
    assert kir.serial == entry.serial, f"serial: IR {kir.serial}, entry {entry.serial}"
    assert (kir.uses_64bit is not None) == entry.uses_64bit, kir.uses_64bit
    assert kir.uses_now == entry.uses_now
    assert tuple(kir.send_targets) == entry.sends
    has_number_send = any(isinstance(x, ir.Send) and not isinstance(x.target, str) for x in _exprs(kir))
    assert has_number_send == entry.sends_by_number
    topics = tuple(dict.fromkeys(x.topic for x in _exprs(kir) if isinstance(x, ir.Publish)))
    assert topics == entry.publishes
    if entry.unordered:
        assert not entry.serial and kir.atomics, "only parallel kernels with atomics have order-dependent results"


@pytest.mark.parametrize("entry", _entries("wgsl"))
def test_wgsl_refuses_exactly_the_64bit_kernels(entry: CorpusEntry):
    if entry.uses_64bit:
        with pytest.raises(KernelCompileError, match="64-bit"):
            ringcore.compile(entry.kernel, "wgsl")
    else:
        assert ringcore.compile(entry.kernel, "wgsl")


# -- numpy target == reference ---------------------------------------------------------------------


@pytest.mark.parametrize("entry", _entries("edge"))
def test_numpy_matches_reference_on_edge_inputs(entry: CorpusEntry):
    inputs = entry.edge_inputs()
    assert_same(entry, run_reference(entry, inputs), run_numpy(entry, inputs), inputs,
                tolerance=entry.numpy_tolerance)


@pytest.mark.parametrize("entry,seed", [
    pytest.param(p.values[0], seed, id=f"{p.id}-{seed}", marks=p.marks)
    for seed in (0, 1, 2) for p in _entries(f"random{seed}")])
def test_numpy_matches_reference_on_random_inputs(entry: CorpusEntry, seed: int):
    inputs = entry.make_inputs(np.random.default_rng(seed), 256)
    assert_same(entry, run_reference(entry, inputs), run_numpy(entry, inputs), inputs,
                tolerance=entry.numpy_tolerance)


@pytest.mark.parametrize("entry", _entries("hypothesis"))
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          print_blob=True)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(1, 48), edge_share=st.floats(0.0, 1.0))
def test_numpy_matches_reference_hypothesis(entry: CorpusEntry, seed: int, n: int, edge_share: float):
    rng = np.random.default_rng(seed)
    inputs = entry.make_inputs(rng, n)
    edges = entry.edge_inputs()
    pick = rng.random(n) < edge_share
    inputs[pick] = edges[rng.integers(0, len(edges), int(pick.sum()))]
    assert_same(entry, run_reference(entry, inputs), run_numpy(entry, inputs), inputs,
                tolerance=entry.numpy_tolerance)


@pytest.mark.parametrize("entry", [p for p in _entries("random0") if p.values[0].kernel.state is not None])
def test_state_carries_over_between_batches(entry: CorpusEntry):
    """Several batches in a row on one state record: each batch agrees, and so does the state after it."""
    inputs = entry.make_inputs(np.random.default_rng(11), 90)
    ref_state, np_state = entry.new_state(), entry.new_state()
    for chunk in (inputs[:1], inputs[1:40], inputs[40:41], inputs[41:]):
        ref = run_reference(entry, chunk, ref_state)
        got = run_numpy(entry, chunk, np_state)
        assert_same(entry, ref, got, chunk, tolerance=entry.numpy_tolerance)
    assert not compare(entry, dataclasses.replace(ref, state=ref_state), dataclasses.replace(got, state=np_state))


@pytest.mark.parametrize("entry", [p for p in _entries("random0") if p.values[0].serial])
def test_serial_kernels_see_messages_in_order(entry: CorpusEntry):
    """Reversing a serial kernel's batch changes what it computes exactly as it does in reference mode."""
    inputs = entry.make_inputs(np.random.default_rng(3), 64)[::-1].copy()
    assert_same(entry, run_reference(entry, inputs), run_numpy(entry, inputs), inputs,
                tolerance=entry.numpy_tolerance)


def test_empty_batch():
    entry = next(e for e in CORPUS if e.name == "corpus_state_serial")
    inputs = entry.edge_inputs()[:0]
    ref, got = run_reference(entry, inputs), run_numpy(entry, inputs)
    assert not compare(entry, ref, got)
    assert not compare(entry, ref, dataclasses.replace(ref, state=entry.new_state()))


# -- coverage: the corpus uses every construct of the language --------------------------------------


def _exprs(kir: ir.KernelIR):
    for body in [kir.body, *(f.body for f in kir.funcs.values())]:
        for s in ir.walk_stmts(body):
            for e in ir.stmt_exprs(s):
                yield from ir.walk_exprs(e)


def _stmts(kir: ir.KernelIR):
    for body in [kir.body, *(f.body for f in kir.funcs.values())]:
        yield from ir.walk_stmts(body)


def _lowered():
    out = []
    for e in CORPUS:
        try:
            out.append((e, lower(e.kernel)))
        except KernelCompileError:
            if "ir" not in KNOWN_BUGS.get(e.name, ("", frozenset()))[1]:
                raise
    return out


def test_corpus_covers_every_operation_of_the_ir():
    seen: collections.Counter[str] = collections.Counter()
    for _, kir in _lowered():
        for x in _exprs(kir):
            if isinstance(x, (ir.Unary, ir.Binary, ir.Compare)):
                seen[f"{type(x).__name__}.{x.op}"] += 1
            elif isinstance(x, ir.Builtin):
                seen[f"Builtin.{x.name}"] += 1
            elif isinstance(x, ir.Atomic):
                seen[f"Atomic.{x.op}"] += 1
            elif isinstance(x, ir.CtxValue):
                seen[f"CtxValue.{x.name.split('.')[0]}"] += 1
            elif isinstance(x, ir.Logical):
                seen[f"Logical.{x.op}"] += 1
            elif isinstance(x, ir.Send):
                seen["Send.name" if isinstance(x.target, str) else "Send.number"] += 1
            seen[type(x).__name__] += 1
        for s in _stmts(kir):
            seen[type(s).__name__] += 1
    want = ({f"Unary.{o}" for o in ir.UNARY_OPS} | {f"Binary.{o}" for o in ir.BINARY_OPS}
            | {f"Compare.{o}" for o in ir.COMPARE_OPS} | {f"Builtin.{b}" for b in ir.BUILTINS}
            | {f"Atomic.{a}" for a in ir.ATOMIC_OPS} | {f"CtxValue.{c.split('.')[0]}" for c in ir.CTX_VALUES}
            | {"Logical.and", "Logical.or", "Send.name", "Send.number", "Publish", "Select", "Cast", "CallFunc",
               "Const",
               "Load", "Assign", "ArrayCopy", "ArrayZero", "If", "While", "For", "Break", "Continue", "Return",
               "Fail", "Eval", "Tick"})
    missing = sorted(want - set(seen))
    assert not missing, f"no corpus kernel uses: {missing}"


def test_corpus_covers_every_type_in_messages_state_and_locals():
    msg_types: set[str] = set()
    state_types: set[str] = set()
    casts: set[tuple[str, str]] = set()
    dims = collections.defaultdict(set)
    for _, kir in _lowered():
        specs = [kir.input] + ([kir.output] if kir.output is not None else [])
        for spec in specs:
            for t in spec.fields.values():
                msg_types.add((t.elem if isinstance(t, ArrayType) else t).name)
                if isinstance(t, ArrayType):
                    dims["msg"].add(len(t.shape))
        for t in kir.state.values():
            state_types.add((t.elem if isinstance(t, ArrayType) else t).name)
            if isinstance(t, ArrayType):
                dims["state"].add(len(t.shape))
        for name, t in kir.locals.items():
            if isinstance(t, ArrayType) and "__" not in name:
                dims["local"].add(len(t.shape))
        for x in _exprs(kir):
            if isinstance(x, ir.Cast):
                casts.add((x.operand.type.kind, x.type.kind))
    assert msg_types == set(SCALAR_TYPES), sorted(set(SCALAR_TYPES) - msg_types)
    assert state_types == set(SCALAR_TYPES), sorted(set(SCALAR_TYPES) - state_types)
    for where in ("msg", "state", "local"):
        assert {1, 2} <= dims[where], (where, dims[where])
    kinds = {"i", "u", "f", "b"}
    want = {(a, b) for a in kinds for b in kinds if a != b} - {("b", "b")}
    assert want <= casts, sorted(want - casts)


def test_the_corpus_covers_serial_parallel_and_every_ctx_service():
    entries = [e for e, _ in _lowered()]
    assert any(e.serial for e in entries) and any(not e.serial and e.kernel.state for e in entries)
    assert any(e.uses_now for e in entries) and any(e.sends for e in entries)
    assert any(e.sends_by_number for e in entries) and any(e.publishes for e in entries)
    assert any(e.kernel.output_type is None for e in entries)


# -- the harness can fail ----------------------------------------------------------------------------


def _result(entry: CorpusEntry) -> tuple[np.ndarray, RunResult]:
    inputs = entry.edge_inputs()[:20]
    return inputs, run_reference(entry, inputs)


def test_compare_reports_a_flipped_bit_in_a_reply():
    entry = next(e for e in CORPUS if e.name == "corpus_float32")
    inputs, ref = _result(entry)
    other = dataclasses.replace(ref, replies=ref.replies.copy())
    other.replies["add"][3] = np.float32(np.nextafter(ref.replies["add"][3], np.float32(np.inf)))
    assert not compare(entry, ref, ref)
    assert any("add" in d for d in compare(entry, ref, other))
    assert not compare(entry, ref, other, tolerance="ulp1")
    nan = dataclasses.replace(ref, replies=ref.replies.copy())
    nan.replies["div"][0] = np.float32(np.nan)
    nan2 = dataclasses.replace(ref, replies=ref.replies.copy())
    nan2.replies["div"][0] = -np.float32(np.nan)
    assert not compare(entry, nan, nan2)  # any NaN equals any NaN: IEEE leaves sign and payload open
    assert not compare(entry, nan, nan2, tolerance="ulps4")
    zero = dataclasses.replace(ref, replies=ref.replies.copy())
    zero.replies["sub"][1] = np.float32(0.0)
    negzero = dataclasses.replace(ref, replies=ref.replies.copy())
    negzero.replies["sub"][1] = np.float32(-0.0)
    assert compare(entry, zero, negzero)  # exact: -0.0 is not 0.0
    assert compare(entry, nan, zero, tolerance="ulps4")


def test_compare_reports_failures_replies_state_and_sends():
    entry = next(e for e in CORPUS if e.name == "corpus_send_number")
    inputs, ref = _result(entry)
    assert any(ref.sends)
    errors = list(ref.errors)
    errors[2] = "IndexError"
    assert any("lane 2" in d for d in compare(entry, ref, dataclasses.replace(ref, errors=errors)))
    flipped = ref.has_reply.copy()
    flipped[5] = not flipped[5]
    assert any("lane 5" in d for d in compare(entry, ref, dataclasses.replace(ref, has_reply=flipped)))
    sends = [list(s) for s in ref.sends]
    lane = next(i for i, s in enumerate(sends) if len(s) >= 2)
    sends[lane].reverse()
    assert any("sends differ" in d for d in compare(entry, ref, dataclasses.replace(ref, sends=sends)))

    entry = next(e for e in CORPUS if e.name == "corpus_atomics_xchg_cas")
    inputs, ref = _result(entry)
    st = ref.state.copy()
    st["last"] += 1
    assert any("last" in d for d in compare(entry, ref, dataclasses.replace(ref, state=st)))
    assert not compare(entry, ref, dataclasses.replace(ref, state=st), ordered=False)  # order-dependent


def test_the_test_services_answer_by_lane_and_count():
    assert now_for(0, 0) == (NOW_BASE, 0)
    assert now_for(3, 2)[0] > now_for(3, 1)[0]
    answers = {delivery_for("x", lane, k) for lane in range(8) for k in range(8)}
    assert len(answers) >= 5 and ringcore.DeliveryResult.DELIVERED in answers


# -- the harness agrees with the CPU runtime -------------------------------------------------------


def _runtime_run(entry: CorpusEntry, inputs: np.ndarray, execution: str) -> RunResult:
    """Run ``inputs`` as one batch through a launched kernel on the CPU backend, as a RunResult."""
    plugin = pytest.importorskip("ringcore_cpu.plugin")
    from ringcore.plugins import PluginRegistry, use_registry

    n = len(inputs)
    ref = run_reference(entry, inputs[:0])
    with use_registry(PluginRegistry(load=[], plugins=[plugin])):
        with ringcore.runtime("cpu", execution=execution) as rt:
            # Queued while inactive, the whole batch is drained at once on activation.
            k = rt.launch(entry.kernel, auto_activate=False, input_capacity=4096, output_capacity=4096)
            assert k.send_many(inputs) == n
            k.activate()
            got = k.receive_many(n, timeout=30.0, min_count=n)
            state = k.read_state() if entry.kernel.state is not None else {}
    assert len(got) == n, "every message of these kernels replies or fails"
    failed = (got["header"]["flags"] & int(ringcore.MessageFlags.ERROR)) != 0
    replies = got["payload"].copy()
    replies[failed] = np.zeros(1, replies.dtype)
    final = entry.new_state()
    for field, value in state.items():
        final[field] = value
    return dataclasses.replace(
        ref, has_reply=~failed, replies=replies, errors=["failed" if f else None for f in failed.tolist()],
        details=[None] * n, state=final, sends=[[] for _ in range(n)], ticks=[0] * n, publishes=[[] for _ in range(n)])


def _runtime_params():
    out = []
    for name in ("corpus_arith_i32", "corpus_float32", "corpus_vector_add", "corpus_local_arrays", "corpus_index",
                 "corpus_raise", "corpus_arrays_2d", "corpus_atomics_add_sub"):
        entry = next(e for e in CORPUS if e.name == name)
        assert entry.kernel.output_spec is not None
        for size in (3, None):  # a small batch (served message by message) and a large one
            for execution in ("reference", "numpy"):
                out.append(pytest.param(name, size, execution, id=f"{name}-{size or 'all'}-{execution}"))
    return out


@pytest.mark.parametrize("name,size,execution", _runtime_params())
def test_harness_agrees_with_the_cpu_runtime(name: str, size: int | None, execution: str):
    """run_reference's stand-in kernel handle behaves like a launched kernel, in both execution modes,
    on a small batch (the host loop's per-message path) and on the whole edge set (its batch path)."""
    entry = next(e for e in CORPUS if e.name == name)
    assert entry.initial_state is None  # the runtime starts from the declared state
    inputs = entry.edge_inputs()[:size]
    ref = run_reference(entry, inputs)
    got = _runtime_run(entry, inputs, execution)
    ref = dataclasses.replace(ref, errors=["failed" if e else None for e in ref.errors])
    assert not compare(entry, ref, got, inputs=inputs)
