"""The CUDA backend against ringcore's backend conformance suite, on the GPU found here (skipped without one)."""

from __future__ import annotations

from typing import Any

from _gpu import needs_gpu

import ringcore
from ringcore.testing import AbstractBackendTests

pytestmark = needs_gpu


class TestCudaBackend(AbstractBackendTests):
    """The default runtime: kernels resident on the GPU where they may be (persistent), else one launch per batch."""

    backend = "cuda"


class TestCudaBackendEventDriven(AbstractBackendTests):
    """Every kernel event-driven (``persistent_slots=0``): one launch per batch."""

    def make_runtime(self, **options: Any) -> ringcore.RingKernelRuntime:
        from ringcore_cuda import CudaRuntime

        return CudaRuntime(persistent_slots=0, **options)
