"""Hostile-input benchmark: the fuzz corpus of tests/fuzz_corpus.py at a larger size, each file read alone
(time and traced peak memory per file), then `prepare` over the whole corpus with reader processes (its
wall time and the peak resident memory of any of its processes).

Usage: python bench/bench_fuzz.py [--good 40] [--seed 0] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from vaejax import music  # noqa: E402

import fuzz_corpus  # noqa: E402


def _kind(reason: str) -> str:
    """A reason without its particulars (numbers, names), to count skips by kind."""
    reason = re.sub(r"\(.*", "", reason)
    return re.sub(r"[0-9][0-9.,]*", "N", reason).strip()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--good", type=int, default=40, help="good MIDI and npz songs (each with its mutations)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        good, bad = fuzz_corpus.write_corpus(os.path.join(tmp, "src"), good=args.good, seed=args.seed)
        per_file = []
        for path in good + bad:
            tracemalloc.start()
            t = time.perf_counter()
            try:
                music.read_song(path)
                outcome = "read"
            except music.BadSong as e:
                outcome = _kind(str(e))
            seconds = time.perf_counter() - t
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            per_file.append(
                {
                    "file": os.path.basename(path),
                    "good": path in good,
                    "outcome": outcome,
                    "seconds": seconds,
                    "peak_mb": peak / 2**20,
                }
            )
        code = (
            "import json, resource; from vaejax import data; "
            f"r = data.prepare({os.path.join(tmp, 'src')!r}, {os.path.join(tmp, 'out')!r}, workers=2, "
            "progress=False); "
            "hwm = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]); "
            "peak = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
            "print(json.dumps({'read': r['songs_read'], 'skipped': r['songs_skipped'], 'peak_mb': peak / 1024}))"
        )
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        prep = json.loads(out.stdout.strip().splitlines()[-1])
        prep["seconds"] = time.perf_counter() - t
    bad_rows = [r for r in per_file if not r["good"]]
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": "python bench/bench_fuzz.py " + " ".join(sys.argv[1:]),
        "files": len(per_file),
        "good": len(good),
        "bad": len(bad),
        "outcomes_of_bad_files": dict(collections.Counter(r["outcome"] for r in bad_rows).most_common()),
        "good_files_read": sum(r["good"] and r["outcome"] == "read" for r in per_file),
        "slowest_bad_file": max(bad_rows, key=lambda r: r["seconds"]),
        "largest_bad_file_peak": max(bad_rows, key=lambda r: r["peak_mb"]),
        "prepare": prep,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
