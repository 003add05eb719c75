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

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

from vaejax.config import AGE_INDEX, HARMONY, LINE_HARMONY, PIANO, TRACKS, DataConfig, ModelConfig

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

    def __init__(self, kernel: tuple[int, int], c_in: int, c_out: int, *, rngs: nnx.Rngs):
        self.kernel = kernel
        self.c_out = c_out
        self.w = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (c_in, kernel[0] * kernel[1] * c_out)))
        self.b = nnx.Param(jnp.zeros((c_out,), jnp.float32))

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
    logits: jax.Array  # [B, P/kp, T/kt, channels*kt*kp] (patch layout per channel, see to_patches)
    mu: jax.Array  # [B, K]
    logvar: jax.Array  # [B, K]
    plays: jax.Array | None = None  # [B] logit that the segment holds any note


INIT_ONSET_RATE = 0.004
"""Initial onset probability: about one sounding cell in five starts a note."""


def reparameterize(mu: jax.Array, logvar: jax.Array, key: jax.Array, rows: jax.Array | None = None) -> jax.Array:
    """z = mu + sigma * eps. `rows` (`[B]`): each row's noise drawn from `fold_in(key, row)`, so a row gets the
    same noise whatever batch, or slice of one, it is computed in."""
    if rows is None:
        eps = jax.random.normal(key, mu.shape, mu.dtype)
    else:
        eps = jax.vmap(lambda r: jax.random.normal(jax.random.fold_in(key, r), mu.shape[1:], mu.dtype))(rows)
    return mu + jnp.exp(0.5 * logvar) * eps


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


def onsets(x: jax.Array) -> jax.Array:
    """Note starts of a `[..., T, P]` roll (bool, or numbers in {0, 1}), of its type: on now and off the step
    before (a note sounding at a segment's first step starts there)."""
    prev = jnp.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 0), (0, 0)])[..., :-1, :]
    return x & ~prev if x.dtype == jnp.bool_ else x * (1 - prev)


def to_grid(x: jax.Array, sub: int) -> jax.Array:
    """`[..., T, P]` roll at the data's resolution -> `[..., 3, T/sub, P]` maps on a coarser grid of `sub`
    data steps per cell: sustain (the note sounds over at least half the cell, or starts in it), onset (a
    note starts within half a cell of the cell's start: LPD's notes that begin a step early belong to the
    next cell) and early (a note starts exactly one data step before the cell). A note starting in the
    last half cell of the segment belongs to the next segment's first cell, which sees it sounding at its
    first step and so starts it there."""
    *lead, t, p = x.shape
    n, half = t // sub, sub // 2
    pad = [(0, 0)] * len(lead)
    if half < 1:  # one data step per cell
        on = onsets(x)
        return jnp.stack([jnp.maximum((x >= 0.5).astype(x.dtype), on), on, on], axis=-3)
    # Computed on the cells' view of the roll (`[.., n, sub, P]`), as reductions over slices of it, so that
    # XLA reads the roll once or twice and writes only the small maps: no full-size array of onsets is
    # made (that version cost two to three times as much in the training step, more in its vmapped form).
    cells = x.reshape(*lead, n, sub, p)
    prev_cell = lambda a: jnp.pad(a, pad + [(1, 0), (0, 0)])[..., :n, :]  # noqa: E731 - [.., n, P] one cell later
    step = lambda k: cells[..., k, :]  # noqa: E731
    on = [step(0) * (1 - prev_cell(step(sub - 1)))] + [step(k) * (1 - step(k - 1)) for k in range(1, sub)]
    # maxima as element-wise maxima of the steps' slices: XLA fuses them into one loop over the roll
    first = sub - half  # steps of this cell; a note starting in its last `half` belongs to the next cell
    onset = jnp.maximum(functools.reduce(jnp.maximum, on[:first]), prev_cell(functools.reduce(jnp.maximum, on[first:])))
    early = prev_cell(on[sub - 1])
    sustain = jnp.maximum((jnp.mean(cells, axis=-2) >= 0.5).astype(x.dtype), onset)
    return jnp.stack([sustain, onset, early], axis=-3)


