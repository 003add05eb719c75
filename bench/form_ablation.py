"""Form ablation: priors over bar latents on the same VAEs, scored the same way.

    python bench/form_ablation.py --data PREPARED --out bench/results/form_ablation.json \
        NAME=RUN[:DECODING] [NAME=RUN ...] [--songs 100] [--bars 32] [--sigmas 0.5 0.75 1.0] [--chain] \
        [--lag-sharpness 1 4] [--split test]

Each NAME=RUN is a run folder carrying a learned prior (`train.py --run RUN --stage prior`), optionally
`NAME=RUN:reconstruction` (the prior's bars decoded as reconstructions are) or `NAME=RUN:STATS.json` (another
calibration of their decoding, `calibration.prior_decoding`); its rows are
`vaejax.evaluate.form_rows` of that prior at each sigma: similarity at lags 1-16, the phrase ratio, near
repeats, empty bars and pitch classes per track, SC, QN and the tonal distances of the band to the piano,
against the real test passages (32 bars from the first bar where the piano plays). `--chain` adds the
seed's chain of the first run as the baseline rows. `--lag-sharpness` scores each prior at each of these
`vaejax.prior.LAG_SHARPNESS` values (rows named `NAME lag xW`); `--split valid` scores against validation
passages instead, where sampling settings are chosen. Songs are the decoders' raw output, in C major /
A minor (key-normalised models).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import jax
import numpy as np
from provenance import provenance

from vaejax import data as data_lib
from vaejax import evaluate, prior, trained_model


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", help="NAME=RUN")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--songs", type=int, default=100)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.5, 0.75, 1.0])
    ap.add_argument("--chain", action="store_true", help="also the seed's chain of the first run")
    ap.add_argument(
        "--lag-sharpness",
        type=float,
        nargs="+",
        default=None,
        help="score the priors at each of these sampling lag sharpnesses (default: the shipped one)",
    )
    ap.add_argument("--split", default="test", choices=("test", "valid"))
    args = ap.parse_args(argv)
    test = data_lib.open_dataset(args.data)[args.split]
    out = {
        **provenance("form_ablation.py", argv),
        "split": args.split,
        "rows": {},
    }
    shipped = prior.LAG_SHARPNESS
    for i, spec in enumerate(args.rows):
        name, run = spec.split("=", 1)
        run, _, decoding = run.partition(":")
        model = trained_model.load(run)
        if decoding == "reconstruction":  # the prior's bars decoded as reconstructions are
            model = model.with_prior_decoding(model.onset_cuts, np.ones(5))
        elif decoding:  # another calibration: a stats.json with prior_onset_thresholds / prior_count_scale
            with open(decoding) as f:
                stats = json.load(f)
            model = model.with_prior_decoding(
                stats["prior_onset_thresholds"],
                stats["prior_count_scale"],
                stats.get("prior_sustain"),
                stats.get("prior_spread", np.ones(5)),
            )
        for j, weight in enumerate(args.lag_sharpness or [prior.LAG_SHARPNESS]):
            prior.LAG_SHARPNESS = weight
            jax.clear_caches()  # the sampling kernels read it when they are traced
            tag = f"{name} lag x{weight:g}" if args.lag_sharpness else name
            priors = (["chain"] if args.chain and i == 0 and j == 0 else []) + ["transformer"]
            res = evaluate.form_rows(model, test, songs=args.songs, bars=args.bars, sigmas=args.sigmas, priors=priors)
            for label, row in res["rows"].items():
                key = label if label.startswith(("real", "chain")) else f"{tag} {label}"
                out["rows"].setdefault(key, row)
                print(key, {k: round(v, 3) for k, v in row.items()}, flush=True)
            out["real_passages"], out["songs"], out["bars"] = res["real_passages"], res["songs"], res["bars"]
        prior.LAG_SHARPNESS = shipped
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
