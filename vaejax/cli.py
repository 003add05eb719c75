"""Command lines behind `train.py` and `sample.py` (kept here so that notebooks can call them too)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys

from vaejax.config import LATENT_SIZES, LATEST, PRESETS, RUNS_DIR, latest_run, preset

DEMO_DIR = os.path.join("data", "demo")
PREPARED_DIR = os.path.join("data", "prepared")


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
    p.add_argument("--latent", type=int, default=None, choices=LATENT_SIZES, help="latent size K")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu", "tpu"),
                   help="JAX backend; an absent one is an error, never a silent fall-back")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="model and training sizes")
    p.add_argument("--stage", default="all", choices=("all", "vae", "encode", "melody", "harmony"),
                   help="run one stage only (later stages need the earlier ones' checkpoints)")
    p.add_argument("--run", default=None, help="run directory (default: runs/<preset>-k<latent>)%(default).0s")
    p.add_argument("--vae-epochs", type=int, default=None)
    p.add_argument("--chain-epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="global batch (split over all devices)")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--beta", type=float, default=None, help="KL weight after annealing")
    p.add_argument("--free-bits", type=float, default=None, help="free nats per latent dimension")
    p.add_argument("--pos-weight", type=float, default=None, help="weight of note-on cells in the ELBO")
    p.add_argument("--chain-noise", type=float, default=None,
                   help="noise (in data standard deviations) on the latent chains' inputs while training")
    p.add_argument("--no-condition", action="store_true",
                   help="ablation: the band's VAEs do not see the piano's pitch classes")
    p.add_argument("--no-onsets", action="store_true",
                   help="ablation: decoders write the roll only (no onset channel); notes are thresholded cells")
    p.add_argument("--no-plays", action="store_true",
                   help="ablation: no 'this track plays in this segment' head; rests come from thresholds alone")
    p.add_argument("--max-steps-per-epoch", type=int, default=None, help="cap an epoch (0: whole split)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--coordinator", default=None, help="multi-host: coordinator host:port")
    p.add_argument("--num-processes", type=int, default=None, help="multi-host: number of processes")
    p.add_argument("--process-id", type=int, default=None, help="multi-host: this process's index")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="set any configuration field, e.g. --set model.hidden=512 --set train.chain_lr=3e-4 "
                        "(fields: see --print-config)")
    p.add_argument("--print-config", action="store_true",
                   help="print the full configuration this command would train with, and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    defaults = PRESETS["default"]
    for action in p._actions:  # an option that only overrides the preset shows the default preset's value
        for section in (defaults.train, defaults.model):
            if action.default is None and hasattr(section, action.dest):
                action.help = (action.help + " " if action.help else "") + \
                    f"(default preset: {getattr(section, action.dest)})"
    _no_none_defaults(p)
    return p


def _no_none_defaults(p: argparse.ArgumentParser) -> None:
    """Keep the help formatter from printing "(default: None)": such options say their default in words."""
    for action in p._actions:
        if action.default is None and action.help and "%(default)" not in action.help:
            action.help += "%(default).0s"  # formats as nothing


def parse_sets(cfg, sets: list[str]):
    """Apply `section.field=value` settings to a Config, parsing each value as its field's type."""
    import dataclasses

    out = cfg
    for item in sets:
        name, eq, value = item.partition("=")
        section, dot, field = name.strip().partition(".")
        part = getattr(out, section, None) if dot and eq else None
        if part is None or not dataclasses.is_dataclass(part) or field not in {f.name for f in dataclasses.fields(part)}:
            raise ValueError(f"--set {item!r}: expected SECTION.FIELD=VALUE with SECTION data, model or train and "
                             f"a field that --print-config lists")
        current = getattr(part, field)
        try:
            if isinstance(current, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                parsed = value.lower() in ("true", "1")
            elif isinstance(current, tuple):
                parsed = tuple(type(current[0])(v) for v in value.split(","))
            else:
                parsed = type(current)(value)
        except ValueError:
            raise ValueError(f"--set {item!r}: {value!r} is not a {type(current).__name__}") from None
        out = out.replace(**{section: {field: parsed}})
    return out


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


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
        model={k: v for k, v in {"latent": args.latent, "condition": False if args.no_condition else None,
                                 "onsets": False if args.no_onsets else None,
                                 "plays": False if args.no_plays else None}.items() if v is not None},
        train={k: v for k, v in {
            "vae_epochs": args.vae_epochs, "chain_epochs": args.chain_epochs, "batch_size": args.batch_size,
            "lr": args.lr, "beta": args.beta, "free_bits": args.free_bits, "pos_weight": args.pos_weight, "chain_noise": args.chain_noise,
            "max_steps_per_epoch": args.max_steps_per_epoch, "seed": args.seed,
            "checkpoint_every": _env_int("VAEJAX_CHECKPOINT_EVERY"), "log_every": _env_int("VAEJAX_LOG_EVERY"),
        }.items() if v is not None})
    try:
        cfg = parse_sets(cfg, args.sets)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfg.to_json())
        return 0
    run = args.run or os.path.join(RUNS_DIR, f"{args.preset}-k{cfg.model.latent}")
    try:
        data_dir = resolve_data(args.data, progress=not args.quiet)
    except Exception as e:
        from vaejax.data import PrepareError
        if isinstance(e, PrepareError):
            print(f"error: {e}", file=sys.stderr)
            return e.code
        raise
    # the prepared data defines the segment (bars per segment, pitch range, binarisation)
    with open(os.path.join(data_dir, "report.json")) as f:
        cfg = cfg.replace(data={"key_normalize": False, **json.load(f)["config"]})
    stages = training.STAGES if args.stage == "all" else (args.stage,)
    import jax
    print(f"training {', '.join(stages)} in {run} on {jax.device_count()} {devs[0].platform} device(s) "
          f"({jax.process_count()} process(es))", file=sys.stderr)
    from vaejax.checkpoint import CheckpointError
    try:
        results = training.train_all(run, cfg, data_dir, stages=stages, devices=devs, progress=not args.quiet)
    except (ValueError, FileNotFoundError, CheckpointError) as e:
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
    ours.propagate = False
    for name in ("absl", "orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)


def sample_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sample.py",
        description="Generate multitrack songs from a trained run: MIDI, a pianoroll picture and WAV audio.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="run directory, packaged model folder or packaged model name (default: the latest run, "
                        "runs/LATEST, else the packaged model lpd5)")
    p.add_argument("--bars", type=int, default=32, help="bars per song")
    p.add_argument("--sigma", type=float, default=0.5, help="noise added to latent parameters each bar")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=1, help="songs generated together")
    p.add_argument("--from", dest="source", default=None,
                   help="a MIDI or LPD npz song to vary (bar-wise noise on its latents) instead of sampling")
    p.add_argument("--arrange", default=None, help="a MIDI file whose piano part is kept; the rest is generated")
    p.add_argument("--tracks", default="drums,guitar,bass,strings",
                   help="with --arrange: the instruments to add, comma-separated")
    p.add_argument("--key", type=int, default=0,
                   help="semitones from C major / A minor for sampled songs (-6..5); given songs keep their key")
    p.add_argument("--interpolate", nargs=2, metavar=("A", "B"), default=None,
                   help="two songs (MIDI or npz) to interpolate between")
    p.add_argument("--threshold", type=float, default=None,
                   help="decoding threshold (default: per-instrument thresholds calibrated on validation data)")
    p.add_argument("--sample", action="store_true", help="draw cells from their probabilities instead")
    p.add_argument("--harmony", type=float, default=None,
                   help="how strongly the band follows the piano's pitch classes (1: as trained; default: the "
                        "model's, 4 for models trained with conditioning)")
    p.add_argument("--min-length", type=int, default=3, help="drop notes shorter than this many steps (0: keep all)")
    p.add_argument("--merge-gap", type=int, default=2, help="join notes separated by fewer steps than this (0: never)")
    p.add_argument("--tempo", type=float, default=None,
                   help="beats per minute (default: the given song's tempo, or 120 for sampled songs)")
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--no-audio", action="store_true", help="skip WAV rendering")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files of the same name in --out (default: add -2, -3, ... to new names)")
    p.add_argument("--sample-rate", type=int, default=22050, help="WAV sample rate (Hz)")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu", "tpu"))
    _no_none_defaults(p)
    return p


