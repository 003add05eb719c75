"""How long the README's test command takes on a fresh clone: the committed tree cloned into a temporary
folder (with `../shared` beside it, as CI has it, where this checkout has one), then the command from the
README's "Set up and run the tests" block run there as written, its setup (venv and install) and its tests
timed apart; optionally the end-to-end tier CI runs after it (`-m e2e`) and the quick run (`-m "not slow"`), in
the same environment.

Usage: python bench/bench_suite.py [--e2e] [--quick] [--json bench/results/suite.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from provenance import matmul_gflops, provenance  # noqa: E402


def readme_test_command() -> str:
    """The one-line command of the README's test block."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    block = text.split("Set up and run the tests", 1)[1]
    return re.search(r"```bash\n(.+?)\n```", block, re.S).group(1).strip()


def timed(command: str, cwd: str) -> tuple[float, str]:
    t = time.perf_counter()
    r = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if r.returncode:
        raise SystemExit(f"`{command}` failed ({r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
    return elapsed, r.stdout.strip().splitlines()[-1] if r.stdout.strip() else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--e2e", action="store_true", help="also time the end-to-end tier, `python -m pytest -q -m e2e`")
    ap.add_argument("--quick", action="store_true", help='also time `python -m pytest -q -m "not slow"`')
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    command = readme_test_command()
    setup, _, tests = command.rpartition(" && ")
    assert tests.startswith("python -m pytest"), command
    work = tempfile.mkdtemp(prefix="vaejax-suite-")
    clone = os.path.join(work, "vaejax")
    try:
        subprocess.run(["git", "clone", "-q", ROOT, clone], check=True)
        shared = os.path.join(os.path.dirname(ROOT), "shared")
        if os.path.isdir(shared):
            os.symlink(shared, os.path.join(work, "shared"))
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=clone, capture_output=True, text=True).stdout
        peak = round(matmul_gflops(), 1)
        setup_s, _ = timed(setup, clone)
        activate = next(part for part in setup.split(" && ") if "activate" in part)
        tests_s, summary = timed(f"{activate} && {tests}", clone)
        out = {
            **provenance("bench_suite.py", sys.argv[1:]),
            "commit": commit.strip(),
            "readme_command": command,
            "setup_s": round(setup_s, 1),
            "tests_s": round(tests_s, 1),
            "total_s": round(setup_s + tests_s, 1),
            "tests_summary": summary,
            "matmul_gflops_before": peak,
        }
        if args.e2e:
            e2e_s, e2e = timed(f"{activate} && {tests} -m e2e", clone)
            out.update(e2e_s=round(e2e_s, 1), e2e_summary=e2e)
        if args.quick:
            quick_s, quick = timed(f"{activate} && {tests} -m 'not slow'", clone)
            out.update(quick_s=round(quick_s, 1), quick_summary=quick)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
