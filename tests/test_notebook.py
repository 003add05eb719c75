"""The quick-start notebook runs top to bottom from examples/ (Jupyter's working folder there) and writes only
into a temporary folder."""

import os
import shutil

import pytest

from conftest import ROOT


@pytest.mark.slow
@pytest.mark.e2e
def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat", reason="nbformat not installed (pip install -e '.[test]')")
    nbclient = pytest.importorskip("nbclient", reason="nbclient not installed (pip install -e '.[test]')")
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        if "python3" not in KernelSpecManager().find_kernel_specs():
            pytest.skip("no python3 Jupyter kernel here (pip install ipykernel)")
    except ImportError as e:
        pytest.skip(f"jupyter_client not installed ({e})")
    from vaejax import packaging

    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("the packaged model is not in this checkout")
    work = tmp_path / "examples"
    shutil.copytree(os.path.join(ROOT, "examples"), work)
    before = sorted(os.listdir(work))
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))  # the kernel's tempfile folder
    nb = nbformat.read(str(work / "quickstart.ipynb"), as_version=4)
    nbformat.validate(nb)  # cell ids and all
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    kinds = {k for o in outputs for k in o.get("data", {})}
    assert "image/png" in kinds and "text/html" in kinds  # plots and an audio player, inline
    assert sorted(os.listdir(work)) == before  # nothing written into the checkout's examples/
    (made,) = os.listdir(temp)
    assert sorted(os.listdir(temp / made)) == ["arranged.mid", "song.mid"]
