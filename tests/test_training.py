"""End-to-end training on the tiny preset: stages, checkpoints, resume, corrupt checkpoints, devices."""

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from vaejax import cli, devices, training
from vaejax.config import preset
from vaejax.runs import RunError, RunFolder

from conftest import ROOT, tiny_config, tmpfs


def read_metrics(run):
    return RunFolder(run).read_metrics()


CFG = tiny_config()


def _losses(run, stage="vae"):
    """Train loss by step; for steps logged twice (after a resume) the last record counts."""
    return {
        r["step"]: r["loss" if stage == "vae" else "mse"]
        for r in read_metrics(run)
        if r["stage"] == stage and r["kind"] == "train"
    }


@pytest.fixture(scope="module")
def full_run(tiny_trained):
    """The session's shared run, trained with CFG (conftest)."""
    return tiny_trained


def test_all_stages_write_checkpoints_metrics_and_plots(full_run):
    run, results = full_run
    for stage in ("vae", "melody", "harmony"):
        assert glob.glob(os.path.join(run, "ckpt", stage, "latest", "*"))
        assert glob.glob(os.path.join(run, "ckpt", stage, "best", "*"))
        assert os.path.getsize(os.path.join(run, f"loss-{stage}.png")) > 1000
    assert set(results) == {"vae", "melody", "harmony", "prior"}
    assert np.isfinite(results["vae"]["val_loss"]) and "baseline" in results["melody"]
    stats = json.load(open(os.path.join(run, "stats.json")))
    th = np.asarray(stats["thresholds"])
    # sustain (relative; 2: never past the first sixteenth), onset, steps sounding of the last sixteenth
    assert th.shape == (5, 3)
    assert ((0 < th[:, :2]) & (th[:, :2] <= 2)).all() and ((1 <= th[:, 2]) & (th[:, 2] <= 6)).all()
    assert np.asarray(stats["onset_thresholds"]).shape == (5, 16)  # one onset threshold per sixteenth
    assert np.load(os.path.join(run, "start_bars.npy")).shape[1:] == (5, 16)
    kinds = {(r["stage"], r["kind"]) for r in read_metrics(run)}
    assert ("vae", "valid") in kinds and ("harmony", "train") in kinds


def test_rerun_resumes_instead_of_retraining(full_run, demo_prepared):
    run, _ = full_run
    n = len(read_metrics(run))
    stats = open(os.path.join(run, "stats.json")).read()
    training.train_all(run, CFG, demo_prepared, progress=False)
    assert len(read_metrics(run)) == n  # every stage was already done
    assert open(os.path.join(run, "stats.json")).read() == stats  # the prior's decoding was calibrated already


