"""Generation from a trained tiny run: MIDI read back, determinism, arrangement, CLI errors."""

import os
import subprocess
import sys

import numpy as np
import pretty_midi
import pytest

import vaejax
from vaejax import cli, music, packaging, render, trained_model

from conftest import ROOT


@pytest.fixture(scope="module")
def model(tiny_run):
    return trained_model.load(tiny_run)


def _roll(mt):
    return music.from_multitrack(mt)


def test_midi_written_and_read_back(model, tmp_path):
    mt = model.sample(bars=6, sigma=0.5, seed=3, sustain=0.3)[0]
    roll = _roll(mt)
    roll[:, 0, 20] = True  # every track sounds at least once, so that a MIDI reader keeps all five
    mt = render.to_multitrack(roll, tempo=120.0)
    path = render.write_midi(str(tmp_path / "s.mid"), mt)
    pm = pretty_midi.PrettyMIDI(path)
    assert [(i.name, i.program, i.is_drum) for i in pm.instruments] == [
        ("Drums", 0, True),
        ("Piano", 0, False),
        ("Guitar", 24, False),
        ("Bass", 32, False),
        ("Strings", 48, False),
    ]
    assert abs(pm.get_tempo_changes()[1][0] - 120.0) < 1e-3
    assert mt.tracks[1].pianoroll.shape[0] == 6 * 96
    # read back through the project's own reader: identical roll (for the notes the MIDI holds)
    from vaejax.music import read_midi

    back = read_midi(path).roll
    orig = _roll(mt)
    n = min(back.shape[1], orig.shape[1])
    assert np.array_equal(back[:, :n], orig[:, :n]) and not orig[:, n:].any()


def _notes_of(pm):
    return [
        (
            i.name,
            i.program,
            i.is_drum,
            sorted((n.pitch, round(n.start, 6), round(n.end, 6), n.velocity) for n in i.notes),
        )
        for i in pm.instruments
    ]


def _channels(blob: bytes) -> list[int]:
    import io

    import mido

    return [m.channel for t in mido.MidiFile(file=io.BytesIO(blob)).tracks for m in t if m.type == "program_change"]


