"""A learned prior over sequences of bar latents: a small causal Transformer, all five tracks together.

Each bar is one token: the five tracks' standardised latent means (`[5, K]`, in `LatentNorm` units) and
five "plays" bits (does the track sound in the bar). The network reads the bars before bar t (up to
`PriorConfig.context` of them) and outputs, for bar t, Bernoulli logits for the five plays bits and, given
those bits, a mixture of diagonal Gaussians over the 5K latent means. Sampling draws from that
distribution bar by bar, so a song can repeat an earlier bar (attention copies it) and can rest: the
seed's chain regresses the next bar's mean instead, and wanders.

Besides the Gaussian mixture, each bar may be a copy of an earlier bar of the window (a pointer, as in
pointer networks): one more component per earlier bar s, centred on bar s's latents with a small learned
spread and taking its plays bits (each flipped with a small learned probability), weighted by attention
from bar t to bar s plus a learned bias per distance t - s. Real songs repeat about a third of their bars
nearly exactly; a mixture of Gaussians alone spreads its mass and never lands on an earlier bar.

Position embeddings: the bar's place in the context window, and its place in the phrase (bar index in
the song mod 4, 8 and 16), so that a bar can look back to the same place in the previous phrase.

`PriorConfig.style` adds a song-level code: what a passage is like as a whole (`style_of`: each track's
mean latents over the bars it plays in, and the share of bars it plays), read by every position. Training
computes it from the training window itself; sampling draws it from a bank of real training passages' codes
(`trained_model`'s `prior_styles`), or takes it from the song being continued, so that a drawn song keeps
one manner from its first bar to its last instead of drifting between those of different songs.

`band=True` builds the arranging variant: it also reads the piano's bars of the whole window (a
bidirectional encoder, so it looks ahead as well as back) and models the four band tracks only; when
arranging, the given piano part replaces the piano's tokens.

Temperature (`temperature_of(sigma)`): the component choice and the plays bits are drawn from logits over
the temperature, the Gaussians' spread is scaled by it. The command line's sigma maps to it as
temperature = 2 sigma: the default sigma 0.5 samples the distribution as learned, 0 takes the likeliest
choice at every bar, higher sigmas vary more.

Pure functions of (graphdef, params): no optimiser here, so loading a model needs no training code.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vaejax.config import PIANO, TRACKS, PriorConfig

PHASES = (4, 8, 16)
PHRASE = 16
"""Bars of the phrase in which `phase_lags` models learn where repeats come from."""
"""Bar-in-phrase position embeddings: the bar index modulo each of these."""
LOG_SCALE = (-5.0, 2.0)
"""Bounds on the Gaussians' log standard deviations (standardised units)."""
COPY_DIM = 32
"""Query and key width of each track's pointer (`copy="track"`)."""


TEMPERATURE_PER_SIGMA = 2.5
"""temperature = 2.5 sigma for what a bar plays (plays bits, mixture component, Gaussian spread, and the
spread of copies above temperature 1): sigma 0.5 samples at 1.25, where songs of the packaged prior rest
and repeat as often as real validation-split passages do."""
LATENT_SPREAD = 1.0
"""The spread of a new bar's latents around its mixture component's mean at sampling, as a factor of the
temperature (the plays bits and the choices keep the temperature itself). Swept from 0.6 to 1.6 with the
prior's decoding calibrated again each time (`bench/latent_spread_sweep.py`): tighter draws are told from real
bars more easily, wider ones no less, so the spread stays as learned."""
POINTER_TEMPERATURE = 1.25
"""The temperature of the per-track and whole-bar pointers' choices (new or a copy of bar s), whatever sigma
(sigma 0 still takes the likeliest choice): at 1.0, as learned, the songs repeat a third as often as real
ones (each bar drawn from the prior's own samples drifts from the data the pointers were trained on); if it
rose with sigma, higher sigmas would copy more and vary less."""
LAG_SHARPNESS = 4.0
"""At sampling, the pointers' learned lag preferences (the bias per distance, and per place in the 16-bar
phrase with `phase_lags`) count this many times in their logits; training uses them once. Chosen on
validation passages (`bench/form_ablation.py --lag-sharpness`): as learned, a song drawn bar by bar from
its own samples copies mostly the bar before (its latest bars look most like the bar to come), so phrases
barely return (similarity at lags 4 and 8 over lags 3, 5 and 7: 1.07 against the real 1.73); at 4 the
repeats come back a phrase later (1.64), similarity at lag 1 within 15% of real and the share of near
repeats within 25%. The first version's single pointer (`copy="bar"`) samples as it always did."""


def temperature_of(sigma: float) -> float:
    """The prior's sampling temperature for the command line's sigma (see the module docstring)."""
    return TEMPERATURE_PER_SIGMA * float(sigma)


def style_of(z, plays):
    """A passage's song-level code `[..., 5 (K + 1)]` from its bars (z `[..., L, 5, K]`, plays `[..., L, 5]`):
    per track, the mean of its latents over the bars where it plays (0 where it never does), and the share
    of bars where it plays, scaled to [-1, 1]."""
    p = plays[..., None].astype(z.dtype)
    mean = jnp.sum(z * p, -3) / jnp.maximum(jnp.sum(p, -3), 1.0)  # [..., 5, K]
    share = 2.0 * jnp.mean(plays.astype(z.dtype), -2) - 1.0  # [..., 5]
    return jnp.concatenate([mean.reshape(mean.shape[:-2] + (-1,)), share], -1)


