"""Turning binary LPD-5 rolls into things people use: post-processing, pypianoroll Multitracks, MIDI files,
pianoroll pictures and WAV audio."""

from __future__ import annotations

import os
import wave

import numpy as np

from vaejax.config import TEMPO, TRACKS, DataConfig
from vaejax.files import write_atomically
from vaejax.music import LPD5_PROGRAMS, from_multitrack, lpd5_track, note_runs, tempo_of

PLOT_ORDER = (1, 2, 3, 4, 0)  # Piano, Guitar, Bass, Strings, Drums, as in the seed report's figure


def postprocess(roll: np.ndarray, *, min_length: int = 0, merge_gap: int = 0) -> np.ndarray:
    """Clean a `[5, T, P]` bool roll: first fill silences shorter than `merge_gap` steps between two notes of
    the same pitch (joining fragments), then drop notes shorter than `min_length` steps. Drums are left
    alone (drum hits are short by nature)."""
    out = roll.copy()
    for t in range(1, roll.shape[0]):
        if merge_gap > 0:
            p, s, e = note_runs(out[t])
            same = (p[1:] == p[:-1]) & (s[1:] - e[:-1] < merge_gap)
            for pp, a, b in zip(p[1:][same], e[:-1][same], s[1:][same]):
                out[t, a:b, pp] = True
        if min_length > 1:
            p, s, e = note_runs(out[t])
            short = (e - s) < min_length
            for pp, a, b in zip(p[short], s[short], e[short]):
                out[t, a:b, pp] = False
    return out


def to_multitrack(roll: np.ndarray, *, tempo: float = TEMPO, name: str = "vaejax", cfg: DataConfig = DataConfig()):
    """`[5, T, P]` bool roll -> `pypianoroll.Multitrack` with 128-pitch binary tracks."""
    import pypianoroll

    steps = roll.shape[1]
    tracks = []
    for t, track_name in enumerate(TRACKS):
        full = np.zeros((steps, 128), bool)
        full[:, cfg.lowest_pitch : cfg.lowest_pitch + cfg.num_pitches] = roll[t]
        tracks.append(
            pypianoroll.BinaryTrack(name=track_name, program=LPD5_PROGRAMS[t], is_drum=(t == 0), pianoroll=full)
        )
    downbeat = np.zeros(steps, bool)
    downbeat[:: cfg.resolution * cfg.beats_per_bar] = True
    return pypianoroll.Multitrack(
        name=name, resolution=cfg.resolution, tempo=np.full(steps, float(tempo)), downbeat=downbeat, tracks=tracks
    )


def to_pretty_midi(mt, velocity: int = 100):
    """Multitrack -> PrettyMIDI: all five tracks (empty ones too), drums on the drum channel, the tempo."""
    import pretty_midi

    tempo = tempo_of(mt)
    step = 60.0 / tempo / mt.resolution
    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo, resolution=480)
    pm.time_signature_changes.append(pretty_midi.TimeSignature(4, 4, 0.0))
    for tr in mt.tracks:
        inst = pretty_midi.Instrument(program=int(tr.program), is_drum=bool(tr.is_drum), name=tr.name)
        p, s, e = note_runs(np.asarray(tr.pianoroll) > 0)
        inst.notes = [
            pretty_midi.Note(velocity=velocity, pitch=int(a), start=float(b * step), end=float(c * step))
            for a, b, c in sorted(zip(p, s, e), key=lambda n: (n[1], n[0]))
        ]
        pm.instruments.append(inst)
    return pm


MIDI_DIVISION = 480
"""Ticks per beat of the MIDI files `midi_bytes` writes (as pretty_midi's default for new files)."""


