"""Command lines behind `vaejax COMMAND`, `train.py`, `sample.py` and the `vaejax-*` scripts: argument parsing
and messages only; the work is the library's (`vaejax.training.train`, `vaejax.load`), so a notebook can do
the same. The training options that set configuration fields are derived from the fields themselves
(`vaejax.config.option`), never written twice."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys

from vaejax import config as config_lib
from vaejax.config import PRESETS, Config, apply_settings, load_config, preset


def config_options() -> list[tuple[str, str, dataclasses.Field]]:
    """(section, field name, field) of every configuration field that has a command-line option of its own."""
    defaults = Config()
    return [
        (section, f.name, f)
        for section in config_lib.SECTIONS
        for f in dataclasses.fields(getattr(defaults, section))
        if "flag" in f.metadata
    ]


def add_config_options(p: argparse.ArgumentParser) -> None:
    """An option for each field declared with `config.option`: its value (or, for a true/false field, the
    opposite of its default) lands in `args.<section>.<field>`; None when not given."""
    for section, name, f in config_options():
        meta = dict(f.metadata)
        flag, text = meta.pop("flag"), meta.pop("help")
        dest = f"{section}.{name}"
        if isinstance(f.default, bool):
            p.add_argument(flag, dest=dest, action="store_const", const=not f.default, default=None, help=text)
        else:
            p.add_argument(
                flag,
                dest=dest,
                type=type(f.default),
                default=None,
                metavar=name.upper(),
                help=f"{text} (default preset: {f.default})",
                **meta,
            )


def configured(args) -> dict[str, dict]:
    """The configuration fields the derived options set, as `Config.replace` takes them."""
    out: dict[str, dict] = {}
    for section, name, _ in config_options():
        value = getattr(args, f"{section}.{name}", None)
        if value is not None:
            out.setdefault(section, {})[name] = value
    return out


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=config_lib.program("train.py"),
        description="Train the five instrument VAEs, then MelodyNN and the four HarmonyNNs. Re-running the "
        "same command resumes from the last checkpoint of the run directory.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--data",
        default=None,
        help="prepared dataset (vaejax prepare) or a raw folder of LPD npz / MIDI files (prepared on "
        "the fly); default: the offline SYNTHETIC demo corpus",
    )
    p.add_argument(
        "--accelerator",
        default="auto",
        choices=("auto", "cpu", "gpu", "tpu"),
        help="JAX backend; an absent one is an error, never a silent fall-back",
    )
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="model and training sizes")
    p.add_argument(
        "--config",
        default=None,
        metavar="FILE",
        help="start from a configuration file instead of a preset: configs/NAME.py (its get_config()) "
        "or a JSON configuration (a run's config.json); options and --set apply on top",
    )
    p.add_argument(
        "--stage",
        default="all",
        choices=("all", "vae", "encode", "melody", "harmony", "prior", "decoding"),
        help="run one stage only (later stages need the earlier ones' checkpoints); `--stage prior` "
        "on an existing run keeps its config.json and (re)trains the prior over bar latents only (and "
        "calibrates how its bars are decoded); `--stage decoding` only recalibrates the decoding (of encoded "
        "latents on validation passages, then of the prior's bars)",
    )
    p.add_argument(
        "--run", default=None, help="run directory (default: runs/<preset or config file name>-k<latent>)%(default).0s"
    )
    add_config_options(p)
    p.add_argument("--coordinator", default=None, help="multi-host: coordinator host:port")
    p.add_argument("--num-processes", type=int, default=None, help="multi-host: number of processes")
    p.add_argument("--process-id", type=int, default=None, help="multi-host: this process's index")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="SECTION.FIELD=VALUE",
        help="set any configuration field, e.g. --set model.hidden=512 --set train.chain_lr=3e-4 "
        "(fields: see --print-config); data.* fields are the dataset's (vaejax prepare)",
    )
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the full configuration this command would train with (the dataset's data section "
        "included), and exit",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _no_none_defaults(p)
    return p


def _no_none_defaults(p: argparse.ArgumentParser) -> None:
    """Keep the help formatter from printing "(default: None)": such options say their default in words."""
    for action in p._actions:
        if action.default is None and action.help and "%(default)" not in action.help:
            action.help += "%(default).0s"  # formats as nothing


def parse_sets(cfg, sets: list[str]):
    """Apply `--set section.field=value` settings to a Config (`config.apply_settings`)."""
    return apply_settings(cfg, sets, "--set")


def _named(message: str, args) -> str:
    """A configuration error in the words of the command line: `train.lr must ...` -> `--lr must ...` when the
    value came from that option."""
    for section, name, f in config_options():
        field = f"{section}.{name}"
        if message.startswith(field + " ") and getattr(args, field, None) is not None:
            return f.metadata["flag"] + message[len(field) :]
    return message


def _multihost_problems(args) -> list[str]:
    out = []
    if args.num_processes is not None and not 1 <= args.num_processes <= 65536:
        out.append(f"--num-processes must be from 1 to 65536, got {args.num_processes}")
    if args.process_id is not None and not 0 <= args.process_id < (args.num_processes or 1):
        out.append(f"--process-id must be from 0 to --num-processes - 1, got {args.process_id}")
    if args.coordinator is not None and not (
        args.coordinator.rpartition(":")[2].isdigit() and 0 < int(args.coordinator.rpartition(":")[2]) < 65536
    ):
        out.append(f"--coordinator must be HOST:PORT, got {args.coordinator!r}")
    return out


def train_config(args) -> Config:
    """The Config `train.py` would train with: the preset or --config file, the options, `--set`, and (where
    --data is a prepared dataset) the dataset's data section; ValueError names the first value refused."""
    if args.config is not None and args.preset != "default":
        raise ValueError("--config and --preset cannot be combined: a configuration file replaces the preset")
    cfg = load_config(args.config) if args.config is not None else preset(args.preset)
    cfg = parse_sets(cfg.replace(**configured(args)), args.sets)
    if args.data is None or os.path.exists(args.data):
        from vaejax import data

        fixed = data.dataset_config(args.data)
        cfg = dataclasses.replace(cfg, data=data.fixed_by_dataset(cfg.data, fixed, args.data or "(the demo corpus)"))
    return cfg


