"""The entry point: registers the CPU backend (cheap to import)."""

from __future__ import annotations

import os
import platform

import ringcore
from ringcore.plugins import BackendSpec, ProbeResult
from ringcore.runtime import DeviceInfo


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "CPU"


def probe() -> ProbeResult:
    cores = os.cpu_count() or 1
    dev = DeviceInfo(name=_cpu_name(), kind="cpu", accelerator=False,
                     details={"cores": cores, "machine": platform.machine()})
    return ProbeResult(True, "the host CPU is always available", (dev,))


def factory(**options):
    from .backend import CpuRuntime

    return CpuRuntime(**options)


@ringcore.hookimpl
def register_backends(register) -> None:
    register(BackendSpec(
        name="cpu",
        priority=100,
        factory=factory,
        probe=probe,
        package="ringcore-cpu",
        description="actor threads on the host CPU; kernels compiled to vectorised numpy (or run as Python in reference mode)",
    ))
