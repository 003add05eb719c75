"""Flax nnx modules: the per-instrument VAE, MelodyNN and HarmonyNN, and their stacked forms.

Convolutions here have kernel == stride (non-overlapping patches), so each one is exactly a reshape
followed by a matrix product. Written that way, `vmap` over the instrument axis turns every layer into a
batched matrix product, which XLA runs near matmul speed on CPU, GPU and TPU; a generic `lax.conv` under
`vmap` becomes a grouped convolution, several times slower on CPU. `PatchConv` equals `nnx.Conv` with
`strides=kernel_size, padding='VALID'` (tested).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from vaejax.config import HARMONY, TRACKS, DataConfig, ModelConfig

INIT_ON_RATE = 0.02
"""Initial output probability: pianorolls have about 1-3% of cells on."""


class PatchConv(nnx.Module):
    """Convolution with kernel == stride over `[B, T, P, C]`."""

    def __init__(self, kernel: tuple[int, int], c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.kernel = kernel
        fan_in = kernel[0] * kernel[1] * c_in
        self.w = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (fan_in, c_out)))
        self.b = nnx.Param(jnp.zeros((c_out,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, p, c = x.shape
        kt, kp = self.kernel
        x = x.reshape(b, t // kt, kt, p // kp, kp, c).transpose(0, 1, 3, 2, 4, 5)
        x = x.reshape(b, t // kt, p // kp, kt * kp * c)
        return x @ self.w[...] + self.b[...]


class PatchDeconv(nnx.Module):
    """Transposed convolution with kernel == stride: `[B, T, P, C]` -> `[B, T*kt, P*kp, c_out]`."""

    def __init__(self, kernel: tuple[int, int], c_in: int, c_out: int, *, rngs: nnx.Rngs,
                 bias_init: float = 0.0):
        self.kernel = kernel
        self.c_out = c_out
        self.w = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (c_in, kernel[0] * kernel[1] * c_out)))
        self.b = nnx.Param(jnp.full((c_out,), bias_init, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, p, _ = x.shape
        kt, kp = self.kernel
        y = (x @ self.w[...]).reshape(b, t, p, kt, kp, self.c_out).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(b, t * kt, p * kp, self.c_out) + self.b[...]


class VAEOutput(NamedTuple):
    logits: jax.Array  # [B, T, P]
    mu: jax.Array  # [B, K]
    logvar: jax.Array  # [B, K]


def reparameterize(mu: jax.Array, logvar: jax.Array, key: jax.Array) -> jax.Array:
    """z = mu + sigma * eps."""
    return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)


class VAE(nnx.Module):
    """One instrument's VAE: conv encoder -> Gaussian over K latents -> deconv decoder."""

    def __init__(self, cfg: ModelConfig, data: DataConfig = DataConfig(), *, rngs: nnx.Rngs):
        kt1, kt2 = cfg.time_patch
        c1, c2 = cfg.channels
        if data.steps % (kt1 * kt2) or data.num_pitches % cfg.pitch_patch:
            raise ValueError(f"segment of {data.steps} steps x {data.num_pitches} pitches is not divisible "
                             f"by patches {cfg.time_patch} x {cfg.pitch_patch}")
        self.grid = (data.steps // (kt1 * kt2), data.num_pitches // cfg.pitch_patch, c2)
        flat = self.grid[0] * self.grid[1] * c2
        self.conv1 = PatchConv((kt1, cfg.pitch_patch), 1, c1, rngs=rngs)
        self.conv2 = PatchConv((kt2, 1), c1, c2, rngs=rngs)
        self.enc = nnx.Linear(flat, cfg.hidden, rngs=rngs)
        self.head = nnx.Linear(cfg.hidden, 2 * cfg.latent, rngs=rngs)
        self.dec = nnx.Linear(cfg.latent, cfg.hidden, rngs=rngs)
        self.expand = nnx.Linear(cfg.hidden, flat, rngs=rngs)
        self.deconv2 = PatchDeconv((kt2, 1), c2, c1, rngs=rngs)
        logit = float(jnp.log(INIT_ON_RATE / (1 - INIT_ON_RATE)))
        self.deconv1 = PatchDeconv((kt1, cfg.pitch_patch), c1, 1, rngs=rngs, bias_init=logit)

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`[B, T, P]` pianoroll -> (mu, logvar), each `[B, K]`."""
        h = jax.nn.relu(self.conv1(x[..., None]))
        h = jax.nn.relu(self.conv2(h))
        h = jax.nn.relu(self.enc(h.reshape(h.shape[0], -1)))
        mu, logvar = jnp.split(self.head(h), 2, axis=-1)
        return mu, jnp.clip(logvar, -10.0, 10.0)

    def decode(self, z: jax.Array) -> jax.Array:
        """`[B, K]` latent -> `[B, T, P]` logits."""
        h = jax.nn.relu(self.dec(z))
        h = jax.nn.relu(self.expand(h)).reshape((z.shape[0],) + self.grid)
        h = jax.nn.relu(self.deconv2(h))
        return self.deconv1(h)[..., 0]

    def __call__(self, x: jax.Array, key: jax.Array) -> VAEOutput:
        mu, logvar = self.encode(x)
        return VAEOutput(self.decode(reparameterize(mu, logvar, key)), mu, logvar)


class MLP(nnx.Module):
    """Latent-parameter chain network: `x -> own + f(x)`, where `own` is the slice of x being advanced.

    The residual makes "next = previous" the starting point, which is a strong baseline for bar-to-bar
    latent movement; the network learns the change.
    """

    def __init__(self, d_in: int, d_out: int, hidden: int, layers: int, *, rngs: nnx.Rngs):
        dims = [d_in] + [hidden] * layers
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims[:-1], dims[1:])])
        self.out = nnx.Linear(dims[-1], d_out, kernel_init=nnx.initializers.zeros_init(), rngs=rngs)
        self.d_out = d_out

    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for layer in self.layers:
            h = jax.nn.gelu(layer(h))
        return x[..., -self.d_out:] + self.out(h)


def MelodyNN(cfg: ModelConfig, *, rngs: nnx.Rngs) -> MLP:
    """Piano latent parameters (mu, logvar) at bar t -> at bar t+1."""
    return MLP(2 * cfg.latent, 2 * cfg.latent, cfg.chain_hidden, cfg.chain_layers, rngs=rngs)


def HarmonyNN(cfg: ModelConfig, *, rngs: nnx.Rngs) -> MLP:
    """(piano params at t+1, own params at t) -> own params at t+1. The last 2K inputs are `own`."""
    return MLP(4 * cfg.latent, 2 * cfg.latent, cfg.chain_hidden, cfg.chain_layers, rngs=rngs)


def _stack(make, n: int, key: jax.Array):
    @nnx.vmap(in_axes=0, out_axes=0)
    def create(k):
        return make(nnx.Rngs(params=k))

    return create(jax.random.split(key, n))


def vae_stack(cfg: ModelConfig, data: DataConfig, key: jax.Array) -> VAE:
    """Five VAEs with independent initialisations, parameters stacked on a leading instrument axis."""
    return _stack(lambda r: VAE(cfg, data, rngs=r), len(TRACKS), key)


def harmony_stack(cfg: ModelConfig, key: jax.Array) -> MLP:
    """Four HarmonyNNs (Drums, Guitar, Bass, Strings) stacked on a leading axis."""
    return _stack(lambda r: HarmonyNN(cfg, rngs=r), len(HARMONY), key)


def melody_net(cfg: ModelConfig, key: jax.Array) -> MLP:
    return MelodyNN(cfg, rngs=nnx.Rngs(params=key))


def count_params(module: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
