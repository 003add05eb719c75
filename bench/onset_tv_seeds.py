"""How much the generated songs' onset-position TV to real passages moves with the seed that draws them.

The realism section draws one set of songs (seed 0, as many as real passages) and scores their onset
positions against the held-out passages; a set of 50 songs is itself a sample. This script draws the same
number of songs at several seeds per model, and scores each set against the same 50 test passages and
against every training passage (the calibration's target), with the real test passages against the training
ones as the floor.

Usage: python bench/onset_tv_seeds.py --data PREPARED --models lpd5 RUN ... --seeds 0 1 2 3 4 \\
    --out bench/results/onset_tv_seeds.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vaejax import data as data_lib  # noqa: E402
from vaejax import evaluate, realism, trained_model  # noqa: E402
from vaejax.config import TRACKS  # noqa: E402


def onset_tv(stats: dict, real: dict) -> dict:
    """Per track, the onset-position TV of `rhythm_stats` from a real reference (`realism.compare`)."""
    return {t: c["onset_tv"] for t, c in realism.compare(stats, real).items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--models", nargs="+", default=["lpd5"])
    ap.add_argument("--songs", type=int, default=50)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    ds = data_lib.open_dataset(args.data)
    train, test = ds["train"], ds["test"]
    want_train = realism.passage_stats(train, train.windows(args.bars), args.bars)
    real = evaluate.realism_passages(test, songs=args.songs, bars=args.bars, seed=0)
    n = real.shape[1]
    want_test = realism.rhythm_stats(np.moveaxis(real, 0, 1).reshape(n, len(TRACKS), -1, real.shape[-1]))
    out = {
        "command": "python bench/onset_tv_seeds.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.date.today().isoformat(),
        "real test vs train": onset_tv(want_test, want_train),
        "models": {},
    }
    for name in args.models:
        model = trained_model.load(name)
        rows = {}
        for seed in args.seeds:
            gen = model.prior_bars(args.bars, sigma=args.sigma, seed=seed, num=n)
            st = realism.rhythm_stats(np.moveaxis(gen, 0, 1).reshape(n, len(TRACKS), -1, gen.shape[-1]))
            rows[str(seed)] = {"vs test": onset_tv(st, want_test), "vs train": onset_tv(st, want_train)}
        vs = np.array([[rows[s]["vs test"][t] for t in TRACKS] for s in rows])
        out["models"][name] = {
            "seeds": rows,
            "vs test, mean over seeds": dict(zip(TRACKS, vs.mean(0).tolist())),
            "vs test, range": {t: [float(vs[:, i].min()), float(vs[:, i].max())] for i, t in enumerate(TRACKS)},
        }
        print(name, "onset TV to the test passages per seed (D/P/G/B/S):")
        for s, r in rows.items():
            print(f"  seed {s}: " + " / ".join(f"{r['vs test'][t]:.3f}" for t in TRACKS))
        print("  mean:    " + " / ".join(f"{v:.3f}" for v in vs.mean(0)))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