def _vlq(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """MIDI variable-length quantities of non-negative ints < 2**28: (`[n, 4]` bytes, `[n, 4]` which are used),
    most significant first."""
    v = np.asarray(values, np.int64)
    if len(v) and (v.min() < 0 or v.max() >= 1 << 28):
        raise ValueError("a MIDI delta time must lie in [0, 2**28)")
    groups = np.stack([(v >> s) & 0x7F for s in (21, 14, 7, 0)], axis=1)
    used = np.stack([v >= 1 << 21, v >= 1 << 14, v >= 1 << 7, np.ones(len(v), bool)], axis=1)
    groups = groups | np.where(used & (np.arange(4) < 3), 0x80, 0)  # every used byte but the last continues
    return groups, used


def _chunk(kind: bytes, body: bytes) -> bytes:
    return kind + len(body).to_bytes(4, "big") + body


def _meta(kind: int, data: bytes) -> bytes:
    return bytes([0xFF, kind]) + _vlq_bytes(len(data)) + data


def _vlq_bytes(value: int) -> bytes:
    g, u = _vlq(np.array([value]))
    return bytes(g[0][u[0]].astype(np.uint8))


def midi_bytes(mt, velocity: int = 100) -> bytes:
    """Multitrack -> a standard MIDI file (format 1) as bytes, as `to_pretty_midi(mt)` writes it: a conductor
    track (tempo, 4/4), then each of the five tracks (empty ones too) with its name and program, drums on
    the drum channel, the others on the channel of their place (skipping the drums'), as pretty_midi
    numbers them; every note at `velocity`, its ticks the steps' exact multiple at `MIDI_DIVISION` ticks per
    beat. The file lasts as long as the song (its tracks end there). Written with numpy, every event at
    once: through pretty_midi's and mido's message objects a 32-bar song took about 0.15 s, more than
    generating it."""
    tempo = tempo_of(mt)
    ticks_per_step = MIDI_DIVISION / mt.resolution
    steps = max((np.asarray(tr.pianoroll).shape[0] for tr in mt.tracks), default=0)
    end_tick = int(round(steps * ticks_per_step))
    conductor = (
        b"\x00"
        + _meta(0x51, int(6e7 / tempo).to_bytes(3, "big"))  # truncated, as pretty_midi writes it
        + b"\x00"
        + _meta(0x58, bytes([4, 2, 24, 8]))
        + _vlq_bytes(end_tick)
        + _meta(0x2F, b"")
    )
    chunks = [_chunk(b"MTrk", conductor)]
    channels = [c for c in range(16) if c != 9]
    for i, tr in enumerate(mt.tracks):
        ch = 9 if tr.is_drum else channels[i % len(channels)]  # as pretty_midi numbers them
        p, s, e = note_runs(np.asarray(tr.pianoroll) > 0)
        tick = np.round(np.concatenate([e, s]) * ticks_per_step).astype(np.int64)
        pitch = np.concatenate([p, p]).astype(np.int64)
        is_on = np.concatenate([np.zeros(len(p), bool), np.ones(len(p), bool)])
        order = np.lexsort((pitch, is_on, tick))  # by tick, a note's end before a note's start, then pitch
        tick, pitch, is_on = tick[order], pitch[order], is_on[order]
        delta = np.diff(tick, prepend=0)
        groups, used = _vlq(delta)
        msg = np.stack([np.where(is_on, 0x90 | ch, 0x80 | ch), pitch, np.where(is_on, velocity, 0)], axis=1)
        events = np.concatenate([groups, msg], axis=1)[np.concatenate([used, np.ones(msg.shape, bool)], axis=1)]
        last = int(tick[-1]) if len(tick) else 0
        name = (tr.name or "").encode("latin-1", "replace")
        head = b"\x00" + _meta(0x03, name) + bytes([0x00, 0xC0 | ch, int(tr.program) & 0x7F])
        tail = _vlq_bytes(max(end_tick - last, 0)) + _meta(0x2F, b"")
        chunks.append(_chunk(b"MTrk", head + events.astype(np.uint8).tobytes() + tail))
    header = _chunk(b"MThd", (1).to_bytes(2, "big") + len(chunks).to_bytes(2, "big") + MIDI_DIVISION.to_bytes(2, "big"))
    return header + b"".join(chunks)


def given_part(pm) -> list:
    """The instruments of a PrettyMIDI that an arrangement keeps: its piano tracks (programs 0-7), else all its
    pitched tracks that LPD-5 maps (the part `music.read_midi` reads as the piano, or as all pitched tracks)."""
    playing = [inst for inst in pm.instruments if inst.notes and not inst.is_drum]
    piano = [inst for inst in playing if lpd5_track(inst.program, inst.is_drum) == 1]
    return piano or [inst for inst in playing if lpd5_track(inst.program, inst.is_drum) is not None]


def _midi_ticks(blob: bytes) -> int:
    """A MIDI file's length in ticks: where its longest track ends (its end-of-track event)."""
    import io

    import mido

    return max((sum(msg.time for msg in track) for track in mido.MidiFile(file=io.BytesIO(blob)).tracks), default=0)


def arrangement_midi(source: str, mt, *, tracks=None, cfg: DataConfig = DataConfig()):
    """The MIDI of an arrangement of the MIDI file `source`: `(PrettyMIDI, length in ticks)`.

    The given part is the source's own instruments (`given_part`), note for note (times, durations,
    velocities, pedals and bends, each as its own track with its name and program), with the source's tempo
    map, time and key signatures and resolution. The band is `mt`'s tracks other than the piano (those named
    in `tracks`, default every band track that plays), whose steps lie on the beat grid `music.read_midi`
    read the source onto (`cfg.resolution` steps per beat from time 0): each step is placed through the
    source's beat ticks, so the band follows its beats and bars also where the tempo changes. Band notes end
    where the source file ends."""
    import copy
    import io

    import pretty_midi

    with open(source, "rb") as f:
        blob = f.read()
    src = pretty_midi.PrettyMIDI(io.BytesIO(blob))
    end_tick = _midi_ticks(blob)
    pm = copy.deepcopy(src)
    pm.instruments = [copy.deepcopy(inst) for inst in given_part(src)]
    beats = np.asarray(src.get_beats(), np.float64)
    beat_ticks = np.array([src.time_to_tick(b) for b in beats], np.float64)
    if beat_ticks.size < 2:
        beat_ticks = np.array([0.0, float(src.resolution)])
    period = beat_ticks[-1] - beat_ticks[-2]

    def tick_of(steps: np.ndarray) -> np.ndarray:
        pos = steps / cfg.resolution  # beats
        idx = np.arange(beat_ticks.size, dtype=np.float64)
        ticks = np.interp(pos, idx, beat_ticks)
        after = pos > idx[-1]
        ticks[after] = beat_ticks[-1] + (pos[after] - idx[-1]) * period
        return np.rint(ticks).astype(np.int64)

    wanted = (
        None
        if tracks is None
        else {t.strip().lower() for t in (tracks.split(",") if isinstance(tracks, str) else tracks)}
    )
    for tr in mt.tracks:
        if (
            tr.name == TRACKS[1]
            or (wanted is None and not np.asarray(tr.pianoroll).any())
            or (wanted is not None and tr.name.lower() not in wanted)
        ):
            continue
        inst = pretty_midi.Instrument(program=int(tr.program), is_drum=bool(tr.is_drum), name=tr.name)
        p, s, e = note_runs(np.asarray(tr.pianoroll) > 0)
        on, off = tick_of(s.astype(np.float64)), np.minimum(tick_of(e.astype(np.float64)), end_tick)
        inst.notes = [
            pretty_midi.Note(velocity=100, pitch=int(a), start=src.tick_to_time(int(b)), end=src.tick_to_time(int(c)))
            for a, b, c in sorted(zip(p, on, off), key=lambda n: (n[1], n[0]))
            if b < c
        ]
        pm.instruments.append(inst)
    return pm, end_tick


def _midi_bytes(pm, length_ticks: int | None = None) -> bytes:
    """A PrettyMIDI as MIDI file bytes; with `length_ticks`, every track ends there (the file keeps the
    length of the one it came from, not pretty_midi's 'one tick after the last event')."""
    import io

    import mido

    buf = io.BytesIO()
    pm.write(buf)
    if length_ticks is None:
        return buf.getvalue()
    mid = mido.MidiFile(file=io.BytesIO(buf.getvalue()))
    for track in mid.tracks:
        if track and track[-1].type == "end_of_track":
            before = sum(msg.time for msg in track[:-1])
            track[-1] = track[-1].copy(time=max(0, int(length_ticks) - before))
    out = io.BytesIO()
    mid.save(file=out)
    return out.getvalue()


def write_midi(path: str, mt, *, source: str | None = None, tracks=None, cfg: DataConfig = DataConfig()) -> str:
    """Write a Multitrack as a MIDI file. With `source` (the MIDI file `mt` arranges, see
    `TrainedModel.arrange`): the source's given part note for note, its tempo map, signatures and length, and
    `mt`'s band placed on the source's beats (`arrangement_midi`)."""
    if source is None:
        blob = midi_bytes(mt)
    else:
        blob = _midi_bytes(*arrangement_midi(source, mt, tracks=tracks, cfg=cfg))

    def write(tmp):
        with open(tmp, "wb") as f:
            f.write(blob)

    return _written(path, write)


def plot(mt, path: str | None = None, *, title: str | None = None, cfg: DataConfig = DataConfig()):
    """One row per instrument (Piano, Guitar, Bass, Strings, Drums), pitch against beat. Returns the figure,
    or saves it as PNG when `path` is given."""
    roll = from_multitrack(mt, cfg)
    beats = roll.shape[1] / cfg.resolution
    width = min(24, 4 + beats / 8)
    # a long song is drawn at the picture's resolution (a cell is on where any step it covers is), so that
    # the drawing costs the same for a song of 30 bars or of 4,000
    block = max(1, roll.shape[1] // int(width * 90 * 2))
    if block > 1:
        t = roll.shape[1] // block * block
        roll = roll[:, :t].reshape(roll.shape[0], t // block, block, roll.shape[2]).any(axis=2)
    # bar lines, one collection per row; on a long song every 2nd, 4th, ... bar, so that lines stay at least
    # 3 pixels apart (a line per bar of a 4,000-bar song would be a grey wash and cost seconds to draw)
    bars = beats / cfg.beats_per_bar
    every = 1 << max(0, int(np.ceil(np.log2(max(1.0, bars * 3 / (width * 90))))))
    lines = np.arange(0, beats + 1, cfg.beats_per_bar * every)
    fig = new_figure(figsize=(width, 8), shown=path is None)
    axes = fig.subplots(len(PLOT_ORDER), 1, sharex=True)
    for ax, t in zip(axes, PLOT_ORDER):
        ax.imshow(
            roll[t].T,
            aspect="auto",
            origin="lower",
            cmap="Greys",
            interpolation="nearest",
            extent=(0, beats, cfg.lowest_pitch, cfg.lowest_pitch + cfg.num_pitches),
        )
        ax.set_ylabel(TRACKS[t])
        ax.vlines(lines, 0, 1, transform=ax.get_xaxis_transform(), color="tab:blue", lw=0.3, alpha=0.5)
    axes[-1].set_xlabel("beat")
    fig.suptitle(title or mt.name)
    fig.tight_layout()
    if path is None:
        return fig
    _written(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    return path


def new_figure(figsize, *, shown: bool = False):
    """A matplotlib figure: through pyplot when it is to be shown (a notebook displays it), else a bare
    `Figure` that only saves files, so that writing pictures never changes the session's backend."""
    if shown:
        import matplotlib.pyplot as plt

        return plt.figure(figsize=figsize)
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def _soundfont() -> str:
    """The General MIDI SoundFont that pretty_midi ships (TimGM6mb)."""
    import pretty_midi

    return os.path.join(os.path.dirname(pretty_midi.__file__), "TimGM6mb.sf2")


def _midirenderer(pm, sample_rate: int, soundfont: str | None) -> np.ndarray:
    """Render with the self-contained `midirenderer` wheel (a SoundFont synthesiser): mono at `sample_rate`."""
    import io

    import midirenderer

    with open(soundfont or _soundfont(), "rb") as f:
        sf2 = f.read()
    buf = io.BytesIO()
    pm.write(buf)
    rendered = midirenderer.render_wave_from(sf2, buf.getvalue())
    del sf2, buf
    with wave.open(io.BytesIO(rendered)) as w:  # converted block by block: memory stays near the WAV's own size
        rate, channels, frames = w.getframerate(), w.getnchannels(), w.getnframes()
        mono = np.empty(frames, np.float32)
        for lo in range(0, frames, AUDIO_BLOCK):
            raw = np.frombuffer(w.readframes(AUDIO_BLOCK), "<i2").reshape(-1, channels)
            mono[lo : lo + raw.shape[0]] = raw.mean(axis=1, dtype=np.float32) / 32768.0
    del rendered
    if rate == sample_rate or mono.size == 0:
        return mono
    out = np.empty(int(round(mono.size * sample_rate / rate)), np.float32)
    src = np.arange(mono.size)
    for lo in range(0, out.size, AUDIO_BLOCK):
        t = np.arange(lo, min(lo + AUDIO_BLOCK, out.size)) * (rate / sample_rate)
        out[lo : lo + t.size] = np.interp(t, src, mono)
    return out


def _builtin(pm, sample_rate: int) -> np.ndarray:
    """Sine tones for pitched notes and noise bursts for drum hits."""
    audio = pm.synthesize(fs=sample_rate)
    for inst in pm.instruments:
        if not inst.is_drum:
            continue
        rng = np.random.default_rng(0)
        hit = rng.standard_normal(int(0.08 * sample_rate)) * np.exp(-np.linspace(0, 8, int(0.08 * sample_rate)))
        for n in inst.notes:
            a = int(n.start * sample_rate)
            if a >= len(audio):
                audio = np.pad(audio, (0, a + len(hit) - len(audio)))
            seg = audio[a : a + len(hit)]
            seg += 0.3 * hit[: len(seg)] * (1.0 if n.pitch != 42 else 0.4)
    return audio


SILENT = "silence (the song has no notes)"
AUDIO_BLOCK = 1 << 20
"""Samples converted at a time when audio is resampled, normalised and written."""


def synthesize(mt, sample_rate: int = 22050, soundfont: str | None = None) -> tuple[np.ndarray, str]:
    """Audio for a Multitrack or a PrettyMIDI (e.g. `arrangement_midi`'s): (float samples in [-1, 1], how it
    was made).

    General MIDI sounds from FluidSynth when `pyfluidsynth` and the fluidsynth library are installed, else
    from the `midirenderer` wheel (installed with vaejax on Linux x86-64), both with pretty_midi's SoundFont
    unless `soundfont` names another; else a simple built-in synthesis (sine tones, noise drums). A song
    without notes is silence, and says so.
    """
    is_pm = hasattr(mt, "instruments")
    pm = mt if is_pm else to_pretty_midi(mt)
    if not any(inst.notes for inst in pm.instruments):
        audio, how = np.zeros(0, np.float32), SILENT
    else:
        audio = how = None
        try:
            audio, how = pm.fluidsynth(fs=sample_rate, sf2_path=soundfont), "fluidsynth"
        except Exception:  # pyfluidsynth or libfluidsynth missing
            pass
        if audio is None:
            try:
                audio, how = _midirenderer(pm, sample_rate, soundfont), "midirenderer (General MIDI SoundFont)"
            except Exception:  # not installed, or no wheel for this platform
                pass
        if audio is None:
            audio = _builtin(pm, sample_rate)
            how = "sine tones and noise drums (pip install midirenderer for General MIDI sounds)"
    seconds = pm.get_end_time() if is_pm else mt.get_max_length() * 60.0 / tempo_of(mt) / mt.resolution
    length = int(round(seconds * sample_rate))
    if audio.size < length:  # silent bars at the end (or a silent song) still last their time
        audio = np.pad(audio, (0, length - audio.size))
    audio = np.asarray(audio, np.float32)
    peak = max(
        (np.abs(audio[lo : lo + AUDIO_BLOCK]).max() for lo in range(0, audio.size, AUDIO_BLOCK)), default=np.float32(0)
    )
    if peak > 0:  # in place, block by block: the same numbers as `audio / peak * 0.9`
        for lo in range(0, audio.size, AUDIO_BLOCK):
            block = audio[lo : lo + AUDIO_BLOCK]
            block /= peak
            block *= 0.9
    return audio, how


def silent_tracks(mt) -> list[str]:
    """Names of the tracks of a Multitrack that hold no note."""
    return [tr.name for tr in mt.tracks if not np.asarray(tr.pianoroll).any()]


def write_wav(path: str, audio: np.ndarray, sample_rate: int = 22050) -> str:
    def write(tmp):
        with wave.open(tmp, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(sample_rate)
            for lo in range(0, audio.size, AUDIO_BLOCK):
                w.writeframes((np.clip(audio[lo : lo + AUDIO_BLOCK], -1, 1) * 32767).astype("<i2").tobytes())

    return _written(path, write)


def _written(path: str, write) -> str:
    """Write `path` through `path.part` (`files.write_atomically`): a failure (a full disk) leaves neither a
    `.part` file nor a partial `path`."""
    write_atomically(path, write, path + ".part")
    return path


def play(mt, sample_rate: int = 22050):
    """An IPython Audio widget for a notebook."""
    from IPython.display import Audio

    audio, _ = synthesize(mt, sample_rate)
    return Audio(audio, rate=sample_rate)
