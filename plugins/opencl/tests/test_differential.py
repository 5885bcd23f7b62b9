"""Differential suite: every corpus kernel and the examples' kernels give the same results on the OpenCL
backend as the reference (``ringcore.testing.differential``): replies, which messages fail, and the final
state; bit for bit for integers, within the corpus's float tolerances, through the real host path.
"""

from __future__ import annotations

from typing import Any

import pytest
from ringcore_opencl import OpenclExecutor, OpenclRuntime
from ringcore_opencl.persistent import OpenclPersistent

from ringcore.lang import lower
from ringcore.lang.targets import c
from ringcore.testing import corpus as C
from ringcore.testing.differential import ENTRIES, ENTRY_PARAMS, ReferenceRuntime, assert_backend_matches


@pytest.fixture(scope="module", params=[None, False], ids=["svm", "device-buffers"])
def ocl(request: pytest.FixtureRequest) -> Any:
    """The runtime as it comes (SVM where offered), and with device buffers and transfers."""
    rt = OpenclRuntime(svm=request.param)
    rt.prebuild([e.kernel for e in ENTRIES])  # one PoCL build for every kernel
    yield rt
    rt.shutdown()


@pytest.fixture(scope="module")
def ref(ocl: OpenclRuntime) -> Any:
    """A reference runtime per OpenCL runtime: both number their kernels in step (``ctx.kernel_number``)."""
    rt = ReferenceRuntime()
    yield rt
    rt.shutdown()


@pytest.mark.parametrize("entry", ENTRY_PARAMS)
def test_opencl_backend_matches_the_reference(ocl: OpenclRuntime, ref: ReferenceRuntime,
                                              entry: C.CorpusEntry) -> None:
    h = assert_backend_matches(ocl, ref, entry)
    kir = lower(entry.kernel)
    # Kernels launch persistent (their declared mode): resident where SVM allows and the kernel neither
    # sends nor reads the clock, otherwise event-driven; so the corpus covers both paths.
    ex = h.loop.executor
    if ocl.svm and c.persistent_refusal(kir) is None:
        assert h.mode.value == "persistent" and isinstance(ex, OpenclPersistent)
    else:
        assert h.mode.value == "event_driven" and isinstance(ex, OpenclExecutor)
        if c.outbox_stride(kir) == 0:
            assert ex.host_runs == 0, "a kernel that never sends ran on the host"