def test_resume_matches_uninterrupted(tmp_path, demo_prepared, full_run):
    """Stopping mid-epoch and resuming reproduces the uninterrupted run's losses, also with a checkpoint
    write cut short (Orbax's temporary folder left behind) in the way."""
    ref, _ = full_run
    run = str(tmp_path / "r")
    os.makedirs(run)
    with open(os.path.join(run, "config.json"), "w") as f:
        f.write(CFG.to_json())
    from vaejax import data as data_lib
    from vaejax.devices import DataParallel

    ds = data_lib.open_dataset(demo_prepared)
    training.train_vae(RunFolder(run), CFG, ds, DataParallel(), progress=False, stop_after=3)
    assert max(_losses(run)) == 3
    latest = os.path.join(run, "ckpt", "vae", "latest")
    torn = os.path.join(latest, "4.orbax-checkpoint-tmp-1700000000")
    shutil.copytree(os.path.join(latest, "3"), torn)
    for f in glob.glob(os.path.join(torn, "state", "**", "*"), recursive=True)[::2]:
        if os.path.isfile(f):
            os.remove(f)
    training.train_vae(RunFolder(run), CFG, ds, DataParallel(), progress=False)
    a, b = _losses(ref), _losses(run)
    assert sorted(a) == sorted(b)
    np.testing.assert_allclose([a[s] for s in sorted(a)], [b[s] for s in sorted(a)], rtol=1e-5)


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path, demo_prepared, full_run):
    """A real crash: SIGKILL the training process after its first checkpoint, run the same command again."""
    ref, _ = full_run
    run = str(tmp_path / "k")
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--preset",
        "tiny",
        "--data",
        demo_prepared,
        "--run",
        run,
        "--stage",
        "vae",
        "--max-steps-per-epoch",
        "6",
        "--quiet",
        "--set",
        "train.checkpoint_every=4",
        "--set",
        "train.log_every=1",
    ]
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    latest = os.path.join(run, "ckpt", "vae", "latest")
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(latest) and any(d.isdigit() for d in os.listdir(latest)):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = max(_losses(run) or {0: 0})
    assert done_before < 12, "the run finished before it could be killed"
    subprocess.run(cmd, cwd=str(tmp_path), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a, b = _losses(ref), _losses(run)
    assert sorted(b) == sorted(a)
    np.testing.assert_allclose([a[s] for s in sorted(a)], [b[s] for s in sorted(a)], rtol=1e-5)


def test_corrupt_latest_checkpoint_falls_back(tmp_path, full_run):
    import shutil

    from vaejax.checkpoint import CheckpointError, StageCheckpoints

    src, _ = full_run
    run = str(tmp_path / "c")
    shutil.copytree(src, run)
    root = os.path.join(run, "ckpt", "vae")
    steps = sorted(int(d) for d in os.listdir(os.path.join(root, "latest")) if d.isdigit())
    assert len(steps) >= 2
    for f in glob.glob(os.path.join(root, "latest", str(steps[-1]), "state", "**", "*"), recursive=True):
        if os.path.isfile(f):
            with open(f, "wb") as fh:
                fh.write(b"\0garbage")
    _, like, _ = training.steps.init_vae_state(CFG.model, CFG.data, CFG.train, jax.random.key(0))
    ck = StageCheckpoints(root)
    with pytest.warns(UserWarning, match="unreadable"):
        state, meta = ck.restore_latest(like)
    assert meta["step"] == steps[-2]
    # every save broken: a clear error, never a silent restart from zero
    for s in steps[:-1]:
        shutil.rmtree(os.path.join(root, "latest", str(s), "state"))
    with pytest.warns(UserWarning), pytest.raises(CheckpointError, match="no readable checkpoint"):
        ck.restore_latest(like)
    ck.close()


def test_config_mismatch_is_refused(full_run, demo_prepared, tmp_path):
    ref, _ = full_run
    run = tmp_path / "run"  # the shared run's config alone: its own folder and lock stay free for other tests
    run.mkdir()
    shutil.copy(os.path.join(ref, "config.json"), run / "config.json")
    with pytest.raises(RunError, match="different configuration"):
        training.train_all(str(run), CFG.replace(model={"latent": 32}), demo_prepared, progress=False)


def test_absent_accelerator_is_a_clear_error(capsys):
    missing = [p for p in ("gpu", "tpu") if p not in devices.available_platforms()]
    if not missing:
        pytest.skip("this machine has both a GPU and a TPU")
    with pytest.raises(devices.AcceleratorError, match=r"available: .*cpu"):
        devices.select(missing[0])
    assert cli.train_main(["--accelerator", missing[0]]) == 2
    err = capsys.readouterr().err
    assert f"no {missing[0].upper()} found" in err and len(err.strip().splitlines()) == 1


def _help(main, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    return capsys.readouterr().out


def test_help_documents_options(capsys):
    text = _help(cli.train_main, capsys)
    for opt in ("--latent", "--accelerator", "--stage", "--data", "--preset"):
        assert opt in text
    assert text.startswith("usage: train.py")


@pytest.mark.slow
@pytest.mark.e2e
def test_two_bar_segments_train_through_the_cli_and_the_library(tmp_path, monkeypatch, capsys):
    """Segment length is data configuration: a corpus prepared with 2-bar segments trains as is. train.py
    trains its VAE stage (with --quiet and stderr not a terminal: no progress bars, every epoch's line
    logged); `vaejax.train` then finishes the same run as the command line would and makes it the default
    model of `vaejax.load()`."""
    import vaejax
    from vaejax import demo
    from vaejax.data.__main__ import main as data_main

    demo.write_corpus(str(tmp_path / "src"), songs=12, seed=2, bars=8)
    assert data_main(["prepare", str(tmp_path / "src"), str(tmp_path / "prep2"), "--segment-bars", "2", "--quiet"]) == 0
    monkeypatch.chdir(tmp_path)
    run = str(tmp_path / "run2")
    capsys.readouterr()
    assert (
        cli.train_main(
            [
                "--preset",
                "tiny",
                "--data",
                str(tmp_path / "prep2"),
                "--run",
                run,
                "--stage",
                "vae",
                "--max-steps-per-epoch",
                "2",
                "--batch-size",
                "4",
                "--vae-epochs",
                "2",
                "--chain-epochs",
                "1",
                "--quiet",
            ]
        )
        == 0
    )
    err = capsys.readouterr().err
    saved = json.load(open(os.path.join(run, "config.json")))
    assert saved["data"]["segment_bars"] == 2
    assert any(rec["stage"] == "vae" and rec["kind"] == "valid" for rec in read_metrics(run))
    assert "vae epoch 1/2 (step 2)" in err and "vae epoch 2/2" in err and "\r" not in err
    cfg = preset("tiny").replace(train={"max_steps_per_epoch": 2, "batch_size": 4, "vae_epochs": 2, "chain_epochs": 1})
    n_vae = len([r for r in read_metrics(run) if r["stage"] == "vae"])
    got, results = vaejax.train("run2", str(tmp_path / "prep2"), cfg, progress=False)
    assert got == run and set(results) == {"vae", "melody", "harmony", "prior"}
    assert len([r for r in read_metrics(run) if r["stage"] == "vae"]) == n_vae  # the VAE stage was done
    model = vaejax.load()
    assert os.path.abspath(model.run_dir) == run and model.cfg.data.segment_bars == 2
    song = model.sample(bars=4, seed=0)[0]
    assert song.tracks[1].pianoroll.shape[0] == 4 * 96
    for prior in ("transformer", "chain"):  # bars, not segments: 3 bars are two segments cut to three bars
        assert model.continue_song(song, bars=3, seed=1, prior=prior).tracks[1].pianoroll.shape[0] == 3 * 96


def test_cli_sets_any_field_and_prints_the_config(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert (
        cli.train_main(
            [
                "--preset",
                "tiny",
                "--set",
                "model.hidden=48",
                "--set",
                "train.chain_lr=0.0003",
                "--set",
                "model.time_patch=2,8",
                "--set",
                "model.onsets=false",
                "--print-config",
            ]
        )
        == 0
    )
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["model"]["hidden"] == 48 and cfg["train"]["chain_lr"] == 0.0003
    assert cfg["model"]["time_patch"] == [2, 8] and cfg["model"]["onsets"] is False
    assert cfg["model"]["channels"] == [8, 16]  # the rest is the tiny preset's
    assert not os.path.exists(tmp_path / "runs")  # printing trains nothing
    for bad in ("model.nope=1", "model.hidden=big", "hidden=3"):
        assert cli.train_main(["--set", bad, "--print-config"]) == 2
        assert "--set" in capsys.readouterr().err
    text = _help(cli.train_main, capsys)
    assert "(default preset: 20)" in text and "default: None" not in text


def test_generation_options_are_checked_in_one_place():
    from vaejax.config import check_generation, generation_problems

    assert generation_problems(bars=32, sigma=0.5, num=1, key=-6, tempo=120.0, sustain=None) == []
    got = dict(generation_problems(bars=0, sigma=float("nan"), key=6, sustain=1.0, num=2.5, sample_rate=100))
    assert set(got) == {"bars", "sigma", "key", "sustain", "num", "sample_rate"}
    with pytest.raises(ValueError, match="bars must be an integer from 1 to 4096"):
        check_generation(bars=5000)


def _chain_losses(run):
    return {stage: _losses(run, stage) for stage in ("melody", "harmony")}


def test_interrupted_encode_stage_is_redone(tmp_path, demo_prepared, full_run):
    """Killed during encoding (latents partly written, no statistics yet): the same command encodes again
    and trains the chains to the same losses."""
    ref, _ = full_run
    run = tmp_path / "e"
    shutil.copytree(ref, run)
    for f in ("stats.json", "start_bars.npy", "latents/valid.npz", "latents/test.npz"):
        os.remove(run / f)
    (run / "latents" / "valid.npz.tmp.npz").write_bytes(b"PK\x03\x04 half written")
    for stage in ("melody", "harmony"):
        shutil.rmtree(run / "ckpt" / stage)
    training.train_all(str(run), CFG, demo_prepared, progress=False)
    a, b = _chain_losses(ref), _chain_losses(str(run))
    for stage in a:
        assert sorted(a[stage]) == sorted(b[stage])
        np.testing.assert_allclose(
            [a[stage][s] for s in sorted(a[stage])], [b[stage][s] for s in sorted(a[stage])], rtol=1e-5
        )
    assert (run / "stats.json").exists()


@pytest.mark.slow
@pytest.mark.e2e
def test_kill_9_during_encode_then_resume(tmp_path, demo_prepared, full_run):
    ref, _ = full_run
    run = tmp_path / "k"
    shutil.copytree(ref, run)
    for f in ("stats.json", "start_bars.npy"):
        os.remove(run / f)
    shutil.rmtree(run / "latents")
    for stage in ("melody", "harmony"):
        shutil.rmtree(run / "ckpt" / stage)
    cmd = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--preset",
        "tiny",
        "--data",
        demo_prepared,
        "--run",
        str(run),
        "--max-steps-per-epoch",
        "6",
        "--quiet",
        "--set",
        "train.checkpoint_every=4",
        "--set",
        "train.log_every=1",
    ]
    proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not (run / "latents" / "train.npz").exists():
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    subprocess.run(cmd, cwd=str(tmp_path), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a, b = _chain_losses(ref), _chain_losses(str(run))
    for stage in a:
        np.testing.assert_allclose(
            [a[stage][s] for s in sorted(a[stage])], [b[stage][s] for s in sorted(a[stage])], rtol=1e-5
        )


@pytest.mark.slow
def test_full_disk_while_checkpointing(tmp_path, demo_prepared):
    """The disk fills during training: one line, exit 2; the last complete checkpoint resumes."""
    with tmpfs(tmp_path / "disk", "size=8m") as disk:
        run = disk / "run"
        cmd = [
            sys.executable,
            os.path.join(ROOT, "train.py"),
            "--preset",
            "tiny",
            "--data",
            demo_prepared,
            "--run",
            str(run),
            "--stage",
            "vae",
            "--max-steps-per-epoch",
            "400",
            "--vae-epochs",
            "1",
            "--quiet",
            "--set",
            "train.checkpoint_every=2",
            "--set",
            "train.log_every=50",
        ]
        proc = subprocess.Popen(cmd, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            latest = run / "ckpt" / "vae" / "latest"
            deadline = time.time() + 120
            while (
                time.time() < deadline
                and proc.poll() is None
                and not (latest.exists() and any(d.isdigit() for d in os.listdir(latest)))
            ):
                time.sleep(0.01)
            filler = disk / "filler"
            fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
            try:  # fill the disk
                while os.write(fd, b"\0" * (16 << 10)):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            _, err = proc.communicate(timeout=300)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if proc.returncode == 0:
            pytest.skip("training finished before the disk filled")
        assert proc.returncode == 2 and "Traceback" not in err, err[-3000:]
        assert err.strip().splitlines()[-1].startswith("error: ") and "space" in err.strip().splitlines()[-1]
        os.remove(filler)
        from vaejax.checkpoint import StageCheckpoints

        _, like, _ = training.steps.init_vae_state(CFG.model, CFG.data, CFG.train, jax.random.key(0))
        ck = StageCheckpoints(str(run / "ckpt" / "vae"))
        try:
            state, meta = ck.restore_latest(like)
        finally:
            ck.close()
        assert meta["step"] >= 2
