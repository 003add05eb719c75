"""Hostile files, damaged caches, interrupted and concurrent jobs, full disks, odd paths."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from vaejax import cli, data, music
from vaejax.data.__main__ import main as data_main
from vaejax.runs import RunError, RunFolder

import fuzz_corpus
from conftest import ROOT, tmpfs

PEAK_MB = 600
"""Peak resident memory of any process of a `prepare` over the fuzz corpus (bench_fuzz measured 59 MB)."""


def _prepare_in_subprocess(src, out, *extra):
    """Run prepare in a fresh process; (report, peak RSS in MB of it and its reader processes, seconds)."""
    # ru_maxrss of this process would include the test runner's size before exec: read VmHWM instead
    code = (
        "import json, resource, sys, time; from vaejax import data; t = time.perf_counter(); "
        f"r = data.prepare({src!r}, {out!r}, workers=2, progress=False, force=True{''.join(extra)}); "
        "hwm = int(next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]); "
        "peak = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); "
        "print(json.dumps({'report': r, 'peak_kb': peak, 'seconds': time.perf_counter() - t}))"
    )
    out_ = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert out_.returncode == 0, out_.stderr[-3000:]
    got = json.loads(out_.stdout.strip().splitlines()[-1])
    return got["report"], got["peak_kb"] / 1024, got["seconds"]


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    good, bad = fuzz_corpus.write_corpus(str(root / "src"), good=10, seed=0)
    return root, good, bad


def test_fuzz_corpus_is_read_or_skipped_with_a_reason(fuzz):
    root, good, bad = fuzz
    assert len(good) + len(bad) > 250
    report, peak_mb, seconds = _prepare_in_subprocess(str(root / "src"), str(root / "all"))
    assert report["files"] == len(good) + len(bad)
    assert report["songs_read"] + report["songs_skipped"] == report["files"]
    skipped = {s["path"]: s["reason"] for s in report["skipped"]}
    assert all(reason and "\n" not in reason for reason in skipped.values())
    assert not any(p in skipped for p in good)  # no good file lost
    assert not any(r.startswith("unexpected") for r in skipped.values()), [
        r for r in skipped.values() if r.startswith("unexpected")
    ]
    for name, why in (
        ("crafted-far-note-tpb1.mid", "bars long"),
        ("crafted-zip-bomb.npz", "inflate"),
        ("crafted-object-dtype.npz", "pickled"),
        ("crafted-many-notes.mid", "MiB"),
        ("crafted-csc-indptr-short.npz", "sparse"),
    ):
        assert why in next(r for p, r in skipped.items() if p.endswith(name)), name
    assert peak_mb < PEAK_MB, f"peak memory {peak_mb:.0f} MB"
    assert seconds < 120
    # the good files' bars are exactly those of a run without the bad ones
    only = root / "good-only"
    shutil.copytree(root / "src" / "good songs", only / "good songs")
    clean, _, _ = _prepare_in_subprocess(str(only), str(root / "clean"))
    assert clean["songs_read"] == len(good) and clean["songs_skipped"] == 0
    a, b = data.open_dataset(str(root / "all")), data.open_dataset(str(root / "clean"))
    for split in data.SPLITS:
        songs = {sid: i for i, sid in enumerate(a[split].ids)}
        for j, sid in enumerate(b[split].ids):
            assert np.array_equal(a[split].song(songs[sid]), b[split].song(j)), sid


def test_absurd_midi_is_refused_before_allocating(tmp_path):
    import tracemalloc

    path = tmp_path / "far.mid"
    path.write_bytes(fuzz_corpus.crafted_midi()["far-note-tpb1"])
    assert path.stat().st_size < 100
    tracemalloc.start()
    t = time.perf_counter()
    with pytest.raises(music.BadSong, match="bars long, more than the cap of 4096"):
        music.read_song(str(path))
    assert time.perf_counter() - t < 1.0 and tracemalloc.get_traced_memory()[1] < 5e6
    tracemalloc.stop()


def test_note_cap(tmp_path, monkeypatch):
    path = tmp_path / "ok.mid"
    path.write_bytes(fuzz_corpus.good_midi(np.random.default_rng(0)))
    music.read_song(str(path))
    monkeypatch.setattr(music, "MAX_NOTES", 10)
    with pytest.raises(music.BadSong, match="notes, more than the cap of 10"):
        music.read_song(str(path))


def test_a_hanging_or_dying_reader_costs_one_file(tmp_path, monkeypatch):
    """Reader processes that hang or die (killed, out of memory) cost their file only."""
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    for i in range(6):
        (src / f"s{i}.mid").write_bytes(fuzz_corpus.good_midi(rng))
    (src / "hang.mid").write_bytes(fuzz_corpus.good_midi(rng))
    (src / "die.mid").write_bytes(fuzz_corpus.good_midi(rng))
    code = f"""
