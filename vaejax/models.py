"""Flax nnx modules: the per-instrument VAE, MelodyNN and HarmonyNN, and their stacked forms.

Convolutions here have kernel == stride (non-overlapping patches), so each one is exactly a reshape
followed by a matrix product. Written that way, `vmap` over the instrument axis turns every layer into a
batched matrix product, which XLA runs near matmul speed on CPU, GPU and TPU; a generic `lax.conv` under
`vmap` becomes a grouped convolution, several times slower on CPU.

Activations are kept pitch-major, `[B, pitch, time, channels]`: a patch along time is then a contiguous
run of memory and the time-only layers need no transpose at all (forward or backward). Only the input and
the output pianoroll are transposed once. `PatchConv` on `[B, P, T, C]` equals `nnx.Conv` with
`strides=kernel_size, padding='VALID'` on `[B, T, P, C]`, with the same kernel (tested).
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
    """Convolution with kernel == stride over pitch-major `[B, P, T, C]`; kernel given as (time, pitch)."""

    def __init__(self, kernel: tuple[int, int], c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.kernel = kernel
        fan_in = kernel[0] * kernel[1] * c_in
        self.w = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (fan_in, c_out)))  # rows: (kt, kp, c)
        self.b = nnx.Param(jnp.zeros((c_out,), jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, p, t, c = x.shape
        kt, kp = self.kernel
        if kp == 1:  # contiguous time patches: a free reshape
            x = x.reshape(b, p, t // kt, kt * c)
        else:
            x = x.reshape(b, p // kp, kp, t // kt, kt, c).transpose(0, 1, 3, 4, 2, 5)
            x = x.reshape(b, p // kp, t // kt, kt * kp * c)
        # a 2-D matrix product: XLA's CPU backend runs dots with several free dimensions far slower
        y = x.reshape(-1, x.shape[-1]) @ self.w[...] + self.b[...]
        return y.reshape(x.shape[:-1] + (y.shape[-1],))


class PatchDeconv(nnx.Module):
    """Transposed convolution with kernel == stride: `[B, P, T, C]` -> `[B, P*kp, T*kt, c_out]`."""

    def __init__(self, kernel: tuple[int, int], c_in: int, c_out: int, *, rngs: nnx.Rngs,
                 bias_init: float = 0.0):
        self.kernel = kernel
        self.c_out = c_out
        self.w = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (c_in, kernel[0] * kernel[1] * c_out)))
        self.b = nnx.Param(jnp.full((c_out,), bias_init, jnp.float32))

    def __call__(self, x: jax.Array) -> jax.Array:
        b, p, t, _ = x.shape
        kt, kp = self.kernel
        y = (x.reshape(-1, x.shape[-1]) @ self.w[...]).reshape(b, p, t, -1)  # [b, p, t, (kt, kp, c_out)]
        if kp == 1:
            y = y.reshape(b, p, t * kt, self.c_out)
        else:
            y = y.reshape(b, p, t, kt, kp, self.c_out).transpose(0, 1, 4, 2, 3, 5)
            y = y.reshape(b, p * kp, t * kt, self.c_out)
        return y + self.b[...]


class VAEOutput(NamedTuple):
    logits: jax.Array  # [B, P/kp, T/kt, kt*kp] (patch layout, see to_patches)
    mu: jax.Array  # [B, K]
    logvar: jax.Array  # [B, K]


def reparameterize(mu: jax.Array, logvar: jax.Array, key: jax.Array) -> jax.Array:
    """z = mu + sigma * eps."""
    return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)


def to_patches(x: jax.Array, kt: int, kp: int) -> jax.Array:
    """`[..., T, P]` pianoroll -> pitch-major patches `[..., P/kp, T/kt, kt*kp]` (the first layer's input)."""
    *lead, t, p = x.shape
    x = x.reshape(*lead, t // kt, kt, p // kp, kp)
    n = len(lead)
    x = x.transpose(*range(n), n + 2, n, n + 1, n + 3)
    return x.reshape(*lead, p // kp, t // kt, kt * kp)


def from_patches(y: jax.Array, kt: int, kp: int) -> jax.Array:
    """Inverse of `to_patches`."""
    *lead, pp, tt, _ = y.shape
    n = len(lead)
    y = y.reshape(*lead, pp, tt, kt, kp).transpose(*range(n), n + 1, n + 2, n, n + 3)
    return y.reshape(*lead, tt * kt, pp * kp)


class VAE(nnx.Module):
    """One instrument's VAE: conv encoder -> Gaussian over K latents -> deconv decoder.

    Training works on the patch layout of `to_patches` end to end: the encoder's first layer reads it, the
    decoder's last layer writes it, and the loss (a sum over cells) compares the two there, so the
    pianoroll is rearranged once, outside the gradient, instead of twice per step inside it.
    """

    def __init__(self, cfg: ModelConfig, data: DataConfig = DataConfig(), *, rngs: nnx.Rngs):
        kt1, kt2 = cfg.time_patch
        c1, c2 = cfg.channels
        if data.steps % (kt1 * kt2) or data.num_pitches % cfg.pitch_patch:
            raise ValueError(f"segment of {data.steps} steps x {data.num_pitches} pitches is not divisible "
                             f"by patches {cfg.time_patch} x {cfg.pitch_patch}")
        self.patch = (kt1, cfg.pitch_patch)
        self.grid = (data.num_pitches // cfg.pitch_patch, data.steps // (kt1 * kt2), c2)  # pitch-major
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

    def patches(self, x: jax.Array) -> jax.Array:
        """`[B, T, P]` -> the patch layout the network reads and writes."""
        return to_patches(x, *self.patch)

    def encode_patches(self, xp: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Patches `[B, P/kp, T/kt, kt*kp]` -> (mu, logvar), each `[B, K]`."""
        b = xp.shape[0]
        h = xp.reshape(-1, xp.shape[-1]) @ self.conv1.w[...] + self.conv1.b[...]  # conv1 on ready patches
        h = jax.nn.relu(h).reshape(xp.shape[:-1] + (-1,))
        h = jax.nn.relu(self.conv2(h))
        h = jax.nn.relu(self.enc(h.reshape(b, -1)))
        mu, logvar = jnp.split(self.head(h), 2, axis=-1)
        return mu, jnp.clip(logvar, -10.0, 10.0)

    def decode_patches(self, z: jax.Array) -> jax.Array:
        """`[B, K]` latent -> logits in patch layout."""
        h = jax.nn.relu(self.dec(z))
        h = jax.nn.relu(self.expand(h)).reshape((z.shape[0],) + self.grid)
        h = jax.nn.relu(self.deconv2(h))
        y = h.reshape(-1, h.shape[-1]) @ self.deconv1.w[...] + self.deconv1.b[...]  # c_out = 1: bias broadcasts
        return y.reshape(h.shape[:-1] + (-1,))

    def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """`[B, T, P]` pianoroll -> (mu, logvar), each `[B, K]`."""
        return self.encode_patches(self.patches(x))

    def decode(self, z: jax.Array) -> jax.Array:
        """`[B, K]` latent -> `[B, T, P]` logits."""
        return from_patches(self.decode_patches(z), *self.patch)

    def __call__(self, xp: jax.Array, key: jax.Array) -> VAEOutput:
        """Patches -> logits in patch layout, mu, logvar (training form)."""
        mu, logvar = self.encode_patches(xp)
        return VAEOutput(self.decode_patches(reparameterize(mu, logvar, key)), mu, logvar)


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


def encode_stack(graphdef, params, x: jax.Array) -> jax.Array:
    """Stacked VAEs' posterior parameters: `[5, M, T, P]` -> `[5, M, 2K]` (mu then logvar)."""
    def member(p, xi):
        mu, logvar = nnx.merge(graphdef, p).encode(xi)
        return jnp.concatenate([mu, logvar], -1)
    return jax.vmap(member)(params, x)


def count_params(module: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
