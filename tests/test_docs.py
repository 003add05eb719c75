"""Figures quoted in the README are the committed benchmark and evaluation results: each is tagged with the
JSON file and field it comes from (`<!-- bench/results/sample.json songs_100/median_s -->` right after the
number), and must equal that field at the precision shown."""

import json
import os
import re

import pytest

from conftest import ROOT

TAG = re.compile(r"(\d[\d,]*(?:\.\d+)?)<!-- (\S+\.json) (.+?) -->")


def _doc(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def _field(path, pointer):
    """The field at `pointer` (keys joined by "/"); a trailing "*N" scales it (a share quoted in percent)."""
    pointer, _, scale = pointer.partition("*")
    with open(os.path.join(ROOT, path), encoding="utf-8") as f:
        value = json.load(f)
    for key in pointer.split("/"):
        value = value[key]
    return value * float(scale or 1)


def _figures(name):
    return TAG.findall(_doc(name))


@pytest.mark.parametrize("doc", ["README.md", "BENCHMARKS.md"])
def test_tagged_figures_match_their_json(doc):
    for shown, path, pointer in _figures(doc):
        assert os.path.exists(os.path.join(ROOT, path)), f"{doc}: {shown} cites {path}, which is not committed"
        value = _field(path, pointer)
        decimals = len(shown.split(".")[1]) if "." in shown else 0
        number = float(shown.replace(",", ""))
        assert abs(value - number) <= 0.5 * 10**-decimals + 1e-9, f"{doc} says {shown} but {path} {pointer} is {value}"


def test_readme_results_are_tagged():
    """The README's results section quotes no speed figure without its source."""
    section = _doc("README.md").split("## Results so far", 1)[1].split("\n## ", 1)[0]
    assert len(TAG.findall(section)) >= 10
    untagged = re.findall(r"\d+(?:\.\d+)? ?(?:s|ms)\b|\d+(?:\.\d+)?x\b", section)
    assert not untagged, f"figures without a source in the README's results: {untagged}"
    assert "1.7-1.8x" not in section and "3.5 s" not in section
