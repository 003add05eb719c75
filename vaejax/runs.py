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

`runs/LATEST` (relative to the working folder) names the run trained last: what `vaejax.load()` and
`sample.py` use by default.
"""

from __future__ import annotations

import json
import os

import numpy as np

from vaejax.config import Config

RUNS_DIR = "runs"
"""Where training puts run folders by default (relative to the working folder)."""
LATEST = os.path.join(RUNS_DIR, "LATEST")
STAGES = ("vae", "encode", "melody", "harmony")
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
        return os.path.exists(self.config_path) and (self.packaged or os.path.isdir(self.ckpt(STAGES[-1])))

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
            if self.read_config() != cfg:
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

    def read_latents(self, splits) -> dict[str, np.ndarray] | None:
        """`{split: [bars, 5, 2K]}`, or None when any split is missing (not encoded yet)."""
        out = {}
        for name in splits:
            path = self.latents_path(name)
            if not os.path.exists(path):
                return None
            try:
                with np.load(path, allow_pickle=False) as z:
                    out[name] = z["latents"]
            except (OSError, ValueError, KeyError) as e:
                raise RunError(f"{path}: unreadable latents ({e}); re-run `train.py --stage encode`") from None
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
