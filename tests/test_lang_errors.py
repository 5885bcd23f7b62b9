"""Everything outside the kernel language is a KernelCompileError that says where and what.

Each kernel below uses one unsupported construct on the line marked ``# E:<tag>``.
The tests assert that the error names this file, that line (and the attributes
agree), the construct, and shows the source line, so a user can fix a kernel
without reading the compiler.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

import ringcore
from ringcore import f32, i32, u32, u64
from ringcore.errors import KernelCompileError
from ringcore.lang import lower

_BASE = 0xC0E10000
_LINES = Path(__file__).read_text(encoding="utf-8").splitlines()


def marked_line(tag: str) -> tuple[int, str]:
    """The 1-based number and the text of the line marked ``# E:<tag>``."""
    hits = [(i + 1, text) for i, text in enumerate(_LINES) if text.rstrip().endswith(f"# E:{tag}")]
    assert len(hits) == 1, f"marker E:{tag} found {len(hits)} times"
    return hits[0]


@ringcore.message(type_id=_BASE + 1)
class In:
    x: i32
    u: u32
    f: f32
    a: f32[4]


@ringcore.message(type_id=_BASE + 2)
class Out:
    x: i32
    f: f32


@ringcore.message(type_id=_BASE + 3)
class Wide:
    big: u64


class Counter:
    count: u32 = 0
    bins: u32[4]


# -- the kernels ---------------------------------------------------------------------------------


@ringcore.kernel(id="err_class")
def uses_class(ctx, msg: In) -> Out:
    class Point:  # E:class
        pass
    return Out(x=msg.x)


class Helper:
    def __init__(self, x):
        self.x = x


@ringcore.kernel(id="err_class_instance")
def uses_class_instance(ctx, msg: In) -> Out:
    h = Helper(msg.x)  # E:class_instance
    return Out(x=h.x)


def make_closure_kernel():
    seen = [0]

    @ringcore.kernel(id="err_closure_list")
    def closure_list(ctx, msg: In) -> Out:
        seen[0] += 1  # E:closure_list
        return Out(x=msg.x)

    return closure_list


def make_nonlocal_kernel():
    total = 0

    @ringcore.kernel(id="err_nonlocal")
    def uses_nonlocal(ctx, msg: In) -> Out:
        nonlocal total  # E:nonlocal
        total += 1
        return Out(x=msg.x)

    return uses_nonlocal


@ringcore.func
def fact(n: i32) -> i32:
    if n <= 1:
        return 1
    return n * fact(n - 1)  # E:recursion


@ringcore.kernel(id="err_recursion")
def uses_recursion(ctx, msg: In) -> Out:
    return Out(x=fact(msg.x))


@ringcore.func
def is_even(n: i32) -> ringcore.bool:
    if n == 0:
        return True
    return is_odd(n - 1)


@ringcore.func
def is_odd(n: i32) -> ringcore.bool:
    if n == 0:
        return False
    return is_even(n - 1)  # E:mutual_recursion


@ringcore.kernel(id="err_mutual_recursion")
def uses_mutual_recursion(ctx, msg: In) -> Out:
    if is_even(msg.x):
        return Out(x=1)
    return Out(x=0)


@ringcore.kernel(id="err_dict")
def uses_dict(ctx, msg: In) -> Out:
    d = {"x": msg.x}  # E:dict
    return Out(x=d["x"])


@ringcore.kernel(id="err_list")
def uses_list(ctx, msg: In) -> Out:
    xs = [msg.x, msg.x]  # E:list
    return Out(x=xs[0])


@ringcore.kernel(id="err_string")
def uses_string(ctx, msg: In) -> Out:
    name = "hello"  # noqa: F841  # E:string
    return Out(x=msg.x)


@ringcore.kernel(id="err_fstring")
def uses_fstring(ctx, msg: In) -> Out:
    if msg.x < 0:
        raise ValueError(f"bad {msg.x}")  # E:fstring
    return Out(x=msg.x)


@ringcore.kernel(id="err_try")
def uses_try(ctx, msg: In) -> Out:
    try:  # E:try
        y = msg.x // 2
    except ZeroDivisionError:
        y = 0
    return Out(x=y)


@ringcore.kernel(id="err_with")
def uses_with(ctx, msg: In) -> Out:
    with np.errstate(all="ignore"):  # E:with
        y = msg.x * 2
    return Out(x=y)


@ringcore.kernel(id="err_yield")
def uses_yield(ctx, msg: In) -> Out:
    yield Out(x=msg.x)  # E:yield


@ringcore.kernel(id="err_generator_expr")
def uses_generator_expr(ctx, msg: In) -> Out:
    g = (v for v in msg.a)  # E:generator_expr
    return Out(f=g)


@ringcore.kernel(id="err_sum")
def uses_sum(ctx, msg: In) -> Out:
    return Out(f=sum(msg.a))  # E:sum


