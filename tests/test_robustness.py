"""The second reliability pass: every option and file field checked where it enters (property-based, with
Hypothesis), budgets, no orphans, no clobbering. The command lines are called in-process: a traceback here
is an exception that escapes their main function."""

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vaejax import cli, config, data, music
from vaejax.config import Config, ConfigWarning
from vaejax.data.__main__ import main as data_main
from vaejax.runs import RunError, RunFolder

import fuzz_corpus
from conftest import ROOT, tmpfs

FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def run_main(main, argv):
    """(exit code, stdout, stderr) of a command line's main function, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            code = main(argv)
        except SystemExit as e:  # argparse's own refusals
            code = e.code
    return code, out.getvalue(), err.getvalue()


# ---- values a hostile user types ---------------------------------------------------------------------

BAD_NUMBERS = [
    "0",
    "-1",
    "-0",
    "nan",
    "inf",
    "-inf",
    "1e400",
    str(2**63),
    str(-(2**63)),
    "1.5",
    "",
    " ",
    "x",
    "0x10",
    "1_000",
    "٣",
]
numbers = st.one_of(
    st.sampled_from(BAD_NUMBERS),
    st.integers(-(2**70), 2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)

SAMPLE_NUMERIC = [
    "--bars",
    "--sigma",
    "--seed",
    "--num",
    "--key",
    "--sustain",
    "--harmony",
    "--min-length",
    "--merge-gap",
    "--tempo",
    "--sample-rate",
    "--memory-budget",
    "--read-timeout",
]
TRAIN_NUMERIC = [
    "--batch-size",
    "--lr",
    "--beta",
    "--free-bits",
    "--pos-weight",
    "--chain-noise",
    "--seed",
    "--vae-epochs",
    "--chain-epochs",
    "--max-steps-per-epoch",
]


def _refused(code, err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err, err
    assert code == 2, (code, err)
    assert lines and all(
        line.startswith(("error:", "usage:", "  ", "warning:", "note:", "sample.py", "train.py")) or "error:" in line
        for line in lines
    ), err


def _in_range(option, value):
    """Whether a sample.py option value would be accepted (the strategy keeps only refused ones)."""
    try:
        v = float(value)
    except ValueError:
        return False
    ranges = {
        "--bars": (1, 4096),
        "--sigma": (0, 10),
        "--seed": (0, 2**31 - 1),
        "--num": (1, 1000),
        "--key": (-6, 5),
        "--sustain": (1e-6, 1 - 1e-6),
        "--harmony": (0, 20),
        "--min-length": (0, 10_000),
        "--merge-gap": (0, 10_000),
        "--tempo": (10, 400),
        "--sample-rate": (8000, 96000),
        "--memory-budget": (64, 1 << 22),
        "--read-timeout": (1e-3, 86400),
    }
    lo, hi = ranges[option]
    return v == v and lo <= v <= hi


@FAST
@given(
    option=st.sampled_from(SAMPLE_NUMERIC),
    value=numbers,
    extra=st.lists(
        st.sampled_from(
            [
                "--no-audio",
                "--sample",
                "--overwrite",
                "--tracks",
                "drums",
                "--from",
                "a.mid",
                "--arrange",
                "b.mid",
                "--interpolate",
                "a.mid",
                "b.mid",
                "--out",
                "/proc/x/y",
                "--checkpoint",
                "nope",
            ]
        ),
        max_size=4,
    ),
)
def test_sample_options_never_end_in_a_traceback(tmp_path, option, value, extra):
    if _in_range(option, value) and not extra:
        return  # a valid value alone would generate music: covered by the sampler's tests
    argv = [option, value, "--out", str(tmp_path / "o"), "--no-audio"] + extra
    if (
        _in_range(option, value)
        and "--checkpoint" not in extra
        and not any(x in extra for x in ("--from", "--arrange", "--interpolate", "--tracks", "/proc/x/y"))
    ):
        return
    code, _, err = run_main(cli.sample_main, argv)
    _refused(code, err)


@FAST
@given(option=st.sampled_from(TRAIN_NUMERIC), value=numbers)
def test_train_options_never_end_in_a_traceback(option, value):
    code, out, err = run_main(cli.train_main, [option, value, "--print-config"])
    if code == 0:  # accepted: the configuration printed holds exactly that value, checked
        Config.from_dict(json.loads(out))  # what was accepted is a valid configuration (checked again)
        return
    _refused(code, err)


@FAST
@given(
    field=st.sampled_from(
        [f"{s}.{f}" for s in ("data", "model", "train") for f in getattr(Config(), s).__dataclass_fields__]
    ),
    value=numbers,
)
def test_every_config_field_is_checked_from_set(field, value):
    code, out, err = run_main(cli.train_main, ["--set", f"{field}={value}", "--print-config"])
    if code == 0:
        Config.from_dict(json.loads(out))  # what was accepted is a valid configuration
        return
    _refused(code, err)
    assert field.split(".")[1] in err or "--set" in err


@FAST
@given(
    argv=st.lists(
        st.sampled_from(
            [
                "prepare",
                "verify",
                "demo",
                "--workers",
                "-1",
                "--timeout",
                "nan",
                "0",
                "--memory-budget",
                "10",
                "--pitches",
                "200",
                "--segment-bars",
                "0",
                "/nonexistent",
                "README.md",
                "--songs",
                "-5",
                "--lowest-pitch",
                "-1",
            ]
        ),
        min_size=1,
        max_size=6,
    )
)
def test_data_command_never_ends_in_a_traceback(tmp_path, argv):
    # paths the command may write (a bare "-5" is an output folder to `demo`) land in tmp_path, not the checkout
    argv = [str(tmp_path / "out") if a == "0" else os.path.join(ROOT, a) if a == "README.md" else a for a in argv]
    if argv[:1] == ["demo"] and "-5" not in argv:
        return  # a valid demo command writes a corpus
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        code, _, err = run_main(data_main, argv)
    finally:
        os.chdir(here)
    assert "Traceback" not in err
    assert code in (1, 2) or (code == 0 and argv[0] != "prepare"), (argv, code, err)


def test_issue_commands_end_in_one_line(tmp_path):
    regular = tmp_path / "file"
    regular.write_text("x")
    cases = [
        (cli.train_main, ["--batch-size", "0"], "--batch-size must be an integer from 1"),
        (cli.train_main, ["--lr", "nan"], "--lr must be a finite number"),
        (cli.train_main, ["--seed", str(2**63)], "--seed must be an integer from 0"),
        (cli.train_main, ["--set", "train.checkpoint_every=0"], "checkpoint_every must be an integer >= 1"),
        (cli.train_main, ["--vae-epochs", "-1"], "--vae-epochs must be"),
        (cli.sample_main, ["--sigma", "inf"], "--sigma must be a number from 0 to 10"),
        (cli.sample_main, ["--min-length", "-1"], "--min-length must be"),
        (cli.sample_main, ["--out", str(regular)], "is a file, not a folder"),
        (cli.sample_main, ["--out", str(regular / "sub")], "cannot be made"),
        (cli.sample_main, ["--checkpoint", "lpd6"], "packaged models: lpd5"),
        (cli.sample_main, ["--arrange", "a.mid", "--from", "b.mid"], "--from and --arrange cannot be combined"),
        (cli.sample_main, ["--arrange", str(regular), "--tracks", "piano"], "the piano is the given part"),
        (cli.sample_main, ["--density", "0.5"], "--density applies to --arrange only"),
        (cli.sample_main, ["--arrange", str(regular), "--density", "1.5"], "a share of bars from 0 to 1"),
        (cli.sample_main, ["--arrange", str(regular), "--density", "banjo=0.5"], "'banjo' is not a track added"),
        (cli.sample_main, ["--arrange", str(regular), "--density", "lots"], '--density: density must be "data"'),
        (
            cli.sample_main,
            ["--arrange", str(regular), "--tracks", "bass", "--density", "strings=0.5"],
            "'strings' is not a track added here (Bass)",
        ),
        (cli.sample_main, ["--arrange", str(regular), "--prior", "chain", "--density", "0.5"], "the chain draws no"),
        (cli.sample_main, ["--bars", "4096"], "add --no-audio"),
        (cli.export_main, [os.path.join(ROOT, "vaejax", "pretrained", "lpd5"), str(regular)], "is a file"),
    ]
    from vaejax import evaluate

    cases.append(
        (
            evaluate.main,
            ["--runs", "/nonexistent", "--data", "/nonexistent", "--out", str(tmp_path / "e")],
            "--runs /nonexistent: no such run folder",
        )
    )
    for main, argv, want in cases:
        code, _, err = run_main(
            main, argv + (["--out", str(tmp_path / "o")] if main is cli.sample_main and "--out" not in argv else [])
        )
        assert code == 2 and want in err and "Traceback" not in err, (argv, code, err)


def test_unreadable_given_song_is_named_and_read_with_a_time_limit(tmp_path, monkeypatch):
    bad = tmp_path / "broken.mid"
    bad.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    code, _, err = run_main(cli.sample_main, ["--from", str(bad), "--out", str(tmp_path / "o"), "--no-audio"])
    assert code == 2 and f"{bad}: not a readable MIDI file" in err, err
    good = tmp_path / "good.mid"
    good.write_bytes(fuzz_corpus.good_midi(np.random.default_rng(0)))

    def slow(*a, **k):
        time.sleep(30)

    monkeypatch.setattr(music, "read_midi", slow)
    t = time.perf_counter()
    code, _, err = run_main(
        cli.sample_main, ["--from", str(good), "--out", str(tmp_path / "o"), "--no-audio", "--read-timeout", "0.5"]
    )
    assert code == 2 and "took longer than 0.5 s to read" in err and time.perf_counter() - t < 20, err


def test_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "song.mid"
    os.mkfifo(fifo)
    with pytest.raises(music.BadSong, match="not a regular file"):
        music.read_song(str(fifo))


# ---- files of the project's own formats -----------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
config_like = st.fixed_dictionaries(
    {},
    optional={
        s: st.dictionaries(
            st.sampled_from(list(getattr(Config(), s, Config()).__dataclass_fields__) + ["newer"]),
            json_values,
            max_size=4,
        )
        | json_values
        for s in ("data", "model", "train", "extra")
    },
)


@FAST
@given(d=st.one_of(config_like, json_values))
def test_config_from_any_json_is_a_config_or_one_line(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        try:
            cfg = Config.from_dict(d, "run/config.json")
        except ValueError as e:
            assert str(e).startswith("run/config.json: ") and "\n" not in str(e)
            return
    assert Config.from_dict(cfg.to_dict()) == cfg


@FAST
@given(text=st.one_of(json_values.map(json.dumps), st.binary(max_size=200).map(lambda b: b.decode("latin1"))))
def test_run_folder_files_read_or_refused_in_one_line(tmp_path, text):
    run = RunFolder(str(tmp_path / "run"))
    os.makedirs(run.root, exist_ok=True)
    for path in (run.config_path, run.stats_path, run.metrics_path):
        with open(path, "w", encoding="latin1") as f:
            f.write(text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for read in (run.read_config, lambda: run.check_stats(run.read_stats(), Config())):
            try:
                read()
            except RunError as e:
                assert "\n" not in str(e) and run.root in str(e)
        records = run.read_metrics()
    assert all(isinstance(r, dict) and "stage" in r for r in records)


@FAST
@given(
    report=st.one_of(
        json_values,
        st.fixed_dictionaries(
            {
                "config": st.one_of(st.just({}), json_values),
                "bars_per_split": st.one_of(st.just({"train": 0, "valid": 0, "test": 0}), json_values),
            },
            optional={"format": json_values, "splits": json_values, "skipped": json_values, "newer": json_values},
        ),
    )
)
@example(report={"config": {}, "bars_per_split": "a\nb"})  # a value shown in the error keeps its newline escaped
@example(report={"config": {}, "bars_per_split": {"train": 0, "valid": 0, "test": 0}, "splits": "a\nb"})
def test_cache_report_read_or_refused_in_one_line(tmp_path, report):
    root = tmp_path / "cache"
    root.mkdir(exist_ok=True)
    (root / "report.json").write_text(json.dumps(report))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        try:
            got = data.read_report(str(root))
        except data.CacheError as e:
            assert "\n" not in str(e) and "report.json" in str(e)
            return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConfigWarning)
        data.report_config(got)  # a report that reads has usable settings
        with pytest.raises(data.CacheError):  # and no bars files: damaged, in one line
            data.verify(str(root), got)


def test_own_format_corpus(tmp_path):
    for name, (filename, blob) in fuzz_corpus.own_format_cases().items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / filename).write_bytes(blob)
        run = RunFolder(str(folder))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if filename == "config.json":
                if "newer" in name:
                    assert run.read_config() == Config()
                    assert any("attention_heads" in str(w.message) for w in caught)
                else:
                    with pytest.raises(RunError, match="config.json"):
                        run.read_config()
            elif filename == "stats.json":
                with pytest.raises(RunError, match="stats.json"):
                    run.check_stats(run.read_stats(), Config())
            elif filename == "report.json":
                if "unknown-config-key" in name:
                    assert data.report_config(data.read_report(str(folder))) == config.DataConfig(key_normalize=False)
                else:
                    with pytest.raises(data.CacheError, match="report.json"):
                        data.read_report(str(folder))
            else:
                records = run.read_metrics()
                assert [r["step"] for r in records] == [2] * len(records) and records
                run.append_metrics({"stage": "vae", "kind": "train", "step": 4, "epoch": 0})
                assert run.read_metrics()[-1]["step"] == 4  # the torn line was cut, not glued to


# ---- song readers ---------------------------------------------------------------------------------------

GOOD_MIDI = fuzz_corpus.good_midi(np.random.default_rng(1), bars=2)
GOOD_NPZ = fuzz_corpus.good_npz(np.random.default_rng(1), bars=2)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(["mid", "npz"]),
    edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=8),
    cut=st.floats(0, 1),
)
def test_song_readers_read_or_refuse_in_one_line(tmp_path, kind, edits, cut):
    blob = bytearray(GOOD_MIDI if kind == "mid" else GOOD_NPZ)
    for where, value in edits:
        blob[int(where * (len(blob) - 1))] = value
    blob = bytes(blob[: max(1, int(cut * len(blob)))]) if cut < 0.98 else bytes(blob)
    path = tmp_path / f"song.{kind}"
    path.write_bytes(blob)
    try:
        song = music.read_song(str(path), timeout=10)
    except music.BadSong as e:
        assert str(e) and "\n" not in str(e)
        return
    assert song.roll.dtype == bool and song.roll.shape[0] == 5


@settings(max_examples=200, deadline=None)
@given(header=st.text(max_size=120), version=st.sampled_from([1, 2, 3]), payload=st.binary(max_size=64))
def test_npy_member_parser_refuses_in_one_line(header, version, payload):
    raw = header.encode("latin1", "replace")
    size = len(raw).to_bytes(2 if version == 1 else 4, "little")
    blob = b"\x93NUMPY" + bytes([version, 0]) + size + raw + payload
    try:
        music._npy(blob, "m.npy")
    except music.BadSong as e:
        assert "\n" not in str(e)
    except (ValueError, TypeError, OverflowError):
        pytest.fail("the .npy parser let a library error through")


def test_budget_cases_read_within_the_budget(tmp_path):
    import tracemalloc

    for name, blob in fuzz_corpus.budget_cases().items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(blob)
        assert path.stat().st_size < 200_000
        tracemalloc.start()
        try:
            music.read_song(str(path))
        except music.BadSong as e:
            assert "\n" not in str(e)
        peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        assert peak < music.READ_BUDGET_MB, (name, peak)


def test_a_name_that_is_not_utf8_is_one_song_among_others(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(3)
    with open(os.path.join(os.fsencode(src), fuzz_corpus.NON_UTF8_NAME), "wb") as f:
        f.write(fuzz_corpus.good_midi(rng))
    (src / "plain.mid").write_bytes(fuzz_corpus.good_midi(rng))
    report = data.prepare(str(src), str(tmp_path / "out"), workers=1, progress=False)
    assert report["songs_read"] == 2
    data.summary(report).encode("utf-8")  # printable on a strict UTF-8 terminal
    assert data.read_report(str(tmp_path / "out"))["songs_read"] == 2


def test_prepare_readers_fit_the_budget():
    assert (
        data.readers_for(data.PREPARE_BUDGET_MB, 64) * (data.WORKER_MB + music.READ_BUDGET_MB)
        + data.PARENT_MB
        + data.HOLD_MB
        <= data.PREPARE_BUDGET_MB
    )
    assert data.readers_for(data.PREPARE_BUDGET_MB, 2) == 2  # a 2-core machine keeps both cores
    with pytest.raises(data.PrepareError, match="memory-budget"):
        data.readers_for(500, 2)


def test_failed_prepare_of_a_file_leaves_no_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "README.md").write_text("not music")
    code, _, err = run_main(cli.train_main, ["--data", "README.md", "--quiet"])
    assert code == 2 and "not a song file" in err and "Traceback" not in err, err
    assert not (tmp_path / data.PREPARED_DIR).exists()


# ---- training that turns NaN ---------------------------------------------------------------------------


def test_nan_training_stops_and_keeps_the_last_finite_checkpoint(tmp_path):
    import jax.numpy as jnp

    from vaejax.runs import Diverged
    from vaejax.training import loop

    run = RunFolder(str(tmp_path / "run"))
    os.makedirs(run.root)
    tc = config.TrainConfig(log_every=2, checkpoint_every=3)

    def step(state, x, i):
        w = state["w"] + x
        return {"w": w}, jnp.where(i >= 4, jnp.nan, jnp.sum(w))

    stage = loop.Stage(
        "melody",
        {"w": jnp.zeros(2)},
        8,
        1,
        lambda e, s: ((jnp.ones(2),) for _ in range(8 - s)),
        step,
        lambda s: {"val_loss": 0.0},
        lambda host: {"mse": float(np.mean(host))},
    )
    with pytest.raises(Diverged, match="melody: training diverged at step 6 .* not marked as latest"):
        loop.fit(stage, run, tc, {}, progress=False)
    from vaejax.checkpoint import StageCheckpoints

    ck = StageCheckpoints(run.ckpt("melody"))
    state, meta = ck.restore_latest({"w": jnp.zeros(2)})
    ck.close()
    assert meta["step"] == 3 and np.isfinite(np.asarray(state["w"])).all()


@pytest.mark.slow
def test_nan_training_from_the_command_line_is_not_marked_latest(tmp_path, monkeypatch, demo_prepared):
    import jax

    from vaejax.training import stages

    real_fit = stages.fit

    def nan_fit(stage, *a, **k):  # the VAE's losses turn NaN from the first step on
        step = stage.step

        def bad(state, *inputs):
            state, metrics = step(state, *inputs)
            return state, jax.tree.map(lambda m: m * float("nan"), metrics)

        stage.step = bad
        return real_fit(stage, *a, **k)

    monkeypatch.setattr(stages, "fit", nan_fit)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(
        cli.train_main,
        [
            "--data",
            demo_prepared,
            "--preset",
            "tiny",
            "--run",
            "run",
            "--stage",
            "vae",
            "--quiet",
            "--max-steps-per-epoch",
            "4",
        ],
    )
    assert code == 2 and "vae: training diverged at step 2" in err and "Traceback" not in err, err
    assert not os.path.exists(os.path.join("runs", "LATEST"))


# ---- processes: no orphans, no clobbering ---------------------------------------------------------------


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_readers_die_with_their_parent_after_kill_9(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"s{i}.mid").write_bytes(GOOD_MIDI)
    # readers that never finish a file (forked: the parent's stand-in for _work is theirs too)
    code = (
        "import time, sys; from vaejax import data; from vaejax.data import readers; "
        "readers._work = lambda task: time.sleep(600); "
        f"data.prepare({str(src)!r}, {str(tmp_path / 'out')!r}, workers=2, progress=False, timeout=600)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.time() + 60
        while len(_children(proc.pid)) < 2 and time.time() < deadline:
            time.sleep(0.1)
        readers = _children(proc.pid)
        assert len(readers) >= 2
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    deadline = time.time() + 10
    while any(_alive(p) for p in readers) and time.time() < deadline:
        time.sleep(0.1)
    left = [p for p in readers if _alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert not left, "reader processes outlived their parent"


def test_concurrent_claims_keep_every_name(tmp_path):
    folder = str(tmp_path / "out")
    claimed, lock = [], threading.Lock()

    def claim():
        out = cli._Out(folder, False, (".mid", ".png", ".wav"))
        for _ in range(15):
            base = out.claim("sample-seed0-0")
            with lock:
                claimed.append(base)

    threads = [threading.Thread(target=claim) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed) == len(set(claimed)) == 90


@pytest.mark.slow
def test_disk_full_while_sampling_is_one_line_and_leaves_nothing_partial(tmp_path, monkeypatch):
    import errno

    from vaejax import render

    written = []
    real = render._written

    def fill_up(path, write):
        if path.endswith(".png") and len(written) >= 3:  # the second song's picture meets a full disk halfway

            def half(tmp):
                with open(tmp, "wb") as f:
                    f.write(b"\x89PNG partial")
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)

            return real(path, half)
        written.append(path)
        return real(path, write)

    monkeypatch.setattr(render, "_written", fill_up)
    out = tmp_path / "o"
    code, stdout, err = run_main(cli.sample_main, ["--bars", "2", "--num", "2", "--no-audio", "--out", str(out)])
    assert code == 2 and "No space left on device" in err and "1 song(s) written before" in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1 and "Traceback" not in err
    names = sorted(os.listdir(out))
    assert not [n for n in names if n.endswith(".part")], names
    assert all(os.path.getsize(out / n) > 0 for n in names), names  # no empty claimed names left behind
    assert "sample-seed0-0.mid" in names and "sample-seed0-0.png" in names


@pytest.mark.slow
def test_real_full_disk_while_sampling(tmp_path):
    with tmpfs(tmp_path / "disk", "size=48k") as disk:
        code, _, err = run_main(cli.sample_main, ["--bars", "8", "--out", str(disk)])
        assert code == 2 and "No space left" in err and "Traceback" not in err, err
        assert not [n for n in os.listdir(disk) if n.endswith(".part") or os.path.getsize(os.path.join(disk, n)) == 0]


# ---- generation in chunks --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lpd5():
    import vaejax

    return vaejax.load("lpd5")


@pytest.mark.slow
@pytest.mark.e2e
def test_chunked_decoding_equals_one_call(monkeypatch, lpd5):
    from vaejax import trained_model

    model = lpd5
    z = model.sample_latents(10, seed=3)[0]
    whole = model.rolls(z)
    monkeypatch.setattr(trained_model, "DECODE_CHUNK", 4)
    assert np.array_equal(model.rolls(z), whole)
    bars = whole.reshape(5, 10, model.cfg.data.steps, -1).astype(np.float32)
    monkeypatch.setattr(trained_model, "DECODE_CHUNK", 256)
    enc_whole = model.encode_bars(bars).concat()
    monkeypatch.setattr(trained_model, "DECODE_CHUNK", 3)
    np.testing.assert_allclose(model.encode_bars(bars).concat(), enc_whole, rtol=1e-5, atol=1e-5)


def test_generation_beyond_the_budget_is_refused_before_work(lpd5):
    model = lpd5.with_options(memory_mb=500)
    t = time.perf_counter()
    with pytest.raises(ValueError, match="more than the budget of 500 MiB"):
        model.sample(4096, num=1000)
    assert time.perf_counter() - t < 1


def test_strict_prepare_leaves_no_temporary_file(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.mid").write_bytes(GOOD_MIDI)
    (src / "b.mid").write_bytes(b"MThd broken")
    with pytest.raises(data.PrepareError) as e:
        data.prepare(str(src), str(tmp_path / "out"), workers=1, progress=False, strict=True)
    assert e.value.code == 3
    assert not [n for n in os.listdir(tmp_path / "out") if ".tmp" in n]


def _mangled_npz(edits, cut):
    buf = io.BytesIO()
    np.savez(
        buf,
        latents=np.zeros((3, 5, 16), np.float32),
        start=np.zeros(1, np.int64),
        length=np.full(1, 3),
        ids=np.array(["a"]),
    )
    blob = bytearray(buf.getvalue())
    for where, value in edits:
        blob[int(where * (len(blob) - 1))] = value
    return bytes(blob[: max(1, int(cut * len(blob)))])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)), max_size=6), cut=st.floats(0, 1))
def test_run_folder_arrays_read_or_refused_in_one_line(tmp_path, edits, cut):
    from vaejax import packaging

    run = RunFolder(str(tmp_path / "run"))
    os.makedirs(os.path.join(run.root, "latents"), exist_ok=True)
    blob = _mangled_npz(edits, cut)
    for path in (run.latents_path("train"), run.start_bars_path, run.weights_path):
        with open(path, "wb") as f:
            f.write(blob)
    with open(run.stats_path, "w") as f:
        f.write("{}")
    open(run.start_bars_path[:-4] + ".npy", "ab").close()
    for read in (
        lambda: run.read_latents({"train": 3}, 8),
        run.read_start_bars,
        lambda: packaging.read_weights(run, {n: {} for n in packaging.NETWORKS}),
    ):
        try:
            read()
        except RunError as e:
            assert "\n" not in str(e)


@pytest.mark.slow
def test_option_corpus_is_refused_in_one_line(tmp_path, monkeypatch):
    from vaejax import evaluate

    monkeypatch.chdir(ROOT)
    mains = {"train": cli.train_main, "sample": cli.sample_main, "data": data_main, "evaluate": evaluate.main}
    for command, argv in fuzz_corpus.OPTION_CASES:
        (tmp_path / "src").mkdir(exist_ok=True)
        argv = [{"OUT": str(tmp_path / "out"), "SRC": str(tmp_path / "src")}.get(a, a) for a in argv]
        if command == "sample":
            argv += ["--out", str(tmp_path / "o")]
        code, _, err = run_main(mains[command], argv)
        errors = [line for line in err.splitlines() if line.startswith("error:")]
        assert code == 2 and errors and "Traceback" not in err, (command, argv, code, err)
    assert not os.path.exists(tmp_path / "out" / "report.json")
