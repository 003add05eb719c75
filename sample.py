"""Generate songs from a trained run: `python sample.py --bars 32 --sigma 0.5` (see --help)."""

import sys

from vaejax.cli import sample_main

if __name__ == "__main__":
    sys.exit(sample_main())