def expand_grid(start: jax.Array, roll: jax.Array, early: jax.Array, tail: jax.Array, sub: int) -> jax.Array:
    """Notes decoded on the grid back to the data's resolution: `[B, n, P]` note starts, sounding cells and
    early flags of the notes' starts (bool), `tail` (steps a note sounds in its last cell, 1..sub) ->
    `[B, n*sub, P]` bool. A note starting early sounds one data step earlier throughout; a note followed at
    once by another of the same pitch ends at least one step before it, so the two stay two notes."""
    b, n, p = roll.shape

    def step(cur_early, inputs):
        st, e = inputs
        cur_early = jnp.where(st, e, cur_early)
        return cur_early, cur_early

    _, flag = jax.lax.scan(
        step, jnp.zeros_like(roll[:, 0]), (jnp.moveaxis(start, 1, 0), jnp.moveaxis(early & start, 1, 0))
    )
    flag = jnp.moveaxis(flag, 0, 1) & roll  # [B, n, P]: the sounding cell belongs to an early note
    nxt = lambda a: jnp.pad(a, ((0, 0), (0, 1), (0, 0)))[:, 1:]  # noqa: E731
    last = roll & (~nxt(roll) | nxt(start))  # the note's last cell
    # steps sounding in the last cell: the track's tail, shortened to leave a gap before a new note at once
    length = jnp.where(nxt(start), jnp.minimum(tail, sub - 1 - (nxt(early & start) & ~flag).astype(jnp.int32)), tail)
    length = jnp.where(last, length, sub)
    cells = (jnp.arange(sub)[None, None, :, None] < length[:, :, None, :]) & roll[:, :, None, :]  # [B, n, sub, P]
    normal = (cells & ~flag[:, :, None, :]).reshape(b, n * sub, p)
    shifted = (cells & flag[:, :, None, :]).reshape(b, n * sub, p)
    shifted = jnp.pad(shifted, ((0, 0), (0, 1), (0, 0)))[:, 1:]  # one step earlier
    return normal | shifted


def pitch_class_matrix(num_pitches: int, lowest_pitch: int) -> jax.Array:
    """`[P, 12]` one-hot pitch class (pitch % 12) of every pianoroll row."""
    return jax.nn.one_hot((jnp.arange(num_pitches) + lowest_pitch) % 12, 12, dtype=jnp.float32)


