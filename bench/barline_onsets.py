"""Notes that start one data step before a bar line, in held-out passages: the onsets a per-bar grid loses.

    python bench/barline_onsets.py --data PREPARED --out bench/results/barline_onsets.json

For every test passage (32 bars from the first bar where the piano and two more tracks play), per track:
the onsets that fall on a downbeat (nearest sixteenth, from the second bar on), the share of them that start
at the last step of the bar before, and the share that also last a single step (drum hits), which neither
bar's grid keeps: the bar before hands them to the next cell, the bar after never sees them sound.
"""

from __future__ import annotations

import argparse
import json
import sys

from provenance import provenance

from vaejax import data as data_lib
from vaejax.config import TRACKS
from vaejax.music import note_runs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    test = data_lib.open_dataset(args.data)["test"]
    per_bar = test.cfg.resolution * test.cfg.beats_per_bar
    sub = per_bar // 16
    counts = {t: {"downbeat_onsets": 0, "one_step_early": 0, "one_step_early_and_long": 0} for t in TRACKS}
    windows = test.windows(args.bars)
    for i, first in windows:
        song = test.song(i)[:, first : first + args.bars]  # [5, bars, T, P]
        for t, name in enumerate(TRACKS):
            _, start, end = note_runs(song[t].reshape(-1, song.shape[-1]))
            six = (start + sub // 2) // sub
            down = (six % 16 == 0) & (six >= 16) & (six < 16 * args.bars)
            early = down & (start % per_bar == per_bar - 1)
            counts[name]["downbeat_onsets"] += int(down.sum())
            counts[name]["one_step_early"] += int(early.sum())
            counts[name]["one_step_early_and_long"] += int((early & (end - start == 1)).sum())
    out = {
        **provenance("barline_onsets.py", argv),
        "passages": len(windows),
        "tracks": counts,
    }
    for name, c in counts.items():
        n = max(c["downbeat_onsets"], 1)
        c["share_early"] = c["one_step_early"] / n
        c["share_lost"] = c["one_step_early_and_long"] / n
        print(
            f"{name:8s} {c['downbeat_onsets']:6d} downbeat onsets: {c['share_early']:.1%} one step early, "
            f"{c['share_lost']:.1%} of them one step long"
        )
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
