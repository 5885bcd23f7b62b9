"""Ping-pong: two kernels rally a ball through kernel-to-kernel messages (ctx.send).

    python examples/ping_pong.py [--backend NAME] [--rounds N]

The host starts each rally with one call to `ping`; the kernels pass the ball
back and forth with ctx.send, and `ping` returns it after the rally's last
round, which answers the host's call. The program prints the real number of
round trips (checked against both kernels' state) and the time per round trip.

The program lives in ringcore/demo/ping_pong.py, so that `ringcore demo` runs
the very same code from an installed package; this file only launches it. The kernels:

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
"""

import sys

from ringcore.demo.ping_pong import main

if __name__ == "__main__":
    sys.exit(main())
