"""MuseGAN-style evaluation metrics on binary bars, vectorised over many bars.

Inputs are bool arrays `[bars, steps, pitches]` (one track) with `lowest_pitch` the MIDI pitch of row 0,
24 steps per beat. Unlike some public metric code (see the project README), pitch class is
`pitch % 12`, note length is measured along time, and empty beats are the beats with no note.
"""

from __future__ import annotations

import numpy as np

from vaejax.config import RESOLUTION, TRACKS
from vaejax.music import note_runs, pitch_class_histogram, scale_masks

RES = RESOLUTION
STEPS_16TH = RES // 4


def confusion(pred, true, axis=None):
    """(true positives, false positives, false negatives) of two boolean arrays (NumPy or JAX), summed
    over `axis`."""
    return (pred & true).sum(axis=axis), (pred & ~true).sum(axis=axis), (~pred & true).sum(axis=axis)


def prf(tp, fp, fn):
    """Precision, recall and F1 from counts (numpy arrays or numbers); 0 where undefined."""
    p = tp / np.maximum(tp + fp, 1)
    r = tp / np.maximum(tp + fn, 1)
    return p, r, 2 * p * r / np.maximum(p + r, 1e-12)


def _nonempty(bars: np.ndarray) -> np.ndarray:
    return bars.any(axis=(1, 2))


def empty_bar_rate(bars: np.ndarray) -> float:
    """EB: share of bars without any note (0-1)."""
    if len(bars) == 0:
        return float("nan")
    return float(1.0 - _nonempty(bars).mean())


