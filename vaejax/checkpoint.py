"""Orbax checkpoints of one training stage: the latest few (for resuming) and the best (for sampling)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import warnings

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_managers import preservation_policy as pp

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    pass


def _reason(e: BaseException) -> str:
    """One line for an exception from a checkpoint write (Orbax folds whole tracebacks into its messages)."""
    text = str(e)
    for known in ("No space left on device", "Read-only file system", "Permission denied", "Disk quota exceeded"):
        if known in text:
            return known
    return f"{type(e).__name__}: {text.strip().splitlines()[0][:200] if text.strip() else ''}"


def _abstract(tree):
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


class StageCheckpoints:
    """`root/latest/<step>` keeps the last `keep` saves; `root/best/<step>` the one with the best validation.

    Each save holds `state` (a pytree of arrays: parameters, optimiser state, rng) and `meta` (JSON: step,
    epoch, config, data statistics, best validation loss).
    """

    def __init__(self, root: str, keep: int = 3):
        self.root = os.path.abspath(root)
        opts = ocp.CheckpointManagerOptions(
            preservation_policy=pp.LatestN(keep), create=True, enable_async_checkpointing=True
        )
        self.latest = ocp.CheckpointManager(os.path.join(self.root, "latest"), options=opts)
        best_opts = ocp.CheckpointManagerOptions(
            preservation_policy=pp.LatestN(1), create=True, enable_async_checkpointing=False
        )
        self.best = ocp.CheckpointManager(os.path.join(self.root, "best"), options=best_opts)

    def save(self, step: int, state, meta: dict, *, best: bool = False) -> None:
        """Save asynchronously (the previous save is finished first). A failed write raises CheckpointError;
        the saves before it stay complete and usable."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        with self._writing(step):
            self.latest.wait_until_finished()
            self._check_space(step, state, copies=2 if best else 1)
            if step not in self.latest.all_steps():
                self.latest.save(step, args=args)
            if best:
                self.latest.wait_until_finished()
                self.best.save(step, args=args, force=True)

    def wait(self) -> None:
        with self._writing(None):
            self.latest.wait_until_finished()
            self.best.wait_until_finished()

    def _check_space(self, step: int, state, copies: int) -> None:
        """Refuse a save the disk cannot hold before Orbax starts writing (a write that runs out of space
        fails in background threads, noisily); the saves before it stay complete."""
        need = copies * sum(int(getattr(a, "nbytes", 0)) for a in jax.tree.leaves(state)) + (4 << 20)
        free = shutil.disk_usage(self.root).free
        if free < need:
            raise CheckpointError(
                f"{self.root}: not enough free space for checkpoint {step} ({free / 2**20:.1f} MiB "
                f"free, about {need / 2**20:.1f} MiB needed); the last complete checkpoint is kept: "
                f"free space and re-run the same command to resume"
            )

    @contextlib.contextmanager
    def _writing(self, step):
        try:
            yield
        except CheckpointError:
            raise
        except Exception as e:
            what = "a checkpoint" if step is None else f"checkpoint {step}"
            raise CheckpointError(
                f"{self.root}: writing {what} failed ({_reason(e)}); the last complete "
                f"checkpoint is kept: free space and re-run the same command to resume"
            ) from None

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
                warnings.warn(
                    f"best checkpoint {self.root}/best/{step} is unreadable ({e}); using the latest", stacklevel=2
                )
        out = self.restore_latest(like)
        if out is None:
            raise CheckpointError(f"{self.root}: no checkpoint")
        return out

    def close(self) -> None:
        try:
            self.wait()
        finally:
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


def _shape_mismatch(saved, like) -> str | None:
    """Where the saved parameter tree's shapes differ from `like`'s, or None."""

    # nnx states name a variable's array by attribute (.value) and list items by number, the saved tree by
    # string keys (['value'], ['0'])
    def flat(tree):
        return {
            re.sub(r"\[(\d+)\]", r"['\1']", jax.tree_util.keystr(p).replace(".value", "['value']")): tuple(
                getattr(v, "shape", ())
            )
            for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]
        }

    a, b = flat(saved), flat(like)
    for key in b:
        if key not in a:
            return f"{key} is missing"
        if a[key] != b[key]:
            return f"{key} has shape {a[key]}, expected {b[key]}"
    return None


def restore_params(root: str, like_params):
    """The parameters alone of the best checkpoint under `root` (a stage's folder): what generation needs,
    restored without the optimiser state the checkpoint also holds (so a change of optimiser never
    breaks loading a model). Shapes are compared with `like_params` from the checkpoint's metadata before
    anything is read, so a run whose config.json does not match its checkpoints fails in one line."""
    errors = []
    handlers = {"state": ocp.PyTreeCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
    for name in ("best", "latest"):
        folder = os.path.join(os.path.abspath(root), name)
        if not os.path.isdir(folder):
            continue
        manager = ocp.CheckpointManager(folder, item_handlers=handlers)
        try:
            for step in sorted(manager.all_steps(), reverse=True):
                try:
                    tree = manager.item_metadata(step)["state"]
                    tree = getattr(tree, "tree", tree)
                    wrong = _shape_mismatch(tree["params"], like_params)
                    if wrong:
                        raise CheckpointError(f"{root}: its networks do not match config.json ({wrong})")
                    item = {"params": _on_one_device(like_params)}
                    args = ocp.args.Composite(
                        state=ocp.args.PyTreeRestore(
                            item=item,
                            restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                            partial_restore=True,
                        )
                    )
                    params = manager.restore(step, args=args).state["params"]
                    if errors:  # an older save served: say which newer ones could not
                        warnings.warn(f"unreadable checkpoints skipped: {'; '.join(errors)}", stacklevel=2)
                    return params
                except CheckpointError:
                    raise
                except Exception as e:  # orbax raises many types for damaged files
                    errors.append(f"{folder}/{step}: {type(e).__name__}: {str(e)[:160]}")
        finally:
            manager.close()
    if errors:
        raise CheckpointError(f"{root}: no readable checkpoint (first: {errors[0]})")
    raise CheckpointError(f"{root}: no checkpoint")
