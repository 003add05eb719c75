"""Command lines behind `train.py` and `sample.py` (kept here so that notebooks can call them too)."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys

from vaejax.config import LATENT_SIZES, PRESETS, preset

DEMO_DIR = os.path.join("data", "demo")
PREPARED_DIR = os.path.join("data", "prepared")
RUNS_DIR = "runs"
LATEST = os.path.join(RUNS_DIR, "LATEST")


def resolve_data(data: str | None, *, progress: bool = True) -> str:
    """A prepared dataset folder for `--data`: prepared as given, a raw folder (prepared on the fly, cached
    under data/prepared/), or nothing (the SYNTHETIC demo corpus, written under data/demo/)."""
    from vaejax import data as data_lib

    if data is None:
        from vaejax import demo
        if not os.path.exists(os.path.join(DEMO_DIR, "SYNTHETIC")):
            print(f"no --data given: writing the SYNTHETIC demo corpus to {DEMO_DIR}/", file=sys.stderr)
        demo.write_corpus(DEMO_DIR)
        data = DEMO_DIR
    if os.path.exists(os.path.join(data, "report.json")) and os.path.exists(os.path.join(data, "train.bars")):
        return data
    tag = hashlib.sha1(os.path.abspath(data).encode()).hexdigest()[:8]
    out = os.path.join(PREPARED_DIR, f"{os.path.basename(os.path.normpath(data))}-{tag}")
    report = data_lib.prepare(data, out, progress=progress)
    print(data_lib.summary(report), file=sys.stderr)
    return out


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train.py",
        description="Train the five instrument VAEs, then MelodyNN and the four HarmonyNNs. Re-running the "
                    "same command resumes from the last checkpoint of the run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data", default=None,
                   help="prepared dataset (python -m vaejax.data prepare) or a raw folder of LPD npz / MIDI "
                        "files (prepared on the fly); default: the offline SYNTHETIC demo corpus")
    p.add_argument("--latent", type=int, default=None, choices=LATENT_SIZES, help="latent size K (preset: 16)")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu", "tpu"),
                   help="JAX backend; an absent one is an error, never a silent fall-back")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="model and training sizes")
    p.add_argument("--stage", default="all", choices=("all", "vae", "encode", "melody", "harmony"),
                   help="run one stage only (later stages need the earlier ones' checkpoints)")
    p.add_argument("--run", default=None, help="run directory (default: runs/<preset>-k<latent>)")
    p.add_argument("--vae-epochs", type=int, default=None)
    p.add_argument("--chain-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="global batch (split over all devices)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--beta", type=float, default=None, help="KL weight after annealing")
    p.add_argument("--free-bits", type=float, default=None, help="free nats per latent dimension")
    p.add_argument("--pos-weight", type=float, default=None, help="weight of note-on cells in the ELBO")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap an epoch (0: whole split)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--coordinator", default=None, help="multi-host: coordinator host:port")
    p.add_argument("--num-processes", type=int, default=None, help="multi-host: number of processes")
    p.add_argument("--process-id", type=int, default=None, help="multi-host: this process's index")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    _quiet_logs()
    from vaejax import devices, training

    try:
        if devices.maybe_initialize_distributed(args.coordinator, args.num_processes, args.process_id):
            print(f"process {args.process_id}: joined a job of {args.num_processes} processes", file=sys.stderr)
        devs = devices.select(args.accelerator)
    except devices.AcceleratorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cfg = preset(args.preset)
    cfg = cfg.replace(
        model={"latent": args.latent} if args.latent else {},
        train={k: v for k, v in {
            "vae_epochs": args.vae_epochs, "chain_epochs": args.chain_epochs, "batch_size": args.batch_size,
            "lr": args.lr, "beta": args.beta, "free_bits": args.free_bits, "pos_weight": args.pos_weight,
            "max_steps_per_epoch": args.max_steps_per_epoch, "seed": args.seed}.items() if v is not None})
    run = args.run or os.path.join(RUNS_DIR, f"{args.preset}-k{cfg.model.latent}")
    try:
        data_dir = resolve_data(args.data, progress=not args.quiet)
    except Exception as e:
        from vaejax.data import PrepareError
        if isinstance(e, PrepareError):
            print(f"error: {e}", file=sys.stderr)
            return e.code
        raise
    stages = training.STAGES if args.stage == "all" else (args.stage,)
    print(f"training {', '.join(stages)} in {run} on {len(devs)} {devs[0].platform} device(s)", file=sys.stderr)
    try:
        results = training.train_all(run, cfg, data_dir, stages=stages, devices=devs, progress=not args.quiet)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(RUNS_DIR, exist_ok=True)
    with open(LATEST, "w") as f:
        f.write(os.path.abspath(run) + "\n")
    for stage, val in results.items():
        shown = {k: round(v, 4) for k, v in val.items() if isinstance(v, float) and not k.startswith(("on_", "f1@"))}
        print(f"{stage}: {shown}")
    print(f"run directory: {run}")
    return 0


def _quiet_logs() -> None:
    """Our progress lines at INFO; checkpoint libraries' chatter only from WARNING up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("vaejax")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    for name in ("absl", "orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)


def latest_run() -> str | None:
    if os.path.exists(LATEST):
        with open(LATEST) as f:
            path = f.read().strip()
        if os.path.isdir(path):
            return path
    return None
