"""Onset-position TV between real passages of different songs, and the reconstructions' TV split by split.

Two questions behind the rhythm goals (onset TV <= 0.05 for reconstructions, <= 0.08 for generated songs,
both against the realism section's 50 test passages):

1. How far apart are real passages of *other* songs? Draws of as many passages from the validation and the
   training split (32 bars from the first bar where the piano and two more tracks play, as the realism
   section takes them) against the same test passages: what a set drawn from a model of the training songs
   could reach at best.
2. Does the reconstructions' decoding, calibrated on validation passages, carry over to unseen songs? Every
   song of the validation and test splits (its first `--song-bars` bars, every bar encoded and decoded as the
   realism section does) against the same bars, pooled over the split; and the songs whose leaving out moves
   the pooled TV most (a split's TV is a sum over a few dozen songs, and some songs weigh heavily).
3. In-sample or not? The reconstructions' decoding calibrated again, as training calibrates it, on the
   passages of one half of the validation songs (even / odd song index), starting from the encode stage's
   decoding, and measured on that half, on the other half and on the test songs.

Usage: python bench/onset_tv_splits.py --data PREPARED --model lpd5 --out bench/results/onset_tv_splits.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from provenance import provenance  # noqa: E402

from vaejax import data as data_lib  # noqa: E402
from vaejax import evaluate, realism, trained_model  # noqa: E402
from vaejax.config import TRACKS  # noqa: E402
from vaejax.training import calibration, stages  # noqa: E402


def passage_stats(passages: np.ndarray, steps_per_bar: int) -> dict:
    """`rhythm_stats` of passages `[5, S, bars, T, P]`."""
    songs = np.moveaxis(passages, 0, 1)
    return realism.rhythm_stats(songs.reshape(*songs.shape[:2], -1, songs.shape[-1]), steps_per_bar=steps_per_bar)


def tv(stats: dict, real: dict) -> dict:
    return {t: round(c["onset_tv"], 4) for t, c in realism.compare(stats, real).items()}


def reconstructed_songs(model, split: data_lib.Split, bars: int, songs=None):
    """Per song of `split` (`songs`: indices, None for every one; those of at least 8 bars): (`rhythm_stats`
    of its first `bars` bars, of their reconstruction), reconstructed as the realism section does (sigma 0,
    the band under the decoded piano, decoded as trained)."""
    per_bar = split.cfg.steps
    real, recon = [], []
    for i in range(len(split.start)) if songs is None else songs:
        song = split.song(i)[:, :bars]  # [5, n, T, P]
        if song.shape[1] < 8:
            continue
        rec = model.rolls(model.encode_bars(song), guidance=1.0, single_line=()).reshape(song.shape)
        for rolls, out in ((song, real), (rec, recon)):
            out.append(realism.rhythm_stats(rolls.reshape(1, len(TRACKS), -1, song.shape[-1]), steps_per_bar=per_bar))
    return real, recon


def pooled_tv(model, split: data_lib.Split, bars: int, songs=None) -> dict:
    real, recon = reconstructed_songs(model, split, bars, songs)
    return tv(realism.pool_stats(recon), realism.pool_stats(real))


def half_passages(split: data_lib.Split, songs, segments: int) -> np.ndarray:
    """Consecutive `segments`-bar passages `[S, 5, segments, T, P]` of the given songs (as
    `stages.calibration_passages` cuts a whole split)."""
    where = [(i, f) for i in songs for f in range(0, int(split.length[i]) - segments + 1, segments)]
    return np.stack([split.song(i)[:, f : f + segments] for i, f in where])


def encode_stage_decoding(model):
    """`model` decoding encoded latents as its encode stage calibrated them, where the reconstructions'
    calibration starts (`stages.calibrate_reconstruction`)."""
    stats = model.stats
    ones = np.ones(len(TRACKS))
    return model.with_decoding(stats["onset_thresholds_bars"], ones, stats["sustain_bars"], ones)


def recalibrated(start, passages: np.ndarray, steps_per_bar: int):
    """`start` with the reconstructions' decoding calibrated on `passages` `[S, 5, bars, T, P]` as training
    calibrates it."""
    want = realism.rhythm_stats(
        passages.reshape(*passages.shape[:2], -1, passages.shape[-1]), steps_per_bar=steps_per_bar
    )
    cuts, scale, sustain, spread, _, ages = calibration.reconstruction_decoding(start, passages, want)
    return start.with_decoding(cuts, scale, ages if ages is not None else sustain, spread)


def crossfit(model, ds: dict, bars: int, song_bars: int) -> dict:
    """Question 3 of the module docstring."""
    start = encode_stage_decoding(model)
    valid, n = ds["valid"], len(ds["valid"].start)
    halves = {"even": list(range(0, n, 2)), "odd": list(range(1, n, 2))}
    out = {
        "encode stage's decoding": {
            "validation": pooled_tv(start, valid, song_bars),
            "test": pooled_tv(start, ds["test"], song_bars),
        }
    }
    for fit, other in (("even", "odd"), ("odd", "even")):
        p = half_passages(valid, halves[fit], bars)
        m = recalibrated(start, p, valid.cfg.steps)
        out[f"calibrated on the {fit} validation songs ({len(p)} passages)"] = {
            "those songs": pooled_tv(m, valid, song_bars, halves[fit]),
            "the other validation songs": pooled_tv(m, valid, song_bars, halves[other]),
            "test": pooled_tv(m, ds["test"], song_bars),
        }
    return out


def heaviest_songs(real: list, recon: list, track: str, top: int = 5) -> list:
    """The songs whose leaving out lowers `track`'s pooled reconstruction TV most: [(index among the kept
    songs, TV without it, its notes)]."""
    full = tv(realism.pool_stats(recon), realism.pool_stats(real))[track]
    drops = []
    for j in range(len(real)):
        rest = [k for k in range(len(real)) if k != j]
        without = tv(realism.pool_stats([recon[k] for k in rest]), realism.pool_stats([real[k] for k in rest]))[track]
        drops.append((full - without, j, without, real[j][track]["notes"]))
    drops.sort(reverse=True)
    return [{"song": j, "tv_without": round(w, 4), "notes": n} for _, j, w, n in drops[:top]]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="lpd5")
    ap.add_argument("--songs", type=int, default=50, help="passages per set (the realism section's 50)")
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2], help="seeds of the other splits' draws")
    ap.add_argument("--song-bars", type=int, default=64, help="bars of each song reconstructed (question 2)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    ds = data_lib.open_dataset(args.data)
    per_bar = ds["test"].cfg.steps
    out = provenance("onset_tv_splits.py", argv)
    test = passage_stats(evaluate.realism_passages(ds["test"], songs=args.songs, bars=args.bars, seed=0), per_bar)

    def other(split, seed):
        return evaluate.realism_passages(ds[split], songs=args.songs, bars=args.bars, seed=seed)

    out["real passages of other songs vs the test passages"] = {
        split: {str(seed): tv(passage_stats(other(split, seed), per_bar), test) for seed in args.draws}
        for split in ("valid", "train")
    }
    for split, rows in out["real passages of other songs vs the test passages"].items():
        for seed, row in rows.items():
            print(f"real {split} draw {seed} vs test: " + " / ".join(f"{row[t]:.3f}" for t in TRACKS), flush=True)
    model = trained_model.load(args.model)
    out["model"] = args.model
    out["reconstructed songs"] = {}
    for split in ("valid", "test"):
        real, recon = reconstructed_songs(model, ds[split], args.song_bars)
        row = {
            "songs": len(real),
            "onset_tv": tv(realism.pool_stats(recon), realism.pool_stats(real)),
            "heaviest songs, piano": heaviest_songs(real, recon, "Piano"),
            "heaviest songs, bass": heaviest_songs(real, recon, "Bass"),
        }
        out["reconstructed songs"][split] = row
        print(f"reconstructed {split} ({len(real)} songs): " + " / ".join(f"{row['onset_tv'][t]:.3f}" for t in TRACKS))
        heavy = ", ".join(f"{h['tv_without']:.3f}" for h in row["heaviest songs, piano"])
        print("  piano without its heaviest songs: " + heavy)
    passage_bars = min(stages.BARS, model.cfg.prior.context)  # as training cuts its calibration passages
    out["calibration in and out of sample"] = crossfit(model, ds, passage_bars, args.song_bars)
    for name, row in out["calibration in and out of sample"].items():
        print(name + ": " + "; ".join(f"{k} " + " / ".join(f"{v[t]:.3f}" for t in TRACKS) for k, v in row.items()))
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