class PriorOut(NamedTuple):
    plays: jax.Array  # [B, L, 5] Bernoulli logits
    weights: jax.Array  # [B, L, M] mixture logits
    means: jax.Array  # [B, L, M, 5, K]
    log_scales: jax.Array  # [B, L, M, 5, K]
    new: jax.Array | None = None  # [B, L] logit of "a new bar" (the mixture above) against the copies ([B, L, 5]
    # with per-track pointers: "this track is new")
    copies: jax.Array | None = None  # [B, L, L] logit of copying bar s (earlier in the window) at bar t ([B, L, L, 5])
    copy_scale: jax.Array | None = None  # [5, K] log spread of a copy
    copy_flip: jax.Array | None = None  # [5] logit of a copied plays bit flipping
    bar_new: jax.Array | None = None  # [B, L] (copy="both") logit of "not a whole-bar repeat" ...
    bar_copies: jax.Array | None = None  # [B, L, L] ... against repeating the whole of bar s


class Block(nnx.Module):
    """Pre-norm Transformer block. `__call__` runs a whole window under a mask; `step` runs one position
    against cached keys and values (sampling), with the same result."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.heads = heads
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.qkv = nnx.Linear(dim, 3 * dim, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.up = nnx.Linear(dim, 4 * dim, rngs=rngs)
        self.down = nnx.Linear(4 * dim, dim, rngs=rngs)

    def _split(self, a):  # [..., d] -> q, k, v each [..., heads, d/heads]
        q, k, v = jnp.split(self.qkv(a), 3, -1)
        shape = a.shape[:-1] + (self.heads, -1)
        return q.reshape(shape), k.reshape(shape), v.reshape(shape)

    def _finish(self, h, att):
        h = h + self.proj(att.reshape(att.shape[:-2] + (-1,)))
        return h + self.down(jax.nn.gelu(self.up(self.norm2(h))))

    def __call__(self, h, mask):
        """h `[B, L, d]`, mask `[L, L]` (query, key) -> (`[B, L, d]`, keys, values `[B, L, heads, d/heads]`)."""
        q, k, v = self._split(self.norm1(h))
        logits = jnp.einsum("bqhc,bkhc->bhqk", q, k) / np.sqrt(q.shape[-1])
        w = jax.nn.softmax(jnp.where(mask, logits, -1e9), -1)
        return self._finish(h, jnp.einsum("bhqk,bkhc->bqhc", w, v)), k, v

    def step(self, h, keys, values, t):
        """One position t: h `[B, d]`, the cache `[B, L, heads, d/heads]` (positions < t filled) ->
        (`[B, d]`, the cache with position t written)."""
        q, k, v = self._split(self.norm1(h))
        keys, values = keys.at[:, t].set(k), values.at[:, t].set(v)
        logits = jnp.einsum("bhc,bkhc->bhk", q, keys) / np.sqrt(q.shape[-1])
        w = jax.nn.softmax(jnp.where(jnp.arange(keys.shape[1]) <= t, logits, -1e9), -1)
        return self._finish(h, jnp.einsum("bhk,bkhc->bhc", w, values)), keys, values


class BarPrior(nnx.Module):
    """Causal Transformer over bar tokens (see the module docstring)."""

    def __init__(self, cfg: PriorConfig, latent: int, *, band: bool = False, rngs: nnx.Rngs):
        d, k = cfg.dim, latent
        self.cfg, self.k, self.band = cfg, latent, band
        n = len(TRACKS)
        self.styled = cfg.style and not band  # the arranging prior reads the piano part instead
        if self.styled:
            self.style_in = nnx.Linear(n * (k + 1), d, rngs=rngs)
            self.style_out = nnx.Linear(d, d, rngs=rngs)
        self.embed = nnx.Linear(n * (k + 1), d, rngs=rngs)
        self.bos = nnx.Param(0.02 * jax.random.normal(rngs.params(), (d,)))
        self.pos = nnx.Embed(cfg.context, d, rngs=rngs)
        self.phase = nnx.List([nnx.Embed(p, d, rngs=rngs) for p in PHASES])
        self.blocks = nnx.List([Block(d, cfg.heads, rngs=rngs) for _ in range(cfg.layers)])
        if band:  # the given piano part, read in both directions
            self.piano_embed = nnx.Linear(k + 1, d, rngs=rngs)
            self.piano_blocks = nnx.List([Block(d, cfg.heads, rngs=rngs) for _ in range(max(1, cfg.layers // 2))])
        self.norm = nnx.LayerNorm(d, rngs=rngs)
        self.plays_head = nnx.Linear(d, n, rngs=rngs)
        self.plays_in = nnx.Linear(n, d, rngs=rngs)
        m = cfg.mixtures
        self.weight_head = nnx.Linear(d, m, rngs=rngs)
        self.mean_head = nnx.Linear(d, m * n * k, rngs=rngs)
        self.scale_head = nnx.Linear(d, m * n * k, kernel_init=nnx.initializers.zeros, rngs=rngs)
        self.per_track = cfg.copy in ("track", "both")
        self.whole_bar = cfg.copy == "both"  # a whole-bar pointer besides the per-track ones
        c = n if self.per_track else 1  # pointer heads: one per track, or one for the whole bar
        self.new_head = nnx.Linear(d, c, rngs=rngs)
        self.copy_q = nnx.Linear(d, c * COPY_DIM if self.per_track else d, rngs=rngs)
        self.copy_k = nnx.Linear(d, c * COPY_DIM if self.per_track else d, rngs=rngs)
        # a learned bias per distance t - s, and (phase_lags) per place of bar t in a 16-bar phrase as well
        self.lag_rows = cfg.context * (PHRASE if cfg.phase_lags else 1)
        self.copy_lag = nnx.Embed(self.lag_rows, c, embedding_init=nnx.initializers.zeros, rngs=rngs)
        if self.whole_bar:
            self.bar_new_head = nnx.Linear(d, 1, rngs=rngs)
            self.bar_copy_q = nnx.Linear(d, d, rngs=rngs)
            self.bar_copy_k = nnx.Linear(d, d, rngs=rngs)
            self.bar_copy_lag = nnx.Embed(self.lag_rows, 1, embedding_init=nnx.initializers.zeros, rngs=rngs)
        # log spread of a copy, per track and dimension (float32 given: a weak type would compile the step twice)
        self.copy_scale = nnx.Param(jnp.full((n, k), -1.5, jnp.float32))
        self.copy_flip = nnx.Param(jnp.full((n,), -3.0, jnp.float32))  # logit of a copied plays bit flipping

    def token(self, z, plays):
        """A bar as the next position reads it: z `[..., 5, K]`, plays `[..., 5]` -> `[..., d]`."""
        return self.embed(jnp.concatenate([z.reshape(z.shape[:-2] + (-1,)), plays], -1))

    def context(self, phase, piano=None, style=None):
        """What each position knows besides the bars before it `[B, L, d]`: its place in the window and in
        the phrase, (band models) the piano part of the whole window, read in both directions, and (styled
        models) the song-level code `style` `[B, 5 (K + 1)]` (`style_of`)."""
        length = phase.shape[1]
        h = self.pos(jnp.arange(length))[None]
        for p, emb in zip(PHASES, self.phase):
            h = h + emb(phase % p)
        if self.styled:
            if style is None:
                raise ValueError("this prior reads a song-level code: pass style (prior.style_of)")
            h = h + self.style_out(jax.nn.gelu(self.style_in(style)))[:, None]
        if self.band:
            ph = self.piano_embed(piano) + self.pos(jnp.arange(length))[None]
            full = jnp.ones((length, length), bool)
            for blk in self.piano_blocks:
                ph = blk(ph, full)[0]
            h = h + ph
        return h

    def inputs(self, z, plays, phase, piano=None, style=None):
        """Each position's input `[B, L, d]`: the bar before it (the first position: a start token) plus
        `context`.

        Args:
          z: `[B, L, 5, K]` standardised latent means of the bars.
          plays: `[B, L, 5]` plays bits (float).
          phase: `[B, L]` int, each bar's index in its song.
          piano: `[B, L, K+1]` the piano's means and plays bit for every bar of the window (band models).
          style: `[B, 5 (K + 1)]` the song-level code (styled models).
        """
        tok = self.token(z, plays)
        start = jnp.broadcast_to(self.bos[...], tok[:, :1].shape)
        return jnp.concatenate([start, tok[:, :-1]], 1) + self.context(phase, piano, style)

    def hidden(self, z, plays, phase, piano=None, style=None, *, cache: bool = False):
        """Hidden states `[B, L, d]`: position t has seen bars < t (and, for band models, the piano's bars of
        the window). With `cache`, also every layer's keys and values (for `step`)."""
        h = self.inputs(z, plays, phase, piano, style)
        length = h.shape[1]
        causal = jnp.tril(jnp.ones((length, length), bool))
        keys, values = [], []
        for blk in self.blocks:
            h, k, v = blk(h, causal)
            keys.append(k)
            values.append(v)
        h = self.norm(h)
        return (h, (keys, values)) if cache else h

    def step(self, x, cache, t):
        """The hidden state `[B, d]` at position t from its input `x` `[B, d]` (a row of `inputs`) and the
        cache of positions < t; returns it and the cache with position t written."""
        keys, values = [], []
        for blk, k, v in zip(self.blocks, *cache):
            x, k, v = blk.step(x, k, v, t)
            keys.append(k)
            values.append(v)
        return self.norm(x), (keys, values)

    def heads(self, h, plays):
        """Outputs for hidden states `h` `[..., d]`, the latent mixture conditioned on `plays` `[..., 5]`."""
        n, k, m = len(TRACKS), self.k, self.cfg.mixtures
        logits = self.plays_head(h)
        g = h + self.plays_in(plays)
        shape = h.shape[:-1] + (m, n, k)
        return PriorOut(
            logits,
            self.weight_head(g),
            self.mean_head(g).reshape(shape),
            jnp.clip(self.scale_head(g).reshape(shape), *LOG_SCALE),
        )

    def copy_keys(self, z, plays, phase, piano=None, style=None):
        """What bar t's query meets at each bar s `[B, L, d]`: the bar itself and its place."""
        return self.copy_k(self.token(z, plays) + self.context(phase, piano, style))

    def bar_copy_keys(self, z, plays, phase, piano=None, style=None):
        """`copy_keys` of the whole-bar pointer (`copy="both"`)."""
        return self.bar_copy_k(self.token(z, plays) + self.context(phase, piano, style))

    def _lag(self, t, s, phase, length):
        """Rows of the lag-bias tables for bar t copying bar s: the distance, and with `phase_lags` bar t's
        place in its 16-bar phrase (`phase`: bar t's index in its song, `[B, L]` or `[B]`)."""
        lag = jnp.clip(t - s, 0, length - 1)
        if self.lag_rows == self.cfg.context or phase is None:
            return lag
        place = phase % PHRASE
        place = place[..., None]  # [B, 1] for one bar t, [B, L, 1] for a window
        return place * self.cfg.context + jnp.clip(lag, 0, self.cfg.context - 1)

    def copy_logits(self, h, keys, t=None, *, whole_bar: bool = False, phase=None, lag_weight=1.0):
        """Logits `[B, L, L]` (or `[B, L]` for one position `t`, h `[B, d]`) of bar t copying bar s < t;
        per-track pointers (`copy="track"`) add a last axis of tracks, `[B, L, L, 5]` or `[B, L, 5]`.
        `whole_bar`: the whole-bar pointer of `copy="both"` (keys from `bar_copy_keys`). `phase`: the bars'
        (`[B, L]`) or bar t's (`[B]`) index in the song, for `phase_lags` models. `lag_weight`: how many times
        the lag bias counts (`LAG_SHARPNESS` at sampling)."""
        q = self.bar_copy_q(h) if whole_bar else self.copy_q(h)
        heads = len(TRACKS) if self.per_track and not whole_bar else 1  # one pointer per track, or one
        q = q.reshape(q.shape[:-1] + (heads, -1))
        keys = keys.reshape(keys.shape[:-1] + (heads, -1))
        length = keys.shape[1]
        s = jnp.arange(length)
        if t is None:
            t = jnp.arange(length)[:, None]
            logits = jnp.einsum("btnd,bsnd->btsn", q, keys) / np.sqrt(q.shape[-1])
        else:
            logits = jnp.einsum("bnd,bsnd->bsn", q, keys) / np.sqrt(q.shape[-1])
        bias = (self.bar_copy_lag if whole_bar else self.copy_lag)(self._lag(t, s, phase, length))
        logits = jnp.where((s < t)[..., None], logits + lag_weight * bias, -1e9)
        return logits if heads > 1 else logits[..., 0]

    def __call__(self, z, plays, phase, piano=None, style=None, read=None) -> PriorOut:
        """The distribution of every bar of the window given the bars before it. `read`: (z, plays) of the bars
        the model reads instead of `z`, `plays` (training on its own draws, `PriorConfig.own_inputs`); the
        outputs stay those of bars `z`, `plays` (the plays bits the latents are conditioned on)."""
        zr, pr = (z, plays) if read is None else read
        h = self.hidden(zr, pr, phase, piano, style)
        out = self.heads(h, plays)
        new = self.new_head(h)
        out = out._replace(
            new=new if self.per_track else new[..., 0],
            copies=self.copy_logits(h, self.copy_keys(zr, pr, phase, piano, style), phase=phase),
            copy_scale=jnp.clip(self.copy_scale[...], *LOG_SCALE),
            copy_flip=self.copy_flip[...],
        )
        if self.whole_bar:
            out = out._replace(
                bar_new=self.bar_new_head(h)[..., 0],
                bar_copies=self.copy_logits(
                    h, self.bar_copy_keys(zr, pr, phase, piano, style), whole_bar=True, phase=phase
                ),
            )
        return out


