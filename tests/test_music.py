"""Reading npz and MIDI into LPD-5 bars: exact expectations on hand-built inputs."""

import os
import zipfile

import numpy as np
import pretty_midi
import pytest

from vaejax import data, music
from vaejax.config import DataConfig

from conftest import save_npz


@pytest.mark.parametrize(
    "program,is_drum,track",
    [
        (0, True, 0),
        (127, True, 0),  # any drum track -> Drums
        (0, False, 1),
        (7, False, 1),  # 0-7 -> Piano
        (24, False, 2),
        (31, False, 2),  # 24-31 -> Guitar
        (32, False, 3),
        (39, False, 3),  # 32-39 -> Bass
        (8, False, 4),
        (48, False, 4),
        (95, False, 4),
        (104, False, 4),
        (111, False, 4),  # Strings
        (96, False, None),
        (103, False, None),
        (112, False, None),
        (127, False, None),  # dropped
    ],
)
def test_lpd5_merge_rule(program, is_drum, track):
    assert music.lpd5_track(program, is_drum) == track


def test_npz_to_bars_exact(tmp_path):
    # two piano-family tracks merge (logical or), a dropped program vanishes, bass lands in row 3
    path = save_npz(
        tmp_path / "a.npz",
        [
            (0, False, {(0, 60): 100, (1, 60): 100}),
            (5, False, {(0, 64): 50, (100, 60): 30}),
            (33, False, {(10, 36): 80}),
            (120, False, {(5, 70): 90}),
            (0, True, {(3, 36): 127, (4, 23): 127}),  # pitch 23 is below C1: cut by the pitch range
        ],
        length=200,
    )
    song = music.read_npz(str(path))
    bars = music.to_bars(song.roll)
    assert bars.shape == (2, 5, 96, 84)  # 200 steps -> 2 whole bars, the rest dropped
    on = {tuple(x) for x in np.argwhere(bars)}
    assert on == {(0, 1, 0, 36), (0, 1, 1, 36), (0, 1, 0, 40), (1, 1, 4, 36), (0, 3, 10, 12), (0, 0, 3, 12)}


def test_npz_binarisation_threshold(tmp_path):
    path = save_npz(tmp_path / "b.npz", [(0, False, {(0, 60): 10, (1, 61): 90})], length=96)
    roll = music.read_npz(str(path), DataConfig(velocity_threshold=50)).roll
    assert np.argwhere(roll).tolist() == [[1, 1, 37]]


def test_npz_not_44_is_skipped(tmp_path):
    path = save_npz(tmp_path / "w.npz", [(0, False, {(0, 60): 100})], length=288, downbeat_every=72)
    with pytest.raises(music.BadSong, match="not 4/4"):
        music.read_npz(str(path))


