"""Ping-pong: two kernels rally a ball through kernel-to-kernel messages.

The host starts a rally with one ``call`` to ``ping``. ``ping`` passes the ball
to ``pong`` with ``ctx.send``; ``pong`` passes it back with the round counter
advanced; after the rally's last round ``ping`` returns the ball, and that
return is the reply to the host's call (a forwarded message keeps its
correlation id and its reply obligation). Every hop goes through the receiving
kernel's input queue; neither kernel touches the host in between.

A runtime refuses to forward one message more than ``max_hops`` times (16 by
default: the guard against messages circling forever), so a long game is
played as several rallies of at most ``max_hops // 2`` round trips, one host
call each.

Both kernels count their hits in their state, so the program checks the real
number of round trips three ways: the balls' counters, and each kernel's state.

Run it with ``python examples/ping_pong.py`` or ``python -m ringcore.demo.ping_pong``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from typing import Any

import ringcore
from ringcore import u32, u64

from ._util import example_main, fmt_rate, fmt_us, row

__all__ = ["Ball", "Hits", "PingPongResult", "main", "ping", "pong", "run"]


@ringcore.message(type_id=0x7E570011)
class Ball:
    """The ball: round trips completed, round trips to play, and hits so far."""

    round: u32
    rounds: u32
    hits: u32


class Hits:
    """Each kernel's persistent state."""

    hits: u64 = 0


@ringcore.kernel(id="ping", state=Hits)
def ping(ctx, ball: Ball) -> Ball | None:
    ctx.state.hits += 1
    if ball.round >= ball.rounds:
        # The rally is over: this return is the reply to the host's call.
        return Ball(round=ball.round, rounds=ball.rounds, hits=ball.hits + 1)
    ctx.send("pong", Ball(round=ball.round, rounds=ball.rounds, hits=ball.hits + 1))
    return None


@ringcore.kernel(id="pong", state=Hits)
def pong(ctx, ball: Ball) -> None:
    ctx.state.hits += 1
    ctx.send("ping", Ball(round=ball.round + 1, rounds=ball.rounds, hits=ball.hits + 1))


@dataclasses.dataclass
class PingPongResult:
    """What the ping-pong program observed (for the timed game)."""

    rounds: int
    round_trips: int
    """Round trips the balls report having made."""
    rallies: int
    """Host calls the game took (each rally is at most ``max_hops // 2`` round trips)."""
    ping_hits: int
    pong_hits: int
    seconds: float
    us_per_round_trip: float
    round_trips_per_s: float
    ok: bool


def run(rt: ringcore.RingKernelRuntime, *, rounds: int = 1000,
        out: Callable[[str], Any] = print) -> PingPongResult:
    """Launch ``ping`` and ``pong`` on ``rt``, play ``rounds`` round trips, and check them."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    per_rally = max(1, rt.max_hops // 2)
    p = rt.launch(ping)
    q = rt.launch(pong)
    try:
        p.call(Ball(round=0, rounds=per_rally, hits=0))  # starts both kernels' threads
        before_ping = int(p.read_state()["hits"])
        before_pong = int(q.read_state()["hits"])
        trips = hits = rallies = 0
        t0 = time.perf_counter()
        while trips < rounds:
            ball = p.call(Ball(round=0, rounds=min(per_rally, rounds - trips), hits=0))
            trips += int(ball.round)
            hits += int(ball.hits)
            rallies += 1
        seconds = time.perf_counter() - t0
        ping_hits = int(p.read_state()["hits"]) - before_ping
        pong_hits = int(q.read_state()["hits"]) - before_pong
        pm, qm = p.metrics(), q.metrics()
    finally:
        p.terminate()
        q.terminate()

    per_trip = seconds / trips * 1e6
    out(row(f"{trips} round trips", f"{rallies} rallies of <= {per_rally} round trips "
                                     f"(max_hops={rt.max_hops}) in {seconds * 1000:.1f} ms"))
    out(row("per round trip (2 K2K hops)", f"{fmt_us(per_trip)}, the host call starting each rally included; "
                                          f"{fmt_rate(trips / seconds, 'round trips')}"))
    out(row("kernel state", f"ping hits={ping_hits}, pong hits={pong_hits}; "
                            f"undelivered K2K sends: ping {pm.dropped}, pong {qm.dropped}"))
    ok = (trips == rounds and hits == 2 * rounds + rallies
          and ping_hits == rounds + rallies and pong_hits == rounds)
    out(row("check", f"{trips} of {rounds} round trips; ping ran {ping_hits} times ({rounds} + {rallies} "
                     f"rally ends), pong {pong_hits} -> {'OK' if ok else 'FAILED'}"))
    return PingPongResult(rounds, trips, rallies, ping_hits, pong_hits, seconds, per_trip, trips / seconds, ok)


def main(argv: Sequence[str] | None = None) -> int:
    """``python examples/ping_pong.py [--backend NAME] [--rounds N]``."""

    def options(parser):
        parser.add_argument("--rounds", type=int, default=1000, help="round trips to play (default 1000)")

    return example_main(argv, "Two kernels rally a message through kernel-to-kernel sends.", run, options)


if __name__ == "__main__":
    raise SystemExit(main())
