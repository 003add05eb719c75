"""The loop every stage shares: batches -> steps, logging, validation, checkpoints, resuming, loss plots."""

from __future__ import annotations

import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp

from vaejax.checkpoint import StageCheckpoints, restore_best
from vaejax.config import TrainConfig
from vaejax.runs import Diverged, RunFolder

log = logging.getLogger("vaejax.training")


class Logger:
    """Appends JSON lines to the run's `metrics.jsonl` (and TensorBoard when `tensorboardX` is installed)."""

    def __init__(self, run: RunFolder):
        self.run = run
        self.tb = None
        if jax.process_index() == 0:
            try:
                from tensorboardX import SummaryWriter

                self.tb = SummaryWriter(run.path("tb"))
            except ImportError:
                pass

    def write(self, record: dict) -> None:
        if jax.process_index() != 0:
            return
        self.run.append_metrics(record)
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("step", "epoch"):
                    self.tb.add_scalar(f"{record['stage']}/{record['kind']}/{k}", v, record["step"])


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


def _finite(stage: str, step: int, values: dict, train: TrainConfig) -> None:
    """Stop a stage whose losses are no longer finite (a learning rate too high, data that overflow)."""
    import math

    bad = {k: v for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)}
    if bad:
        lr = train.lr if stage == "vae" else train.chain_lr
        raise Diverged(
            f"{stage}: training diverged at step {step} ({', '.join(f'{k} {v}' for k, v in bad.items())}); "
            f"the last finite checkpoint is kept and the run is not marked as latest; lower the learning "
            f"rate ({lr:g}, --lr / --set train.chain_lr) and run the same command again"
        )


def _pending_finite(stage: str, step: int, pending: list, train: TrainConfig) -> None:
    """Before a checkpoint is written: no NaN among the steps since the last log (never save a NaN state)."""
    import numpy as np

    if pending and not all(np.isfinite(np.asarray(m)).all() for m in jax.tree.leaves(jax.device_get(pending))):
        _finite(stage, step, {"loss": float("nan")}, train)


def fit(
    stage: Stage, run: RunFolder, train: TrainConfig, meta_extra: dict, *, progress: bool = True, stop_after: int = 0
) -> tuple[dict, dict]:
    """Train one stage with resume; returns (state restored from the best checkpoint, its meta).

    `stop_after` (steps, tests only) saves a checkpoint after that many steps and returns at once, leaving
    the stage unfinished as an interrupted run would.
    """
    ckpts = StageCheckpoints(run.ckpt(stage.name))
    logger = Logger(run)
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
        return restore_best(run.ckpt(stage.name), stage.state)
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
                if step % train.log_every == 0 or step % stage.steps_per_epoch == 0:
                    host = jax.device_get(pending)
                    pending = []
                    rec = stage.summarize(host)
                    logger.write({"stage": stage.name, "kind": "train", "step": step, "epoch": epoch, **rec})
                    _finite(stage.name, step, rec, train)
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in rec.items() if k in ("loss", "recon", "kl", "mse")})
                if stop_after and step - step0 >= stop_after:
                    _pending_finite(stage.name, step, pending, train)
                    ckpts.save(step, state, {**meta_extra, "step": step, "epoch": epoch, "best_val": best})
                    ckpts.close()
                    return state, {"stopped": step}
                if step % train.checkpoint_every == 0 and step % stage.steps_per_epoch:
                    _pending_finite(stage.name, step, pending, train)
                    ckpts.save(step, state, {**meta_extra, "step": step, "epoch": epoch, "best_val": best})
            val = stage.evaluate(state)
            _finite(stage.name, step, {"val_loss": float(val["val_loss"])}, train)
            improved = val["val_loss"] < best
            best = min(best, val["val_loss"])
            logger.write(
                {
                    "stage": stage.name,
                    "kind": "valid",
                    "step": step,
                    "epoch": epoch,
                    "seconds": round(time.perf_counter() - t_epoch, 3),
                    **val,
                }
            )
            line = f"{stage.name} epoch {epoch + 1}/{stage.epochs} (step {step}): " + ", ".join(
                f"{k} {v:.4g}"
                for k, v in val.items()
                if k.startswith(("val_loss", "f1_", "baseline", "mse_")) and "@" not in k
            )
            if bar is not None:
                bar.clear()
            if jax.process_index() == 0:
                log.info(line)  # a log line whatever the mode: files and --quiet keep the epochs
            meta = {
                **meta_extra,
                "step": step,
                "epoch": epoch,
                "best_val": best,
                "epoch_end": True,
                "done": epoch == stage.epochs - 1,
                "val": val,
            }
            ckpts.save(step, state, meta, best=improved)
    finally:
        if bar is not None:
            bar.close()
        ckpts.close()
    plot_losses(run, stage.name)
    return restore_best(run.ckpt(stage.name), stage.state)


def plot_losses(run: RunFolder, stage: str) -> str | None:
    """Train and validation loss against epoch, like the seed report's figures."""
    if jax.process_index() != 0:
        return None
    recs = [r for r in run.read_metrics() if r["stage"] == stage]
    if not recs:
        return None
    from vaejax.render import new_figure

    key = "loss" if stage in ("vae", "prior") else "mse"
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
    ax.set_ylabel(
        {"vae": "negative ELBO per bar (nats, sum of 5 VAEs)", "prior": "negative log-likelihood per bar (nats)"}.get(
            stage, "MSE"
        )
    )
    ax.set_title(f"{stage} loss")
    ax.legend()
    fig.tight_layout()
    path = run.loss_plot(stage)
    fig.savefig(path, dpi=100)
    return path
