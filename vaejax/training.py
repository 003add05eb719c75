"""Training stages: five vmapped VAEs -> encoded latents -> MelodyNN -> four vmapped HarmonyNNs.

Every stage is one pure jitted step over a pytree state (parameters, Adam state), resumable from Orbax
checkpoints: batch order depends only on (seed, epoch) and step randomness on fold_in(key, step), so a
resumed run repeats the losses of an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
import time
from typing import Callable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vaejax import data as data_lib
from vaejax import losses, metrics, models
from vaejax.checkpoint import StageCheckpoints, restore_best
from vaejax.config import HARMONY, PIANO, TRACKS, Config
from vaejax.devices import DataParallel

log = logging.getLogger(__name__)
STAGES = ("vae", "encode", "melody", "harmony")
START_BAND = 0
"""Generation starts from real bars where the piano and at least this many other tracks play."""
THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.05), 2)
SUSTAIN_GRID = np.round(np.arange(0.2, 0.61, 0.1), 2)  # relative to the sustain where a note starts
ONSET_GRID = np.round(np.arange(0.05, 0.61, 0.05), 2)
QUALIFIED_MIN = 0.9


# ---------------------------------------------------------------------------------------------------
# Pure steps


class VAEMetrics(NamedTuple):
    loss: jax.Array  # [5]
    recon: jax.Array  # [5]
    kl: jax.Array  # [5]
    kl_bits: jax.Array  # [5]
    beta: jax.Array  # []


def make_vae_fns(graphdef, cfg: Config, tx: optax.GradientTransformation):
    """Jitted (train_step, eval_step) for the stacked VAEs; states are pytrees, data `[5, B, T, P]`."""
    tc = cfg.train

    def member_loss(params, x, c, key, beta):
        model = nnx.merge(graphdef, params)
        target = jax.lax.stop_gradient(model.targets(x))
        xp = target[..., : target.shape[-1] // model.channels]  # the sustain patches: the encoder's input
        out = model(xp, key, c)
        return losses.elbo(out.logits, target, out.mu, out.logvar, beta=beta, free_bits=tc.free_bits,
                           pos_weight=tc.pos_weight, plays=out.plays)

    def total(params, x, key, beta):
        c = models.conditions(x[PIANO], cfg.data)
        terms = jax.vmap(member_loss, in_axes=(0, 0, 0, 0, None))(params, x, c, jax.random.split(key, x.shape[0]),
                                                                 beta)
        return jnp.sum(terms.loss), terms  # members are independent: the sum's gradient splits by member

    def train_step(state, x, step):
        params, opt_state, key = state["params"], state["opt"], state["key"]
        beta = losses.kl_beta(step, tc.beta, tc.beta_rate)
        (_, terms), grads = jax.value_and_grad(total, has_aux=True)(params, x, jax.random.fold_in(key, step), beta)
        updates, opt_state = tx.update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        m = VAEMetrics(terms.loss, terms.recon, terms.kl, terms.kl_bits, beta)
        return {"params": params, "opt": opt_state, "key": key}, m

    def eval_step(params, x, key):
        def member(p, xi, ci, k):
            model = nnx.merge(graphdef, p)
            target = model.targets(xi)
            xp = target[..., : target.shape[-1] // model.channels]
            mu, logvar = model.encode_patches(xp, ci)
            logits = model.decode(mu, ci)[:, 0]  # sustain: the roll itself
            y, plays = model.decode_patches(models.reparameterize(mu, logvar, k), ci)
            terms = losses.elbo(y, target, mu, logvar, beta=jnp.float32(tc.beta), free_bits=0.0, plays=plays)
            probs = jax.nn.sigmoid(logits)
            on = xi > 0.5
            pred = probs[..., None] > jnp.asarray(THRESHOLDS)  # [B, T, P, nt]
            tp = jnp.sum(pred & on[..., None], axis=(0, 1, 2))
            fp = jnp.sum(pred & ~on[..., None], axis=(0, 1, 2))
            fn = jnp.sum(~pred & on[..., None], axis=(0, 1, 2))
            return terms.recon, terms.kl, tp, fp, fn, jnp.sum(on)

        return jax.vmap(member)(params, x, models.conditions(x[PIANO], cfg.data), jax.random.split(key, x.shape[0]))

    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)


def make_chain_fns(graphdef, tx, *, stacked: bool):
    """Jitted steps for MelodyNN (`stacked=False`, x `[B, 2K]`) or the HarmonyNNs (x `[4, B, 4K]`)."""

    def loss(params, x, y):
        f = lambda p, xi: nnx.merge(graphdef, p)(xi)
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


# ---------------------------------------------------------------------------------------------------
# The loop shared by the stages


class Logger:
    """Appends JSON lines to `metrics.jsonl` (and TensorBoard when `tensorboardX` is installed)."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self.tb = None
        if jax.process_index() == 0:
            try:
                from tensorboardX import SummaryWriter
                self.tb = SummaryWriter(os.path.join(run_dir, "tb"))
            except ImportError:
                pass

    def write(self, record: dict) -> None:
        if jax.process_index() != 0:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{record['stage']}/{record['kind']}/{k}", v, record["step"])


