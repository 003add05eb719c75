"""Packaged models: a trained run's best weights in one npz beside its config and statistics, loadable with
no Orbax checkpoint, no training code and no network (`vaejax.load("lpd5")`).

`vaejax-export RUN OUT` (or `python -m vaejax.cli export RUN OUT`) writes one.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from vaejax.files import write_atomically
from vaejax.runs import NoCheckpoint, RunFolder

PRETRAINED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
"""The packaged models shipped inside vaejax."""
DEFAULT_PRETRAINED = "lpd5"
NETWORKS = ("vae", "melody", "harmony")
PRIOR_PREFIX = "prior_"
"""Weights of the learned priors (`vaejax.prior`), where a model carries them: `prior_song/...`, `prior_band/...`."""


def pretrained_names() -> list[str]:
    """Names of the models packaged with vaejax (`load(name)`)."""
    if not os.path.isdir(PRETRAINED):
        return []
    return sorted(d for d in os.listdir(PRETRAINED) if RunFolder(os.path.join(PRETRAINED, d)).packaged)


def pretrained_path(name: str) -> str:
    return os.path.join(PRETRAINED, name)


def _flatten(tree, prefix: str) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {prefix + jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}


def read_weights(run: RunFolder, templates: dict) -> tuple[dict, np.ndarray]:
    """({network: parameters in the structure of `templates[network]`}, start bars) of a packaged model."""
    try:
        with np.load(run.weights_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile, zlib and numpy raise many types for damaged bytes
        raise NoCheckpoint(
            f"{run.weights_path}: unreadable packaged weights ({type(e).__name__}: {str(e)[:80]})"
        ) from None
    if not all(isinstance(a, np.ndarray) and a.dtype.kind in "fiu" for a in arrays.values()):
        raise NoCheckpoint(f"{run.weights_path}: packaged weights hold arrays that are not numbers")

    def get(prefix):
        def leaf(path, like):
            key = prefix + jax.tree_util.keystr(path)
            if key not in arrays or arrays[key].shape != tuple(like.shape):
                raise NoCheckpoint(f"{run.weights_path}: packaged model lacks {key} of shape {tuple(like.shape)}")
            return jnp.asarray(arrays[key], jnp.float32)

        return leaf

    params = {name: jax.tree_util.tree_map_with_path(get(name + "/"), templates[name]) for name in NETWORKS}
    if "start_bars" not in arrays:
        raise NoCheckpoint(f"{run.weights_path}: packaged model lacks its start bars")
    return params, arrays["start_bars"].astype(np.float32)


def read_prior(run: RunFolder, templates: dict) -> dict | None:
    """{name: parameters} of the packaged priors named in `templates` ("song", "band") that `weights.npz`
    carries, or None when it carries none (a model packaged before the prior existed)."""
    try:
        with np.load(run.weights_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files if k.startswith(PRIOR_PREFIX)}
    except (OSError, ValueError) as e:
        raise NoCheckpoint(f"{run.weights_path}: unreadable packaged weights ({e})") from None
    out = {}
    for name, like in templates.items():
        prefix = f"{PRIOR_PREFIX}{name}/"
        if not any(k.startswith(prefix) for k in arrays):
            continue

        def leaf(path, like, prefix=prefix):
            key = prefix + jax.tree_util.keystr(path)
            if key not in arrays or arrays[key].shape != tuple(like.shape):
                raise NoCheckpoint(
                    f"{run.weights_path}: packaged prior lacks {key} of shape {tuple(like.shape)} "
                    f"(config.json's prior section must match the packaged prior)"
                )
            return jnp.asarray(arrays[key], jnp.float32)

        out[name] = jax.tree_util.tree_map_with_path(leaf, like)
    return out or None


def export(model, out_dir: str, *, dtype=np.float16) -> dict:
    """Write a `TrainedModel` as a packaged model folder (config.json, stats.json, weights.npz with
    parameters in `dtype`) that `load(out_dir)` restores. Returns file sizes in bytes."""
    run = RunFolder(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    arrays = {}
    for name, params in zip(NETWORKS, (model.vae, model.mel, model.har)):
        arrays.update(_flatten(params, name + "/"))
    for name, params in (getattr(model, "prior", None) or {}).items():
        arrays.update(_flatten(params, f"{PRIOR_PREFIX}{name}/"))
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    arrays["start_bars"] = model.start_bars.astype(dtype)
    write_atomically(run.weights_path, lambda tmp: np.savez_compressed(tmp, **arrays), run.weights_path + ".tmp.npz")
    run.write_config(model.cfg)
    stats = {k: v for k, v in model.stats.items() if k != "val"}
    stats["harmony_guidance"] = model.harmony_guidance
    stats["harmony_weights"] = [float(w) for w in model.harmony_weights]
    run.write_stats(stats, indent=1)
    return {os.path.basename(p): os.path.getsize(p) for p in (run.weights_path, run.config_path, run.stats_path)}
