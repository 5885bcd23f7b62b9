"""Whether a CUDA GPU is here: the probe's answer, and the skip mark for tests that need one."""

from __future__ import annotations

import pytest
from ringcore_cuda.plugin import probe

PROBE = probe()
#: Skips a test (or a module, as ``pytestmark``) with the probe's reason where CuPy finds no GPU.
needs_gpu = pytest.mark.skipif(not PROBE.available, reason=f"no CUDA GPU here: {PROBE.reason}")
