"""Persistent mode on OpenCL: one launch that stays resident and polls its queue in shared memory (PoCL here)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from _slow import slow
from ringcore_opencl import OpenclRuntime
from ringcore_opencl.persistent import OpenclPersistent

import ringcore
from ringcore.errors import KernelError
from ringcore.lang.host import PersistentLoop
from ringcore.testing import kernels as K
from ringcore.testing.backend import wait_until

pytestmark = pytest.mark.skipif(not OpenclRuntime().persistent_slots, reason="this device keeps no kernel resident")


def _resident(h: ringcore.KernelHandle) -> OpenclPersistent:
    assert h.status().mode == "persistent"
    assert isinstance(h.loop, PersistentLoop)
    dev = h.loop.executor
    assert isinstance(dev, OpenclPersistent) and not dev.exited()
    return dev


def test_a_resident_kernel_serves_calls_and_bulk_without_loss_or_reordering():
    with OpenclRuntime() as rt:
        h = rt.launch(K.accumulate)
        dev = _resident(h)
        assert [h.call(K.Num(value=v, tag=v)).total for v in (1, 2, 3)] == [1001, 1003, 1006]
        n = 200_000
        msgs = K.Num.array(n)
        msgs["value"] = 1
        msgs["tag"] = np.arange(n) % 1000
        got = h.call_many(msgs, timeout=120)  # more than the completion queue holds: it wraps many times
        assert got["count"].tolist() == list(range(4, n + 4))  # every message once, in order
        assert got["tag"].tolist() == msgs["tag"].tolist()
        assert h.read_state() == {"count": n + 3, "total": 1006 + n}  # read live from the device's memory
        assert h.status().processed == n + 3
        h.terminate()
        assert dev.exited()  # the launch completed: the loop acknowledged
        assert h.control.has_terminated == 1
        assert h.read_state() == {"count": n + 3, "total": 1006 + n}  # kept after termination


def test_a_parallel_kernel_runs_resident_in_a_work_group():
    with OpenclRuntime() as rt:
        h = rt.launch(K.echo, block_size=32)
        dev = _resident(h)
        assert dev.local_size == 32
        msgs = K.Num.array(5000)
        msgs["value"] = np.arange(5000) - 2500
        got = h.call_many(msgs, timeout=60)
        assert got["doubled"].tolist() == (2 * msgs["value"]).tolist()


def test_handler_errors_and_wrong_types_are_reported_as_on_every_backend():
    with OpenclRuntime() as rt:
        h = rt.launch(K.fragile)
        _resident(h)
        with pytest.raises(KernelError) as err:
            h.call(K.Num(value=-1, tag=0))
        assert "kernels.py" in err.value.detail  # the failing Python line
        assert h.call(K.Num(value=5, tag=0)).doubled == 10  # the loop goes on
        assert h.status().errors == 1
        # A slot of another type id (as a buggy producer might push): not handled by the device, reported.
        rec = np.zeros(1, h.in_spec.slot_dtype)
        rec["header"]["type_id"] = h.in_spec.type_id + 1
        with h.input_queue.producer_lock:
            assert h.input_queue.push_many(rec) == 1
        wait_until(lambda: h.status().errors == 2, "the wrong type to be reported")
        assert h.status().last_error == "WRONG_MESSAGE_TYPE"
        assert h.call(K.Num(value=6, tag=0)).doubled == 12


def test_deactivate_holds_messages_on_the_device_side_too():
    with OpenclRuntime() as rt:
        h = rt.launch(K.accumulate)
        _resident(h)
        h.deactivate()
        h.send(K.Num(value=1, tag=1))
        time.sleep(0.05)
        assert h.status().input_depth == 1 and h.status().processed == 0
        h.activate()
        assert h.call(K.Num(value=2, tag=2)).total == 1003


def test_terminate_with_drain_processes_everything_queued():
    with OpenclRuntime() as rt:
        h = rt.launch(slow, max_batch=8)
        _resident(h)
        msgs = K.Num.array(200)
        msgs["tag"] = 1000
        h.send_many(msgs)
        h.terminate(timeout=60, drain=True)
        assert int(h.read_state()["done"]) == 200 and h.status().unprocessed == 0


def test_slots_are_counted_per_device_and_freed_at_termination(caplog):
    with OpenclRuntime(persistent_slots=1) as rt, OpenclRuntime(persistent_slots=1) as other:
        a = rt.launch(K.accumulate)
        _resident(a)
        with caplog.at_level(logging.INFO, logger="ringcore"):
            b = other.launch(K.echo)  # another runtime, the same device: its one slot is taken
        assert b.status().mode == "event_driven"
        assert "persistent slot" in caplog.text
        assert b.call(K.Num(value=3, tag=0)).doubled == 6
        a.terminate()
        b.terminate()
        c = other.launch(K.echo)
        _resident(c)


def test_kernels_that_cannot_persist_run_event_driven_and_say_why(caplog):
    with caplog.at_level(logging.INFO, logger="ringcore"):
        with OpenclRuntime() as rt:
            h = rt.launch(K.tee)  # it sends: the host must answer each send before it goes on
            assert h.status().mode == "event_driven"
        assert "ctx.send" in caplog.text
        caplog.clear()
        with OpenclRuntime(svm=False) as rt:
            assert rt.launch(K.accumulate).status().mode == "event_driven"
        assert "svm=False" in caplog.text
        caplog.clear()
        with OpenclRuntime(persistent_slots=0) as rt:
            assert rt.launch(K.accumulate).status().mode == "event_driven"
        assert "persistent_slots is 0" in caplog.text


def test_bad_persistent_slots_are_refused():
    with pytest.raises(ValueError, match="persistent_slots=-1"):
        OpenclRuntime(persistent_slots=-1)


def test_a_process_that_forgets_to_shut_down_still_exits():
    code = textwrap.dedent("""
        import ringcore
        from ringcore.testing import kernels as K
        from ringcore_opencl import OpenclRuntime
        rt = OpenclRuntime()
        h = rt.launch(K.accumulate)
        assert h.status().mode == "persistent"
        assert h.call(K.Num(value=1, tag=1)).total == 1001
        print("served", flush=True)
        # no terminate, no shutdown: the device loop must not keep the process alive
    """)
    env = {**os.environ, "RINGCORE_LOAD_PLUGINS": "opencl"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert "served" in out.stdout


class TicketState:
    issued: ringcore.u32 = 0
    total: ringcore.i32 = 0


@ringcore.kernel(id="ocl_tickets", state=TicketState)
def tickets(ctx, msg: K.Num) -> K.Total:
    """A parallel kernel: every message takes the next ticket (an atomic counter) and adds to a total."""
    t = ctx.atomic_add("issued", 1)
    ctx.atomic_add("total", msg.value)
    return K.Total(count=t, total=msg.value, tag=msg.tag)


def test_several_work_groups_consume_one_queue_exactly_once_and_in_order():
    """grid_size work-groups claim messages from the one input queue (a compare-and-swap on a shared
    counter) and publish their completions in claim order: no message is lost, handled twice or reordered."""
    with OpenclRuntime(persistent_slots=2) as rt:
        h = rt.launch(tickets, grid_size=2, block_size=16, max_batch=64, input_capacity=4096)
        dev = _resident(h)
        assert dev.groups == 2
        n = 60_000
        msgs = K.Num.array(n)
        msgs["value"] = np.arange(n) % 7
        msgs["tag"] = np.arange(n)
        got = h.call_many(msgs, timeout=120)
        assert got["tag"].tolist() == list(range(n))  # each reply answers its own request
        assert sorted(got["count"].tolist()) == list(range(n))  # every message handled exactly once
        assert h.read_state() == {"issued": n, "total": int(msgs["value"].sum())}
        assert h.status().processed == n
        h.terminate()
        assert dev.exited()
    with OpenclRuntime(persistent_slots=1) as rt:  # two groups do not fit in one slot: event-driven, logged
        assert rt.launch(tickets, grid_size=2).mode.value == "event_driven"