def prior_net(cfg: PriorConfig, latent: int, key: jax.Array, *, band: bool = False) -> BarPrior:
    return _creator(cfg, latent, band)(key)


@functools.lru_cache(maxsize=16)
def _creator(cfg: PriorConfig, latent: int, band: bool):
    # built under jit as `models.creator` builds the VAEs: one compiled program rather than one per initialiser
    return nnx.jit(lambda k: BarPrior(cfg, latent, band=band, rngs=nnx.Rngs(params=k)))


def track_weights(band: bool) -> jax.Array:
    """Which tracks a prior models `[5]`: all five, or the band without the piano."""
    return jnp.array([0.0 if band and i == PIANO else 1.0 for i in range(len(TRACKS))])


class PriorLoss(NamedTuple):
    loss: jax.Array  # [] per bar: plays + latent terms
    plays: jax.Array  # [] Bernoulli negative log-likelihood per bar
    latent: jax.Array  # [] mixture negative log-likelihood per latent dimension


def loss(out: PriorOut, z, plays, band: bool = False) -> PriorLoss:
    """Negative log-likelihood of bars `z` `[B, L, 5, K]`, `plays` `[B, L, 5]` under `out` (mean over bars)."""
    w = track_weights(band)
    bce = jnp.sum(w * (jax.nn.softplus(out.plays) - plays * out.plays), -1)  # [B, L]
    x = z[..., None, :, :]  # [B, L, 1, 5, K]
    logp = -0.5 * ((x - out.means) * jnp.exp(-out.log_scales)) ** 2 - out.log_scales - 0.5 * np.log(2 * np.pi)
    logp = jnp.sum(w[:, None] * logp, axis=(-2, -1))  # [B, L, M]
    nll = -jax.nn.logsumexp(jax.nn.log_softmax(out.weights, -1) + logp, -1)  # [B, L]
    dims = jnp.sum(w) * z.shape[-1]
    if out.copies is None:
        return PriorLoss(jnp.mean(bce + nll), jnp.mean(bce), jnp.mean(nll) / dims)
    if out.new.ndim == 3:
        return _track_copy_loss(out, z, plays, w, bce, dims)
    # copies of earlier bars s: z_t ~ N(z_s, copy spread), plays_t = plays_s up to flips
    scale, flip = out.copy_scale, out.copy_flip  # [5, K], [5]
    d = (z[:, :, None] - z[:, None, :]) * jnp.exp(-scale)  # [B, t, s, 5, K]
    lz = jnp.sum(w[:, None] * (-0.5 * d**2 - scale - 0.5 * np.log(2 * np.pi)), axis=(-2, -1))
    same = plays[:, :, None] == plays[:, None, :]  # [B, t, s, 5]
    lp = jnp.sum(w * jnp.where(same, jax.nn.log_sigmoid(-flip), jax.nn.log_sigmoid(flip)), -1)
    logw = jax.nn.log_softmax(jnp.concatenate([out.new[..., None], out.copies], -1), -1)  # [B, t, 1 + s]
    lp_new = -(bce + nll)
    total = -jax.nn.logsumexp(logw + jnp.concatenate([lp_new[..., None], lz + lp], -1), -1)
    return PriorLoss(jnp.mean(total), jnp.mean(bce), jnp.mean(nll) / dims)


