"""What the studio page and the notebook view need of a song: its notes per track (JSON) and its audio (WAV).

A song travels as `{"name", "tempo", "resolution", "beats_per_bar", "steps", "bars", "lowest_pitch",
"tracks": [{"name", "program", "is_drum", "color", "notes": [start, end, pitch, ...]}]}`, times in steps
(`resolution` per beat), pitches as MIDI numbers, notes flattened in triples ordered by start.
"""

from __future__ import annotations

import io
import os
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
        tracks.append({"name": name, "program": LPD5_PROGRAMS[t], "is_drum": t == 0, "color": COLORS[name],
                       "notes": notes.astype(int).tolist()})
    steps = int(roll.shape[1])
    bar = cfg.resolution * cfg.beats_per_bar
    return {"name": str(mt.name or "song"), "tempo": round(float(tempo_of(mt)), 3), "resolution": cfg.resolution,
            "beats_per_bar": cfg.beats_per_bar, "steps": steps, "bars": -(-steps // bar),
            "lowest_pitch": cfg.lowest_pitch, "tracks": tracks}


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


def static_text(name: str) -> str:
    """A file of the page (`static/`), as text."""
    with open(os.path.join(STATIC, name), encoding="utf-8") as f:
        return f.read()