def read_metrics(run_dir: str) -> list[dict]:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _bar(total: int, desc: str, initial: int, enabled: bool):
    """A tqdm bar on an interactive terminal only: redirected to a file, a run logs its epochs instead."""
    if not enabled or jax.process_index() != 0 or not sys.stderr.isatty():
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, initial=initial, desc=desc, unit="step", dynamic_ncols=True, file=sys.stderr)


@dataclasses.dataclass
class Stage:
    """What the generic loop needs to know about one stage."""

    name: str
    state: dict
    steps_per_epoch: int
    epochs: int
    batches: Callable[[int, int], Iterator]  # (epoch, start_batch) -> iterator of step inputs
    step: Callable  # (state, *inputs, step) -> (state, per-member loss array)
    evaluate: Callable[[dict], dict]  # state -> {"val_loss": float, ...}
    summarize: Callable  # stacked metrics (host numpy) -> dict of floats


def fit(stage: Stage, run_dir: str, cfg: Config, meta_extra: dict, *, progress: bool = True,
        stop_after: int = 0) -> tuple[dict, dict]:
    """Train one stage with resume; returns (state restored from the best checkpoint, its meta).

    `stop_after` (steps, tests only) saves a checkpoint after that many steps and returns at once, leaving
    the stage unfinished as an interrupted run would.
    """
    tc = cfg.train
    ckpts = StageCheckpoints(os.path.join(run_dir, "ckpt", stage.name))
    logger = Logger(run_dir)
    state = stage.state
    restored = ckpts.restore_latest(state)
    step0, best, done = 0, float("inf"), False
    if restored is not None:
        state, meta = restored
        step0, best, done = meta["step"], meta.get("best_val", best), meta.get("done", False)
        log.info("%s: resuming from step %d", stage.name, step0)
    total = stage.steps_per_epoch * stage.epochs
    if restored is not None and (done or (step0 >= total and meta.get("epoch_end", False))):
        ckpts.close()
        return restore_best(run_dir, stage.name, stage.state)
    bar = _bar(total, stage.name, step0, progress)
    pending: list = []
    step = step0
    meta = {}
    try:
        for epoch in range(step0 // max(stage.steps_per_epoch, 1), stage.epochs):
            start = step - epoch * stage.steps_per_epoch
            t_epoch = time.perf_counter()
            for inputs in stage.batches(epoch, start):
                state, metrics = stage.step(state, *inputs, jnp.asarray(step, jnp.int32))
                pending.append(metrics)
                step += 1
                if bar is not None:
                    bar.update(1)
                if step % tc.log_every == 0 or step % stage.steps_per_epoch == 0:
                    host = jax.device_get(pending)
                    pending = []
                    rec = stage.summarize(host)
                    logger.write({"stage": stage.name, "kind": "train", "step": step, "epoch": epoch, **rec})
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k in ("loss", "recon", "kl", "mse")})
                if stop_after and step - step0 >= stop_after:
                    ckpts.save(step, state, {**meta_extra, "step": step, "epoch": epoch, "best_val": best})
                    ckpts.close()
                    return state, {"stopped": step}
                if step % tc.checkpoint_every == 0 and step % stage.steps_per_epoch:
                    ckpts.save(step, state, {**meta_extra, "step": step, "epoch": epoch, "best_val": best})
            val = stage.evaluate(state)
            improved = val["val_loss"] < best
            best = min(best, val["val_loss"])
            logger.write({"stage": stage.name, "kind": "valid", "step": step, "epoch": epoch,
                          "seconds": round(time.perf_counter() - t_epoch, 3), **val})
            line = f"{stage.name} epoch {epoch + 1}/{stage.epochs} (step {step}): " + ", ".join(
                f"{k} {v:.4g}" for k, v in val.items()
                if k.startswith(("val_loss", "f1_", "baseline", "mse_")) and "@" not in k)
            if bar is not None:
                bar.clear()
            if jax.process_index() == 0:
                log.info(line)  # a log line whatever the mode: files and --quiet keep the epochs
            meta = {**meta_extra, "step": step, "epoch": epoch, "best_val": best, "epoch_end": True,
                    "done": epoch == stage.epochs - 1, "val": val}
            ckpts.save(step, state, meta, best=improved)
    finally:
        if bar is not None:
            bar.close()
        ckpts.close()
    plot_losses(run_dir, stage.name)
    return restore_best(run_dir, stage.name, stage.state)


