"""Input pipeline benchmark: batches per second from a prepared cache against the training step rate.

Two ways of feeding the step, measured side by side: bars unpacked on the host into float32 (the earlier
path) and bit-packed uint8 bars gathered from the memory-mapped cache and unpacked inside the jitted step
(what training uses). Host-to-device bytes per batch are given for both.

Usage: python bench/bench_pipeline.py --data PREPARED [--batch 64 256] [--batches 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from vaejax import data, training  # noqa: E402
from vaejax.config import preset  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--batches", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    split = data.open_dataset(args.data)["train"]
    out = {"bars_in_split": len(split), "results": {}}
    for bs in args.batch:
        pipes = {}
        for packed in (False, True):
            rates = []
            for r in range(args.repeats):
                it = data.batches(split, bs, seed=0, epoch=r, packed=packed)
                t = time.perf_counter()
                n = 0
                for b in it:
                    jax.block_until_ready(jax.device_put(b.x))
                    n += 1
                    if n == args.batches:
                        break
                rates.append(n / (time.perf_counter() - t))
            pipes[packed] = (statistics.median(rates), b.x.nbytes)
        pipe = pipes[True][0]
        cfg = preset("default").replace(train={"batch_size": bs})
        g, st, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
        step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
        x = jnp.asarray(next(data.batches(split, bs, seed=0, epoch=0, packed=True)).x)
        for i in range(2):
            st, m = step(st, x, jnp.int32(i))
        jax.block_until_ready(m)
        ts = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            for i in range(3):
                st, m = step(st, x, jnp.int32(i))
            jax.block_until_ready(m)
            ts.append((time.perf_counter() - t) / 3)
        steps = 1 / statistics.median(ts)
        out["results"][str(bs)] = {
            "float32_batches_per_s": pipes[False][0],
            "float32_bytes_per_batch": pipes[False][1],
            "packed_batches_per_s": pipes[True][0],
            "packed_bytes_per_batch": pipes[True][1],
            "train_steps_per_s": steps,
            "headroom": pipe / steps,
        }
        print(
            f"batch {bs}: float32 {pipes[False][0]:.1f} batches/s ({pipes[False][1] / 1e6:.1f} MB each), packed "
            f"{pipe:.1f} batches/s ({pipes[True][1] / 1e6:.2f} MB each, one thread, device_put included); "
            f"training {steps:.2f} steps/s; headroom {pipe / steps:.1f}x"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
