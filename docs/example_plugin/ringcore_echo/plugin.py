"""The entry point of ringcore-echo: registers the "echo" backend.

ringcore imports this module whenever it loads plugins (every `ringcore info`,
every `ringcore.runtime(...)`), so it imports nothing heavy: the runtime module
is imported by the factory, when someone actually asks for the backend.
"""

from __future__ import annotations

import os
from typing import Any

import ringcore
from ringcore.plugins import BackendSpec, ProbeResult
from ringcore.runtime import DeviceInfo


def probe() -> ProbeResult:
    """Say whether the backend can run here and on what; never raise."""
    device = DeviceInfo(name="host CPU", kind="cpu", accelerator=False,
                        details={"cores": os.cpu_count() or 1})
    return ProbeResult(True, "runs on the host CPU; always available", (device,))


def factory(**options: Any) -> ringcore.RingKernelRuntime:
    from .runtime import EchoRuntime  # imported on use, not when the plugin loads

    return EchoRuntime(**options)


@ringcore.hookimpl
def register_backends(register) -> None:
    register(BackendSpec(
        name="echo",
        priority=50,  # below cpu (100): "auto" never picks it over the CPU backend
        factory=factory,
        probe=probe,
        package="ringcore-echo",
        description="host threads that log every batch they run (an example plugin)",
    ))