import os, signal, time, sys
sys.path.insert(0, {os.path.join(ROOT, "tests")!r})
from vaejax import cli, data, music
real = music.read_song
def read(path, *a, **k):
    if path.endswith("hang.mid"):
        time.sleep(600)
    if path.endswith("die.mid"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(path, *a, **k)
music.read_song = read
t = time.perf_counter()
r = data.prepare({str(src)!r}, {str(tmp_path / "out")!r}, workers=2, progress=False, timeout=3)
print(r["songs_read"], time.perf_counter() - t)
for s in r["skipped"]:
    print(os.path.basename(s["path"]), "|", s["reason"])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    read, seconds = lines[0].split()
    assert int(read) == 6 and float(seconds) < 60
    reasons = dict(line.split(" | ") for line in lines[1:])
    assert "longer than 3 s" in reasons["hang.mid"]
    assert "reader process died (signal 9" in reasons["die.mid"]


def test_damaged_cache_is_named_with_the_fix(tmp_path, demo_prepared, monkeypatch, capsys):
    cache = tmp_path / "c"
    shutil.copytree(demo_prepared, cache)
    data.open_dataset(str(cache), verify_checksums=True)
    bars = cache / "train.bars"
    blob = bars.read_bytes()
    bars.write_bytes(blob[: len(blob) // 2])  # a full disk, a partial copy
    with pytest.raises(data.CacheError, match=r"train\.bars: .* bytes, the cache recorded .*--force"):
        data.open_dataset(str(cache))
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.train_main(["--preset", "tiny", "--data", str(cache), "--run", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: ") and "--force" in err
    flipped = bytearray(blob)
    flipped[len(blob) // 3] ^= 0xFF
    bars.write_bytes(bytes(flipped))  # same size, one byte changed: the checksum tells
    with pytest.raises(data.CacheError, match="checksum"):
        data.open_dataset(str(cache))
    assert data_main(["verify", str(cache)]) == 2
    bars.write_bytes(blob)
    z = dict(np.load(cache / "valid.songs.npz"))
    z["length"] = z["length"] + 1
    np.savez(cache / "valid.songs.npz", **z)
    with pytest.raises(data.CacheError, match="song index"):
        data.open_dataset(str(cache))


@pytest.mark.slow
def test_kill_9_during_prepare_then_the_same_command(tmp_path):
    from vaejax import demo

    demo.write_corpus(str(tmp_path / "src"), songs=150, seed=4, bars=16)
    ref = tmp_path / "ref"
    data.prepare(str(tmp_path / "src"), str(ref), workers=1, progress=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vaejax.data", "prepare", str(tmp_path / "src"), str(out), "--workers", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None and not (out / "train.bars.tmp").exists():
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_midway = not (out / "report.json").exists()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a, b = data.open_dataset(str(ref), verify_checksums=True), data.open_dataset(str(out), verify_checksums=True)
    for split in data.SPLITS:
        assert np.array_equal(np.asarray(a[split].packed), np.asarray(b[split].packed))
        assert list(a[split].ids) == list(b[split].ids)
    assert killed_midway or proc.returncode == 0


def test_symlink_loops_spaces_and_non_ascii_names(tmp_path):
    src = tmp_path / "my songs ♪"
    (src / "sub folder é").mkdir(parents=True)
    rng = np.random.default_rng(5)
    (src / "sub folder é" / "ünïcode 曲 1.mid").write_bytes(fuzz_corpus.good_midi(rng))
    (src / "two words.mid").write_bytes(fuzz_corpus.good_midi(rng))
    os.symlink("..", src / "sub folder é" / "loop")  # back up to "my songs ♪"
    os.symlink("missing.mid", src / "dangling.mid")
    report = data.prepare(str(src), str(tmp_path / "out"), workers=1, progress=False)
    assert report["songs_read"] == 2
    reasons = [s["reason"] for s in report["skipped"]]
    assert sum("symbolic link loop" in r for r in reasons) == 1
    assert any("broken symbolic link" in r for r in reasons)


def test_unwritable_output_is_reported_before_work(tmp_path, demo_prepared, capsys):
    with tmpfs(tmp_path / "ro", "size=64k,ro") as ro:
        with pytest.raises(data.PrepareError, match="cannot write here") as e:
            data.prepare(demo_prepared.replace("prep", "src"), str(ro / "cache"), workers=1, progress=False)
        assert e.value.code == 2
        capsys.readouterr()
        assert cli.sample_main(["--checkpoint", "lpd5", "--out", str(ro / "songs")]) == 2
        err = capsys.readouterr().err
        assert "cannot write" in err and "Traceback" not in err


def test_full_disk_keeps_the_previous_cache(tmp_path):
    from vaejax import demo

    small, big = tmp_path / "small", tmp_path / "big"
    demo.write_corpus(str(small), songs=4, seed=1, bars=4)
    demo.write_corpus(str(big), songs=200, seed=2, bars=32)
    with tmpfs(tmp_path / "disk", "size=600k") as disk:
        out = disk / "cache"
        data.prepare(str(small), str(out), workers=1, progress=False)
        before = data.open_dataset(str(out), verify_checksums=True)["train"].ids.tolist()
        with pytest.raises(data.PrepareError, match="No space left on device.*previous cache is unchanged") as e:
            data.prepare(str(big), str(out), workers=1, progress=False)
        assert e.value.code == 4
        assert data.open_dataset(str(out), verify_checksums=True)["train"].ids.tolist() == before
        assert not [f for f in os.listdir(out) if ".tmp" in f]


def test_a_run_trains_in_one_process_at_a_time(tmp_path):
    run = RunFolder(str(tmp_path / "run"))
    with run.lock():
        with pytest.raises(RunError, match="being trained by another process"):
            with run.lock():
                pass
    # a process that dies holding the lock does not keep it
    code = (
        f"import os, time; from vaejax.runs import RunFolder; l = RunFolder({run.root!r}).lock().__enter__(); "
        "print('locked', flush=True); time.sleep(600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    with pytest.raises(RunError, match=f"pid {proc.pid}"):
        run.lock().__enter__()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with run.lock():
        pass


def test_run_files_that_do_not_match_are_named(tmp_path, tiny_run, capsys):
    from vaejax import trained_model
    from vaejax.checkpoint import CheckpointError

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["latent"] = 16
    (run / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="networks do not match config.json"):
        trained_model.load(str(run))
    capsys.readouterr()
    assert cli.sample_main(["--checkpoint", str(run), "--bars", "2", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    shutil.rmtree(run)
    shutil.copytree(tiny_run, run)
    stats = json.loads((run / "stats.json").read_text())
    stats["latent_mean"] = stats["latent_mean"][:3]
    (run / "stats.json").write_text(json.dumps(stats))
    with pytest.raises(RunError, match="latent_mean of shape"):
        trained_model.load(str(run))
    (run / "stats.json").write_text("{not json")
    with pytest.raises(RunError, match="stats.json: unreadable"):
        trained_model.load(str(run))


def test_latents_that_do_not_fit_the_dataset_are_refused(tmp_path, tiny_run, demo_prepared):
    from vaejax import training
    from vaejax.config import Config

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    z = dict(np.load(run / "latents" / "train.npz"))
    z["latents"] = z["latents"][:-3]
    np.savez(run / "latents" / "train.npz", **z)
    cfg = Config.from_dict(json.loads((run / "config.json").read_text()))
    with pytest.raises(RunError, match=r"train\.npz: latents of shape .* re-run `train.py --stage encode`"):
        training.train_all(str(run), cfg, demo_prepared, stages=("melody",), progress=False)
