"""Orbax checkpoints of one training stage: the latest few (for resuming) and the best (for sampling)."""

from __future__ import annotations

import logging
import os
import warnings

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    pass


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class StageCheckpoints:
    """`root/latest/<step>` keeps the last `keep` saves; `root/best/<step>` the one with the best validation.

    Each save holds `state` (a pytree of arrays: parameters, optimiser state, rng) and `meta` (JSON: step,
    epoch, config, data statistics, best validation loss).
    """

    def __init__(self, root: str, keep: int = 3):
        self.root = os.path.abspath(root)
        opts = ocp.CheckpointManagerOptions(preservation_policy=pp.LatestN(keep), create=True,
                                            enable_async_checkpointing=True)
        self.latest = ocp.CheckpointManager(os.path.join(self.root, "latest"), options=opts)
        best_opts = ocp.CheckpointManagerOptions(preservation_policy=pp.LatestN(1), create=True,
                                                 enable_async_checkpointing=False)
        self.best = ocp.CheckpointManager(os.path.join(self.root, "best"), options=best_opts)

    def save(self, step: int, state, meta: dict, *, best: bool = False) -> None:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.latest.wait_until_finished()
        if step not in self.latest.all_steps():
            self.latest.save(step, args=args)
        if best:
            self.latest.wait_until_finished()
            self.best.save(step, args=args, force=True)

    def wait(self) -> None:
        self.latest.wait_until_finished()
        self.best.wait_until_finished()

    def _restore(self, manager, step, like):
        args = ocp.args.Composite(state=ocp.args.StandardRestore(_abstract(like)), meta=ocp.args.JsonRestore())
        out = manager.restore(step, args=args)
        return out.state, out.meta

    def restore_latest(self, like):
        """Newest readable (state, meta), or None when nothing was saved yet.

        A save that cannot be read (corrupt, truncated) is skipped with a warning and the one before it is
        used. If saves exist but none can be read, CheckpointError is raised rather than starting over.
        """
        self.latest.reload()
        steps = sorted(self.latest.all_steps(), reverse=True)
        errors = []
        for step in steps:
            try:
                return self._restore(self.latest, step, like)
            except Exception as e:  # orbax raises many types for damaged files
                msg = f"checkpoint {self.root}/latest/{step} is unreadable ({type(e).__name__}: {str(e)[:120]})"
                warnings.warn(msg + "; falling back to the previous one", stacklevel=2)
                log.warning(msg)
                errors.append(msg)
        if errors:
            raise CheckpointError("no readable checkpoint: " + "; ".join(errors))
        return None

    def restore_best(self, like):
        """(state, meta) of the best save; falls back to the latest readable one."""
        self.best.reload()
        step = self.best.latest_step()
        if step is not None:
            try:
                return self._restore(self.best, step, like)
            except Exception as e:
                warnings.warn(f"best checkpoint {self.root}/best/{step} is unreadable ({e}); using the latest",
                              stacklevel=2)
        out = self.restore_latest(like)
        if out is None:
            raise CheckpointError(f"{self.root}: no checkpoint")
        return out

    def close(self) -> None:
        self.wait()
        self.latest.close()
        self.best.close()


def _on_one_device(tree):
    """Shape/dtype structs placed on the default device: generation runs on one device whatever sharding
    the run was trained with."""
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), tree)


def restore_best(root: str, like: dict) -> tuple[dict, dict]:
    """(state, meta) of the best checkpoint under `root` (a stage's folder), restored into `like`'s
    structure."""
    ckpts = StageCheckpoints(root)
    try:
        return ckpts.restore_best(like)
    finally:
        ckpts.close()


def restore_params(root: str, like_params):
    """The parameters alone of the best checkpoint under `root` (a stage's folder): what generation needs,
    restored without the optimiser state the checkpoint also holds (so a change of optimiser never
    breaks loading a model). `like_params`: arrays or shape/dtype structs of the parameters."""
    errors = []
    for name in ("best", "latest"):
        folder = os.path.join(os.path.abspath(root), name)
        if not os.path.isdir(folder):
            continue
        manager = ocp.CheckpointManager(folder)
        try:
            for step in sorted(manager.all_steps(), reverse=True):
                args = ocp.args.Composite(state=ocp.args.PyTreeRestore(
                    item={"params": _on_one_device(like_params)}, partial_restore=True))
                try:
                    return manager.restore(step, args=args).state["params"]
                except Exception as e:  # orbax raises many types for damaged or mismatched files
                    errors.append(f"{folder}/{step}: {type(e).__name__}: {str(e)[:160]}")
                    warnings.warn(f"checkpoint {errors[-1]} is unreadable; trying an older one", stacklevel=2)
        finally:
            manager.close()
    if errors:
        raise CheckpointError(f"{root}: no checkpoint fits the networks config.json describes, or all are damaged "
                              f"(first: {errors[0]})")
    raise CheckpointError(f"{root}: no checkpoint")
