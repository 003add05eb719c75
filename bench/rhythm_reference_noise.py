"""How far real passages are from each other in the rhythm measures (`vaejax.realism.rhythm_stats`): the
floor under any goal stated against a sample of real songs.

    python bench/rhythm_reference_noise.py --data PREPARED --songs 50 --draws 5 \
        --out bench/results/rhythm_reference_noise.json

Reference: every training passage (32 bars from the first bar where the piano and two more tracks play).
Rows: `--draws` random samples of `--songs` training passages, the validation passages and `--songs` test
passages (as the realism section picks them), each against the reference: per track onset-position TV,
onsets per bar and mean note length as ratios.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from provenance import provenance

from vaejax import data as data_lib
from vaejax import realism


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--songs", type=int, default=50)
    ap.add_argument("--draws", type=int, default=5)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    ds = data_lib.open_dataset(args.data)
    train = ds["train"]
    everything = train.windows(args.bars)
    ref = realism.passage_stats(train, everything, args.bars)
    rows = {}
    for d in range(args.draws):
        pick = np.random.default_rng(d + 1).permutation(len(everything))[: args.songs]
        rows[f"{args.songs} training passages, draw {d + 1}"] = [everything[j] for j in sorted(pick)], train
    test_w = ds["test"].windows(args.bars)
    pick = np.random.default_rng(0).permutation(len(test_w))[: args.songs]  # as evaluate.realism_section
    rows[f"{len(pick)} test passages"] = [test_w[j] for j in pick], ds["test"]
    rows[f"{len(ds['valid'].windows(args.bars))} validation passages"] = ds["valid"].windows(args.bars), ds["valid"]
    out = {
        **provenance("rhythm_reference_noise.py", argv),
        "reference_passages": len(everything),
        "rows": {},
    }
    for name, (windows, split) in rows.items():
        out["rows"][name] = realism.compare(realism.passage_stats(split, windows, args.bars), ref)
        print(
            name, " ".join(f"{t[:2]} {v['onset_tv']:.3f}/{v['onsets_ratio']:.2f}" for t, v in out["rows"][name].items())
        )
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
