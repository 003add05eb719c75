"""Ablation of one drum kit per generated song (`config.DRUM_KIT`, `music.keep_kit`; docs/quality-report.md
"One drum kit per song"): rows of kit sizes, several seeds each, scored against the same real passages.

    python bench/drum_kit_ablation.py --data PREPARED --model lpd5 --kits 0 6 8 10 --seeds 0 1 2 3 \
        --out bench/results/drum_kit/ablation.json

Each seed draws 50 songs of 32 bars from the model's default prior at sigma 0.5 once, with every drum piece
(`drum_kit=0`); each row then cuts those songs' drums with `model.with_kit` as generation does (the kit is
chosen after decoding, so this is the same as drawing with `drum_kit=N`: checked on the first seed for the
model's own kit). Per row and seed, on the realism section's 50 test passages (`evaluate.realism_passages`):
the two-sample classifier on 4- and 16-bar phrases, drum pieces per song, the highest piece, the drums'
onsets per bar and onset-position TV against real (`realism.compare`), and the share of drum notes kept.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np
from provenance import provenance

from vaejax import data as data_lib
from vaejax import evaluate, prior, realism, trained_model
from vaejax.config import DRUMS
from vaejax.music import note_runs


def kit_stats(songs: np.ndarray) -> dict:
    """Drum pieces per song (median, quartiles) and the median song's highest piece (pitch index)."""
    pieces, highest = [], []
    for s in range(songs.shape[0]):
        pitch = np.unique(note_runs(songs[s, DRUMS])[0])
        if len(pitch):
            pieces.append(len(pitch))
            highest.append(int(pitch.max()))
    q = np.percentile(pieces, [25, 50, 75]).tolist() if pieces else [0, 0, 0]
    return {"pieces_q1_median_q3": q, "highest_piece_median": float(np.median(highest)) if highest else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="lpd5")
    ap.add_argument("--kits", type=int, nargs="+", default=[0, 6, 8, 10])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--passages", type=int, default=50)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument(
        "--lag-sharpness",
        type=float,
        default=prior.LAG_SHARPNESS,
        help="how many times the pointers' lag preferences count at sampling (vaejax.prior.LAG_SHARPNESS)",
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    prior.LAG_SHARPNESS = args.lag_sharpness  # read when the sampler is traced
    model = trained_model.load(args.model)
    free = model.with_options(drum_kit=0)
    test = data_lib.open_dataset(args.data)["test"]
    real = evaluate.realism_passages(test, songs=args.passages, bars=args.bars, seed=0)
    n = real.shape[1]

    def songs(x):  # [5, n, bars, T, P] -> [n, 5, steps, P]
        return np.moveaxis(x.reshape(5, n, -1, x.shape[-1]), 0, 1)

    names = realism.feature_names()
    real_songs = songs(real)
    feats = {b: realism.phrase_features(real_songs, phrase_bars=b) for b in (4, 16)}
    want = realism.rhythm_stats(real_songs)
    out = provenance("drum_kit_ablation.py", argv)
    out.update(
        model=args.model,
        passages=n,
        bars=args.bars,
        sigma=args.sigma,
        seeds=args.seeds,
        lag_sharpness=args.lag_sharpness,
    )
    out["real"] = kit_stats(real_songs)
    rows = {k: {"per_seed": []} for k in args.kits}
    for seed in args.seeds:
        drawn = free.prior_bars(args.bars, sigma=args.sigma, seed=seed, num=n)  # [5, n, bars, T, P]
        flat = drawn.reshape(5, n, -1, drawn.shape[-1])
        if seed == args.seeds[0] and model.drum_kit:
            shipped = model.prior_bars(args.bars, sigma=args.sigma, seed=seed, num=n).reshape(flat.shape)
            same = np.array_equal(shipped, model.with_kit(flat))
            assert same, "the kit cut after drawing differs from drawing with it"
        notes_all = int(sum(len(note_runs(flat[DRUMS, i])[0]) for i in range(n)))
        for k in args.kits:
            cut = model.with_options(drum_kit=k).with_kit(flat)
            gen = np.moveaxis(cut, 0, 1)
            row = {"seed": seed}
            for b, (fr, gr) in feats.items():
                fg, gg = realism.phrase_features(gen, phrase_bars=b)
                r = realism.two_sample_test(fr, fg, gr, gg, names=names, top=5)
                row[f"classifier_{b}"] = r["accuracy"]
                row[f"top_features_{b}"] = r.get("top_features", [])
            cmp = realism.compare(realism.rhythm_stats(gen), want)["Drums"]
            row.update(
                kit_stats(gen),
                drums_onset_tv=cmp["onset_tv"],
                drums_onsets_ratio=cmp["onsets_ratio"],
                drums_length_ratio=cmp["length_ratio"],
                drum_notes_kept=int(sum(len(note_runs(cut[DRUMS, i])[0]) for i in range(n))) / max(notes_all, 1),
            )
            rows[k]["per_seed"].append(row)
            print(
                f"kit {k} seed {seed}: classifier {row['classifier_4']:.3f} / {row['classifier_16']:.3f}, pieces "
                f"{row['pieces_q1_median_q3']}, highest {row['highest_piece_median']}, drums TV "
                f"{cmp['onset_tv']:.3f}, onsets {cmp['onsets_ratio']:.2f}, kept {row['drum_notes_kept']:.3f}",
                flush=True,
            )
    for row in rows.values():
        per = row["per_seed"]
        for field in ("classifier_4", "classifier_16", "drums_onset_tv", "drums_onsets_ratio", "drum_notes_kept"):
            row[f"mean_{field}"] = float(np.mean([p[field] for p in per]))
        row["mean_pieces_median"] = float(np.mean([p["pieces_q1_median_q3"][1] for p in per]))
    out["rows"] = {str(k): v for k, v in rows.items()}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    for k, row in rows.items():
        print(
            f"kit {k}: classifier {row['mean_classifier_4']:.3f} / {row['mean_classifier_16']:.3f} over "
            f"{len(args.seeds)} seeds, pieces {row['mean_pieces_median']:.1f}, drums TV "
            f"{row['mean_drums_onset_tv']:.3f}, onsets {row['mean_drums_onsets_ratio']:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
