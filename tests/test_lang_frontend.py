"""The kernel language's frontend: typing (numpy's NEP 50 rules), lowering, checks, caching, the CLI."""

from __future__ import annotations

import numpy as np
import pytest

import ringcore
from ringcore import DeliveryResult, KernelCompileError, f32, i16, i32, u8, u32
from ringcore import lang as L
from ringcore.cli import main as cli_main
from ringcore.lang import ir

_B = 0xC0F00000


@ringcore.message(type_id=_B + 1)
class Req:
    x: i32
    u: u32
    s: i16
    b: u8
    f: f32
    v: f32[4]
    g: i32[2, 3]


@ringcore.message(type_id=_B + 2)
class Rep:
    r: i32
    w: u32
    f: f32


class Tally:
    count: u32 = 0
    best: i32 = 0
    bins: u32[4]


def _lower_error(k) -> KernelCompileError:
    with pytest.raises(KernelCompileError) as ei:
        L.lower(k)
    return ei.value


# -- typing ---------------------------------------------------------------------------------------


@ringcore.kernel(id="weak_literals")
def weak_literals(ctx, msg: Req) -> Rep:
    a = msg.s + 1  # i16 + literal -> i16
    b = msg.f * 0.5  # f32 * float literal -> f32
    c = msg.s + msg.x  # i16 + i32 -> i32 (a safe widening)
    return Rep(r=c + a, w=msg.u, f=b)


def test_literals_take_the_strong_operand_type_and_safe_widenings_are_implicit():
    kir = L.lower(weak_literals)
    assert kir.locals["a"] is ringcore.i16
    assert kir.locals["b"] is f32
    assert kir.locals["c"] is i32
    assert not kir.serial and kir.uses_64bit is None


@ringcore.kernel(id="accumulator_local")
def accumulator_local(ctx, msg: Req) -> Rep:
    n = 0
    for _i in range(4):
        n += msg.u  # the untyped 0 becomes a u32 accumulator, as numpy's scalars would
    total = 0.0
    for i in range(4):
        total += msg.v[i]
    k = 0
    k += 1
    return Rep(r=k, w=n, f=total)


def test_a_local_takes_the_type_of_the_typed_values_assigned_to_it():
    kir = L.lower(accumulator_local)
    assert kir.locals["n"] is u32
    assert kir.locals["total"] is f32
    assert kir.locals["k"] is i32  # only Python ints: i32 on the targets
    assert kir.locals["i"] is i32 and kir.locals["_i"] is i32


@ringcore.kernel(id="mixed_signs")
def mixed_signs(ctx, msg: Req) -> Rep:
    return Rep(r=msg.x + msg.u, w=0, f=0.0)


@ringcore.kernel(id="int_plus_f32")
def int_plus_f32(ctx, msg: Req) -> Rep:
    return Rep(r=0, w=0, f=msg.x * msg.f)


@ringcore.kernel(id="literal_too_big")
def literal_too_big(ctx, msg: Req) -> Rep:
    y = msg.b + 300
    return Rep(r=0, w=y, f=0.0)


@ringcore.kernel(id="narrowing_store")
def narrowing_store(ctx, msg: Req) -> Rep:
    return Rep(r=msg.u, w=0, f=0.0)


@ringcore.kernel(id="conflicting_local")
def conflicting_local(ctx, msg: Req) -> Rep:
    t = msg.x
    t = msg.u
    return Rep(r=0, w=t, f=0.0)


@pytest.mark.parametrize("kernel, words", [
    (mixed_signs, ["i32 and u32", "i64", "cast"]),
    (int_plus_f32, ["i32 and f32", "f64", "cast"]),
    (literal_too_big, ["300", "does not fit u8"]),
    (narrowing_store, ["Rep.r is i32", "u32", "ringcore.i32("]),
    (conflicting_local, ["'t'", "different types", "i32", "u32"]),
])
def test_what_numpy_would_widen_silently_is_a_compile_error(kernel, words):
    err = _lower_error(kernel)
    text = str(err)
    for w in words:
        assert w in text, text
    assert err.filename.endswith("test_lang_frontend.py")
    assert f":{err.line}:" in text.splitlines()[0]
    assert err.construct


