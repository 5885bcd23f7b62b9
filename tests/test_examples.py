"""Each example runs as ``python examples/X.py``, exits 0, and its own result check passes."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

import ringcore
from ringcore.demo.vector_add import Operands, VecSum
from ringcore.plugins import PluginRegistry

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"

pytestmark = pytest.mark.skipif(
    not EXAMPLES.is_dir() or not (EXAMPLES / "hello_kernel.py").exists(),
    reason="the examples/ folder is not present (an installed package is being tested)",
)


def _env() -> dict[str, str]:
    pytest.importorskip("ringcore_cpu")
    env = dict(os.environ)
    env["RINGCORE_LOAD_PLUGINS"] = "cpu"  # the core suite loads no plugins; the examples need one
    env.pop("RINGCORE_BACKEND", None)
    return env


def _run_example(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], check=False,
                          capture_output=True,
                          text=True, env=_env(), timeout=120)


def test_hello_kernel():
    proc = _run_example("hello_kernel", "--calls", "200")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "backend: cpu" in out
    for state in ("launched", "active", "deactivated", "terminated"):
        assert f"state={state}" in out
    assert "served 201 of 201 greetings -> OK" in out
    assert "p50" in out and "calls/s" in out


def test_ping_pong():
    proc = _run_example("ping_pong", "--rounds", "50")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "50 of 50 round trips" in out and "pong 50 -> OK" in out
    assert "per round trip" in out and "round trips/s" in out


def test_vector_add():
    proc = _run_example("vector_add", "--count", "3000")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "3,000 of 3,000 replies equal -> OK" in out
    assert "3,000 messages" in out and "kernel processed" in out
    assert "msg/s" in out


def test_an_example_on_an_unknown_backend_fails_clearly():
    proc = _run_example("hello_kernel", "--backend", "nope")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert "no backend named 'nope'" in proc.stderr


# -- the result checks catch wrong answers -------------------------------------------------


@pytest.fixture
def cpu_runtime():
    plugin = pytest.importorskip("ringcore_cpu.plugin")
    registry = PluginRegistry(load=[], plugins=[plugin])
    rt = registry.create_runtime("cpu")
    yield rt
    rt.shutdown()


def test_vector_add_check_compares_with_numpy(cpu_runtime, monkeypatch):
    from ringcore.demo import vector_add

    lines: list[str] = []
    good = vector_add.run(cpu_runtime, count=500, out=lines.append)
    assert good.ok and good.mismatches == 0 and good.processed == 500

    @ringcore.kernel(id="vector_add_wrong")
    def wrong(ctx, msg: Operands) -> VecSum:
        out = VecSum()
        for i in range(16):
            out.c[i] = msg.a[i] - msg.b[i]
        return out

    monkeypatch.setattr(vector_add, "vector_add", wrong)
    bad = vector_add.run(cpu_runtime, count=500, out=lines.append)
    assert not bad.ok and bad.mismatches > 0
    assert any("FAILED" in line for line in lines)


def test_ping_pong_counts_real_round_trips(cpu_runtime):
    from ringcore.demo import ping_pong

    result = ping_pong.run(cpu_runtime, rounds=20, out=lambda s: None)
    assert result.ok
    assert result.round_trips == 20 and result.pong_hits == 20
    assert result.ping_hits == 20 + result.rallies
    assert result.rallies == -(-20 // (cpu_runtime.max_hops // 2))


def test_handlers_run_as_plain_python():
    """The reference semantics: calling a kernel directly runs its handler on one message."""
    from ringcore.demo import hello_kernel, vector_add

    a = np.arange(16, dtype=np.float32)
    out = vector_add.vector_add(None, vector_add.Operands(a=a, b=2 * a))
    assert np.array_equal(out.c, 3 * a)

    class Ctx:
        class state:
            served = np.int64(4)

    reply = hello_kernel.hello(Ctx, hello_kernel.Greet(n=9))
    assert int(reply.n) == 10 and int(reply.served) == 5


@pytest.mark.parametrize("name", ["hello_kernel", "ping_pong", "vector_add"])
def test_kernels_quoted_in_an_example_are_the_ones_it_runs(name):
    """Each example's docstring shows its kernels: they must be the demo module's code, verbatim."""
    import ast
    import importlib
    import inspect
    import textwrap

    path = EXAMPLES / f"{name}.py"
    doc = ast.get_docstring(ast.parse(path.read_text()))
    quoted = textwrap.dedent(doc.split("The kernel:" if "The kernel:" in doc else "The kernels:", 1)[1]).strip()
    module = importlib.import_module(f"ringcore.demo.{name}")
    source = inspect.getsource(module)
    for block in quoted.split("\n\n"):
        assert block.strip() in source, f"examples/{name}.py quotes code that {module.__name__} does not contain"
