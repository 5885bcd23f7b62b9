"""The OpenCL backend against ringcore's backend conformance suite, on the OpenCL device found here."""

from __future__ import annotations

from ringcore.testing import AbstractBackendTests


class TestOpenclBackend(AbstractBackendTests):
    """Every kernel event-driven: one NDRange per batch (persistent launches fall back, logged)."""

    backend = "opencl"