@ringcore.kernel(id="where_is_it")
def where_is_it(ctx, msg: Req) -> Rep:
    ok = msg.x
    return Rep(r=ok / 2, w=0, f=0.0)


def test_the_error_points_at_the_file_line_and_column_and_shows_the_line():
    err = _lower_error(where_is_it)
    import inspect

    lines, first = inspect.getsourcelines(where_is_it.func)
    line = first + 3
    assert err.line == line
    first_line, src, caret = str(err).splitlines()[:3]
    assert first_line.startswith(f"{err.filename}:{line}:{err.col}: ")
    assert src.strip() == "return Rep(r=ok / 2, w=0, f=0.0)"
    assert caret.index("^") == src.index("ok / 2")
    assert "use //" in str(err)


# -- lowering ---------------------------------------------------------------------------------------


@ringcore.kernel(id="chains_and_guards")
def chains_and_guards(ctx, msg: Req) -> Rep:
    r = 0
    if 0 <= msg.x < 4 and msg.v[msg.x] > 0.0:  # the index is only evaluated when in range
        r = 1
    q = msg.g[1, -1] + msg.g[msg.x % 2, 2]
    return Rep(r=r + q, w=0, f=msg.v[-1])


def test_short_circuit_guards_a_checked_index_and_negative_constants_are_normalised():
    kir = L.lower(chains_and_guards)
    assert [e.kind for e in kir.errors] == ["IndexError", "IndexError"]
    # The guarded index check sits inside an If on the left operand: it runs only when Python would.
    ifs = [s for s in kir.body if isinstance(s, ir.If)]
    assert any(any(isinstance(x, ir.If) and isinstance(x.then[0], ir.Fail) for x in s.then) for s in ifs)
    text = ir.format_stmts(kir.body)
    assert "msg.g[5:i32]" in text  # g[1, -1] -> row 1, column 2 -> 5
    assert "msg.v[3:i32]" in text


@ringcore.kernel(id="const_loop")
def const_loop(ctx, msg: Req) -> Rep:
    acc = ringcore.f32(0.0)
    for i in range(4):
        acc += msg.v[i]
    return Rep(r=0, w=0, f=acc)


def test_indexing_by_a_loop_variable_with_known_bounds_needs_no_check():
    kir = L.lower(const_loop)
    assert kir.errors == []
    assert not any(isinstance(s, ir.Fail) for s in ir.walk_stmts(kir.body))


@ringcore.kernel(id="maybe_unset")
def maybe_unset(ctx, msg: Req) -> Rep:
    if msg.x > 0:
        y = 1
    return Rep(r=y, w=0, f=0.0)


@ringcore.kernel(id="set_on_every_path")
def set_on_every_path(ctx, msg: Req) -> Rep:
    if msg.x > 0:
        y = 1
    elif msg.x < -5:
        return None
    else:
        y = 2
    return Rep(r=y, w=0, f=0.0)


def test_a_local_must_be_assigned_on_every_path_before_use():
    err = _lower_error(maybe_unset)
    assert "'y' may be used before it is assigned" in str(err)
    L.lower(set_on_every_path)


@ringcore.kernel(id="plain_state", state=Tally)
def plain_state(ctx, msg: Req) -> Rep:
    ctx.state.count += 1
    return Rep(r=0, w=ctx.state.count, f=0.0)


@ringcore.kernel(id="atomic_state", state=Tally)
def atomic_state(ctx, msg: Req) -> Rep:
    old = ctx.atomic_add("count", 1)
    ctx.atomic_max("best", msg.x)
    ctx.atomic_add("bins", 1, msg.b % 4)
    return Rep(r=0, w=old, f=0.0)


@ringcore.kernel(id="atomic_and_read", state=Tally)
def atomic_and_read(ctx, msg: Req) -> Rep:
    ctx.atomic_add("count", 1)
    return Rep(r=0, w=ctx.state.count, f=0.0)


