"""The package's import graph: no cycle, no upward edge, and loading a model needs no training code."""

import ast
import os
import subprocess
import sys

import pytest

import vaejax

ROOT = os.path.dirname(vaejax.__file__)

# Lower layers never import higher ones (README, "Layout"). The package's __init__ is the facade on top.
LAYERS = [
    {"vaejax.config", "vaejax.files"},
    {"vaejax.music", "vaejax.losses", "vaejax.devices", "vaejax.download", "vaejax.data.cache"},
    {
        "vaejax.metrics",
        "vaejax.render",
        "vaejax.demo",
        "vaejax.models",
        "vaejax.latents",
        "vaejax.runs",
        "vaejax.prior",
        "vaejax.realism",
        "vaejax.data.readers",
    },
    {"vaejax.data", "vaejax.checkpoint", "vaejax.form"},
    {"vaejax.packaging", "vaejax.training.steps"},
    {"vaejax.training.loop", "vaejax.training.calibration", "vaejax.trained_model"},
    {"vaejax.training.stages"},
    {"vaejax.training", "vaejax.evaluate"},
    {"vaejax.data.__main__"},
    {"vaejax.cli"},
    {"vaejax.studio.payload"},
    {"vaejax.studio.inline", "vaejax.studio.server"},
    {"vaejax.studio", "vaejax.studio.__main__"},
]


def _modules() -> dict[str, str]:
    out = {}
    for folder, _, files in os.walk(ROOT):
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), os.path.dirname(ROOT))[:-3].replace(os.sep, ".")
                out[rel.removesuffix(".__init__")] = os.path.join(folder, f)
    return out


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        with open(path) as f:
            tree = ast.parse(f.read())
        deps = set()
        for node in ast.walk(tree):  # function-level imports count too
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                deps |= {
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module for a in node.names
                }
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def test_every_module_has_a_layer():
    placed = set().union(*LAYERS)
    assert set(_modules()) - {"vaejax"} == placed


def test_no_upward_edge_and_no_cycle():
    layer = {m: i for i, group in enumerate(LAYERS) for m in group}
    graph = _graph()
    upward = [
        (a, b) for a, deps in graph.items() if a != "vaejax" for b in deps if b == "vaejax" or layer[b] > layer[a]
    ]
    assert not upward, f"imports that go up a layer: {upward}"
    same = [(a, b) for a, deps in graph.items() if a != "vaejax" for b in deps if layer.get(b) == layer[a]]
    assert not same, f"imports within one layer: {same}"  # with the above: the graph has no cycle
    assert not any("vaejax.cli" in deps for name, deps in graph.items() if name != "vaejax.cli")


def test_loading_a_model_needs_no_training_code():
    graph = _graph()
    seen, todo = set(), ["vaejax.trained_model"]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(graph[m])
    assert not [m for m in seen if m.startswith("vaejax.training")]
    for m in seen:  # nor builds an optimiser
        with open(_modules()[m]) as f:
            assert "optax" not in f.read(), m


def test_loading_the_packaged_model_imports_no_training_module():
    from vaejax import packaging

    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("packaged model absent")
    code = (
        "import sys, vaejax; m = vaejax.load('lpd5'); "
        "print(sorted(k for k in sys.modules if k.startswith(('vaejax.training', 'vaejax.cli', 'orbax'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
