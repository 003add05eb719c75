"""Checks on the real data in ../shared/data (LPD-cleansed sample, POP909); skipped where it is absent."""

import os

import numpy as np
import pytest

from vaejax import data, music

from conftest import LPD_SAMPLE, POP909

needs_lpd = pytest.mark.skipif(not os.path.isdir(LPD_SAMPLE), reason=f"real LPD sample not found at {LPD_SAMPLE}")
needs_pop = pytest.mark.skipif(not os.path.isdir(POP909), reason=f"POP909 sample not found at {POP909}")
pytestmark = pytest.mark.realdata


@needs_lpd
def test_reader_matches_pypianoroll_on_real_lpd():
    import pypianoroll

    files = music.find_songs(LPD_SAMPLE)[:25]
    assert len(files) == 25
    for f in files:
        roll = music.read_npz(f).roll
        mt = pypianoroll.load(f)
        ref = np.zeros_like(roll)
        for tr in mt.tracks:
            t = music.lpd5_track(tr.program, tr.is_drum)
            if t is not None:
                ref[t, : tr.pianoroll.shape[0]] |= tr.pianoroll[:, 24:108] > 0
        assert np.array_equal(roll, ref), f


@needs_lpd
def test_prepare_real_subset(tmp_path):
    src = tmp_path / "lpd"
    src.mkdir()
    for f in music.find_songs(LPD_SAMPLE)[:60]:  # links to the MSD-id folders, not copies
        os.symlink(os.path.dirname(f), src / os.path.basename(os.path.dirname(f)))
    rep = data.prepare(str(src), str(tmp_path / "prep"), workers=2, progress=False)
    assert rep["songs_read"] == 60 and rep["songs_skipped"] == 0
    assert sum(rep["bars_per_split"].values()) > 60 * 30  # LPD songs run about 100 bars
    shares = rep["nonempty_bar_share"]
    assert all(0.2 < shares[t] < 1.0 for t in ("Drums", "Bass", "Strings"))
    ds = data.open_dataset(str(tmp_path / "prep"))
    b = next(data.batches(ds["train"], 32, seed=0, epoch=0))
    assert b.x.shape == (5, 32, 96, 84) and 0.001 < b.x.mean() < 0.1  # sparse, as pianorolls are


@needs_pop
def test_pop909_piano_parts_read():
    f = os.path.join(POP909, "001.mid")
    with pytest.raises(music.BadSong, match="only 4/4"):
        music.read_midi(f)  # POP909 files carry 1/4 and 2/4 signatures
    song = music.read_midi(f, require_44=False)
    assert song.roll[1].any() and not song.roll[[0, 2, 3, 4]].any()  # all three tracks are program 0: piano
    assert 60 < song.tempo < 200
