"""One drum kit per generated song (`music.keep_kit`, `TrainedModel.drum_kit`): the song's drums keep the
pieces they start most notes on and lose the rest."""

import json
import shutil

import numpy as np
import pytest

from vaejax import music, trained_model
from vaejax.config import DRUM_KIT, DRUMS


def _drums(hits: dict, steps: int = 96, pitches: int = 84) -> np.ndarray:
    """A drum part with `hits` `{pitch: [start steps]}`, each note two steps long."""
    roll = np.zeros((steps, pitches), bool)
    for pitch, starts in hits.items():
        for s in starts:
            roll[s : s + 2, pitch] = True
    return roll


def _pieces(roll: np.ndarray) -> set[int]:
    return set(np.flatnonzero(np.asarray(roll).any(axis=0)).tolist())


def test_the_most_played_pieces_stay_and_the_rest_fall_silent():
    roll = _drums({11: [0, 48], 14: [24, 72], 18: range(0, 96, 12), 35: [6], 60: [30, 60], 9: [90]})
    kept = music.keep_kit(roll, 3)
    # hi-hat (8 notes), then the kick, snare and the high piece (2 each): the tie goes to the lower pitches
    assert _pieces(kept) == {18, 11, 14}
    np.testing.assert_array_equal(kept[:, [11, 14, 18]], roll[:, [11, 14, 18]])  # kept pieces play as they did
    assert _pieces(music.keep_kit(roll, 4)) == {18, 11, 14, 60}
    assert _pieces(music.keep_kit(roll, 0)) == _pieces(roll) == _pieces(music.keep_kit(roll, 40))
    # a held note counts once: pitch 9 held for six steps is still one note
    held = roll.copy()
    held[90:96, 9] = True
    assert _pieces(music.keep_kit(held, 4)) == {18, 11, 14, 60}
    # counts from a song being continued keep its pieces
    counts = np.zeros(84, int)
    counts[35] = 5
    assert _pieces(music.keep_kit(roll, 3, counts=counts)) == {18, 35, 11}


def test_generated_songs_keep_one_kit_and_reconstructions_keep_theirs(tiny_run):
    model = trained_model.TrainedModel(tiny_run)
    assert model.drum_kit == DRUM_KIT
    free = model.with_options(drum_kit=0)
    songs = free.prior_bars(8, num=3, seed=5)  # [5, num, bars, T, P]
    pieces = [len(_pieces(songs[DRUMS, i].reshape(-1, 84))) for i in range(3)]
    kit = max(2, min(pieces) - 1)  # fewer pieces than some song plays
    small = model.with_options(drum_kit=kit)
    cut = small.prior_bars(8, num=3, seed=5)
    for i in range(3):
        assert len(_pieces(cut[DRUMS, i].reshape(-1, 84))) <= kit
        assert _pieces(cut[DRUMS, i].reshape(-1, 84)) <= _pieces(songs[DRUMS, i].reshape(-1, 84))
    assert max(pieces) > kit and not np.array_equal(cut[DRUMS], songs[DRUMS])
    np.testing.assert_array_equal(cut[1:], songs[1:])  # the other tracks are untouched
    # the same cut through sample() (Multitracks) and the chain
    for prior in ("transformer", "chain"):
        for song in small.sample(8, num=3, seed=5, prior=prior, min_length=0, merge_gap=0):
            drums = song.tracks[DRUMS].pianoroll
            assert len(set(np.flatnonzero(drums.any(axis=0)).tolist())) <= kit
    # reconstructions decode every piece the latents carry
    z = model.encode_bars(songs.reshape(5, -1, *songs.shape[3:]))
    np.testing.assert_array_equal(small.rolls(z), free.rolls(z))
    with pytest.raises(ValueError, match="drum_kit"):
        model.with_options(drum_kit=-1)
    with pytest.raises(ValueError, match="drum_kit"):
        model.with_options(drum_kit=2.5)


def test_a_folders_stats_choose_its_kit(tiny_run, tmp_path):
    from vaejax.runs import RunError, RunFolder

    folder = str(tmp_path / "run")
    shutil.copytree(tiny_run, folder)
    run = RunFolder(folder)
    stats = run.read_stats()
    run.write_stats({**stats, "drum_kit": 0})
    assert trained_model.TrainedModel(folder).drum_kit == 0
    with open(run.stats_path, "w") as f:
        json.dump({**stats, "drum_kit": "eight"}, f)
    with pytest.raises(RunError, match="stats.json.*drum_kit.*eight"):
        trained_model.TrainedModel(folder)
