"""Differential suite: every corpus kernel and the examples' kernels give the same results on the WebGPU
backend as the reference (``ringcore.testing.differential``), through the real host path. Kernels that
compute with 64-bit values are refused at launch, naming the construct and its line.
"""

from __future__ import annotations

from typing import Any

import pytest
from ringcore_wgpu import WgpuExecutor, WgpuRuntime

from ringcore import KernelCompileError
from ringcore.lang import lower
from ringcore.lang.targets import wgsl
from ringcore.testing import corpus as C
from ringcore.testing.differential import ENTRY_PARAMS, ReferenceRuntime, assert_backend_matches


def _refusal(entry: C.CorpusEntry) -> KernelCompileError | None:
    try:
        wgsl.emit(lower(entry.kernel))
    except KernelCompileError as exc:
        return exc
    return None


@pytest.fixture(scope="module")
def gpu() -> Any:
    rt = WgpuRuntime()
    yield rt
    rt.shutdown()


@pytest.fixture(scope="module")
def ref(gpu: WgpuRuntime) -> Any:
    """One reference runtime per WebGPU runtime: both number their kernels in step (``ctx.kernel_number``)."""
    rt = ReferenceRuntime()
    yield rt
    rt.shutdown()


@pytest.mark.parametrize("entry", ENTRY_PARAMS)
def test_wgpu_backend_matches_the_reference(gpu: WgpuRuntime, ref: ReferenceRuntime, entry: C.CorpusEntry) -> None:
    refused = _refusal(entry)
    if refused is not None:
        with pytest.raises(KernelCompileError) as err:
            gpu.launch(entry.kernel)
        assert f".py:{refused.line}" in str(err.value) and "64-bit" in str(err.value)
        assert gpu.kernels() == []
        ref.launch(entry.kernel).terminate()  # keep the two runtimes' kernel numbers in step
        return
    h = assert_backend_matches(gpu, ref, entry)
    ex = h.loop.executor
    assert h.mode.value == "event_driven" and isinstance(ex, WgpuExecutor)
    # The device decided every send from the directory as the runtime would: nothing ran again on the host.
    assert ex.host_runs == 0
