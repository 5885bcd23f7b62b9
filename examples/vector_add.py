"""Vector add: a kernel adds two f32[16] vectors per message, for 200,000 messages in one bulk call.

    python examples/vector_add.py [--backend NAME] [--count N]

The kernel computes every sum; the host computes numpy's a + b only afterwards,
independently, and compares. The program prints the throughput.

The program lives in ringcore/demo/vector_add.py, so that `ringcore demo` runs
the very same code from an installed package; this file only launches it. The kernel:

    @ringcore.kernel(id="vector_add")
    def vector_add(ctx, msg: Operands) -> VecSum:
        out = VecSum()
        for i in range(16):
            out.c[i] = msg.a[i] + msg.b[i]
        return out
"""

import sys

from ringcore.demo.vector_add import main

if __name__ == "__main__":
    sys.exit(main())
