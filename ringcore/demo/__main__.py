"""``python -m ringcore.demo [--backend NAME] [--quick]``: the same as ``ringcore demo``."""

import sys

from ringcore.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