def plot_losses(run_dir: str, stage: str) -> str | None:
    """Train and validation loss against epoch, like the seed report's figures."""
    if jax.process_index() != 0:
        return None
    recs = [r for r in read_metrics(run_dir) if r["stage"] == stage]
    if not recs:
        return None
    from vaejax.render import new_figure

    key = "loss" if stage == "vae" else "mse"
    train = [r for r in recs if r["kind"] == "train"]
    valid = [r for r in recs if r["kind"] == "valid"]
    spe = max(1, max(r["step"] for r in recs) / max(1, max(r["epoch"] for r in recs) + 1))
    fig = new_figure((6, 4))
    ax = fig.subplots()
    ax.plot([r["step"] / spe for r in train], [r[key] for r in train], label="train", alpha=0.8)
    ax.plot([r["epoch"] + 1 for r in valid], [r["val_loss"] for r in valid], "o-", label="validation")
    if valid and "baseline" in valid[-1]:
        ax.axhline(valid[-1]["baseline"], ls="--", c="gray", label="next = previous")
    ax.set_xlabel("epoch")
    ax.set_ylabel("negative ELBO per bar (nats, sum of 5 VAEs)" if stage == "vae" else "MSE")
    ax.set_title(f"{stage} loss")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(run_dir, f"loss-{stage}.png")
    fig.savefig(path, dpi=100)
    return path


# ---------------------------------------------------------------------------------------------------
# The stages


def init_vae_state(cfg: Config, key: jax.Array):
    stack = models.vae_stack(cfg.model, cfg.data, key)
    graphdef, params = nnx.split(stack)
    tx = optax.adam(cfg.train.lr)
    return graphdef, {"params": params, "opt": tx.init(params), "key": jax.random.key_data(key)}, tx