def empty_beat_rate(bars: np.ndarray, resolution: int = RES) -> float:
    """Share of beats without any note (0-1)."""
    n, t, p = bars.shape
    beats = bars.reshape(n, t // resolution, resolution * p).any(axis=2)
    return float(1.0 - beats.mean()) if beats.size else float("nan")


def pitch_classes(bars: np.ndarray, lowest_pitch: int = 24) -> np.ndarray:
    """`[bars, 12]` bool: which pitch classes (pitch % 12) sound in each bar."""
    used = bars.any(axis=1)  # [n, P]
    pcs = (np.arange(bars.shape[2]) + lowest_pitch) % 12
    out = np.zeros((bars.shape[0], 12), bool)
    for c in range(12):
        out[:, c] = used[:, pcs == c].any(axis=1)
    return out


def used_pitch_classes(bars: np.ndarray, lowest_pitch: int = 24) -> float:
    """UPC: mean number of pitch classes per non-empty bar (0-12)."""
    keep = _nonempty(bars)
    if not keep.any():
        return float("nan")
    return float(pitch_classes(bars[keep], lowest_pitch).sum(axis=1).mean())


def note_lengths(bars: np.ndarray) -> np.ndarray:
    """Lengths (steps) of every note: runs of "on" along time, per bar and pitch (a note ends at the bar)."""
    _, start, end = note_runs(bars)
    return end - start


def qualified_note_rate(bars: np.ndarray, min_steps: int = 3) -> float:
    """QN: share of notes at least `min_steps` long (3 steps = a 32nd note at 24 steps per beat)."""
    lengths = note_lengths(bars)
    return float((lengths >= min_steps).mean()) if lengths.size else float("nan")


def onset_counts(bars: np.ndarray) -> np.ndarray:
    """`[bars, steps]` counts of notes starting at each step."""
    prev = np.pad(bars, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    return (bars & ~prev).sum(axis=2)


def drum_pattern_rate(bars: np.ndarray, off_grid_weight: float = 0.3) -> float:
    """DP: how well drum onsets sit on a 16th-note grid (0-1), best of the grid's phase shifts.

    An onset on the grid scores 1, one step off it scores `off_grid_weight`, elsewhere 0; per bar the best
    of the six phase shifts of the grid is taken; the result is total score over total onsets.
    """
    on = onset_counts(bars).astype(np.float64)  # [n, T]
    t = np.arange(bars.shape[1])
    best = np.zeros(bars.shape[0])
    for shift in range(STEPS_16TH):
        r = (t - shift) % STEPS_16TH
        w = np.where(r == 0, 1.0, np.where((r == 1) | (r == STEPS_16TH - 1), off_grid_weight, 0.0))
        best = np.maximum(best, on @ w)
    total = on.sum()
    return float(best.sum() / total) if total else float("nan")


def polyphony_rate(bars: np.ndarray) -> float:
    """Share of sounding time steps where two or more pitches sound together (0-1)."""
    count = bars.sum(axis=2)
    sounding = count > 0
    return float((count[sounding] >= 2).mean()) if sounding.any() else float("nan")


def polyphony(bars: np.ndarray) -> float:
    """Mean number of pitches sounding at sounding time steps."""
    count = bars.sum(axis=2)
    return float(count[count > 0].mean()) if (count > 0).any() else float("nan")


def _tonal_matrix() -> np.ndarray:
    """Harte et al. (2006) 6 x 12 tonal-centroid transform (fifths, minor thirds, major thirds)."""
    k = np.arange(12)
    r1, r2, r3 = 1.0, 1.0, 0.5
    return np.stack(
        [
            r1 * np.sin(k * 7 * np.pi / 6),
            r1 * np.cos(k * 7 * np.pi / 6),
            r2 * np.sin(k * 3 * np.pi / 2),
            r2 * np.cos(k * 3 * np.pi / 2),
            r3 * np.sin(k * 2 * np.pi / 3),
            r3 * np.cos(k * 2 * np.pi / 3),
        ]
    )


def beat_chroma(bars: np.ndarray, lowest_pitch: int = 24, resolution: int = RES) -> np.ndarray:
    """`[bars * beats, 12]` chroma (sounding steps per pitch class) for every beat."""
    n, t, p = bars.shape
    per_pitch = bars.reshape(n * (t // resolution), resolution, p).sum(axis=1)  # [beats, P]
    pcs = (np.arange(p) + lowest_pitch) % 12
    chroma = np.zeros((per_pitch.shape[0], 12))
    np.add.at(chroma.T, pcs, per_pitch.T)
    return chroma


def tonal_distance(a: np.ndarray, b: np.ndarray, lowest_pitch: int = 24, resolution: int = RES) -> float:
    """TD between two tracks' bars (same shape): mean Euclidean distance of the tonal centroids of their
    L1-normalised beat chroma, over beats where both tracks sound."""
    ca, cb = beat_chroma(a, lowest_pitch, resolution), beat_chroma(b, lowest_pitch, resolution)
    both = (ca.sum(1) > 0) & (cb.sum(1) > 0)
    if not both.any():
        return float("nan")
    m = _tonal_matrix()
    ta = (ca[both] / ca[both].sum(1, keepdims=True)) @ m.T
    tb = (cb[both] / cb[both].sum(1, keepdims=True)) @ m.T
    return float(np.linalg.norm(ta - tb, axis=1).mean())


def chroma_agreement(a: np.ndarray, b: np.ndarray, lowest_pitch: int = 24, resolution: int = RES) -> float:
    """How much track `a` doubles track `b` (same-shape bars): over beats where both sound, the mean Jaccard
    similarity of the two sets of pitch classes sounding in the beat (1: the same pitch classes; a band
    that only doubles the piano is too consonant, one that ignores it is out of key)."""
    ca, cb = beat_chroma(a, lowest_pitch, resolution) > 0, beat_chroma(b, lowest_pitch, resolution) > 0
    both = ca.any(1) & cb.any(1)
    if not both.any():
        return float("nan")
    inter = (ca[both] & cb[both]).sum(1)
    return float(np.mean(inter / (ca[both] | cb[both]).sum(1)))


def scale_consistency(song: np.ndarray, lowest_pitch: int = 24) -> float:
    """Share of the pitched tracks' sounding cells (tracks 1-4 of `[5, bars, steps, pitches]` or
    `[5, steps, pitches]`) that lie in the song's best-fitting diatonic scale (0-1; NaN without notes)."""

    hist = pitch_class_histogram(song, lowest_pitch)
    total = hist.sum()
    return float((scale_masks().astype(np.int64) @ hist).max() / total) if total else float("nan")


def track_metrics(bars: np.ndarray, *, drums: bool = False, lowest_pitch: int = 24) -> dict:
    """EB, UPC, QN, polyphony rate (and DP for drums) of one track, in percent where MuseGAN uses percent."""
    keep = bars[_nonempty(bars)] if len(bars) else bars
    out = {"EB": 100 * empty_bar_rate(bars)}
    if drums:
        out["DP"] = 100 * drum_pattern_rate(keep) if len(keep) else float("nan")
    else:
        out["UPC"] = used_pitch_classes(bars, lowest_pitch)
        out["QN"] = 100 * qualified_note_rate(keep) if len(keep) else float("nan")
        out["polyphony_rate"] = 100 * polyphony_rate(keep) if len(keep) else float("nan")
    return out


def all_metrics(bars5: np.ndarray, lowest_pitch: int = 24, song_bars: int = 0) -> dict:
    """Every metric for `[5, bars, steps, pitches]` (Drums, Piano, Guitar, Bass, Strings). With
    `song_bars`, the bars are consecutive songs of that many bars and SC (scale consistency, %, mean over
    songs) is added."""

    out = {}
    if song_bars:
        n = bars5.shape[1] // song_bars
        sc = [scale_consistency(bars5[:, i * song_bars : (i + 1) * song_bars], lowest_pitch) for i in range(n)]
        sc = [v for v in sc if np.isfinite(v)]
        out["SC"] = 100 * float(np.mean(sc)) if sc else float("nan")
    for i, name in enumerate(TRACKS):
        for k, v in track_metrics(bars5[i], drums=(i == 0), lowest_pitch=lowest_pitch).items():
            out[f"{k} {name}"] = v
    pairs = (
        ("Bass", "Guitar"),
        ("Bass", "Strings"),
        ("Bass", "Piano"),
        ("Guitar", "Strings"),
        ("Guitar", "Piano"),
        ("Strings", "Piano"),
    )
    for x, y in pairs:
        out[f"TD {x[0]}-{y[0]}"] = tonal_distance(bars5[TRACKS.index(x)], bars5[TRACKS.index(y)], lowest_pitch)
    for x in ("Guitar", "Bass", "Strings"):
        out[f"CA {x[0]}-P"] = chroma_agreement(bars5[TRACKS.index(x)], bars5[TRACKS.index("Piano")], lowest_pitch)
    return out