def test_midi_bytes_writes_what_pretty_midi_writes(model):
    """`render.midi_bytes` (numpy, every event at once) against pretty_midi's own writer: the same
    instruments, channels, notes, tempo and time signature read back; repeated notes, notes at the very
    start and end, a long delta time (4-byte quantity), a track without notes; the file lasts the song."""
    import io

    import mido

    roll = _roll(model.sample(bars=6, sigma=0.5, seed=3)[0])
    roll[1, 0:6, 40] = roll[1, 7:12, 40] = True  # the same pitch again one step later
    roll[4, -3:, 60] = True  # a note sounding to the song's end
    roll[2] = False  # a silent guitar
    long = np.zeros((5, 96 * 3000, 84), bool)  # 3,000 bars: a delta time over 2**21 ticks
    long[3, 0:10, 10] = long[3, -10:, 12] = True
    for mt in (render.to_multitrack(roll, tempo=97.0), render.to_multitrack(long, tempo=120.0)):
        fast = render.midi_bytes(mt)
        ref = io.BytesIO()
        render.to_pretty_midi(mt).write(ref)
        a, b = pretty_midi.PrettyMIDI(io.BytesIO(fast)), pretty_midi.PrettyMIDI(io.BytesIO(ref.getvalue()))
        assert _notes_of(a) == _notes_of(b) and len(a.instruments) >= 1
        np.testing.assert_allclose(a.get_tempo_changes()[1], b.get_tempo_changes()[1])
        assert [(t.numerator, t.denominator) for t in a.time_signature_changes] == [(4, 4)]
        assert _channels(fast) == _channels(ref.getvalue()) == [9, 1, 2, 3, 4]
        f = mido.MidiFile(file=io.BytesIO(fast))
        steps = mt.tracks[0].pianoroll.shape[0]
        assert f.ticks_per_beat == render.MIDI_DIVISION and len(f.tracks) == 6
        assert {sum(m.time for m in t) for t in f.tracks} == {steps * render.MIDI_DIVISION // mt.resolution}


def test_seeds_and_sigma(model):
    a = _roll(model.sample(bars=4, sigma=0.5, seed=1)[0])
    b = _roll(model.sample(bars=4, sigma=0.5, seed=1)[0])
    assert np.array_equal(a, b)
    pa = model.sample_latents(4, sigma=0.5, seed=1)
    pb = model.sample_latents(4, sigma=0.5, seed=2)
    assert pa.shape == (1, 4, 5) and pa.dim == model.K
    assert not np.allclose(pa.concat(), pb.concat())
    # sigma 0: the chain is deterministic given its start
    start = model.start_bars[:1]
    z1 = model.sample_latents(4, sigma=0.0, seed=1, start=start)
    z2 = model.sample_latents(4, sigma=0.0, seed=99, start=start)
    np.testing.assert_array_equal(z1.concat(), z2.concat())


def test_num_songs_in_one_call(model):
    songs = model.sample(bars=3, sigma=0.5, seed=0, num=4)
    assert len(songs) == 4 and all(s.tracks[0].pianoroll.shape[0] == 3 * 96 for s in songs)


def test_arrange_keeps_piano_exactly(model):
    rng = np.random.default_rng(0)
    piano = rng.random((5 * 96, 84)) < 0.03
    mt = model.arrange(piano, sigma=0.3, seed=1)
    out = _roll(mt)
    assert np.array_equal(out[1], piano)
    assert out.shape == (5, 5 * 96, 84)


def test_arrange_tracks_length_tempo_and_key(model, tmp_path):
    rng = np.random.default_rng(2)
    piano = np.zeros((3 * 96 + 40, 84), bool)  # three bars and a partial fourth
    for t in range(0, piano.shape[0] - 12, 12):  # a tune in D major
        piano[t : t + 10, 38 - 24 + (2, 4, 6, 7, 9, 11, 13)[rng.integers(7)]] = True
    mt = model.arrange(piano, sigma=0.5, seed=0, tracks="bass,Drums", min_length=0, merge_gap=0)
    out = _roll(mt)
    assert out.shape == (5, piano.shape[0], 84)  # the input's length, not whole bars
    np.testing.assert_array_equal(out[1], piano)  # the given part, in its own key
    assert not out[2].any() and not out[4].any()  # guitar and strings were not asked for
    with pytest.raises(ValueError, match="unknown track"):
        model.arrange(piano, tracks="banjo")
    # a Multitrack keeps its tempo
    song = render.to_multitrack(np.stack([np.zeros_like(piano), piano] + [np.zeros_like(piano)] * 3), tempo=93.0)
    assert music.tempo_of(model.arrange(song, seed=0)) == pytest.approx(93.0)
    # a part longer than one compiled bucket, and one that is silent, give sensible results
    long = np.tile(piano[:96], (40, 1))
    assert _roll(model.arrange(long, seed=0)).shape == (5, 40 * 96, 84)
    silent = model.arrange(np.zeros((2 * 96, 84), bool), seed=0)
    assert not _roll(silent)[1].any()


def test_sampled_songs_keep_the_requested_key(model):
    a = _roll(model.sample(bars=2, sigma=0.5, seed=4, min_length=0, merge_gap=0)[0])
    b = _roll(model.sample(bars=2, sigma=0.5, seed=4, min_length=0, merge_gap=0, key=3)[0])
    from vaejax import music

    np.testing.assert_array_equal(b, music.transpose(a, 3))


@pytest.fixture(scope="module")
def packaged():
    """The packaged model: trained on LPD-5, so its band plays (a tiny run's may be silent)."""
    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("the packaged model is not in this checkout")
    return trained_model.load("lpd5")


def _in_piano_classes(roll, lowest_pitch=24):
    """Share of the band's pitched cells (guitar, bass, strings), counted per beat, whose pitch class the
    piano plays in the same beat."""
    beats = roll.reshape(5, -1, 24, roll.shape[-1]).any(axis=2)  # [5, beats, P]
    pc = (np.arange(roll.shape[-1]) + lowest_pitch) % 12
    piano = np.stack([beats[1][:, pc == c].any(axis=1) for c in range(12)], axis=1)  # [beats, 12]
    band = beats[2:]  # [3, beats, P]
    inside = band & piano[None][:, :, pc]
    return inside.sum() / max(1, band.sum())


def test_harmony_guidance_moves_the_band_toward_the_piano(packaged):
    """Stronger guidance puts more of the band's notes in the pitch classes the piano plays in each beat,
    and leaves the piano (which has no condition) alone."""
    lat, means = packaged.sample_latents(8, sigma=0.5, seed=5, num=2, with_means=True)
    flat = lambda z: z.concat().reshape((-1,) + z.shape[2:] + (2 * z.dim,))  # noqa: E731
    a = packaged.with_options(harmony_guidance=0.0).rolls(flat(lat), plays_latents=flat(means))
    b = packaged.with_options(harmony_guidance=12.0).rolls(flat(lat), plays_latents=flat(means))
    np.testing.assert_array_equal(a[1], b[1])  # the piano has no condition: guidance leaves it alone
    assert a[2:].any() and b[2:].any()
    assert _in_piano_classes(b) > _in_piano_classes(a) + 0.1, (_in_piano_classes(a), _in_piano_classes(b))


def test_guidance_per_track_reaches_only_its_track(packaged):
    """Each track's scale is 1 + (guidance - 1) x its weight: guidance 1 decodes every track as trained, and
    a track whose weight is 0 decodes as trained under any guidance while the others follow it."""
    import copy

    np.testing.assert_allclose(packaged.with_options(harmony_guidance=1.0).track_guidance(), np.ones(5))
    g = packaged.with_options(harmony_guidance=8.0)
    np.testing.assert_allclose(g.track_guidance(), 1 + 7 * g.harmony_weights, rtol=1e-6)
    assert (packaged.with_options(harmony_guidance=0.0).track_guidance() >= 0).all()
    lat, means = packaged.sample_latents(8, sigma=0.5, seed=5, num=2, with_means=True)
    flat = lambda z: z.concat().reshape((-1,) + z.shape[2:] + (2 * z.dim,))  # noqa: E731
    plain = packaged.with_options(harmony_guidance=1.0).rolls(flat(lat), plays_latents=flat(means))
    no_guitar = copy.copy(g)
    object.__setattr__(no_guitar, "harmony_weights", np.array([1, 1, 0, 1, 1], np.float32))
    got = no_guitar.rolls(flat(lat), plays_latents=flat(means))
    np.testing.assert_array_equal(got[2], plain[2])  # the guitar as trained
    assert not np.array_equal(got[3], plain[3]) and not np.array_equal(got[4], plain[4])  # bass, strings guided


def test_a_reconstruction_decodes_as_trained(packaged):
    """`vary(sigma=0)` decodes a song's own latents without guidance (they carry its harmony already): the
    same notes as with `guidance=1` given, other notes than with the model's guidance."""
    song = packaged.sample(bars=4, seed=2)[0]
    again = _roll(packaged.vary(song, sigma=0))
    np.testing.assert_array_equal(again, _roll(packaged.vary(song, sigma=0, guidance=1.0)))
    assert not np.array_equal(again, _roll(packaged.vary(song, sigma=0, guidance=packaged.harmony_guidance)))


def test_a_loaded_model_does_not_change_and_with_options_gives_another(packaged):
    """Settings are arguments: assigning to a loaded model fails and names the way; `with_options` returns
    a model sharing the weights with other settings, leaving the first as it was; misspelled or bad
    settings, here or as keyword arguments of a generating method, are refused rather than ignored."""
    before = packaged.harmony_guidance
    with pytest.raises(AttributeError, match=r"with_options\(harmony_guidance="):
        packaged.harmony_guidance = 0.0
    with pytest.raises(AttributeError, match="does not change"):
        packaged.vae = None
    other = packaged.with_options(harmony_guidance=0.0, tempo=90)
    assert packaged.harmony_guidance == before and packaged.tempo != 90
    assert other.harmony_guidance == 0.0 and other.tempo == 90 and other.vae is packaged.vae
    assert other.sample(bars=1, seed=0)[0].tempo[0] == pytest.approx(90)
    with pytest.raises(TypeError, match="unknown option"):
        packaged.with_options(harmony=1.0)
    for bad in ({"memory_mb": 0}, {"tempo": float("nan")}, {"harmony_guidance": -1}, {"count_notes": "no"}):
        with pytest.raises(ValueError):
            packaged.with_options(**bad)
    with pytest.raises(TypeError):
        packaged.sample(bars=1, seed=0, tempp=90)


def test_a_packaged_model_is_loaded_once_per_process_until_its_files_change(tmp_path):
    import shutil

    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("the packaged model is not in this checkout")
    assert vaejax.load("lpd5") is vaejax.load("lpd5")
    copy = shutil.copytree(os.path.dirname(vaejax.load("lpd5").run_dir + "/"), tmp_path / "m")
    first = trained_model.open_folder(str(copy))
    assert trained_model.open_folder(str(copy)) is first
    stats = copy / "stats.json"
    stats.write_text(stats.read_text() + "\n")  # the folder changed: read anew
    assert trained_model.open_folder(str(copy)) is not first


@pytest.mark.slow
def test_vary_interpolate_and_continue(packaged):
    """At sigma 0 a variation is the decoding of the song's encoding (as trained: guidance 1, no track decoded
    as one line); interpolation
    starts and ends at the two songs' decodings; a continuation at sigma 0 is the chain's decoding from the
    song's last bar. (The packaged model, so that the songs have notes to compare.)"""
    m = packaged
    raw = dict(min_length=0, merge_gap=0)
    song, other = (music.transpose(_roll(s), 2) for s in m.sample(bars=4, sigma=0.5, seed=2, num=2, **raw))
    assert song.any() and other.any()
    shift = music.key_shift(song)  # the model works in C major / A minor; outputs return to the song's key
    z = m.encode(song)
    assert z.shape == (4, 5) and z.concat().shape == (4, 5, m.K * 2)
    still = _roll(m.vary(song, sigma=0.0, seed=0, **raw))
    assert still.any()
    as_trained = dict(guidance=1.0, single_line=())
    np.testing.assert_array_equal(still, _roll(m.decode(z, plays_latents=z, shift=shift, **as_trained, **raw)))
    assert not np.array_equal(still, _roll(m.decode(z, plays_latents=z, shift=shift, guidance=1.0, **raw)))
    moved = _roll(m.vary(song, sigma=1.0, seed=0, **raw))
    assert moved.shape == still.shape and not np.array_equal(moved, still)
    steps = m.interpolate(song, other, steps=3, bars=2, **raw)
    assert len(steps) == 3
    np.testing.assert_array_equal(_roll(steps[0]), _roll(m.decode(z[:2], **raw)))
    np.testing.assert_array_equal(_roll(steps[-1]), _roll(m.decode(m.encode(other)[:2], **raw)))
    assert not np.array_equal(_roll(steps[1]), _roll(steps[0]))
    free = m.with_options(drum_kit=0)  # the continuation's drums keep one kit (tests/test_drum_kit.py)
    cont = free.continue_song(song, bars=3, sigma=0.0, seed=0, prior="chain", **raw)
    again, means = m.sample_latents(3, sigma=0.0, seed=0, start=z[-1:], with_means=True)
    np.testing.assert_array_equal(_roll(cont), _roll(m.decode(again[0], plays_latents=means[0], shift=shift, **raw)))
    kit = _roll(m.continue_song(song, bars=3, sigma=0.0, seed=0, prior="chain", **raw))
    np.testing.assert_array_equal(kit[1:], _roll(cont)[1:])  # only the drums may lose pieces
    assert not (kit[0] & ~_roll(cont)[0]).any()


def test_postprocess_merges_and_drops():
    roll = np.zeros((5, 20, 3), bool)
    roll[1, 0:4, 0] = True
    roll[1, 5:9, 0] = True  # gap of 1 -> merged
    roll[1, 12:13, 1] = True  # 1-step fragment -> dropped
    roll[0, 3:4, 2] = True  # drums untouched
    out = render.postprocess(roll, min_length=2, merge_gap=2)
    assert out[1, :, 0].nonzero()[0].tolist() == list(range(0, 9))
    assert not out[1, :, 1].any() and out[0, 3, 2]


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="bars"):
        model.sample(bars=0)
    with pytest.raises(ValueError, match="sigma"):
        model.sample(bars=2, sigma=-1.0)


