"""Metrics on hand-made pianorolls with exact expected values, including the known defects of public code."""

import numpy as np
import pytest

from vaejax import metrics as M

LOW = 24  # row 0 is C1


def bars(n=1, t=96, p=84):
    return np.zeros((n, t, p), bool)


def row(pitch):
    return pitch - LOW


def test_empty_bar_rate():
    b = bars(4)
    b[1, 0, 0] = True
    assert M.empty_bar_rate(b) == 0.75


def test_empty_beat_rate_counts_empty_beats():
    b = bars(1)
    b[0, 0:3, 10] = True  # only beat 1 of 4 sounds
    assert M.empty_beat_rate(b) == 0.75  # pypianoroll 1.0.4 would say 0.25


def test_octave_is_one_pitch_class():
    b = bars(1)
    b[0, 0:24, row(48)] = True  # C3
    b[0, 0:24, row(60)] = True  # C4
    assert M.used_pitch_classes(b, LOW) == 1.0  # reshape(12, -1) folding would count 2
    b[0, 24:48, row(61)] = True  # C#4
    assert M.used_pitch_classes(b, LOW) == 2.0


def test_upc_ignores_empty_bars():
    b = bars(2)
    b[0, 0, row(60)] = b[0, 0, row(64)] = b[0, 0, row(67)] = True
    assert M.used_pitch_classes(b, LOW) == 3.0


def test_qualified_notes_measured_along_time():
    b = bars(1)
    b[0, 0:1, 10] = True  # 1 step: not qualified
    b[0, 10:12, 11] = True  # 2 steps: not qualified (MuseGAN code's default threshold 2 would count it)
    b[0, 20:23, 12] = True  # 3 steps: qualified
    b[0, 30:60, 13] = True  # long: qualified
    assert M.note_lengths(b).tolist() == [1, 2, 3, 30]
    assert M.qualified_note_rate(b) == 0.5


def test_repeated_notes_are_separate():
    b = bars(1)
    b[0, 0:5, 10] = True
    b[0, 6:11, 10] = True
    assert sorted(M.note_lengths(b).tolist()) == [5, 5]


def test_drum_pattern_rate():
    b = bars(1)
    for t in range(0, 96, 6):
        b[0, t, 12] = True  # 16 onsets on the 16th grid
    assert M.drum_pattern_rate(b) == 1.0
    b2 = bars(1)
    for t in range(1, 96, 6):
        b2[0, t, 12] = True  # the same grid shifted by one step: the best phase still matches
    assert M.drum_pattern_rate(b2) == 1.0
    b3 = bars(1)
    b3[0, 0, 12] = b3[0, 3, 12] = True  # one on the grid, one half-way between: (1 + 0) / 2
    assert M.drum_pattern_rate(b3) == 0.5
    b4 = bars(1)
    b4[0, 0, 12] = b4[0, 7, 12] = True  # one on, one a step off: (1 + 0.3) / 2
    assert M.drum_pattern_rate(b4) == pytest.approx(0.65)


def test_polyphony():
    b = bars(1)
    b[0, 0:10, 10] = True
    b[0, 5:10, 14] = True
    assert M.polyphony_rate(b) == 0.5
    assert M.polyphony(b) == 1.5


def test_tonal_distance():
    a = bars(1)
    a[0, :, row(60)] = a[0, :, row(64)] = a[0, :, row(67)] = True  # C major
    assert M.tonal_distance(a, a.copy(), LOW) == 0.0
    octave = bars(1)
    octave[0, :, row(48)] = octave[0, :, row(52)] = octave[0, :, row(55)] = True  # C major an octave down
    assert M.tonal_distance(a, octave, LOW) == pytest.approx(0.0, abs=1e-12)
    fs = bars(1)
    fs[0, :, row(66)] = fs[0, :, row(70)] = fs[0, :, row(73)] = True  # F# major: far from C
    c_maj = np.zeros(12)
    c_maj[[0, 4, 7]] = 1 / 3
    f_maj = np.zeros(12)
    f_maj[[6, 10, 1]] = 1 / 3
    m = M._tonal_matrix()
    assert M.tonal_distance(a, fs, LOW) == pytest.approx(np.linalg.norm(m @ c_maj - m @ f_maj))
    assert M.tonal_distance(a, bars(1), LOW) != M.tonal_distance(a, bars(1), LOW)  # nan: nothing to compare


def test_chroma_agreement():
    a = bars(1)
    a[0, :, row(60)] = a[0, :, row(64)] = a[0, :, row(67)] = True  # C major
    octave = bars(1)
    octave[0, :, row(48)] = octave[0, :, row(52)] = octave[0, :, row(55)] = True  # the same an octave down
    assert M.chroma_agreement(octave, a, LOW) == 1.0
    root = bars(1)
    root[0, :48, row(36)] = True  # the root (C) in the first two beats only
    assert M.chroma_agreement(root, a, LOW) == pytest.approx(1 / 3)  # beats where both sound: 1 of 3 classes
    fs = bars(1)
    fs[0, :, row(66)] = fs[0, :, row(70)] = fs[0, :, row(73)] = True  # F# major: no pitch class in common
    assert M.chroma_agreement(fs, a, LOW) == 0.0
    assert np.isnan(M.chroma_agreement(a, bars(1), LOW))  # nothing to compare


def test_all_metrics_keys():
    rng = np.random.default_rng(0)
    b5 = rng.random((5, 8, 96, 84)) < 0.02
    out = M.all_metrics(b5)
    assert {"EB Drums", "DP Drums", "UPC Piano", "QN Bass", "TD B-G", "TD S-P", "CA B-P"} <= set(out)
    assert all(np.isfinite(v) for v in out.values())


def test_precision_recall_f1_from_counts():
    p, r, f1 = M.prf(np.array([3, 0]), np.array([1, 0]), np.array([3, 5]))
    np.testing.assert_allclose(p, [0.75, 0.0])
    np.testing.assert_allclose(r, [0.5, 0.0])
    np.testing.assert_allclose(f1, [0.6, 0.0])


def test_scale_consistency():
    song = np.zeros((5, 2, 96, 84), bool)
    # 9 cells of C major's notes and 1 cell of F#: 90% in the best scale (C major or any scale holding all 9)
    for i, pitch in enumerate((60, 62, 64, 65, 67, 69, 71, 72, 74)):
        song[1, 0, i, row(pitch)] = True
    song[3, 1, 0, row(42)] = True  # F#2 on the bass
    song[0, :, :, :] = True  # drums are not pitched: ignored
    assert M.scale_consistency(song, LOW) == pytest.approx(0.9)
    assert np.isnan(M.scale_consistency(np.zeros((5, 1, 96, 84), bool), LOW))
    # per song in all_metrics: the second song is all F# (100% in G major), the first 90%
    two = np.concatenate([song, np.zeros_like(song)], axis=1)
    two[3, 2:, 0, row(42)] = True
    assert M.all_metrics(two, LOW, song_bars=2)["SC"] == pytest.approx(95.0)
