"""The ring-kernel backend conformance suite.

Subclass :class:`AbstractBackendTests` (or the area classes it combines) and
set ``backend`` or override :meth:`BackendFixtures.make_runtime`. Capability
flags on the class switch off what a backend cannot do; every test that needs
one says so when it skips.

The tests assert behaviour, never speed: waits are bounded by generous
timeouts that only a hang would exceed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import numpy as np
import pytest

import ringcore
from ringcore import (
    BackendError,
    ErrorCode,
    KernelDefinitionError,
    KernelError,
    KernelHandle,
    KernelState,
    KernelTerminatedError,
    LifecycleError,
    MessageFlags,
    MessageTypeError,
    QueueFull,
    RingKernelRuntime,
    RingTimeoutError,
)

from . import kernels as K

__all__ = [
    "BackendFixtures",
    "AbstractLifecycleTests",
    "AbstractMessagingTests",
    "AbstractCallTests",
    "AbstractStateTests",
    "AbstractK2KTests",
    "AbstractPubSubTests",
    "AbstractTerminationTests",
    "AbstractBadInputTests",
    "AbstractMetricsTests",
    "AbstractHlcTests",
    "AbstractAsyncTests",
    "AbstractBackendTests",
    "wait_until",
    "wait_processed",
    "receive_n",
    "StandInCpu",
    "AbstractPluginTests",
]

#: Upper bound on any wait that must complete; only a hang reaches it.
PATIENCE = 30.0


# -- helpers ----------------------------------------------------------------------


class AbstractPluginTests:
    """What a backend plugin's packaging must do, for its suite to subclass::

        class TestMyPlugin(AbstractPluginTests):
            backend, priority, package = "mydevice", 250, "ringcore-mydevice"
            plugin_module = "ringcore_mydevice.plugin"   # the entry point
            device_modules = ("mydevicelib",)            # what importing the entry point must not import
    """

    backend: ClassVar[str]
    priority: ClassVar[int]
    package: ClassVar[str]
    plugin_module: ClassVar[str]
    device_modules: ClassVar[tuple[str, ...]] = ()

    def test_the_entry_point_registers_the_backend(self) -> None:
        import importlib.metadata as md

        from ringcore.plugins import get_registry

        eps = [e for e in md.entry_points(group="ringcore") if e.name == self.backend]
        assert [e.value for e in eps] == [self.plugin_module]
        spec = get_registry().backend_spec(self.backend)
        assert (spec.name, spec.priority, spec.package) == (self.backend, self.priority, self.package)

    def test_importing_the_plugin_imports_no_device_library(self) -> None:
        import subprocess
        import sys

        mods = list(self.device_modules)
        code = f"import sys, {self.plugin_module}; print([m for m in {mods!r} if m in sys.modules])"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == "[]", f"importing {self.plugin_module} imported {out.stdout.strip()}"

    def test_auto_prefers_the_cpu_backend_to_a_software_device(self) -> None:
        from ringcore.plugins import PluginRegistry

        reg = PluginRegistry(load=[self.backend], plugins=[StandInCpu()])
        if reg.probe(self.backend).accelerator:
            pytest.skip(f"this machine has a real accelerator for {self.backend}: auto picks it here, as it should")
        assert reg.select("auto").name == "cpu"
        assert reg.select(self.backend).name == self.backend


class StandInCpu:
    """A plugin registering a stand-in ``cpu`` backend (priority 100, available, never run): for a device
    backend's tests of how ``auto`` ranks it, in a registry that loads only that backend::

        reg = PluginRegistry(load=["mydevice"], plugins=[StandInCpu()])
        assert reg.select("auto").name == "cpu"  # on a software device
    """

    @ringcore.hookimpl
    def register_backends(self, register: Callable[[Any], None]) -> None:
        from ringcore.plugins import BackendSpec, ProbeResult
        from ringcore.runtime import DeviceInfo

        register(BackendSpec(name="cpu", priority=100, factory=lambda **kw: None, package="ringcore-cpu",
                             probe=lambda: ProbeResult(True, "stand-in", (DeviceInfo("host", "cpu", False),))))


def wait_until(predicate: Callable[[], Any], what: str, timeout: float = PATIENCE) -> None:
    """Poll ``predicate`` (sleeping, never spinning) until it is true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    sleep = 0.0005
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout} s waiting for {what}")
        time.sleep(sleep)
        sleep = min(sleep * 2, 0.01)


def wait_processed(handle: KernelHandle, n: int) -> None:
    """Wait until ``handle`` has processed at least ``n`` messages."""
    wait_until(lambda: handle.status().processed >= n,
               f"kernel {handle.name!r} to process {n} messages (processed {handle.status().processed})")


def receive_n(handle: KernelHandle, n: int, timeout: float = PATIENCE) -> np.ndarray:
    """Receive exactly ``n`` records (slot dtype) from ``handle``, in arrival order."""
    parts: list[np.ndarray] = []
    got = 0
    deadline = time.monotonic() + timeout
    while got < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"received {got} of {n} replies from {handle.name!r} before giving up")
        part = handle.receive_many(n - got, timeout=min(left, 1.0))
        if len(part):
            parts.append(part)
            got += len(part)
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


class _Thread(threading.Thread):
    """Runs ``fn`` and keeps its result or exception; :meth:`outcome` joins with a bound."""

    def __init__(self, fn: Callable[[], Any], name: str = "ringcore-test") -> None:
        super().__init__(name=name, daemon=True)
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._fn()
        except BaseException as exc:  # handed to the test thread
            self.error = exc

    def outcome(self, timeout: float = PATIENCE) -> Any:
        self.join(timeout)
        assert not self.is_alive(), f"thread {self.name} is still blocked after {timeout} s"
        if self.error is not None:
            raise self.error
        return self.result


