"""The host side of a compiled kernel, the same for every backend that runs batches from the host.

:class:`KernelEnv` gives generated code its runtime services for one batch
(``env.send``, ``env.now``, the lane ids); :func:`batch_inputs` and friends
turn a batch of queue slots into the per-field arrays a target's ``run``
takes; :func:`lane_errors` turns the per-lane status a target returns into the
errors the host loop reports. The CPU backend's numpy executor uses all of
them, and a device backend's event-driven mode delivers its outbox through
:meth:`KernelEnv.send` in the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ..control import ErrorCode
from ..k2k import DeliveryResult
from ..message import MessageHeader, MessageSpec
from .ir import DELIVERY_CODES, KernelIR, Publish, Send, stmt_exprs, walk_exprs, walk_stmts

if TYPE_CHECKING:
    from ..runtime import KernelHandle

__all__ = ["KernelEnv", "field_arrays", "state_arrays", "lane_errors", "sent_specs"]

_CODE = {r: np.uint32(c) for r, c in DELIVERY_CODES.items()}


def field_arrays(records: np.ndarray, spec_fields: dict[str, Any]) -> dict[str, np.ndarray]:
    """Views of a structured array's fields: ``(n,)`` for scalars, ``(n, size)`` for arrays (C order)."""
    out: dict[str, np.ndarray] = {}
    n = len(records)
    for name in spec_fields:
        a = records[name]
        out[name] = a.reshape(n, -1) if a.ndim > 1 else a
    return out


def state_arrays(state: np.ndarray | None) -> dict[str, np.ndarray]:
    """Views of a state record (shape (1,)): ``(1,)`` for scalars, ``(size,)`` for arrays; writes land in it."""
    if state is None:
        return {}
    out: dict[str, np.ndarray] = {}
    for name in state.dtype.names or ():
        a = state[name]
        out[name] = a.reshape(-1) if a.ndim > 1 else a
    return out


def sent_specs(kir: KernelIR) -> dict[int, MessageSpec]:
    """The message types a kernel sends or publishes, by type id."""
    specs: dict[int, MessageSpec] = {}
    bodies = [kir.body] + [f.body for f in kir.funcs.values()]
    for body in bodies:
        for s in walk_stmts(body):
            for e in stmt_exprs(s):
                for x in walk_exprs(e):
                    if isinstance(x, (Send, Publish)):
                        specs[x.msg.spec.type_id] = x.msg.spec
    return specs


def lane_errors(kir: KernelIR, status: np.ndarray) -> list[tuple[int, int, str]]:
    """``(lane, ErrorCode, detail)`` for every lane whose status names an error site."""
    bad = np.flatnonzero(status)
    if not len(bad):
        return []
    texts = [e.describe(kir.filename) for e in kir.errors]
    out = []
    for i in bad.tolist():
        site = int(status[i])
        text = texts[site - 1] if 0 < site <= len(texts) else f"the kernel failed with unknown error site {site}"
        out.append((i, int(ErrorCode.HANDLER_EXCEPTION), text))
    return out


class KernelEnv:
    """Runtime services for one batch of a compiled kernel (the ``env`` of the numpy target's ABI).

    :param handle: the kernel.
    :param headers: the batch's message headers (a structured array), for the
        reply obligation and hop count each K2K send carries on.
    :param specs: the message types the kernel sends, by type id.
    """

    __slots__ = ("handle", "headers", "specs", "thread_id", "kernel_number", "forwarded")

    def __init__(self, handle: KernelHandle, headers: np.ndarray, specs: dict[int, MessageSpec]) -> None:
        n = len(headers)
        self.handle = handle
        self.headers = headers
        self.specs = specs
        self.thread_id = np.arange(n, dtype=np.uint32)
        self.kernel_number = np.uint32(handle.number)
        #: Lanes whose message was forwarded by a delivered send (their reply obligation went with it).
        self.forwarded = np.zeros(n, dtype=bool)

    def send(self, target: str | np.ndarray, type_id: int, lanes: np.ndarray,
             fields: dict[str, np.ndarray]) -> np.ndarray:
        """Send one message per lane in ``lanes`` (in order); the DELIVERY_CODES, one per lane."""
        spec = self.specs[type_id]
        m = len(lanes)
        codes = np.empty(m, dtype=np.uint32)
        if m == 0:
            return codes
        recs = self._records(spec, m, fields)
        from_record = spec.cls.from_record
        forward = self.handle.runtime._forward
        hdr = self.headers
        uniform = isinstance(target, str)
        targets = None if uniform else np.asarray(target).tolist()
        lane_list = np.asarray(lanes).tolist()
        for k, lane in enumerate(lane_list):
            parent = MessageHeader._make(hdr[lane].tolist())
            res = forward(self.handle, target if uniform else targets[k], from_record(recs[k]), parent)
            codes[k] = _CODE[res]
            if res is DeliveryResult.DELIVERED:
                self.forwarded[lane] = True
        return codes

    def publish(self, topic: str, type_id: int, lanes: np.ndarray, fields: dict[str, np.ndarray]) -> np.ndarray:
        """Publish one message per lane in ``lanes`` (in order) on ``topic``; subscribers reached, per lane."""
        spec = self.specs[type_id]
        recs = self._records(spec, len(lanes), fields)
        publish = self.handle.runtime.publish
        counts = np.empty(len(lanes), dtype=np.uint32)
        for k in range(len(lanes)):
            counts[k] = publish(topic, spec.cls.from_record(recs[k]), _source=self.handle)
        return counts

    @staticmethod
    def _records(spec: MessageSpec, m: int, fields: dict[str, np.ndarray]) -> np.ndarray:
        recs = np.zeros(m, spec.dtype)
        for name, values in fields.items():
            col = recs[name]
            col[...] = values.reshape(col.shape) if col.ndim > 1 else values
        return recs

    def header(self, name: str) -> np.ndarray:
        """A header field of every message of the batch (``ctx.header.<name>``)."""
        return self.headers[name]

    def now(self, lanes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tick the kernel's clock once per lane: ``(physical u64, logical u32)`` arrays, increasing in lane order."""
        phys, logical = self.handle.clock.stamp_many(len(lanes))
        return phys, logical.astype(np.uint32)
