"""What the studio page and the notebook view need of a song: its notes per track (JSON) and its audio (WAV).

A song travels as `{"name", "tempo", "resolution", "beats_per_bar", "steps", "bars", "lowest_pitch",
"tracks": [{"name", "program", "is_drum", "color", "notes": [start, end, pitch, ...]}]}`, times in steps
(`resolution` per beat), pitches as MIDI numbers, notes flattened in triples ordered by start.
"""

from __future__ import annotations

import io
import os
import struct
import threading
import wave

import numpy as np

from vaejax.config import TRACKS, DataConfig
from vaejax.music import LPD5_PROGRAMS, from_multitrack, note_runs, tempo_of

COLORS = {"Drums": "#e4572e", "Piano": "#3d8bfd", "Guitar": "#f2a900", "Bass": "#2fb344", "Strings": "#b065e6"}
"""One colour per LPD-5 track, the same in the page, the notebook and the screenshots."""

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")


def song_payload(mt, cfg: DataConfig = DataConfig(), *, roll: np.ndarray | None = None) -> dict:
    """A Multitrack (Drums, Piano, Guitar, Bass, Strings) as the page's JSON song. `roll`: its `[5, T, P]`
    bool roll when already at hand."""
    roll = from_multitrack(mt, cfg) if roll is None else roll
    rows, start, end = note_runs(roll)
    track, pitch = np.divmod(rows, roll.shape[-1])
    order = np.lexsort((pitch, start, track))
    tracks = []
    for t, name in enumerate(TRACKS):
        sel = order[track[order] == t]
        notes = np.stack([start[sel], end[sel], pitch[sel] + cfg.lowest_pitch], axis=1).ravel()
        tracks.append(
            {
                "name": name,
                "program": LPD5_PROGRAMS[t],
                "is_drum": t == 0,
                "color": COLORS[name],
                "notes": notes.astype(int).tolist(),
            }
        )
    steps = int(roll.shape[1])
    bar = cfg.resolution * cfg.beats_per_bar
    return {
        "name": str(mt.name or "song"),
        "tempo": round(float(tempo_of(mt)), 3),
        "resolution": cfg.resolution,
        "beats_per_bar": cfg.beats_per_bar,
        "steps": steps,
        "bars": -(-steps // bar),
        "lowest_pitch": cfg.lowest_pitch,
        "tracks": tracks,
    }


def note_counts(payload: dict) -> dict[str, int]:
    """Notes per track name of a JSON song."""
    return {t["name"]: len(t["notes"]) // 3 for t in payload["tracks"]}


def only_tracks(mt, keep):
    """A copy of a Multitrack in which the tracks whose index is not in `keep` are silent (the length stays)."""
    import copy

    out = copy.deepcopy(mt)
    for i, tr in enumerate(out.tracks):
        if i not in keep:
            tr.pianoroll = np.zeros_like(np.asarray(tr.pianoroll))
    return out


def wav_bytes(audio: np.ndarray, sample_rate: int) -> bytes:
    """Float samples in [-1, 1] as a 16-bit mono WAV file."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(int(sample_rate))
        w.writeframes((np.clip(np.asarray(audio, np.float32), -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def render_wav(mt, sample_rate: int = 22050, keep=None) -> tuple[bytes, str]:
    """(WAV bytes, how they were made) of a Multitrack, with only the tracks `keep` (indices) when given."""
    from vaejax import render

    if keep is not None:
        mt = only_tracks(mt, set(keep))
    audio, how = render.synthesize(mt, sample_rate=sample_rate)
    return wav_bytes(audio, sample_rate), how


TAIL_SECONDS = 1.0
"""Audio kept after the last bar, for the last notes' release."""
LIMIT = 0.9
GAIN = 1.8
"""Level of streamed audio: the synthesiser's own output times this, softly limited above `LIMIT` (a stream
cannot be scaled by a peak it has not rendered yet; `render.synthesize` scales whole songs to a peak of 0.9)."""


def wav_header(frames: int, sample_rate: int) -> bytes:
    """The 44-byte header of a 16-bit mono WAV file of `frames` samples."""
    data = frames * 2
    return (
        b"RIFF"
        + struct.pack("<I", 36 + data)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data"
        + struct.pack("<I", data)
    )


def _limit(x: np.ndarray) -> np.ndarray:
    y = x * GAIN
    over = np.abs(y) > LIMIT
    y[over] = np.sign(y[over]) * (LIMIT + (1 - LIMIT) * np.tanh((np.abs(y[over]) - LIMIT) / (1 - LIMIT)))
    return y


_SOUNDFONT: list[bytes] = []


def synth_midi(midi: bytes) -> bytes:
    """MIDI file bytes -> WAV file bytes from the `midirenderer` SoundFont synthesiser with pretty_midi's
    General MIDI SoundFont (as `vaejax.render` uses)."""
    import midirenderer

    from vaejax import render

    if not _SOUNDFONT:
        with open(render._soundfont(), "rb") as f:
            _SOUNDFONT.append(f.read())
    return midirenderer.render_wave_from(_SOUNDFONT[0], midi)


class WavStream:
    """A song's General MIDI audio, made a few bars at a time so that playback can start before the whole song
    is rendered: the WAV's length is known up front (the song's plus `TAIL_SECONDS`), then each span of bars
    is rendered (the notes that start in it, with their release into later spans) and added into the mix,
    and the samples that no later span can change are released. Spans grow (1, 2, 4, 8 bars): the first sound
    comes quickly, the rest with few synthesiser calls. The sound is the `midirenderer` SoundFont synthesiser's
    (as `vaejax.render` uses); where it is absent, or with `whole=True`, the whole song is rendered at once by
    `render.synthesize` (peak-normalised, as `sample.py` writes it) before the first sample is released.

    `step()` renders the next span and `run()` all of them (in a worker thread); `part(i)` waits for the i-th
    piece of bytes (the header first), `data()` for all of them; `size` is the file's length in bytes."""

    def __init__(self, mt, sample_rate: int = 22050, keep=None, *, whole: bool = False):
        from vaejax.music import tempo_of

        self.mt = mt if keep is None else only_tracks(mt, set(keep))
        self.sample_rate = int(sample_rate)
        self.whole = whole
        self.tempo = tempo_of(mt)
        self.seconds = mt.get_max_length() * 60.0 / self.tempo / mt.resolution
        self.frames = int(round((self.seconds + TAIL_SECONDS) * self.sample_rate))
        self.size = 44 + 2 * self.frames
        self.how = ""
        self._parts = [wav_header(self.frames, self.sample_rate)]
        self._done = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._gen = None

    @property
    def done(self) -> bool:
        return self._done

    def step(self) -> bool:
        """Render the next span of bars (one worker thread at a time); False once the file is complete."""
        if self._done:
            return False
        if self._gen is None:
            self._gen = self._produce()
        try:
            chunk = next(self._gen)
        except StopIteration:
            chunk = None
        except BaseException as e:  # handed to the readers
            self._error = e
            chunk = None
        with self._cond:
            if chunk is None:
                self._done = True
            else:
                self._parts.append(chunk)
            self._cond.notify_all()
        return not self._done

    def run(self) -> None:
        """Render the whole file."""
        while self.step():
            pass

    def part(self, i: int, timeout: float | None = None) -> bytes | None:
        """The i-th piece of the file, waiting for it; None after the last."""
        with self._cond:
            self._cond.wait_for(lambda: len(self._parts) > i or self._done, timeout)
            if len(self._parts) > i:
                return self._parts[i]
            if self._error is not None:
                raise RuntimeError(f"audio rendering failed: {self._error}") from self._error
            return None

    def data(self, timeout: float | None = None) -> bytes:
        with self._cond:
            self._cond.wait_for(lambda: self._done, timeout)
        self.part(len(self._parts))  # raises if rendering failed
        return b"".join(self._parts)

    def _pcm(self, x: np.ndarray) -> bytes:
        return (np.clip(x, -1, 1) * 32767).astype("<i2").tobytes()

    def _produce(self):
        from vaejax import render

        pm = render.to_pretty_midi(self.mt)
        try:
            import midirenderer
        except ImportError:
            midirenderer = None
        if self.whole or midirenderer is None or not any(i.notes for i in pm.instruments):
            audio, self.how = render.synthesize(self.mt, sample_rate=self.sample_rate)
            audio = np.pad(audio, (0, max(0, self.frames - audio.size)))[: self.frames]
            yield self._pcm(audio)
            return
        import pretty_midi

        self.how = "midirenderer (General MIDI SoundFont), streamed"
        sr, bar = self.sample_rate, 4 * 60.0 / self.tempo
        mix = np.zeros(self.frames, np.float32)
        done, start, span = 0, 0.0, 1
        notes = [sorted(i.notes, key=lambda n: n.start) for i in pm.instruments]
        while done < self.frames:
            end = start + span * bar
            last = end >= self.seconds
            part = pretty_midi.PrettyMIDI(initial_tempo=self.tempo, resolution=480)
            any_note = False
            for inst, ns in zip(pm.instruments, notes):
                out = pretty_midi.Instrument(program=inst.program, is_drum=inst.is_drum, name=inst.name)
                out.notes = [
                    pretty_midi.Note(n.velocity, n.pitch, n.start - start, n.end - start)
                    for n in ns
                    if start <= n.start < end or (last and n.start >= end)
                ]
                # an event after the notes keeps the synthesiser running through their release
                out.control_changes = [
                    pretty_midi.ControlChange(7, 100, max([n.end for n in out.notes] + [end - start]) + TAIL_SECONDS)
                ]
                any_note |= bool(out.notes)
                part.instruments.append(out)
            if any_note:
                buf = io.BytesIO()
                part.write(buf)
                with wave.open(io.BytesIO(synth_midi(buf.getvalue()))) as w:
                    rate, channels = w.getframerate(), w.getnchannels()
                    raw = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0
                mono = raw.reshape(-1, channels).mean(axis=1)
                if rate != sr:
                    t = np.arange(int(mono.size * sr / rate)) * (rate / sr)
                    mono = np.interp(t, np.arange(mono.size), mono).astype(np.float32)
                a = int(round(start * sr))
                n = max(0, min(mono.size, self.frames - a))
                mix[a : a + n] += mono[:n]
            ready = self.frames if last else min(self.frames, int(round(end * sr)))
            yield self._pcm(_limit(mix[done:ready]))
            done, start, span = ready, end, min(span * 2, 8)


def static_text(name: str) -> str:
    """A file of the page (`static/`), as text."""
    with open(os.path.join(STATIC, name), encoding="utf-8") as f:
        return f.read()