def train_vae(run_dir: str, cfg: Config, ds: dict, dp: DataParallel, *, progress=True, stop_after=0):
    tc = cfg.train
    key = jax.random.fold_in(jax.random.key(tc.seed), 0)
    graphdef, state, tx = init_vae_state(cfg, key)
    state = dp.replicate(state)
    step_fn, eval_fn = make_vae_fns(graphdef, cfg, tx)
    train = ds["train"]
    spe = data_lib.num_batches(train, tc.batch_size, tc.max_steps_per_epoch)
    if spe == 0:
        raise ValueError(f"training split has {len(train)} bars, fewer than one batch of {tc.batch_size}")
    shard = (jax.process_index(), jax.process_count())

    def batches(epoch, start):
        it = data_lib.batches(train, tc.batch_size, seed=tc.seed, epoch=epoch, shard=shard,
                              limit=tc.max_steps_per_epoch, start=start)
        for b in data_lib.prefetch(it):
            yield (dp.shard(b.x, axis=1),)

    def evaluate(state):
        return evaluate_vae(eval_fn, state["params"], ds["valid"], cfg, dp)

    def summarize(host):
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *host)
        rec = {"loss": float(stacked.loss.sum(-1).mean()), "recon": float(stacked.recon.sum(-1).mean()),
               "kl": float(stacked.kl.sum(-1).mean()), "kl_bits": float(stacked.kl_bits.sum(-1).mean()),
               "beta": float(stacked.beta[-1])}
        for i, t in enumerate(TRACKS):
            rec[f"recon_{t}"] = float(stacked.recon[:, i].mean())
        return rec

    stage = Stage("vae", state, spe, tc.vae_epochs, batches, step_fn, evaluate, summarize)
    meta_extra = {"config": cfg.to_dict(), "data": _data_stats(ds)}
    state, meta = fit(stage, run_dir, cfg, meta_extra, progress=progress, stop_after=stop_after)
    return graphdef, state, meta


def evaluate_vae(eval_fn, params, split: data_lib.Split, cfg: Config, dp: DataParallel,
                 max_bars: int = 4096) -> dict:
    """Validation ELBO and note-on precision / recall / F1 per instrument, at every candidate threshold."""
    bs = min(cfg.train.batch_size * 4, 512)
    bs -= bs % max(dp.size, jax.process_count())
    n = min(len(split), max_bars) // bs * bs
    if n == 0:
        bs = len(split) - len(split) % max(dp.size, jax.process_count())
        n = bs
    if n == 0:
        return {"val_loss": float("nan")}
    recon = kl = 0.0
    tp = fp = fn = 0
    on = 0
    key = jax.random.key(cfg.train.seed + 1)
    host, hosts = jax.process_index(), jax.process_count()
    local = bs // hosts
    for i in range(0, n, bs):
        lo = i + host * local  # each host reads its slice of the global batch
        x = split.bars(np.arange(lo, lo + local)).astype(np.float32)
        r, k, a, b, c, o = jax.device_get(eval_fn(params, dp.shard(x, axis=1), jax.random.fold_in(key, i)))
        recon, kl = recon + r * bs, kl + k * bs
        tp, fp, fn, on = tp + a, fp + b, fn + c, on + o
    recon, kl = recon / n, kl / n
    prec, rec, f1 = metrics.prf(tp, fp, fn)  # [5, thresholds]
    best = f1.argmax(-1)
    half = int(np.argmin(np.abs(THRESHOLDS - 0.5)))
    out = {"val_loss": float((recon + kl).sum()), "val_recon": float(recon.sum()), "val_kl": float(kl.sum())}
    for i, t in enumerate(TRACKS):
        out[f"f1_{t}"] = float(f1[i, best[i]])
        out[f"f1@0.5_{t}"] = float(f1[i, half])
        out[f"precision_{t}"] = float(prec[i, best[i]])
        out[f"recall_{t}"] = float(rec[i, best[i]])
        out[f"threshold_{t}"] = float(THRESHOLDS[best[i]])
        # density of predicted vs real on-cells at 0.5: near 0 means the decoder collapsed to silence
        out[f"on_ratio@0.5_{t}"] = float((tp[i, half] + fp[i, half]) / max(on[i], 1))
    return out


def _data_stats(ds: dict) -> dict:
    r = ds["train"].report
    return {"source": r["source"], "synthetic": r.get("synthetic", False), "songs_read": r["songs_read"],
            "bars_per_split": r["bars_per_split"], "nonempty_bar_share": r["nonempty_bar_share"]}


