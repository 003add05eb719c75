"""Sampling benchmark: one 32-bar five-track song, and 100 songs of 32 bars in one call, MIDI writing
included, warm (after one call that compiles).

Usage: python bench/bench_sample.py --run RUN_DIR [--repeats 5]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from vaejax import render, trained_model  # noqa: E402


def timed(fn, repeats):
    fn()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts), ts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    model = trained_model.load(args.run)
    tmp = tempfile.mkdtemp()
    out = {"run": args.run, "latent": model.cfg.model.latent}
    seeds = itertools.count(1)
    for num in (1, 100):

        def job(num=num):
            songs = model.sample(32, sigma=0.5, seed=next(seeds), num=num, min_length=3, merge_gap=2)
            for i, s in enumerate(songs):
                render.write_midi(os.path.join(tmp, f"{i}.mid"), s)

        med, ts = timed(job, args.repeats)
        out[f"songs_{num}"] = {"median_s": med, "runs_s": [round(t, 3) for t in ts]}
        print(
            f"{num} song(s) x 32 bars x 5 tracks, MIDI written: {med:.3f} s (median of {args.repeats}; "
            f"runs {[round(t, 3) for t in ts]})"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
