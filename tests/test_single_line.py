"""A track decoded as one line (`models.decode_notes(line=...)`, `TrainedModel.single_line`): where notes
start, only the likeliest does, with its octaves, and it ends whatever else sounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vaejax import models, realism, trained_model
from vaejax.config import LINE_HARMONY, SINGLE_LINE, TRACKS

TH = jnp.asarray([0.5, 0.5, 6.0], jnp.float32)


def _bar(cells: dict, sustain: float = 0.9) -> np.ndarray:
    """One bar's decoder maps `[1, 3, 16, 84]`: onsets `{(cell, pitch): probability}`, every note sustained
    (probability `sustain`) from its onset to the end of the bar."""
    probs = np.zeros((1, 3, 16, 84), np.float32)
    for (cell, pitch), p in cells.items():
        probs[0, 1, cell, pitch] = p
        probs[0, 0, cell:, pitch] = sustain
    return probs


def _notes(roll) -> list[tuple[int, int, int]]:
    """(start step, length in steps, pitch) of each note of a `[1, T, P]` roll."""
    t_on, length, pitch, _ = realism.note_table(np.asarray(roll)[0], 6)
    return sorted(zip(t_on.tolist(), length.tolist(), pitch.tolist()))


def _decode(probs, line):
    return models.decode_notes(jnp.asarray(probs), TH, sub=6, line=line)


def test_the_likeliest_start_wins_keeps_its_octaves_and_ends_the_note_before_it():
    # a held note at pitch 10; at cell 4 a third above (0.6), the root (0.9) and its octave (0.7) start
    probs = _bar({(0, 10): 0.9, (4, 14): 0.6, (4, 5): 0.9, (4, 17): 0.7})
    free = _notes(_decode(probs, False))
    assert [p for _, _, p in free] == [10, 5, 14, 17]  # as decoded without the rule: four voices
    one = _notes(_decode(probs, True))
    assert [(s, p) for s, _, p in one] == [(0, 10), (24, 5), (24, 17)]  # the third dropped, the octave kept
    assert one[0][1] <= 24  # the first note ended where the next started
    roll = np.asarray(_decode(probs, True))[0]
    pitches_sounding = {tuple(np.flatnonzero(row)) for row in roll if row.any()}
    assert pitches_sounding == {(10,), (5, 17)}
    # an octave of the new note, already sounding, sounds on
    held = _notes(_decode(_bar({(0, 17): 0.9, (8, 5): 0.9}), True))
    assert [(s, p) for s, _, p in held] == [(0, 17), (48, 5)] and held[0][1] == 96


def test_the_pianos_harmony_weighs_the_choice():
    # a fifth (0.8) and a third (0.6) start together; the piano plays the third's pitch class, not the fifth's
    probs = _bar({(0, 19): 0.8, (0, 16): 0.6})
    prefer = np.zeros((1, 16, 84), np.float32)
    prefer[0, :, [4, 16, 28]] = 1.0  # pitch class of index 16 (index 0 is C)
    plain = models.decode_notes(jnp.asarray(probs), TH, sub=6, line=True)
    weighed = models.decode_notes(jnp.asarray(probs), TH, sub=6, line=True, prefer=jnp.asarray(prefer))
    assert [p for _, _, p in _notes(plain)] == [19] and [p for _, _, p in _notes(weighed)] == [16]
    assert LINE_HARMONY > (0.8 / 0.6) - 1  # what made the third win
    free = models.decode_notes(jnp.asarray(probs), TH, sub=6, prefer=jnp.asarray(prefer))
    np.testing.assert_array_equal(free, models.decode_notes(jnp.asarray(probs), TH, sub=6))  # no line: no effect


def test_line_is_traced_per_track_and_changes_nothing_where_off():
    r = np.random.default_rng(0)
    probs = np.zeros((3, 8, 3, 16, 84), np.float32)
    probs[:, :, 0] = r.uniform(0.05, 1.0, probs[:, :, 0].shape)
    probs[:, :, 1] = (r.random(probs[:, :, 1].shape) < 0.02) * r.uniform(0.5, 1.0, probs[:, :, 1].shape)
    th = jnp.tile(TH[None], (3, 1))
    run = jax.jit(jax.vmap(lambda p, t, ln: models.decode_notes(p, t, sub=6, line=ln)))
    got = np.asarray(run(jnp.asarray(probs), th, jnp.asarray([False, True, False])))
    plain = np.asarray(jax.vmap(lambda p, t: models.decode_notes(p, t, sub=6))(jnp.asarray(probs), th))
    np.testing.assert_array_equal(got[[0, 2]], plain[[0, 2]])  # off: exactly the decoding without the rule
    assert not np.array_equal(got[1], plain[1])
    # on: one pitch class at a time wherever the track sounds (octave doublings only)
    for step in got[1].reshape(-1, 84):
        assert len(set(np.flatnonzero(step) % 12)) <= 1
    assert (plain[1].reshape(-1, 84).sum(-1) >= 2).mean() > 0.2  # the random maps did ask for chords


def _one_line(roll) -> bool:
    """Whether a `[T, P]` roll sounds one pitch class at a time, but for single steps where a note starting
    a step early overlaps the one it follows."""
    classes = [set(np.flatnonzero(s) % 12) for s in roll]
    return all(
        len(c) <= 1 or (len(classes[t - 1]) <= 1 and t + 1 < len(roll) and len(classes[t + 1]) <= 1)
        for t, c in enumerate(classes)
    )


def test_model_decodes_generated_bass_as_one_line_reconstructions_as_trained(tiny_run):
    model = trained_model.TrainedModel(tiny_run)
    assert model.single_line == SINGLE_LINE == ("Bass",)
    bass, piano = TRACKS.index("Bass"), TRACKS.index("Piano")
    drawn = model.prior_bars(4, num=2, seed=3)
    assert _one_line(drawn[bass].reshape(-1, 84)) and not _one_line(drawn[piano].reshape(-1, 84))
    free = model.with_options(single_line=())
    assert free.single_line == () and model.single_line == ("Bass",)
    assert not np.array_equal(free.prior_bars(4, num=2, seed=3)[bass], drawn[bass])
    chords = model.with_options(single_line=["piano", "BASS"])
    assert chords.single_line == ("Piano", "Bass")
    assert _one_line(chords.prior_bars(4, num=2, seed=3)[piano].reshape(-1, 84))
    with pytest.raises(ValueError, match="Tuba"):
        model.with_options(single_line=("Tuba",))
    # a reconstruction decodes every track as trained: the rule is for generated bars
    z = model.encode_bars(
        drawn.reshape(5, -1, *drawn.shape[3:]) | free.prior_bars(4, num=2, seed=4).reshape(5, -1, 96, 84)
    )
    np.testing.assert_array_equal(model.rolls(z, single_line=()), free.rolls(z))
    assert not np.array_equal(model.rolls(z), free.rolls(z))


def test_a_folders_stats_choose_its_one_line_tracks(tiny_run, tmp_path):
    """`stats.json` may name the tracks decoded as one line (`[]`: none, as models decoded before the rule);
    an unknown name is refused with the file's name."""
    import json
    import shutil

    from vaejax.runs import RunError, RunFolder

    folder = str(tmp_path / "run")
    shutil.copytree(tiny_run, folder)
    run = RunFolder(folder)
    stats = run.read_stats()
    run.write_stats({**stats, "single_line": []})
    assert trained_model.TrainedModel(folder).single_line == ()
    run.write_stats({**stats, "single_line": ["strings", "Bass"]})
    assert trained_model.TrainedModel(folder).single_line == ("Strings", "Bass")
    with open(run.stats_path, "w") as f:
        json.dump({**stats, "single_line": ["Kazoo"]}, f)
    with pytest.raises(RunError, match="stats.json.*single_line.*Kazoo"):
        trained_model.TrainedModel(folder)
