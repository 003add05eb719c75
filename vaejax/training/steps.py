"""Pure training steps: jitted functions of (state, batch, step) -> (state, metrics), no I/O.

A stage's state is a pytree `{"params", "opt", "key"}` (`train_state`): network parameters, optimiser state,
and the key that step randomness is folded from (`fold_in(key, step)`), so a resumed run repeats the
losses of an uninterrupted one.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vaejax import losses, models
from vaejax import prior as prior_lib
from vaejax.config import PIANO, SIGMA, DataConfig, ModelConfig, PriorConfig, TrainConfig

THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
"""Candidate decoding thresholds at which validation counts note-on cells."""


def threshold_counts(probs, on):
    """(true positives, false positives, false negatives) of `probs > t` against `on` at every t of
    THRESHOLDS, each `[thresholds]`: from one histogram of the cells over the threshold bins (a cell is
    predicted at t_j when more than j thresholds lie below its probability) instead of one comparison per
    threshold."""
    bins = jnp.searchsorted(jnp.asarray(THRESHOLDS, probs.dtype), probs.ravel(), side="left")  # thresholds < p
    n = len(THRESHOLDS) + 1
    hist_on = jnp.zeros(n, jnp.int32).at[bins].add(on.ravel().astype(jnp.int32))
    hist_all = jnp.zeros(n, jnp.int32).at[bins].add(1)
    above_on = jnp.cumsum(hist_on[::-1])[::-1][1:]  # on cells with more than j thresholds below: predicted at t_j
    above_all = jnp.cumsum(hist_all[::-1])[::-1][1:]
    tp = above_on
    return tp, above_all - tp, jnp.sum(on) - tp


def train_state(params, tx: optax.GradientTransformation, key: jax.Array) -> dict:
    """A stage's checkpointed state."""
    return {"params": params, "opt": tx.init(params), "key": jax.random.key_data(key)}


def vae_optimizer(train: TrainConfig, steps: int = 0) -> optax.GradientTransformation:
    """Adam at `train.lr`; with `train.lr_decay` below 1 and the stage's `steps` known, the rate falls along a
    cosine to `lr * lr_decay` by the last step. Either way the state is `optax.adam`'s (the schedule reads
    Adam's own step count), so checkpoints restore whatever the schedule."""
    if train.lr_decay == 1.0 or steps <= 0:
        return optax.adam(train.lr)
    rate = optax.cosine_decay_schedule(train.lr, steps, train.lr_decay)
    adam = optax.scale_by_adam()

    def update(grads, state, params=None):
        moments, empty = state
        out, moments = adam.update(grads, moments, params)
        lr = rate(moments.count)  # Adam's count after this update: 1 at the first step, `steps` at the last
        return jax.tree.map(lambda u: -lr * u, out), (moments, empty)

    return optax.GradientTransformation(lambda params: (adam.init(params), optax.EmptyState()), update)


def chain_optimizer(train: TrainConfig) -> optax.GradientTransformation:
    return optax.adam(train.chain_lr)


def init_vae_state(model: ModelConfig, data: DataConfig, train: TrainConfig, key: jax.Array, steps: int = 0):
    """(graphdef, state, optimiser) of the five stacked VAEs; `steps`: the stage's length (`vae_optimizer`)."""
    graphdef, params = nnx.split(models.vae_stack(model, data, key))
    tx = vae_optimizer(train, steps)
    return graphdef, train_state(params, tx, key), tx


class VAEMetrics(NamedTuple):
    loss: jax.Array  # [5]
    recon: jax.Array  # [5]
    kl: jax.Array  # [5]
    kl_bits: jax.Array  # [5]
    beta: jax.Array  # []


def compute_dtype(train: TrainConfig, platform: str | None = None):
    """The dtype the networks run in (`TrainConfig.precision`; "auto" by the platform of the devices)."""
    if train.precision == "auto":
        return jnp.bfloat16 if (platform or jax.default_backend()) in ("gpu", "tpu") else jnp.float32
    return jnp.dtype(train.precision)


def float_bars(x, data: DataConfig):
    """Bars as sent to the device -> `[..., T, P]` float32: bit-packed uint8 bars are unpacked here, inside
    the jitted step, so that the host gathers and transfers 1 bit per cell instead of 32."""
    if x.dtype == jnp.uint8:
        return jnp.unpackbits(x, axis=-1, count=data.num_pitches).astype(jnp.float32)
    return x.astype(jnp.float32)


def donation(platform: str | None = None) -> dict:
    """`jax.jit` arguments for a step that replaces its state (argument 0) by the one it returns: donated on
    accelerators, where memory is scarce; not on CPU, where XLA then copies the weights each step and orders
    the update after every read of them, and the vmapped VAE step ran 10-15% slower at batch 64 (about 4% at
    256) for 60 MB saved (BENCHMARKS.md)."""
    return {} if (platform or jax.default_backend()) == "cpu" else {"donate_argnums": 0}


