"""The CPU backend against ringcore's backend conformance suite."""

from __future__ import annotations

from ringcore.testing import AbstractBackendTests


class TestCpuBackend(AbstractBackendTests):
    backend = "cpu"
