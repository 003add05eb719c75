"""Run with XLA_FLAGS=--xla_force_host_platform_device_count=8 (see test_parallel.py): trains the tiny VAEs
for a few steps on 8 devices and on 1 (batches of 16 computed in two slices of 8, `TrainConfig.micro_batch`),
and prints JSON with both loss series and the batch's sharding."""

import json
import sys

import jax
import numpy as np

from vaejax import data as data_lib
from vaejax import training
from vaejax.config import preset
from vaejax.devices import DataParallel


def run(devices, prepared, steps=4):
    cfg = preset("tiny").replace(train={"micro_batch": 8})  # batches of 16 in two slices: sharded slices too
    dp = DataParallel(devices)
    g, state, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
    state = dp.replicate(state)
    step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
    split = data_lib.open_dataset(prepared)["train"]
    losses, shard_devices = [], None
    for i, b in enumerate(data_lib.batches(split, 16, seed=0, epoch=0, limit=steps)):
        x = dp.shard(b.x, axis=1)
        shard_devices = len({s.device for s in x.addressable_shards})
        state, m = step(state, x, jax.numpy.asarray(i, jax.numpy.int32))
        losses.append(np.asarray(m.loss).tolist())
    params_devices = len(jax.tree.leaves(state["params"])[0].sharding.device_set)
    return {
        "losses": losses,
        "batch_devices": shard_devices,
        "param_devices": params_devices,
        "param_sum": float(sum(np.abs(np.asarray(p)).sum() for p in jax.tree.leaves(state["params"]))),
    }


if __name__ == "__main__":
    prepared = sys.argv[1]
    out = {
        "n_devices": jax.device_count(),
        "many": run(jax.devices(), prepared),
        "one": run(jax.devices()[:1], prepared),
    }
    print(json.dumps(out))