def _track_copy_loss(out: PriorOut, z, plays, w, bce, dims) -> PriorLoss:
    """Per-track pointers: given the mixture component m (diagonal, so the tracks are independent given it),
    each track is either new (its plays bit from the Bernoulli, its latents from component m) or a copy of
    its own latents and plays bit in an earlier bar s:

        p(bar t) = sum_m w_m prod_i [pi_new,i p_new,i,m + sum_s pi_s,i N(z_t,i; z_s,i, spread_i) [plays agree]]
    """
    scale, flip = out.copy_scale, out.copy_flip  # [5, K], [5]
    bern = -(jax.nn.softplus(out.plays) - plays * out.plays)  # [B, L, 5] log p(plays bit)
    x = z[..., None, :, :]  # [B, L, 1, 5, K]
    lnew = (
        jnp.sum(-0.5 * ((x - out.means) * jnp.exp(-out.log_scales)) ** 2 - out.log_scales - 0.5 * np.log(2 * np.pi), -1)
        + bern[..., None, :]
    )  # [B, L, M, 5]
    d = (z[:, :, None] - z[:, None, :]) * jnp.exp(-scale)  # [B, t, s, 5, K]
    lz = jnp.sum(-0.5 * d**2 - scale - 0.5 * np.log(2 * np.pi), -1)  # [B, t, s, 5]
    same = plays[:, :, None] == plays[:, None, :]
    lz = lz + jnp.where(same, jax.nn.log_sigmoid(-flip), jax.nn.log_sigmoid(flip))
    logw = jax.nn.log_softmax(jnp.concatenate([out.new[:, :, None], out.copies], 2), 2)  # [B, t, 1 + s, 5]
    lcopy = jax.nn.logsumexp(logw[:, :, 1:] + lz, 2)  # [B, t, 5]
    per_track = jnp.logaddexp(logw[:, :, :1] + lnew, lcopy[:, :, None])  # [B, t, M, 5]
    logp_bar = jax.nn.logsumexp(jax.nn.log_softmax(out.weights, -1) + jnp.sum(w * per_track, -1), -1)  # [B, t]
    if out.bar_copies is not None:  # or the whole bar repeats bar s: every track's part and plays bit
        lb = jax.nn.log_softmax(jnp.concatenate([out.bar_new[..., None], out.bar_copies], -1), -1)  # [B, t, 1 + s]
        whole = jnp.sum(w * lz, -1)  # [B, t, s]
        logp_bar = jax.nn.logsumexp(jnp.concatenate([(lb[..., 0] + logp_bar)[..., None], lb[..., 1:] + whole], -1), -1)
    total = -logp_bar
    logp = jnp.sum(w * (lnew - bern[..., None, :]), -1)
    nll = -jax.nn.logsumexp(jax.nn.log_softmax(out.weights, -1) + logp, -1)
    return PriorLoss(jnp.mean(total), jnp.mean(bce), jnp.mean(nll) / dims)


