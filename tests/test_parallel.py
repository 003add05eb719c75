"""Data parallelism over forced host devices, and a two-process job on loopback."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from vaejax.runs import RunFolder

from conftest import ROOT

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.slow
def test_eight_devices_match_one(demo_prepared):
    flags = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    env = dict(os.environ, XLA_FLAGS=flags.strip(), JAX_PLATFORMS="cpu")
    r = subprocess.run(
        [sys.executable, os.path.join(HERE, "sharding_check.py"), demo_prepared],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["n_devices"] == 8
    assert out["many"]["batch_devices"] == 8 and out["one"]["batch_devices"] == 1
    assert out["many"]["param_devices"] == 8  # replicated on every device
    np.testing.assert_allclose(out["many"]["losses"], out["one"]["losses"], rtol=2e-5)
    assert out["many"]["param_sum"] == pytest.approx(out["one"]["param_sum"], rel=1e-5)


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.e2e
def test_two_processes_on_loopback_match_one(tmp_path, demo_prepared):
    """Two hosts, each reading its half of every batch, train exactly as one host does."""
    common = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--preset",
        "tiny",
        "--data",
        demo_prepared,
        "--stage",
        "vae",
        "--max-steps-per-epoch",
        "4",
        "--quiet",
        "--set",
        "train.log_every=1",
    ]
    # one CPU device per process (whatever devices the caller forced), the caller's other XLA flags kept
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "force_host_platform_device_count" not in f]
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=" ".join(flags))
    port = _free_port()
    procs = [
        subprocess.Popen(
            common
            + [
                "--run",
                str(tmp_path / "multi"),
                "--coordinator",
                f"127.0.0.1:{port}",
                "--num-processes",
                "2",
                "--process-id",
                str(i),
            ],
            env=env,
            cwd=str(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs[0][-1500:] + outs[1][-1500:]
    assert "2 process(es)" in outs[0]
    subprocess.run(
        common + ["--run", str(tmp_path / "single")], env=env, cwd=str(tmp_path), check=True, capture_output=True
    )

    def losses(run):
        return [
            (r["step"], r["loss"])
            for r in RunFolder(run).read_metrics()
            if r["stage"] == "vae" and r["kind"] == "train"
        ]

    a, b = losses(str(tmp_path / "multi")), losses(str(tmp_path / "single"))
    assert [s for s, _ in a] == [s for s, _ in b] and len(a) == 8
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=2e-5)
