"""Ablation of the bass decoded as one line (`config.SINGLE_LINE`, docs/quality-report.md "A bass that plays one
line"): each row a model folder decoded with a harmony weight (`config.LINE_HARMONY`), scored the same way.

    python bench/bass_line_ablation.py --data PREPARED --out bench/results/bass_line/ablation.json \
        "NAME=FOLDER[@WEIGHT]" ...

Per row: the form rows of `vaejax.evaluate.form_rows` (100 songs of 32 bars from the learned prior at sigma
0.5 against the real test passages: pitch classes per bar, tonal distance and chroma agreement to the piano,
empty bars, similarity at lag 1, the phrase ratio) and, on the realism section's 50 test passages
(`evaluate.realism_passages`), the bass's rhythm against real (`realism.compare`), the share of its sounding
steps with two or more pitches, and the two-sample classifier on 4-bar phrases. A folder whose stats.json sets
`single_line` (e.g. `[]`) decodes those tracks as one line.
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
from vaejax import evaluate, models, realism, trained_model

BASS = 3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rows", nargs="+", help="NAME=FOLDER[@WEIGHT]")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--songs", type=int, default=100, help="songs per row for the form rows")
    ap.add_argument("--passages", type=int, default=50, help="real test passages for the classifier")
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--sigma", type=float, default=0.5)
    args = ap.parse_args(argv)
    test = data_lib.open_dataset(args.data)["test"]
    real = evaluate.realism_passages(test, songs=args.passages, bars=args.bars, seed=0)
    n = real.shape[1]
    flat = real.reshape(5, -1, *real.shape[3:])

    def songs(x):
        return np.moveaxis(x.reshape(5, n, args.bars * x.shape[2], x.shape[3]), 0, 1)

    names = realism.feature_names()
    fr, gr = realism.phrase_features(songs(flat), phrase_bars=4)
    want = realism.rhythm_stats(songs(flat))
    out = provenance("bass_line_ablation.py", argv)
    out.update(rows={}, songs=args.songs, passages=n, bars=args.bars, sigma=args.sigma)
    shipped = models.LINE_HARMONY
    for spec in args.rows:
        name, folder = spec.split("=", 1)
        folder, _, weight = folder.partition("@")
        models.LINE_HARMONY = float(weight) if weight else shipped
        jax.clear_caches()  # decode_notes reads it when traced
        model = trained_model.TrainedModel(trained_model.resolve(folder)[0])
        form = evaluate.form_rows(
            model, test, songs=args.songs, bars=args.bars, sigmas=[args.sigma], priors=["transformer"]
        )
        for label, row in form["rows"].items():
            if label.startswith("real"):
                out["rows"].setdefault(label, row)
            else:
                out["rows"][name] = dict(row)
        gen = model.prior_bars(args.bars, sigma=args.sigma, seed=0, num=n).reshape(flat.shape)
        fg, gg = realism.phrase_features(songs(gen), phrase_bars=4)
        clf = realism.two_sample_test(fr, fg, gr, gg, names=names)
        bass = realism.compare(realism.rhythm_stats(songs(gen)), want)["Bass"]
        sounding = gen[BASS].sum(-1)
        out["rows"][name].update(
            {
                "line harmony": models.LINE_HARMONY,
                "one line": list(model.single_line),
                "bass prior spread": float(model.prior_spread[BASS]),
                "classifier 4 bars %": 100 * clf["accuracy"],
                "top features": clf.get("top_features", [])[:4],
                "bass two pitches at once %": 100 * float((sounding >= 2).sum() / max((sounding > 0).sum(), 1)),
                **{f"bass {k}": v for k, v in bass.items()},
            }
        )
        print(
            name,
            {
                k: v
                for k, v in out["rows"][name].items()
                if "Bass" in k or "B-P" in k or "bass" in k or "classifier" in k
            },
            flush=True,
        )
    models.LINE_HARMONY = shipped
    real_sounding = flat[BASS].sum(-1)
    out["real bass two pitches at once %"] = 100 * float((real_sounding >= 2).sum() / max((real_sounding > 0).sum(), 1))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