def _draw_tracks(
    model: BarPrior, h, key, temp, given_plays, pos, window, window_plays, keys, bar_keys=None, phase=None, bias=0.0
):
    """`_draw` with per-track pointers: each track chooses to be new or to copy its own part of an earlier
    bar; the new tracks' plays bits and latents are drawn as in `_draw`, given the copied tracks' bits.
    Copies are exact up to the default sigma (temperature `POINTER_TEMPERATURE`): the learned copy spread
    explains near-copies in the data, and drawing from it would turn every repeat into a variation; above,
    it is scaled by temperature - `POINTER_TEMPERATURE`, so repeats vary more with sigma."""
    kp, kc, kn, kk = jax.random.split(key, 4)
    greedy = temp <= 0
    tt = jnp.maximum(temp, 1e-6)
    copies = model.copy_logits(h, keys, pos, phase=phase, lag_weight=LAG_SHARPNESS)
    choice = jnp.concatenate([model.new_head(h)[:, None], copies], 1)
    c = jnp.where(greedy, jnp.argmax(choice, 1), jax.random.categorical(kc, choice / POINTER_TEMPERATURE, axis=1))
    src = jnp.maximum(c - 1, 0)
    is_copy = c > 0
    cz = jnp.take_along_axis(window, src[:, None, :, None], 1)[:, 0]  # [B, 5, K]
    copy_spread = jnp.maximum(tt - POINTER_TEMPERATURE, 0.0) * jnp.exp(jnp.clip(model.copy_scale[...], *LOG_SCALE))
    cz = cz + copy_spread * jax.random.normal(kk, cz.shape)
    cp = jnp.take_along_axis(window_plays, src[:, None, :], 1)[:, 0]  # [B, 5]
    logits = model.plays_head(h) + bias
    u = jax.random.uniform(kp, logits.shape)
    plays = jnp.where(greedy, logits > 0, u < jax.nn.sigmoid(logits / tt)).astype(jnp.float32)
    plays = jnp.where(is_copy, cp, plays)
    if given_plays is not None:
        plays = jnp.where(jnp.isnan(given_plays), plays, given_plays)
    out = model.heads(h, plays)
    km, kg, kb = jax.random.split(kn, 3)
    comp = jnp.where(greedy, jnp.argmax(out.weights, -1), jax.random.categorical(km, out.weights / tt))
    pick = lambda a: jnp.take_along_axis(a, comp[:, None, None, None], 1)[:, 0]  # noqa: E731
    spread = jnp.where(greedy, 0.0, tt * LATENT_SPREAD)
    new = pick(out.means) + spread * jnp.exp(pick(out.log_scales)) * jax.random.normal(kg, cz.shape)
    z, plays = jnp.where(is_copy[..., None], cz, new), plays
    if not model.whole_bar:
        return z, plays
    # the whole bar may repeat bar s (drawn first in the model; drawing it last here changes nothing)
    choice = jnp.concatenate(
        [
            model.bar_new_head(h),
            model.copy_logits(h, bar_keys, pos, whole_bar=True, phase=phase, lag_weight=LAG_SHARPNESS),
        ],
        -1,
    )
    cb = jnp.where(greedy, jnp.argmax(choice, -1), jax.random.categorical(kb, choice / POINTER_TEMPERATURE))
    src = jnp.maximum(cb - 1, 0)
    wz = jnp.take_along_axis(window, src[:, None, None, None], 1)[:, 0]
    wz = wz + copy_spread * jax.random.normal(jax.random.fold_in(kb, 1), wz.shape)
    wp = jnp.take_along_axis(window_plays, src[:, None, None], 1)[:, 0]
    if given_plays is not None:
        wp = jnp.where(jnp.isnan(given_plays), wp, given_plays)
    rep = (cb > 0)[:, None]
    return jnp.where(rep[..., None], wz, z), jnp.where(rep, wp, plays)


