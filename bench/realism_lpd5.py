"""Rhythm realism of a model (the "Rhythm realism" section of `vaejax.evaluate`) on held-out passages:

    python bench/realism_lpd5.py --data PREPARED --model lpd5 --songs 50 --bars 32 \
        --out bench/results/realism_prior_lpd5.json

Real test-split passages (`bars` bars from the first bar where the piano and two more tracks play), their
reconstructions, and songs from each prior at sigma 0.5: onset-position histograms, onsets per bar, note
lengths, and the two-sample classifier on 4- and 16-bar phrases (`vaejax.realism`). `--prior-decoding`
replaces how the prior's bars are decoded (the ablation of `calibration.prior_decoding`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from provenance import provenance

from vaejax import data as data_lib
from vaejax import evaluate, trained_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="lpd5")
    ap.add_argument("--songs", type=int, default=50)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--out", required=True)
    ap.add_argument(
        "--prior-decoding",
        default="calibrated",
        help="how the prior's bars are decoded: 'calibrated' (the model's own), 'reconstruction' (the "
        "reconstruction's thresholds, no count factor: as before the calibration existed) or a stats.json "
        "whose prior_onset_thresholds / prior_count_scale (/ prior_sustain) to use",
    )
    args = ap.parse_args(argv)
    model = trained_model.load(args.model)
    if args.prior_decoding == "reconstruction":
        model = model.with_prior_decoding(model.onset_cuts, np.ones(5))
    elif args.prior_decoding != "calibrated":
        with open(args.prior_decoding) as f:
            stats = json.load(f)
        model = model.with_prior_decoding(
            stats["prior_onset_thresholds"], stats["prior_count_scale"], stats.get("prior_sustain")
        )
    out = provenance("realism_lpd5.py", argv)
    out.update(
        evaluate.realism_section(model, data_lib.open_dataset(args.data)["test"], songs=args.songs, bars=args.bars)
    )
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