def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    _quiet_logs()
    from vaejax.data import CacheError

    try:
        cfg = train_config(args)
    except (ValueError, CacheError) as e:  # CacheError: --data's report is damaged
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
    from vaejax.data import PrepareError
    from vaejax.runs import RunError

    stages = training.STAGES if args.stage == "all" else (args.stage,)
    name = config_lib.config_name(args.config) if args.config else args.preset
    try:
        run, results = training.train(
            args.run, args.data, cfg, preset_name=name, stages=stages, devices=devs, progress=not args.quiet
        )
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
        print(
            f"error: {getattr(e, 'filename', None) or args.run or 'run folder'}: {e.strerror or e} "
            f"(the last complete checkpoint is kept; re-run the same command to resume)",
            file=sys.stderr,
        )
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
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="run directory, packaged model folder or packaged model name (default: the latest run, "
        "runs/LATEST, else the packaged model lpd5)",
    )
    p.add_argument(
        "--bars",
        type=int,
        default=None,
        help=f"bars per song (default: {config_lib.BARS}; with --interpolate {INTERPOLATE_BARS})",
    )
    p.add_argument(
        "--sigma",
        type=float,
        default=config_lib.SIGMA,
        help="variation: the learned prior's temperature is 2.5 x sigma (0: its likeliest song; 0.5: "
        "repeats and rests as often as real songs; higher: more varied bars, more repeats); for the "
        "chain, noise added to latent parameters each bar",
    )
    p.add_argument(
        "--prior",
        default=None,
        choices=config_lib.PRIORS,
        help="how bars follow each other: the learned prior over bar sequences (default where the model "
        "carries one: train.py --stage prior) or the seed's MelodyNN / HarmonyNN chain (the baseline)",
    )
    p.add_argument("--seed", type=int, default=0, help=f"random seed (0 to {config_lib.MAX_SEED})")
    p.add_argument("--num", type=int, default=1, help="songs generated together")
    p.add_argument(
        "--from",
        dest="source",
        default=None,
        help="a MIDI or LPD npz song to vary (bar-wise noise on its latents) instead of sampling",
    )
    p.add_argument(
        "--continue",
        dest="cont",
        action="store_true",
        help="with --from: continue the song for --bars bars instead (the prior reads its last bars, so "
        "its material and phrase positions carry on)",
    )
    p.add_argument("--arrange", default=None, help="a MIDI file whose piano part is kept; the rest is generated")
    p.add_argument(
        "--tracks",
        default=None,
        help="with --arrange: the instruments to add, comma-separated (default: drums,guitar,bass,strings)",
    )
    p.add_argument(
        "--density",
        default=None,
        help="with --arrange: how often the added tracks play: 'data' (the default: as often as the training "
        "data's bands play along with a piano), 'none' (as the prior reads the piano part), a share of bars for "
        "every added track (0.7), or shares per track (strings=0.8,drums=0.9)",
    )
    p.add_argument(
        "--key",
        type=int,
        default=0,
        help="semitones from C major / A minor for sampled songs (-6..5); given songs keep their key",
    )
    p.add_argument(
        "--interpolate",
        nargs=2,
        metavar=("A", "B"),
        default=None,
        help="two songs (MIDI or npz) to interpolate between",
    )
    p.add_argument(
        "--sustain",
        "--threshold",  # its earlier name
        dest="sustain",
        type=float,
        default=None,
        help="a note lasts while its sustain probability stays above this share of its value where it started, "
        "in (0, 1) (default: the factor calibrated per instrument on validation data)",
    )
    p.add_argument("--sample", action="store_true", help="draw cells from their probabilities instead")
    p.add_argument(
        "--harmony",
        type=float,
        default=None,
        help="how strongly the band follows the piano's pitch classes (1: as trained; default: the "
        f"model's, {config_lib.HARMONY_GUIDANCE:g} for models trained with conditioning; each track takes it "
        "by its weight, config.HARMONY_WEIGHTS)",
    )
    p.add_argument(
        "--min-length",
        type=int,
        default=None,
        help="drop notes shorter than this many steps (0: keep all; default: the model's, "
        f"0 on a sixteenth grid, {config_lib.MIN_LENGTH} for the earlier design)",
    )
    p.add_argument(
        "--merge-gap",
        type=int,
        default=None,
        help="join notes separated by fewer steps than this (0: never; default: the model's, "
        f"0 on a sixteenth grid, {config_lib.MERGE_GAP} for the earlier design)",
    )
    p.add_argument(
        "--tempo",
        type=float,
        default=None,
        help=f"beats per minute (default: the given song's tempo, or {config_lib.TEMPO:g} for sampled songs)",
    )
    p.add_argument("--out", default="out", help="output folder")
    p.add_argument("--no-audio", action="store_true", help="skip WAV rendering")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace files of the same name in --out (default: add -2, -3, ... to new names)",
    )
    p.add_argument("--sample-rate", type=int, default=config_lib.SAMPLE_RATE, help="WAV sample rate (Hz)")
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu", "tpu"))
    p.add_argument(
        "--memory-budget",
        type=int,
        default=config_lib.GENERATION_BUDGET_MB,
        metavar="MIB",
        help="memory generation may use beyond the model: long songs are decoded in chunks, many songs "
        "in groups, and a request whose one song (with its audio) would not fit is refused",
    )
    p.add_argument(
        "--read-timeout",
        type=float,
        default=READ_TIMEOUT,
        help="seconds a given song (--from, --arrange, --interpolate) may take to read",
    )
    _no_none_defaults(p)
    return p


