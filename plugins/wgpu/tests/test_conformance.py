"""The WebGPU backend against ringcore's backend conformance suite, on the adapter found here."""

from __future__ import annotations

from ringcore.testing import AbstractBackendTests


class TestWgpuBackend(AbstractBackendTests):
    """Every kernel event-driven: one dispatch per batch (persistent launches fall back, logged)."""

    backend = "wgpu"
