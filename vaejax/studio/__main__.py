"""`python -m vaejax.studio`: the same as the `vaejax-studio` command."""

import sys

from vaejax.studio.server import main

if __name__ == "__main__":
    sys.exit(main())
