"""The CPU backend against ringcore's backend conformance suite, in both of its execution modes."""

from __future__ import annotations

from typing import Any

from ringcore_cpu import CpuRuntime

from ringcore.testing import AbstractBackendTests


class TestCpuBackend(AbstractBackendTests):
    """The default: kernels compiled to the numpy target, one vectorised call per batch."""

    backend = "cpu"


class TestCpuReferenceMode(AbstractBackendTests):
    """Reference mode: the Python handler once per message (the semantics every target reproduces)."""

    backend = "cpu"

    def make_runtime(self, **options: Any) -> CpuRuntime:
        return CpuRuntime(execution="reference", **options)
