"""A run folder from a packaged model and a prepared cache, ready for `train.py --stage prior`.

    python bench/encode_package.py lpd5 /work/prep/lpd_key /tmp/prior_runs/lpd5

Encodes every split with the packaged model's VAEs into RUN/latents/ and copies its configuration and
sampling statistics, so that a prior can be trained (and compared with the chain) on the packaged model's
latents without its Orbax checkpoints.
"""

from __future__ import annotations

import os
import shutil
import sys
import time

import numpy as np

import vaejax
from vaejax import data as data_lib
from vaejax.runs import RunFolder


def main(argv=None) -> int:
    name, data_dir, out = (argv or sys.argv[1:])[:3]
    model = vaejax.load(name)
    ds = data_lib.open_dataset(data_dir)
    run = RunFolder(out)
    os.makedirs(out, exist_ok=True)
    for f in ("config.json", "stats.json", "weights.npz"):
        shutil.copy(os.path.join(model.run_dir, f), run.path(f))
    np.save(run.start_bars_path, model.start_bars)
    with open(run.path("data.txt"), "w") as f:
        f.write(os.path.abspath(data_dir) + "\n")
    for split in data_lib.SPLITS:
        if os.path.exists(run.latents_path(split)):
            continue
        t0 = time.time()
        s = ds[split]
        out_z = []
        for i in range(0, len(s), 1024):
            idx = np.arange(i, min(i + 1024, len(s)))
            x = s.bars(idx)
            if len(idx) < 1024:
                x = np.concatenate([x, np.zeros((5, 1024 - len(idx)) + x.shape[2:], bool)], 1)
            out_z.append(model.encode_bars(x).concat()[: len(idx)])
        z = np.concatenate(out_z).astype(np.float32)
        run.write_latents(split, z, s.start, s.length)
        print(f"{split}: {len(s)} bars in {time.time() - t0:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
