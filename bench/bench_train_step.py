"""Training-step benchmark of the shipped design: vaejax's vmapped five-instrument VAE step against the same
JAX model run as five jitted calls per step and against PyTorch (`bench/torch_vae.py`, checked like for like
by `tests/test_torch_baseline.py`): eager with five models, eager with the five batched by `torch.func.vmap`,
and `torch.compile` where it works. Same design, batch, loss (negative ELBO with free bits and the plays
head, targets made inside the step), Adam, float32.

Methods run interleaved (each repeat times every method in turn), so that load from other processes falls
on all of them alike; the figure per method is the median over repeats of the mean step time of `--steps`
steps. FLOPs per step come from XLA's cost analysis of the vmapped step compiled for the whole batch at once (the same
arithmetic as the sliced step, whose scan body the analysis would count once); the share of peak is
against the faster of the f32 2048^3 matrix products in JAX and in PyTorch, timed among the methods in
every repeat (so under the same load).

Usage: python bench/bench_train_step.py [--batch 64 256] [--repeats 7] [--steps 3] [--json PATH] [--no-compile]
       [--torch-threads 1 2] [--slices 16 32]
Ends with the line `vaejax/pytorch = R` (R: vaejax's throughput over the fastest PyTorch eager x5 at the first
batch size).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from vaejax import losses, models, training  # noqa: E402
from vaejax.config import PIANO, preset  # noqa: E402

T, P = 96, 84


def machine() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        name = next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except Exception:  # noqa: BLE001 - only a label
        name = platform.processor() or platform.machine()
    return f"{name}, {os.cpu_count()} cores"


def timed(fn, steps):
    t = time.perf_counter()
    out = None
    for _ in range(steps):
        out = fn()
    if out is not None:
        jax.block_until_ready(out)
    return (time.perf_counter() - t) / steps


def matmul_runs(threads):
    """Timed f32 2048^3 matrix products in JAX and PyTorch: {name: (run, flops)}."""
    import torch

    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x, y: x @ y)
    ta = torch.ones(n, n)

    def tmm():
        torch.set_num_threads(threads)
        torch.mm(ta, ta)

    return {"matmul jax": lambda: f(a, a), "matmul torch": tmm}


# ---- JAX -------------------------------------------------------------------------------------------------


def jax_vmapped(cfg, x, packed=False, micro_batch=0):
    """The library's own training step (`make_vae_fns`), as training runs it; `packed`: the bars bit-packed
    (uint8, unpacked inside the step), as the training loop feeds them; `micro_batch`: bars computed at once
    (0: the library's choice, `training.steps.slice_bars`)."""
    cfg = cfg.replace(train={"micro_batch": micro_batch})
    g, state, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
    step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
    xs = jnp.asarray(np.packbits(x.astype(np.uint8), axis=-1) if packed else x)
    box = {"s": state, "i": 0}

    def run():
        box["s"], m = step(box["s"], xs, jnp.asarray(box["i"], jnp.int32))
        box["i"] += 1
        return m.loss

    run.lowered = lambda: step.lower(box["s"], xs, jnp.asarray(0, jnp.int32))
    return run


def jax_five_calls(cfg, x):
    """The same model and step for one instrument at a time: one jitted function called five times per step
    (each call makes its member's targets and the piano's condition, as the vmapped step does)."""
    tc, data = cfg.train, cfg.data
    tx = training.steps.vae_optimizer(tc)
    g, _ = nnx.split(models.VAE(cfg.model, data, rngs=nnx.Rngs(0)))
    states = []
    for i in range(5):
        _, p = nnx.split(models.VAE(cfg.model, data, rngs=nnx.Rngs(i)))
        states.append({"params": p, "opt": tx.init(p), "key": jax.random.key_data(jax.random.key(i))})

    def loss(params, xi, c, key, beta):
        model = nnx.merge(g, params)
        target = jax.lax.stop_gradient(model.targets(xi))
        out = model(model.inputs(target), key, c)
        return losses.elbo(
            out.logits,
            target,
            out.mu,
            out.logvar,
            beta=beta,
            free_bits=tc.free_bits,
            pos_weight=tc.pos_weight,
            plays=out.plays,
        ).loss

    def step(state, xi, piano, member, s):
        beta = losses.kl_beta(s, tc.beta, tc.beta_rate)
        c = models.conditions(piano, data)[member]
        value, grads = jax.value_and_grad(loss)(state["params"], xi, c, jax.random.fold_in(state["key"], s), beta)
        upd, opt = tx.update(grads, state["opt"], state["params"])
        return {"params": optax.apply_updates(state["params"], upd), "opt": opt, "key": state["key"]}, value

    step = jax.jit(step, **training.steps.donation())
    xs = [jnp.asarray(x[i]) for i in range(5)]
    box = {"i": 0}

    def run():
        out = None
        for i in range(5):
            states[i], out = step(states[i], xs[i], xs[PIANO], i, jnp.asarray(box["i"], jnp.int32))
        box["i"] += 1
        return out

    return run


# ---- PyTorch ---------------------------------------------------------------------------------------------


def torch_run(make, x, threads):
    import torch

    torch.set_num_threads(threads)
    xt = torch.from_numpy(x)
    step = make()
    box = {"i": 0}

    def run():
        torch.set_num_threads(threads)
        step(xt, box["i"])
        box["i"] += 1
        return None

    return run


def torch_eager(cfg, x, threads):
    import torch_vae

    torch_vae.torch.manual_seed(0)
    return torch_run(lambda: torch_vae.make_step([torch_vae.TorchVAE() for _ in range(5)], lr=cfg.train.lr), x, threads)


def torch_batched(cfg, x, threads):
    import torch_vae

    torch_vae.torch.manual_seed(0)
    return torch_run(
        lambda: torch_vae.make_batched_step([torch_vae.TorchVAE() for _ in range(5)], lr=cfg.train.lr), x, threads
    )


def torch_compiled(cfg, x, threads):
    """The five models' forward and loss through one `torch.compile`d function (its backward compiled with it
    by AOTAutograd); Adam fused, as in eager."""
    import torch
    import torch_vae

    torch.manual_seed(0)
    free = cfg.train.free_bits

    def loss_fn(net, m, c, eps, beta):
        return torch_vae.member_loss(net(m, c, eps), m, beta, free)[0]

    compiled = torch.compile(loss_fn)
    return torch_run(
        lambda: torch_vae.make_step([torch_vae.TorchVAE() for _ in range(5)], lr=cfg.train.lr, loss_fn=compiled),
        x,
        threads,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--no-compile", action="store_true", help="leave out torch.compile (its compilation is slow)")
    ap.add_argument(
        "--torch-threads",
        type=int,
        nargs="+",
        default=[os.cpu_count()],
        help="PyTorch eager x5 runs at each of these thread counts (the fastest is the baseline); the "
        "other PyTorch methods at the first. On a machine shared with other jobs, PyTorch's "
        "OpenMP threads slow down badly when they outnumber the free cores: give 1 as well",
    )
    ap.add_argument(
        "--slices",
        type=int,
        nargs="*",
        default=[],
        help="also time the bit-packed vmapped step computing its batch in slices of each of these many bars "
        "(the library's choice on CPU is training.steps.CPU_SLICE)",
    )
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    import torch

    threads = os.cpu_count()
    tthreads = args.torch_threads[0]
    print(
        f"machine: {machine()}; jax {jax.__version__} ({jax.devices()[0].platform}), torch {torch.__version__} "
        f"({', '.join(map(str, args.torch_threads))} threads)"
    )
    out = {
        "machine": machine(),
        "jax": jax.__version__,
        "torch": torch.__version__,
        "threads": threads,
        "torch_threads": args.torch_threads,
        "load_average_before": os.getloadavg(),
        "command": "python bench/bench_train_step.py " + " ".join(sys.argv[1:]),
        "results": {},
    }
    mm = matmul_runs(max(args.torch_threads))
    first = None
    for bs in args.batch:
        cfg = preset("default").replace(train={"batch_size": bs})
        x = (np.random.default_rng(0).random((5, bs, T, P)) < 0.02).astype(np.float32)
        # (name, maker, extra arguments): each maker is called with (cfg, x, *extra)
        makers = [
            ("vaejax vmapped", jax_vmapped, ()),
            ("jax 5 calls", jax_five_calls, ()),
            ("vaejax vmapped, bit-packed bars", jax_vmapped, (True,)),
        ]
        if bs > training.steps.CPU_SLICE:  # the library's step slices this batch on CPU; the same step unsliced
            makers.append(("vaejax vmapped, bit-packed, whole batch at once", jax_vmapped, (True, bs)))
        makers += [
            (f"vaejax vmapped, bit-packed, slices of {n}", jax_vmapped, (True, n))
            for n in args.slices
            if n < bs and bs % n == 0 and n != training.steps.CPU_SLICE
        ]
        makers += [(f"pytorch eager x5, {n} threads", torch_eager, (n,)) for n in args.torch_threads]
        makers.append((f"pytorch eager torch.func.vmap, {tthreads} threads", torch_batched, (tthreads,)))
        if not args.no_compile:
            makers.append((f"pytorch torch.compile x5, {tthreads} threads", torch_compiled, (tthreads,)))
        runs, res = dict(mm), {k: {} for k in mm}
        for name, make, extra in makers:
            t0 = time.perf_counter()
            try:
                fn = make(cfg, x, *extra)
                fn()
                fn()  # compiles, then one more warm-up step
            except Exception as e:  # noqa: BLE001 - a baseline that cannot run here is reported, not fatal
                res[name] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"}
                print(f"batch {bs:4d} {name:32s} failed: {res[name]['error']}")
                continue
            runs[name] = fn
            res[name] = {"warmup_s": round(time.perf_counter() - t0, 1)}
        flops = None
        if "vaejax vmapped" in runs:
            # counted on the step compiled for the whole batch at once: XLA's cost analysis counts a scan's
            # body once, so the sliced step would show a slice's FLOPs; the arithmetic is the same
            whole = jax_vmapped(cfg, x, False, bs)
            ca = whole.lowered().compile().cost_analysis()
            ca = ca[0] if isinstance(ca, (list, tuple)) else ca
            flops = float(ca["flops"])
        times = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(timed(fn, args.steps))
        # the matmul peak, timed among the methods (under the same load)
        peaks = {k: 2 * 2048**3 / statistics.median(times.pop(k)) / 1e9 for k in mm}
        peak = max(peaks.values())
        print(
            f"batch {bs:4d} f32 matmul 2048^3, timed with the methods: jax {peaks['matmul jax']:.1f} GFLOP/s, "
            f"torch {peaks['matmul torch']:.1f} GFLOP/s"
        )
        for k in mm:
            res.pop(k)
        for name, ts in times.items():
            t = statistics.median(ts)
            r = res[name]
            r.update(
                step_ms=t * 1e3, runs_ms=[round(v * 1e3, 1) for v in ts], min_ms=min(ts) * 1e3, bars_per_s=5 * bs / t
            )
            if flops:
                r.update(gflops=flops / t / 1e9, peak_fraction=flops / t / 1e9 / peak)
            print(
                f"batch {bs:4d} {name:32s} {r['step_ms']:8.1f} ms/step {r['bars_per_s']:8.0f} bars/s"
                + (f" {r['gflops']:6.1f} GFLOP/s ({100 * r['peak_fraction']:.0f}% of peak)" if flops else "")
                + f"  runs {r['runs_ms']}"
            )
        ratios = {}
        if "vaejax vmapped" in times:
            for name in times:
                if name != "vaejax vmapped":
                    ratios[name] = res[name]["step_ms"] / res["vaejax vmapped"]["step_ms"]
                    print(f"batch {bs}: vaejax vmapped is {ratios[name]:.2f}x as fast as {name}")
            best = {
                kind: min((v for k, v in ratios.items() if k.startswith(kind)), default=None)
                for kind in ("pytorch eager x5", "pytorch torch.compile")
            }
            ratios.update({f"best {k}": v for k, v in best.items() if v is not None})
        out["results"][str(bs)] = {
            "xla_flops_per_step": flops,
            "jax_matmul_gflops": peaks["matmul jax"],
            "torch_matmul_gflops": peaks["matmul torch"],
            "peak_gflops": peak,
            "methods": res,
            "vaejax_speedup_over": ratios,
        }
        if first is None and "best pytorch eager x5" in ratios:
            first = ratios["best pytorch eager x5"]
    out["load_average_after"] = os.getloadavg()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    if first is not None:
        print(f"vaejax/pytorch = {first:.2f}")


if __name__ == "__main__":
    main()
