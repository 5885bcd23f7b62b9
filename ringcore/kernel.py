"""Kernel declarations: ``@ringcore.kernel``, KernelDef, KernelState and LaunchOptions.

A kernel is a handler ``def k(ctx, msg: In) -> Out | None``. Its return value is
its reply; ``ctx`` gives it its persistent state, its clock, and kernel-to-kernel
sends. Calling the decorated function directly runs it in plain Python, one
message at a time: that is the reference semantics every backend reproduces.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import types as _pytypes
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .errors import KernelDefinitionError, LifecycleError, MessageTypeError
from .message import MessageSpec, coerce_field, declared_fields, is_message_type, message_spec
from .types import RingType, scalar_type, struct_dtype

__all__ = [
    "kernel",
    "KernelDef",
    "KernelMode",
    "KernelState",
    "LaunchOptions",
    "OverflowPolicy",
    "StateSpec",
]


class KernelMode(str, enum.Enum):
    """How a backend runs a kernel. Users see the same semantics in both."""

    PERSISTENT = "persistent"
    """Launched once; keeps running and polls its queue until terminated."""
    EVENT_DRIVEN = "event_driven"
    """The host collects pending messages and dispatches one launch per batch."""


class OverflowPolicy(str, enum.Enum):
    """What a send does when the target queue is full."""

    BLOCK = "block"
    """Wait up to the send timeout, then raise QueueFull (the default: nothing is lost)."""
    DROP = "drop"
    """Refuse the new message at once and count it in the queue's ``dropped`` statistic."""


class KernelState(enum.Enum):
    """A launched kernel's lifecycle state."""

    CREATED = "created"
    LAUNCHED = "launched"
    ACTIVE = "active"
    DEACTIVATED = "deactivated"
    TERMINATING = "terminating"
    TERMINATED = "terminated"

    def can_become(self, new: KernelState) -> bool:
        return new in _TRANSITIONS[self]

    def check(self, new: KernelState, kernel: str) -> None:
        """Raise LifecycleError unless ``self -> new`` is a valid transition."""
        if not self.can_become(new):
            allowed = ", ".join(sorted(s.value for s in _TRANSITIONS[self])) or "nothing"
            raise LifecycleError(
                f"kernel {kernel!r} cannot go from {self.value} to {new.value}; "
                f"from {self.value} it can go to: {allowed}"
            )


_TRANSITIONS: dict[KernelState, frozenset[KernelState]] = {
    KernelState.CREATED: frozenset({KernelState.LAUNCHED, KernelState.TERMINATED}),
    KernelState.LAUNCHED: frozenset({KernelState.ACTIVE, KernelState.TERMINATING}),
    KernelState.ACTIVE: frozenset({KernelState.DEACTIVATED, KernelState.TERMINATING}),
    KernelState.DEACTIVATED: frozenset({KernelState.ACTIVE, KernelState.TERMINATING}),
    KernelState.TERMINATING: frozenset({KernelState.TERMINATED}),
    KernelState.TERMINATED: frozenset(),
}


