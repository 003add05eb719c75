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

from vaejax.config import Config

RUNS_DIR = "runs"
"""Where training puts run folders by default (relative to the working folder)."""
LATEST = os.path.join(RUNS_DIR, "LATEST")
STAGES = ("vae", "encode", "melody", "harmony", "prior")
CHAIN_LAST = "harmony"
"""The stage whose checkpoints make a run usable (the prior is optional: without it generation uses the chain)."""
WEIGHTS = "weights.npz"


class RunError(Exception):
    """A run folder that cannot be used as asked (missing, damaged, or trained otherwise)."""


class NoCheckpoint(RunError, FileNotFoundError):
    """No trained model where one was asked for."""


def latest_run() -> str | None:
    """The run folder trained last from this working folder, or None."""
    if os.path.exists(LATEST):
        with open(LATEST) as f:
            path = f.read().strip()
        if os.path.isdir(path):
            return path
    return None


def mark_latest(run_dir: str) -> None:
    """Make `run_dir` the default run of this working folder."""
    os.makedirs(RUNS_DIR, exist_ok=True)
    _write_text(LATEST, os.path.abspath(run_dir) + "\n")


def default_run(preset_name: str, latent: int) -> str:
    return os.path.join(RUNS_DIR, f"{preset_name}-k{latent}")


def _write_text(path: str, text: str) -> None:
    """Written whole or not at all: another process of a job may be reading the file at this moment."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


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

    def lock(self) -> "RunLock":
        return RunLock(self)

    # ---- config ---------------------------------------------------------------------------------

    def read_config(self) -> Config:
        try:
            with open(self.config_path) as f:
                return Config.from_dict(json.load(f))
        except (OSError, ValueError, TypeError) as e:
            raise RunError(f"{self.config_path}: unreadable run configuration ({e})") from None

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
                raise RunError(f"{self.root} was started with a different configuration; use a new --run "
                               f"directory or the same settings (saved in {self.config_path})")
        elif writer:
            _write_text(self.config_path, cfg.to_json())
        if writer:
            _write_text(self.path("data.txt"), os.path.abspath(data_dir) + "\n")

    def write_config(self, cfg: Config) -> None:
        _write_text(self.config_path, cfg.to_json())

    # ---- sampling statistics and start bars ------------------------------------------------------

    def read_stats(self) -> dict:
        try:
            with open(self.stats_path) as f:
                return json.load(f)
        except (OSError, ValueError) as e:
            raise RunError(f"{self.stats_path}: unreadable sampling statistics ({e}); "
                           f"re-run `train.py --stage encode` for this run") from None

    def check_stats(self, stats: dict, cfg: Config, start_bars: np.ndarray | None = None) -> None:
        """The sampling statistics (and start bars) must fit the networks that `cfg` describes."""
        k2 = 2 * cfg.model.latent
        channels = (3 if cfg.model.grid else 2) if cfg.model.onsets else 1
        problems = []
        th = np.asarray(stats.get("thresholds", []), np.float32)
        th = th[:, None] if th.ndim == 1 else th
        if th.ndim != 2 or th.shape[0] != 5 or th.shape[1] not in (1, channels):
            problems.append(f"thresholds of shape {th.shape}, not (5, {channels})")
        for name in ("latent_mean", "latent_std"):
            if name in stats and np.shape(stats[name]) != (5, k2):
                problems.append(f"{name} of shape {np.shape(stats[name])}, not (5, {k2}) for latent size "
                                f"{cfg.model.latent}")
        if start_bars is not None and (start_bars.ndim != 3 or start_bars.shape[1:] != (5, k2) or not len(start_bars)):
            problems.append(f"start bars of shape {start_bars.shape}, not (n, 5, {k2})")
        if problems:
            raise RunError(f"{self.root}: the sampling statistics do not match config.json ({'; '.join(problems)}); "
                           f"re-run `train.py --stage encode` for this run")

    def write_stats(self, stats: dict, *, indent: int = 2) -> None:
        _write_text(self.stats_path, json.dumps(stats, indent=indent))

    def read_start_bars(self) -> np.ndarray:
        try:
            return np.load(self.start_bars_path, allow_pickle=False).astype(np.float32)
        except (OSError, ValueError) as e:
            raise RunError(f"{self.start_bars_path}: unreadable start bars ({e}); "
                           f"re-run `train.py --stage encode` for this run") from None

    def write_start_bars(self, bars: np.ndarray) -> None:
        tmp = self.start_bars_path + ".tmp.npy"
        np.save(tmp, bars.astype(np.float32))
        os.replace(tmp, self.start_bars_path)

    # ---- encoded latents ------------------------------------------------------------------------

    def write_latents(self, split: str, latents: np.ndarray, start: np.ndarray, length: np.ndarray) -> None:
        path = self.latents_path(split)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.savez(path + ".tmp.npz", latents=latents, start=start, length=length)
        os.replace(path + ".tmp.npz", path)

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
                    out[name] = z["latents"]
            except (OSError, ValueError, KeyError, EOFError) as e:
                raise RunError(f"{path}: unreadable latents ({type(e).__name__}); re-run `train.py --stage encode`") from None
            if out[name].shape != (bars, 5, 2 * latent) and not (bars == 0 and out[name].shape[0] == 0):
                raise RunError(f"{path}: latents of shape {out[name].shape}, but the dataset's {name} split has {bars} "
                               f"bars and the run latent size {latent}; re-run `train.py --stage encode`")
        return out

    # ---- metrics log ----------------------------------------------------------------------------

    def append_metrics(self, record: dict) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_metrics(self) -> list[dict]:
        if not os.path.exists(self.metrics_path):
            return []
        with open(self.metrics_path) as f:
            return [json.loads(line) for line in f if line.strip()]


class RunLock:
    """An exclusive lock on a run folder while it trains. The operating system releases it when the
    process ends, however it ends, so a killed run never leaves the folder locked."""

    def __init__(self, run: RunFolder):
        self.run = run
        self.fd = None

    def __enter__(self) -> "RunLock":
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
            raise RunError(f"{self.run.root} is being trained by another process (pid {holder}); wait for it to "
                           f"finish or train into another --run folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
