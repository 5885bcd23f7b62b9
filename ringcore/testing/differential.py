"""The differential suite's harness: a backend's runtime against the reference, through the real host path.

Every kernel of the kernel-language corpus and of the examples (``ENTRIES``) runs on a backend's runtime
and on :class:`ReferenceRuntime` (the core's host loop over the reference executor: the Python handler
once per message, the semantics every backend reproduces), with the same inputs (edge values and 150
random messages, seeded by the entry's name). :func:`assert_backend_matches` compares replies, which
messages fail and the final state: bit for bit for integers, within the entry's float tolerance.
Messages go through queues, batches and replies, not a target's ABI alone.

A backend's suite::

    @pytest.fixture(scope="module")
    def rt():
        with MyRuntime() as rt:
            yield rt

    @pytest.fixture(scope="module")
    def ref(rt):  # one per backend runtime: both number their kernels in step (ctx.kernel_number)
        with ReferenceRuntime() as ref:
            yield ref

    @pytest.mark.parametrize("entry", ENTRY_PARAMS)
    def test_matches_the_reference(rt, ref, entry):
        h = assert_backend_matches(rt, ref, entry)
"""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from ..errors import KernelError
from ..kernel import KernelDef
from ..runtime import KernelHandle, ReferenceExecutor, RingKernelRuntime
from . import corpus as C

__all__ = ["ReferenceRuntime", "ENTRIES", "ENTRY_PARAMS", "differential_inputs", "run_entry",
           "assert_backend_matches"]


class ReferenceRuntime(RingKernelRuntime):
    """The core's host loop over the reference executor: the baseline every backend must match."""

    backend_name = "reference"

    def _create_executor(self, handle: KernelHandle) -> ReferenceExecutor:
        return ReferenceExecutor(handle)


def _demo_entries() -> list[C.CorpusEntry]:
    from ..demo import hello_kernel, ping_pong, vector_add
    from ..lang import lower

    kernels = [v for m in (hello_kernel, ping_pong, vector_add) for v in vars(m).values() if isinstance(v, KernelDef)]
    return [C.CorpusEntry(k, tolerance="ulp1", serial=lower(k).serial) for k in kernels]


#: The corpus, then the examples' kernels.
ENTRIES: list[C.CorpusEntry] = [*C.CORPUS, *_demo_entries()]
#: ``ENTRIES`` as pytest parameters, named after the kernels.
ENTRY_PARAMS = [pytest.param(e, id=e.name) for e in ENTRIES]


def differential_inputs(entry: C.CorpusEntry) -> np.ndarray:
    """The entry's edge inputs and 150 random ones (seeded by its name: every backend gets the same)."""
    rng = np.random.default_rng(zlib.crc32(entry.name.encode()))
    return np.concatenate([entry.edge_inputs(), entry.make_inputs(rng, 150)])


def run_entry(rt: RingKernelRuntime, entry: C.CorpusEntry, inputs: np.ndarray) -> tuple[C.RunResult, KernelHandle]:
    """Launch the entry's kernel on ``rt``, send every input (``call_many`` when it replies, else
    ``send_many``), drain and terminate it; what it did, as a RunResult, and its handle."""
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


def assert_backend_matches(rt: RingKernelRuntime, ref: ReferenceRuntime, entry: C.CorpusEntry) -> KernelHandle:
    """Run ``entry`` on the reference and on ``rt``; raise AssertionError listing the differences.

    Timestamps (``ctx.now()``) come from each runtime's own clock: they are compared for order, not for
    equality. Returns the backend's (terminated) handle, for backend-specific checks.
    """
    from ..lang import lower

    inputs = differential_inputs(entry)
    want, _ = run_entry(ref, entry, inputs)
    got, h = run_entry(rt, entry, inputs)
    kir = lower(entry.kernel)
    check = entry
    if kir.uses_now and want.replies is not None:
        check = C.CorpusEntry(**{**entry.__dict__, "unordered": (*entry.unordered, *want.replies.dtype.names)})
    C.assert_same(check, want, got, inputs, tolerance=entry.tolerance, ordered=kir.serial)
    return h
