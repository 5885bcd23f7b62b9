"""Topic matching with `*` and `#` wildcards, validation, and the broker."""

from __future__ import annotations

import pytest

from ringcore.pubsub import Broker, Subscription, topic_matches, validate_pattern, validate_topic


@pytest.mark.parametrize(
    "pattern, topic, expected",
    [
        ("sensors.temp", "sensors.temp", True),
        ("sensors.temp", "sensors.humidity", False),
        ("sensors.temp", "sensors.temp.room1", False),
        ("sensors.temp.room1", "sensors.temp", False),
        # * is exactly one word
        ("sensors.*", "sensors.temp", True),
        ("sensors.*", "sensors", False),
        ("sensors.*", "sensors.temp.room1", False),
        ("sensors.*.room1", "sensors.temp.room1", True),
        ("sensors.*.room1", "sensors.temp.room2", False),
        ("*.*", "a.b", True),
        ("*", "a", True),
        ("*", "a.b", False),
        ("*.temp", "sensors.temp", True),
        # # is zero or more trailing words
        ("sensors.#", "sensors", True),
        ("sensors.#", "sensors.temp", True),
        ("sensors.#", "sensors.temp.room1.shelf", True),
        ("sensors.#", "actuators.temp", False),
        ("sensors.#", "sensorsx", False),
        ("#", "anything", True),
        ("#", "any.thing.at.all", True),
        ("sensors.*.#", "sensors.temp", True),
        ("sensors.*.#", "sensors", False),
        ("sensors.*.#", "sensors.temp.room1.x", True),
        ("a.b.#", "a", False),
        ("a.b.#", "a.c.d", False),
        # words compare exactly
        ("Sensors.temp", "sensors.temp", False),
        ("sensors.te", "sensors.temp", False),
    ],
)
def test_topic_matches(pattern, topic, expected):
    assert topic_matches(pattern, topic) is expected


@pytest.mark.parametrize(
    "pattern", ["", "a..b", ".a", "a.", "a.#.b", "#.a", "a#", "a.b*", "*a.b", "a.##", None, 5]
)
def test_invalid_patterns_are_refused(pattern):
    with pytest.raises(ValueError, match="pattern"):
        validate_pattern(pattern)
    with pytest.raises(ValueError):
        topic_matches(pattern, "a.b")


@pytest.mark.parametrize("topic", ["", "a..b", ".a", "a.", "a.*", "a.#", "*", "#", None, b"a"])
def test_invalid_topics_are_refused(topic):
    with pytest.raises(ValueError, match="topic"):
        validate_topic(topic)
    with pytest.raises(ValueError):
        topic_matches("#", topic)


def test_validators_return_words():
    assert validate_topic("a.b.c") == ["a", "b", "c"]
    assert validate_pattern("a.*.#") == ["a", "*", "#"]


def test_broker_subscribe_match_unsubscribe():
    b = Broker()
    s1 = b.subscribe("sensors.*", "kernel_a")
    s2 = b.subscribe("sensors.#", "kernel_b")
    s3 = b.subscribe("actuators.#", print)
    assert isinstance(s1, Subscription) and len({s1.id, s2.id, s3.id}) == 3
    assert [s.target for s in b.matching("sensors.temp")] == ["kernel_a", "kernel_b"]
    assert [s.target for s in b.matching("sensors")] == ["kernel_b"]
    assert b.matching("other") == []
    assert b.unsubscribe(s1) is True
    assert b.unsubscribe(s1.id) is False
    assert [s.target for s in b.matching("sensors.temp")] == ["kernel_b"]
    b.remove_target("kernel_b")
    assert b.subscriptions() == [s3]
    with pytest.raises(ValueError):
        b.subscribe("a.#.b", "k")
    with pytest.raises(ValueError):
        b.matching("a.*")
