"""End-to-end epoch throughput: the VAE stage's real loop (batches from the cache, prefetch thread, logging,
periodic checkpoints, validation at the end of the epoch) against the bare jitted step on the same batches,
in one process.

Usage: python bench/bench_epoch.py --data PREPARED [--batch 64] [--steps 300] [--json OUT]

The loop runs two epochs of `--steps` steps (the second is timed: compiled, as every epoch after the
first); the bare step is timed on one resident batch. The breakdown times validation and one checkpoint
save alone; the full-epoch figure adds those fixed costs to a full epoch of bare steps.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from vaejax import data  # noqa: E402
from vaejax.checkpoint import StageCheckpoints  # noqa: E402
from vaejax.config import preset  # noqa: E402
from vaejax.devices import DataParallel  # noqa: E402
from vaejax.runs import RunFolder  # noqa: E402
from vaejax.training import stages, steps  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    ds = data.open_dataset(args.data)
    cfg = preset("default").replace(
        train={"batch_size": args.batch, "max_steps_per_epoch": args.steps, "vae_epochs": 2}
    )
    cfg = stages.with_data(cfg, args.data)
    with tempfile.TemporaryDirectory() as tmp:
        run = RunFolder(tmp)
        run.write_config(cfg)
        stages.train_vae(run, cfg, ds, DataParallel(), progress=False)
        epoch = [r for r in run.read_metrics() if r["kind"] == "valid"][-1]["seconds"]
        # the pieces alone
        g, state, tx = steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
        step, eval_fn = steps.make_vae_fns(g, cfg.train, cfg.data, tx)
        x = jnp.asarray(next(data.batches(ds["train"], args.batch, seed=0, epoch=0, packed=True)).x)
        for i in range(3):
            state, m = step(state, x, jnp.int32(i))
        jax.block_until_ready(m)
        times = []
        for _ in range(5):
            t = time.perf_counter()
            for i in range(10):
                state, m = step(state, x, jnp.int32(i))
            jax.block_until_ready(m)
            times.append((time.perf_counter() - t) / 10)
        bare = statistics.median(times)
        stages.evaluate_vae(eval_fn, state["params"], ds["valid"], cfg.train, DataParallel())
        t = time.perf_counter()
        stages.evaluate_vae(eval_fn, state["params"], ds["valid"], cfg.train, DataParallel())
        validation = time.perf_counter() - t
        ck = StageCheckpoints(os.path.join(tmp, "ckpt-alone"))
        ck.save(1, state, {"step": 1})
        ck.wait()
        t = time.perf_counter()
        ck.save(2, state, {"step": 2})
        ck.wait()
        save = time.perf_counter() - t
        ck.close()
    full_steps = len(ds["train"]) // args.batch
    saves = full_steps // cfg.train.checkpoint_every
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "command": "python bench/bench_epoch.py " + " ".join(sys.argv[1:]),
        "batch": args.batch,
        "steps": args.steps,
        "bare_step_ms": 1000 * bare,
        "epoch_seconds": epoch,
        "throughput_fraction": args.steps * bare / epoch,
        "validation_seconds": validation,
        "checkpoint_save_seconds_blocking": save,
        "full_epoch_steps": full_steps,
        "full_epoch_fraction_estimate": full_steps * bare / (full_steps * bare + validation + saves * save),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
