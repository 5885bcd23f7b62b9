"""ringcore-echo passes the core's backend conformance suite."""

from ringcore.testing import AbstractBackendTests
from ringcore_echo.runtime import EchoRuntime


class TestEchoBackend(AbstractBackendTests):
    def make_runtime(self, **options):
        return EchoRuntime(**options)