def _sample(capsys, *argv):
    """`sample.py ARGV` in this process: (exit code, stdout, stderr)."""
    capsys.readouterr()
    rc = cli.sample_main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_cli_outputs_and_errors(model, tmp_path, capsys):
    run = model.run_dir
    out = tmp_path / "out"
    rc, stdout, err = _sample(capsys, "--checkpoint", run, "--bars", "4", "--sigma", "0.5", "--out", out)
    assert rc == 0, err
    paths = stdout.split()
    assert [os.path.splitext(p)[1] for p in paths] == [".mid", ".png", ".wav"]
    import mido

    assert len(mido.MidiFile(paths[0]).tracks) == 6  # a tempo track and the five instruments, even if silent
    assert os.path.getsize(paths[1]) > 1000
    import wave

    with wave.open(paths[2]) as w:
        assert w.getnframes() > 22050 * 4 * 2 * 0.9  # 4 bars of 4 beats at 120 bpm = 8 s
    for args, msg in (
        (["--bars", "0"], "--bars"),
        (["--bars", "100000"], "--bars"),
        (["--sigma", "-1"], "--sigma"),
        (["--arrange", str(tmp_path / "missing.mid")], "no such file"),
    ):
        bad = tmp_path / "bad"
        rc, _, err = _sample(capsys, "--checkpoint", run, "--out", bad, *args)
        assert rc == 2 and msg in err
        assert not bad.exists()  # nothing half-written
    junk = tmp_path / "junk.mid"
    junk.write_bytes(os.urandom(100))
    rc, _, err = _sample(capsys, "--checkpoint", run, "--arrange", junk, "--out", tmp_path / "bad2")
    assert rc == 2 and "not a readable MIDI" in err and not (tmp_path / "bad2").exists()
    rc, _, err = _sample(capsys, "--checkpoint", tmp_path / "none")
    assert rc == 2 and "python train.py" in err
    # --arrange with --tracks: the MIDI file holds the piano and the asked-for bass only
    piano = np.zeros((5, 2 * 96, 84), bool)
    piano[1, 0:90, 40] = True
    src = render.write_midi(str(tmp_path / "piano.mid"), render.to_multitrack(piano, tempo=100.0))
    rc, stdout, err = _sample(
        capsys, "--checkpoint", run, "--arrange", src, "--tracks", "bass", "--no-audio", "--out", tmp_path / "arr"
    )
    assert rc == 0, err
    pm = pretty_midi.PrettyMIDI(stdout.split()[0])
    assert abs(pm.get_tempo_changes()[1][0] - 100.0) < 1e-3  # the input's tempo
    assert {i.name for i in pm.instruments if i.notes} <= {"Piano", "Bass"}