INTERPOLATE_BARS = 8
READ_TIMEOUT = 60.0


def _sample_problems(args) -> list[str]:
    """Every problem with sample.py's options, found before any work."""
    problems = [
        f"--{name.replace('_', '-')} {msg}"
        for name, msg in config_lib.generation_problems(
            bars=args.bars,
            sigma=args.sigma,
            num=args.num,
            tempo=args.tempo,
            sample_rate=args.sample_rate,
            harmony=args.harmony,
            key=args.key,
            sustain=args.sustain,
            seed=args.seed,
            min_length=args.min_length,
            merge_gap=args.merge_gap,
            memory_mb=args.memory_budget,
        )
    ]
    if not (0.001 <= args.read_timeout <= 86400):  # (below a millisecond no file could ever be read)
        problems.append(f"--read-timeout must be a number of seconds from 0.001 to 86400, got {args.read_timeout}")
    modes = [
        flag
        for flag, given in (("--from", args.source), ("--arrange", args.arrange), ("--interpolate", args.interpolate))
        if given
    ]
    if len(modes) > 1:
        problems.append(
            f"{' and '.join(modes)} cannot be combined: give one of --from SONG (a variation), --arrange "
            f"PIANO (a band for a given part) or --interpolate A B"
        )
    if args.tracks is not None:
        if not args.arrange:
            problems.append("--tracks applies to --arrange only (the instruments to add to a given part)")
        else:
            from vaejax.trained_model import track_list

            try:
                track_list(args.tracks)
            except ValueError as e:
                problems.append(f"--tracks: {e}")
    if args.density is not None:
        from vaejax.trained_model import density_target, parse_density, track_list

        if not args.arrange:
            problems.append("--density applies to --arrange only (how often the added tracks play)")
        elif args.prior == "chain":
            problems.append("--density needs the learned prior (--prior transformer): the chain draws no rests")
        else:
            try:
                density_target(parse_density(args.density), track_list(args.tracks))
            except ValueError as e:
                problems.append(f"--density: {e}")
    for flag, path in [("--from", args.source), ("--arrange", args.arrange)] + [
        ("--interpolate", p) for p in args.interpolate or []
    ]:
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
    audio = (
        f" ({seconds / 60:.0f} min of audio at {args.sample_rate} Hz: add --no-audio or lower --sample-rate)"
        if seconds
        else ""
    )
    return (
        f"a song of {bars:.0f} bars needs about {need:.0f} MiB{audio}, more than --memory-budget "
        f"{args.memory_budget} MiB; make it shorter or raise --memory-budget"
    )


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
                if path.endswith(".part") or (
                    path not in self.written and os.path.exists(path) and os.path.getsize(path) == 0
                ):
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
    from vaejax.music import BadSong, piano_part
    from vaejax.runs import RunError

    try:
        devices.select(args.accelerator)
        folder, how = trained_model.resolve(args.checkpoint)
        if args.checkpoint is None:
            print(f"note: using {how}", file=sys.stderr)
        model = trained_model.open_folder(folder)
    except (devices.AcceleratorError, RunError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = model.with_options(
        memory_mb=args.memory_budget, **({} if args.harmony is None else {"harmony_guidance": args.harmony})
    )
    kw = dict(sustain=args.sustain, sample=args.sample, min_length=args.min_length, merge_gap=args.merge_gap)
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
            piano, merged = piano_part(given(args.arrange))
            if merged:
                print(
                    f"note: {args.arrange} has no piano part (programs 0-7); arranging all its pitched tracks "
                    f"as one part",
                    file=sys.stderr,
                )
            yield (
                "arrangement",
                model.arrange(
                    piano,
                    sigma=args.sigma,
                    seed=args.seed,
                    tracks=args.tracks,
                    prior=args.prior,
                    **({} if args.density is None else {"density": trained_model.parse_density(args.density)}),
                    **kw,
                ),
            )
        elif args.interpolate:
            bars = args.bars or INTERPOLATE_BARS
            a, b = given(args.interpolate[0]), given(args.interpolate[1])
            have = min(a.shape[1], b.shape[1]) // model.cfg.data.steps
            if have < bars:
                print(f"note: --interpolate uses {have} bars (the shorter song's length), not {bars}", file=sys.stderr)
            for i, mt in enumerate(model.interpolate(a, b, bars=bars, **kw)):
                yield f"interpolation-{i}", mt
        elif args.source and args.cont:
            yield (
                "continuation",
                model.continue_song(
                    given(args.source),
                    args.bars or config_lib.BARS,
                    sigma=args.sigma,
                    seed=args.seed,
                    prior=args.prior,
                    **kw,
                ),
            )
        elif args.source:
            yield (
                "variation",
                model.vary(
                    given(args.source), sigma=args.sigma, seed=args.seed, bars=args.bars or config_lib.BARS, **kw
                ),
            )
        else:
            bars = args.bars or config_lib.BARS
            spare = args.memory_budget - config_lib.generation_mb(
                bars,
                1,
                audio_seconds=0 if args.no_audio else _audio_seconds(bars, args.tempo or config_lib.TEMPO),
                sample_rate=args.sample_rate,
            )
            group = int(min(args.num, 1 + max(0, spare) // (bars * config_lib.SONG_BAR_MB)))
            if group < args.num:
                print(
                    f"note: {args.num} songs of {bars} bars are generated {group} at a time (--memory-budget "
                    f"{args.memory_budget} MiB)",
                    file=sys.stderr,
                )
            for first in range(0, args.num, group):
                # the first group is what one call for all songs gives; later groups draw from derived seeds
                seed = (
                    args.seed
                    if first == 0
                    else int(
                        np.random.SeedSequence([args.seed, first]).generate_state(1)[0] % (config_lib.MAX_SEED + 1)
                    )
                )
                songs = model.sample(
                    bars,
                    sigma=args.sigma,
                    seed=seed,
                    num=min(group, args.num - first),
                    key=args.key,
                    tempo=args.tempo,
                    prior=args.prior,
                    **kw,
                )
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
            out.written.append(
                render.plot(mt, base + ".png", title=f"{mt.name}: {name}, sigma {args.sigma}", cfg=model.cfg.data)
            )
            print(base + ".png")
            if not args.no_audio:
                sound = (
                    render.arrangement_midi(args.arrange, mt, tracks=args.tracks, cfg=model.cfg.data)[0]
                    if args.arrange
                    else mt
                )
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
        print(
            f"error: {what}: {e.strerror or e} ({written} song(s) written before; nothing partial is left)",
            file=sys.stderr,
        )
        return 2
    except MemoryError:
        print(
            f"error: out of memory while generating ({written} song(s) written before); lower --bars, --num or "
            f"--memory-budget",
            file=sys.stderr,
        )
        return 2
    finally:
        if base is not None:
            out.release(base)
    if how is not None:
        print(f"audio: {how}", file=sys.stderr)
    if model.synthetic:
        print(
            "note: this model was trained on the SYNTHETIC demo corpus; train on LPD-5 for real music "
            "(see data/README.md)",
            file=sys.stderr,
        )
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
    from vaejax.data.__main__ import prepare_arguments, prepare_command

    p = argparse.ArgumentParser(
        prog="vaejax prepare", description=data.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    prepare_arguments(p)
    return prepare_command(p.parse_args(argv))


def verify_main(argv: list[str] | None = None) -> int:
    """`vaejax verify PATH`: check a prepared dataset (sizes, song index, checksums) or a trained model (a run
    folder, a packaged model folder or name: its configuration, statistics and weights load, every weight is
    finite and it generates a bar)."""
    ap = argparse.ArgumentParser(prog="vaejax verify", description=verify_main.__doc__)
    ap.add_argument("path", help="a prepared dataset folder, a run folder, or a packaged model (folder or name)")
    ap.add_argument("--no-generate", action="store_true", help="models: check loading only, generate nothing")
    args = ap.parse_args(argv)
    from vaejax import data
    from vaejax.data.__main__ import verify_command

    if data.is_prepared(args.path):
        return verify_command(args.path)
    if os.path.isdir(args.path) and os.path.exists(os.path.join(args.path, "report.json")):
        print(
            f"error: {args.path}: a dataset folder without its train split (train.bars); prepare it again with "
            f"`vaejax prepare SRC {args.path} --force`",
            file=sys.stderr,
        )
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
        model = trained_model.open_folder(folder)
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


COMMANDS = {
    "prepare": "prepare_main",
    "train": "train_main",
    "sample": "sample_main",
    "export": "export_main",
    "verify": "verify_main",
}
OTHER_COMMANDS = {
    "evaluate": ("vaejax.evaluate", "main"),
    "data": ("vaejax.data.__main__", "main"),
    "studio": ("vaejax.studio.server", "main"),
}
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
        p = argparse.ArgumentParser(
            prog="vaejax",
            usage=f"vaejax {{{','.join(names)}}} ...",
            formatter_class=argparse.RawDescriptionHelpFormatter,
            description="commands (`vaejax COMMAND --help` lists a command's options):\n"
            + "\n".join(f"  {name:9s} {what}" for name, what in SUMMARY.items()),
        )
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
