"""What each result file in bench/results records about how it was made: the command, the machine, the date."""

from __future__ import annotations

import datetime
import os
import platform
import statistics
import sys
import time


def provenance(script: str, argv: list[str] | None = None) -> dict:
    """`command` (as typed, `python bench/SCRIPT ARGS`), `machine` (processor and cores) and `date`."""
    args = argv if argv is not None else sys.argv[1:]
    return {
        "command": f"python bench/{script} " + " ".join(args),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.date.today().isoformat(),
    }


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of an f32 n x n x n matrix product in JAX (warm): how fast this machine runs today (machines
    of this kind vary about 3x from day to day; timings move with it)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        ts.append(time.perf_counter() - t)
    return 2 * n**3 / statistics.median(ts) / 1e9
