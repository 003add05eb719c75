"""Sustain factors per age of a note (`models.decode_notes(sustain_ages=...)`) and their calibration
(`training.calibration.fit_decoding(age_grid=...)`): notes that end after one sixteenth set apart from how
long the longer ones last."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import models, realism, trained_model
from vaejax.config import AGE_INDEX, SUSTAIN_AGES
from vaejax.training import calibration


def _probs(m: int, seed: int = 0) -> np.ndarray:
    """Fixed decoder maps `[5, m, 3, 16, 84]`: onsets on a few pitches, sustain probabilities that wander."""
    r = np.random.default_rng(seed)
    probs = np.zeros((5, m, 3, 16, 84), np.float32)
    probs[:, :, 0] = r.uniform(0.05, 1.0, probs[:, :, 0].shape)
    probs[:, :, 1] = (r.random(probs[:, :, 1].shape) < 0.01) * 0.9
    return probs


def _decode(probs, sustain) -> np.ndarray:
    """`[5, m, 96, 84]`: each track's notes at onset threshold 0.5 with sustain `[5]` or `[5, ages]`."""
    table = np.asarray(sustain, np.float32)
    table = np.repeat(table[:, None], SUSTAIN_AGES, 1) if table.ndim == 1 else table
    th = jnp.asarray(np.tile(np.array([[0.5, 0.5, 6.0]], np.float32), (5, 1)))
    return np.asarray(
        jax.vmap(lambda p, t, a: models.decode_notes(p, t, sub=6, sustain_ages=a))(jnp.asarray(probs), th, table)
    )


def _lengths(roll) -> np.ndarray:
    """Lengths in sixteenths of the notes of a `[m, 96, 84]` track (bar by bar)."""
    out = []
    for bar in roll:
        _, length, _, _ = realism.note_table(bar, 6)
        out.append(np.maximum(np.round(length / 6), 1))
    return np.concatenate(out)


def test_one_factor_at_every_age_decodes_as_before_and_ages_set_apart_short_notes():
    probs = _probs(64)
    th = jnp.asarray(np.tile(np.array([[0.5, 0.5, 6.0]], np.float32), (5, 1)))
    plain = np.asarray(jax.vmap(lambda p, t: models.decode_notes(p, t, sub=6))(jnp.asarray(probs), th))
    np.testing.assert_array_equal(_decode(probs, np.full(5, 0.5)), plain)  # the same factor at every age
    base = _lengths(_decode(probs, np.full(5, 0.5))[1])
    # the first factor decides whether a note outlasts its first sixteenth, the rest how long the others last
    short = _lengths(_decode(probs, np.tile([[0.95, 0.5, 0.5, 0.5]], (5, 1)))[1])
    assert (short == 1).mean() > (base == 1).mean() + 0.2
    held = _lengths(_decode(probs, np.tile([[0.5, 0.5, 0.5, 0.05]], (5, 1)))[1])
    assert (held == 1).mean() == pytest.approx((base == 1).mean()) and held[held >= 5].mean() > base[base >= 5].mean()
    assert AGE_INDEX[1] == 0 and AGE_INDEX[-1] == SUSTAIN_AGES - 1


def test_calibration_fits_the_length_histogram_one_factor_cannot():
    """Passages whose notes end after one sixteenth far more often than the decoders' own, and last long
    otherwise: the calibration's one factor matches their mean length but not their histogram; per age, it
    matches both (drums, with no sustain, keep theirs)."""
    probs = _probs(64, seed=1)
    truth = np.tile([[0.9, 0.3, 0.3, 0.2]], (5, 1)).astype(np.float32)
    truth[0] = 2.0
    steps = lambda roll: np.moveaxis(roll.reshape(5, 8, 8 * 96, 84), 0, 1)  # noqa: E731
    want = realism.rhythm_stats(steps(_decode(probs, truth)))
    cuts = np.full((5, 16), 0.5, np.float32)

    def measure(c, scale, sustain, spread):
        return realism.rhythm_stats(steps(_decode(probs, sustain)))

    start = np.array([2.0, 0.5, 0.5, 0.5, 0.5], np.float32)
    _, _, one, _, history, ages = calibration.fit_decoding(
        measure,
        want,
        cuts,
        np.ones(5),
        start,
        rounds=0,
        min_scale=1.0,
        sustain_grid=(0.2, 0.3, 0.4, 0.5, 0.6),
        age_grid=(0.1, 0.2, 0.3, 0.5, 0.7, 0.9),
    )
    # the one factor for the mean length (kept: reconstructions without ages decode with it), the ages after
    assert one.shape == (5,) and ages.shape == (5, SUSTAIN_AGES) and (ages[0] == 2.0).all() and one[0] == 2.0

    def tv(sustain, t):
        got = measure(cuts, None, sustain, None)[t]["length_hist"]
        return 0.5 * np.abs(np.subtract(got, want[t]["length_hist"])).sum()

    for i, t in enumerate(("Piano", "Guitar", "Bass", "Strings"), start=1):
        assert abs(history[-1][t]["length_ratio"] - 1) < 0.1, (t, history[-1][t])
        assert tv(ages, t) < 0.05 and tv(one, t) > 0.1, (t, tv(ages, t), tv(one, t), ages[i])


def test_a_model_reads_its_ages_and_refuses_bad_ones(tmp_path):
    from vaejax import packaging
    from vaejax.runs import RunError, RunFolder

    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("the packaged model lpd5 is absent")
    m = trained_model.load("lpd5")
    assert m.sustain_ages.shape == m.prior_sustain_ages.shape == (5, SUSTAIN_AGES)
    for key, got in (("sustain_ages", m.sustain_ages), ("prior_sustain_ages", m.prior_sustain_ages)):
        if key in m.stats:  # calibrated per age: decoded with those
            np.testing.assert_allclose(got, m.stats[key])
    flat = m.with_decoding(m.onset_cuts, m.count_scale, m.thresholds[:, 0])
    assert (flat.sustain_ages == m.thresholds[:, 0, None]).all()
    table = np.tile([[0.9, 0.5, 0.4, 0.3]], (5, 1))
    drawn = m.with_prior_decoding(m.prior_onset_cuts, m.prior_count_scale, table)
    np.testing.assert_allclose(drawn.prior_sustain_ages, table)
    np.testing.assert_allclose(drawn.sustain_ages, m.sustain_ages)  # reconstructions keep theirs
    with pytest.raises(ValueError, match="decoding of shapes"):
        m.with_decoding(m.onset_cuts, m.count_scale, np.ones((5, 3)))
    stats = dict(m.stats)
    for bad in ([[0.5] * SUSTAIN_AGES] * 4, [[0.0] + [0.5] * (SUSTAIN_AGES - 1)] * 5):
        with pytest.raises(RunError, match="sustain_ages of shape"):
            RunFolder(m.run_dir).check_stats({**stats, "sustain_ages": bad}, m.cfg, m.start_bars)