def test_sample_runs_as_its_own_program():
    """`python sample.py` as a process: its usage line, and a one-line error with exit code 2 (argument
    checks come before the libraries load). What it writes is tested in this process above."""
    script = os.path.join(ROOT, "sample.py")
    r = subprocess.run([sys.executable, script, "--bars", "0"], capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--bars" in r.stderr, r.stderr
    h = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True)
    assert h.returncode == 0 and h.stdout.startswith("usage: sample.py")


def test_synthetic_training_is_labelled(model):
    assert model.synthetic  # the fixture trains on the demo corpus
    assert "SYNTHETIC" in model.sample(bars=2)[0].name


def test_fluidsynth_rendering_when_available():
    try:
        import fluidsynth  # noqa: F401  (pyfluidsynth; needs the system library too)
    except (ImportError, OSError) as e:
        pytest.skip(f"FluidSynth not installed ({type(e).__name__}); the fallback synthesis is tested above")
    roll = np.zeros((5, 96, 84), bool)
    roll[1, 0:48, 36] = roll[3, 0:24, 12] = roll[0, 0:2, 12] = True
    audio, how = render.synthesize(render.to_multitrack(roll), sample_rate=16000)
    assert how == "fluidsynth"
    assert len(audio) >= 2 * 16000 and np.abs(audio).max() > 0.1  # one 4/4 bar at 120 bpm = 2 s