def _draw(
    model: BarPrior,
    h,
    key,
    temp,
    given_plays=None,
    *,
    pos=None,
    window=None,
    window_plays=None,
    keys=None,
    bar_keys=None,
    phase=None,
    bias=0.0,
):
    """One bar from hidden states `h` `[B, d]` at temperature `temp` (0: the likeliest choices): (z `[B, 5, K]`,
    plays `[B, 5]` float). `given_plays` (`[B, 5]`, NaN where free) fixes some bits. With the window so far
    (`window` `[B, L, 5, K]`, `window_plays` `[B, L, 5]`, `keys` from `copy_keys`) and the bar's position
    `pos` in it, the bar may be a copy of an earlier one. `bias` (`[B, 5]`) is added to the plays bits'
    logits of the tracks drawn new (copies keep their source's bits): how a band is made to play more or
    less often than the prior would have it (`trained_model.density_bias`)."""
    if keys is not None and model.per_track:
        return _draw_tracks(model, h, key, temp, given_plays, pos, window, window_plays, keys, bar_keys, phase, bias)
    kp, kc, kn, kk, kf, ks = jax.random.split(key, 6)
    greedy = temp <= 0
    tt = jnp.maximum(temp, 1e-6)
    spread = jnp.where(greedy, 0.0, tt * LATENT_SPREAD)
    logits = model.plays_head(h) + bias
    u = jax.random.uniform(kp, logits.shape)
    plays = jnp.where(greedy, logits > 0, u < jax.nn.sigmoid(logits / tt)).astype(jnp.float32)
    if given_plays is not None:
        plays = jnp.where(jnp.isnan(given_plays), plays, given_plays)
    out = model.heads(h, plays)
    comp = jnp.where(greedy, jnp.argmax(out.weights, -1), jax.random.categorical(kc, out.weights / tt))
    pick = lambda a: jnp.take_along_axis(a, comp[:, None, None, None], 1)[:, 0]  # noqa: E731
    new = pick(out.means) + spread * jnp.exp(pick(out.log_scales)) * jax.random.normal(
        kn, (h.shape[0],) + out.means.shape[2:]
    )
    if keys is None:
        return new, plays
    choice = jnp.concatenate([model.new_head(h), model.copy_logits(h, keys, pos, phase=phase)], -1)  # [B, 1 + L]
    c = jnp.where(greedy, jnp.argmax(choice, -1), jax.random.categorical(kk, choice / tt))
    src = jnp.maximum(c - 1, 0)
    copied = jnp.take_along_axis(window, src[:, None, None, None], 1)[:, 0]
    scale = jnp.exp(jnp.clip(model.copy_scale[...], *LOG_SCALE))
    copied = copied + spread * scale * jax.random.normal(ks, copied.shape)
    cp = jnp.take_along_axis(window_plays, src[:, None, None], 1)[:, 0]
    flip = jax.random.uniform(kf, cp.shape) < jnp.where(greedy, 0.0, jax.nn.sigmoid(model.copy_flip[...] / tt))
    cp = jnp.where(flip, 1.0 - cp, cp)
    if given_plays is not None:
        cp = jnp.where(jnp.isnan(given_plays), cp, given_plays)
    is_copy = (c > 0)[:, None]
    return jnp.where(is_copy[..., None], copied, new), jnp.where(is_copy, cp, plays)


