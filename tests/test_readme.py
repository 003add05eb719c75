"""The README's commands and option tables, walked from the README itself: every command in its bash blocks
(and every inline `python ...` / `vaejax-...` command) parses with the program's own parser, the cheap ones
run for real on the tiny trained run, and every option of the Training and Sampling tables exists, takes
the documented value and is the whole of its program's options. A newly documented command or option is
covered without editing this file."""

import argparse
import os
import pathlib
import re
import shlex
import tomllib

import pytest

from vaejax import cli, evaluate
from vaejax.data.__main__ import main as data_main
from vaejax.studio import server as studio_server

from conftest import ROOT

README = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()

# how each documented program is started in-process
PROGRAMS = {
    "python sample.py": cli.sample_main,
    "vaejax-sample": cli.sample_main,
    "python train.py": cli.train_main,
    "vaejax-train": cli.train_main,
    "python -m vaejax.data": data_main,
    "vaejax-data": data_main,
    "python -m vaejax.evaluate": evaluate.main,
    "vaejax-evaluate": evaluate.main,
    "python -m vaejax.cli": cli.main,
    "vaejax-export": cli.export_main,
    "vaejax-studio": studio_server.main,
    "python -m vaejax.studio": studio_server.main,
    "vaejax": cli.main,
}
NOT_OURS = (
    "python3 -m venv",
    "python -m venv",
    ". .venv/bin/activate",
    "pip install",
    "python -m pytest",
    "jupyter ",
    "cd ",
)


class Parsed(Exception):
    def __init__(self, parser, namespace):
        self.parser, self.namespace = parser, namespace


