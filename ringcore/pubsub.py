"""Topic publish/subscribe between the host and kernels.

Topics are dot-separated words (``sensors.temp.room1``). A subscription
pattern may use ``*`` for exactly one word and ``#`` for zero or more trailing
words: ``sensors.*.room1`` and ``sensors.#``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ["topic_matches", "validate_topic", "validate_pattern", "Subscription", "Broker"]


def validate_topic(topic: str) -> list[str]:
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"topic {topic!r} must be a non-empty str like 'sensors.temp'")
    words = topic.split(".")
    if any(not w or w in ("*", "#") for w in words):
        raise ValueError(f"topic {topic!r} must be dot-separated non-empty words without '*' or '#'")
    return words


def validate_pattern(pattern: str) -> list[str]:
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"pattern {pattern!r} must be a non-empty str like 'sensors.*' or 'sensors.#'")
    words = pattern.split(".")
    for i, w in enumerate(words):
        if not w or (w != "#" and "#" in w) or (w != "*" and "*" in w):
            raise ValueError(f"pattern {pattern!r}: '{w}' must be a word, '*' or '#'")
        if w == "#" and i != len(words) - 1:
            raise ValueError(f"pattern {pattern!r}: '#' may only be the last word")
    return words


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether ``topic`` matches ``pattern`` (``*``: one word; ``#``: the rest, possibly none)."""
    p, t = validate_pattern(pattern), validate_topic(topic)
    for i, w in enumerate(p):
        if w == "#":
            return True
        if i >= len(t) or (w != "*" and w != t[i]):
            return False
    return len(p) == len(t)


class Subscription(NamedTuple):
    id: int
    pattern: str
    target: Any
    """A kernel name, or a callable taking ``(topic, message)``."""


class Broker:
    """Matches published topics against subscriptions (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subs: dict[int, Subscription] = {}
        self._next = 1

    def subscribe(self, pattern: str, target: str | Callable[[str, Any], Any]) -> Subscription:
        validate_pattern(pattern)
        with self._lock:
            sub = Subscription(self._next, pattern, target)
            self._subs[sub.id] = sub
            self._next += 1
            return sub

    def unsubscribe(self, sub: Subscription | int) -> bool:
        sid = sub.id if isinstance(sub, Subscription) else sub
        with self._lock:
            return self._subs.pop(sid, None) is not None

    def remove_target(self, target: Any) -> None:
        with self._lock:
            for sid in [s.id for s in self._subs.values() if s.target == target]:
                del self._subs[sid]

    def matching(self, topic: str) -> list[Subscription]:
        validate_topic(topic)
        with self._lock:
            subs = list(self._subs.values())
        return [s for s in subs if topic_matches(s.pattern, topic)]

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subs.values())
