"""Differential suite: every corpus kernel and the examples' kernels give the same results on the OpenCL
backend as the reference (the Python handler once per message, the semantics every backend reproduces):
replies, which messages fail, and the final state; bit for bit for integers, within the corpus's float
tolerances. Messages go through the real host path (queues, batches, replies), not the ABI alone.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
from ringcore_opencl import OpenclExecutor, OpenclRuntime
from ringcore_opencl.persistent import OpenclPersistent

from ringcore import KernelError
from ringcore.demo import hello_kernel, ping_pong, vector_add
from ringcore.kernel import KernelDef
from ringcore.lang import lower
from ringcore.lang.targets import c
from ringcore.runtime import KernelHandle, ReferenceExecutor, RingKernelRuntime
from ringcore.testing import corpus as C


class ReferenceRuntime(RingKernelRuntime):
    """The core's host loop over the reference executor: the baseline every backend must match."""

    backend_name = "reference"

    def _create_executor(self, handle: KernelHandle) -> ReferenceExecutor:
        return ReferenceExecutor(handle)


def _demo_entries() -> list[C.CorpusEntry]:
    kernels = [v for m in (hello_kernel, ping_pong, vector_add) for v in vars(m).values() if isinstance(v, KernelDef)]
    return [C.CorpusEntry(k, tolerance="ulp1", serial=lower(k).serial) for k in kernels]


ENTRIES = [*C.CORPUS, *_demo_entries()]


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


def _inputs(entry: C.CorpusEntry) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(entry.name.encode()))
    return np.concatenate([entry.edge_inputs(), entry.make_inputs(rng, 150)])


def _run(rt: RingKernelRuntime, entry: C.CorpusEntry, inputs: np.ndarray) -> tuple[C.RunResult, KernelHandle]:
    kernel = entry.kernel
    h = rt.launch(kernel, max_batch=1024)
    n = len(inputs)
    msgs = np.zeros(n, kernel.input_type.dtype)
    msgs[...] = inputs
    errors: list[str | None] = [None] * n
    details: list[str | None] = [None] * n
    replies = None
    has_reply = np.zeros(n, bool)
    if kernel.output_type is not None:
        try:
            replies = h.call_many(msgs, timeout=60)
        except KernelError as exc:
            replies = exc.replies.copy()  # type: ignore[attr-defined]
            for i in exc.failed.tolist():  # type: ignore[attr-defined]
                errors[i] = details[i] = "failed"
        has_reply = np.array([e is None for e in errors])
        replies[~has_reply] = np.zeros(1, replies.dtype)[0]
    else:
        h.send_many(msgs)
    state = h.runtime._read_state(h) if kernel.state is not None else None
    h.terminate(timeout=30, drain=True)
    st = h.read_state()
    if state is not None:
        for name in state.dtype.names:
            state[name][0] = st[name]
    result = C.RunResult(has_reply, replies, errors, details, state, [[] for _ in range(n)], [0] * n,
                         [[] for _ in range(n)])
    return result, h


@pytest.mark.parametrize("entry", [pytest.param(e, id=e.name) for e in ENTRIES])
def test_opencl_backend_matches_the_reference(ocl: OpenclRuntime, ref: ReferenceRuntime,
                                              entry: C.CorpusEntry) -> None:
    inputs = _inputs(entry)
    want, _ = _run(ref, entry, inputs)
    got, h = _run(ocl, entry, inputs)
    kir = lower(entry.kernel)
    check = entry
    if kir.uses_now and want.replies is not None:
        # Timestamps come from each runtime's own clock: compared for order below, not for equality.
        check = C.CorpusEntry(**{**entry.__dict__, "unordered": (*entry.unordered, *want.replies.dtype.names)})
    C.assert_same(check, want, got, inputs, tolerance=entry.tolerance, ordered=kir.serial)
    # Kernels launch persistent (their declared mode): resident where SVM allows and the kernel neither
    # sends nor reads the clock, otherwise event-driven; so the corpus covers both paths.
    ex = h.loop.executor
    if ocl.svm and c.persistent_refusal(kir) is None:
        assert h.mode.value == "persistent" and isinstance(ex, OpenclPersistent)
    else:
        assert h.mode.value == "event_driven" and isinstance(ex, OpenclExecutor)
        if c.outbox_stride(kir) == 0:
            assert ex.host_runs == 0, "a kernel that never sends ran on the host"
