"""An arrangement keeps the given MIDI part note for note (times, durations, velocities, its tracks), the
file's tempo map, time signatures and length, and puts the generated band on the file's beats and bars, also
where the tempo changes."""

import os

import mido
import numpy as np
import pretty_midi
import pytest

from vaejax import cli, music, render, trained_model
from vaejax.config import TRACKS

from conftest import POP909, ROOT

BAND = [0, 2, 3, 4]


@pytest.fixture(scope="module")
def model(tiny_run):
    return trained_model.load(tiny_run)


def _notes(inst):
    return [(n.pitch, n.start, n.end, n.velocity) for n in sorted(inst.notes, key=lambda n: (n.start, n.pitch, n.end))]


def assert_given_part_kept(src: str, out: str):
    """The output holds the source's given part exactly, its tempo map, signatures and length in ticks."""
    a, b = pretty_midi.PrettyMIDI(src), pretty_midi.PrettyMIDI(out)
    given = render.given_part(a)
    kept = [inst for inst in b.instruments if inst.name not in TRACKS or inst.name == "Piano"]
    assert [(i.name, i.program, i.is_drum) for i in kept] == [(i.name, i.program, i.is_drum) for i in given]
    for x, y in zip(given, kept):
        nx, ny = _notes(x), _notes(y)
        assert len(nx) == len(ny)
        np.testing.assert_array_equal(np.array(nx)[:, [0, 3]], np.array(ny)[:, [0, 3]])  # pitches, velocities
        np.testing.assert_allclose(np.array(nx)[:, 1:3], np.array(ny)[:, 1:3], atol=1e-9)  # onsets, offsets
    for x, y in zip(a.get_tempo_changes(), b.get_tempo_changes()):
        np.testing.assert_allclose(x, y, rtol=1e-6)
    assert [(t.numerator, t.denominator, t.time) for t in a.time_signature_changes] == [
        (t.numerator, t.denominator, t.time) for t in b.time_signature_changes
    ]
    ma, mb = mido.MidiFile(src), mido.MidiFile(out)
    assert mb.ticks_per_beat == ma.ticks_per_beat
    assert max(sum(m.time for m in t) for t in mb.tracks) == max(sum(m.time for m in t) for t in ma.tracks)
    assert mb.length == pytest.approx(ma.length, abs=1e-9)


def _pop909_files():
    files = [os.path.join(ROOT, "examples", "pop909-001-piano.mid")]
    for name in ("002.mid", "003.mid"):  # song 002 changes tempo 16 times
        files.append(
            pytest.param(
                os.path.join(POP909, name),
                marks=[
                    pytest.mark.realdata,
                    pytest.mark.skipif(not os.path.exists(os.path.join(POP909, name)), reason=f"{POP909} absent"),
                ],
            )
        )
    return files


