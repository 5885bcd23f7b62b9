"""Vector add: a kernel adds two f32[16] vectors per message, for a bulk batch of messages.

The host builds one numpy structured array of requests, sends it with
``call_many`` (one copy into the kernel's input queue per chunk) and gets the
replies back as one array, in request order. The sums are computed by the
kernel; the host computes ``a + b`` with numpy only afterwards, independently,
to check them. The kernel's control block must also show that it processed
every message.

Run it with ``python examples/vector_add.py`` or ``python -m ringcore.demo.vector_add``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

import ringcore
from ringcore import f32

from ._util import example_main, fmt_rate, row

__all__ = ["Operands", "VecSum", "VectorAddResult", "main", "run", "vector_add"]

WIDTH = 16


@ringcore.message(type_id=0x7E570021)
class Operands:
    """A request: two vectors to add."""

    a: f32[16]
    b: f32[16]


@ringcore.message(type_id=0x7E570022)
class VecSum:
    """The reply: their element-wise sum."""

    c: f32[16]


@ringcore.kernel(id="vector_add")
def vector_add(ctx, msg: Operands) -> VecSum:
    out = VecSum()
    for i in range(16):
        out.c[i] = msg.a[i] + msg.b[i]
    return out


@dataclasses.dataclass
class VectorAddResult:
    """What the vector-add program observed."""

    count: int
    processed: int
    """Messages the kernel processed, from its control block."""
    mismatches: int
    """Replies that differ from numpy's ``a + b``."""
    seconds: float
    messages_per_s: float
    ok: bool


def run(rt: ringcore.RingKernelRuntime, *, count: int = 200_000, seed: int = 7,
        out: Callable[[str], Any] = print) -> VectorAddResult:
    """Add ``count`` pairs of random f32[16] vectors on a kernel of ``rt`` and check them against numpy."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    rng = np.random.default_rng(seed)
    requests = Operands.array(count)
    requests["a"] = rng.standard_normal((count, WIDTH), dtype=np.float32)
    requests["b"] = rng.standard_normal((count, WIDTH), dtype=np.float32)

    k = rt.launch(vector_add, input_capacity=8192, output_capacity=8192)
    try:
        k.call(Operands(a=np.ones(WIDTH), b=np.ones(WIDTH)))  # start the kernel's thread
        t0 = time.perf_counter()
        replies = k.call_many(requests, timeout=60.0 + count * 1e-3)
        seconds = time.perf_counter() - t0
        processed = k.status().processed - 1
    finally:
        k.terminate()

    expected = requests["a"] + requests["b"]  # the host's own answer, computed only now
    bad = ~np.all(replies["c"] == expected, axis=1)
    mismatches = int(bad.sum())
    rate = count / seconds
    mb = count * (Operands.dtype.itemsize + VecSum.dtype.itemsize) / seconds / 1e6
    out(row(f"call_many({count:,} messages)", f"{seconds * 1000:,.0f} ms: {fmt_rate(rate, 'msg')} "
                                              f"({mb:,.1f} MB/s of payload in and out)"))
    out(row("kernel processed", f"{processed:,} messages"))
    ok = mismatches == 0 and processed == count and len(replies) == count
    out(row("check against numpy a + b", f"{count - mismatches:,} of {count:,} replies equal "
                                         f"-> {'OK' if ok else 'FAILED'}"))
    return VectorAddResult(count, processed, mismatches, seconds, rate, ok)


def main(argv: Sequence[str] | None = None) -> int:
    """``python examples/vector_add.py [--backend NAME] [--count N]``."""

    def options(parser):
        parser.add_argument("--count", type=int, default=200_000, help="messages to add (default 200000)")

    return example_main(argv, "Add vectors on a ring kernel in bulk and check the sums.", run, options)


if __name__ == "__main__":
    raise SystemExit(main())
