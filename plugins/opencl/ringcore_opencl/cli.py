"""``ringcore opencl``: the OpenCL backend's devices and its benchmark (added through ``register_commands``)."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

__all__ = ["add_commands"]


def _configure(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(title="subcommands", metavar="SUBCOMMAND", required=True)
    d = sub.add_parser("devices", help="list the OpenCL devices, their type, version and SVM capabilities")
    d.add_argument("--json", action="store_true", help="print JSON")
    d.set_defaults(_opencl_run=_devices)
    b = sub.add_parser("bench", help="vector add and per-dispatch overhead on OpenCL, next to the cpu backend")
    b.add_argument("--quick", action="store_true", help="fewer repeats")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.add_argument("--device-index", type=int, default=None, help="the OpenCL device (see `ringcore opencl devices`)")
    b.set_defaults(_opencl_run=_bench)


def _devices(args: argparse.Namespace) -> int:
    from .plugin import probe

    res = probe()
    if args.json:
        print(json.dumps(res.as_dict(), indent=2))
        return 0 if res.available else 1
    print(f"opencl: {'available' if res.available else 'unavailable'}: {res.reason}")
    for i, d in enumerate(res.devices):
        print(f"  [{i}] {d.name}: {d.kind}, accelerator={d.accelerator}")
        for k, v in d.details.items():
            print(f"      {k}: {v}")
    return 0 if res.available else 1


def _bench(args: argparse.Namespace) -> int:
    from .bench import bench_opencl, print_figures

    t0 = time.perf_counter()
    figures = bench_opencl(quick=args.quick, device_index=args.device_index)
    if args.json:
        print(json.dumps([f.as_dict() for f in figures], indent=2))
    else:
        print_figures(figures, time.perf_counter() - t0)
    return 0  # as `ringcore bench`: figures depend on the machine; gate on the `status` fields of --json


def add_commands(cli: Any) -> None:
    """Add ``ringcore opencl`` (the ``register_commands`` hook)."""
    cli.add_command("opencl", help="OpenCL backend tools: devices, bench (ringcore-opencl)",
                    description="Tools of the OpenCL backend (ringcore-opencl).",
                    configure=_configure, run=lambda args: args._opencl_run(args))