@pytest.mark.parametrize("src", _pop909_files(), ids=lambda p: os.path.basename(str(p)))
def test_sample_arrange_keeps_pop909_part(model, src, tmp_path):
    """`sample.py --arrange` on POP909 songs (three program-0 tracks; song 002 has 16 tempo changes)."""
    out = tmp_path / "o"
    assert (
        cli.sample_main(
            [
                "--checkpoint",
                model.run_dir,
                "--arrange",
                src,
                "--tracks",
                "drums,bass,strings",
                "--bars",
                "4",
                "--no-audio",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    mid = str(out / "arrangement.mid")
    assert_given_part_kept(src, mid)
    names = [t.name for t in mido.MidiFile(mid).tracks]  # pretty_midi would skip a band track without notes
    assert names[-3:] == ["Drums", "Bass", "Strings"] and "Guitar" not in names


@pytest.mark.realdata
def test_pop909_002_changes_tempo():
    if not os.path.exists(os.path.join(POP909, "002.mid")):
        pytest.skip(f"{POP909} absent: the tempo-changing POP909 song is not tested")
    assert len(pretty_midi.PrettyMIDI(os.path.join(POP909, "002.mid")).get_tempo_changes()[0]) > 1


def _tempo_changing_song(path: str) -> str:
    """Two 4/4 bars at 120 bpm, two at 75, two at 150 (tempo events mid-file), a 3/4 bar, then 4/4 again;
    two piano tracks with varied velocities, a pedal, and a drum track that is not part of the given piece."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0, resolution=480)
    # pretty_midi writes tempo changes from its tick scales: (tick, seconds per tick)
    pm._tick_scales = [(0, 60 / (120 * 480)), (8 * 480, 60 / (75 * 480)), (16 * 480, 60 / (150 * 480))]
    pm._update_tick_to_time(40 * 480)
    pm.time_signature_changes = [
        pretty_midi.TimeSignature(4, 4, 0.0),
        pretty_midi.TimeSignature(3, 4, pm.tick_to_time(24 * 480)),
        pretty_midi.TimeSignature(4, 4, pm.tick_to_time(27 * 480)),
    ]
    right = pretty_midi.Instrument(program=0, name="right hand")
    left = pretty_midi.Instrument(program=1, name="left hand")
    rng = np.random.default_rng(0)
    for beat in range(31):
        t0, t1 = pm.tick_to_time(beat * 480), pm.tick_to_time(beat * 480 + 400)
        right.notes.append(pretty_midi.Note(int(rng.integers(40, 120)), 60 + (2, 4, 5, 7, 9)[beat % 5], t0, t1))
        if beat % 2 == 0:
            left.notes.append(pretty_midi.Note(70, 48, t0 + 0.013, pm.tick_to_time(beat * 480 + 910)))
    left.control_changes.append(pretty_midi.ControlChange(64, 127, pm.tick_to_time(480)))
    drums = pretty_midi.Instrument(program=0, is_drum=True, name="kit")
    drums.notes.append(pretty_midi.Note(100, 36, 0.0, 0.1))
    pm.instruments = [right, left, drums]
    pm.write(path)
    return path


def test_band_on_the_beats_of_a_tempo_changing_file(model, tmp_path):
    """`TrainedModel.arrange` then `render.write_midi(..., source=)`: the band's notes fall on the source's
    beat grid in ticks (a fixed-tempo placement would miss it after the first tempo change), and reading
    the file back gives the band roll that was written."""
    src = _tempo_changing_song(str(tmp_path / "tempo.mid"))
    song = music.read_song(src, model.cfg.data, require_44=False)
    mt = model.arrange(song.roll[1], sigma=0.5, seed=0)
    roll = music.from_multitrack(mt)
    np.testing.assert_array_equal(roll[1], song.roll[1])
    # a band that surely plays (a tiny model's may not): notes of 1-30 steps in every track, on the grid
    rng = np.random.default_rng(1)
    for t in BAND:
        for start in rng.choice(roll.shape[1] - 1, 40, replace=False):
            roll[t, start : start + int(rng.integers(1, 30)), int(rng.integers(84))] = True
    mt = render.to_multitrack(roll, tempo=120.0)
    band = roll[BAND]
    out = render.write_midi(str(tmp_path / "arranged.mid"), mt, source=src)
    assert_given_part_kept(src, out)
    pm = pretty_midi.PrettyMIDI(out)
    assert [i.name for i in pm.instruments] == ["right hand", "left hand"] + [TRACKS[t] for t in BAND]
    assert pm.instruments[1].control_changes[0].number == 64  # the pedal is kept; the source's drums are not
    step_ticks = 480 // model.cfg.data.resolution
    starts = np.array([pm.time_to_tick(n.start) for i in pm.instruments[2:] for n in i.notes])
    assert starts.size and (starts % step_ticks == 0).all()
    # the band read back onto the file's beat grid is the band the model made (up to the file's end)
    back = music.read_midi(out, model.cfg.data, require_44=False).roll[BAND]
    end = -(-max(sum(m.time for m in t) for t in mido.MidiFile(src).tracks) // step_ticks)  # the file's end
    n = min(back.shape[1], end)
    np.testing.assert_array_equal(back[:, : n - 1], band[:, : n - 1])
    assert not back[:, end:].any()
