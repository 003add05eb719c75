"""The whole training pipeline of the packaged model, stage by stage: measured at a short budget on this
machine, projected to the packaged `lpd5` budget (and compared with the packaged model's own training run),
and projected to the full LPD-5 (21,425 songs) on one device and on 8.

What runs, in this order:

1. `python -m vaejax.data prepare SOURCE TMP` in a child process (a fresh cache, deleted afterwards);
2. `train.py --config configs/lpd5.py --data DATA --stage S` for S = vae, encode, melody, harmony, prior,
   each in turn (the same `vaejax.cli.train_main` that train.py calls, in this process, in a temporary run
   folder and working folder), with a short budget set by `--set` (two epochs of every stage, so that the
   second epoch gives the steady cost without compilation);
3. optionally the multi-device tests (`tests/test_parallel.py`: 8 forced host devices, and two processes on
   loopback, each compared with one device step by step).

Costs per unit come from the run's own log (`metrics.jsonl`: the seconds of every epoch, validation
included) and from timers around each stage's validation and around encoding:

- a training step (VAE, chain, prior) = (last epoch's seconds - its validation) / its steps;
- a validation = the last one (the first includes compiling it);
- encoding = seconds of `run_encode` / bars encoded; the rest of the encode stage (restoring the VAEs,
  calibration on at most 2,048 held-out bars, the start-bar bank drawn from at most 20,000 bars) is fixed;
- a stage's fixed cost = its wall time - its epochs at the steady cost (start-up, compiling, checkpoints).

A stage of E epochs of S steps then takes fixed + E x (S x step + validation). The VAE and prior
validations look at a capped number of bars (4,096 and 512 windows), so they do not grow with the data; the
chains validate on every held-out bar, so theirs does.

Usage: python bench/bench_whole_pipeline.py --data PREPARED_SAMPLE --source ../shared/data/lpd_cleansed \\
    --actual PACKAGED_RUN --tests --json bench/results/whole_pipeline.json
(`--reproject bench/results/whole_pipeline.json` redoes the projections and the table from saved measurements.)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from vaejax import cli  # noqa: E402
from vaejax.config import load_config  # noqa: E402
from vaejax.training import calibration, stages  # noqa: E402

STAGE_NAMES = ("vae", "encode", "melody", "harmony", "prior")
FULL_SONGS = 21425


def lscpu() -> dict:
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    keep = (
        "Architecture",
        "Model name",
        "CPU(s)",
        "Thread(s) per core",
        "Core(s) per socket",
        "Socket(s)",
        "Hypervisor vendor",
        "L2 cache",
        "L3 cache",
    )
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in keep:
            out[key.strip()] = value.strip()
    return out


def cpu_seconds(who: int) -> float:
    r = resource.getrusage(who)
    return r.ru_utime + r.ru_stime


class Timers:
    """Timers around every stage's validation and around encoding and calibration, installed where the
    pipeline looks them up (`stages.fit`, `calibration.run_encode`, `calibration.calibrate`)."""

    def __init__(self):
        self.evals: dict[str, list[float]] = {}
        self.encode_s = self.calibrate_s = 0.0
        self.saved = (stages.fit, calibration.run_encode, calibration.calibrate)

    def install(self):
        fit, run_encode, calibrate = self.saved

        def timed_fit(stage, *args, **kwargs):
            evaluate, times = stage.evaluate, self.evals.setdefault(stage.name, [])

            def timed_evaluate(state):
                t = time.perf_counter()
                out = evaluate(state)
                times.append(time.perf_counter() - t)
                return out

            stage.evaluate = timed_evaluate
            return fit(stage, *args, **kwargs)

        def timed_encode(*args, **kwargs):
            t = time.perf_counter()
            out = run_encode(*args, **kwargs)
            self.encode_s += time.perf_counter() - t
            return out

        def timed_calibrate(*args, **kwargs):
            t = time.perf_counter()
            out = calibrate(*args, **kwargs)
            self.calibrate_s += time.perf_counter() - t
            return out

        stages.fit, calibration.run_encode, calibration.calibrate = timed_fit, timed_encode, timed_calibrate

    def remove(self):
        stages.fit, calibration.run_encode, calibration.calibrate = self.saved


def measure_prepare(source: str, workers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="whole-prep-") as tmp:
        out = os.path.join(tmp, "prep")
        cmd = [sys.executable, "-m", "vaejax.data", "prepare", source, out, "--quiet"]
        if workers:
            cmd += ["--workers", str(workers)]
        cpu0 = cpu_seconds(resource.RUSAGE_CHILDREN)
        t = time.perf_counter()
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        wall = time.perf_counter() - t
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
    return {
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0, 2),
        "songs": report["songs_read"],
        "bars": sum(report["bars_per_split"].values()),
        "workers": report.get("workers"),
        "s_per_song": wall / report["songs_read"],
    }


def short_sets(args) -> list[str]:
    sets = {
        "train.vae_epochs": 2,
        "train.max_steps_per_epoch": args.vae_steps // 2,
        "train.chain_epochs": 2,
        "prior.steps": args.prior_steps,
        "prior.epochs": 2,
    }
    out = []
    for k, v in sets.items():
        out += ["--set", f"{k}={v}"]
    for item in args.sets:
        out += ["--set", item]
    return out


def run_stages(args, data: str, config: str) -> tuple[dict, list[dict], list[str]]:
    """Train every stage at the short budget; per stage its wall and CPU seconds, validation times, and the
    run's metric records."""
    timers = Timers()
    timers.install()
    measured = {}
    home = os.getcwd()
    tmp = tempfile.mkdtemp(prefix="whole-run-")
    run = os.path.join(tmp, "run")
    argv_common = ["--config", config, "--data", data, "--run", run, "--quiet"] + short_sets(args)
    try:
        os.chdir(tmp)  # train.py marks runs/LATEST of the working folder: keep that out of the checkout
        for name in STAGE_NAMES:
            cpu0 = cpu_seconds(resource.RUSAGE_SELF)
            t = time.perf_counter()
            rc = cli.train_main(argv_common + ["--stage", name])
            wall = time.perf_counter() - t
            if rc:
                raise SystemExit(f"train.py --stage {name} failed with exit status {rc}")
            measured[name] = {
                "wall_s": round(wall, 2),
                "cpu_s": round(cpu_seconds(resource.RUSAGE_SELF) - cpu0, 2),
                "evals_s": [round(x, 3) for x in timers.evals.get(name, [])],
            }
            print(f"{name}: {wall:.1f} s wall", flush=True)
        measured["encode"]["run_encode_s"] = round(timers.encode_s, 2)
        measured["encode"]["calibrate_s"] = round(timers.calibrate_s, 2)
        from vaejax.runs import RunFolder

        records = RunFolder(run).read_metrics()
    finally:
        os.chdir(home)
        timers.remove()
        if args.keep_run:
            print(f"run folder kept: {run}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return measured, records, argv_common


def epochs_of(records: list[dict], stage: str) -> list[dict]:
    return sorted((r for r in records if r["stage"] == stage and r["kind"] == "valid"), key=lambda r: r["step"])


def unit_costs(measured: dict, records: list[dict], bars: dict) -> dict:
    """Per-unit costs of every stage from the short run."""
    out = {}
    for name in ("vae", "melody", "harmony", "prior"):
        ep = epochs_of(records, name)
        steps = [ep[0]["step"]] + [b["step"] - a["step"] for a, b in zip(ep, ep[1:])]
        evals = measured[name]["evals_s"]
        step_s = (ep[-1]["seconds"] - evals[-1]) / steps[-1]
        eval_s = evals[-1]
        fixed = measured[name]["wall_s"] - len(ep) * (steps[-1] * step_s + eval_s)
        out[name] = {
            "epochs": len(ep),
            "steps_per_epoch": steps[-1],
            "epoch_seconds": [r["seconds"] for r in ep],
            "step_s": step_s,
            "validation_s": eval_s,
            "first_epoch_extra_s": ep[0]["seconds"] - ep[-1]["seconds"],
            "fixed_s": fixed,
            "validation_grows_with_data": name in ("melody", "harmony"),
        }
    total = sum(bars.values())
    enc = measured["encode"]
    out["encode"] = {
        "bars": total,
        "s_per_bar": enc["run_encode_s"] / total,
        "encode_s": enc["run_encode_s"],
        "calibrate_s": enc["calibrate_s"],
        "fixed_s": enc["wall_s"] - enc["run_encode_s"],
    }
    return out


def budget_of(config: str, train_bars: int) -> dict:
    """Epochs and steps per epoch of every stage under a configuration file's budget."""
    cfg = load_config(config)
    tc, pc = cfg.train, cfg.prior
    full = train_bars // tc.batch_size
    vae_spe = min(full, tc.max_steps_per_epoch) if tc.max_steps_per_epoch else full
    prior_epochs = max(1, min(pc.epochs, pc.steps))
    return {
        "vae": (tc.vae_epochs, vae_spe),
        "chain_epochs": tc.chain_epochs,
        "chain_batch": tc.chain_batch_size,
        "prior": (prior_epochs, max(1, pc.steps // prior_epochs)),
        "batch": tc.batch_size,
    }


def project(units: dict, budget: dict, bars_scale: float, devices: int, *, vae_only: bool) -> dict:
    """Seconds per stage for a budget on data `bars_scale` times the sample, on `devices` ideal devices (per
    step and per validation time divided by the device count; fixed costs and encoding are not divided; with
    `vae_only`, the chains and the prior stay on one device, as the code runs them today)."""
    out = {}
    for name in ("vae", "melody", "harmony", "prior"):
        u = units[name]
        if name == "vae":
            epochs, spe = budget["vae"]
            spe = round(spe * bars_scale)
        elif name == "prior":
            epochs, spe = budget["prior"]
            spe = round(spe * bars_scale)
        else:  # the chains go through every consecutive pair of bars once an epoch
            epochs, spe = budget["chain_epochs"], round(u["steps_per_epoch"] * bars_scale)
        div = devices if (name == "vae" or not vae_only) else 1
        val = u["validation_s"] * (bars_scale if u["validation_grows_with_data"] else 1)
        loop = epochs * (spe * u["step_s"] + val) / div
        out[name] = {
            "epochs": epochs,
            "steps_per_epoch": spe,
            "loop_s": loop + u["first_epoch_extra_s"],
            "stage_s": u["fixed_s"] + loop,
        }
    e = units["encode"]
    enc_div = 1 if vae_only else devices
    out["encode"] = {
        "bars": round(e["bars"] * bars_scale),
        "stage_s": e["fixed_s"] + e["encode_s"] * bars_scale / enc_div,
    }
    return out


def actual_run(folder: str) -> dict:
    """The packaged model's training run: logged epoch seconds per stage, and each stage's wall time from the
    modification times of the files it wrote (read only)."""
    from vaejax.runs import RunFolder

    recs = RunFolder(folder).read_metrics()
    logged = {s: round(sum(r["seconds"] for r in epochs_of(recs, s)), 1) for s in ("vae", "melody", "harmony", "prior")}
    steps = {s: epochs_of(recs, s)[-1]["step"] for s in logged if epochs_of(recs, s)}

    def mtime(*parts):
        p = os.path.join(folder, *parts)
        return os.path.getmtime(p) if os.path.exists(p) else None

    marks = {
        "run started (config.json)": mtime("config.json"),
        "vae done (loss-vae.png)": mtime("loss-vae.png"),
        "encoded (latents/test.npz)": mtime("latents", "test.npz"),
        "calibrated (start_bars.npy)": mtime("start_bars.npy"),
        "melody done (loss-melody.png)": mtime("loss-melody.png"),
        "harmony done (loss-harmony.png)": mtime("loss-harmony.png"),
        "prior command started (data.txt)": mtime("data.txt"),
        "prior done (loss-prior.png)": mtime("loss-prior.png"),
    }
    m = list(marks.values())
    wall = {}
    if all(x is not None for x in m):
        wall = {
            "vae": m[1] - m[0],
            "encode": m[3] - m[1],
            "melody": m[4] - m[3],
            "harmony": m[5] - m[4],
            # a separate prior command starts at data.txt; in one run the prior follows the chains (and the
            # calibration of the reconstruction's decoding, which it then includes)
            "prior": m[7] - max(m[5], m[6]),
        }
    eps = {s: epochs_of(recs, s) for s in ("vae", "melody", "harmony", "prior")}
    budget = {
        "vae": [len(eps["vae"]), eps["vae"][-1]["step"] // len(eps["vae"])],
        "chain_epochs": len(eps["melody"]),
        "prior": [len(eps["prior"]), eps["prior"][-1]["step"] // len(eps["prior"])],
    }
    return {
        "folder": folder,
        "logged_epoch_seconds": logged,
        "steps": steps,
        "budget": budget,
        "epoch_seconds": {s: [r["seconds"] for r in e] for s, e in eps.items()},
        "wall_from_file_times_s": {k: round(v, 1) for k, v in wall.items()},
        "file_times": {
            k: datetime.datetime.fromtimestamp(v, datetime.UTC).isoformat(timespec="seconds")
            for k, v in marks.items()
            if v is not None
        },
    }


def run_tests() -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_parallel.py"]
    cpu0 = cpu_seconds(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    got = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    return {
        "command": "python -m pytest -q tests/test_parallel.py",
        "rc": got.returncode,
        "summary": got.stdout.strip().splitlines()[-1] if got.stdout.strip() else got.stderr[-300:],
        "wall_s": round(time.perf_counter() - t, 1),
        "cpu_s": round(cpu_seconds(resource.RUSAGE_CHILDREN) - cpu0, 1),
    }


def fmt(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.1f} min" if s >= 120 else f"{s:.0f} s"


def table(result: dict) -> str:
    u, p, a, short = result["units"], result["projections"], result.get("actual", {}), result["short_run"]
    cols = {
        "trained": p.get("lpd5_as_trained"),
        "config": p["lpd5_budget"],
        "one": p["full_lpd5_1_device"],
        "many": p["full_lpd5_n_devices"],
        "ideal": p["full_lpd5_n_devices_all_stages_parallel"],
    }
    logged, wall = a.get("logged_epoch_seconds", {}), a.get("wall_from_file_times_s", {})
    bud = result["budget"]
    unit = {
        "prepare": f"{result['prepare']['s_per_song'] * 1000:.2f} ms / song",
        "vae": f"{u['vae']['step_s']:.3f} s / step of {bud['batch']}; validation {u['vae']['validation_s']:.1f} s",
        "encode": f"{u['encode']['s_per_bar'] * 1e6:.0f} us / bar; calibration {u['encode']['calibrate_s']:.1f} s",
        "melody": f"{u['melody']['step_s'] * 1000:.1f} ms / step ({u['melody']['steps_per_epoch']} steps, "
        f"{u['melody']['epoch_seconds'][-1]:.1f} s an epoch)",
        "harmony": f"{u['harmony']['step_s'] * 1000:.1f} ms / step ({u['harmony']['steps_per_epoch']} steps, "
        f"{u['harmony']['epoch_seconds'][-1]:.1f} s an epoch)",
        "prior": f"{u['prior']['step_s']:.3f} s / step of {bud['prior_batch']}; validation "
        f"{u['prior']['validation_s']:.1f} s",
    }
    rows = [
        "| stage | short run here | cost per unit | packaged run's budget, projected | packaged run, logged "
        f"epochs / wall | {bud['config']} budget, projected | full LPD-5, 1 device | full LPD-5, "
        f"{p['devices']} devices |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    prep = p["prepare"]
    rows.append(
        f"| prepare | {result['prepare']['wall_s']:.1f} s | {unit['prepare']} | {fmt(prep['sample_s'])} | "
        f"- / {a.get('prepare_report_s', '-')} s | {fmt(prep['sample_s'])} | {fmt(prep['full_s'])} | "
        f"{fmt(prep['full_s'])} |"
    )
    tot = {k: prep["full_s"] if k in ("one", "many", "ideal") else prep["sample_s"] for k in cols}
    for name in STAGE_NAMES:
        act = (
            f"{logged[name]:.0f} s / {wall.get(name, 0):.0f} s"
            if name in logged
            else (f"- / {wall[name]:.0f} s" if name in wall else "-")
        )
        cell = {k: fmt(c[name]["stage_s"]) if c else "-" for k, c in cols.items()}
        rows.append(
            f"| {name} | {short[name]['wall_s']:.1f} s | {unit[name]} | {cell['trained']} | {act} | "
            f"{cell['config']} | {cell['one']} | {cell['many']} |"
        )
        for k, c in cols.items():
            tot[k] += c[name]["stage_s"] if c else 0
    act_total = sum(wall.values()) + (a.get("prepare_report_s") or 0) if wall else None
    rows.append(
        f"| **total** | {sum(short[n]['wall_s'] for n in STAGE_NAMES) + result['prepare']['wall_s']:.0f} s "
        f"| | **{fmt(tot['trained'])}** | **{fmt(act_total) if act_total else '-'}** (wall) | "
        f"**{fmt(tot['config'])}** | **{fmt(tot['one'])}** | **{fmt(tot['many'])}** ({fmt(tot['ideal'])} "
        f"if every stage were data-parallel) |"
    )
    return "\n".join(rows)


def analyse(result: dict, args) -> None:
    """Budgets, projections, the comparison with the packaged run, and the table, from the measurements."""
    config = os.path.abspath(args.config)
    units, bars, songs = result["units"], result["data"]["bars_per_split"], result["data"]["songs"]
    b = budget_of(config, bars["train"])
    cfg = load_config(config)
    result["budget"] = {
        "config": os.path.relpath(config, ROOT),
        "vae_epochs": b["vae"][0],
        "vae_steps_per_epoch": b["vae"][1],
        "batch": b["batch"],
        "chain_epochs": b["chain_epochs"],
        "prior_epochs": b["prior"][0],
        "prior_steps_per_epoch": b["prior"][1],
        "prior_batch": cfg.prior.batch_size,
    }
    scale = args.full_songs / songs
    p = {
        "bars_scale": scale,
        "devices": args.devices,
        "prepare": {
            "sample_s": result["prepare"]["s_per_song"] * songs,
            "full_s": result["prepare"]["s_per_song"] * args.full_songs,
        },
        "lpd5_budget": project(units, b, 1.0, 1, vae_only=True),
        "full_lpd5_1_device": project(units, b, scale, 1, vae_only=True),
        "full_lpd5_n_devices": project(units, b, scale, args.devices, vae_only=True),
        "full_lpd5_n_devices_all_stages_parallel": project(units, b, scale, args.devices, vae_only=False),
    }
    if args.actual:
        result["actual"] = actual_run(args.actual)
        if result["data"].get("prepare_report_s") is None:  # measurements from before the field was kept
            with open(os.path.join(result["data"]["folder"], "report.json")) as f:
                result["data"]["prepare_report_s"] = json.load(f).get("seconds")
        result["actual"]["prepare_report_s"] = result["data"]["prepare_report_s"]
        a = result["actual"]["budget"]
        as_trained = {
            "vae": tuple(a["vae"]),
            "chain_epochs": a["chain_epochs"],
            "prior": tuple(a["prior"]),
            "batch": b["batch"],
        }
        p["lpd5_as_trained"] = project(units, as_trained, 1.0, 1, vae_only=True)
        per_epoch = {}
        for name, eps in result["actual"]["epoch_seconds"].items():
            steps = (
                as_trained["vae"][1]
                if name == "vae"
                else as_trained["prior"][1]
                if name == "prior"
                else units[name]["steps_per_epoch"]
            )
            mine = steps * units[name]["step_s"] + units[name]["validation_s"]
            per_epoch[name] = {
                "projected_s": round(mine, 2),
                "packaged_run_fastest_s": min(eps),
                "packaged_run_median_s": sorted(eps)[len(eps) // 2],
                "fastest_over_projected": round(min(eps) / mine, 2),
            }
        result["actual"]["one_epoch"] = per_epoch
    p["total_minutes"] = {
        k: round(
            (p["prepare"]["full_s" if k.startswith("full") else "sample_s"] + sum(v["stage_s"] for v in p[k].values()))
            / 60,
            2,
        )
        for k in (
            "lpd5_as_trained",
            "lpd5_budget",
            "full_lpd5_1_device",
            "full_lpd5_n_devices",
            "full_lpd5_n_devices_all_stages_parallel",
        )
        if k in p
    }
    result["projections"] = p
    result["assumptions"] = [
        f"full LPD-5 has {args.full_songs} songs with as many bars per song as the sample: {scale:.2f}x the bars",
        "same number of epochs as the budget: steps per epoch (VAE, chains, prior) grow with the bars",
        "VAE and prior validations look at capped numbers of bars (4,096; 512 windows) and stay constant; the "
        "chains validate on every held-out bar and grow with the data",
        "prepare and encoding grow with the songs; calibration and each stage's start-up and compilation are fixed",
        f"{args.devices} devices: each as fast as this whole machine, data parallel with the global batch split "
        f"over them; per-step and validation time divided by {args.devices} is an ideal bound (no gradient "
        f"all-reduce, no loss of efficiency at 1/{args.devices} of the batch per device)",
        "as the code stands only the VAE stage is data-parallel (`DataParallel` in train_vae and evaluate_vae); "
        "encoding, the chains and the prior run on one device: the multi-device column keeps them at one-device "
        "speed, and the all-stages figure divides them too",
    ]
    result["table"] = table(result)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, help="a prepared cache of the LPD-cleansed sample")
    ap.add_argument("--source", default=None, help="the raw sample, to time a fresh prepare (skipped if absent)")
    ap.add_argument("--workers", type=int, default=0, help="prepare's worker processes (0: all cores)")
    ap.add_argument("--config", default=os.path.join(ROOT, "configs", "lpd5.py"), help="the budget to project")
    ap.add_argument("--vae-steps", type=int, default=60, help="VAE steps of the short run (two epochs)")
    ap.add_argument("--prior-steps", type=int, default=60, help="prior steps of the short run (two epochs)")
    ap.add_argument("--full-songs", type=int, default=FULL_SONGS)
    ap.add_argument("--devices", type=int, default=8)
    ap.add_argument("--actual", default=None, help="the packaged model's run folder, to compare with (read only)")
    ap.add_argument("--tests", action="store_true", help="also run the multi-device tests (tests/test_parallel.py)")
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="more settings of the short run (a smaller model or corpus to try the script)",
    )
    ap.add_argument("--keep-run", action="store_true")
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--reproject",
        default=None,
        metavar="JSON",
        help="measure nothing: the projections and the table again from the measurements in JSON",
    )
    args = ap.parse_args()
    if args.reproject:
        with open(args.reproject) as f:
            result = json.load(f)
        result["reprojected"] = {
            "command": "python bench/bench_whole_pipeline.py " + " ".join(sys.argv[1:]),
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        analyse(result, args)
        with open(args.json or args.reproject, "w") as f:
            f.write(json.dumps(result, indent=1) + "\n")
        print(result["table"])
        return 0
    data = os.path.abspath(args.data)
    config = os.path.abspath(args.config)
    load_before = os.getloadavg()
    started = datetime.datetime.now(datetime.UTC)
    cpu_before = cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN)
    with open(os.path.join(data, "report.json")) as f:
        report = json.load(f)
    bars = report["bars_per_split"]
    songs = report["songs_read"]
    result = {
        "command": "python bench/bench_whole_pipeline.py " + " ".join(sys.argv[1:]),
        "date": started.isoformat(timespec="seconds"),
        "lscpu": lscpu(),
        "cores": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "data": {"folder": data, "songs": songs, "bars_per_split": bars, "prepare_report_s": report.get("seconds")},
    }
    import jax

    result["jax"] = jax.__version__
    result["backend"] = jax.default_backend()
    if args.source and os.path.isdir(args.source):
        result["prepare"] = measure_prepare(args.source, args.workers)
        print(f"prepare: {result['prepare']['wall_s']} s", flush=True)
    else:  # no raw sample here: the prepare time the cache's report recorded
        result["prepare"] = {
            "wall_s": report["seconds"],
            "songs": songs,
            "s_per_song": report["seconds"] / songs,
            "from": "report.json of --data",
        }
    measured, records, argv = run_stages(args, data, config)
    result["short_run"] = measured
    result["short_run_command"] = (
        "train.py "
        + " ".join(
            "CONFIG" if a == config else "DATA" if a == data else "RUN" if a.startswith(tempfile.gettempdir()) else a
            for a in argv
        )
        + " --stage S"
    )
    result["units"] = unit_costs(measured, records, bars)
    if args.tests:
        result["multi_device_tests"] = run_tests()
        print("multi-device tests:", result["multi_device_tests"]["summary"], flush=True)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["cpu_s_total"] = round(
        cpu_seconds(resource.RUSAGE_SELF) + cpu_seconds(resource.RUSAGE_CHILDREN) - cpu_before, 1
    )
    result["wall_s_total"] = round((datetime.datetime.now(datetime.UTC) - started).total_seconds(), 1)
    analyse(result, args)
    text = json.dumps(result, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(result["table"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
