"""The one command, `vaejax COMMAND ...`: every program is reachable through it; `prepare` and `verify` run
in-process here (the other programs have their own tests)."""

import ast
import contextlib
import dataclasses
import glob
import io
import json
import os
import shutil

import numpy as np
import pytest

from vaejax import cli, data, demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


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


# ---- one door for settings ----------------------------------------------------------------------------

CONFIGS = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))


def test_the_packaged_model_has_its_config_file():
    from vaejax import packaging
    from vaejax.config import load_config

    cfg = load_config(os.path.join(ROOT, "configs", "lpd5.py"))
    if "lpd5" in packaging.pretrained_names():
        with open(os.path.join(packaging.pretrained_path("lpd5"), "config.json")) as f:
            packaged = json.load(f)
        assert json.loads(cfg.to_json()) == packaged


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_each_config_file_runs_as_its_docstring_says(path, capsys):
    from vaejax.config import load_config

    cfg = load_config(path)
    doc = ast.get_docstring(ast.parse(open(path).read()))
    commands = [line.strip() for line in doc.splitlines() if line.strip().startswith("python train.py")]
    assert commands and all(f"--config configs/{os.path.basename(path)}" in c for c in commands)
    capsys.readouterr()
    assert cli.train_main(["--config", path, "--print-config"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(cfg.to_json())


def test_every_field_is_reachable_by_set_and_options_are_derived_from_fields(capsys):
    from vaejax.config import SECTIONS, Config

    defaults = Config()
    for section in SECTIONS:
        for f in dataclasses.fields(getattr(defaults, section)):
            if section == "data":
                continue  # the dataset's: refused below
            value = getattr(defaults, section).__getattribute__(f.name)
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            assert cli.train_main(["--set", f"{section}.{f.name}={text}", "--print-config"]) == 0, f.name
    capsys.readouterr()
    flags = {s for a in cli.train_parser()._actions for s in a.option_strings}
    assert {f.metadata["flag"] for _, _, f in cli.config_options()} <= flags
    assert cli.train_main(["--lr", "0.01", "--no-plays", "--print-config"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["train"]["lr"] == 0.01 and printed["model"]["plays"] is False


def test_what_the_dataset_fixes_is_refused_in_one_line(demo_prepared, capsys):
    code = cli.train_main(["--data", demo_prepared, "--set", "data.segment_bars=2", "--print-config"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "data.segment_bars=2" in err and demo_prepared in err
    assert cli.train_main(["--data", demo_prepared, "--print-config"]) == 0
    from vaejax.data import dataset_config

    assert json.loads(capsys.readouterr().out)["data"] == dataclasses.asdict(dataset_config(demo_prepared))


def test_config_files_and_settings_from_python(tmp_path):
    from vaejax.config import Config, apply_settings, load_config

    cfg = apply_settings(Config(), ["model.hidden=64", "train.precision=float32", "model.channels=8,16"])
    assert (cfg.model.hidden, cfg.train.precision, cfg.model.channels) == (64, "float32", (8, 16))
    (tmp_path / "c.json").write_text(cfg.to_json())
    assert load_config(str(tmp_path / "c.json")) == cfg
    with pytest.raises(ValueError, match="model.hiden"):
        apply_settings(cfg, ["model.hiden=3"])
    with pytest.raises(ValueError, match="get_config"):
        (tmp_path / "bad.py").write_text("x = 1\n")
        load_config(str(tmp_path / "bad.py"))
