"""A procedural, SYNTHETIC multitrack corpus for the offline default and for tests.

Each song is 4/4 at 24 steps per beat: a key, a chord progression, and five parts written from it
(drum groove, piano chords or arpeggios, strummed guitar, bass line, sustained strings). Everything is
deterministic by seed. It is not music from any dataset; files are named `synthetic-*.npz` and the
folder holds a `SYNTHETIC` marker that reports and plots pick up.
"""

from __future__ import annotations

import os

import numpy as np

from vaejax.config import RESOLUTION, TRACKS
from vaejax.music import LPD5_PROGRAMS, MAJOR_SCALE

RES = RESOLUTION
BAR = 4 * RES
PROGRESSIONS = ((0, 7, 9, 5), (0, 5, 7, 5), (9, 5, 0, 7), (0, 9, 5, 7), (2, 7, 0, 0), (0, 4, 5, 7))
MAJOR = tuple(MAJOR_SCALE.tolist())


def _chord(root_pc: int, key: int) -> list[int]:
    """Diatonic triad (pitch classes) on a scale degree given as semitones above the key."""
    degree = MAJOR.index(root_pc) if root_pc in MAJOR else 0
    return [(key + MAJOR[(degree + k) % 7]) % 12 for k in (0, 2, 4)]


def song(seed: int, bars: int = 16) -> tuple[np.ndarray, float]:
    """One synthetic song: velocity pianoroll `[5, bars*96, 128]` (uint8) and its tempo."""
    rng = np.random.default_rng(seed)
    roll = np.zeros((5, bars * BAR, 128), np.uint8)
    key = int(rng.integers(12))
    prog = PROGRESSIONS[int(rng.integers(len(PROGRESSIONS)))]
    tempo = float(rng.choice([90, 100, 110, 120, 128, 140]))
    piano_style = int(rng.integers(3))
    bass_eighths = bool(rng.integers(2))
    hat_sixteenths = bool(rng.integers(2))
    has = rng.random(5) > np.array([0.05, 0.0, 0.3, 0.1, 0.2])  # some songs lack a track, as in LPD

    def note(track, start, length, pitch, vel=90):
        roll[track, start : start + length, pitch] = vel

    for b in range(bars):
        t0 = b * BAR
        chord = _chord(prog[b % len(prog)], key)
        root = chord[0]
        if has[0]:
            for beat in range(4):
                if beat in (0, 2) or (beat == 3 and b % 4 == 3):
                    note(0, t0 + beat * RES, 4, 36, 110)
                if beat in (1, 3):
                    note(0, t0 + beat * RES, 4, 38, 100)
            step = RES // 4 if hat_sixteenths else RES // 2
            for t in range(0, BAR, step):
                note(0, t0 + t, 3, 42, 70)
            if b % 8 == 7:
                note(0, t0 + 3 * RES + RES // 2, 6, 49, 100)
        piano_pitches = sorted(60 + (pc - 60) % 12 for pc in chord)
        if piano_style == 0:  # block chords on each half bar
            for half in (0, 2 * RES):
                for p in piano_pitches:
                    note(1, t0 + half, 2 * RES - 2, p)
        elif piano_style == 1:  # eighth-note arpeggio
            for i in range(8):
                note(1, t0 + i * RES // 2, RES // 2 - 1, piano_pitches[i % 3] + (12 if i % 6 == 5 else 0))
        else:  # melody over a sustained chord
            for p in piano_pitches:
                note(1, t0, BAR - 4, p - 12, 70)
            scale = [key + 60 + s for s in MAJOR]
            for i in range(4):
                note(1, t0 + i * RES, RES - 2, int(scale[rng.integers(7)]) + 12)
        if has[2]:
            for beat in (1, 3):
                for k, p in enumerate(sorted(48 + (pc - 48) % 12 for pc in chord)):
                    note(2, t0 + beat * RES + k, RES // 2, p + 12, 80)
        if has[3]:
            bass = 36 + (root - 36) % 12
            step = RES // 2 if bass_eighths else RES
            for i, t in enumerate(range(0, BAR, step)):
                note(3, t0 + t, step - 2, bass + (7 if i % 4 == 3 else 0), 100)
        if has[4]:
            for p in sorted(60 + (pc - 60) % 12 for pc in chord):
                note(4, t0, BAR, p, 60)
    return roll, tempo


def write_corpus(out: str, songs: int = 96, seed: int = 0, bars: int = 16) -> int:
    """Write `songs` synthetic LPD-5 npz files under `out`; return how many were written."""
    import pypianoroll

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "SYNTHETIC"), "w") as f:
        f.write("Procedurally generated demo songs (vaejax.demo), not real music data.\n")
    for i in range(songs):
        path = os.path.join(out, f"synthetic-{seed:03d}-{i:04d}.npz")
        if os.path.exists(path):
            continue
        roll, tempo = song(seed * 100_003 + i, bars)
        tracks = [
            pypianoroll.StandardTrack(name=TRACKS[t], program=LPD5_PROGRAMS[t], is_drum=(t == 0), pianoroll=roll[t])
            for t in range(5)
        ]
        downbeat = np.zeros(roll.shape[1], bool)
        downbeat[::BAR] = True
        mt = pypianoroll.Multitrack(
            name=f"synthetic-{i:04d}",
            resolution=RES,
            tracks=tracks,
            tempo=np.full(roll.shape[1], tempo),
            downbeat=downbeat,
        )
        pypianoroll.save(path, mt)
    return songs
