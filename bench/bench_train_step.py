"""Training-step benchmark: vaejax's vmapped five-instrument VAE step vs the same JAX model looped over
instruments vs PyTorch (five models), same architecture, batch, loss (negative ELBO with free bits) and
optimiser (Adam). Also reports model FLOPs per step and the fraction of this machine's measured matmul peak.

Usage: python bench/bench_train_step.py [--batch 64 256] [--repeats 7] [--steps 10] [--json PATH]
Ends with the line `vaejax/pytorch = R` (R: throughput ratio at the first batch size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from vaejax import losses, models, training  # noqa: E402
from vaejax.config import preset  # noqa: E402

T, P = 96, 84


def model_flops_per_bar(cfg) -> float:
    """Matmul FLOPs of one bar through one VAE, forward + backward (3x forward)."""
    m = cfg.model
    kt1, kt2 = m.time_patch
    c1, c2 = m.channels
    g1 = (T // kt1) * (P // m.pitch_patch)  # positions after conv1
    g2 = (T // (kt1 * kt2)) * (P // m.pitch_patch)
    flat = g2 * c2
    macs = (g1 * kt1 * m.pitch_patch * c1 + g2 * kt2 * c1 * c2 + flat * m.hidden + m.hidden * 2 * m.latent
            + m.latent * m.hidden + m.hidden * flat + g2 * c2 * kt2 * c1 + g1 * c1 * kt1 * m.pitch_patch)
    return 3 * 2 * macs


def median_time(fn, steps, repeats):
    fn()  # warm-up (compile)
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            out = fn()
        jax.block_until_ready(out) if out is not None else None
        times.append((time.perf_counter() - t) / steps)
    return statistics.median(times), times


def matmul_peak(repeats):
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    t, _ = median_time(lambda: f(a, a), 5, repeats)
    jax_peak = 2 * n**3 / t
    import torch
    ta = torch.ones(n, n)
    def tm():
        torch.mm(ta, ta)
    tm()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(5):
            torch.mm(ta, ta)
        ts.append((time.perf_counter() - t0) / 5)
    torch_peak = 2 * n**3 / statistics.median(ts)
    return max(jax_peak, torch_peak), jax_peak, torch_peak


def jax_vmapped(cfg, x):
    g, state, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
    step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
    xs = jnp.asarray(x)
    box = {"s": state, "i": 0}

    def run():
        box["s"], m = step(box["s"], xs, jnp.asarray(box["i"], jnp.int32))
        box["i"] += 1
        return m.loss
    return run


def jax_looped(cfg, x):
    """The same model, one jitted single-instrument step called five times per step."""
    tc = cfg.train
    tx = optax.adam(tc.lr)
    vae = models.VAE(cfg.model, cfg.data, rngs=nnx.Rngs(0))
    g, p = nnx.split(vae)
    states = []
    for i in range(5):
        _, pi = nnx.split(models.VAE(cfg.model, cfg.data, rngs=nnx.Rngs(i)))
        states.append({"params": pi, "opt": tx.init(pi)})

    def loss(params, xb, key, beta):
        model = nnx.merge(g, params)
        xp = jax.lax.stop_gradient(model.patches(xb))
        out = model(xp, key)
        return losses.elbo(out.logits, xp, out.mu, out.logvar, beta=beta, free_bits=tc.free_bits).loss

    @jax.jit
    def step(state, xb, s):
        beta = losses.kl_beta(s, tc.beta, tc.beta_rate)
        value, grads = jax.value_and_grad(loss)(state["params"], xb, jax.random.fold_in(jax.random.key(0), s), beta)
        upd, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], upd), "opt": opt}, value

    xs = [jnp.asarray(x[i]) for i in range(5)]
    box = {"i": 0}

    def run():
        out = None
        for i in range(5):
            states[i], out = step(states[i], xs[i], jnp.asarray(box["i"], jnp.int32))
        box["i"] += 1
        return out
    return run


def torch_models(cfg, x, threads):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    m = cfg.model
    kt1, kt2 = m.time_patch
    c1, c2 = m.channels
    grid = (T // (kt1 * kt2), P // m.pitch_patch)
    flat = grid[0] * grid[1] * c2
    tc = cfg.train

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = nn.Sequential(nn.Conv2d(1, c1, (kt1, m.pitch_patch), (kt1, m.pitch_patch)), nn.ReLU(),
                                     nn.Conv2d(c1, c2, (kt2, 1), (kt2, 1)), nn.ReLU(), nn.Flatten(),
                                     nn.Linear(flat, m.hidden), nn.ReLU(), nn.Linear(m.hidden, 2 * m.latent))
            self.dec = nn.Sequential(nn.Linear(m.latent, m.hidden), nn.ReLU(), nn.Linear(m.hidden, flat), nn.ReLU(),
                                     nn.Unflatten(1, (c2,) + grid),
                                     nn.ConvTranspose2d(c2, c1, (kt2, 1), (kt2, 1)), nn.ReLU(),
                                     nn.ConvTranspose2d(c1, 1, (kt1, m.pitch_patch), (kt1, m.pitch_patch)))

        def forward(self, xb):
            mu, logvar = self.enc(xb).chunk(2, dim=-1)
            logvar = logvar.clamp(-10, 10)
            z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
            return self.dec(z), mu, logvar

    nets = [VAE() for _ in range(5)]
    opts = [torch.optim.Adam(n.parameters(), lr=tc.lr) for n in nets]
    xs = [torch.from_numpy(x[i][:, None].copy()) for i in range(5)]
    box = {"i": 0}

    def run():
        beta = tc.beta * (1 - tc.beta_rate ** box["i"])
        for net, opt, xb in zip(nets, opts, xs):
            logits, mu, logvar = net(xb)
            recon = nn.functional.binary_cross_entropy_with_logits(logits, xb, reduction="sum") / xb.shape[0]
            kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1)
            loss = recon + beta * torch.clamp(kl - tc.free_bits * m.latent, min=0).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        box["i"] += 1
        return None
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    threads = os.cpu_count()
    # the three-way comparison uses the architecture the PyTorch baseline and the FLOP count model: one output
    # map, no piano conditioning, no plays head; the current design's step is timed beside it
    cfg0 = preset("default").replace(model={"condition": False, "onsets": False, "plays": False})
    peak, jpeak, tpeak = matmul_peak(args.repeats)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__} "
          f"({jax.devices()[0].platform}), torch {torch.__version__} ({threads} threads)")
    print(f"measured f32 matmul peak (2048^3): jax {jpeak / 1e9:.1f} GFLOP/s, torch {tpeak / 1e9:.1f} GFLOP/s")
    fl = model_flops_per_bar(cfg0)
    out = {"peak_gflops": peak / 1e9, "jax_matmul_gflops": jpeak / 1e9, "torch_matmul_gflops": tpeak / 1e9,
           "flops_per_bar": fl, "results": {}}
    first_ratio = None
    for bs in args.batch:
        cfg = cfg0.replace(train={"batch_size": bs})
        x = (np.random.default_rng(0).random((5, bs, T, P)) < 0.02).astype(np.float32)
        res = {}
        for name, make in (("vaejax vmapped", jax_vmapped), ("jax looped", jax_looped),
                           ("pytorch x5", lambda c, a: torch_models(c, a, threads))):
            t, ts = median_time(make(cfg, x), args.steps, args.repeats)
            res[name] = {"step_ms": t * 1e3, "bars_per_s": 5 * bs / t, "runs_ms": [round(v * 1e3, 1) for v in ts],
                         "gflops": 5 * bs * fl / t / 1e9, "peak_fraction": 5 * bs * fl / t / peak}
            r = res[name]
            print(f"batch {bs:4d} {name:15s} {r['step_ms']:8.1f} ms/step {r['bars_per_s']:8.0f} bars/s "
                  f"{r['gflops']:6.1f} GFLOP/s ({100 * r['peak_fraction']:.0f}% of peak)")
        full = preset("default").replace(train={"batch_size": bs})
        t, ts = median_time(jax_vmapped(full, x), args.steps, args.repeats)
        res["vaejax vmapped, current design"] = {"step_ms": t * 1e3, "bars_per_s": 5 * bs / t,
                                                 "runs_ms": [round(v * 1e3, 1) for v in ts]}
        print(f"batch {bs:4d} {'vaejax vmapped, current design':15s} {t * 1e3:8.1f} ms/step {5 * bs / t:8.0f} bars/s "
              f"(onset map, piano conditioning, plays head)")
        ratio = res["vaejax vmapped"]["bars_per_s"] / res["pytorch x5"]["bars_per_s"]
        loop_ratio = res["vaejax vmapped"]["bars_per_s"] / res["jax looped"]["bars_per_s"]
        print(f"batch {bs}: vaejax/pytorch = {ratio:.2f}, vaejax/jax-looped = {loop_ratio:.2f}")
        out["results"][str(bs)] = {"methods": res, "vaejax_over_pytorch": ratio, "vaejax_over_looped": loop_ratio}
        first_ratio = first_ratio or ratio
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    print(f"vaejax/pytorch = {first_ratio:.2f}")


if __name__ == "__main__":
    main()
