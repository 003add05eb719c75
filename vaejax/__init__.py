"""vaejax: multi-instrument music generation with per-instrument VAEs and latent melody / harmony chains."""

from vaejax import config, music, render
from vaejax.config import TRACKS, Config, preset

__all__ = ["config", "music", "render", "TRACKS", "Config", "preset", "load", "prepare", "train"]
__version__ = "0.1.0"


def load(run_dir: str | None = None):
    """A trained model from a run directory (default: the latest run). See `vaejax.sampler.TrainedModel`."""
    from vaejax.sampler import load as _load
    return _load(run_dir)


def prepare(src: str, out: str, **kw) -> dict:
    """Prepare a dataset folder; see `vaejax.data.prepare`."""
    from vaejax.data import prepare as _prepare
    return _prepare(src, out, **kw)


def train(run_dir: str, data_dir: str, cfg: Config | None = None, **kw) -> dict:
    """Run every training stage; see `vaejax.training.train_all`."""
    from vaejax.training import train_all
    return train_all(run_dir, cfg or preset("default"), data_dir, **kw)