@dataclasses.dataclass(frozen=True)
class LaunchOptions:
    """How to launch a kernel. Every field has a sensible default.

    :param mode: persistent or event-driven; None takes the kernel's declared mode.
    :param grid_size: blocks (work-groups) to launch.
    :param block_size: threads per block; None takes the kernel's declared size.
    :param input_capacity: input queue slots (rounded up to a power of two).
    :param output_capacity: output queue slots (rounded up to a power of two).
    :param auto_activate: activate right after launch (otherwise call ``activate()``).
    :param overflow: what ``send`` does when the input queue is full.
    :param send_timeout: seconds a blocking send waits for room by default.
    :param max_batch: the most messages the host side hands the device per batch.
    """

    mode: KernelMode | str | None = None
    grid_size: int = 1
    block_size: int | None = None
    input_capacity: int = 1024
    output_capacity: int = 1024
    auto_activate: bool = True
    overflow: OverflowPolicy | str = OverflowPolicy.BLOCK
    send_timeout: float = 5.0
    max_batch: int = 65536

    def __post_init__(self) -> None:
        if self.mode is not None:
            object.__setattr__(self, "mode", _enum(KernelMode, self.mode, "mode"))
        object.__setattr__(self, "overflow", _enum(OverflowPolicy, self.overflow, "overflow"))
        for name in ("grid_size", "input_capacity", "output_capacity", "max_batch"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"LaunchOptions.{name} must be a positive int, got {v!r}")
        if self.block_size is not None and (not isinstance(self.block_size, int) or self.block_size < 1):
            raise ValueError(f"LaunchOptions.block_size must be a positive int, got {self.block_size!r}")
        if not self.send_timeout >= 0:
            raise ValueError(f"LaunchOptions.send_timeout must be >= 0 seconds, got {self.send_timeout!r}")

    def replace(self, **changes: Any) -> LaunchOptions:
        """A copy with ``changes`` applied (validated)."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown launch option(s) {sorted(unknown)}; valid: "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)


def _enum(cls: type[enum.Enum], value: Any, what: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{what}={value!r} is not one of {[m.value for m in cls]}") from None


class StateSpec:
    """A kernel's persistent state: named fields with a C layout and initial values."""

    def __init__(self, name: str, fields: Mapping[str, RingType], initial: Mapping[str, Any]) -> None:
        self.name = name
        self.fields = dict(fields)
        self.dtype = struct_dtype(self.fields)
        self.initial = np.zeros(1, dtype=self.dtype)
        for field, value in initial.items():
            self.initial[0][field] = coerce_field(value, self.fields[field], field, name)

    @classmethod
    def from_declaration(cls, state: Any) -> StateSpec | None:
        if state is None:
            return None
        if isinstance(state, StateSpec):
            return state
        if isinstance(state, Mapping):
            return cls("state", dict(state), {})
        if isinstance(state, type):
            fields = declared_fields(state, "state")
            initial = {n: state.__dict__[n] for n in fields if n in state.__dict__}
            return cls(state.__qualname__, fields, initial)
        raise KernelDefinitionError(
            f"state={state!r} must be a class with annotated fields (like a message) "
            "or a dict of field name to ringcore type"
        )

    def new(self) -> np.ndarray:
        """A fresh state record (shape (1,)) holding the initial values."""
        return self.initial.copy()


class KernelDef:
    """A declared kernel: its handler, message types, state and launch defaults.

    Calling it runs the handler directly in Python (reference mode).
    """

    def __init__(
        self,
        func: Callable[..., Any],
        *,
        id: str,
        input_type: type,
        output_type: type | None,
        state: StateSpec | None,
        mode: KernelMode,
        block_size: int,
    ) -> None:
        self.func = func
        self.id = id
        self.input_type = input_type
        self.output_type = output_type
        self.state = state
        self.mode = mode
        self.block_size = block_size
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    @property
    def input_spec(self) -> MessageSpec:
        return message_spec(self.input_type)

    @property
    def output_spec(self) -> MessageSpec | None:
        return None if self.output_type is None else message_spec(self.output_type)

    def __call__(self, ctx: Any, msg: Any) -> Any:
        return self.func(ctx, msg)

    def check_input(self, msg: Any) -> None:
        """Raise MessageTypeError unless ``msg`` is an instance of the input type."""
        if type(msg) is not self.input_type:
            raise MessageTypeError(
                f"kernel {self.id!r} takes {self.input_type.__qualname__} messages, "
                f"not {type(msg).__qualname__}: {msg!r}"
            )

    def __repr__(self) -> str:
        out = self.output_type.__qualname__ if self.output_type else "None"
        return f"<kernel {self.id!r}: {self.input_type.__qualname__} -> {out}, {self.mode.value}>"