def sample_main(argv: list[str] | None = None) -> int:
    args = sample_parser().parse_args(argv)
    _quiet_logs()
    problems = []
    if not 1 <= args.bars <= 4096:
        problems.append(f"--bars must be from 1 to 4096, got {args.bars}")
    if not args.sigma >= 0 or args.sigma != args.sigma:
        problems.append(f"--sigma must be >= 0, got {args.sigma}")
    if not 1 <= args.num <= 1000:
        problems.append(f"--num must be from 1 to 1000, got {args.num}")
    if args.tempo is not None and not 10 <= args.tempo <= 400:
        problems.append(f"--tempo must be from 10 to 400, got {args.tempo}")
    if not 8000 <= args.sample_rate <= 96000:
        problems.append(f"--sample-rate must be from 8000 to 96000, got {args.sample_rate}")
    if args.harmony is not None and not 0 <= args.harmony <= 20:
        problems.append(f"--harmony must be from 0 to 20, got {args.harmony}")
    if not -6 <= args.key <= 5:
        problems.append(f"--key must be from -6 to 5, got {args.key}")
    if args.threshold is not None and not 0 < args.threshold < 1:
        problems.append(f"--threshold must be between 0 and 1, got {args.threshold}")
    for path in [args.source, args.arrange] + list(args.interpolate or []):
        if path is not None and not os.path.isfile(path):
            problems.append(f"{path}: no such file")
    if problems:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        return 2
    from vaejax import devices, render, sampler
    from vaejax.music import BadSong, read_song

    from vaejax.checkpoint import CheckpointError
    try:
        devices.select(args.accelerator)
        if args.checkpoint is None and latest_run() is None and sampler.DEFAULT_PRETRAINED in sampler.pretrained_names():
            print(f"note: no trained run here (runs/LATEST); using the packaged model {sampler.DEFAULT_PRETRAINED} "
                  f"(see MODEL.md)", file=sys.stderr)
        model = sampler.load(args.checkpoint)
    except (devices.AcceleratorError, sampler.NoCheckpoint, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.harmony is not None:
        model.harmony_guidance = args.harmony
    kw = dict(threshold=args.threshold, sample=args.sample, min_length=args.min_length, merge_gap=args.merge_gap)

    def song(path):
        # a given part may be in any meter: it is read on its beat grid and cut every four beats
        s = read_song(path, model.cfg.data, require_44=False)
        kw.setdefault("tempo", args.tempo or s.tempo)
        return s.roll

    try:
        if args.arrange:
            roll = song(args.arrange)
            piano = roll[1]
            if not piano.any():
                print(f"note: {args.arrange} has no piano part (programs 0-7); arranging all its pitched tracks "
                      f"as one part", file=sys.stderr)
                piano = roll[1:].any(axis=0)
            songs = [model.arrange(piano, sigma=args.sigma, seed=args.seed, tracks=args.tracks, **kw)]
            names = ["arrangement"]
        elif args.interpolate:
            songs = model.interpolate(song(args.interpolate[0]), song(args.interpolate[1]),
                                      bars=min(args.bars, 8), **kw)
            names = [f"interpolation-{i}" for i in range(len(songs))]
        elif args.source:
            songs = [model.vary(song(args.source), sigma=args.sigma, seed=args.seed, bars=args.bars, **kw)]
            names = ["variation"]
        else:
            songs = model.sample(args.bars, sigma=args.sigma, seed=args.seed, num=args.num, key=args.key,
                                 tempo=args.tempo, **kw)
            names = [f"sample-seed{args.seed}-{i}" for i in range(len(songs))]
    except BadSong as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    for mt, name in zip(songs, names):
        base = os.path.join(args.out, name)
        n = 1
        while not args.overwrite and any(os.path.exists(base + ext) for ext in (".mid", ".png", ".wav")):
            n += 1
            base = os.path.join(args.out, f"{name}-{n}")
        print(render.write_midi(base + ".mid", mt))
        print(render.plot(mt, base + ".png", title=f"{mt.name}: {name}, sigma {args.sigma}", cfg=model.cfg.data))
        if not args.no_audio:
            audio, how = render.synthesize(mt, sample_rate=args.sample_rate)
            print(render.write_wav(base + ".wav", audio, sample_rate=args.sample_rate))
        silent = render.silent_tracks(mt)
        if len(silent) == len(mt.tracks):
            print(f"warning: {name} is silent (no track has a note)", file=sys.stderr)
        elif silent:
            print(f"note: {name}: {', '.join(silent)} play no note", file=sys.stderr)
    if not args.no_audio:
        print(f"audio: {how}", file=sys.stderr)
    if model.synthetic:
        print("note: this model was trained on the SYNTHETIC demo corpus; train on LPD-5 for real music "
              "(see data/README.md)", file=sys.stderr)
    return 0