def encode_dataset(graphdef, params, split: data_lib.Split, chunk: int = 1024) -> np.ndarray:
    """Latent parameters of every bar: `[bars, 5, 2K]` (mu then logvar), in song order."""

    enc = jax.jit(lambda p, x: models.encode_stack(graphdef, p, x, split.cfg))

    out = []
    for i in range(0, len(split), chunk):
        idx = np.arange(i, min(i + chunk, len(split)))
        x = split.bars(idx).astype(np.float32)
        if x.shape[1] < chunk:  # pad to one compiled shape
            x = np.concatenate([x, np.zeros((5, chunk - x.shape[1]) + x.shape[2:], np.float32)], 1)
        out.append(np.asarray(enc(params, x)).transpose(1, 0, 2)[: len(idx)])
    return np.concatenate(out) if out else np.zeros((0, len(TRACKS), 0), np.float32)


def pairs(split: data_lib.Split) -> np.ndarray:
    """Indices i of bars whose successor i+1 is in the same song."""
    idx = [np.arange(s, s + n - 1) for s, n in zip(split.start, split.length) if n > 1]
    return np.concatenate(idx) if idx else np.zeros(0, np.int64)


def run_encode(run_dir: str, cfg: Config, ds: dict, graphdef, params) -> dict:
    """Encode every split with the best VAEs into `latents/{split}.npz`; return them."""
    os.makedirs(os.path.join(run_dir, "latents"), exist_ok=True)
    out = {}
    for name in data_lib.SPLITS:
        path = os.path.join(run_dir, "latents", f"{name}.npz")
        lat = encode_dataset(graphdef, params, ds[name])
        if jax.process_index() == 0:
            np.savez(path + ".tmp.npz", latents=lat, start=ds[name].start, length=ds[name].length)
            os.replace(path + ".tmp.npz", path)
        out[name] = lat
    return out


def load_latents(run_dir: str) -> dict | None:
    out = {}
    for name in data_lib.SPLITS:
        path = os.path.join(run_dir, "latents", f"{name}.npz")
        if not os.path.exists(path):
            return None
        with np.load(path, allow_pickle=False) as z:
            out[name] = z["latents"]
    return out


