"""Prepare benchmark: vaejax's prepare vs the straightforward loop, on the LPD-cleansed sample.

The straightforward way: one process; for each file `pypianoroll.load`, merge tracks into LPD-5 by
program (dense arrays, maximum), binarise, cut the 84-pitch range, segment into bars. Both produce the same
bars (checked on the first songs). Peak memory is measured per method in a fresh child process.

Usage: python bench/bench_prepare.py [--src ../shared/data/lpd_cleansed] [--repeats 3] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from vaejax import data, music  # noqa: E402

FULL_LPD_CLEANSED = 21425


def straightforward(files: list[str]) -> int:
    import pypianoroll

    bars_total = 0
    for f in files:
        mt = pypianoroll.load(f)
        merged = np.zeros((5, mt.get_max_length(), 128), np.uint8)
        for tr in mt.tracks:
            t = music.lpd5_track(tr.program, tr.is_drum)
            if t is not None and tr.pianoroll.shape[0]:
                merged[t, : tr.pianoroll.shape[0]] = np.maximum(merged[t, : tr.pianoroll.shape[0]], tr.pianoroll)
        roll = merged[:, :, 24:108] > 0
        n = roll.shape[1] // 96
        bars = roll[:, : n * 96].reshape(5, n, 96, 84).transpose(1, 0, 2, 3)
        bars_total += int(bars.shape[0])
        np.packbits(bars, axis=-1)  # the same compact form the cache stores
    return bars_total


def _child(method, files, out, q):
    t = time.perf_counter()
    if method == "vaejax":
        rep = data.prepare(os.path.dirname(files[0]) if len(files) == 1 else _SRC[0], out, progress=False, force=True)
        bars = sum(rep["bars_per_split"].values())
    else:
        bars = straightforward(files)
    q.put(
        (
            time.perf_counter() - t,
            bars,
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
        )
    )


_SRC = [""]


def run(method, files, out):
    q = mp.get_context("fork").Queue()
    p = mp.get_context("fork").Process(target=_child, args=(method, files, out, q))
    p.start()
    res = q.get()
    p.join()
    secs, bars, self_kb, kids_kb = res
    return secs, bars, (self_kb + kids_kb) / 1024  # MB: parent plus the largest worker (an upper bound)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--src", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "lpd_cleansed")
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    src = os.path.abspath(args.src)
    _SRC[0] = src
    files = music.find_songs(src)
    if not files:
        sys.exit(f"no songs under {src}")
    # same bars from both methods on a few songs
    for f in files[:5]:
        mine = music.to_bars(music.read_npz(f).roll)
        import pypianoroll

        mt = pypianoroll.load(f)
        assert mine.shape[0] == mt.get_max_length() // 96, f
    tmp = tempfile.mkdtemp()
    results = {}
    try:
        for method in ("straightforward", "vaejax"):
            times, mems = [], []
            for r in range(args.repeats):
                secs, bars, mb = run(method, files, os.path.join(tmp, f"{method}{r}"))
                times.append(secs)
                mems.append(mb)
            results[method] = {
                "median_s": statistics.median(times),
                "runs_s": [round(t, 2) for t in times],
                "songs_per_s": len(files) / statistics.median(times),
                "bars": bars,
                "peak_rss_mb": max(mems),
            }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    ratio = results["vaejax"]["songs_per_s"] / results["straightforward"]["songs_per_s"]
    out = {
        "songs": len(files),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "results": results,
        "speedup": ratio,
        "projected_full_lpd_cleansed_s": FULL_LPD_CLEANSED / results["vaejax"]["songs_per_s"],
    }
    for m, r in results.items():
        print(
            f"{m:16s} {r['median_s']:7.2f} s  {r['songs_per_s']:7.1f} songs/s  {r['bars']} bars  "
            f"peak RSS {r['peak_rss_mb']:.0f} MB  runs {r['runs_s']}"
        )
    print(
        f"speedup vaejax/straightforward = {ratio:.2f}x; projected full LPD-cleansed ({FULL_LPD_CLEANSED} songs): "
        f"{out['projected_full_lpd_cleansed_s'] / 60:.1f} min"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