def _resolve_io(func: Callable[..., Any], kernel_id: str, input_type: Any, output_type: Any) -> tuple[type, type | None]:
    hints: dict[str, Any] = {}
    if input_type is None or output_type is None:
        try:
            hints = typing.get_type_hints(func)
        except Exception as exc:
            raise KernelDefinitionError(
                f"kernel {kernel_id!r}: cannot resolve its annotations ({exc}); define the message classes "
                "at module level, or pass input=... and output=... to @ringcore.kernel"
            ) from None
    params = list(inspect.signature(func).parameters.values())
    if len(params) != 2 or any(p.kind not in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params):
        raise KernelDefinitionError(
            f"kernel {kernel_id!r} must be declared as def {func.__name__}(ctx, msg: InMessage) -> "
            f"OutMessage | None, with exactly two positional parameters"
        )
    if input_type is None:
        input_type = hints.get(params[1].name)
    if not is_message_type(input_type):
        raise KernelDefinitionError(
            f"kernel {kernel_id!r}: annotate its message parameter with a @ringcore.message class "
            f"(got {input_type!r})"
        )
    if output_type is None:
        ret = hints.get("return", type(None))
        args = typing.get_args(ret) if typing.get_origin(ret) in (typing.Union, _pytypes.UnionType) else (ret,)
        outs = [a for a in args if a is not type(None) and a is not None]
        if len(outs) > 1:
            raise KernelDefinitionError(f"kernel {kernel_id!r} may return one message type, not {ret!r}")
        output_type = outs[0] if outs else None
    if output_type is not None and not is_message_type(output_type):
        raise KernelDefinitionError(
            f"kernel {kernel_id!r}: its return annotation must be a @ringcore.message class, "
            f"Out | None, or None (got {output_type!r})"
        )
    return input_type, output_type


def kernel(
    func: Callable[..., Any] | None = None,
    *,
    id: str | None = None,
    mode: KernelMode | str = KernelMode.PERSISTENT,
    block_size: int = 256,
    state: Any = None,
    input: type | None = None,
    output: type | None = None,
):
    """Declare a ring kernel.

    ``@ringcore.kernel(id="counter", state=Counter)`` over
    ``def counter(ctx, msg: Add) -> Total | None``.

    :param id: the kernel's name (default: the function's name); unique within a runtime.
    :param mode: ``"persistent"`` (default) or ``"event_driven"``.
    :param block_size: threads per block on devices that use blocks.
    :param state: a class with annotated ringcore fields (class attributes give
        initial values) or a dict of field name to type; kept across messages.
    :param input: the message type, when not given by the annotation.
    :param output: the reply type, when not given by the return annotation.
    """

    def wrap(f: Callable[..., Any]) -> KernelDef:
        if not callable(f) or not hasattr(f, "__code__"):
            raise KernelDefinitionError(f"@ringcore.kernel decorates a function, not {f!r}")
        kid = id if id is not None else f.__name__
        if not isinstance(kid, str) or not kid:
            raise KernelDefinitionError(f"kernel id must be a non-empty str, got {kid!r}")
        if not isinstance(block_size, int) or block_size < 1:
            raise KernelDefinitionError(f"kernel {kid!r}: block_size must be a positive int, got {block_size!r}")
        in_t, out_t = _resolve_io(f, kid, input, output)
        return KernelDef(
            f,
            id=kid,
            input_type=in_t,
            output_type=out_t,
            state=StateSpec.from_declaration(state),
            mode=_enum(KernelMode, mode, "mode"),
            block_size=block_size,
        )

    return wrap if func is None else wrap(func)


class StateView:
    """Attribute access to a kernel's state record (reads and writes go to the record)."""

    __slots__ = ("_rec", "_names")

    def __init__(self, record: np.void) -> None:
        object.__setattr__(self, "_rec", record)
        object.__setattr__(self, "_names", frozenset(record.dtype.names or ()))

    def __getattr__(self, name: str) -> Any:
        if name in self._names:
            return self._rec[name]
        raise AttributeError(f"the kernel state has no field {name!r}; its fields are {sorted(self._names)}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._names:
            raise AttributeError(f"the kernel state has no field {name!r}; its fields are {sorted(self._names)}")
        field = self._rec.dtype.fields[name][0]
        if field.kind in "ui" and field.shape == () and isinstance(value, int):
            value = scalar_type(field)(value)  # wrap like the fixed-width targets do
        self._rec[name] = value

    def __repr__(self) -> str:
        return f"State({', '.join(f'{n}={self._rec[n]!r}' for n in self._rec.dtype.names or ())})"
