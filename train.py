"""Train vaejax: `python train.py --latent 16 --accelerator auto` (see --help)."""

import sys

from vaejax.cli import train_main

if __name__ == "__main__":
    sys.exit(train_main())
