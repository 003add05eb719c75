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
        prog=config_lib.program("train.py"),
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
        known = part is not None and dataclasses.is_dataclass(part) and field in {
            f.name for f in dataclasses.fields(part)}
        if not known:
            raise ValueError(f"--set {item!r}: expected SECTION.FIELD=VALUE with SECTION data, model, train or prior "
                             f"and a field that --print-config lists")
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
    if not value:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r}: expected an integer") from None


# command-line option for each configuration field it sets (messages name the option the user typed)
_OPTION = {"train.batch_size": "--batch-size", "train.vae_epochs": "--vae-epochs",
           "train.chain_epochs": "--chain-epochs", "train.lr": "--lr", "train.beta": "--beta",
           "train.free_bits": "--free-bits", "train.pos_weight": "--pos-weight",
           "train.chain_noise": "--chain-noise", "train.max_steps_per_epoch": "--max-steps-per-epoch",
           "train.seed": "--seed", "model.latent": "--latent"}


def _named(message: str, args) -> str:
    """A configuration error in the words of the command line: `train.lr must ...` -> `--lr must ...` when the
    value came from that option."""
    for field, option in _OPTION.items():
        if message.startswith(field + " ") and getattr(args, option[2:].replace("-", "_"), None) is not None:
            return option + message[len(field):]
    return message