def latent_norm(train_latents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-track, per-dimension mean and std `[5, 2K]` of latent parameters over the training bars."""
    mean = train_latents.mean(axis=0)
    std = np.maximum(train_latents.std(axis=0), 1e-3)
    return mean.astype(np.float32), std.astype(np.float32)


def _chain_data(lat: np.ndarray, split: data_lib.Split, harmony: bool):
    """(inputs, targets) for all consecutive-bar pairs of a split (latents already standardised)."""
    i = pairs(split)
    if not harmony:
        return lat[i, PIANO], lat[i + 1, PIANO]
    piano_next = lat[i + 1, PIANO]  # [N, 2K]
    x = np.stack([np.concatenate([piano_next, lat[i, h]], -1) for h in HARMONY])  # [4, N, 4K]
    y = np.stack([lat[i + 1, h] for h in HARMONY])
    return x, y


def train_chain(run_dir: str, cfg: Config, ds: dict, latents: dict, which: str, *, progress=True,
                stop_after=0):
    """Train MelodyNN (`which='melody'`) or the stacked HarmonyNNs (`which='harmony'`)."""
    tc = cfg.train
    harmony = which == "harmony"
    key = jax.random.fold_in(jax.random.key(tc.seed), 2 if harmony else 1)
    net = models.harmony_stack(cfg.model, key) if harmony else models.melody_net(cfg.model, key)
    graphdef, params = nnx.split(net)
    tx = optax.adam(tc.chain_lr)
    state = {"params": params, "opt": tx.init(params), "key": jax.random.key_data(key)}
    step_fn, eval_fn = make_chain_fns(graphdef, tx, stacked=harmony)
    mean, std = latent_norm(latents["train"])
    xt, yt = _chain_data((latents["train"] - mean) / std, ds["train"], harmony)
    xv, yv = _chain_data((latents["valid"] - mean) / std, ds["valid"], harmony)
    n = xt.shape[-2]
    bs = min(tc.chain_batch_size, n)
    if bs == 0:
        raise ValueError("no consecutive bars to train the latent chains on")
    spe = n // bs
    axis = 1 if harmony else 0

    def batches(epoch, start):
        order = np.random.default_rng([tc.seed, 1000 + epoch]).permutation(n)
        for b in range(start, spe):
            idx = order[b * bs:(b + 1) * bs]
            x = np.take(xt, idx, axis=axis)
            if tc.chain_noise > 0:  # denoising inputs; the noise depends on (seed, epoch, batch) only
                x = x + tc.chain_noise * np.random.default_rng([tc.seed, 2000 + epoch, b]).standard_normal(
                    x.shape).astype(np.float32)
            yield (x, np.take(yt, idx, axis=axis))

    def evaluate(state):
        if xv.shape[-2] == 0:
            xe, ye = xt, yt
        else:
            xe, ye = xv, yv
        per = np.asarray(eval_fn(state["params"], xe, ye))
        base = np.mean((xe[..., -yv.shape[-1]:] - ye) ** 2, axis=tuple(range(axis, ye.ndim)))
        out = {"val_loss": float(np.mean(per)), "baseline": float(np.mean(base))}
        if harmony:
            for j, h in enumerate(HARMONY):
                out[f"mse_{TRACKS[h]}"] = float(per[j])
                out[f"baseline_{TRACKS[h]}"] = float(base[j])
        return out

    def summarize(host):
        return {"mse": float(np.mean(np.stack(host)))}

    stage = Stage(which, state, spe, tc.chain_epochs, batches, step_fn, evaluate, summarize)
    state, meta = fit(stage, run_dir, cfg, {"config": cfg.to_dict()}, progress=progress, stop_after=stop_after)
    return graphdef, state, meta


def start_bars(latents: np.ndarray, split: data_lib.Split, *, seed: int, n: int = 1024,
               look_at: int = 20000, band: int = START_BAND) -> np.ndarray:
    """Latent parameters `[<=n, 5, 2K]` of real training bars where the piano and at least `band` other
    tracks play: where generation starts. (Songs' first bars are a poor start: most are intros, and in the
    LPD-cleansed sample nine in ten have a silent piano, so a chain started there stays silent.) With
    `band=0` the other tracks play or rest as often as they do beside a playing piano, and a chain that
    starts with a track resting tends to keep it resting, as songs without that instrument do."""
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(split), size=min(look_at, len(split)), replace=False))
    sounding = split.bars(idx).any(axis=(2, 3))  # [5, m]
    good = idx[sounding[PIANO] & (sounding.sum(axis=0) >= 1 + band)]
    if len(good) == 0:  # a corpus without such bars: take any bars
        good = idx
    return latents[rng.permutation(good)[:n]]


def calibrate_notes(graphdef, params, split: data_lib.Split, max_bars: int = 1024) -> np.ndarray:
    """Decoding thresholds `[5, channels]` per track for `models.decode_notes`, searched on a grid over
    held-out bars: the best note-on F1 among settings whose decoded notes are at least QUALIFIED_MIN
    qualified (3 steps or longer; drums excepted, their hits are short), or the most qualified if none is."""
    n = min(len(split), max_bars)
    x = split.bars(np.arange(n))
    probs = jax.jit(lambda p, xb: models.reconstruct_stack(graphdef, p, xb, split.cfg))(params, x.astype(np.float32))
    channels = probs[0].shape[2]

    @jax.jit
    def counts(th, probs, x):  # th [5, channels] -> tp, fp, fn, notes, qualified notes per track
        roll = jax.vmap(models.decode_notes)(probs[0], th, plays=probs[1])
        nxt = lambda r, k: jnp.pad(r, ((0, 0), (0, 0), (0, k), (0, 0)))[:, :, k:]  # noqa: E731
        start = roll & ~jnp.pad(roll, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]
        qual = start & nxt(roll, 1) & nxt(roll, 2)
        axes = (1, 2, 3)
        return (jnp.sum(roll & x, axis=axes), jnp.sum(roll & ~x, axis=axes), jnp.sum(~roll & x, axis=axes),
                jnp.sum(start, axis=axes), jnp.sum(qual, axis=axes))

    grid = ([(a,) for a in THRESHOLDS] if channels == 1
            else [(a, b) for a in SUSTAIN_GRID for b in ONSET_GRID])
    f1, qn = [], []
    for g in grid:
        tp, fp, fn, notes, qual = jax.device_get(counts(jnp.tile(jnp.asarray(g, jnp.float32), (5, 1)), probs, x))
        f1.append(metrics.prf(tp, fp, fn)[2])
        qn.append(qual / np.maximum(notes, 1))
    f1, qn = np.stack(f1), np.stack(qn)  # [grid, 5]
    if channels > 1:
        ok = qn >= QUALIFIED_MIN
        ok[:, 0] = True  # drums
        f1 = np.where(ok.any(0), np.where(ok, f1, -1.0), qn)
    return np.asarray(grid, np.float32)[f1.argmax(0)]  # [5, channels]


def calibrate(run_dir: str, vae_meta: dict, latents: dict, ds: dict, seed: int = 0, *,
              graphdef=None, params=None) -> dict:
    """Sampling statistics saved beside the checkpoints: decoding thresholds, latent normalisation, and a
    bank of real bars to start generation from."""
    val = vae_meta.get("val", {})
    if graphdef is not None and len(ds["valid"]):
        thresholds = calibrate_notes(graphdef, params, ds["valid"]).tolist()
    else:
        thresholds = [[val.get(f"threshold_{t}", 0.5)] for t in TRACKS]
    mean, std = latent_norm(latents["train"])
    bank = start_bars(latents["train"], ds["train"], seed=seed)
    stats = {"thresholds": thresholds, "val": val, "data": _data_stats(ds),
             "latent_mean": mean.tolist(), "latent_std": std.tolist()}
    if jax.process_index() == 0:
        with open(os.path.join(run_dir, "stats.json"), "w") as f:
            json.dump(stats, f, indent=2)
        np.save(os.path.join(run_dir, "start_bars.npy"), bank.astype(np.float32))
    return stats


def train_all(run_dir: str, cfg: Config, data_dir: str, *, stages=STAGES, devices=None, progress=True) -> dict:
    """Run the requested stages in order; each resumes from its own checkpoints."""
    os.makedirs(run_dir, exist_ok=True)
    cfg_path = os.path.join(run_dir, "config.json")
    if os.path.exists(cfg_path):
        with open(cfg_path) as f:
            saved = Config.from_dict(json.load(f))
        if saved != cfg:
            raise ValueError(f"{run_dir} was started with a different configuration; use a new --run "
                             f"directory or the same settings (saved in {cfg_path})")
    elif jax.process_index() == 0:
        # written whole or not at all: the other processes of a job may be reading it at this moment
        with open(cfg_path + ".tmp", "w") as f:
            f.write(cfg.to_json())
        os.replace(cfg_path + ".tmp", cfg_path)
    with open(os.path.join(run_dir, "data.txt"), "w") as f:
        f.write(os.path.abspath(data_dir) + "\n")
    ds = data_lib.open_dataset(data_dir)
    if ds["train"].cfg != cfg.data:
        raise ValueError(f"{data_dir} was prepared with {ds['train'].cfg}, the run expects {cfg.data}")
    dp = DataParallel(devices)
    results = {}
    vae_state = None
    graphdef, like, _ = init_vae_state(cfg, jax.random.key(0))
    if "vae" in stages:
        graphdef, vae_state, vae_meta = train_vae(run_dir, cfg, ds, dp, progress=progress)
        results["vae"] = vae_meta.get("val", {})
    latents = load_latents(run_dir)
    if "encode" in stages or (latents is None and ({"melody", "harmony"} & set(stages))):
        if vae_state is None:
            vae_state, vae_meta = restore_best(run_dir, "vae", like)
        latents = run_encode(run_dir, cfg, ds, graphdef, vae_state["params"])
        calibrate(run_dir, vae_meta, latents, ds, seed=cfg.train.seed, graphdef=graphdef, params=vae_state["params"])
    for which in ("melody", "harmony"):
        if which in stages:
            _, _, meta = train_chain(run_dir, cfg, ds, latents, which, progress=progress)
            results[which] = meta.get("val", {})
    return results