def test_packaged_model_round_trip(model, tmp_path):
    """export() writes float16 weights that load() restores without Orbax; the songs hardly change."""
    out = str(tmp_path / "pk")
    assert cli.export_main([model.run_dir, out]) == 0
    assert sorted(os.listdir(out)) == ["config.json", "stats.json", "weights.npz"]
    packed = trained_model.load(out)
    assert packed.cfg == model.cfg and packed.harmony_guidance == model.harmony_guidance
    lat = model.sample_latents(3, sigma=0.5, seed=2)[0]
    np.testing.assert_allclose(
        packed.encode(np.zeros((5, 96, 84), bool)).concat(),
        model.encode(np.zeros((5, 96, 84), bool)).concat(),
        atol=2e-2,
        rtol=2e-2,
    )
    a, b = model.rolls(lat), packed.rolls(lat)
    assert (a == b).mean() > 0.99
    with np.load(os.path.join(out, "weights.npz"), allow_pickle=False) as z:
        assert all(z[k].dtype == np.float16 for k in z.files)
    assert cli.export_main([str(tmp_path / "missing"), str(tmp_path / "x")]) == 2


def test_saving_a_picture_keeps_the_matplotlib_backend(tmp_path):
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")  # a backend other than the Agg a careless writer would switch to
    try:
        roll = np.zeros((5, 96, 84), bool)
        roll[1, :10, 30] = True
        path = render.plot(render.to_multitrack(roll), str(tmp_path / "p.png"))
        assert os.path.getsize(path) > 1000 and matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)