def _multihost_problems(args) -> list[str]:
    out = []
    if args.num_processes is not None and not 1 <= args.num_processes <= 65536:
        out.append(f"--num-processes must be from 1 to 65536, got {args.num_processes}")
    if args.process_id is not None and not 0 <= args.process_id < (args.num_processes or 1):
        out.append(f"--process-id must be from 0 to --num-processes - 1, got {args.process_id}")
    if args.coordinator is not None and not (args.coordinator.rpartition(":")[2].isdigit()
                                             and 0 < int(args.coordinator.rpartition(":")[2]) < 65536):
        out.append(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    return out


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    _quiet_logs()
    try:
        cfg = _train_config(args)
    except ValueError as e:
        print(f"error: {_named(str(e), args)}", file=sys.stderr)
        return 2
    problems = _multihost_problems(args)
    if args.data is not None and not args.print_config and not os.path.exists(args.data):
        problems.append(f"--data {args.data}: no such file or folder")  # --print-config reads no data
    if problems:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        return 2
    if args.print_config:
        print(cfg.to_json())
        return 0
    from vaejax import devices, training

    try:
        if devices.maybe_initialize_distributed(args.coordinator, args.num_processes, args.process_id):
            print(f"process {args.process_id}: joined a job of {args.num_processes} processes", file=sys.stderr)
        devs = devices.select(args.accelerator)
    except devices.AcceleratorError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
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
        if isinstance(e, CheckpointError):
            _quiet_background_threads()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk or a folder that cannot be written: what was saved before stays usable
        _quiet_background_threads()
        print(f"error: {getattr(e, 'filename', None) or args.run or 'run folder'}: {e.strerror or e} "
              f"(the last complete checkpoint is kept; re-run the same command to resume)", file=sys.stderr)
        return 2
    for stage, val in results.items():
        shown = {k: round(v, 4) for k, v in val.items() if isinstance(v, float) and not k.startswith(("on_", "f1@"))}
        print(f"{stage}: {shown}")
    print(f"run directory: {run}")
    return 0


def _quiet_background_threads() -> None:
    """After a checkpoint write failed (a full disk), the checkpoint library's background threads fail too
    as the process ends, each with a traceback of its own: the user has had the one line that matters.
    VAEJAX_DEBUG=1 keeps them."""
    if os.environ.get("VAEJAX_DEBUG"):
        return
    import threading

    threading.excepthook = lambda args: None
    sys.unraisablehook = lambda unraisable: None


class _Stderr(logging.StreamHandler):
    """A handler that writes to whatever `sys.stderr` is when a record comes (redirections included)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _):
        pass


def _train_config(args):
    """The Config `train.py` would train with: the preset, the options, `--set`; ValueError names the first
    value out of range."""
    cfg = preset(args.preset)
    cfg = cfg.replace(
        model={k: v for k, v in {"latent": args.latent, "condition": False if args.no_condition else None,
                                 "onsets": False if args.no_onsets else None,
                                 "plays": False if args.no_plays else None}.items() if v is not None},
        train={k: v for k, v in {
            "vae_epochs": args.vae_epochs, "chain_epochs": args.chain_epochs, "batch_size": args.batch_size,
            "lr": args.lr, "beta": args.beta, "free_bits": args.free_bits, "pos_weight": args.pos_weight,
            "chain_noise": args.chain_noise,
            "max_steps_per_epoch": args.max_steps_per_epoch, "seed": args.seed,
            "checkpoint_every": _env_int("VAEJAX_CHECKPOINT_EVERY"), "log_every": _env_int("VAEJAX_LOG_EVERY"),
        }.items() if v is not None})
    return parse_sets(cfg, args.sets)


def _quiet_logs() -> None:
    """Our progress lines at INFO; checkpoint libraries' chatter only from WARNING up, and their errors
    (logged with tracebacks from background threads) not at all: a failed save reaches us as one
    CheckpointError line. VAEJAX_DEBUG=1 shows everything."""
    if os.environ.get("VAEJAX_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
        return
    import warnings

    from vaejax.config import ConfigWarning

    def one_line(message, category, *_, **__):  # our warnings read as one line, like our errors
        return f"warning: {message}\n"

    warnings.formatwarning = one_line
    warnings.simplefilter("always", ConfigWarning)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    ours = logging.getLogger("vaejax")
    if not any(isinstance(h, _Stderr) for h in ours.handlers):  # one handler, however often called
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False
    for name in ("orbax", "jax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in ("absl", "asyncio", "concurrent.futures"):  # the last: callbacks of failed background writes
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _one_line_background_errors()


def _one_line_background_errors() -> None:
    """Exceptions in library threads (a checkpoint writer failing on a full disk, then its event loop
    closing) print one warning line, once, instead of a traceback each; the main thread's error says what
    happened. VAEJAX_DEBUG=1 keeps the tracebacks."""
    import threading

    seen = set()

    def report(kind, exc):
        key = (kind, type(exc).__name__)
        if key not in seen:
            seen.add(key)
            print(f"warning: a {kind} failed: {type(exc).__name__}: {exc}", file=sys.stderr)

    threading.excepthook = lambda args: report("background thread", args.exc_value)
    sys.unraisablehook = lambda u: report("cleanup", u.exc_value)


def _out_problem(path: str) -> str | None:
    """Why the output folder `path` cannot be used (None when it can), checked before any work and without
    creating anything."""
    full = os.path.abspath(path)
    if os.path.exists(full) and not os.path.isdir(full):
        return f"--out {path}: is a file, not a folder"
    probe = full
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        return f"--out {path}: cannot be made ({probe} is a file, not a folder)"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"--out {path}: cannot write there ({probe} is read-only or not writable by this user)"
    return None


def sample_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=config_lib.program("sample.py"),
        description="Generate multitrack songs from a trained run: MIDI, a pianoroll picture and WAV audio.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--checkpoint", default=None,
                   help="run directory, packaged model folder or packaged model name (default: the latest run, "
                        "runs/LATEST, else the packaged model lpd5)")
    p.add_argument("--bars", type=int, default=None,
                   help=f"bars per song (default: {config_lib.BARS}; with --interpolate {INTERPOLATE_BARS})")
    p.add_argument("--sigma", type=float, default=config_lib.SIGMA,
                   help="variation: the learned prior's temperature is 2 x sigma (0: its likeliest song; 0.5: its "
                        "distribution as learned); for the chain, noise added to latent parameters each bar")
    p.add_argument("--prior", default=None, choices=config_lib.PRIORS,
                   help="how bars follow each other: the seed's MelodyNN / HarmonyNN chain (default) or the learned "
                        "prior over bar sequences, where the model carries one (train.py --stage prior)")
    p.add_argument("--seed", type=int, default=0, help=f"random seed (0 to {config_lib.MAX_SEED})")
    p.add_argument("--num", type=int, default=1, help="songs generated together")
    p.add_argument("--from", dest="source", default=None,
                   help="a MIDI or LPD npz song to vary (bar-wise noise on its latents) instead of sampling")
    p.add_argument("--continue", dest="cont", action="store_true",
                   help="with --from: continue the song for --bars bars instead (the prior reads its last bars, so "
                        "its material and phrase positions carry on)")
    p.add_argument("--arrange", default=None, help="a MIDI file whose piano part is kept; the rest is generated")
    p.add_argument("--tracks", default=None,
                   help="with --arrange: the instruments to add, comma-separated (default: drums,guitar,bass,strings)")
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
    p.add_argument("--min-length", type=int, default=None,
                   help="drop notes shorter than this many steps (0: keep all; default: the model's, "
                        f"0 on a sixteenth grid, {config_lib.MIN_LENGTH} for the earlier design)")
    p.add_argument("--merge-gap", type=int, default=None,
                   help="join notes separated by fewer steps than this (0: never; default: the model's, "
                        f"0 on a sixteenth grid, {config_lib.MERGE_GAP} for the earlier design)")
    p.add_argument("--tempo", type=float, default=None,
                   help=f"beats per minute (default: the given song's tempo, or {config_lib.TEMPO:g} for sampled "
                        f"songs)")
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--no-audio", action="store_true", help="skip WAV rendering")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files of the same name in --out (default: add -2, -3, ... to new names)")
    p.add_argument("--sample-rate", type=int, default=config_lib.SAMPLE_RATE, help="WAV sample rate (Hz)")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu", "tpu"))
    p.add_argument("--memory-budget", type=int, default=config_lib.GENERATION_BUDGET_MB, metavar="MIB",
                   help="memory generation may use beyond the model: long songs are decoded in chunks, many songs "
                        "in groups, and a request whose one song (with its audio) would not fit is refused")
    p.add_argument("--read-timeout", type=float, default=READ_TIMEOUT,
                   help="seconds a given song (--from, --arrange, --interpolate) may take to read")
    _no_none_defaults(p)
    return p


INTERPOLATE_BARS = 8
READ_TIMEOUT = 60.0


def _sample_problems(args) -> list[str]:
    """Every problem with sample.py's options, found before any work."""
    problems = [f"--{name.replace('_', '-')} {msg}" for name, msg in config_lib.generation_problems(
        bars=args.bars, sigma=args.sigma, num=args.num, tempo=args.tempo, sample_rate=args.sample_rate,
        harmony=args.harmony, key=args.key, threshold=args.threshold, seed=args.seed, min_length=args.min_length,
        merge_gap=args.merge_gap, memory_mb=args.memory_budget)]
    if not (args.read_timeout > 0 and args.read_timeout <= 86400):
        problems.append(f"--read-timeout must be a number of seconds above 0 and at most 86400, "
                        f"got {args.read_timeout}")
    modes = [flag for flag, given in (("--from", args.source), ("--arrange", args.arrange),
                                       ("--interpolate", args.interpolate)) if given]
    if len(modes) > 1:
        problems.append(f"{' and '.join(modes)} cannot be combined: give one of --from SONG (a variation), --arrange "
                        f"PIANO (a band for a given part) or --interpolate A B")
    if args.tracks is not None:
        if not args.arrange:
            problems.append("--tracks applies to --arrange only (the instruments to add to a given part)")
        else:
            from vaejax.trained_model import track_list
            try:
                track_list(args.tracks)
            except ValueError as e:
                problems.append(f"--tracks: {e}")
    for flag, path in [("--from", args.source), ("--arrange", args.arrange)] + [
            ("--interpolate", p) for p in args.interpolate or []]:
        if path is None:
            continue
        if not os.path.exists(path):
            problems.append(f"{flag} {path}: no such file")
        elif not os.path.isfile(path):
            problems.append(f"{flag} {path}: not a regular file (expected a .mid, .midi or .npz song)")
        elif not path.lower().endswith((".mid", ".midi", ".npz")):
            problems.append(f"{flag} {path}: not a song file (expected .mid, .midi or .npz)")
    out = _out_problem(args.out)
    if out:
        problems.append(out)
    return problems


def _audio_seconds(bars: float, tempo: float, beats_per_bar: int = 4) -> float:
    return bars * beats_per_bar * 60.0 / tempo


def _budget_problem(args, bars: float, tempo: float) -> str | None:
    """Refuse, before generating, a song whose own memory (with its audio) would not fit --memory-budget."""
    seconds = 0.0 if args.no_audio else _audio_seconds(bars, tempo)
    need = config_lib.generation_mb(int(bars), 1, audio_seconds=seconds, sample_rate=args.sample_rate)
    if need <= args.memory_budget:
        return None
    audio = (f" ({seconds / 60:.0f} min of audio at {args.sample_rate} Hz: add --no-audio or lower --sample-rate)"
             if seconds else "")
    return (f"a song of {bars:.0f} bars needs about {need:.0f} MiB{audio}, more than --memory-budget "
            f"{args.memory_budget} MiB; make it shorter or raise --memory-budget")


class _Out:
    """Claims output names in --out atomically (exclusive create), so that concurrent runs into one folder
    keep every song; removes what a failed song left (its claimed names, `.part` files)."""

    def __init__(self, folder: str, overwrite: bool, exts: tuple[str, ...]):
        self.folder, self.overwrite, self.exts = folder, overwrite, exts
        self.written: list[str] = []

    def claim(self, name: str) -> str:
        os.makedirs(self.folder, exist_ok=True)
        n = 1
        while True:
            base = os.path.join(self.folder, name if n == 1 else f"{name}-{n}")
            if self.overwrite:
                return base
            made = []
            try:
                for ext in self.exts:
                    os.close(os.open(base + ext, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                    made.append(base + ext)
                return base
            except FileExistsError:
                for path in made:
                    os.remove(path)
                n += 1

    def release(self, base: str) -> None:
        """After a failure: remove this song's files that were claimed but not completed, and `.part` files."""
        for ext in self.exts:
            for path in (base + ext + ".part", base + ext):
                if path.endswith(".part") or (path not in self.written and os.path.exists(path)
                                              and os.path.getsize(path) == 0):
                    try:
                        os.remove(path)
                    except OSError:
                        pass


def _read_given(path: str, model, args):
    """A given song read on its beat grid (any meter, cut every four beats) within --read-timeout; BadSong
    names the file."""
    from vaejax.music import BadSong, read_song

    try:
        return read_song(path, model.cfg.data, require_44=False, timeout=args.read_timeout)
    except BadSong as e:
        raise BadSong(f"{path}: {e}") from None


def sample_main(argv: list[str] | None = None) -> int:
    args = sample_parser().parse_args(argv)
    _quiet_logs()
    problems = _sample_problems(args)
    if not problems and not (args.source or args.arrange or args.interpolate):
        problem = _budget_problem(args, args.bars or config_lib.BARS, args.tempo or config_lib.TEMPO)
        problems = [problem] if problem else []
    if problems:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        return 2
    import numpy as np

    from vaejax import devices, render, trained_model
    from vaejax.checkpoint import CheckpointError
    from vaejax.music import BadSong
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
    model.memory_mb = args.memory_budget
    kw = dict(threshold=args.threshold, sample=args.sample, min_length=args.min_length, merge_gap=args.merge_gap)
    steps_per_bar = model.cfg.data.resolution * model.cfg.data.beats_per_bar
    out = _Out(args.out, args.overwrite, (".mid", ".png") + (() if args.no_audio else (".wav",)))
    how = None

    def given(path):
        s = _read_given(path, model, args)
        if s.roll.shape[1] < model.cfg.data.steps:
            raise BadSong(f"{path}: shorter than one bar ({s.roll.shape[1]} of {model.cfg.data.steps} steps)")
        kw.setdefault("tempo", args.tempo or s.tempo)
        problem = _budget_problem(args, s.roll.shape[1] / steps_per_bar, kw["tempo"])
        if problem:
            raise ValueError(f"{path}: {problem}")
        return s.roll

    def jobs():
        """(name, song) pairs, generated lazily: many songs come in groups that fit --memory-budget."""
        if args.arrange:
            roll = given(args.arrange)
            piano = roll[1]
            if not piano.any():
                print(f"note: {args.arrange} has no piano part (programs 0-7); arranging all its pitched tracks "
                      f"as one part", file=sys.stderr)
                piano = roll[1:].any(axis=0)
            yield "arrangement", model.arrange(piano, sigma=args.sigma, seed=args.seed, tracks=args.tracks,
                                               prior=args.prior, **kw)
        elif args.interpolate:
            bars = args.bars or INTERPOLATE_BARS
            a, b = given(args.interpolate[0]), given(args.interpolate[1])
            have = min(a.shape[1], b.shape[1]) // model.cfg.data.steps
            if have < bars:
                print(f"note: --interpolate uses {have} bars (the shorter song's length), not {bars}", file=sys.stderr)
            for i, mt in enumerate(model.interpolate(a, b, bars=bars, **kw)):
                yield f"interpolation-{i}", mt
        elif args.source and args.cont:
            yield "continuation", model.continue_song(given(args.source), args.bars or config_lib.BARS,
                                                      sigma=args.sigma, seed=args.seed, prior=args.prior, **kw)
        elif args.source:
            yield "variation", model.vary(given(args.source), sigma=args.sigma, seed=args.seed,
                                          bars=args.bars or config_lib.BARS, **kw)
        else:
            bars = args.bars or config_lib.BARS
            spare = args.memory_budget - config_lib.generation_mb(bars, 1, audio_seconds=0 if args.no_audio else
                                                                  _audio_seconds(bars, args.tempo or config_lib.TEMPO),
                                                                  sample_rate=args.sample_rate)
            group = int(min(args.num, 1 + max(0, spare) // (bars * config_lib.SONG_BAR_MB)))
            if group < args.num:
                print(f"note: {args.num} songs of {bars} bars are generated {group} at a time (--memory-budget "
                      f"{args.memory_budget} MiB)", file=sys.stderr)
            for first in range(0, args.num, group):
                # the first group is what one call for all songs gives; later groups draw from derived seeds
                seed = args.seed if first == 0 else int(np.random.SeedSequence([args.seed, first]).generate_state(1)[0]
                                                        % (config_lib.MAX_SEED + 1))
                songs = model.sample(bars, sigma=args.sigma, seed=seed, num=min(group, args.num - first),
                                     key=args.key, tempo=args.tempo, prior=args.prior, **kw)
                for i, mt in enumerate(songs):
                    yield f"sample-seed{args.seed}-{first + i}", mt
                del songs

    base = None
    written = 0
    try:
        for name, mt in jobs():
            base = out.claim(name)
            # an arrangement keeps the given MIDI file's part note for note, its tempo map and length
            source = dict(source=args.arrange, tracks=args.tracks, cfg=model.cfg.data) if args.arrange else {}
            out.written.append(render.write_midi(base + ".mid", mt, **source))
            print(base + ".mid")
            out.written.append(render.plot(mt, base + ".png", title=f"{mt.name}: {name}, sigma {args.sigma}",
                                           cfg=model.cfg.data))
            print(base + ".png")
            if not args.no_audio:
                sound = render.arrangement_midi(args.arrange, mt, tracks=args.tracks, cfg=model.cfg.data)[0] \
                    if args.arrange else mt
                audio, how = render.synthesize(sound, sample_rate=args.sample_rate)
                out.written.append(render.write_wav(base + ".wav", audio, sample_rate=args.sample_rate))
                print(base + ".wav")
                del audio
            written += 1
            base = None
            silent = render.silent_tracks(mt)
            if len(silent) == len(mt.tracks):
                print(f"warning: {name} is silent (no track has a note)", file=sys.stderr)
            elif silent:
                print(f"note: {name}: {', '.join(silent)} play no note", file=sys.stderr)
    except (BadSong, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        what = str(getattr(e, "filename", None) or args.out).removesuffix(".part")
        print(f"error: {what}: {e.strerror or e} ({written} song(s) written before; nothing partial is left)",
              file=sys.stderr)
        return 2
    except MemoryError:
        print(f"error: out of memory while generating ({written} song(s) written before); lower --bars, --num or "
              f"--memory-budget", file=sys.stderr)
        return 2
    finally:
        if base is not None:
            out.release(base)
    if how is not None:
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
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"error: {args.out}: is a file, not a folder (the packaged model is a folder)", file=sys.stderr)
        return 2
    out = _out_problem(args.out)
    if out:
        print(f"error: {out.replace('--out ', '')}", file=sys.stderr)
        return 2
    import numpy as np

    from vaejax import packaging, trained_model
    from vaejax.checkpoint import CheckpointError
    from vaejax.runs import RunError

    try:
        model = trained_model.load(args.run)
    except (RunError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        sizes = packaging.export(model, args.out, dtype=np.float32 if args.float32 else np.float16)
    except OSError as e:
        print(f"error: {getattr(e, 'filename', None) or args.out}: {e.strerror or e}", file=sys.stderr)
        return 2
    print(f"{args.out}: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    return 0


def prepare_main(argv: list[str] | None = None) -> int:
    """`vaejax prepare SRC OUT`: turn LPD npz / MIDI files into a prepared bar cache (the same as
    `python -m vaejax.data prepare`)."""
    from vaejax import data

    p = argparse.ArgumentParser(prog="vaejax prepare", description=data.__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    data.prepare_arguments(p)
    return data.prepare_command(p.parse_args(argv))


def verify_main(argv: list[str] | None = None) -> int:
    """`vaejax verify PATH`: check a prepared dataset (sizes, song index, checksums) or a trained model (a run
    folder, a packaged model folder or name: its configuration, statistics and weights load, every weight is
    finite and it generates a bar)."""
    ap = argparse.ArgumentParser(prog="vaejax verify", description=verify_main.__doc__)
    ap.add_argument("path", help="a prepared dataset folder, a run folder, or a packaged model (folder or name)")
    ap.add_argument("--no-generate", action="store_true", help="models: check loading only, generate nothing")
    args = ap.parse_args(argv)
    from vaejax import data

    if data.is_prepared(args.path):
        return data.verify_command(args.path)
    if os.path.isdir(args.path) and os.path.exists(os.path.join(args.path, "report.json")):
        print(f"error: {args.path}: a dataset folder without its train split (train.bars); prepare it again with "
              f"`vaejax prepare SRC {args.path} --force`", file=sys.stderr)
        return 2
    return _verify_model(args.path, generate=not args.no_generate)


def _verify_model(name: str, *, generate: bool) -> int:
    import jax
    import numpy as np

    from vaejax import trained_model
    from vaejax.checkpoint import CheckpointError
    from vaejax.runs import RunError

    _quiet_logs()
    try:
        folder, how = trained_model.resolve(name)
        model = trained_model.TrainedModel(folder)
    except (RunError, CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    leaves = [("vae", x) for x in jax.tree.leaves(model.vae)] + [("melody", x) for x in jax.tree.leaves(model.mel)]
    leaves += [("harmony", x) for x in jax.tree.leaves(model.har)]
    leaves += [(f"prior {k}", x) for k, p in (getattr(model, "prior", None) or {}).items() for x in jax.tree.leaves(p)]
    bad = sorted({net for net, x in leaves if not np.isfinite(np.asarray(x, np.float32)).all()})
    if bad:
        print(f"error: {how}: weights that are not finite in {', '.join(bad)}", file=sys.stderr)
        return 2
    count = sum(int(np.size(x)) for _, x in leaves)
    line = f"{how}: configuration, statistics and {count:,} weights load, all finite"
    if generate:
        try:
            song = model.sample(1, seed=0)[0]
        except (ValueError, RuntimeError) as e:
            print(f"error: {how}: loads but does not generate: {e}", file=sys.stderr)
            return 2
        line += f"; it generates ({len(song.tracks)} tracks, {sum(int(t.pianoroll.any()) for t in song.tracks)} "
        line += "playing in one bar)"
    print(line)
    return 0


COMMANDS = {"prepare": "prepare_main", "train": "train_main", "sample": "sample_main", "export": "export_main",
            "verify": "verify_main"}
OTHER_COMMANDS = {"evaluate": ("vaejax.evaluate", "main"), "data": ("vaejax.data", "main"),
                  "studio": ("vaejax.studio.server", "main")}
"""Subcommands whose programs live in other modules (imported only when asked for: this module stays below
them in the layout)."""


SUMMARY = {
    "prepare": "turn LPD npz / MIDI files into a prepared bar cache",
    "train": "train the VAEs, the latent chains and the prior (train.py)",
    "sample": "generate, vary, continue, arrange or interpolate songs (sample.py)",
    "evaluate": "measure runs against held-out songs",
    "export": "package a trained run as a folder vaejax.load reads",
    "verify": "check a prepared dataset or a trained model",
    "data": "the dataset tools: prepare, verify, demo, download",
    "studio": "generate and listen in the browser",
}


def main(argv: list[str] | None = None) -> int:
    """`vaejax {prepare,train,sample,evaluate,export,verify,data,studio} ...` (also `python -m vaejax.cli ...`):
    one command for every program; `vaejax data prepare|verify|demo|download` is `python -m vaejax.data`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    names = list(SUMMARY)
    if argv and argv[0] in ("-h", "--help"):
        p = argparse.ArgumentParser(prog="vaejax", usage=f"vaejax {{{','.join(names)}}} ...",
                                    formatter_class=argparse.RawDescriptionHelpFormatter,
                                    description="commands (`vaejax COMMAND --help` lists a command's options):\n"
                                    + "\n".join(f"  {name:9s} {what}" for name, what in SUMMARY.items()))
        p.parse_args(argv[:1])  # prints the help and exits
    if not argv or argv[0] not in names:
        print(f"usage: vaejax {{{','.join(names)}}} ...", file=sys.stderr)
        return 2
    if argv[0] in OTHER_COMMANDS:
        import importlib

        module, func = OTHER_COMMANDS[argv[0]]
        return getattr(importlib.import_module(module), func)(argv[1:])
    return globals()[COMMANDS[argv[0]]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
