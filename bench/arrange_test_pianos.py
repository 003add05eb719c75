"""Arranging held-out LPD piano parts: does the added band play as often, and as close to the piano, as the
real band of the same passages?

    python bench/arrange_test_pianos.py --data PREPARED --model lpd5 --songs 40 \
        --out bench/results/arrange_test_pianos.json

For each of the first `--songs` test-split passages (32 bars from the first bar where the piano plays), the
piano part alone goes to `TrainedModel.arrange` (raw output, sigma 0.5), once with each prior; the rows give
the share of bars where drums / guitar / bass / strings play, and the tonal distance (TD) and chroma
agreement (CA) of guitar, bass and strings with the piano, beside the real band of the same passages.
The learned prior's first row arranges with the default `density` ("data": the training data's shares);
`--density` adds a row for each other value (a share, or "none" for the prior's own plays bits). Every row
also gives the spread of the share between passages ("sd").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from provenance import provenance

from vaejax import data as data_lib
from vaejax import evaluate, metrics, music, trained_model
from vaejax.config import TRACKS

BAND = ("Drums", "Guitar", "Bass", "Strings")
KEYS = ("TD G-P", "TD B-P", "TD S-P", "CA G-P", "CA B-P", "CA S-P")


def row(bars5: np.ndarray, lowest: int, songs: int) -> dict:
    m = metrics.all_metrics(bars5, lowest)
    out = {f"plays % {t}": 100 - m[f"EB {t}"] for t in BAND}
    per_song = bars5.reshape(5, songs, -1, *bars5.shape[2:]).any(axis=(3, 4)).mean(2)  # [5, songs]
    out.update({f"plays % sd {t}": 100 * float(per_song[TRACKS.index(t)].std()) for t in BAND})
    out.update({k: m[k] for k in KEYS})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="lpd5")
    ap.add_argument("--songs", type=int, default=40)
    ap.add_argument("--sigma", type=float, default=0.5)
    ap.add_argument(
        "--density",
        nargs="*",
        default=[],
        type=trained_model.parse_density,
        help='"none", a share, or TRACK=SHARE pairs',
    )
    ap.add_argument("--chain", action=argparse.BooleanOptionalAction, default=True, help="a row of the chain")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    model = trained_model.load(args.model)
    test = data_lib.open_dataset(args.data)["test"]
    cfg = model.cfg.data
    real = evaluate.real_passages(test, 32)[: args.songs]  # [S, 5, 32, T, P]
    flat = real.transpose(1, 0, 2, 3, 4).reshape(5, -1, *real.shape[3:])
    rows = {"real band": row(flat, cfg.lowest_pitch, len(real))}
    default = trained_model.DENSITY
    runs = [("transformer", default)] if model.prior is not None else []
    runs += [("transformer", d) for d in args.density if model.prior is not None and d != default]
    runs += [("chain", default)] if args.chain or model.prior is None else []
    for prior, density in runs:
        got = []
        t0 = time.perf_counter()
        for i, song in enumerate(real):
            mt = model.arrange(
                song[1].reshape(-1, song.shape[-1]),
                sigma=args.sigma,
                seed=i,
                prior=prior,
                density=density,
                min_length=0,
                merge_gap=0,
            )
            got.append(music.to_bars(music.from_multitrack(mt, cfg), cfg).transpose(1, 0, 2, 3)[:, :32])
        name = f"arranged, {prior}" + ("" if density == default else f", density {density}")
        rows[name] = {
            **row(np.concatenate(got, axis=1), cfg.lowest_pitch, len(real)),
            "seconds": time.perf_counter() - t0,
        }
    out = {
        **provenance("arrange_test_pianos.py", argv),
        "passages": int(len(real)),
        "sigma": args.sigma,
        "rows": rows,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=float)
    for name, r in rows.items():
        print(f"{name:24s}", " ".join(f"{k}={v:.2f}" for k, v in r.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
