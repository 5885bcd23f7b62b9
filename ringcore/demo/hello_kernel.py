"""Hello, kernel: launch a ring kernel, watch its lifecycle, call it, read its metrics, terminate it.

The kernel keeps a counter in its persistent state and answers every
``Greet`` with a ``Greeting`` that carries the running count, so the replies
prove that the handler ran on the kernel (not on the host) and that its state
survives from one message to the next.

Run it with ``python examples/hello_kernel.py`` or ``python -m ringcore.demo.hello_kernel``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import ringcore
from ringcore import i32, i64

from ._util import example_main, fmt_rate, fmt_us, percentiles_us, row

__all__ = ["Counter", "Greet", "Greeting", "HelloResult", "hello", "main", "run"]


@ringcore.message(type_id=0x7E570001)
class Greet:
    """A request: a number to greet."""

    n: i32


@ringcore.message(type_id=0x7E570002)
class Greeting:
    """The reply: the number plus one, and how many greetings the kernel has served."""

    n: i32
    served: i64


class Counter:
    """The kernel's persistent state."""

    served: i64 = 0


@ringcore.kernel(id="hello", state=Counter)
def hello(ctx, msg: Greet) -> Greeting:
    ctx.state.served += 1
    return Greeting(n=msg.n + 1, served=ctx.state.served)


@dataclasses.dataclass
class HelloResult:
    """What the hello-kernel program observed."""

    states: list[str]
    """The kernel's lifecycle state after each step."""
    calls: int
    served: int
    """The kernel's own count of greetings, read from its state at the end."""
    processed: int
    """Messages the kernel processed, from its control block."""
    p50_us: float
    p99_us: float
    calls_per_s: float
    ok: bool


def run(rt: ringcore.RingKernelRuntime, *, calls: int = 2000, out: Callable[[str], Any] = print) -> HelloResult:
    """Launch ``hello`` on ``rt``, call it ``calls`` times, print what happens, and terminate it."""
    states = []

    def step(what: str, handle: ringcore.KernelHandle) -> None:
        st = handle.status()
        states.append(st.state)
        out(row(what, f"state={st.state:<11} processed={st.processed} errors={st.errors}"))

    k = rt.launch(hello, auto_activate=False)
    step(f"launch #{k.number} ({k.mode.value})", k)
    k.activate()
    step("activate()", k)

    first = k.call(Greet(n=41))
    out(row("call(Greet(n=41))", f"-> Greeting(n={int(first.n)}, served={int(first.served)})"))

    samples = []
    t0 = time.perf_counter()
    for i in range(calls):
        s = time.perf_counter_ns()
        reply = k.call(Greet(n=i))
        samples.append(time.perf_counter_ns() - s)
        if int(reply.n) != i + 1:
            raise AssertionError(f"kernel answered {reply} to Greet(n={i})")
    elapsed = time.perf_counter() - t0
    p50, p99 = percentiles_us(samples, 50, 99)
    rate = calls / elapsed
    out(row(f"{calls} x call()", f"round trip p50 {fmt_us(p50)}, p99 {fmt_us(p99)}; {fmt_rate(rate, 'calls')}"))

    m = k.metrics()
    out(row("metrics()", f"processed={m.processed} errors={m.errors} dropped={m.dropped} "
                         f"input max depth={m.input_max_depth} alerts={list(m.alerts) or 'none'}"))
    out(row("", f"send-to-handled latency p50 {fmt_us(m.latency_p50_us)}, p99 {fmt_us(m.latency_p99_us)}"))
    served = int(k.read_state()["served"])
    out(row("read_state()", f"served={served}"))
    k.deactivate()
    step("deactivate()", k)
    k.terminate()
    step("terminate()", k)

    processed = k.status().processed
    ok = served == calls + 1 and processed == calls + 1 and states[-1] == "terminated"
    out(row("check", f"the kernel served {served} of {calls + 1} greetings -> {'OK' if ok else 'FAILED'}"))
    return HelloResult(states, calls + 1, served, processed, p50, p99, rate, ok)


def main(argv: Sequence[str] | None = None) -> int:
    """``python examples/hello_kernel.py [--backend NAME] [--calls N]``."""

    def options(p):
        p.add_argument("--calls", type=int, default=2000, help="calls to time (default 2000)")

    return example_main(argv, "Launch a ring kernel, call it, read its metrics, terminate it.", run, options)


if __name__ == "__main__":
    raise SystemExit(main())