def test_plain_state_writes_make_a_kernel_serial_and_atomics_keep_it_parallel():
    assert L.lower(plain_state).serial
    kir = L.lower(atomic_state)
    assert not kir.serial
    assert kir.atomics == {"count", "best", "bins"}
    assert L.lower(atomic_and_read).serial  # a plain read of an atomically updated field


def test_reference_mode_atomics_update_state_and_return_the_old_value():
    cpu = pytest.importorskip("ringcore_cpu")
    with cpu.CpuRuntime(execution="reference") as rt:
        k = rt.launch(atomic_state)
        olds = [int(k.call(Req(x=x, b=b)).w) for x, b in ((5, 5), (-3, 3), (9, 9))]
        st = k.read_state()
        assert olds == [0, 1, 2]
        assert (int(st["count"]), int(st["best"])) == (3, 9)
        assert st["bins"].tolist() == [0, 2, 0, 1]  # 5 % 4, 3 % 4, 9 % 4


@ringcore.kernel(id="clock_and_send")
def clock_and_send(ctx, msg: Req) -> Rep | None:
    t = ctx.now()
    r = ctx.send("somewhere", Req(x=msg.x, u=t.logical))
    if r == DeliveryResult.DELIVERED:
        return None
    return Rep(r=0, w=ctx.thread_id, f=0.0)


def test_clock_and_k2k_lower_to_tick_and_send():
    kir = L.lower(clock_and_send)
    assert kir.uses_now and kir.send_targets == ["somewhere"]
    assert kir.uses_64bit is None  # only .logical (u32) is used
    assert any(isinstance(s, ir.Tick) for s in kir.body)


@ringcore.func
def fact(n: i32) -> i32:
    if n <= 1:
        return 1
    return n * fact(n - 1)


@ringcore.kernel(id="recursive")
def recursive(ctx, msg: Req) -> Rep:
    return Rep(r=fact(msg.x), w=0, f=0.0)


def test_recursion_is_refused_with_the_call_chain():
    err = _lower_error(recursive)
    assert "recursion" in str(err) and "fact -> fact" in str(err)


# -- casts -----------------------------------------------------------------------------------------


def test_scalar_casts_refuse_values_no_target_converts_exactly():
    assert int(ringcore.i32(3.9)) == 3 and int(ringcore.i32(-3.9)) == -3
    assert int(ringcore.u8(-1.5)) == 255  # truncate, then wrap
    assert int(ringcore.i32(2.0 ** 40 + 5)) == 5
    for bad in (float("nan"), float("inf"), 2.0 ** 63, -(2.0 ** 64)):
        with pytest.raises(ValueError):
            ringcore.i64(bad)


def test_an_array_type_called_gives_a_zeroed_local_array():
    a = ringcore.f32[2, 3]()
    assert a.shape == (2, 3) and a.dtype == np.float32 and not a.any()


# -- the cache and the command line -----------------------------------------------------------------


def test_compiled_sources_are_cached_by_fingerprint():
    L.clear_cache()
    kir = L.lower(weak_literals)
    assert L.lower(weak_literals) is kir
    first = L.compile(weak_literals, "numpy")
    assert L.compile(weak_literals, "numpy") is first
    with pytest.raises(ValueError, match="unknown kernel target 'metal'"):
        L.compile(weak_literals, "metal")


def test_cli_prints_the_ir_and_a_target(capsys):
    assert cli_main(["compile", f"{__file__}:const_loop", "--target", "ir"]) == 0
    out = capsys.readouterr().out
    assert "kernel 'const_loop'" in out and "for i in range(0:i32, 4:i32, 1:i32)" in out
    assert cli_main(["compile", f"{__file__}:const_loop", "--target", "numpy"]) == 0
    assert "def run(" in capsys.readouterr().out


def test_cli_names_the_kernels_a_file_has(capsys):
    assert cli_main(["compile", f"{__file__}:nope"]) == 1
    err = capsys.readouterr().err
    assert "has no kernel 'nope'" in err and "const_loop" in err


def test_cli_reports_a_compile_error_as_one_readable_error(capsys):
    assert cli_main(["compile", f"{__file__}:mixed_signs", "--target", "ir"]) == 1
    err = capsys.readouterr().err
    assert "numpy would silently widen" in err and "test_lang_frontend.py" in err