@ringcore.kernel(id="err_lambda")
def uses_lambda(ctx, msg: In) -> Out:
    double = lambda v: v * 2  # noqa: E731  # E:lambda
    return Out(x=double(msg.x))


@ringcore.kernel(id="err_listcomp")
def uses_listcomp(ctx, msg: In) -> Out:
    ys = [v * 2.0 for v in msg.a]  # E:listcomp
    return Out(f=ys[0])


@ringcore.kernel(id="err_print")
def uses_print(ctx, msg: In) -> Out:
    print(msg.x)  # E:print
    return Out(x=msg.x)


@ringcore.kernel(id="err_math_sqrt")
def uses_math_sqrt(ctx, msg: In) -> Out:
    return Out(f=math.sqrt(msg.f))  # E:math_sqrt


@ringcore.kernel(id="err_np_sqrt")
def uses_np_sqrt(ctx, msg: In) -> Out:
    return Out(f=np.sqrt(msg.f))  # E:np_sqrt


def plain_helper(x):
    return x + 1


@ringcore.kernel(id="err_plain_function")
def uses_plain_function(ctx, msg: In) -> Out:
    return Out(x=plain_helper(msg.x))  # E:plain_function


LIMIT = 10


@ringcore.kernel(id="err_global")
def uses_global(ctx, msg: In) -> Out:
    global LIMIT  # E:global
    LIMIT = msg.x
    return Out(x=msg.x)


@ringcore.kernel(id="err_tuple_unpack")
def uses_tuple_unpacking(ctx, msg: In) -> Out:
    a, b = msg.x, msg.x + 1  # E:tuple_unpack
    return Out(x=a + b)


@ringcore.kernel(id="err_int_div")
def uses_int_div(ctx, msg: In) -> Out:
    return Out(x=msg.x / 2)  # E:int_div


@ringcore.kernel(id="err_i32_u32")
def adds_i32_u32(ctx, msg: In) -> Out:
    return Out(x=msg.x + msg.u)  # E:i32_u32


@ringcore.kernel(id="err_i32_f32")
def adds_i32_f32(ctx, msg: In) -> Out:
    return Out(f=msg.x + msg.f)  # E:i32_f32


@ringcore.kernel(id="err_f32_to_i32_field")
def assigns_f32_to_i32(ctx, msg: In) -> Out:
    return Out(x=msg.f)  # E:f32_to_i32_field


@ringcore.kernel(id="err_f32_to_i32_local_field")
def assigns_f32_to_i32_attr(ctx, msg: In) -> Out:
    out = Out()
    out.x = msg.f * 2.0  # E:f32_to_i32_attr
    return out


@ringcore.kernel(id="err_unknown_msg_field")
def unknown_msg_field(ctx, msg: In) -> Out:
    return Out(x=msg.y)  # E:unknown_msg_field


@ringcore.kernel(id="err_unknown_reply_field")
def unknown_reply_field(ctx, msg: In) -> Out:
    return Out(x=msg.x, z=1)  # E:unknown_reply_field


@ringcore.kernel(id="err_unknown_state_field", state=Counter)
def unknown_state_field(ctx, msg: In) -> Out:
    ctx.state.total += 1  # E:unknown_state_field
    return Out(x=msg.x)


@ringcore.kernel(id="err_unknown_atomic_field", state=Counter)
def unknown_atomic_field(ctx, msg: In) -> Out:
    ctx.atomic_add("hits", 1)  # E:unknown_atomic_field
    return Out(x=msg.x)


@ringcore.kernel(id="err_index_const")
def index_const_out_of_range(ctx, msg: In) -> Out:
    return Out(f=msg.a[4])  # E:index_const


@ringcore.kernel(id="err_index_const_state", state=Counter)
def state_index_const_out_of_range(ctx, msg: In) -> Out:
    ctx.state.bins[-5] += 1  # E:index_const_state
    return Out(x=msg.x)


@ringcore.kernel(id="err_wgsl_64")
def uses_64bit(ctx, msg: Wide) -> Wide:
    return Wide(big=msg.big * 3)


@ringcore.kernel(id="err_wgsl_64_local")
def uses_64bit_local(ctx, msg: In) -> Out:
    big = ringcore.i64(msg.x) * 1000000  # E:wgsl_64_local
    return Out(x=ringcore.i32(big >> 20))


# -- the tests -----------------------------------------------------------------------------------

