import atexit
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

# One XLA compilation cache for the session and the processes its tests start: many tests build the same
# small programs (a model loaded again, the command line in a child process), and compiling dominates them.
# A fresh folder per session, removed at the end, so no run sees another's state.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _XLA_CACHE = tempfile.mkdtemp(prefix="vaejax-tests-xla-")
    atexit.register(shutil.rmtree, _XLA_CACHE, ignore_errors=True)
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _XLA_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

# Tests build many small programs and run each a few times: XLA's backend optimisation costs more time than it
# saves here (the whole suite on a 2-core machine: 338 s at the default level, 295 s without it). What the
# programs compute is the same; the benchmarks in bench/ run at the default level, as users do.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
LPD_SAMPLE = os.path.join(SHARED, "lpd_cleansed")
POP909 = os.path.join(SHARED, "pop909")


def save_npz(path, tracks, length, resolution=24, downbeat_every=96, legacy=True):
    """Write a pypianoroll-format npz. tracks: list of (program, is_drum, {(time, pitch): velocity})."""
    import pypianoroll

    out = []
    for i, (program, is_drum, cells) in enumerate(tracks):
        roll = np.zeros((length, 128), np.uint8)
        for (t, p), v in cells.items():
            roll[t, p] = v
        out.append(pypianoroll.StandardTrack(name=f"t{i}", program=program, is_drum=is_drum, pianoroll=roll))
    downbeat = np.zeros(length, bool)
    downbeat[::downbeat_every] = True
    mt = pypianoroll.Multitrack(
        name="x", resolution=resolution, tracks=out, tempo=np.full(length, 120.0), downbeat=downbeat
    )
    pypianoroll.save(path, mt)
    return path


def shared_once(tmp_path_factory, name: str, make):
    """`make(folder)` run once per test session, whatever the number of pytest-xdist workers: the first
    worker to ask builds the folder under a lock while the others wait, then all read it; returns what
    `make` returned (JSON-serialisable) and the folder."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the session's folder, shared by its workers
    root = base / name
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = base / f"{name}.json"
        if not done.exists():
            shutil.rmtree(root, ignore_errors=True)  # what a failed attempt left
            root.mkdir()
            done.write_text(json.dumps(make(str(root)), default=float))
        return json.loads(done.read_text()), str(root)


@pytest.fixture(scope="session", autouse=True)
def _session_working_folder(tmp_path_factory):
    """The session's shared fixtures run in a folder of their own, not the checkout: training marks the
    working folder's `runs/LATEST`, which a checkout must not collect from its tests."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd-session"))
    yield
    os.chdir(here)


@pytest.fixture(autouse=True)
def _working_folder(tmp_path_factory, monkeypatch):
    """Each test runs in an empty working folder of its own: a test that samples the default checkpoint gets
    the packaged model, or the run it trained itself, never whichever run another test trained before it."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(scope="session")
def demo_prepared(tmp_path_factory):
    """A small SYNTHETIC corpus, prepared (once for all workers)."""
    from vaejax import data, demo

    def make(root):
        demo.write_corpus(os.path.join(root, "src"), songs=24, seed=1, bars=8)
        data.prepare(os.path.join(root, "src"), os.path.join(root, "prep"), workers=1, progress=False)

    return os.path.join(shared_once(tmp_path_factory, "demo", make)[1], "prep")


def tiny_config():
    """The configuration of the shared trained run: the tiny preset, 6 steps an epoch, a checkpoint every 4
    steps and a log line every step (the resume tests compare their losses with it step by step)."""
    from vaejax.config import preset

    return preset("tiny").replace(train={"max_steps_per_epoch": 6, "checkpoint_every": 4, "log_every": 1})


@pytest.fixture(scope="session")
def tiny_trained(tmp_path_factory, demo_prepared):
    """(run folder, per-stage results): every stage trained briefly on the tiny preset, once per test session
    (for all workers). Tests read it; a test that changes a run copies it first."""
    from vaejax import training

    results, root = shared_once(
        tmp_path_factory,
        "tinyrun",
        lambda root: training.train_all(os.path.join(root, "run"), tiny_config(), demo_prepared, progress=False),
    )
    return os.path.join(root, "run"), results


@pytest.fixture(scope="session")
def tiny_run(tiny_trained):
    """The shared trained run's folder: a real run directory to sample and evaluate from."""
    return tiny_trained[0]


@contextlib.contextmanager
def tmpfs(path, options: str):
    """A tmpfs mounted at `path` with mount `options` (e.g. "size=600k", "size=64k,ro") for the test's
    duration; the test is skipped where mounting is not allowed."""
    os.makedirs(path, exist_ok=True)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip(f"cannot mount a tmpfs ({options}) here")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


TRAINED = {"tiny_trained", "tiny_run"}


def _reads_trained_run(item) -> bool:
    return bool(TRAINED & set(getattr(item, "fixturenames", ())))


def pytest_itemcollected(item):
    """A test that reads the shared trained run is `slow`: the run is trained (every stage, about 40 s on
    two cores) before the first of them, so `-m "not slow"` leaves all of them and the training out."""
    if _reads_trained_run(item):
        item.add_marker(pytest.mark.slow)


def pytest_collection_modifyitems(config, items):
    """Order: one test of the shared trained run first, so that a worker starts training it at once, then
    the tests that need no trained run, then the rest of the run's tests, by which time it is trained (the
    other workers take the middle part meanwhile instead of waiting on the run's lock)."""
    trained = [i for i in items if _reads_trained_run(i)]
    if trained:
        rest = [i for i in items if not _reads_trained_run(i)]
        items[:] = trained[:1] + rest + trained[1:]