def _started(fn: Callable[[], Any], name: str = "ringcore-test") -> _Thread:
    t = _Thread(fn, name)
    t.start()
    return t


def _nums(n: int, *, start: int = 0, offset: int = 0) -> np.ndarray:
    """``n`` Num records with tag = start + i and value = tag - offset."""
    a = K.Num.array(n)
    a["tag"] = np.arange(start, start + n, dtype=np.uint32)
    a["value"] = a["tag"].astype(np.int64) - offset
    return a


def _ts(header: Any) -> tuple[int, int]:
    return int(header.hlc_physical), int(header.hlc_logical)


# -- fixtures -----------------------------------------------------------------------


class BackendFixtures:
    """How the suite gets a runtime, and what the backend cannot do.

    Override :meth:`make_runtime`, or set :attr:`backend` to the name
    ``ringcore.runtime(...)`` takes. Capability flags default to everything.
    """

    #: The backend name given to ``ringcore.runtime``; None means make_runtime is overridden.
    backend: ClassVar[str | None] = None
    #: Handlers that raise report a KernelError to the caller (False where the target cannot raise).
    supports_handler_errors: ClassVar[bool] = True
    #: ``LaunchOptions(overflow="drop")`` is supported.
    supports_drop_policy: ClassVar[bool] = True
    #: The launch modes the backend accepts (it may run persistent kernels event-driven).
    modes: ClassVar[tuple[str, ...]] = ("persistent", "event_driven")
    #: How many messages the bulk tests move.
    bulk_messages: ClassVar[int] = 100_000

    def make_runtime(self, **options: Any) -> RingKernelRuntime:
        """A new runtime of the backend under test; ``options`` go to its factory (``max_hops``...)."""
        if self.backend is None:
            raise NotImplementedError(
                f"{type(self).__name__} must set `backend = '<name>'` or override make_runtime()")
        return ringcore.runtime(self.backend, **options)

    @pytest.fixture
    def runtime_factory(self) -> Iterator[Callable[..., RingKernelRuntime]]:
        """Creates runtimes (``runtime_factory(max_hops=5)``) and shuts them all down afterwards."""
        made: list[RingKernelRuntime] = []

        def make(**options: Any) -> RingKernelRuntime:
            rt = self.make_runtime(**options)
            made.append(rt)
            return rt

        yield make
        for rt in made:
            rt.shutdown(timeout=10.0)

    @pytest.fixture
    def runtime(self, runtime_factory: Callable[..., RingKernelRuntime]) -> RingKernelRuntime:
        """A fresh runtime of the backend under test, shut down after the test."""
        return runtime_factory()

    def need(self, flag: str) -> None:
        if not getattr(self, flag):
            pytest.skip(f"{type(self).__name__} sets {flag} = False")


# -- lifecycle ------------------------------------------------------------------------


class AbstractLifecycleTests(BackendFixtures):
    def test_launch_activates_by_default(self, runtime):
        h = runtime.launch(K.echo)
        assert h.state is KernelState.ACTIVE
        st = h.status()
        assert (st.kernel, st.state, st.backend) == ("echo", "active", runtime.backend_name)
        assert h.call(K.Num(value=3, tag=1)).doubled == 6

    def test_every_valid_transition(self, runtime):
        h = runtime.launch(K.echo, auto_activate=False)
        assert h.state is KernelState.LAUNCHED
        h.activate()
        assert h.state is KernelState.ACTIVE
        h.deactivate()
        assert h.state is KernelState.DEACTIVATED
        h.activate()
        assert h.state is KernelState.ACTIVE
        assert h.call(K.Num(value=1, tag=1)).value == 1
        h.deactivate()
        h.terminate()
        assert h.state is KernelState.TERMINATED

        launched = runtime.launch(K.echo, name="launched-only", auto_activate=False)
        launched.terminate()
        assert launched.state is KernelState.TERMINATED

        active = runtime.launch(K.echo, name="active")
        active.terminate()
        assert active.state is KernelState.TERMINATED

    @pytest.mark.parametrize("setup, op", [
        ("launched", "deactivate"),
        ("active", "activate"),
        ("deactivated", "deactivate"),
        ("terminated", "activate"),
        ("terminated", "deactivate"),
    ])
    def test_invalid_transition_raises(self, runtime, setup, op):
        h = runtime.launch(K.echo, auto_activate=setup != "launched")
        if setup == "deactivated":
            h.deactivate()
        elif setup == "terminated":
            h.terminate()
        before = h.state
        with pytest.raises(LifecycleError, match=before.value):
            getattr(h, op)()
        assert h.state is before

    def test_drain_needs_an_active_kernel(self, runtime):
        h = runtime.launch(K.echo)
        h.deactivate()
        with pytest.raises(LifecycleError):
            h.terminate(drain=True)
        assert h.state is KernelState.DEACTIVATED
        h.terminate()
        assert h.state is KernelState.TERMINATED

    def test_deactivate_holds_messages_and_activate_resumes(self, runtime):
        h = runtime.launch(K.echo)
        h.call(K.Num(value=0, tag=0))
        h.deactivate()
        for i in range(10):
            h.send(K.Num(value=i, tag=i))
        time.sleep(0.05)  # give a misbehaving kernel the chance to process them
        st = h.status()
        assert st.processed == 1
        assert st.input_depth == 10
        assert h.try_receive() is None
        h.activate()
        got = receive_n(h, 10)
        assert got["payload"]["tag"].tolist() == list(range(10))
        assert h.status().processed == 11

    def test_launched_kernel_holds_messages_until_activated(self, runtime):
        h = runtime.launch(K.echo, auto_activate=False)
        h.send_many(_nums(5))
        time.sleep(0.05)
        assert h.status().processed == 0
        h.activate()
        assert receive_n(h, 5)["payload"]["tag"].tolist() == list(range(5))

    def test_call_waits_while_deactivated(self, runtime):
        h = runtime.launch(K.echo)
        h.deactivate()
        t = _started(lambda: h.call(K.Num(value=21, tag=7), timeout=PATIENCE))
        wait_until(lambda: h.status().input_depth == 1, "the call's message to be queued")
        assert t.is_alive()
        h.activate()
        reply = t.outcome()
        assert (reply.value, reply.doubled, reply.tag) == (21, 42, 7)

    @pytest.mark.parametrize("mode", ["persistent", "event_driven"])
    def test_modes_have_the_same_semantics(self, runtime, mode):
        if mode not in self.modes:
            pytest.skip(f"{type(self).__name__} does not run {mode} kernels")
        h = runtime.launch(K.accumulate, mode=mode)
        assert h.status().mode in ("persistent", "event_driven")
        assert [h.call(K.Num(value=v, tag=v)).total for v in (1, 2, 3)] == [1001, 1003, 1006]
        h.send_many(_nums(100))
        assert receive_n(h, 100)["payload"]["count"].tolist() == list(range(4, 104))

    def test_names_are_unique_while_running(self, runtime):
        a = runtime.launch(K.echo)
        with pytest.raises(LifecycleError, match="echo"):
            runtime.launch(K.echo)
        b = runtime.launch(K.echo, name="echo2")
        assert runtime.get("echo2") is b
        assert b.number != a.number
        assert {k.name for k in runtime.kernels()} == {"echo", "echo2"}
        a.terminate()
        again = runtime.launch(K.echo)
        assert again.call(K.Num(value=2, tag=2)).doubled == 4

    def test_launch_rejects_what_is_not_a_kernel(self, runtime):
        with pytest.raises(KernelDefinitionError):
            runtime.launch(K.echo.func)