def test_real_lpd_layout_with_beat_resolution(tmp_path):
    """pypianoroll 0.x files (LPD) say beat_resolution instead of resolution."""
    path = save_npz(tmp_path / "old.npz", [(0, False, {(5, 60): 100})], length=96)
    with zipfile.ZipFile(path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members["info.json"] = members["info.json"].replace(b'"resolution"', b'"beat_resolution"')
    with zipfile.ZipFile(path, "w") as z:
        for n, b in members.items():
            z.writestr(n, b)
    assert np.argwhere(music.read_npz(str(path)).roll).tolist() == [[1, 5, 36]]


def _midi(path, notes, ts=(4, 4), tempo=120.0, program=0, is_drum=False):
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    if ts:
        pm.time_signature_changes.append(pretty_midi.TimeSignature(ts[0], ts[1], 0.0))
    inst = pretty_midi.Instrument(program=program, is_drum=is_drum)
    for start, end, pitch in notes:
        inst.notes.append(pretty_midi.Note(velocity=100, pitch=pitch, start=start, end=end))
    pm.instruments.append(inst)
    pm.write(str(path))
    return str(path)


def test_midi_quantised_to_beat_grid(tmp_path):
    # 120 bpm: one beat = 0.5 s = 24 steps; the second note starts 5 ms off the grid and snaps to it
    path = _midi(tmp_path / "m.mid", [(0.5, 0.75, 60), (2.005, 2.25, 72)], program=33)
    roll = music.read_midi(path).roll
    cells = {tuple(x) for x in np.argwhere(roll)}
    assert cells == {(3, t, 36) for t in range(24, 36)} | {(3, t, 48) for t in range(96, 108)}
    assert roll.shape[1] == 192  # the last bar, played only in part, is kept whole
    assert music.to_bars(roll).shape == (2, 5, 96, 84)


def test_midi_exact_roll(tmp_path):
    path = _midi(tmp_path / "e.mid", [(0.0, 0.5, 60), (1.0, 1.25, 64), (1.75, 2.0, 67)], tempo=120)
    roll = music.read_midi(path).roll
    assert roll.shape[1] >= 96
    cells = {tuple(x) for x in np.argwhere(roll)}
    expected = (
        {(1, t, 36) for t in range(0, 24)} | {(1, t, 40) for t in range(48, 60)} | {(1, t, 43) for t in range(84, 96)}
    )
    assert cells == expected


def test_midi_tempo_change_keeps_beats(tmp_path):
    """Quantisation follows the beat grid, not seconds: after a tempo change a beat is still 24 steps."""
    pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
    # a second tempo (60 bpm) from 2 s (beat 4); pretty_midi has no public setter, write raw ticks
    pm._tick_scales.append((pm.time_to_tick(2.0), 60.0 / (60.0 * pm.resolution)))
    pm._update_tick_to_time(pm.time_to_tick(10.0))
    inst = pretty_midi.Instrument(program=0)
    inst.notes.append(pretty_midi.Note(velocity=100, pitch=60, start=3.0, end=4.0))  # beat 5 to beat 6
    pm.instruments.append(inst)
    pm.write(str(tmp_path / "t.mid"))
    roll = music.read_midi(str(tmp_path / "t.mid")).roll
    assert {tuple(x) for x in np.argwhere(roll)} == {(1, t, 36) for t in range(120, 144)}


def test_midi_three_four_skipped(tmp_path):
    path = _midi(tmp_path / "w.mid", [(0, 1, 60)], ts=(3, 4))
    with pytest.raises(music.BadSong, match="3/4"):
        music.read_midi(path)


def test_midi_no_notes(tmp_path):
    path = _midi(tmp_path / "n.mid", [])
    with pytest.raises(music.BadSong, match="no notes"):
        music.read_midi(path)


def test_random_bytes_named_mid(tmp_path):
    p = tmp_path / "r.mid"
    p.write_bytes(os.urandom(300))
    with pytest.raises(music.BadSong, match="not a readable MIDI"):
        music.read_song(str(p))


def test_truncated_npz(tmp_path):
    path = save_npz(tmp_path / "t.npz", [(0, False, {(0, 60): 100})], length=96)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(music.BadSong, match="corrupt npz"):
        music.read_song(str(path))


def test_pickled_npz_refused(tmp_path):
    p = tmp_path / "p.npz"
    np.savez(p, evil=np.array([{"a": 1}], dtype=object))
    with zipfile.ZipFile(p, "a") as z:
        z.writestr("info.json", '{"resolution": 24, "0": {"program": 0, "is_drum": false, "name": "x"}}')
    with pytest.raises(music.BadSong):
        music.read_song(str(p))
    # the object array itself: numpy must refuse rather than unpickle
    p2 = tmp_path / "p2.npz"
    np.savez(p2, pianoroll_0_csc_data=np.array([object()], dtype=object))
    with zipfile.ZipFile(p2, "a") as z:
        z.writestr("info.json", '{"resolution": 24, "0": {"program": 0, "is_drum": false, "name": "x"}}')
    with pytest.raises(music.BadSong, match="pickled"):
        music.read_song(str(p2))


def test_missing_file():
    with pytest.raises(music.BadSong, match="no such file"):
        music.read_song("/nonexistent/song.mid")


def test_pack_roundtrip():
    rng = np.random.default_rng(0)
    bars = rng.random((3, 5, 96, 84)) < 0.1
    assert np.array_equal(data.unpack(data.pack(bars), 84), bars)


def test_song_id_uses_msd_folder(tmp_path):
    assert music.song_id("/x/TRAAAGR128F425B14B/abc.npz") == "TRAAAGR128F425B14B"
    assert music.song_id("/x/y/song.mid") == "song"


def test_pack_song_equals_pack_of_bars():
    rng = np.random.default_rng(3)
    roll = rng.random((5, 96 * 3 + 17, 84)) < 0.05
    assert np.array_equal(data.pack_song(roll), data.pack(music.to_bars(roll)))


def test_piano_part_is_the_piano_or_every_pitched_track_merged():
    roll = np.zeros((5, 8, 84), bool)
    roll[2, 0, 40] = roll[4, 3, 50] = True  # guitar and strings, no piano
    part, merged = music.piano_part(roll)
    assert merged and part.sum() == 2 and part[0, 40] and part[3, 50]
    roll[0, 1, 10] = True  # drums never join the merged part
    assert music.piano_part(roll)[0].sum() == 2
    roll[1, 5, 60] = True  # with a piano, the piano alone
    part, merged = music.piano_part(roll)
    assert not merged and part.sum() == 1 and part[5, 60]
