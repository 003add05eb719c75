"""Two changes to how encoded latents are decoded, probed for reconstructions of unseen songs.

`bench/onset_tv_splits.py` found the reconstructions' decoding, calibrated on validation passages, far closer
to real onset positions on those songs than on others (piano 0.012 against 0.066-0.088). Each variant here
recalibrates the decoding on the validation passages as training does (`calibration.reconstruction_decoding`
from the encode stage's decoding), then measures onset TV over every validation and test song (their first 64
bars), note-on F1 over 4,096 test bars, and the realism section's classifier on the 50 test passages:

- `--variant plain`: the library's decoding (the shipped calibration, found again);
- `--variant suppress --ratio R`: on the sixteenth grid an onset cell whose probability is under R times
  that of the same pitch at the sixteenth before or after does not start a note (the decoder's doubt over
  where one note falls spread over two cells; the number of notes is still counted from every cell);
- `--variant tied`: the calibration moves the onset thresholds of four classes of sixteenths together (the
  downbeat, the other beats, the eighths between beats, the sixteenths between those), fitting the classes'
  shares rather than each sixteenth's: 4 values per track where there were 16.

Both are probes (they replace `models.decode_notes` or `calibration.fit_decoding` in this process only).

Usage: python bench/recon_decoding_probes.py --data PREPARED --variant suppress --ratio 0.6 --out FILE.json
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

import jax.numpy as jnp  # noqa: E402
from onset_tv_splits import encode_stage_decoding, pooled_tv, recalibrated  # noqa: E402
from provenance import provenance  # noqa: E402

from vaejax import data as data_lib  # noqa: E402
from vaejax import evaluate, models, realism, trained_model  # noqa: E402
from vaejax.config import TRACKS  # noqa: E402
from vaejax.training import calibration, stages  # noqa: E402

CLASSES = ([0], [4, 8, 12], [2, 6, 10, 14], list(range(1, 16, 2)))


def suppressing(decode, ratio: float):
    """`models.decode_notes` with onset cells under `ratio` times a same-pitch neighbour's probability
    left out (on a grid only; the count of notes from the unchanged probabilities)."""

    def run(probs, thresholds, draws=None, **kw):
        if probs.shape[1] == 3 and draws is None:
            on = probs[:, 1]
            prev = jnp.pad(on, ((0, 0), (1, 0), (0, 0)))[:, :-1]
            nxt = jnp.pad(on, ((0, 0), (0, 1), (0, 0)))[:, 1:]
            if kw.get("count_probs") is None:
                kw["count_probs"] = probs
            probs = probs.at[:, 1].set(jnp.where(on >= ratio * jnp.maximum(prev, nxt), on, 0.0))
        return decode(probs, thresholds, draws, **kw)

    return run


def tied(stats: dict) -> dict:
    """`rhythm_stats` with each class of sixteenths' onset shares replaced by the class's mean."""
    out = {}
    for t, c in stats.items():
        h = np.asarray(c["onset_hist"], float)
        for cl in CLASSES:
            h[cl] = h[cl].mean()
        out[t] = dict(c, onset_hist=h.tolist())
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="lpd5")
    ap.add_argument("--variant", choices=("plain", "suppress", "tied"), default="plain")
    ap.add_argument("--ratio", type=float, default=0.6, help="for --variant suppress")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    if args.variant == "suppress":
        models.decode_notes = suppressing(models.decode_notes, args.ratio)
    elif args.variant == "tied":
        fit = calibration.fit_decoding
        calibration.fit_decoding = lambda measure, want, *a, **k: fit(lambda *x: tied(measure(*x)), tied(want), *a, **k)
    ds = data_lib.open_dataset(args.data)
    base = trained_model.load(args.model)
    bars = min(stages.BARS, base.cfg.prior.context)
    tc = base.cfg.train
    passages = stages.calibration_passages(ds["valid"], bars, tc.calibrate_passages, seed=tc.seed)
    m = recalibrated(encode_stage_decoding(base), passages, ds["valid"].cfg.steps)
    out = provenance("recon_decoding_probes.py", argv)
    out.update(variant=args.variant, ratio=args.ratio if args.variant == "suppress" else None)
    out["onset_tv"] = {split: pooled_tv(m, ds[split], 64) for split in ("valid", "test")}
    rec = evaluate.reconstruction(m, ds["test"])
    out["f1"] = {t: round(rec[t]["f1"], 4) for t in TRACKS}
    real = evaluate.realism_passages(ds["test"], songs=50, bars=32, seed=0)
    flat = real.reshape(len(TRACKS), -1, *real.shape[3:])
    recon = m.rolls(m.encode_bars(flat), guidance=1.0, single_line=()).reshape(flat.shape)
    n = real.shape[1]
    sec = realism.realism(
        evaluate._songs_of(flat, n),
        {"reconstructed": evaluate._songs_of(recon, n)},
        phrase_bars=(4, 16),
        lowest_pitch=ds["test"].cfg.lowest_pitch,
        steps_per_bar=ds["test"].cfg.steps,
        seed=0,
    )
    out["classifier"] = sec["reconstructed"]["classifier"]
    out["vs_real"] = sec["reconstructed"]["vs_real"]
    fmt = lambda r: " / ".join(f"{r[t]:.3f}" for t in TRACKS)  # noqa: E731
    print(f"{args.variant}: onset TV valid {fmt(out['onset_tv']['valid'])}, test {fmt(out['onset_tv']['test'])}")
    acc = {k: round(v["accuracy"], 3) for k, v in out["classifier"].items()}
    print(f"  F1 {fmt(out['f1'])}; classifier on 4 / 16-bar phrases {acc}")
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