def test_bar_lines_every_bar_on_a_short_song_thinned_on_a_long_one():
    import matplotlib.pyplot as plt
    from matplotlib.collections import LineCollection

    def bar_lines(bars):
        roll = np.zeros((5, bars * 96, 84), bool)
        roll[1, ::96, 30] = True
        fig = render.plot(render.to_multitrack(roll), title="x")
        (ax,) = [a for a in fig.axes if a.get_ylabel() == "Piano"]
        (lines,) = [c for c in ax.collections if isinstance(c, LineCollection)]
        xs = sorted(seg[0][0] for seg in lines.get_segments())
        px = fig.get_figwidth() * 90 / (bars * 4)  # pixels per beat at the saved picture's 90 dpi
        plt.close(fig)
        return xs, px

    xs, _ = bar_lines(8)
    assert xs == [0, 4, 8, 12, 16, 20, 24, 28, 32]  # one line per bar, on the downbeats
    xs, px = bar_lines(1100)
    gaps = np.diff(xs)
    assert len(set(gaps)) == 1 and gaps[0] % 4 == 0 and gaps[0] * px >= 3  # every n-th bar, >= 3 pixels apart
    assert len(xs) <= 1100 // 2 + 1  # not one per bar


@pytest.mark.e2e
def test_cli_arrange_unusual_inputs(model, tmp_path, capsys):
    """A piano part in 3/4, one without notes and one over 1,000 bars: a result or a one-line error."""
    import pretty_midi

    def write(name, notes, meter=(4, 4), seconds_per_note=0.5):
        pm = pretty_midi.PrettyMIDI(initial_tempo=120.0)
        pm.time_signature_changes.append(pretty_midi.TimeSignature(*meter, 0.0))
        inst = pretty_midi.Instrument(program=0)
        inst.notes = [
            pretty_midi.Note(
                velocity=90, pitch=60 + (i % 7), start=i * seconds_per_note, end=(i + 0.9) * seconds_per_note
            )
            for i in range(notes)
        ]
        pm.instruments.append(inst)
        path = str(tmp_path / name)
        pm.write(path)
        return path

    def run(path):
        return _sample(capsys, "--checkpoint", model.run_dir, "--arrange", path, "--no-audio", "--out", tmp_path / "o")

    rc, out, err = run(write("waltz.mid", 24, meter=(3, 4)))  # 24 beats of 3/4: on its beat grid, cut every 4
    assert rc == 0, err
    pm = pretty_midi.PrettyMIDI(out.split()[0])
    given = [i for i in pm.instruments if i.name not in ("Drums", "Guitar", "Bass", "Strings")]
    assert [len(i.notes) for i in given] == [24]  # the given part, note for note
    assert pm.time_signature_changes[0].numerator == 3  # and its meter
    rc, _, err = run(write("empty.mid", 0))
    assert rc == 2 and "no notes" in err and "Traceback" not in err
    rc, out, err = run(write("long.mid", 4 * 1100, seconds_per_note=0.5))  # 1,100 bars
    assert rc == 0, err
    assert pretty_midi.PrettyMIDI(out.split()[0]).get_end_time() > 1100 * 2 * 0.99


