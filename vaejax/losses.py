"""ELBO for the pianoroll VAEs and MSE for the latent chains."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

LN2 = 0.6931471805599453


class ElboTerms(NamedTuple):
    loss: jax.Array  # [] what is minimised: recon + beta * max(kl - free, 0)
    recon: jax.Array  # [] Bernoulli negative log-likelihood per segment (nats)
    kl: jax.Array  # [] KL(q(z|x) || N(0, I)) per segment (nats)
    kl_bits: jax.Array  # [] the same in bits
    beta: jax.Array  # [] KL weight at this step


def kl_beta(step: jax.Array, beta: float, rate: float) -> jax.Array:
    """KL annealing as in MusicVAE: beta * (1 - rate**step); `rate=0` means no annealing."""
    return beta * (1.0 - jnp.power(rate, step.astype(jnp.float32)))


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(mu, exp(logvar)) || N(0, 1)) summed over the last axis."""
    return 0.5 * jnp.sum(mu**2 + jnp.exp(logvar) - 1.0 - logvar, axis=-1)


@jax.custom_vjp
def bernoulli_nll(logits: jax.Array, x: jax.Array) -> jax.Array:
    """-log p(x | logits) per cell for x in {0, 1}: softplus(l) - x*l, written stably.

    The gradient is sigmoid(l) - x, computed directly in the backward pass: on CPU this is about a third
    cheaper than differentiating through softplus, and the loss touches every one of the 8,064 cells of
    every bar twice per step.
    """
    return jnp.maximum(logits, 0.0) - x * logits + jnp.log1p(jnp.exp(-jnp.abs(logits)))


def _nll_fwd(logits, x):
    return bernoulli_nll(logits, x), (logits, x)


def _nll_bwd(res, g):
    logits, x = res
    return g * (jax.nn.sigmoid(logits) - x), jnp.zeros_like(x)


bernoulli_nll.defvjp(_nll_fwd, _nll_bwd)


def elbo(
    logits: jax.Array,
    x: jax.Array,
    mu: jax.Array,
    logvar: jax.Array,
    *,
    beta: jax.Array,
    free_bits: float,
    pos_weight: float = 1.0,
    plays: jax.Array | None = None,
) -> ElboTerms:
    """Negative ELBO for a batch of binary pianorolls.

    Args:
      logits, x: `[B, ...]` decoder logits and targets in {0, 1}, in the same layout.
      mu, logvar: `[B, K]` posterior parameters.
      beta: KL weight.
      free_bits: nats per latent dimension left uncharged (MusicVAE's free bits, applied to the total).
      pos_weight: weight of "on" cells in the reconstruction term (> 1 fights empty outputs).
      plays: `[B]` logit that each segment holds any note; its Bernoulli likelihood joins the reconstruction.
    """
    ce = bernoulli_nll(logits, x)
    if pos_weight != 1.0:
        ce = ce * (1.0 + (pos_weight - 1.0) * x)
    per = jnp.sum(ce, axis=tuple(range(1, ce.ndim)))
    if plays is not None:
        per = per + bernoulli_nll(plays, jnp.any(x > 0, axis=tuple(range(1, x.ndim))).astype(plays.dtype))
    recon = jnp.mean(per)
    kl_each = gaussian_kl(mu, logvar)  # [B]
    kl = jnp.mean(kl_each)
    free = free_bits * mu.shape[-1]
    loss = recon + beta * jnp.mean(jnp.maximum(kl_each - free, 0.0))
    return ElboTerms(loss, recon, kl, kl / LN2, beta)


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean((pred - target) ** 2)
