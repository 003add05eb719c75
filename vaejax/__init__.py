"""vaejax: multi-instrument music generation with per-instrument VAEs and latent melody / harmony chains.

The library does what the command lines do: `load` is `sample.py`'s model, `train` is `train.py`,
`prepare` is `python -m vaejax.data prepare`.
"""

from vaejax import config, music, render
from vaejax.config import TRACKS, Config, preset

__all__ = ["config", "music", "render", "TRACKS", "Config", "preset", "load", "prepare", "train", "show"]
__version__ = "0.1.0"


def load(name: str | None = None):
    """A trained model: a run or packaged model folder, a packaged model's name ("lpd5"), or by default
    the latest run trained here, else "lpd5". See `vaejax.trained_model.TrainedModel`."""
    from vaejax.trained_model import load as _load

    return _load(name)


def prepare(src: str, out: str, **kw) -> dict:
    """Prepare a dataset folder; see `vaejax.data.prepare`."""
    from vaejax.data import prepare as _prepare

    return _prepare(src, out, **kw)


def train(run_dir: str | None = None, data: str | None = None, cfg: Config | None = None, **kw):
    """Train every stage as `train.py` does; returns (run folder, validation figures). See
    `vaejax.training.train`."""
    from vaejax.training import train as _train

    return _train(run_dir, data, cfg, **kw)


def show(song, **kw):
    """The studio's piano roll and player for a song, inline in a notebook (no server): an IPython HTML
    object. See `vaejax.studio.inline.show`."""
    from vaejax.studio.inline import show as _show

    return _show(song, **kw)