# tag -> (kernel, a regular expression the message must match: the construct, named)
CASES = {
    "class": (uses_class, r"class"),
    "class_instance": (uses_class_instance, r"Helper"),
    "closure_list": (make_closure_kernel(), r"closure|enclosing function"),
    "nonlocal": (make_nonlocal_kernel(), r"nonlocal"),
    "recursion": (uses_recursion, r"recurs"),
    "mutual_recursion": (uses_mutual_recursion, r"recurs"),
    "dict": (uses_dict, r"dict"),
    "list": (uses_list, r"list"),
    "string": (uses_string, r"str"),
    "fstring": (uses_fstring, r"f-string|string|formatted|JoinedStr"),
    "try": (uses_try, r"\btry\b"),
    "with": (uses_with, r"\bwith\b"),
    "yield": (uses_yield, r"yield|generator"),
    "generator_expr": (uses_generator_expr, r"generator"),
    "lambda": (uses_lambda, r"lambda"),
    "listcomp": (uses_listcomp, r"comprehension"),
    "print": (uses_print, r"print"),
    "math_sqrt": (uses_math_sqrt, r"math\.sqrt|arbitrary Python \(sqrt\)"),
    "np_sqrt": (uses_np_sqrt, r"np\.sqrt|arbitrary Python \(sqrt\)"),
    "plain_function": (uses_plain_function, r"plain_helper"),
    "sum": (uses_sum, r"\bsum\b"),
    "global": (uses_global, r"global"),
    "tuple_unpack": (uses_tuple_unpacking, r"tuple|unpack"),
    "int_div": (uses_int_div, r"/"),
    "i32_u32": (adds_i32_u32, r"i32.*u32|u32.*i32"),
    "i32_f32": (adds_i32_f32, r"i32.*f32|f32.*i32"),
    "f32_to_i32_field": (assigns_f32_to_i32, r"f32.*i32|i32.*f32"),
    "f32_to_i32_attr": (assigns_f32_to_i32_attr, r"f32.*i32|i32.*f32"),
    "unknown_msg_field": (unknown_msg_field, r"\by\b"),
    "unknown_reply_field": (unknown_reply_field, r"\bz\b"),
    "unknown_state_field": (unknown_state_field, r"total"),
    "unknown_atomic_field": (unknown_atomic_field, r"hits"),
    "index_const": (index_const_out_of_range, r"index|range"),
    "index_const_state": (state_index_const_out_of_range, r"index|range"),
}


def check(exc: KernelCompileError, tag: str, construct: str) -> None:
    """The error names this file and the marked line, shows the line, and names the construct."""
    line, text = marked_line(tag)
    msg = str(exc)
    name = Path(__file__).name
    assert f"{__file__}:{line}:" in msg or f"{name}:{line}" in msg, (
        f"the error does not point at {__file__}:{line}:\n{msg}")
    assert exc.filename == __file__ and exc.line == line, (exc.filename, exc.line)
    assert text.strip() in msg, f"the error does not show the source line {text.strip()!r}:\n{msg}"
    words = msg.replace(text.strip(), "")  # the construct must be named outside the quoted line
    assert re.search(construct, words, re.IGNORECASE), (
        f"the error does not name the construct ({construct}):\n{msg}")
    assert exc.construct, "KernelCompileError.construct is empty"


# Known compiler bugs: the test stays, and starts passing (strict xfail: then fails) once fixed.
KNOWN_BUGS: dict[str, str] = {}


def _cases():
    return [pytest.param(tag, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[tag])) if tag in KNOWN_BUGS
            else tag for tag in sorted(CASES)]


@pytest.mark.parametrize("tag", _cases())
def test_unsupported_construct_is_a_compile_error_pointing_at_it(tag):
    kernel, construct = CASES[tag]
    with pytest.raises(KernelCompileError) as info:
        lower(kernel)
    check(info.value, tag, construct)


@pytest.mark.parametrize("tag", sorted(CASES))
def test_every_target_refuses_it_too(tag):
    kernel, _ = CASES[tag]
    with pytest.raises(KernelCompileError):
        ringcore.compile(kernel, "numpy")


def test_64bit_message_field_is_refused_by_wgsl_only():
    kir = lower(uses_64bit)
    assert kir.uses_64bit is not None
    for target in ("numpy", "cuda", "opencl"):
        assert ringcore.compile(uses_64bit, target)
    with pytest.raises(KernelCompileError) as info:
        ringcore.compile(uses_64bit, "wgsl")
    msg = str(info.value)
    assert "msg.big" in msg and "u64" in msg and "WGSL" in msg, msg
    assert "return Wide(big=msg.big * 3)" in msg and f"{Path(__file__).name}:" in msg, msg
    assert info.value.target == "wgsl" and info.value.filename == __file__


def test_64bit_local_is_refused_by_wgsl_at_its_line():
    with pytest.raises(KernelCompileError) as info:
        ringcore.compile(uses_64bit_local, "wgsl")
    check(info.value, "wgsl_64_local", r"i64|64-bit")
    assert info.value.target == "wgsl"


def test_errors_say_what_to_write_instead():
    # The hint follows the caret line: more than "file:line: what" and the source line.
    for tag in ("dict", "list", "int_div", "i32_u32", "print", "try"):
        kernel, _ = CASES[tag]
        with pytest.raises(KernelCompileError) as info:
            lower(kernel)
        lines = str(info.value).splitlines()
        caret = next(i for i, s in enumerate(lines) if s.strip().startswith("^"))
        assert any(s.strip() for s in lines[caret + 1:]), f"{tag}: no advice after the source line:\n{info.value}"
