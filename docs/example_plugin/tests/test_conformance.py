"""ringcore-echo passes the core's backend conformance suite."""

from ringcore_echo.runtime import EchoRuntime

from ringcore.testing import AbstractBackendTests


class TestEchoBackend(AbstractBackendTests):
    def make_runtime(self, **options):
        return EchoRuntime(**options)