def draw_one_step(model: BarPrior, key, z, plays, phase, temperature, style=None):
    """Every bar of a window drawn one step ahead, in parallel: bar t from the window's bars before it, as
    `sample_window` draws it (pointers included), but all positions at once. Returns (z `[B, L, 5, K]`,
    plays `[B, L, 5]`). For the song prior only (a band prior draws given the piano part)."""
    h = model.hidden(z, plays, phase, style=style)
    tok = model.token(z, plays) + model.context(phase, style=style)
    keys = model.copy_k(tok)
    bar_keys = model.bar_copy_k(tok) if model.whole_bar else None
    temp = jnp.asarray(temperature, jnp.float32)
    length = z.shape[1]

    def one(h_t, t, phase_t):
        return _draw(
            model,
            h_t,
            jax.random.fold_in(key, t),
            temp,
            pos=t,
            window=z,
            window_plays=plays,
            keys=keys,
            bar_keys=bar_keys,
            phase=phase_t,
        )

    zs, ps = jax.vmap(one, in_axes=(1, 0, 1), out_axes=1)(h, jnp.arange(length), phase)
    return zs, ps


def sample_window(
    graphdef,
    params,
    key,
    z,
    plays,
    phase,
    temperature,
    prefix_len,
    piano=None,
    given=None,
    plays_bias=None,
    style=None,
):
    """Fill one window of `context` bars: bars before `prefix_len` are kept, the rest drawn bar by bar
    (`lax.fori_loop` over positions, keys and values cached).

    Args:
      z, plays, phase: `[B, L, 5, K]`, `[B, L, 5]`, `[B, L]` with L the prior's context.
      temperature: scalar (see `temperature_of`); prefix_len: traced int.
      piano: `[B, L, K+1]` the given piano part (band models): the piano's tokens are taken from it.
      given: `[B, L, 5]` plays bits to keep (NaN where the prior draws them), e.g. "the piano plays in the
        first bar", as real passages are taken.
      plays_bias: `[B, 5]` added to the logits of the plays bits the prior draws (None: 0).
      style: `[B, 5 (K + 1)]` the songs' codes (styled priors, `style_of`).
    Returns:
      (z, plays) of the window, plays as float bits.
    """
    model = nnx.merge(graphdef, params)
    k = model.k
    if model.band:
        z = z.at[:, :, PIANO].set(piano[..., :k])
        plays = plays.at[:, :, PIANO].set(piano[..., k])
        given = (jnp.full(plays.shape, jnp.nan) if given is None else given).at[:, :, PIANO].set(piano[..., k])
    ctx = model.context(phase, piano, style)  # [B, L, d]
    _, cache = model.hidden(z, plays, phase, piano, style, cache=True)  # positions before prefix_len are final
    temp = jnp.asarray(temperature, jnp.float32)
    bias = 0.0 if plays_bias is None else plays_bias

    def body(t, carry):
        z, plays, cache = carry
        prev = model.token(z[:, t - 1], plays[:, t - 1])
        x = jnp.where(t == 0, model.bos[...], prev) + ctx[:, t]
        h, cache = model.step(x, cache, t)
        tok = model.token(z, plays) + ctx
        zt, pt = _draw(
            model,
            h,
            jax.random.fold_in(key, t),
            temp,
            None if given is None else given[:, t],
            pos=t,
            window=z,
            window_plays=plays,
            keys=model.copy_k(tok),
            bar_keys=model.bar_copy_k(tok) if model.whole_bar else None,
            phase=phase[:, t],
            bias=bias,
        )
        if model.band:
            zt = zt.at[:, PIANO].set(z[:, t, PIANO])
        return z.at[:, t].set(zt), plays.at[:, t].set(pt), cache

    z, plays, _ = jax.lax.fori_loop(prefix_len, z.shape[1], body, (z, plays, cache))
    return z, plays


