"""Memory budgets, measured: the peak resident memory of

1. reading one file (each in a fresh process: its VmHWM above the process's size before the read), for the
   costliest files the caps admit: the fuzz corpus's budget cases, a song at the bar cap, a MIDI file at the
   note cap and one at the byte cap;
2. `prepare` as a whole: the sum of the resident memory of it and its reader processes, sampled every 50 ms,
   over the fuzz corpus plus the budget cases;
3. one `sample.py` call (the process's VmHWM): long songs, many songs (generated in groups), audio, and the
   arrangement of a 4,000-bar part.

Usage: python bench/bench_budget.py [--quick] [--reads-only] [--json bench/results/budget.json]
(`--reads-only` measures part 1 again and replaces it in an existing JSON file.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import numpy as np  # noqa: E402

from vaejax import config, data, music  # noqa: E402

import fuzz_corpus  # noqa: E402

_HWM = "int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]) / 1024"
_RSS = "int(next(l for l in open('/proc/self/status') if l.startswith('VmRSS')).split()[1]) / 1024"


def read_peak(path: str) -> dict:
    """Peak of one read in a fresh process, above what the process held after its imports."""
    code = (
        f"import json, time; from vaejax import music; import pretty_midi, mido; base = {_RSS}; "
        f"t = time.perf_counter()\n"
        f"try:\n  s = music.read_song({path!r}); out = 'read'\n"
        f"except music.BadSong as e:\n  out = str(e)\n"
        f"print(json.dumps({{'outcome': out, 'peak_mb': {_HWM} - base, 'base_mb': base, "
        f"'seconds': time.perf_counter() - t}}))"
    )
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=600)
    if got.returncode:
        return {"outcome": f"process failed: {got.stderr[-300:]}"}
    return json.loads(got.stdout.strip().splitlines()[-1])


def _tree_rss(pid: int) -> float:
    """MiB resident in `pid` and all its descendants."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS")), 0)
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return total / 1024


def tree_peak(cmd: list[str], env=None) -> dict:
    """Run `cmd`; the peak over time of its process tree's summed resident memory, its wall time, exit code."""
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(proc.pid))
        time.sleep(0.05)
    out, err = proc.communicate()
    return {
        "peak_mb": round(peak, 1),
        "seconds": round(time.perf_counter() - t, 1),
        "rc": proc.returncode,
        "stderr_tail": err.strip().splitlines()[-1:] if proc.returncode else [],
    }


def long_midi(path: str, bars: int, notes_per_bar: int = 8) -> None:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    inst = pretty_midi.Instrument(program=0)
    rng = np.random.default_rng(0)
    for b in range(bars):
        for k in range(notes_per_bar):
            s = b * 2.0 + k * 2.0 / notes_per_bar
            inst.notes.append(pretty_midi.Note(velocity=90, pitch=int(rng.integers(48, 84)), start=s, end=s + 0.2))
    pm.instruments.append(inst)
    pm.write(path)


def cc_midi(path: str, target_bytes: int) -> None:
    """A MIDI file just under the byte cap made of controller events (no notes but a few)."""
    events = (target_bytes - 100) // 4
    body = b"\x00\xc0\x00" + b"\x00\x90\x3c\x40\x10\x80\x3c\x00" + b"\x01\xb0\x07\x40" * events + b"\x00\xff\x2f\x00"
    with open(path, "wb") as f:
        f.write(fuzz_corpus.midi([body]))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller generation cases")
    ap.add_argument("--reads-only", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": "python bench/bench_budget.py"
        + (" --quick" if args.quick else "")
        + (f" --json {args.json}" if args.json else ""),
        "budgets_mb": {
            "read_one_file": music.READ_BUDGET_MB,
            "prepare": data.PREPARE_BUDGET_MB,
            "generation": config.GENERATION_BUDGET_MB,
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, blob in fuzz_corpus.budget_cases().items():
            files[name] = os.path.join(tmp, f"{name}.npz")
            with open(files[name], "wb") as f:
                f.write(blob)
        files["bar-cap-midi"] = os.path.join(tmp, "long.mid")
        long_midi(files["bar-cap-midi"], 4000, 4)
        files["note-cap-midi"] = os.path.join(tmp, "dense.mid")
        long_midi(files["note-cap-midi"], 3000, 64)
        files["byte-cap-cc-midi"] = os.path.join(tmp, "cc.mid")
        cc_midi(files["byte-cap-cc-midi"], music.MAX_MIDI_BYTES - 1024)
        result["read_one_file"] = {name: {"bytes": os.path.getsize(p), **read_peak(p)} for name, p in files.items()}
        print(json.dumps(result["read_one_file"], indent=1), flush=True)
        if args.reads_only:
            with open(args.json) as f:
                old = json.load(f)
            old["read_one_file"] = result["read_one_file"]
            old["read_command"] = "python bench/bench_budget.py --reads-only --json " + args.json
            with open(args.json, "w") as f:
                f.write(json.dumps(old, indent=1) + "\n")
            return 0

        src = os.path.join(tmp, "src")
        fuzz_corpus.write_corpus(src, good=10, seed=0)
        for name in ("dense-members", "json-objects"):
            for i in range(3):  # several at once: readers read them side by side
                os.link(files[name], os.path.join(src, f"{name}-{i}.npz"))
        cmd = [
            sys.executable,
            "-m",
            "vaejax.data",
            "prepare",
            src,
            os.path.join(tmp, "prep"),
            "--quiet",
            "--workers",
            "2",
        ]
        result["prepare"] = {
            "command": "python -m vaejax.data prepare FUZZ_CORPUS+BUDGET_CASES OUT --workers 2",
            **tree_peak(cmd),
        }
        print(json.dumps(result["prepare"]), flush=True)

        sample = [sys.executable, "sample.py", "--checkpoint", "lpd5"]
        cases = {
            "32 bars with audio (the default)": ["--bars", "32"],
            "256 bars with audio": ["--bars", "256"],
            "1024 bars, no audio": ["--bars", "1024", "--no-audio"],
            "4096 bars, no audio": ["--bars", "4096", "--no-audio"],
            "48 songs of 128 bars, --memory-budget 600 (groups)": [
                "--bars",
                "128",
                "--num",
                "48",
                "--no-audio",
                "--memory-budget",
                "600",
            ],
            "arrange a 4000-bar part, no audio": ["--arrange", files["bar-cap-midi"], "--no-audio"],
        }
        if args.quick:
            cases = {k: v for k, v in cases.items() if "4096" not in k and "4000" not in k and "48" not in k}
        result["generation"] = {}
        for name, extra in cases.items():
            out = os.path.join(tmp, "out-" + str(len(result["generation"])))
            got = tree_peak(sample + extra + ["--out", out])
            got["songs"] = len([f for f in os.listdir(out) if f.endswith(".mid")]) if os.path.isdir(out) else 0
            result["generation"][name] = {
                "command": "python sample.py " + " ".join(a if not a.startswith(tmp) else "LONG.mid" for a in extra),
                **got,
            }
            print(name, json.dumps(got), flush=True)
        base = tree_peak([sys.executable, "-c", "import vaejax; m = vaejax.load('lpd5'); m.sample(2)"])
        result["generation_baseline"] = {"what": "load the packaged model and sample 2 bars in a process", **base}
    text = json.dumps(result, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
