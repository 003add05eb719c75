"""Loading benchmark: a fresh Python process that imports vaejax, loads a model and samples one 32-bar song
(compiling on first use), against loading the same model's Orbax run directory.

Usage: python bench/bench_load.py --model lpd5 [--run RUN_DIR] [--repeats 5] [--json OUT]

Each repeat is a new process, so imports and compilation are counted as a user meets them; the figures are
medians. "load" is `vaejax.load(...)` alone (imports excluded); "first song" adds the first `sample()`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD = """
import json, sys, time
t0 = time.perf_counter()
import vaejax
t1 = time.perf_counter()
model = vaejax.load(sys.argv[1])
t2 = time.perf_counter()
model.sample(bars=32, sigma=0.5, seed=0)
t3 = time.perf_counter()
model.sample(bars=32, sigma=0.5, seed=1)
t4 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "first_song": t3 - t2, "next_song": t4 - t3}))
"""


def measure(target: str, repeats: int) -> dict:
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", CHILD, target], capture_output=True, text=True, cwd=ROOT, check=True
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {
        k: {"median": statistics.median(r[k] for r in runs), "all": [round(r[k], 3) for r in runs]} for k in runs[0]
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="lpd5", help="packaged model name or folder")
    ap.add_argument("--run", default=None, help="an Orbax run directory to compare with")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        "packaged": measure(args.model, args.repeats),
    }
    if args.run:
        result["run_dir"] = measure(args.run, args.repeats)
    for name in ("packaged", "run_dir"):
        if name in result:
            print(name + ": " + ", ".join(f"{k} {v['median']:.2f} s" for k, v in result[name].items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
