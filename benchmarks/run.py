"""Run ringcore's benchmarks: ``python benchmarks/run.py [--quick] [--json] [--only NAME]``.

The same as ``ringcore bench``; the benchmarks live in ``ringcore/bench.py`` so
that an installed ringcore can run them too. See benchmarks/README.md.
"""

import sys

from ringcore.bench import main

if __name__ == "__main__":
    sys.exit(main())