# -- send / receive ---------------------------------------------------------------------


class AbstractMessagingTests(BackendFixtures):
    def test_send_then_receive(self, runtime):
        h = runtime.launch(K.echo)
        mid = h.send(K.Num(value=-4, tag=9))
        assert isinstance(mid, int) and mid > 0
        reply = h.receive(timeout=PATIENCE)
        assert isinstance(reply, K.Echoed)
        assert (reply.value, reply.doubled, reply.tag) == (-4, -8, 9)
        assert reply.header.flags & MessageFlags.REPLY
        assert reply.header.correlation_id == 0
        assert reply.header.source_kernel == h.number
        assert reply.header.type_id == K.Echoed.type_id

    def test_message_ids_are_unique(self, runtime):
        h = runtime.launch(K.echo)
        ids = [h.send(K.Num(value=i, tag=i)) for i in range(50)]
        assert len(set(ids)) == 50
        assert ids == sorted(ids)
        receive_n(h, 50)

    def test_try_receive_never_blocks(self, runtime):
        h = runtime.launch(K.echo)
        assert h.try_receive() is None
        h.send(K.Num(value=5, tag=1))
        wait_until(lambda: h.status().output_depth >= 1, "the reply to be published")
        reply = h.try_receive()
        assert reply is not None and reply.tag == 1
        assert h.try_receive() is None

    def test_receive_times_out(self, runtime):
        h = runtime.launch(K.echo)
        with pytest.raises(RingTimeoutError):
            h.receive(timeout=0.02)
        with pytest.raises(TimeoutError):  # RingTimeoutError is a TimeoutError too
            h.receive(timeout=0.0)
        assert len(h.receive_many(timeout=0.01)) == 0

    def test_receive_many_respects_max_count(self, runtime):
        h = runtime.launch(K.echo)
        h.send_many(_nums(10))
        wait_processed(h, 10)
        first = h.receive_many(4, timeout=PATIENCE, min_count=4)
        rest = receive_n(h, 6)
        assert first["payload"]["tag"].tolist() == [0, 1, 2, 3]
        assert rest["payload"]["tag"].tolist() == [4, 5, 6, 7, 8, 9]

    def test_send_many_takes_a_list_of_messages(self, runtime):
        h = runtime.launch(K.echo)
        assert h.send_many([K.Num(value=i, tag=i) for i in range(7)]) == 7
        assert h.send_many([]) == 0
        assert receive_n(h, 7)["payload"]["doubled"].tolist() == [2 * i for i in range(7)]

    def test_bulk_send_many_receive_many(self, runtime):
        n = self.bulk_messages
        h = runtime.launch(K.echo, input_capacity=n, output_capacity=n)
        payload = _nums(n, offset=n // 2)
        assert h.send_many(payload) == n
        out = receive_n(h, n)
        assert len(out) == n
        np.testing.assert_array_equal(out["payload"]["tag"], payload["tag"])
        np.testing.assert_array_equal(out["payload"]["value"], payload["value"])
        np.testing.assert_array_equal(out["payload"]["doubled"], payload["value"] * 2)
        hdr = out["header"]
        assert (hdr["flags"] & MessageFlags.ERROR == 0).all()
        assert (hdr["flags"] & MessageFlags.REPLY != 0).all()
        assert (hdr["source_kernel"] == h.number).all()
        assert len(np.unique(hdr["message_id"])) == n
        assert h.status().processed == n

    def test_bulk_through_small_queues_with_backpressure(self, runtime):
        n = self.bulk_messages
        h = runtime.launch(K.echo, input_capacity=1024, output_capacity=1024, send_timeout=PATIENCE)
        payload = _nums(n)
        receiver = _started(lambda: receive_n(h, n), "receiver")
        for start in range(0, n, 10_000):
            assert h.send_many(payload[start:start + 10_000]) == min(10_000, n - start)
        out = receiver.outcome()
        np.testing.assert_array_equal(out["payload"]["tag"], payload["tag"])
        np.testing.assert_array_equal(out["payload"]["doubled"], payload["value"] * 2)
        assert h.metrics().dropped == 0

    def test_fifo_order_within_a_kernel(self, runtime):
        h = runtime.launch(K.echo, input_capacity=8192, output_capacity=8192)
        tag = 0
        for round_ in range(20):
            for _ in range(25):
                h.send(K.Num(value=tag, tag=tag))
                tag += 1
            k = 10 * (round_ + 1)
            h.send_many(_nums(k, start=tag))
            tag += k
        out = receive_n(h, tag)
        assert out["payload"]["tag"].tolist() == list(range(tag))


# -- call -----------------------------------------------------------------------------


class AbstractCallTests(BackendFixtures):
    def test_call_returns_the_reply(self, runtime):
        h = runtime.launch(K.echo)
        reply = h.call(K.Num(value=12, tag=3))
        assert (reply.value, reply.doubled, reply.tag) == (12, 24, 3)
        assert reply.header.correlation_id != 0
        assert reply.header.flags & MessageFlags.REPLY
        assert not reply.header.flags & MessageFlags.ERROR

    def test_repeated_calls(self, runtime):
        h = runtime.launch(K.echo)
        for i in range(300):
            assert h.call(K.Num(value=i - 150, tag=i)).doubled == 2 * (i - 150)

    def test_the_first_reply_answers_a_call_and_a_duplicate_is_dropped(self, runtime):
        # tee both forwards the request to echo (which answers the call too) and replies:
        # each call gets exactly one reply, and the second is counted, not delivered.
        runtime.launch(K.echo)
        tee = runtime.launch(K.tee)
        for i in range(20):
            reply = tee.call(K.Num(value=i, tag=i), timeout=PATIENCE)
            assert (reply.value, reply.doubled, reply.tag) == (i, 2 * i, i)

        def all_counted() -> bool:
            extra = tee.try_receive()  # routes what the output queue holds
            assert extra is None, f"a duplicate reply reached receive(): {extra}"
            return tee.metrics().late_replies == 20

        wait_until(all_counted, "20 duplicate replies counted")

    def test_call_many_in_request_order(self, runtime):
        h = runtime.launch(K.echo)
        req = _nums(1000, offset=500)
        out = h.call_many(req)
        assert out.dtype == K.Echoed.dtype
        np.testing.assert_array_equal(out["tag"], req["tag"])
        np.testing.assert_array_equal(out["doubled"], req["value"] * 2)
        assert len(h.call_many(K.Num.array(0))) == 0

    def test_call_many_larger_than_both_queues(self, runtime):
        h = runtime.launch(K.echo, input_capacity=64, output_capacity=32)
        req = _nums(3000)
        out = h.call_many(req, timeout=PATIENCE)
        np.testing.assert_array_equal(out["tag"], req["tag"])
        np.testing.assert_array_equal(out["value"], req["value"])

    def test_concurrent_callers_each_get_their_own_reply(self, runtime):
        h = runtime.launch(K.echo)

        def caller(t: int) -> list[tuple[int, int]]:
            wrong = []
            for i in range(150):
                tag = t * 1000 + i
                r = h.call(K.Num(value=tag, tag=tag), timeout=PATIENCE)
                if r.tag != tag or r.doubled != 2 * tag:
                    wrong.append((tag, int(r.tag)))
            return wrong

        threads = [_started(lambda t=t: caller(t), f"caller-{t}") for t in range(4)]
        assert [t.outcome() for t in threads] == [[], [], [], []]
        assert h.status().processed == 600

    def test_concurrent_call_many_and_calls(self, runtime):
        h = runtime.launch(K.echo, input_capacity=256, output_capacity=256)
        bulk = _nums(5000, start=100_000)
        many = _started(lambda: h.call_many(bulk, timeout=PATIENCE), "call_many")
        singles = _started(lambda: [int(h.call(K.Num(value=i, tag=i)).tag) for i in range(200)], "calls")
        assert singles.outcome() == list(range(200))
        np.testing.assert_array_equal(many.outcome()["tag"], bulk["tag"])

    def test_calls_and_sends_do_not_steal_each_others_replies(self, runtime):
        h = runtime.launch(K.echo)
        for i in range(20):
            h.send(K.Num(value=i, tag=i))
            assert h.call(K.Num(value=1000 + i, tag=1000 + i)).tag == 1000 + i
        assert receive_n(h, 20)["payload"]["tag"].tolist() == list(range(20))
        assert h.try_receive() is None

    def test_call_times_out_and_the_late_reply_is_not_received(self, runtime):
        h = runtime.launch(K.echo)
        h.deactivate()
        with pytest.raises(RingTimeoutError):
            h.call(K.Num(value=1, tag=1), timeout=0.02)
        h.activate()
        wait_processed(h, 1)
        assert h.try_receive() is None
        assert h.call(K.Num(value=2, tag=2)).tag == 2

    def test_call_needs_a_reply_type(self, runtime):
        h = runtime.launch(K.sink)
        with pytest.raises(MessageTypeError, match="reply"):
            h.call(K.Num(value=1, tag=1))
        with pytest.raises(MessageTypeError):
            h.call_many(_nums(3))


# -- state ----------------------------------------------------------------------------


class AbstractStateTests(BackendFixtures):
    def test_state_is_kept_across_messages(self, runtime):
        h = runtime.launch(K.accumulate)
        assert h.read_state() == {"count": 0, "total": 1000}
        totals = [int(h.call(K.Num(value=i, tag=i)).total) for i in range(1, 51)]
        assert totals == [1000 + i * (i + 1) // 2 for i in range(1, 51)]
        h.send_many(_nums(100))
        out = receive_n(h, 100)
        assert out["payload"]["count"].tolist() == list(range(51, 151))
        assert h.read_state() == {"count": 150, "total": 1000 + 1275 + 4950}

    def test_fixed_array_state(self, runtime):
        h = runtime.launch(K.histogram)
        out = h.call_many(_nums(100))
        assert out["count"].tolist() == list(range(1, 101))
        st = h.read_state()
        np.testing.assert_array_equal(st["bins"], np.bincount(np.arange(100) % 8, minlength=8))
        assert st["seen"] == 100

    def test_state_belongs_to_one_kernel_instance(self, runtime):
        a = runtime.launch(K.accumulate, name="a")
        b = runtime.launch(K.accumulate, name="b")
        a.call_many(_nums(10))
        b.call(K.Num(value=-5, tag=0))
        assert a.read_state() == {"count": 10, "total": 1000 + 45}
        assert b.read_state() == {"count": 1, "total": 995}

    def test_integer_state_wraps_like_fixed_width(self, runtime):
        h = runtime.launch(K.accumulate)
        h.call(K.Num(value=2**31 - 1, tag=0))
        assert h.read_state()["total"] == 1000 + 2**31 - 1 - 2**32

    def test_stateless_kernel_has_empty_state(self, runtime):
        assert runtime.launch(K.echo).read_state() == {}


# -- kernel to kernel -------------------------------------------------------------------


class AbstractK2KTests(BackendFixtures):
    def test_ping_pong_ends_in_a_reply_to_the_call(self, runtime_factory):
        rt = runtime_factory(max_hops=64)
        ping = rt.launch(K.bounce, name="ping")
        pong = rt.launch(K.bounce, name="pong")
        rounds = 40
        for _game in range(3):
            reply = ping.call(K.Ball(remaining=rounds, hits=0, peer=pong.number), timeout=PATIENCE)
            assert reply.peer != K.NO_PEER, "a send between the kernels failed"
            assert (reply.remaining, reply.hits) == (0, rounds)
            assert reply.peer == ping.number  # an even number of hops ends at ping
            assert reply.header.source_kernel == ping.number
        # One odd game ends at pong, whose reply still answers the call made to ping.
        reply = ping.call(K.Ball(remaining=7, hits=0, peer=pong.number), timeout=PATIENCE)
        assert (reply.hits, reply.peer) == (7, pong.number)
        wait_until(lambda: ping.status().processed + pong.status().processed == 3 * (rounds + 1) + 8,
                   "every bounce to be counted")
        assert ping.status().errors == pong.status().errors == 0

    def test_max_hops_exceeded(self, runtime_factory):
        rt = runtime_factory(max_hops=5)
        h = rt.launch(K.relay)
        done = h.call(K.Hop(count=0), timeout=PATIENCE)
        assert (done.count, K.DELIVERY_CODES[int(done.code)]) == (5, ringcore.DeliveryResult.MAX_HOPS_EXCEEDED)

    @pytest.mark.parametrize("bad", [-1, 256])
    def test_max_hops_must_fit_the_header(self, bad):
        with pytest.raises(ValueError, match="max_hops"):
            self.make_runtime(max_hops=bad).shutdown()

    def test_not_found(self, runtime):
        h = runtime.launch(K.router)
        assert K.DELIVERY_CODES[int(h.call(K.Route(target=9999, value=1)).code)] is \
            ringcore.DeliveryResult.NOT_FOUND

    def test_wrong_type(self, runtime):
        h = runtime.launch(K.router)
        other = runtime.launch(K.bounce)  # takes Ball, not Num
        assert K.DELIVERY_CODES[int(h.call(K.Route(target=other.number, value=1)).code)] is \
            ringcore.DeliveryResult.WRONG_TYPE
        assert other.status().processed == 0

    def test_delivered_to_another_kernel(self, runtime):
        h = runtime.launch(K.router)
        sink = runtime.launch(K.sink)
        h.send(K.Route(target=sink.number, value=7))
        assert K.DELIVERY_CODES[int(h.receive(timeout=PATIENCE).code)] is ringcore.DeliveryResult.DELIVERED
        wait_processed(sink, 1)
        assert sink.read_state() == {"count": 1, "total": 7}

    def test_queue_full(self, runtime):
        sink = runtime.launch(K.sink, input_capacity=4)
        sink.deactivate()
        fl = runtime.launch(K.flood)
        fl.send(K.Flood(target=sink.number, count=10))
        res = fl.receive(timeout=PATIENCE)
        assert (res.delivered, res.full, res.other) == (4, 6, 0)
        assert fl.metrics().dropped == 6
        sink.activate()
        wait_processed(sink, 4)
        assert sink.read_state() == {"count": 4, "total": 0 + 1 + 2 + 3}

    def test_send_to_a_terminated_kernel_is_not_delivered(self, runtime):
        h = runtime.launch(K.router)
        gone = runtime.launch(K.sink)
        gone.terminate()
        code = K.DELIVERY_CODES[int(h.call(K.Route(target=gone.number, value=1)).code)]
        assert code in (ringcore.DeliveryResult.NOT_FOUND, ringcore.DeliveryResult.TERMINATED)


# -- pub/sub ----------------------------------------------------------------------------


class AbstractPubSubTests(BackendFixtures):
    def test_wildcards_route_to_subscribed_kernels(self, runtime):
        every = runtime.launch(K.thermometer, name="every")
        temps = runtime.launch(K.thermometer, name="temps")
        room1 = runtime.launch(K.thermometer, name="room1")
        runtime.subscribe("sensors.#", every)
        runtime.subscribe("sensors.*.temp", temps)
        runtime.subscribe("sensors.room1.temp", "room1")
        sent = {
            "sensors.room1.temp": (21.5, 3),
            "sensors.room2.temp": (30.0, 2),
            "sensors.room1.humidity": (55.0, 1),
            "sensors": (-1.0, 1),               # '#' matches zero words too
            "sensors.room1.temp.max": (99.0, 1),  # '*' is exactly one word
            "other.room1.temp": (80.0, 0),
        }
        for topic, (c, n) in sent.items():
            assert runtime.publish(topic, K.Reading(celsius=c, tag=0)) == n, topic
        wait_processed(every, 5)
        wait_processed(temps, 2)
        wait_processed(room1, 1)
        assert every.read_state()["count"] == 5
        assert every.read_state()["hottest"] == pytest.approx(99.0)
        assert temps.read_state()["count"] == 2
        assert temps.read_state()["hottest"] == pytest.approx(30.0)
        assert room1.read_state()["count"] == 1
        assert room1.read_state()["hottest"] == pytest.approx(21.5)

    def test_host_callables_receive_published_messages(self, runtime):
        got: list[tuple[str, Any]] = []
        sub = runtime.subscribe("alerts.*", lambda topic, msg: got.append((topic, msg)))
        assert runtime.publish("alerts.fire", K.Num(value=1, tag=1)) == 1
        assert runtime.publish("alerts.fire.big", K.Num(value=2, tag=2)) == 0
        assert [(t, m.value) for t, m in got] == [("alerts.fire", 1)]
        assert runtime.unsubscribe(sub)
        assert runtime.publish("alerts.fire", K.Num(value=3, tag=3)) == 0
        assert len(got) == 1

    def test_kernels_of_another_input_type_are_skipped(self, runtime):
        h = runtime.launch(K.echo)
        runtime.subscribe("x.#", h)
        assert runtime.publish("x.y", K.Reading(celsius=1.0, tag=0)) == 0
        assert runtime.publish("x.y", K.Num(value=4, tag=4)) == 1
        assert h.receive(timeout=PATIENCE).doubled == 8

    def test_terminated_kernels_are_unsubscribed(self, runtime):
        h = runtime.launch(K.sink)
        runtime.subscribe("a.b", h)
        h.terminate()
        assert runtime.publish("a.b", K.Num(value=1, tag=1)) == 0


# -- termination --------------------------------------------------------------------------


class AbstractTerminationTests(BackendFixtures):
    def test_terminate_under_load(self, runtime):
        h = runtime.launch(K.echo)
        stop = threading.Event()

        def until_terminated(send_some: Callable[[int], int]) -> Callable[[], int]:
            """Send with ``send_some(n) -> sent`` until the kernel refuses; how many went in."""
            def run() -> int:
                n = 0
                try:
                    while not stop.is_set():
                        n += send_some(n)
                except KernelTerminatedError:
                    return n
                return -1  # stopped without ever being refused
            return run

        def send_one(n: int) -> int:
            h.send(K.Num(value=n, tag=n), timeout=PATIENCE)
            return 1

        def call_one(n: int) -> int:
            h.call(K.Num(value=n, tag=n), timeout=PATIENCE)
            return 1

        sender, caller = until_terminated(send_one), until_terminated(call_one)
        bulk = until_terminated(lambda n: h.send_many(_nums(64), timeout=PATIENCE))

        threads = [_started(sender, "sender"), _started(caller, "caller"), _started(bulk, "bulk")]
        wait_processed(h, 300)
        h.terminate(timeout=PATIENCE)
        results = [t.outcome() for t in threads]
        stop.set()
        assert all(r >= 0 for r in results), "every thread must end with KernelTerminatedError"
        st = h.status()
        assert st.state == "terminated"
        assert st.unprocessed == h.metrics().enqueued - st.processed
        with pytest.raises(KernelTerminatedError):
            h.send(K.Num(value=0, tag=0))

    def test_blocked_caller_gets_kernel_terminated(self, runtime):
        h = runtime.launch(K.echo)
        h.deactivate()
        t = _started(lambda: h.call(K.Num(value=1, tag=1), timeout=PATIENCE))
        wait_until(lambda: h.status().input_depth == 1, "the call to be queued")
        h.terminate()
        with pytest.raises(KernelTerminatedError):
            t.outcome()
        assert h.status().unprocessed == 1

    def test_blocked_sender_gets_kernel_terminated(self, runtime):
        h = runtime.launch(K.echo, input_capacity=2)
        h.deactivate()
        h.send_many(_nums(2))
        t = _started(lambda: h.send(K.Num(value=3, tag=3), timeout=PATIENCE))
        time.sleep(0.02)
        assert t.is_alive()
        h.terminate()
        with pytest.raises(KernelTerminatedError):
            t.outcome()
        assert h.status().unprocessed == 2

    def test_blocked_receiver_gets_kernel_terminated(self, runtime):
        h = runtime.launch(K.echo)
        t = _started(lambda: h.receive(timeout=PATIENCE))
        time.sleep(0.02)
        h.terminate()
        with pytest.raises(KernelTerminatedError):
            t.outcome()

    def test_terminate_with_drain_processes_everything_queued(self, runtime):
        h = runtime.launch(K.echo, input_capacity=4096, output_capacity=4096)
        h.send_many(_nums(3000))
        h.terminate(drain=True, timeout=PATIENCE)
        st = h.status()
        assert (st.state, st.processed, st.unprocessed) == ("terminated", 3000, 0)
        # Replies published before termination can still be collected.
        out = h.receive_many(None, timeout=0)
        assert out["payload"]["tag"].tolist() == list(range(3000))

    def test_terminate_without_drain_counts_what_was_left(self, runtime):
        h = runtime.launch(K.echo)
        h.call(K.Num(value=0, tag=0))
        h.deactivate()
        h.send_many(_nums(10))
        h.terminate()
        st = h.status()
        assert (st.processed, st.unprocessed) == (1, 10)

    def test_terminate_twice(self, runtime):
        h = runtime.launch(K.echo)
        h.terminate()
        h.terminate()
        assert h.state is KernelState.TERMINATED

    def test_nothing_works_after_terminate(self, runtime):
        h = runtime.launch(K.echo)
        h.terminate()
        for op in (lambda: h.send(K.Num(value=1, tag=1)), lambda: h.call(K.Num(value=1, tag=1)),
                   lambda: h.send_many(_nums(3)), lambda: h.call_many(_nums(3))):
            with pytest.raises(KernelTerminatedError):
                op()
        with pytest.raises(LifecycleError):
            h.activate()
        with pytest.raises(KernelTerminatedError):
            h.receive(timeout=1.0)

    def test_shutdown_terminates_every_kernel(self, runtime_factory):
        rt = runtime_factory()
        active = rt.launch(K.echo, name="active")
        held = rt.launch(K.echo, name="held")
        held.deactivate()
        launched = rt.launch(K.accumulate, auto_activate=False)
        caller = _started(lambda: held.call(K.Num(value=1, tag=1), timeout=PATIENCE))
        wait_until(lambda: held.status().input_depth == 1, "the call to be queued")
        rt.shutdown(timeout=PATIENCE)
        for h in (active, held, launched):
            assert h.state is KernelState.TERMINATED, h.name
        assert rt.kernels() == []
        with pytest.raises(KernelTerminatedError):
            caller.outcome()
        rt.shutdown()  # twice is fine
        with pytest.raises(BackendError):
            rt.launch(K.echo)

    def test_context_manager_shuts_down(self):
        with self.make_runtime() as rt:
            h = rt.launch(K.echo)
            assert h.call(K.Num(value=1, tag=1)).tag == 1
        assert h.state is KernelState.TERMINATED


# -- bad input ----------------------------------------------------------------------------


class AbstractBadInputTests(BackendFixtures):
    def test_message_of_the_wrong_type(self, runtime):
        h = runtime.launch(K.echo)
        ball = K.Ball(remaining=1, hits=0, peer=0)
        with pytest.raises(MessageTypeError, match="Num"):
            h.send(ball)
        with pytest.raises(TypeError):  # MessageTypeError is a TypeError too
            h.call(ball)
        with pytest.raises(MessageTypeError):
            h.send_many([K.Num(value=1, tag=1), ball])
        assert h.metrics().enqueued == 0
        assert h.call(K.Num(value=1, tag=1)).tag == 1

    def test_bulk_array_of_the_wrong_dtype(self, runtime):
        h = runtime.launch(K.echo)
        with pytest.raises(MessageTypeError, match="dtype"):
            h.send_many(K.Ball.array(5))
        with pytest.raises(MessageTypeError):
            h.call_many(np.zeros(5, dtype=np.int32))
        assert h.metrics().enqueued == 0

    def test_queue_full_after_the_timeout_loses_nothing(self, runtime):
        h = runtime.launch(K.echo, input_capacity=4)
        h.deactivate()
        for i in range(4):
            h.send(K.Num(value=i, tag=i))
        with pytest.raises(QueueFull):
            h.send(K.Num(value=4, tag=4), timeout=0.02)
        with pytest.raises(QueueFull) as info:
            h.send_many(_nums(3, start=5), timeout=0.02)
        assert info.value.accepted == 0
        with pytest.raises(QueueFull):
            h.call(K.Num(value=9, tag=9), timeout=0.02)
        h.activate()
        assert receive_n(h, 4)["payload"]["tag"].tolist() == [0, 1, 2, 3]
        assert h.try_receive() is None
        assert h.metrics().dropped == 0

    def test_send_many_reports_how_many_went_in(self, runtime):
        h = runtime.launch(K.echo, input_capacity=8)
        h.deactivate()
        with pytest.raises(QueueFull) as info:
            h.send_many(_nums(12), timeout=0.02)
        assert info.value.accepted == 8
        h.activate()
        assert receive_n(h, 8)["payload"]["tag"].tolist() == list(range(8))
        assert h.try_receive() is None

    def test_drop_policy_counts_drops(self, runtime):
        self.need("supports_drop_policy")
        h = runtime.launch(K.echo, input_capacity=4, overflow="drop")
        h.deactivate()
        ids = [h.send(K.Num(value=i, tag=i)) for i in range(10)]
        assert all(isinstance(i, int) for i in ids[:4]) and ids[4:] == [None] * 6
        assert h.send_many(_nums(5)) == 0
        with pytest.raises(QueueFull):
            h.call(K.Num(value=1, tag=1), timeout=1.0)
        with pytest.raises(QueueFull):
            h.call_many(_nums(3), timeout=1.0)
        m = h.metrics()
        assert m.dropped == 6 + 5 + 1 + 3
        assert any("dropped" in a for a in m.alerts)
        h.activate()
        assert receive_n(h, 4)["payload"]["tag"].tolist() == [0, 1, 2, 3]

    def test_handler_error_reaches_the_caller_and_the_kernel_keeps_serving(self, runtime):
        self.need("supports_handler_errors")
        h = runtime.launch(K.fragile)
        with pytest.raises(KernelError, match="ValueError.*negative value") as info:
            h.call(K.Num(value=-5, tag=1))
        assert info.value.code == ErrorCode.HANDLER_EXCEPTION
        assert info.value.kernel == "fragile"
        st = h.status()
        assert (st.errors, st.last_error) == (1, "HANDLER_EXCEPTION")
        assert (h.control.error_count, h.control.last_error) == (1, ErrorCode.HANDLER_EXCEPTION)
        assert h.call(K.Num(value=3, tag=2)).doubled == 6
        h.send(K.Num(value=-1, tag=3))
        with pytest.raises(KernelError, match="negative value"):
            h.receive(timeout=PATIENCE)
        req = _nums(6, offset=2)  # values -2 .. 3
        with pytest.raises(KernelError) as many:
            h.call_many(req)
        assert many.value.failed.tolist() == [0, 1]
        assert many.value.replies["doubled"][2:].tolist() == [0, 2, 4, 6]
        assert h.status().errors == 4
        assert h.state is KernelState.ACTIVE

    def test_call_without_a_reply_is_a_no_reply_error(self, runtime):
        h = runtime.launch(K.evens_only)
        with pytest.raises(KernelError, match="reply") as info:
            h.call(K.Num(value=3, tag=1))
        assert info.value.code == ErrorCode.NO_REPLY
        assert h.call(K.Num(value=4, tag=2)).doubled == 8
        h.send(K.Num(value=5, tag=3))  # send expects no reply: nothing comes back, no error
        h.send(K.Num(value=6, tag=4))
        assert h.receive(timeout=PATIENCE).tag == 4
        assert h.status().errors == 1
        assert h.status().last_error == "NO_REPLY"


# -- metrics --------------------------------------------------------------------------------


class AbstractMetricsTests(BackendFixtures):
    def test_processed_and_latency(self, runtime):
        h = runtime.launch(K.echo)
        for i in range(50):
            h.call(K.Num(value=i, tag=i))
        h.send_many(_nums(100))
        receive_n(h, 100)
        m = h.metrics()
        assert (m.kernel, m.state, m.processed, m.enqueued) == ("echo", "active", 150, 150)
        assert m.latency_count == 150
        assert 0 < m.latency_max_us
        assert m.latency_p50_us <= m.latency_p99_us <= m.latency_max_us
        assert m.errors == 0 and m.dropped == 0
        assert m.alerts == ()
        assert m.as_dict()["processed"] == 150

    def test_queue_depths(self, runtime):
        h = runtime.launch(K.echo)
        h.deactivate()
        h.send_many(_nums(10))
        m = h.metrics()
        assert (m.input_depth, m.input_max_depth, m.processed) == (10, 10, 0)
        h.activate()
        wait_processed(h, 10)
        m = h.metrics()
        assert (m.input_depth, m.output_depth) == (0, 10)
        assert m.output_max_depth >= 10
        receive_n(h, 10)
        assert h.metrics().output_depth == 0

    def test_status(self, runtime):
        h = runtime.launch(K.echo)
        h.call(K.Num(value=1, tag=1))
        st = h.status()
        assert (st.kernel, st.number, st.processed, st.in_flight, st.errors, st.last_error) == \
            ("echo", h.number, 1, 0, 0, "NONE")


# -- hybrid logical clocks ---------------------------------------------------------------------


class AbstractHlcTests(BackendFixtures):
    def test_reply_timestamps_increase_and_follow_the_request(self, runtime):
        h = runtime.launch(K.echo)
        last = (0, 0)
        for i in range(100):
            before = runtime.clock.tick()
            reply = h.call(K.Num(value=i, tag=i))
            ts = _ts(reply.header)
            assert ts > (before.physical, before.logical)
            assert ts > last
            assert reply.header.hlc_node == h.number
            last = ts

    def test_bulk_reply_timestamps_increase(self, runtime):
        h = runtime.launch(K.echo, input_capacity=4096, output_capacity=4096)
        h.send_many(_nums(2000))
        hdr = receive_n(h, 2000)["header"]
        ts = hdr["hlc_physical"].astype(object) * 2**32 + hdr["hlc_logical"].astype(object)
        assert all(a < b for a, b in zip(ts[:-1], ts[1:]))


# -- asyncio ---------------------------------------------------------------------------------


class AbstractAsyncTests(BackendFixtures):
    def test_acall(self, runtime):
        h = runtime.launch(K.echo)
        reply = asyncio.run(h.acall(K.Num(value=8, tag=8)))
        assert reply.doubled == 16

    def test_gathered_acalls_get_their_own_replies(self, runtime):
        h = runtime.launch(K.echo)

        async def main() -> list[int]:
            replies = await asyncio.gather(*(h.acall(K.Num(value=i, tag=i)) for i in range(20)))
            return [int(r.tag) for r in replies]

        assert asyncio.run(main()) == list(range(20))

    def test_asend_and_areceive(self, runtime):
        h = runtime.launch(K.echo)

        async def main() -> tuple[int, int, np.ndarray]:
            await h.asend(K.Num(value=1, tag=1))
            first = await h.areceive(timeout=PATIENCE)
            n = await h.asend_many(_nums(10, start=2))
            got = await h.areceive_many(10, timeout=PATIENCE, min_count=10)
            return int(first.tag), n, got

        tag, n, got = asyncio.run(main())
        assert (tag, n) == (1, 10)
        assert got["payload"]["tag"].tolist() == list(range(2, 12))

    def test_acall_many(self, runtime):
        h = runtime.launch(K.echo)
        out = asyncio.run(h.acall_many(_nums(300)))
        assert out["tag"].tolist() == list(range(300))

    def test_areceive_times_out(self, runtime):
        h = runtime.launch(K.echo)
        with pytest.raises(RingTimeoutError):
            asyncio.run(h.areceive(timeout=0.02))


class AbstractBackendTests(
    AbstractLifecycleTests,
    AbstractMessagingTests,
    AbstractCallTests,
    AbstractStateTests,
    AbstractK2KTests,
    AbstractPubSubTests,
    AbstractTerminationTests,
    AbstractBadInputTests,
    AbstractMetricsTests,
    AbstractHlcTests,
    AbstractAsyncTests,
):
    """Every conformance test for a ring-kernel backend."""
