"""Rhythm realism of a model (the "Rhythm realism" section of `vaejax.evaluate`) on held-out passages:

    python bench/realism_lpd5.py --data PREPARED --model lpd5 --songs 50 --bars 32 \
        --out bench/results/realism_prior_lpd5.json

Real test-split passages (`bars` bars from the first bar where the piano and two more tracks play), their
reconstructions, and songs from each prior at sigma 0.5: onset-position histograms, onsets per bar, note
lengths, and the two-sample classifier on 4- and 16-bar phrases (`vaejax.realism`); pitch classes per bar,
scale consistency and tonal distance of the real and reconstructed passages (`pitch`). `--prior-decoding`
replaces how the prior's bars are decoded (the ablation of `calibration.prior_decoding`),
`--reconstruction-decoding per-bar` how encoded latents are (that of `calibration.reconstruction_decoding`).
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from provenance import provenance

from vaejax import data as data_lib
from vaejax import evaluate, metrics, trained_model


def pitch_metrics(model, test, songs: int, bars: int, seed: int = 0) -> dict:
    """Pitch classes per bar, scale consistency and tonal distance (`vaejax.metrics`) of the same real test
    passages as `realism_section` takes and of their reconstructions: what a decoding costs in harmony."""
    real = evaluate.realism_passages(test, songs=songs, bars=bars, seed=seed).reshape(
        5, -1, test.cfg.steps, test.cfg.num_pitches
    )
    # decoded as vary(sigma=0) decodes
    recon = model.rolls(model.encode_bars(real), guidance=1.0, single_line=()).reshape(real.shape)
    keep = ("UPC", "SC", "TD")
    return {
        name: {
            k: v for k, v in metrics.all_metrics(x, test.cfg.lowest_pitch, song_bars=bars).items() if k.startswith(keep)
        }
        for name, x in (("real", real), ("reconstructed", recon))
    }


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
        "whose prior_onset_thresholds / prior_count_scale (/ prior_sustain / prior_spread) to use",
    )
    ap.add_argument(
        "--reconstruction-decoding",
        default="calibrated",
        choices=("calibrated", "per-bar"),
        help="how encoded latents are decoded: 'calibrated' (the model's own) or 'per-bar' (the encode stage's "
        "per-bar thresholds and sustain, no count factor: as before calibration.reconstruction_decoding)",
    )
    args = ap.parse_args(argv)
    model = trained_model.load(args.model)
    if args.reconstruction_decoding == "per-bar":
        if "onset_thresholds_bars" not in model.stats:
            raise SystemExit(f"{args.model}: its reconstruction decoding was never calibrated")
        model = model.with_decoding(model.stats["onset_thresholds_bars"], np.ones(5), model.stats["sustain_bars"])
    if args.prior_decoding == "reconstruction":
        model = model.with_prior_decoding(model.onset_cuts, np.ones(5))
    elif args.prior_decoding != "calibrated":
        with open(args.prior_decoding) as f:
            stats = json.load(f)
        model = model.with_prior_decoding(
            stats["prior_onset_thresholds"],
            stats["prior_count_scale"],
            stats.get("prior_sustain"),
            stats.get("prior_spread", np.ones(5)),
        )
    out = provenance("realism_lpd5.py", argv)
    test = data_lib.open_dataset(args.data)["test"]
    out.update(evaluate.realism_section(model, test, songs=args.songs, bars=args.bars))
    out["pitch"] = pitch_metrics(model, test, args.songs, args.bars)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
