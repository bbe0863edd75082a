"""``python -m freqlens ...``: the same command line as ``freqlens ...`` (plumbing)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