def beat_pitch_classes(x: jax.Array, data: DataConfig) -> jax.Array:
    """`[..., T, P]` roll -> `[..., beats * 12]` in {0, 1}: which pitch classes sound in each beat (the
    decoders' condition; `metrics.beat_chroma` counts sounding steps per pitch class instead)."""
    *lead, t, p = x.shape
    beats = x.reshape(*lead, data.beats, t // data.beats, p).max(axis=-2)  # [..., beats, P]
    return (beats @ pitch_class_matrix(data.num_pitches, data.lowest_pitch) > 0).astype(jnp.float32).reshape(*lead, -1)


def model_sub(cfg: ModelConfig, data: DataConfig) -> int:
    """Data steps per time cell of the VAEs (1 when they model the data's own resolution)."""
    if not cfg.grid:
        return 1
    if data.resolution % cfg.grid:
        raise ValueError(
            f"model grid of {cfg.grid} steps per beat does not divide the data's resolution of {data.resolution}"
        )
    return data.resolution // cfg.grid


def condition_dim(data: DataConfig) -> int:
    return data.beats * 12


class VAE(nnx.Module):
    """One instrument's VAE: conv encoder -> Gaussian over K latents -> deconv decoder.

    Training works on the patch layout of `to_patches` end to end: the encoder's first layer reads it, the
    decoder's last layer writes it, and the loss (a sum over cells) compares the two there, so the
    pianoroll is rearranged once, outside the gradient, instead of twice per step inside it.

    With `cfg.condition`, encoder and decoder also read a condition vector `c` (`[B, beats*12]`: the
    piano's pitch classes per beat; zeros for the piano itself) added before their hidden layer. With
    `cfg.onsets`, the decoder writes two channels, sustain then onset, each in patch layout.
    """

    def __init__(self, cfg: ModelConfig, data: DataConfig = DataConfig(), *, rngs: nnx.Rngs):
        kt1, kt2 = cfg.time_patch
        c1, c2 = cfg.channels
        self.sub = model_sub(cfg, data)
        steps = data.steps // self.sub  # time cells the network reads and writes per segment
        if steps % (kt1 * kt2) or data.num_pitches % cfg.pitch_patch:
            raise ValueError(
                f"segment of {steps} steps x {data.num_pitches} pitches is not divisible "
                f"by patches {cfg.time_patch} x {cfg.pitch_patch}"
            )
        self.patch = (kt1, cfg.pitch_patch)
        # maps written: sustain (, onset (, early on a coarser grid)); on a grid the encoder reads them all
        self.channels = (3 if self.sub > 1 else 2) if cfg.onsets else 1
        self.in_channels = self.channels if self.sub > 1 else 1
        self.beats, self.steps, self.lowest, self.pitches = data.beats, steps, data.lowest_pitch, data.num_pitches
        self.grid = (data.num_pitches // cfg.pitch_patch, steps // (kt1 * kt2), c2)  # pitch-major
        flat = self.grid[0] * self.grid[1] * c2
        self.conv1 = PatchConv((kt1, cfg.pitch_patch), self.in_channels, c1, rngs=rngs)
        self.conv2 = PatchConv((kt2, 1), c1, c2, rngs=rngs)
        self.enc = nnx.Linear(flat, cfg.hidden, rngs=rngs)
        self.head = nnx.Linear(cfg.hidden, 2 * cfg.latent, rngs=rngs)
        self.dec = nnx.Linear(cfg.latent, cfg.hidden, rngs=rngs)
        if cfg.condition:
            cd = condition_dim(data)
            self.enc_cond = nnx.Linear(cd, cfg.hidden, use_bias=False, rngs=rngs)
            self.dec_cond = nnx.Linear(cd, cfg.hidden, use_bias=False, rngs=rngs)
            # piano pitch class sounding in a beat -> bias on this track's logits of each pitch class in that
            # beat, per output channel: harmony the decoder can rely on however far its latent wanders
            self.harmony = nnx.Param(jnp.zeros((self.channels, 12, 12), jnp.float32))
        else:
            self.enc_cond = self.dec_cond = self.harmony = None
        self.plays = nnx.Linear(cfg.hidden, 1, rngs=rngs) if cfg.plays else None
        self.expand = nnx.Linear(cfg.hidden, flat, rngs=rngs)
        self.deconv2 = PatchDeconv((kt2, 1), c2, c1, rngs=rngs)
        # the output layer: a kernel == stride transposed convolution to `channels` maps, written directly
        # as one matrix whose columns are (channel, time, pitch) so that each channel is a patch block
        n = kt1 * cfg.pitch_patch
        self.out_w = nnx.Param(nnx.initializers.lecun_normal()(rngs.params(), (c1, self.channels * n)))
        rates = (INIT_ON_RATE, INIT_ONSET_RATE, INIT_ONSET_RATE / 2)[: self.channels]
        if self.sub > 1:  # a grid cell spans `sub` data steps: more of the cells hold a start
            rates = (INIT_ON_RATE, INIT_ONSET_RATE * self.sub, INIT_ONSET_RATE * self.sub / 2)[: self.channels]
        self.out_b = nnx.Param(jnp.repeat(jnp.array([math.log(r / (1 - r)) for r in rates], jnp.float32), n))

    def patches(self, x: jax.Array) -> jax.Array:
        """`[B, T, P]` -> the patch layout the network reads and writes."""
        return to_patches(x, *self.patch)

    def maps(self, x: jax.Array) -> jax.Array:
        """`[B, T, P]` roll at the data's resolution -> the maps the decoder writes, `[B, channels, T', P]`."""
        if self.sub > 1:
            return to_grid(x, self.sub)[:, : self.channels]
        return x[:, None] if self.channels == 1 else jnp.stack([x, onsets(x)], 1)

    def targets(self, x: jax.Array) -> jax.Array:
        """`[B, T, P]` roll -> what the decoder is trained to write: the maps' patches, channels side by side."""
        m = self.maps(x)
        return jnp.concatenate([self.patches(m[:, i]) for i in range(self.channels)], -1)

    def inputs(self, target: jax.Array) -> jax.Array:
        """The encoder's input from `targets`: every map on a grid, the sustain map (the roll) otherwise."""
        return target[..., : target.shape[-1] * self.in_channels // self.channels]

    def encode_patches(self, xp: jax.Array, c: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """Patches `[B, P/kp, T/kt, kt*kp]` (and condition `[B, C]`) -> (mu, logvar), each `[B, K]`."""
        b = xp.shape[0]
        h = xp.reshape(-1, xp.shape[-1]) @ self.conv1.w[...] + self.conv1.b[...]  # conv1 on ready patches
        h = jax.nn.relu(h).reshape(xp.shape[:-1] + (-1,))
        h = jax.nn.relu(self.conv2(h))
        h = self.enc(h.reshape(b, -1))
        if self.enc_cond is not None:
            h = h + self.enc_cond(c)
        mu, logvar = jnp.split(self.head(jax.nn.relu(h)), 2, axis=-1)
        return mu, jnp.clip(logvar, -10.0, 10.0)

    def _harmonic_bias(self, c: jax.Array) -> jax.Array:
        """Condition `[B, beats*12]` -> logit bias in the decoder's patch layout `[B, P/kp, T/kt, ch*kt*kp]`."""
        b = c.shape[0]
        per_pc = jnp.einsum("bkq,cqr->bckr", c.reshape(b, self.beats, 12), self.harmony[...])  # [B, ch, beats, 12]
        pcs = pitch_class_matrix(self.pitches, self.lowest)  # [P, 12]
        full = jnp.repeat(per_pc @ pcs.T, self.steps // self.beats, axis=2)  # [B, ch, T, P]
        patches = to_patches(full, *self.patch)  # [B, ch, P/kp, T/kt, kt*kp]
        return jnp.moveaxis(patches, 1, -2).reshape(patches.shape[0], *patches.shape[2:4], -1)

    def decode_patches(self, z: jax.Array, c: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        """`[B, K]` latent (and condition) -> (logits in patch layout, channels side by side; the logit that
        the segment plays, `[B]`, or None without that head)."""
        h = self.dec(z)
        if self.dec_cond is not None:
            h = h + self.dec_cond(c)
        h = jax.nn.relu(h)
        plays = None if self.plays is None else self.plays(h)[:, 0]
        h = jax.nn.relu(self.expand(h)).reshape((z.shape[0],) + self.grid)
        h = jax.nn.relu(self.deconv2(h))
        y = h.reshape(-1, h.shape[-1]) @ self.out_w[...] + self.out_b[...]
        y = y.reshape(h.shape[:-1] + (-1,))
        if self.harmony is not None:
            y = y + self._harmonic_bias(c)
        return y, plays

    def encoder_input(self, x: jax.Array) -> jax.Array:
        """`[B, T, P]` roll at the data's resolution -> what `encode_patches` reads."""
        return self.inputs(self.targets(x)) if self.sub > 1 else self.patches(x)

    def encode(self, x: jax.Array, c: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
        """`[B, T, P]` pianoroll -> (mu, logvar), each `[B, K]`."""
        return self.encode_patches(self.encoder_input(x), c)

    def decode_all(self, z: jax.Array, c: jax.Array | None = None) -> tuple[jax.Array, jax.Array | None]:
        """`[B, K]` latent -> (`[B, channels, T', P]` logits on the model's grid, channel 0 sustain, 1 onset,
        2 early; `[B]` plays logit or None)."""
        y, plays = self.decode_patches(z, c)
        y = y.reshape(y.shape[:-1] + (self.channels, -1))
        return jnp.moveaxis(from_patches(jnp.moveaxis(y, -2, 0), *self.patch), 0, 1), plays

    def decode(self, z: jax.Array, c: jax.Array | None = None) -> jax.Array:
        """`[B, K]` latent -> `[B, channels, T, P]` logits (channel 0 sustain, 1 onset)."""
        return self.decode_all(z, c)[0]

    def __call__(
        self, xp: jax.Array, key: jax.Array, c: jax.Array | None = None, rows: jax.Array | None = None
    ) -> VAEOutput:
        """Patches -> logits in patch layout, mu, logvar, plays logit (training form; `rows`: see
        `reparameterize`)."""
        mu, logvar = self.encode_patches(xp, c)
        y, plays = self.decode_patches(reparameterize(mu, logvar, key, rows), c)
        return VAEOutput(y, mu, logvar, plays)


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
        return x[..., -self.d_out :] + self.out(h)


class MelodyNN(MLP):
    """Piano latent parameters (mu, logvar) at bar t -> at bar t+1."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        super().__init__(2 * cfg.latent, 2 * cfg.latent, cfg.chain_hidden, cfg.chain_layers, rngs=rngs)


class HarmonyNN(MLP):
    """(piano params at t+1, own params at t) -> own params at t+1. The last 2K inputs are `own`."""

    def __init__(self, cfg: ModelConfig, *, rngs: nnx.Rngs):
        super().__init__(4 * cfg.latent, 2 * cfg.latent, cfg.chain_hidden, cfg.chain_layers, rngs=rngs)


@functools.lru_cache(maxsize=32)
def creator(cls: type, stacked: int, *args, **kwargs):
    """A jitted function `key -> cls(*args, **kwargs, rngs=nnx.Rngs(params=key))`, or with `stacked` > 0,
    `keys [stacked] -> stacked modules` (parameters on a leading axis). Built eagerly, every initialiser of
    every parameter shape compiles a small program of its own (seconds on a CPU); one per configuration is
    compiled here, and kept for the next model of the same configuration."""

    def make(k):
        return cls(*args, **kwargs, rngs=nnx.Rngs(params=k))

    return nnx.jit(nnx.vmap(make, in_axes=0, out_axes=0) if stacked else make)


def vae_stack(cfg: ModelConfig, data: DataConfig, key: jax.Array) -> VAE:
    """Five VAEs with independent initialisations, parameters stacked on a leading instrument axis."""
    return creator(VAE, len(TRACKS), cfg, data)(jax.random.split(key, len(TRACKS)))


def harmony_stack(cfg: ModelConfig, key: jax.Array) -> MLP:
    """Four HarmonyNNs (Drums, Guitar, Bass, Strings) stacked on a leading axis."""
    return creator(HarmonyNN, len(HARMONY), cfg)(jax.random.split(key, len(HARMONY)))


def melody_net(cfg: ModelConfig, key: jax.Array) -> MLP:
    return creator(MelodyNN, 0, cfg)(key)


def conditions(piano: jax.Array, data: DataConfig) -> jax.Array:
    """The five members' condition vectors `[5, B, beats*12]` from the piano bars `[B, T, P]`: the piano's
    pitch classes per beat for Drums, Guitar, Bass and Strings, zeros for the piano itself."""
    c = beat_pitch_classes(piano, data)
    member = jnp.array([i != PIANO for i in range(len(TRACKS))], jnp.float32)
    return member[:, None, None] * c[None]


def encode_stack(graphdef, params, x: jax.Array, data: DataConfig) -> jax.Array:
    """Stacked VAEs' posterior parameters: `[5, M, T, P]` -> `[5, M, 2K]` (mu then logvar)."""

    def member(p, xi, ci):
        mu, logvar = nnx.merge(graphdef, p).encode(xi, ci)
        return jnp.concatenate([mu, logvar], -1)

    return jax.vmap(member)(params, x, conditions(x[PIANO], data))


def decode_stack(graphdef, params, z: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Stacked decoders: latents `[5, M, K]` and conditions `[5, M, C]` -> (probabilities `[5, M, ch, T, P]`,
    probability that each segment plays `[5, M]`, ones without that head)."""

    def member(p, zi, ci):
        logits, plays = nnx.merge(graphdef, p).decode_all(zi, ci)
        return jax.nn.sigmoid(logits), (jnp.ones(zi.shape[:1]) if plays is None else jax.nn.sigmoid(plays))

    return jax.vmap(member)(params, z, c)


def reconstruct_stack(graphdef, params, x: jax.Array, data: DataConfig) -> tuple[jax.Array, jax.Array]:
    """Real bars `[5, M, T, P]` -> `decode_stack` of their posterior means (the conditions come from the
    real piano)."""
    lat = encode_stack(graphdef, params, x, data)
    return decode_stack(graphdef, params, lat[..., : lat.shape[-1] // 2], conditions(x[PIANO], data))


SUSTAIN_FLOOR = 0.02
MAX_ONSETS = 128
"""At most this many notes start in one segment of one track when notes are counted (`count=True`)."""


def decode_notes(
    probs: jax.Array,
    thresholds: jax.Array,
    draws: jax.Array | None = None,
    *,
    count: bool = False,
    plays: jax.Array | None = None,
    plays_cut=0.5,
    sub: int = 1,
    onset_cuts: jax.Array | None = None,
    count_scale=1.0,
    spread=1.0,
    count_probs: jax.Array | None = None,
    sustain_ages: jax.Array | None = None,
    line=False,
    prefer: jax.Array | None = None,
) -> jax.Array:
    """Decoder probabilities `[B, C, T, P]` -> a `[B, T*sub, P]` bool roll.

    Three channels (sustain, onset, early: decoders on a grid coarser than the data by `sub` steps): a note
    starts in every cell whose onset probability is above `thresholds[1]` (no peak is needed: neighbouring
    sixteenths are distinct notes), lasts as below, starts one data step early where the decoder gives
    "early" more than half the onset's probability, and sounds `thresholds[2]` data steps of its last cell
    (`expand_grid`). `onset_cuts` (`[T]`) replaces `thresholds[1]` by one onset threshold per time cell
    (calibrated so that reconstructed bars start as many notes at each sixteenth as real ones do). Otherwise:

    One channel: cells above `thresholds[0]`. Two channels (sustain, onset): a note starts where the onset
    probability peaks along time and lasts while its sustain probability stays above `thresholds[0]` times
    the sustain probability where it started; sustain without an onset before it is not a note. Which peaks
    start notes:
      - by default, those above `thresholds[1]`;
      - `count=True`: the most likely peaks, as many as the decoder expects notes (the sum of the onset
        probabilities over the segment times `count_scale`, rounded). A latent between the data's modes
        decodes to blurred probabilities, which a fixed threshold turns into silence; counting keeps the
        number of notes the decoder predicts and places them where it is most confident;
        On a grid, with `spread` below 1, a cell's rank score is multiplied by `spread` once for every cell of the same
        pitch ranked above it in the segment: a decoder sure of a bar's rhythm but not of its pitches puts
        its most likely onsets on the one pitch it is surest of, so that counted notes repeat that pitch
        where real bars move between pitches (1: plain ranking);
        `count_probs` (the shape of `probs`): count from these probabilities instead (a decoder guided
        toward the piano's harmony decides which pitches play; the decoder as trained, how many notes);
      - `draws` (uniform, the shape of `probs`): Bernoulli draws, sampling instead of the likeliest roll.
    `plays` (`[B]`, probability that the segment holds any note): segments where it is not above
    `plays_cut` (a number, or uniform draws `[B]`) stay silent. `sustain_ages` (`[SUSTAIN_AGES]`) replaces
    `thresholds[0]` by a factor per age of the note (`AGE_INDEX`): how likely a note is to end after one
    sixteenth, after two, ..., is then set apart from how long the longer ones last (decoders' sustain
    probabilities fall smoothly, so that one factor holds most notes for two to four sixteenths where real
    parts mix one-sixteenth notes with long ones).
    `line` (a bool, traced or not): the track plays one line, as a bass does: where notes start (on the grid,
    a cell), only the one of highest onset probability starts (with the same pitch class an octave or two
    away, the doubling real bass parts use), and it ends whatever else sounds, octaves of it apart (a note
    starting a data step early still overlaps the one before by that step, as legato playing does). Drawn
    latents decode a bass as likely a third or a fourth above its root as the root itself, and counting or
    thresholding keeps both, a second voice real bass lines almost never play. `prefer` (`[B, T, P]` in
    {0, 1}: the piano sounds that pitch class in the cell's beat) weighs the choice: a starting note's
    probability counts `1 + LINE_HARMONY` times where the piano plays its pitch class.
    """
    c = probs.shape[1]
    cut = [thresholds[i] for i in range(min(c, 2))] if draws is None else [draws[:, i] for i in range(c)]
    sustain = probs[:, 0] > cut[0]
    if c == 1:
        return sustain if plays is None else sustain & (plays > plays_cut)[:, None, None]
    on = probs[:, 1]
    if c == 3:
        peak = jnp.ones(on.shape, bool)
    else:
        prev = jnp.pad(on, ((0, 0), (1, 0), (0, 0)))[:, :-1]
        nxt = jnp.pad(on, ((0, 0), (0, 1), (0, 0)))[:, 1:]
        peak = (on >= prev) & (on > nxt)
    if count and draws is None:
        b = on.shape[0]
        expect = (on if count_probs is None else count_probs[:, 1]).sum(axis=(1, 2))
        n = jnp.clip(jnp.round(expect * count_scale), 0, MAX_ONSETS).astype(jnp.int32)  # [B]
        # rank by probability, or on a grid by probability over the cell's calibrated threshold, so that the
        # counted notes fall where real notes fall rather than on the beats the decoder is surest of
        score = on if onset_cuts is None else on / jnp.maximum(onset_cuts, 1e-3)[None, :, None]
        score = jnp.where(peak & (on > 0.01), score, 0.0)
        if c == 3:  # on a grid (16 cells a bar): cells of the same pitch scoring higher, [B, T, T', P] -> [B, T, P]
            above = jnp.sum(score[:, None, :, :] > score[:, :, None, :], axis=2)
            score = score * jnp.asarray(spread, score.dtype) ** above.astype(score.dtype)
        top = jax.lax.top_k(score.reshape(b, -1), MAX_ONSETS)[0]  # [B, MAX]
        kth = jnp.take_along_axis(top, jnp.maximum(n - 1, 0)[:, None], axis=1)[:, 0]
        kth = jnp.where(n > 0, kth, jnp.inf)
        start = peak & (score >= kth[:, None, None]) & (on > 0.01)
    elif onset_cuts is not None and draws is None:
        start = peak & (on > onset_cuts[None, :, None])
    else:
        start = peak & (on > cut[1])

    # a note lasts while its sustain probability stays above `thresholds[0]` times its value where the note
    # started (and above SUSTAIN_FLOOR): how long a note lasts is judged against how sure the decoder was of
    # it, so that a note the decoder places with modest confidence is not cut into fragments
    level = probs[:, 0] if draws is None else jnp.where(sustain, 1.0, 0.0)
    ages = None if sustain_ages is None or draws is not None else jnp.asarray(sustain_ages)[jnp.asarray(AGE_INDEX)]

    one_line = line is not False
    pitch = jnp.arange(on.shape[-1])

    def step(carry, inputs):
        playing, ref, age = carry
        st, lv, *chooser = inputs
        if one_line:  # the likeliest start and its octaves; it ends the notes sounding on other pitches
            op, pf = chooser
            best = jnp.argmax(jnp.where(st, op * (1.0 + LINE_HARMONY * pf), -1.0), axis=-1)
            octave = (pitch[None] - best[:, None]) % 12 == 0
            ends = st.any(-1, keepdims=True) & ~octave
            st = jnp.where(line, st & octave, st)
            playing = jnp.where(line, playing & ~ends, playing)
        ref = jnp.where(st, jnp.maximum(lv, SUSTAIN_FLOOR), ref)
        age = jnp.where(st, 0, jnp.minimum(age + 1, len(AGE_INDEX) - 1))
        factor = cut[0] if ages is None else ages[age]
        playing = st | (playing & (lv > jnp.maximum(factor * ref if draws is None else 0.5, SUSTAIN_FLOOR)))
        return (playing, ref, age), (playing, st)

    init = (
        jnp.zeros_like(start[:, 0]),
        jnp.zeros(start[:, 0].shape, probs.dtype),
        jnp.zeros(start[:, 0].shape, jnp.int32),
    )
    if plays is not None:
        start = start & (plays > plays_cut)[:, None, None]
    scanned = (start, level) + ((on, jnp.zeros_like(on) if prefer is None else prefer) if one_line else ())
    _, (roll, start) = jax.lax.scan(step, init, tuple(jnp.moveaxis(a, 1, 0) for a in scanned))
    roll, start = jnp.moveaxis(roll, 0, 1), jnp.moveaxis(start, 0, 1)
    if c < 3:
        return roll
    ratio = probs[:, 2] / jnp.maximum(on, 1e-6)
    early = ratio > (0.5 if draws is None else draws[:, 2])
    tail = jnp.clip(jnp.round(thresholds[2]), 1, sub).astype(jnp.int32)
    return expand_grid(start, roll, early, tail, sub)


def count_params(module: nnx.Module) -> int:
    return sum(x.size for x in jax.tree.leaves(nnx.state(module, nnx.Param)))
