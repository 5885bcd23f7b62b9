"""Persistent mode on CUDA: one launch that stays resident on the GPU and polls its queue in mapped memory
(skipped without a GPU)."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from _gpu import needs_gpu

import ringcore
from ringcore.errors import KernelError
from ringcore.lang.host import PersistentLoop
from ringcore.testing import kernels as K
from ringcore.testing.backend import wait_until

pytestmark = needs_gpu


class TicketState:
    issued: ringcore.u32 = 0
    total: ringcore.u64 = 0


@ringcore.kernel(id="cuda_tickets", state=TicketState)
def tickets(ctx, msg: K.Num) -> K.Total:
    """A parallel kernel: every message takes the next ticket (an atomic counter) and adds to a total."""
    t = ctx.atomic_add("issued", 1)
    ctx.atomic_add("total", ringcore.u64(msg.tag))
    return K.Total(count=t, total=msg.value, tag=msg.tag)


class SlowState:
    done: ringcore.u32 = 0
    acc: ringcore.u32 = 0


@ringcore.kernel(id="cuda_slow", state=SlowState)
def slow(ctx, msg: K.Num) -> None:
    """A serial kernel: ``msg.tag`` rounds of an LCG per message, then count the message."""
    acc = ringcore.u32(0)
    for i in range(ringcore.u32(msg.tag)):
        acc = acc * ringcore.u32(1664525) + ringcore.u32(i)
    ctx.state.acc = acc
    ctx.state.done += 1


def _runtime(**kw):
    from ringcore_cuda import CudaRuntime

    return CudaRuntime(**kw)


def _resident(h: ringcore.KernelHandle):
    from ringcore_cuda.persistent import CudaPersistent

    assert h.status().mode == "persistent"
    assert isinstance(h.loop, PersistentLoop)
    dev = h.loop.executor
    assert isinstance(dev, CudaPersistent) and not dev.exited()
    return dev


def test_a_million_messages_through_a_resident_kernel_none_lost_none_duplicated_in_order():
    with _runtime() as rt:
        h = rt.launch(K.accumulate, input_capacity=1 << 16, output_capacity=1 << 16)
        dev = _resident(h)
        assert [h.call(K.Num(value=v, tag=v)).total for v in (1, 2, 3)] == [1001, 1003, 1006]
        n = 1_000_000
        msgs = K.Num.array(n)
        msgs["value"] = 1
        msgs["tag"] = np.arange(n) % 1000
        got = h.call_many(msgs, timeout=300)
        assert got["count"].tolist() == list(range(4, n + 4))  # every message once, in order
        assert got["tag"].tolist() == msgs["tag"].tolist()
        assert h.read_state() == {"count": n + 3, "total": 1006 + n}  # read live from device memory
        assert h.status().processed == n + 3
        h.terminate()
        assert dev.exited() and dev.fault is None
        assert h.read_state() == {"count": n + 3, "total": 1006 + n}


def test_many_blocks_consume_one_queue_exactly_once():
    with _runtime() as rt:
        h = rt.launch(tickets, grid_size=8, block_size=128, max_batch=256, input_capacity=1 << 14,
                      output_capacity=1 << 14)
        dev = _resident(h)
        assert dev.blocks == 8
        n = 1_000_000
        msgs = K.Num.array(n)
        msgs["value"] = 1
        msgs["tag"] = np.arange(n)
        got = h.call_many(msgs, timeout=300)
        assert got["tag"].tolist() == list(range(n))  # each reply answers its own request
        tickets_seen = np.sort(got["count"])
        assert np.array_equal(tickets_seen, np.arange(n))  # every message handled exactly once
        assert h.read_state() == {"issued": n, "total": n * (n - 1) // 2}
        h.terminate()
        assert dev.exited()
        assert rt.modules.resident.used == 0


def test_many_resident_kernels_at_once_each_with_its_own_state():
    with _runtime() as rt:
        hs = [rt.launch(K.accumulate, name=f"acc{i}") for i in range(8)]
        for h in hs:
            _resident(h)
        msgs = K.Num.array(10_000)
        msgs["value"] = 2
        outs = {}

        def drive(h):
            outs[h.name] = h.call_many(msgs, timeout=120)

        threads = [threading.Thread(target=drive, args=(h,)) for h in hs]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for h in hs:
            assert outs[h.name]["count"][-1] == 10_000
            assert h.read_state() == {"count": 10_000, "total": 1000 + 20_000}


def test_handler_errors_and_wrong_types_are_reported_as_on_every_backend():
    with _runtime() as rt:
        h = rt.launch(K.fragile)
        _resident(h)
        with pytest.raises(KernelError) as err:
            h.call(K.Num(value=-1, tag=0))
        assert "kernels.py" in err.value.detail
        assert h.call(K.Num(value=5, tag=0)).doubled == 10
        rec = np.zeros(1, h.in_spec.slot_dtype)
        rec["header"]["type_id"] = h.in_spec.type_id + 1
        with h.input_queue.producer_lock:
            assert h.input_queue.push_many(rec) == 1
        wait_until(lambda: h.status().errors == 2, "the wrong type to be reported")


def test_deactivate_holds_messages_on_the_gpu_queue_and_activate_resumes():
    with _runtime() as rt:
        h = rt.launch(K.accumulate)
        _resident(h)
        h.deactivate()
        for v in range(5):
            h.send(K.Num(value=v, tag=v))
        time.sleep(0.2)
        assert h.status().processed == 0 and len(h.input_queue) == 5
        h.activate()
        wait_until(lambda: h.status().processed == 5, "the held messages to be processed")


def test_terminate_under_load_ends_the_gpu_loop_within_its_timeout():
    with _runtime() as rt:
        h = rt.launch(slow, input_capacity=4096)
        dev = _resident(h)
        msgs = K.Num.array(4000)
        msgs["tag"] = 20_000  # each message takes a while on one GPU thread
        h.send_many(msgs)
        time.sleep(0.05)
        t0 = time.monotonic()
        h.terminate(timeout=10)
        assert time.monotonic() - t0 < 10
        assert dev.exited() and h.control.has_terminated == 1
        done = h.read_state()["done"]
        assert 0 < done <= 4000  # what it handled, it handled once; the rest stayed queued


def test_kernels_the_loop_cannot_run_resident_run_event_driven_and_say_why(caplog):
    with _runtime() as rt, caplog.at_level(logging.INFO, logger="ringcore"):
        assert rt.launch(K.tee).mode.value == "event_driven"  # it sends
        assert "sends or publishes" in caplog.text
    with _runtime(persistent_slots=1) as rt:
        assert rt.launch(tickets, grid_size=2).mode.value == "event_driven"  # more blocks than slots
    with pytest.raises(ValueError, match="persistent_slots=-1"):
        _runtime(persistent_slots=-1)


def test_a_process_that_never_shuts_down_still_exits():
    code = textwrap.dedent("""
        from ringcore_cuda import CudaRuntime
        from ringcore.testing import kernels as K
        rt = CudaRuntime()
        h = rt.launch(K.accumulate)
        assert h.status().mode == "persistent"
        print(h.call(K.Num(value=1, tag=0)).total)
    """)
    env = {**os.environ, "RINGCORE_LOAD_PLUGINS": "cuda"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "1001"
