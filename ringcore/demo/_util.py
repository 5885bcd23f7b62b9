"""Small helpers shared by the demo programs and the benchmarks: timing summaries and formatting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["describe_runtime", "example_main", "fmt_rate", "fmt_us", "percentiles_us", "row"]


def percentiles_us(samples_ns: Sequence[int] | np.ndarray, *ps: float) -> list[float]:
    """The ``ps`` percentiles (0-100) of nanosecond samples, in microseconds."""
    arr = np.asarray(samples_ns, dtype=np.float64) / 1000.0
    return [float(np.percentile(arr, p)) for p in ps]


def fmt_us(us: float) -> str:
    """A duration in µs with sensible precision (``0.083 µs``, ``41.2 µs``, ``1,250 µs``)."""
    if us < 1:
        return f"{us:.3f} µs"
    if us < 100:
        return f"{us:.1f} µs"
    return f"{us:,.0f} µs"


def fmt_rate(per_s: float, unit: str) -> str:
    """A rate with an SI prefix (``1.25 M msg/s``, ``48.1 k calls/s``)."""
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if per_s >= scale:
            return f"{per_s / scale:.2f} {prefix} {unit}/s"
    return f"{per_s:.0f} {unit}/s"


def row(label: str, text: str) -> str:
    """One line of a demo's report: an indented label column, then what happened."""
    return f"  {label:<30} {text}"


def describe_runtime(rt: Any) -> str:
    """``cpu on Intel Xeon … (cpu, software)``: the backend and the device it runs on."""
    dev = rt.device
    if dev is None:
        return rt.backend_name
    kind = "accelerator" if dev.accelerator else "not an accelerator"
    return f"{rt.backend_name} on {dev.name} ({dev.kind}, {kind})"


def example_main(
    argv: Sequence[str] | None,
    description: str,
    run: Callable[..., Any],
    options: Callable[[argparse.ArgumentParser], None],
) -> int:
    """The command line of an example program: ``--backend``, the example's own options, run, exit status.

    ``run(runtime, out=print, **options)`` must return an object whose ``ok``
    attribute says whether the example's result check passed.
    """
    import ringcore
    from ringcore.errors import RingcoreError

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--backend", default="auto", help="backend to run on (default: auto, the best one here)")
    options(parser)
    args = vars(parser.parse_args(argv))
    backend = args.pop("backend")
    try:
        with ringcore.runtime(backend) as rt:
            print(f"backend: {describe_runtime(rt)}")
            result = run(rt, **args)
    except RingcoreError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if result.ok else 1