def test_general_midi_audio_from_the_wheel_and_silence_labelled():
    roll = np.zeros((5, 96, 84), bool)
    roll[1, 0:48, 36] = roll[3, 0:24, 12] = roll[0, 0:2, 12] = True
    mt = render.to_multitrack(roll)
    audio, how = render.synthesize(mt, sample_rate=16000)
    try:
        import midirenderer  # noqa: F401
    except ImportError:
        pytest.skip("midirenderer not installed (no wheel for this platform); the built-in synthesis is used")
    if how != "fluidsynth":  # FluidSynth, where installed, comes first
        assert how.startswith("midirenderer")
    assert len(audio) == 2 * 16000 and np.abs(audio).max() > 0.1  # one 4/4 bar at 120 bpm = 2 s
    silent, how = render.synthesize(render.to_multitrack(np.zeros_like(roll)), sample_rate=16000)
    assert how == render.SILENT and len(silent) == 2 * 16000 and not silent.any()
    assert render.silent_tracks(mt) == ["Guitar", "Strings"]


def test_packaged_lpd5_model_loads_offline_and_plays(tmp_path, monkeypatch, capsys):
    """The shipped model loads by name without training or network, and makes a band that plays."""
    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("the packaged model is not in this checkout")
    m = trained_model.load("lpd5")
    assert not m.synthetic and m.cfg.data.key_normalize and m.cfg.model.condition
    song = m.sample(bars=8, sigma=0.5, seed=0, min_length=0, merge_gap=0)[0]
    roll = _roll(song)
    assert roll.shape == (5, 8 * 96, 84) and roll.any(axis=(1, 2)).sum() >= 3  # at least three tracks play
    monkeypatch.chdir(tmp_path)
    rc, _, err = _sample(capsys, "--bars", "4", "--no-audio", "--out", tmp_path / "o")
    assert rc == 0, err
    assert "using the packaged model lpd5" in err  # no run trained in this folder: says which model


def test_cli_does_not_overwrite_earlier_songs(model, tmp_path, capsys):
    cmd = ["--checkpoint", model.run_dir, "--bars", "2", "--no-audio", "--out", tmp_path]
    first = _sample(capsys, *cmd)[1].split()
    second = _sample(capsys, *cmd)[1].split()
    third = _sample(capsys, *cmd, "--overwrite")[1].split()
    assert [os.path.basename(p) for p in first] == ["sample-seed0-0.mid", "sample-seed0-0.png"]
    assert [os.path.basename(p) for p in second] == ["sample-seed0-0-2.mid", "sample-seed0-0-2.png"]
    assert third == first


def test_any_multitrack_is_accepted(model, tmp_path):
    """A Multitrack whose tempo is `[T, 1]` (as pypianoroll.read gives) writes, sounds and arranges."""
    import pypianoroll

    roll = np.zeros((5, 96, 84), bool)
    roll[1, 0:48, 36] = True
    mt = render.to_multitrack(roll, tempo=90.0)
    mt = pypianoroll.Multitrack(resolution=24, tempo=np.full((96, 1), 90.0), downbeat=mt.downbeat, tracks=mt.tracks)
    path = render.write_midi(str(tmp_path / "t.mid"), mt)
    assert abs(pretty_midi.PrettyMIDI(path).get_tempo_changes()[1][0] - 90.0) < 1e-3
    audio, _ = render.synthesize(mt, sample_rate=8000)
    assert len(audio) == int(round(96 / 24 * 60 / 90 * 8000))
    assert music.tempo_of(model.arrange(mt, seed=0)) == pytest.approx(90.0)


def test_muspy_round_trip(tmp_path):
    """The README's MusPy recipe: to MusPy and back gives the same roll."""
    muspy = pytest.importorskip("muspy", reason="muspy not installed (optional; pip install muspy)")
    roll = np.zeros((5, 2 * 96, 84), bool)
    roll[1, 0:48, 36] = roll[3, 48:96, 12] = roll[0, 0:2, 12] = roll[4, 100:190, 50] = True
    m = muspy.from_pypianoroll(render.to_multitrack(roll, tempo=100.0))
    assert [t.name for t in m.tracks] == ["Drums", "Piano", "Guitar", "Bass", "Strings"]
    m.barlines = [b for b in m.barlines if b.time < m.get_end_time()]
    back = music.from_multitrack(muspy.to_pypianoroll(m))
    np.testing.assert_array_equal(back, roll[:, : back.shape[1]])
    assert not roll[:, back.shape[1] :].any()
