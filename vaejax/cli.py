"""Command lines behind `train.py`, `sample.py` and `vaejax-export`: argument parsing and messages only; the
work is the library's (`vaejax.training.train`, `vaejax.load`), so a notebook can do the same."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from vaejax import config as config_lib
from vaejax.config import LATENT_SIZES, PRESETS, preset


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
    p.add_argument("--stage", default="all", choices=("all", "vae", "encode", "melody", "harmony", "prior"),
                   help="run one stage only (later stages need the earlier ones' checkpoints); `--stage prior` "
                        "on an existing run keeps its config.json and (re)trains the prior over bar latents only")
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
            raise ValueError(f"--set {item!r}: expected SECTION.FIELD=VALUE with SECTION data, model, train or prior and "
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
    from vaejax.checkpoint import CheckpointError
    from vaejax.data import CacheError, PrepareError
    from vaejax.runs import RunError

    stages = training.STAGES if args.stage == "all" else (args.stage,)
    try:
        run, results = training.train(args.run, args.data, cfg, preset_name=args.preset, stages=stages, devices=devs,
                                      progress=not args.quiet)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except (ValueError, FileNotFoundError, CheckpointError, RunError, CacheError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a folder that cannot be written: what was saved before stays usable
        print(f"error: {getattr(e, 'filename', None) or args.run or 'run folder'}: {e.strerror or e} "
              f"(the last complete checkpoint is kept; re-run the same command to resume)", file=sys.stderr)
        return 2
    for stage, val in results.items():
        shown = {k: round(v, 4) for k, v in val.items() if isinstance(v, float) and not k.startswith(("on_", "f1@"))}
        print(f"{stage}: {shown}")
    print(f"run directory: {run}")
    return 0


def _quiet_logs() -> None:
    """Our progress lines at INFO; checkpoint libraries' chatter only from WARNING up, and their errors
    (logged with tracebacks from background threads) not at all: a failed save reaches us as one
    CheckpointError line. VAEJAX_DEBUG=1 shows everything."""
    if os.environ.get("VAEJAX_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("vaejax")
    ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    for name in ("orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("absl", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _writable(path: str) -> bool:
    """Whether `path` (or the folder that would hold it, for one not yet made) can be written."""
    path = os.path.abspath(path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK)


def sample_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sample.py",
        description="Generate multitrack songs from a trained run: MIDI, a pianoroll picture and WAV audio.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="run directory, packaged model folder or packaged model name (default: the latest run, "
                        "runs/LATEST, else the packaged model lpd5)")
    p.add_argument("--bars", type=int, default=config_lib.BARS, help="bars per song")
    p.add_argument("--sigma", type=float, default=config_lib.SIGMA,
                   help="variation: the learned prior's temperature is 2 x sigma (0: its likeliest song; 0.5: its "
                        "distribution as learned); for the chain, noise added to latent parameters each bar")
    p.add_argument("--prior", default=None, choices=config_lib.PRIORS,
                   help="how bars follow each other: the seed's MelodyNN / HarmonyNN chain (default) or the learned "
                        "prior over bar sequences, where the model carries one (train.py --stage prior)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=1, help="songs generated together")
    p.add_argument("--from", dest="source", default=None,
                   help="a MIDI or LPD npz song to vary (bar-wise noise on its latents) instead of sampling")
    p.add_argument("--continue", dest="cont", action="store_true",
                   help="with --from: continue the song for --bars bars instead (the prior reads its last bars, so "
                        "its material and phrase positions carry on)")
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
                        f"model's, {config_lib.HARMONY_GUIDANCE:g} for models trained with conditioning)")
    p.add_argument("--min-length", type=int, default=config_lib.MIN_LENGTH, help="drop notes shorter than this many steps (0: keep all)")
    p.add_argument("--merge-gap", type=int, default=config_lib.MERGE_GAP, help="join notes separated by fewer steps than this (0: never)")
    p.add_argument("--tempo", type=float, default=None,
                   help=f"beats per minute (default: the given song's tempo, or {config_lib.TEMPO:g} for sampled songs)")
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--no-audio", action="store_true", help="skip WAV rendering")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files of the same name in --out (default: add -2, -3, ... to new names)")
    p.add_argument("--sample-rate", type=int, default=config_lib.SAMPLE_RATE, help="WAV sample rate (Hz)")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu", "tpu"))
    _no_none_defaults(p)
    return p


def sample_main(argv: list[str] | None = None) -> int:
    args = sample_parser().parse_args(argv)
    _quiet_logs()
    problems = [f"--{name.replace('_', '-')} {msg}" for name, msg in config_lib.generation_problems(
        bars=args.bars, sigma=args.sigma, num=args.num, tempo=args.tempo, sample_rate=args.sample_rate,
        harmony=args.harmony, key=args.key, threshold=args.threshold)]
    for path in [args.source, args.arrange] + list(args.interpolate or []):
        if path is not None and not os.path.isfile(path):
            problems.append(f"{path}: no such file")
    if not _writable(args.out):  # reported before any work, without creating anything
        problems.append(f"--out {args.out}: cannot write there (read-only or no permission)")
    if problems:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        return 2
    from vaejax import devices, render, trained_model
    from vaejax.checkpoint import CheckpointError
    from vaejax.music import BadSong, read_song
    from vaejax.runs import RunError

    try:
        devices.select(args.accelerator)
        folder, how = trained_model.resolve(args.checkpoint)
        if args.checkpoint is None:
            print(f"note: using {how}", file=sys.stderr)
        model = trained_model.TrainedModel(folder)
    except (devices.AcceleratorError, RunError, CheckpointError) as e:
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
            songs = [model.arrange(piano, sigma=args.sigma, seed=args.seed, tracks=args.tracks, prior=args.prior, **kw)]
            names = ["arrangement"]
        elif args.interpolate:
            songs = model.interpolate(song(args.interpolate[0]), song(args.interpolate[1]),
                                      bars=min(args.bars, 8), **kw)
            names = [f"interpolation-{i}" for i in range(len(songs))]
        elif args.source and args.cont:
            songs = [model.continue_song(song(args.source), args.bars, sigma=args.sigma, seed=args.seed,
                                         prior=args.prior, **kw)]
            names = ["continuation"]
        elif args.source:
            songs = [model.vary(song(args.source), sigma=args.sigma, seed=args.seed, bars=args.bars, **kw)]
            names = ["variation"]
        else:
            songs = model.sample(args.bars, sigma=args.sigma, seed=args.seed, num=args.num, key=args.key,
                                 tempo=args.tempo, prior=args.prior, **kw)
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


def export_main(argv: list[str] | None = None) -> int:
    """`vaejax-export RUN OUT`: package a trained run as a folder that `vaejax.load(OUT)` restores."""
    ap = argparse.ArgumentParser(prog="vaejax-export", description=export_main.__doc__)
    ap.add_argument("run", help="a trained run folder")
    ap.add_argument("out", help="the packaged model folder to write")
    ap.add_argument("--float32", action="store_true", help="keep float32 weights (default: float16)")
    args = ap.parse_args(argv)
    import numpy as np

    from vaejax import packaging, trained_model
    from vaejax.checkpoint import CheckpointError
    from vaejax.runs import RunError

    try:
        model = trained_model.load(args.run)
    except (RunError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = packaging.export(model, args.out, dtype=np.float32 if args.float32 else np.float16)
    print(f"{args.out}: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    return 0


COMMANDS = {"train": "train_main", "sample": "sample_main", "export": "export_main"}


def main(argv: list[str] | None = None) -> int:
    """`python -m vaejax.cli {train,sample,export} ...`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m vaejax.cli {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    return globals()[COMMANDS[argv[0]]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
