"""Rhythm realism: statistics on the sixteenth grid and the two-sample classifier test."""

import numpy as np
import pytest

from vaejax import realism


def _song(bars, positions, length, pitch=40, tracks=5, steps=96):
    """A `[5, bars*steps, 84]` roll with a note at each sixteenth of `positions` in every bar, `length` steps
    long, in every track."""
    x = np.zeros((tracks, bars * steps, 84), bool)
    for b in range(bars):
        for p in positions:
            s = b * steps + p * 6
            x[:, s : s + length, pitch] = True
    return x


def test_rhythm_stats_on_a_known_rhythm():
    song = _song(4, [0, 3, 6, 10], length=12)  # notes on sixteenths 0, 3, 6 and 10, two sixteenths long
    st = realism.rhythm_stats(song[None])["Piano"]
    hist = np.asarray(st["onset_hist"])
    assert hist[[0, 3, 6, 10]].tolist() == [0.25] * 4 and hist.sum() == pytest.approx(1)
    assert st["onsets_per_bar"] == 4 and st["mean_length"] == pytest.approx(2.0)
    assert st["length_hist"][1] == 1.0  # every note in the "2 sixteenths" bin
    assert st["pitches_per_bar"] == 1  # one pitch, four times a bar
    chord = realism.rhythm_stats((_song(2, [0], 12, pitch=40) | _song(2, [8], 12, pitch=47))[None])
    assert chord["Piano"]["pitches_per_bar"] == 2
    assert realism.compare(chord, realism.rhythm_stats(song[None]))["Piano"]["pitches_ratio"] == pytest.approx(2.0)


def test_onsets_one_step_early_count_at_the_next_sixteenth():
    x = np.zeros((5, 96, 84), bool)
    x[:, 23:30, 10] = True  # one step before beat 2: sixteenth 4
    x[:, 95:96, 12] = True  # the bar's last step: the next downbeat (position 0)
    hist = realism.rhythm_stats(x[None])["Bass"]["onset_hist"]
    assert hist[4] == 0.5 and hist[0] == 0.5


def test_compare_is_zero_for_equal_and_one_for_disjoint_rhythms():
    a = realism.rhythm_stats(_song(2, [0, 8], 6)[None])
    b = realism.rhythm_stats(_song(2, [2, 6], 6)[None])
    same = realism.compare(a, a)["Piano"]
    assert same["onset_tv"] == 0 and same["onsets_ratio"] == 1 and same["length_ratio"] == 1
    assert realism.compare(a, b)["Piano"]["onset_tv"] == pytest.approx(1.0)


def test_phrase_features_shape_and_names():
    songs = np.stack([_song(8, [0, 4], 6), _song(8, [2], 30)])
    f, g = realism.phrase_features(songs, phrase_bars=4)
    assert f.shape == (4, len(realism.feature_names())) and g.tolist() == [0, 0, 1, 1]
    assert np.isfinite(f).all()


def _corpus(rng, n, positions):
    return np.stack(
        [
            _song(
                8,
                sorted(rng.choice(positions, size=3, replace=False)),
                int(rng.integers(3, 12)),
                pitch=int(rng.integers(30, 50)),
            )
            for _ in range(n)
        ]
    )


def test_classifier_tells_a_different_rhythm_and_not_the_same_one():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    on_beats = _corpus(rng, 30, [0, 4, 8, 12])
    also_on_beats = _corpus(rng, 30, [0, 4, 8, 12])
    syncopated = _corpus(rng, 30, [1, 3, 7, 11, 14])
    fa, ga = realism.phrase_features(on_beats)
    fb, gb = realism.phrase_features(syncopated)
    fc, gc = realism.phrase_features(also_on_beats)
    names = realism.feature_names()
    apart = realism.two_sample_test(fa, fb, ga, gb, names=names)
    alike = realism.two_sample_test(fa, fc, ga, gc, names=names)
    assert apart["accuracy"] > 0.9
    assert alike["accuracy"] < 0.75
    assert any("onset@" in name for name, _ in apart["top_features"][:3])  # what separates them is rhythm


def test_another_classifier_can_be_dropped_in():
    class Majority:  # predicts the training majority: no better than chance on balanced folds
        def __init__(self, seed):
            pass

        def fit(self, x, y):
            self.label = float(np.round(y.mean()))

        def predict(self, x):
            return np.full(len(x), self.label)

    rng = np.random.default_rng(1)
    a, ga = realism.phrase_features(_corpus(rng, 20, [0, 4, 8, 12]))
    b, gb = realism.phrase_features(_corpus(rng, 20, [1, 3, 7, 11]))
    out = realism.two_sample_test(a, b, ga, gb, make_classifier=Majority)
    assert out["accuracy"] <= 0.7 and "top_features" not in out


def test_passage_stats_pools_chunks_and_reads_multi_bar_segments():
    """Passages read a few at a time and pooled give the statistics of all of them at once, also where a
    segment holds two bars (the passage is then twice as many bars as segments)."""
    from types import SimpleNamespace

    from vaejax.config import DataConfig

    rng = np.random.default_rng(0)
    songs = rng.random((5, 5, 6, 192, 12)) < 0.04  # 5 songs, 5 tracks, 6 segments of 2 bars, 12 pitches
    split = SimpleNamespace(cfg=DataConfig(segment_bars=2), song=lambda i: songs[i])
    windows = [(i, i % 3) for i in range(5)]
    got = realism.passage_stats(split, windows, 3, chunk=2)
    real = np.stack([songs[i][:, f : f + 3].reshape(5, 3 * 192, 12) for i, f in windows])
    want = realism.rhythm_stats(real, steps_per_bar=96)
    for t in want:
        assert got[t]["notes"] == want[t]["notes"] and got[t]["bars_played"] == want[t]["bars_played"]
        for k in ("onset_hist", "length_hist"):
            np.testing.assert_allclose(got[t][k], want[t][k], atol=1e-12)
        for k in ("onsets_per_bar", "mean_length"):
            assert got[t][k] == pytest.approx(want[t][k])