def generate(
    window,
    key,
    *,
    num: int,
    bars: int,
    latent: int,
    context: int,
    temperature,
    prefix=None,
    prefix_plays=None,
    piano=None,
    phase0: int = 0,
    given=None,
    plays_bias=None,
    style=None,
):
    """`num` songs of `bars` bars drawn window by window: the first window (`context` bars) from the start,
    each further one keeping the last `context // 2` bars drawn so far as its prefix.

    Args:
      window: `sample_window` with the prior bound, `(key, z, plays, phase, temperature, prefix_len, piano,
        given, plays_bias, style)`.
      prefix, prefix_plays: `[num, P, 5, K]`, `[num, P, 5]`: the song so far (kept; generation continues
        after it, and `bars` counts it).
      piano: `[num, bars, K+1]` the given piano part (band priors).
      phase0: the first bar's index in its song.
      given: `[num, bars, 5]` plays bits to keep (NaN where drawn).
      plays_bias: `[num, 5]` or `[5]` added to the logits of the plays bits drawn (None: 0, as learned).
      style: `[num, 5 (K + 1)]` each song's code (styled priors): the same for every window of a song.
    Returns:
      (z `[num, bars, 5, K]` standardised means, plays `[num, bars, 5]` bool).
    """
    n = len(TRACKS)
    fixed = np.full((num, max(bars, context), n), np.nan, np.float32)
    if given is not None:
        fixed[:, :bars] = given[:, :bars]
    size = max(bars, context)
    z = np.zeros((num, size, n, latent), np.float32)
    plays = np.zeros((num, size, n), np.float32)
    done = 0
    if prefix is not None:
        done = min(prefix.shape[1], bars)
        z[:, :done], plays[:, :done] = prefix[:, :done], prefix_plays[:, :done]
    pn = None
    if piano is not None:
        pn = np.zeros((num, size, latent + 1), np.float32)
        pn[:, :bars] = piano[:, :bars]
    hop = max(1, context // 2)
    bias = np.zeros((num, n), np.float32)
    if plays_bias is not None:
        bias[:] = plays_bias
    bias = jnp.asarray(bias)
    # the song so far stays on the host (writing a window back into a device array copies the whole song:
    # seconds for a song of 1,000 bars); each window's inputs go to the device as the windows' outputs are
    # (their parameters are, when restored from a checkpoint): host arrays would compile the program again
    device = jax.devices()[0]
    while done < bars:
        s = int(np.clip(done - (context - hop), 0, size - context))
        sl = slice(s, s + context)
        phase = jnp.broadcast_to(jnp.arange(phase0 + s, phase0 + s + context, dtype=jnp.int32), (num, context))
        zw, pw = window(
            jax.random.fold_in(key, s),
            jax.device_put(z[:, sl], device),
            jax.device_put(plays[:, sl], device),
            phase,
            jnp.float32(temperature),
            jnp.int32(done - s),
            None if pn is None else jnp.asarray(pn[:, sl]),
            jnp.asarray(fixed[:, sl]),
            bias,
            None if style is None else jnp.asarray(style, jnp.float32),
        )
        z[:, sl], plays[:, sl] = np.asarray(zw), np.asarray(pw)
        done = s + context
    return z[:, :bars], plays[:, :bars] > 0.5


@dataclasses.dataclass(frozen=True)
class Sequences:
    """A split's songs as bar sequences for the prior: standardised means `[bars, 5, K]`, plays bits
    `[bars, 5]` (bool), and the songs' first bar and length."""

    z: np.ndarray
    plays: np.ndarray
    start: np.ndarray
    length: np.ndarray

    def windows(self, context: int, piano_start: bool = False) -> np.ndarray:
        """`[n, 2]` (first bar in the split, its index in the song) of every window of `context` bars
        inside one song; with `piano_start`, only those whose first bar has the piano playing."""
        out = [
            np.stack([s + np.arange(n - context + 1), np.arange(n - context + 1)], 1)
            for s, n in zip(self.start, self.length)
            if n >= context
        ]
        rows = np.concatenate(out) if out else np.zeros((0, 2), np.int64)
        return rows[self.plays[rows[:, 0], PIANO]] if piano_start else rows

    def batch(self, rows: np.ndarray, context: int):
        """(z `[B, L, 5, K]`, plays `[B, L, 5]` float, phase `[B, L]`) of windows `rows` (from `windows`)."""
        idx = rows[:, :1] + np.arange(context)
        return (self.z[idx], self.plays[idx].astype(np.float32), (rows[:, 1:] + np.arange(context)).astype(np.int32))
