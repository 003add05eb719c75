"""The evaluation command end to end on a tiny run (numbers meaningless, structure and files checked)."""

import json
import os

import numpy as np
import pytest

from vaejax import evaluate
from vaejax.config import TRACKS


@pytest.fixture(scope="module")
def held_out(tmp_path_factory):
    """A prepared corpus with a test split: 80 short synthetic songs put a few in "test"."""
    from vaejax import data, demo

    root = tmp_path_factory.mktemp("held_out")
    demo.write_corpus(str(root / "src"), songs=80, seed=5, bars=6)
    prepared = str(root / "prep")
    data.prepare(str(root / "src"), prepared, workers=1, progress=False)
    assert len(data.open_dataset(prepared)["test"].ids) > 0
    return prepared


def test_variation_needs_no_sigma_zero_in_the_list(tiny_run, held_out):
    """`--sigmas 0.5` (no 0 in the list, or 0 not first) measures variation against the sigma-0 continuation,
    the same figures as a list that starts with 0."""
    from vaejax import data, trained_model

    model, test = trained_model.load(tiny_run), data.open_dataset(held_out)["test"]
    alone = evaluate.generation(model, test, songs=3, bars=2, sigmas=[0.5])
    both = evaluate.generation(model, test, songs=3, bars=2, sigmas=[0.5, 0.0])
    assert alone["continued_songs"] > 0 and set(alone["variation"]) == {"0.5"}
    assert alone["variation"]["0.5"] == both["variation"]["0.5"]
    np.testing.assert_equal(alone["rows"]["continuation sigma=0.5"], both["rows"]["continuation sigma=0.5"])


@pytest.mark.e2e
def test_evaluate_writes_report(tiny_run, held_out, tmp_path):
    from vaejax import render

    prepared = held_out
    out = str(tmp_path / "eval")
    roll = np.zeros((5, 2 * 96, 84), bool)
    roll[1, 0:48, 36] = roll[1, 0:48, 40] = True  # two 48-step notes: QN 100%, UPC 2, one empty bar in two
    roll[0, 100:104, 12] = True  # a drum hit in bar 2, so that the MIDI file lasts two bars
    ref = render.write_midi(str(tmp_path / "ref.mid"), render.to_multitrack(roll))
    pianos = tmp_path / "pianos"  # two piano parts to arrange, and a file that is not MIDI at all
    pianos.mkdir()
    render.write_midi(str(pianos / "a.mid"), render.to_multitrack(roll))
    render.write_midi(str(pianos / "b.mid"), render.to_multitrack(np.roll(roll, 7, axis=2)))
    (pianos / "c.mid").write_bytes(b"not midi")
    assert (
        evaluate.main(
            [
                "--runs",
                tiny_run,
                tiny_run,
                "--data",
                prepared,
                "--out",
                out,
                "--songs",
                "3",
                "--bars",
                "2",
                "--sigmas",
                "0.5",
                "--reference",
                ref,
                "--arrange",
                str(pianos),
            ]
        )
        == 0
    )
    rep = json.load(open(os.path.join(out, "report.json")))
    assert len(rep["runs"]) == 2 and set(TRACKS) <= set(rep["runs"][0]["reconstruction"])
    rows = rep["generation"]["rows"]
    assert {"prior sigma=0.5", "continuation sigma=0.5"} <= set(rows)
    assert "EB Piano" in rep["real"] and "TD B-G" in rep["real"]
    assert rep["generation"]["continued_songs"] > 0
    assert set(rep["generation"]["variation"]) == {"0.5"}
    ((name, row),) = rep["reference"].items()
    assert name == "ref.mid (2 bars)"
    assert row["QN Piano"] == 100.0 and row["UPC Piano"] == 2.0 and row["EB Piano"] == 50.0
    md = open(os.path.join(out, "report.md")).read()
    assert "reference: ref.mid" in md
    assert "Reconstruction" in md and "real (test split)" in md
    # chance lies where the band's tracks come from other songs; songs are scored for scale consistency
    assert "real, tracks shuffled across songs" in rep["real_rows"] and "SC" in rep["real_rows"]["real (test songs)"]
    assert "prior sigma=0.5, post-processed" in rows and "SC" in rows["prior sigma=0.5"]
    arr = rep["arrangement"]
    assert arr["songs"] == 2 and len(arr["skipped"]) == 1 and "c.mid" in arr["skipped"][0]["path"]
    assert arr["raw"]["EB Piano"] == 50.0  # the given part is kept: one bar of two sounds
    assert "Arrangement of given piano parts" in md
    assert os.path.getsize(os.path.join(out, "metrics-vs-sigma.png")) > 1000
    assert np.isfinite(rep["runs"][0]["reconstruction"]["Piano"]["f1"])
    rl = rep["realism"]  # the rhythm section: statistics of real, reconstructed and generated passages
    assert set(TRACKS) <= set(rl["real"]) and {"reconstructed", "generated sigma=0.5"} <= set(rl)
    assert all(0.0 <= rl["reconstructed"]["vs_real"][t]["onset_tv"] <= 1.0 for t in TRACKS)
    assert "Rhythm realism" in open(os.path.join(out, "report.md")).read()
