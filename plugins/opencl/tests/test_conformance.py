"""The OpenCL backend against ringcore's backend conformance suite, on the OpenCL device found here."""

from __future__ import annotations

from typing import Any

import pytest
from ringcore_opencl.backend import OpenclRuntime

import ringcore
from ringcore.testing import AbstractBackendTests


class TestOpenclBackend(AbstractBackendTests):
    """The default runtime: shared virtual memory where the device offers fine-grain SVM buffers."""

    backend = "opencl"


class TestOpenclBackendDeviceBuffers(AbstractBackendTests):
    """Device buffers and transfers (``svm=False``): the path of devices without fine-grain SVM."""

    def make_runtime(self, **options: Any) -> ringcore.RingKernelRuntime:
        return OpenclRuntime(svm=False, **options)


def test_svm_must_be_a_bool_and_offered():
    with pytest.raises(ValueError, match="svm='yes'"):
        OpenclRuntime(svm="yes")
    with OpenclRuntime(svm=False) as rt:
        assert rt.svm is False