CPU_SLICE = 64
"""Bars per slice of the VAE step on CPU (`TrainConfig.micro_batch` 0): five instruments' activations for 64
bars stay in a CPU's cache where those of 256 spill it (BENCHMARKS.md: 1.10x at batch 256)."""


def slice_bars(train: TrainConfig, platform: str | None = None) -> int:
    """Bars the VAE step computes at once (`TrainConfig.micro_batch`; 0: CPU_SLICE on CPU, the whole batch on
    accelerators, whose matrix units want the largest products)."""
    if train.micro_batch:
        return train.micro_batch
    return CPU_SLICE if (platform or jax.default_backend()) == "cpu" else 0


def make_vae_fns(
    graphdef, train: TrainConfig, data: DataConfig, tx: optax.GradientTransformation, *, platform: str | None = None
):
    """Jitted (train_step, eval_step) for the stacked VAEs; states are pytrees, data `[5, B, T, P]` (float or
    bit-packed uint8 `[5, B, T, ceil(P/8)]`). With bfloat16 precision the networks compute in bfloat16 from
    float32 parameters (cast inside the step; gradients, Adam and the loss stay float32).

    A batch larger than `slice_bars` is computed in slices of that many bars (slice j holds bars j, j + n,
    ...: a sharded batch keeps each device's bars on it), their gradients summed in a scan before one Adam
    update: the same mean loss and gradient as the whole batch at once (each bar's noise is drawn from its
    place in the batch, not its slice), with a working set that fits a CPU's cache."""
    dt = compute_dtype(train, platform)
    per_slice = slice_bars(train, platform)

    def low(tree):
        if dt == jnp.float32:
            return tree
        return jax.tree.map(lambda a: a.astype(dt) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree)

    def member_loss(params, x, c, key, rows, beta):
        model = nnx.merge(graphdef, low(params))
        target = jax.lax.stop_gradient(model.targets(x))
        # each bar's noise from its row of the whole batch: the same whichever slice computes it
        out = model(model.inputs(target).astype(dt), key, c.astype(dt), rows)
        return losses.elbo(
            out.logits.astype(jnp.float32),
            target,
            out.mu.astype(jnp.float32),
            out.logvar.astype(jnp.float32),
            beta=beta,
            free_bits=train.free_bits,
            pos_weight=train.pos_weight,
            plays=None if out.plays is None else out.plays.astype(jnp.float32),
        )

    def total(params, x, key, rows, beta):
        x = float_bars(x, data)
        c = models.conditions(x[PIANO], data)
        keys = jax.random.split(key, x.shape[0])
        terms = jax.vmap(member_loss, in_axes=(0, 0, 0, 0, None, None))(params, x, c, keys, rows, beta)
        return jnp.sum(terms.loss), terms  # members are independent: the sum's gradient splits by member

    grad_fn = jax.value_and_grad(total, has_aux=True)

    def gradients(params, x, key, beta):
        """Mean loss terms and gradients of the batch, in slices of `per_slice` bars where it is larger."""
        b = x.shape[1]
        n = b // per_slice if per_slice and b > per_slice and b % per_slice == 0 else 1
        if n == 1:
            (_, terms), grads = grad_fn(params, x, key, jnp.arange(b), beta)
            return terms, grads
        xs = jnp.moveaxis(x.reshape(x.shape[0], b // n, n, *x.shape[2:]), 2, 0)  # [n, 5, b/n, ...]: rows j, j+n, ...

        def body(acc, inputs):
            xj, j = inputs
            (_, terms), grads = grad_fn(params, xj, key, jnp.arange(b // n) * n + j, beta)
            return jax.tree.map(jnp.add, acc, (terms, grads)), None

        shapes = jax.eval_shape(lambda: grad_fn(params, xs[0], key, jnp.arange(b // n), beta))
        zero = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), (shapes[0][1], shapes[1]))
        acc, _ = jax.lax.scan(body, zero, (xs, jnp.arange(n)))
        return jax.tree.map(lambda a: a / n, acc)

    def train_step(state, x, step):
        params, opt_state, key = state["params"], state["opt"], state["key"]
        beta = losses.kl_beta(step, train.beta, train.beta_rate)
        terms, grads = gradients(params, x, jax.random.fold_in(key, step), beta)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        m = VAEMetrics(terms.loss, terms.recon, terms.kl, terms.kl_bits, beta)
        return {"params": params, "opt": opt_state, "key": key}, m

    def eval_step(params, x, key):
        def member(p, xi, ci, k):
            model = nnx.merge(graphdef, p)
            target = model.targets(xi)
            mu, logvar = model.encode_patches(model.inputs(target), ci)
            logits = model.decode(mu, ci)[:, 0]  # sustain: the roll itself (on the model's grid)
            y, plays = model.decode_patches(models.reparameterize(mu, logvar, k), ci)
            terms = losses.elbo(y, target, mu, logvar, beta=jnp.float32(train.beta), free_bits=0.0, plays=plays)
            on = model.maps(xi)[:, 0] > 0.5
            tp, fp, fn = threshold_counts(jax.nn.sigmoid(logits), on)
            return terms.recon, terms.kl, tp, fp, fn, jnp.sum(on)

        x = float_bars(x, data)
        return jax.vmap(member)(params, x, models.conditions(x[PIANO], data), jax.random.split(key, x.shape[0]))

    return jax.jit(train_step, **donation(platform)), jax.jit(eval_step)


def make_chain_fns(graphdef, tx, *, stacked: bool):
    """Jitted steps for MelodyNN (`stacked=False`, x `[B, 2K]`) or the HarmonyNNs (x `[4, B, 4K]`)."""

    def loss(params, x, y):
        f = lambda p, xi: nnx.merge(graphdef, p)(xi)  # noqa: E731
        pred = jax.vmap(f)(params, x) if stacked else f(params, x)
        per = jnp.mean((pred - y) ** 2, axis=tuple(range(1, pred.ndim))) if stacked else losses.mse(pred, y)
        return jnp.sum(per), per

    def train_step(state, x, y, step):
        (_, per), grads = jax.value_and_grad(loss, has_aux=True)(state["params"], x, y)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt, "key": state["key"]}, per

    def eval_step(params, x, y):
        return loss(params, x, y)[1]

    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


def prior_optimizer(prior: PriorConfig) -> optax.GradientTransformation:
    """Adam with a linear warm-up and cosine decay over the prior's steps, gradients clipped (Transformers
    train unsteadily without both)."""
    lr = optax.warmup_cosine_decay_schedule(
        0.0, prior.lr, max(prior.warmup, 1), max(prior.steps, prior.warmup + 1), prior.lr * 0.1
    )
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(lr, weight_decay=1e-4))


def own_inputs(prior: PriorConfig, model, key, z, plays, phase, style, step):
    """The bars a song prior reads at training step `step` (`PriorConfig.own_inputs`): each bar of the window
    (z `[B, L, 5, K]`, plays `[B, L, 5]`) replaced, with probability rising from 0 to `own_inputs` over the
    first half of the steps, by the prior's own draw of it one step ahead at the default sigma
    (`prior.draw_one_step`, no gradient through it)."""
    kd, km = jax.random.split(jax.random.fold_in(key, 1))
    drawn = prior_lib.draw_one_step(model, kd, z, plays, phase, prior_lib.temperature_of(SIGMA), style)
    drawn = jax.lax.stop_gradient(drawn)
    share = prior.own_inputs * jnp.minimum(jnp.asarray(step, jnp.float32) / max(1, prior.steps // 2), 1.0)
    mine = jax.random.uniform(km, plays.shape[:2]) < share  # [B, L]
    return jnp.where(mine[..., None, None], drawn[0], z), jnp.where(mine[..., None], drawn[1], plays)


def make_prior_fns(graphdefs: dict, tx, prior: PriorConfig):
    """Jitted (train_step, eval_step) of the priors in `graphdefs` (`{"song": ..., "band": ...}`, trained
    together, one loss each). A batch is (z `[B, L, 5, K]`, plays `[B, L, 5]`, phase `[B, L]`)."""

    def losses_of(params, z, plays, phase, key, step=None):
        out = {}
        noisy = z + prior.input_noise * jax.random.normal(key, z.shape) if key is not None else z
        for name, gd in graphdefs.items():
            band = name == "band"
            model = nnx.merge(gd, params[name])
            piano = jnp.concatenate([z[:, :, PIANO], plays[:, :, PIANO, None]], -1) if band else None
            style = prior_lib.style_of(z, plays) if model.styled else None  # of the clean window
            read = (noisy, plays)
            if prior.own_inputs > 0 and key is not None and not band:
                read = own_inputs(prior, model, key, noisy, plays, phase, style, step)
            out[name] = prior_lib.loss(model(z, plays, phase, piano, style, read=read), z, plays, band=band)
        return out

    def total(params, z, plays, phase, key, step):
        out = losses_of(params, z, plays, phase, key, step)
        return sum(o.loss for o in out.values()), out

    def train_step(state, z, plays, phase, step):
        key = jax.random.fold_in(jax.random.wrap_key_data(state["key"]), step)
        (_, out), grads = jax.value_and_grad(total, has_aux=True)(state["params"], z, plays, phase, key, step)
        updates, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], updates), "opt": opt, "key": state["key"]}, out

    def eval_step(params, z, plays, phase):
        return losses_of(params, z, plays, phase, None)

    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
