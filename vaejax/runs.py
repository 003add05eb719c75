"""The run folder: what training writes and generation reads, named in one place.

    RUN/config.json        the Config the run was trained with (written once, atomically)
    RUN/data.txt           the prepared dataset it was trained on
    RUN/ckpt/<stage>/      Orbax checkpoints of each stage (latest few and best)
    RUN/latents/<split>.npz  every bar's latent parameters, `[bars, 5, 2K]`, with the songs' start and length
    RUN/stats.json         decoding thresholds, latent normalisation, validation figures
    RUN/start_bars.npy     latent parameters of the real bars generation starts from
    RUN/metrics.jsonl      one JSON line per logged step and per validation
    RUN/loss-<stage>.png   loss curves
    RUN/weights.npz        (packaged models only) every network's weights and the start bars
    RUN/.lock              held by the process training the run (released when it ends or dies)

`runs/LATEST` (relative to the working folder) names the run trained last: what `vaejax.load()` and
`sample.py` use by default.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np

from vaejax.config import SUSTAIN_AGES, TRACKS, Config
from vaejax.files import write_atomically

MAX_JSON_BYTES = 64 << 20
"""config.json and stats.json larger than this are not read (neither comes near)."""
RUNS_DIR = "runs"
"""Where training puts run folders by default (relative to the working folder)."""
LATEST = os.path.join(RUNS_DIR, "LATEST")
STAGES = ("vae", "encode", "melody", "harmony", "prior")
CHAIN_LAST = "harmony"
"""The stage whose checkpoints make a run usable (the prior is optional: without it generation uses the chain)."""
WEIGHTS = "weights.npz"


def _five_numbers(v, hi: float) -> bool:
    """Whether a statistics entry is a list of 5 numbers (not booleans) from 0 to `hi`."""
    return (
        isinstance(v, list)
        and len(v) == 5
        and all(not isinstance(x, bool) and isinstance(x, (int, float)) and 0 <= x <= hi for x in v)
    )


class RunError(Exception):
    """A run folder that cannot be used as asked (missing, damaged, or trained otherwise)."""


class NoCheckpoint(RunError, FileNotFoundError):
    """No trained model where one was asked for."""


class Diverged(RunError):
    """Training turned NaN or infinite: the run stops, its last finite checkpoint is kept, and it is not made
    the latest run."""


def latest_run() -> str | None:
    """The run folder trained last from this working folder, or None."""
    try:
        with open(LATEST, "rb") as f:
            path = f.read(1 << 16).decode("utf-8", "surrogateescape").strip()
    except OSError:
        return None
    return path if path and "\0" not in path and os.path.isdir(path) else None


def mark_latest(run_dir: str) -> None:
    """Make `run_dir` the default run of this working folder."""
    os.makedirs(RUNS_DIR, exist_ok=True)
    _write_text(LATEST, os.path.abspath(run_dir) + "\n")


def default_run(preset_name: str, latent: int) -> str:
    return os.path.join(RUNS_DIR, f"{preset_name}-k{latent}")


def _write_text(path: str, text: str) -> None:
    """Written whole or not at all: another process of a job may be reading the file at this moment."""

    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)

    write_atomically(path, write, f"{path}.{os.getpid()}.tmp")


class RunFolder:
    """Paths and readers / writers of one run folder (or packaged model folder)."""

    def __init__(self, root: str):
        self.root = root

    def path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    config_path = property(lambda self: self.path("config.json"))
    stats_path = property(lambda self: self.path("stats.json"))
    start_bars_path = property(lambda self: self.path("start_bars.npy"))
    metrics_path = property(lambda self: self.path("metrics.jsonl"))
    weights_path = property(lambda self: self.path(WEIGHTS))

    lock_path = property(lambda self: self.path(".lock"))

    def ckpt(self, stage: str) -> str:
        return self.path("ckpt", stage)

    def latents_path(self, split: str) -> str:
        return self.path("latents", f"{split}.npz")

    def loss_plot(self, stage: str) -> str:
        return self.path(f"loss-{stage}.png")

    # ---- what kind of folder ----------------------------------------------------------------------

    @property
    def packaged(self) -> bool:
        return os.path.exists(self.weights_path)

    @property
    def trained(self) -> bool:
        """Holds a complete model: a config and either packaged weights or the last stage's checkpoints."""
        return os.path.exists(self.config_path) and (self.packaged or os.path.isdir(self.ckpt(CHAIN_LAST)))

    # ---- one trainer at a time ----------------------------------------------------------------------

    def lock(self) -> RunLock:
        return RunLock(self)

    # ---- config ---------------------------------------------------------------------------------

    def read_config(self) -> Config:
        try:
            with open(self.config_path, "rb") as f:
                d = json.loads(f.read(MAX_JSON_BYTES + 1).decode("utf-8"))
        except (OSError, ValueError) as e:
            raise RunError(
                f"{self.config_path}: unreadable run configuration ({type(e).__name__}: {str(e)[:100]})"
            ) from None
        try:
            return Config.from_dict(d, self.config_path)
        except ValueError as e:
            raise RunError(str(e)) from None

    def start(self, cfg: Config, data_dir: str, *, writer: bool = True) -> None:
        """Begin or resume a run with `cfg`: a new folder records it, an existing one must match it."""
        os.makedirs(self.root, exist_ok=True)
        if os.path.exists(self.config_path):
            saved = self.read_config()
            if saved.prior != cfg.prior and dataclasses.replace(saved, prior=cfg.prior) == cfg:
                # the prior trains last, on the encoded latents: new prior settings keep the rest of the run
                if writer:
                    _write_text(self.config_path, cfg.to_json())
            elif saved != cfg:
                raise RunError(
                    f"{self.root} was started with a different configuration; use a new --run "
                    f"directory or the same settings (saved in {self.config_path})"
                )
        elif writer:
            _write_text(self.config_path, cfg.to_json())
        if writer:
            _write_text(self.path("data.txt"), os.path.abspath(data_dir) + "\n")

    def write_config(self, cfg: Config) -> None:
        _write_text(self.config_path, cfg.to_json())

    # ---- sampling statistics and start bars ------------------------------------------------------

    def read_stats(self) -> dict:
        try:
            with open(self.stats_path, "rb") as f:
                stats = json.loads(f.read(MAX_JSON_BYTES + 1).decode("utf-8"))
        except (OSError, ValueError) as e:
            raise RunError(
                f"{self.stats_path}: unreadable sampling statistics ({type(e).__name__}: {str(e)[:100]}); "
                f"re-run `train.py --stage encode` for this run"
            ) from None
        if not isinstance(stats, dict):
            raise RunError(
                f"{self.stats_path}: expected a JSON object of sampling statistics, got "
                f"{type(stats).__name__}; re-run `train.py --stage encode` for this run"
            )
        return stats

    def check_stats(self, stats: dict, cfg: Config, start_bars: np.ndarray | None = None) -> None:
        """The sampling statistics (and start bars) must fit the networks that `cfg` describes: shapes, finite
        values, thresholds at least 0 (and at most 1 off a grid: grid decoders use 2 for "no sustain" and a
        last-cell length), latent spreads above 0, pitch spreads in (0, 1], a harmony guidance from 0 to 20,
        track names in `single_line`, a whole number of pieces in `drum_kit`."""
        k2 = 2 * cfg.model.latent
        channels = (3 if cfg.model.grid else 2) if cfg.model.onsets else 1
        problems = []

        def array(name, default=None):
            try:
                a = np.asarray(stats.get(name, default), np.float32)
            except (TypeError, ValueError):
                problems.append(f"{name} is not an array of numbers")
                return None
            if not np.isfinite(a).all():
                problems.append(f"{name} holds values that are not finite")
                return None
            return a

        th = array("thresholds", [])
        if th is not None:
            th = th[:, None] if th.ndim == 1 else th
            if th.ndim != 2 or th.shape[0] != 5 or th.shape[1] not in (1, channels):
                problems.append(f"thresholds of shape {th.shape}, not (5, {channels})")
            elif (th < 0).any() or (not cfg.model.grid and (th > 1).any()):
                problems.append("thresholds below 0" + ("" if cfg.model.grid else " or above 1"))
        for name in ("latent_mean", "latent_std"):
            a = array(name) if name in stats else None
            if a is not None and a.shape != (5, k2):
                problems.append(f"{name} of shape {a.shape}, not (5, {k2}) for latent size {cfg.model.latent}")
            elif a is not None and name == "latent_std" and not (a > 0).all():
                problems.append("latent_std with values at or below 0")
        cuts = array("onset_thresholds") if "onset_thresholds" in stats else None
        if cuts is not None and (cuts.ndim != 2 or cuts.shape[0] != 5 or not ((cuts >= 0) & (cuts <= 1)).all()):
            problems.append(f"onset_thresholds of shape {cuts.shape} or outside [0, 1], not (5, cells)")
        pcuts = array("prior_onset_thresholds") if "prior_onset_thresholds" in stats else None
        if pcuts is not None and (cuts is None or pcuts.shape != cuts.shape or not ((pcuts > 0) & (pcuts <= 1)).all()):
            problems.append(f"prior_onset_thresholds of shape {pcuts.shape} or outside (0, 1], not as onset_thresholds")
        for name in ("count_scale", "prior_count_scale"):
            scale = array(name) if name in stats else None
            if scale is not None and (scale.shape != (5,) or not ((scale > 0) & (scale <= 10)).all()):
                problems.append(f"{name} of shape {scale.shape} or outside (0, 10], not (5,)")
        for name in ("spread", "prior_spread"):
            spread = array(name) if name in stats else None
            if spread is not None and (spread.shape != (5,) or not ((spread > 0) & (spread <= 1)).all()):
                problems.append(f"{name} of shape {spread.shape} or outside (0, 1], not (5,)")
        sus = array("prior_sustain") if "prior_sustain" in stats else None
        if sus is not None and (sus.shape != (5,) or not ((sus > 0) & (sus <= 2)).all()):
            problems.append(f"prior_sustain of shape {sus.shape} or outside (0, 2], not (5,)")
        for name in ("sustain_ages", "prior_sustain_ages"):
            ages = array(name) if name in stats else None
            if ages is not None and (ages.shape != (5, SUSTAIN_AGES) or not ((ages > 0) & (ages <= 2)).all()):
                problems.append(f"{name} of shape {ages.shape} or outside (0, 2], not (5, {SUSTAIN_AGES})")
        if ("latent_mean" in stats) != ("latent_std" in stats):
            problems.append("latent_mean and latent_std must come together")
        g = stats.get("harmony_guidance", 1.0)
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g <= 20:
            problems.append(f"harmony_guidance must be a number from 0 to 20, got {g!r}")
        for name, hi, what in (("harmony_weights", 10, "numbers"), ("band_shares", 1, "shares")):
            v = stats.get(name)
            if v is not None and not _five_numbers(v, hi):
                problems.append(f"{name} must be 5 {what} from 0 to {hi}, got {v!r}")
        lines = stats.get("single_line", [])
        names = {t.lower() for t in TRACKS}
        if not isinstance(lines, list) or not all(isinstance(t, str) and t.strip().lower() in names for t in lines):
            problems.append(f"single_line must be a list of track names ({', '.join(TRACKS)}), got {lines!r}")
        kit = stats.get("drum_kit", 0)
        if isinstance(kit, bool) or not isinstance(kit, int) or not 0 <= kit <= 128:
            problems.append(f"drum_kit must be a whole number of drum pieces from 0 to 128, got {kit!r}")
        if not isinstance(stats.get("data", {}), dict):
            problems.append("data must be a mapping")
        if start_bars is not None and (start_bars.ndim != 3 or start_bars.shape[1:] != (5, k2) or not len(start_bars)):
            problems.append(f"start bars of shape {start_bars.shape}, not (n, 5, {k2})")
        elif start_bars is not None and not np.isfinite(start_bars).all():
            problems.append("start bars hold values that are not finite")
        if problems:
            raise RunError(
                f"{self.stats_path}: the sampling statistics do not match config.json "
                f"({'; '.join(problems)}); re-run `train.py --stage encode` for this run"
            )

    def write_stats(self, stats: dict, *, indent: int = 2) -> None:
        _write_text(self.stats_path, json.dumps(stats, indent=indent))

    def read_start_bars(self) -> np.ndarray:
        try:
            with open(self.start_bars_path, "rb") as f:
                bars = np.lib.format.read_array(f, allow_pickle=False)
            return np.asarray(bars, np.float32)
        except Exception as e:  # numpy raises many types for damaged bytes
            raise RunError(
                f"{self.start_bars_path}: unreadable start bars ({type(e).__name__}: {str(e)[:80]}); "
                f"re-run `train.py --stage encode` for this run"
            ) from None

    def write_start_bars(self, bars: np.ndarray) -> None:
        write_atomically(
            self.start_bars_path, lambda tmp: np.save(tmp, bars.astype(np.float32)), self.start_bars_path + ".tmp.npy"
        )

    # ---- encoded latents ------------------------------------------------------------------------

    def write_latents(self, split: str, latents: np.ndarray, start: np.ndarray, length: np.ndarray) -> None:
        path = self.latents_path(split)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_atomically(
            path, lambda tmp: np.savez(tmp, latents=latents, start=start, length=length), path + ".tmp.npz"
        )

    @property
    def encoded(self) -> bool:
        """The encode stage finished: its last write, the statistics, is there."""
        return os.path.exists(self.stats_path) and os.path.exists(self.start_bars_path)

    def read_latents(self, splits: dict, latent: int) -> dict[str, np.ndarray] | None:
        """`{split: [bars, 5, 2K]}` for `splits` ({name: number of bars}), or None when the encode stage has not
        finished. Latents that do not fit the dataset or the latent size are an error, not a silent reuse."""
        if not self.encoded:
            return None
        out = {}
        for name, bars in splits.items():
            path = self.latents_path(name)
            if not os.path.exists(path):
                return None
            try:
                with np.load(path, allow_pickle=False) as z:
                    out[name] = np.asarray(z["latents"], np.float32)
            except Exception as e:  # zipfile, zlib and numpy raise many types for damaged bytes
                raise RunError(
                    f"{path}: unreadable latents ({type(e).__name__}); re-run `train.py --stage encode`"
                ) from None
            if out[name].shape != (bars, 5, 2 * latent) and not (bars == 0 and out[name].shape[0] == 0):
                raise RunError(
                    f"{path}: latents of shape {out[name].shape}, but the dataset's {name} split has {bars} "
                    f"bars and the run latent size {latent}; re-run `train.py --stage encode`"
                )
        return out

    # ---- metrics log ----------------------------------------------------------------------------

    def append_metrics(self, record: dict) -> None:
        if not self._metrics_checked:  # a line torn by a kill or a full disk is cut off before the log grows
            self.repair_metrics()
            self._metrics_checked = True
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    _metrics_checked = False

    def repair_metrics(self) -> None:
        """Cut a torn last line (no newline: the write was cut short) off the metrics log."""
        try:
            with open(self.metrics_path, "rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size == 0:
                    return
                f.seek(max(0, size - (1 << 20)))
                tail = f.read()
                if tail.endswith(b"\n"):
                    return
                cut = tail.rfind(b"\n")
                f.truncate(size - len(tail) + cut + 1 if cut >= 0 else (0 if size <= (1 << 20) else size))
        except FileNotFoundError:
            return

    def read_metrics(self) -> list[dict]:
        """The logged records. A last line torn by a kill is left out; a record that is not a JSON object with
        the fields every record has (stage, kind, step) is left out with a warning naming the file and line."""
        if not os.path.exists(self.metrics_path):
            return []
        out, bad = [], []
        with open(self.metrics_path, "rb") as f:
            lines = f.read().split(b"\n")
        torn = lines.pop()  # after the last newline: empty, or a line whose write was cut short
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except ValueError:
                rec = None
            if (
                isinstance(rec, dict)
                and isinstance(rec.get("stage"), str)
                and isinstance(rec.get("kind"), str)
                and isinstance(rec.get("step"), int)
                and isinstance(rec.get("epoch", 0), int)
            ):
                out.append(rec)
            else:
                bad.append(i)
        if bad:
            import warnings

            warnings.warn(
                f"{self.metrics_path}: left out {len(bad)} unreadable record(s) (line {bad[0]}"
                f"{' and more' if len(bad) > 1 else ''})",
                RuntimeWarning,
                stacklevel=2,
            )
        del torn
        return out


class RunLock:
    """An exclusive lock on a run folder while it trains. The operating system releases it when the
    process ends, however it ends, so a killed run never leaves the folder locked."""

    def __init__(self, run: RunFolder):
        self.run = run
        self.fd = None

    def __enter__(self) -> RunLock:
        try:
            import fcntl
        except ImportError:  # no POSIX locks here: run unguarded
            return self
        os.makedirs(self.run.root, exist_ok=True)
        fd = os.open(self.run.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunError(
                f"{self.run.root} is being trained by another process (pid {holder}); wait for it to "
                f"finish or train into another --run folder"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
