"""The one command, `vaejax COMMAND ...`: every program is reachable through it; `prepare` and `verify` run
in-process here (the other programs have their own tests)."""

import contextlib
import io
import os
import shutil

import numpy as np

from vaejax import cli, data, demo


def run(argv):
    """(exit code, stdout, stderr) of `vaejax ARGV`, in this process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:  # argparse's own refusals and --help
            code = e.code
    return code, out.getvalue(), err.getvalue()


def test_help_names_every_command():
    code, out, _ = run(["--help"])
    assert code == 0
    for name in ("prepare", "train", "sample", "evaluate", "export", "verify", "data", "studio"):
        assert f"  {name} " in out
        assert run([name, "--help"])[0] == 0, name


def test_an_unknown_command_is_refused_with_the_usage_line():
    code, _, err = run(["prepar"])
    assert code == 2 and err.startswith("usage: vaejax {prepare,train,")


def test_prepare_writes_a_cache_that_verify_accepts(tmp_path):
    demo.write_corpus(str(tmp_path / "src"), songs=6, seed=0, bars=4)
    code, out, err = run(["prepare", str(tmp_path / "src"), str(tmp_path / "prep"), "--workers", "1", "--quiet"])
    assert code == 0, err
    assert data.is_prepared(str(tmp_path / "prep")) and "songs" in out
    code, out, err = run(["verify", str(tmp_path / "prep")])
    assert code == 0 and "checksums match" in out, err


def test_prepare_refuses_what_the_data_command_refuses(tmp_path):
    code, _, err = run(["prepare", str(tmp_path / "none"), str(tmp_path / "out"), "--pitches", "0"])
    assert code == 2 and err.startswith("error: --pitches") and "Traceback" not in err


def test_verify_names_a_damaged_cache(demo_prepared, tmp_path):
    copy = shutil.copytree(demo_prepared, tmp_path / "prep")
    with open(copy / "valid.bars", "r+b") as f:
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    code, _, err = run(["verify", str(copy)])
    assert code == 2 and "valid.bars" in err and len(err.strip().splitlines()) == 1


def test_verify_a_run_and_its_packaged_copy(tiny_run, tmp_path):
    code, out, err = run(["verify", tiny_run])
    assert code == 0, err
    assert "all finite" in out and "it generates (5 tracks" in out
    assert run(["export", tiny_run, str(tmp_path / "pkg")])[0] == 0
    code, out, err = run(["verify", str(tmp_path / "pkg"), "--no-generate"])
    assert code == 0 and "all finite" in out and "generates" not in out, err


def test_verify_refuses_weights_that_are_not_finite(tiny_run, tmp_path):
    assert run(["export", tiny_run, str(tmp_path / "pkg"), "--float32"])[0] == 0
    path = tmp_path / "pkg" / "weights.npz"
    with np.load(path) as z:
        arrays = dict(z)
    name = next(k for k in arrays if k.startswith("melody/"))
    arrays[name] = np.full_like(arrays[name], np.nan)
    np.savez(path, **arrays)
    code, _, err = run(["verify", str(tmp_path / "pkg"), "--no-generate"])
    assert code == 2 and "not finite in melody" in err


def test_verify_refuses_what_is_neither_a_dataset_nor_a_model(tmp_path):
    code, _, err = run(["verify", str(tmp_path / "nothing")])
    assert code == 2 and err.startswith("error:") and "Traceback" not in err
    os.makedirs(tmp_path / "half")
    (tmp_path / "half" / "report.json").write_text("{}")
    code, _, err = run(["verify", str(tmp_path / "half")])
    assert code == 2 and "prepare it again" in err