@pytest.fixture
def parse_only(monkeypatch):
    """Run a program's main until its parser has parsed: returns (parser, namespace), or raises SystemExit
    with argparse's code for arguments it refuses."""
    real = argparse.ArgumentParser.parse_args

    def parse_args(self, args=None, namespace=None):
        raise Parsed(self, real(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_args)

    def run(program, argv):
        try:
            PROGRAMS[program](argv)
        except Parsed as p:
            return p.parser, p.namespace
        raise AssertionError(f"{program} returned without parsing its arguments")

    return run


def _split(command: str):
    """(program, argv) of a README command line; brackets mark optional parts: `[--opt VALUE ...]` is taken
    in, a bracketed remark (`[more runs, e.g. other K]`) left out."""
    command = re.sub(
        r"\[([^\]]*)\]", lambda m: m.group(1).replace("...", "") if m.group(1).startswith("--") else "", command
    )
    for program in sorted(PROGRAMS, key=len, reverse=True):
        if command == program or command.startswith(program + " "):
            return program, shlex.split(command[len(program) :], comments=True)
    return None, None


def readme_commands() -> list[str]:
    """Commands of the README's bash blocks (`&&` chains split, `\\` continuations joined) and its inline
    code spans that start a program."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0].strip()
            out += [part.strip() for part in line.split("&&") if part.strip()]
    for span in re.findall(r"`([^`\n]+)`", README):  # a program named with arguments, not just named
        if _split(span.strip())[1]:
            out.append(span.strip())
    return out


COMMANDS = readme_commands()


def test_the_readme_has_commands_to_walk():
    ours = [c for c in COMMANDS if _split(c)[0]]
    assert len(ours) >= 8
    assert any(c.startswith("python sample.py --arrange") for c in ours)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command, parse_only):
    program, argv = _split(command)
    if program is None:
        assert command.startswith(NOT_OURS), f"README command of an unknown program: {command!r}"
        return
    if "--help" in argv or "-h" in argv:
        with pytest.raises(SystemExit) as e:
            parse_only(program, argv)
        assert e.value.code == 0
        return
    parse_only(program, argv)


def test_console_scripts_are_the_documented_programs():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    for name, target in scripts.items():
        assert f"`{name}`" in README, f"console script {name} is not in the README"
        module, func = target.split(":")
        assert PROGRAMS[name].__module__ == module and PROGRAMS[name].__name__ == func


def _local(argv, cwd):
    """Paths into the checkout (examples/...) made absolute; outputs stay relative to `cwd`."""
    return [
        os.path.join(ROOT, a)
        if not os.path.isabs(a) and os.path.exists(os.path.join(ROOT, a)) and not os.path.exists(os.path.join(cwd, a))
        else a
        for a in argv
    ]


@pytest.mark.slow
@pytest.mark.e2e
def test_readme_sample_commands_run(tmp_path, monkeypatch, capsys):
    """The README's sample.py commands, in order, in a fresh folder, on the packaged model with tiny sizes:
    each writes the files it prints (the variation reads the song the first command wrote)."""
    from vaejax import packaging

    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("the packaged model is not in this checkout")
    monkeypatch.chdir(tmp_path)
    ran = 0
    for command in COMMANDS:
        program, argv = _split(command)
        if program not in ("python sample.py", "vaejax-sample") or "--help" in argv:
            continue
        argv = _local(argv, str(tmp_path))
        for opt, cap in (("--bars", 2), ("--num", 2)):
            if opt in argv:
                i = argv.index(opt) + 1
                argv[i] = str(min(int(argv[i]), cap))
        capsys.readouterr()
        short = [] if "--bars" in argv else ["--bars", "2"]
        rc = cli.sample_main(argv + ["--checkpoint", "lpd5", "--no-audio"] + short)
        out = capsys.readouterr()
        assert rc == 0, f"{command}: {out.err}"
        paths = out.out.split()
        assert paths and all(os.path.getsize(p) > 0 for p in paths), command
        ran += 1
    assert ran >= 3


def test_readme_train_commands_configure(capsys):
    """The README's train.py commands are accepted through configuration (`--print-config`, no training)."""
    import json

    for command in COMMANDS:
        program, argv = _split(command)
        if program not in ("python train.py", "vaejax-train") or "--help" in argv:
            continue
        capsys.readouterr()
        assert cli.train_main(argv + ["--print-config"]) == 0, command
        cfg = json.loads(capsys.readouterr().out)
        if "--latent" in argv:
            assert cfg["model"]["latent"] == int(argv[argv.index("--latent") + 1])


def _table(heading: str) -> list[str]:
    """First cells of the option table under the README heading that starts with `heading`."""
    section = README.split("\n## " + heading, 1)[1].split("\n## ", 1)[0]
    return [line.split("|")[1].strip() for line in section.splitlines() if line.startswith("| `--")]


def _documented(cells):
    """(option, value shown in the README or None) for every option named in the table's cells."""
    out = []
    for cell in cells:
        for code in re.findall(r"`([^`]+)`", cell):
            for opt, value in re.findall(r"(--[a-z0-9-]+)(?:[ =]([^`/]*))?", code):
                out.append((opt, (value or "").strip() or None))
    return out


def _value(action, shown, tmp):
    """Arguments that give `action` a value other than its default."""
    if action.nargs == 0:
        return []
    if action.choices:
        return [str(next(c for c in action.choices if c != action.default))]
    if shown and "=" in shown:  # an example such as --set train.precision=bfloat16
        return [shown]
    if action.nargs == 2:
        return [str(tmp / "a.mid"), str(tmp / "b.mid")]
    if action.type is int:  # values no default has
        return ["7" if action.default != 7 else "9"]
    if action.type is float:
        return ["0.123"]
    return [str(tmp / action.dest)]


@pytest.mark.parametrize("heading,program", [("Training", "python train.py"), ("Sampling", "python sample.py")])
def test_option_tables_match_the_parsers(heading, program, parse_only, tmp_path):
    """Every option in the table exists and takes a value that reaches the program; every option of the
    program is in its table."""
    documented = _documented(_table(heading))
    assert documented, f"no option table under '## {heading}'"
    parser, defaults = parse_only(program, [])
    actions = {s: a for a in parser._actions for s in a.option_strings}
    for opt, shown in documented:
        assert opt in actions, f"README documents {opt} for {program}, which has no such option"
        action = actions[opt]
        argv = [opt] + _value(action, shown, tmp_path)
        _, ns = parse_only(program, argv)
        assert getattr(ns, action.dest) != getattr(defaults, action.dest), argv
    missing = {s for s in actions if s.startswith("--") and s != "--help"} - {o for o, _ in documented}
    assert not missing, f"options of {program} missing from the README's {heading} table: {sorted(missing)}"


def test_training_options_reach_the_configuration(capsys):
    """The Training table's options (but the multi-host ones, which join a job) with --print-config: each
    is accepted, and those that set a configuration field change the printed configuration."""
    import json

    cli.train_main(["--print-config"])
    base = capsys.readouterr().out
    parser = cli.train_parser()
    actions = {s: a for a in parser._actions for s in a.option_strings}
    for opt, shown in _documented(_table("Training")):
        if opt in ("--coordinator", "--num-processes", "--process-id", "--print-config"):
            continue
        action = actions[opt]
        argv = [opt] + _value(action, shown, pathlib.Path("somewhere"))
        if opt == "--config":  # a file that exists: the experiment config of the packaged model
            argv = [opt, os.path.join(ROOT, "configs", "lpd5.py")]
        assert cli.train_main(argv + ["--print-config"]) == 0, argv
        printed = capsys.readouterr().out
        json.loads(printed)
        if opt not in ("--data", "--stage", "--run", "--quiet", "--accelerator"):
            assert printed != base, f"{argv} left the configuration unchanged"


@pytest.mark.parametrize(
    "script,parser,default",
    [("vaejax-sample", cli.sample_parser, "sample.py"), ("vaejax-train", cli.train_parser, "train.py")],
)
def test_usage_lines_name_the_program_that_was_started(script, parser, default, monkeypatch):
    monkeypatch.setattr("sys.argv", [f"/venv/bin/{script}"])
    assert parser().format_usage().startswith(f"usage: {script} ")
    monkeypatch.setattr("sys.argv", [default])
    assert parser().format_usage().startswith(f"usage: {default} ")
