"""Sampling benchmark: one 32-bar five-track song, and 100 songs of 32 bars in one call, warm (after one
call that compiles): the songs as Multitracks ("sampled"), and the same with their MIDI files written.

Usage: python bench/bench_sample.py --run RUN_DIR [--repeats 5] [--compare OTHER_RUN] [--json OUT]

`--compare` times a second model the same way, interleaved with the first (every repeat runs each in turn),
so that the ratio holds on a machine whose speed varies. The f32 matrix product's speed is timed in the same
run, to name the machine's state beside the absolute figures.
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

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from provenance import matmul_gflops  # noqa: E402

from vaejax import render, trained_model  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--compare", default=None, help="a second model, timed interleaved with the first")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    models = {args.run: trained_model.load(args.run)}
    if args.compare:
        models[args.compare] = trained_model.load(args.compare)
    tmp = tempfile.mkdtemp()
    seeds = itertools.count(1)
    out = {"run": args.run, "latent": models[args.run].cfg.model.latent, "matmul_gflops_before": matmul_gflops()}
    times = {(name, num, part): [] for name in models for num in (1, 100) for part in ("sampled", "midi")}

    def job(model, num):
        t = time.perf_counter()
        songs = model.sample(32, sigma=0.5, seed=next(seeds), num=num, min_length=3, merge_gap=2)
        mid = time.perf_counter()
        for i, s in enumerate(songs):
            render.write_midi(os.path.join(tmp, f"{i}.mid"), s)
        return mid - t, time.perf_counter() - t

    for num in (1, 100):
        for model in models.values():
            job(model, num)  # compiles
        for _ in range(args.repeats):
            for name, model in models.items():
                sampled, total = job(model, num)
                times[name, num, "sampled"].append(sampled)
                times[name, num, "midi"].append(total)
    out["matmul_gflops_after"] = matmul_gflops()
    for name in models:
        row = {}
        for num in (1, 100):
            for part, label in (("sampled", "sampled"), ("midi", "MIDI written")):
                ts = times[name, num, part]
                row[f"songs_{num}_{part}"] = {"median_s": statistics.median(ts), "runs_s": [round(t, 3) for t in ts]}
                print(
                    f"{name}: {num} song(s) x 32 bars x 5 tracks, {label}: {statistics.median(ts):.3f} s "
                    f"(median of {args.repeats}; runs {[round(t, 3) for t in ts]})"
                )
        if name == args.run:
            # the keys earlier versions of this file wrote (the README and BENCHMARKS read them)
            row["songs_1"] = row["songs_1_midi"]
            row["songs_100"] = row["songs_100_midi"]
            out.update(row)
        else:
            out["compare"] = {"run": name, **row}
    if args.compare:
        a = np.median(times[args.run, 100, "sampled"])
        b = np.median(times[args.compare, 100, "sampled"])
        out["ratio_100_sampled"] = float(a / b)
        print(f"100 songs sampled: {args.run} takes {a / b:.2f}x the time of {args.compare}")
    print(f"f32 2048^3 matrix product: {out['matmul_gflops_before']:.0f} / {out['matmul_gflops_after']:.0f} GFLOP/s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
