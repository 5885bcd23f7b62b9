"""Hello, kernel: launch a ring kernel, watch its lifecycle, call it, read its metrics, terminate it.

    python examples/hello_kernel.py [--backend NAME] [--calls N]

The program (its message types, the kernel and the host code) lives in
ringcore/demo/hello_kernel.py, so that `ringcore demo` runs the very same code
from an installed package; this file only launches it. The kernel:

    @ringcore.kernel(id="hello", state=Counter)
    def hello(ctx, msg: Greet) -> Greeting:
        ctx.state.served += 1
        return Greeting(n=msg.n + 1, served=ctx.state.served)
"""

import sys

from ringcore.demo.hello_kernel import main

if __name__ == "__main__":
    sys.exit(main())
