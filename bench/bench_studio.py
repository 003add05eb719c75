"""Studio benchmark in headless Chromium: page load, and the time from clicking Generate to a drawn roll with
playable audio (32 bars), medians of 5, with the packaged model; audio streamed (the default) and rendered
whole before it plays (`--whole-audio`). Reuses the browser test's driver code.

Usage: python bench/bench_studio.py [--repeats 5] [--bars 32] [--json bench/results/studio.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))

import test_studio_browser as tb  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    found = tb.find_browser()
    if isinstance(found, str):
        print(f"error: {found}", file=sys.stderr)
        return 2
    load_before = os.getloadavg()
    results = {}
    for name, flags in (("streamed", ()), ("whole", ("--whole-audio",))):  # the default, and --whole-audio
        server = tb.Server(args=flags)
        try:
            driver = tb.new_driver(*found, tempfile.mkdtemp())
            try:
                loads = [tb.open_page(driver, server.url) for _ in range(args.repeats)]
                tb.time_generate(driver, args.bars, 1, seed0=999)  # the first result of a page (warms its caches)
                results[name] = (loads, tb.time_generate(driver, args.bars, args.repeats))
            finally:
                driver.quit()
        finally:
            server.stop()
    loads, runs = results["streamed"]
    whole = results["whole"][1]
    version = subprocess.run([found[0], "--version"], capture_output=True, text=True).stdout.strip()
    out = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared: load average {load_before[0]:.1f} "
        f"before, {os.getloadavg()[0]:.1f} after)",
        "browser": version,
        "command": "python bench/bench_studio.py" + (f" --json {args.json}" if args.json else ""),
        "bars": args.bars,
        "repeats": args.repeats,
        "page_ready_ms_median": statistics.median(r["ready_ms"] for r in loads),
        "page_load_event_ms_median": statistics.median(r["load_event_ms"] for r in loads),
        "page_ready_ms": [r["ready_ms"] for r in loads],
        "generate_drawn_ms_median": statistics.median(r["drawn_ms"] for r in runs),
        "generate_playable_ms_median": statistics.median(r["ms"] for r in runs),
        "generate_drawn_ms": [r["drawn_ms"] for r in runs],
        "generate_playable_ms": [r["ms"] for r in runs],
        "whole_audio_generate_playable_ms_median": statistics.median(r["ms"] for r in whole),
        "whole_audio_generate_playable_ms": [r["ms"] for r in whole],
    }
    text = json.dumps(out, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
