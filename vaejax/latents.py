"""The latent contract between training and generation.

Each encoded segment of each track is a Gaussian: `Latents(mu, logvar)`, each `[..., K]`. The latent chains
(MelodyNN, HarmonyNNs) read and write both halves side by side (`Latents.concat()`, `[..., 2K]`, mu first),
in standardised units: per track and dimension, minus the training bars' mean, over their spread
(`LatentNorm`). Sigma noise is added in those units and the chain state is kept within +-CLIP. This module
is the only place that knows the layout; training writes it, generation reads it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vaejax.config import HARMONY, PIANO

CLIP = 5.0
"""Chain states are clipped to +-CLIP standard deviations of the data."""
START_BAND = 0
"""Generation starts from real bars where the piano and at least this many other tracks play."""


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Latents:
    """Latent parameters: posterior means and log variances, each `[..., K]` (leading axes: segments,
    tracks, songs, as the caller arranges them). A pytree: it passes through `jit` and `tree.map`."""

    mu: Any
    logvar: Any

    @classmethod
    def from_concat(cls, a) -> Latents:
        """From the chains' layout `[..., 2K]` (mu first)."""
        k = a.shape[-1] // 2
        return cls(a[..., :k], a[..., k:])

    @classmethod
    def of(cls, x) -> Latents:
        """`x` as Latents: Latents unchanged, an `[..., 2K]` array split."""
        return x if isinstance(x, Latents) else cls.from_concat(np.asarray(x))

    def concat(self):
        """The chains' layout `[..., 2K]`."""
        xp = jnp if isinstance(self.mu, jax.Array) else np
        return xp.concatenate([self.mu, self.logvar], axis=-1)

    @property
    def shape(self) -> tuple[int, ...]:
        """Leading shape (without the latent axis)."""
        return tuple(self.mu.shape[:-1])

    @property
    def dim(self) -> int:
        """K, the latent dimension (mu and logvar have K values each)."""
        return int(self.mu.shape[-1])

    def __len__(self) -> int:
        return int(self.mu.shape[0])

    def __getitem__(self, index) -> Latents:
        return Latents(self.mu[index], self.logvar[index])

    def map(self, fn) -> Latents:
        return Latents(fn(self.mu), fn(self.logvar))


@dataclasses.dataclass(frozen=True)
class LatentNorm:
    """Per-track, per-dimension mean and spread `[5, 2K]` of the latent parameters over the training bars."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, train: np.ndarray) -> LatentNorm:
        """From the training split's latent parameters `[bars, 5, 2K]`."""
        return cls(train.mean(axis=0).astype(np.float32), np.maximum(train.std(axis=0), 1e-3).astype(np.float32))

    @classmethod
    def identity(cls, k2: int, tracks: int = 5) -> LatentNorm:
        return cls(np.zeros((tracks, k2), np.float32), np.ones((tracks, k2), np.float32))

    def standardize(self, x, tracks=slice(None)):
        """Data units -> standardised; `x` `[..., 5, 2K]` (or `[..., 2K]` of the tracks selected)."""
        return (x - self.mean[tracks]) / self.std[tracks]

    def unstandardize(self, x, tracks=slice(None)):
        return x * self.std[tracks] + self.mean[tracks]


def add_noise(z, sigma, key):
    """Sigma noise on standardised latent parameters, the result kept within +-CLIP: the one way generation
    perturbs latents (the chains at every segment, variations of a given song)."""
    return jnp.clip(z + sigma * jax.random.normal(key, z.shape), -CLIP, CLIP)


def harmony_input(piano_next, own):
    """A HarmonyNN's input: (piano at t+1, own track at t), concatenated; `piano_next` broadcasts to
    `own`'s shape (`[..., 2K]` each -> `[..., 4K]`)."""
    xp = jnp if isinstance(own, jax.Array) or isinstance(piano_next, jax.Array) else np
    return xp.concatenate([xp.broadcast_to(piano_next, own.shape), own], -1)


def pairs(start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Indices i of bars whose successor i+1 is in the same song (songs given by start and length)."""
    idx = [np.arange(s, s + n - 1) for s, n in zip(start, length) if n > 1]
    return np.concatenate(idx) if idx else np.zeros(0, np.int64)


def chain_data(lat: np.ndarray, start, length, *, harmony: bool):
    """(inputs, targets) of every consecutive-bar pair of a split, latents `[bars, 5, 2K]` standardised:
    MelodyNN `[N, 2K] -> [N, 2K]`; the HarmonyNNs `[4, N, 4K] -> [4, N, 2K]`."""
    i = pairs(start, length)
    if not harmony:
        return lat[i, PIANO], lat[i + 1, PIANO]
    h = np.array(HARMONY)
    x = harmony_input(lat[i + 1, PIANO][None], lat[i][:, h].transpose(1, 0, 2))
    return x, lat[i + 1][:, h].transpose(1, 0, 2)


def playing(bars: np.ndarray, band: int = 0) -> np.ndarray:
    """Which of `[5, n, T, P]` bars have the piano playing and at least `band` other tracks: `[n]` bool."""
    sounding = bars.any(axis=(2, 3))  # [5, n]
    return sounding[PIANO] & (sounding.sum(axis=0) >= 1 + band)


def start_bars(
    latents: np.ndarray, split, *, seed: int, n: int = 1024, look_at: int = 20000, band: int = START_BAND
) -> np.ndarray:
    """Latent parameters `[<=n, 5, 2K]` of real training bars where the piano and at least `band` other
    tracks play: where generation starts. (Songs' first bars are a poor start: most are intros, and in the
    LPD-cleansed sample nine in ten have a silent piano, so a chain started there stays silent.) With
    `band=0` the other tracks play or rest as often as they do beside a playing piano, and a chain that
    starts with a track resting tends to keep it resting, as songs without that instrument do."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(split), size=min(look_at, len(split)), replace=False))
    good = idx[playing(split.bars(idx), band)]
    if len(good) == 0:  # a corpus without such bars: take any bars
        good = idx
    return latents[rng.permutation(good)[:n]]
