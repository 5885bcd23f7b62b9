"""Differential suite: every corpus kernel and the examples' kernels give the same results on the GPU as
the reference (``ringcore.testing.differential``): replies, which messages fail, and the final state;
bit for bit for integers, within the corpus's float tolerances, through the real host path. Resident
(persistent) where the kernel may be, else one launch per batch; and all of them event-driven too.
"""

from __future__ import annotations

from typing import Any

import pytest
from _gpu import needs_gpu

from ringcore.lang import lower
from ringcore.lang.targets import c
from ringcore.testing import corpus as C
from ringcore.testing.differential import ENTRIES, ENTRY_PARAMS, ReferenceRuntime, assert_backend_matches

pytestmark = needs_gpu


@pytest.fixture(scope="module", params=[None, 0], ids=["persistent", "event-driven"])
def gpu(request: pytest.FixtureRequest) -> Any:
    from ringcore_cuda import CudaRuntime

    rt = CudaRuntime(persistent_slots=request.param)
    rt.prebuild([e.kernel for e in ENTRIES])  # one NVRTC run for every kernel
    yield rt
    rt.shutdown()


@pytest.fixture(scope="module")
def ref(gpu: Any) -> Any:
    """A reference runtime per GPU runtime: both number their kernels in step (``ctx.kernel_number``)."""
    rt = ReferenceRuntime()
    yield rt
    rt.shutdown()


@pytest.mark.parametrize("entry", ENTRY_PARAMS)
def test_cuda_backend_matches_the_reference(gpu: Any, ref: ReferenceRuntime, entry: C.CorpusEntry) -> None:
    from ringcore_cuda import CudaExecutor
    from ringcore_cuda.persistent import CudaPersistent

    h = assert_backend_matches(gpu, ref, entry)
    kir = lower(entry.kernel)
    ex = h.loop.executor
    if gpu.persistent_slots and c.persistent_refusal(kir) is None:
        assert h.mode.value == "persistent" and isinstance(ex, CudaPersistent)
    else:
        assert h.mode.value == "event_driven" and isinstance(ex, CudaExecutor)
        if c.outbox_stride(kir) == 0:
            assert ex.host_runs == 0, "a kernel that never sends ran on the host"
