"""Realism of rhythm: how generated or reconstructed passages differ from real ones, on a sixteenth grid.

Everything here reads plain bool rolls at the data's resolution, `[songs, 5, steps, pitches]` (a passage
of whole bars per song), so it scores any system's output the same way:

- `rhythm_stats`: per track, where in the bar notes start (a 16-bin histogram of onset positions, each
  onset moved to its nearest sixteenth), onsets per bar and note lengths in sixteenths;
- `compare`: those statistics against a real reference (total-variation distance between onset
  histograms, relative differences of onsets per bar and mean note length);
- `phrase_features` + `two_sample_test`: a classifier trained to tell phrases (4 bars by default) of one
  source from real phrases, cross-validated by song, with a real-vs-real split as its floor. The songs are
  compared in one key (a key-normalised cache and a key-normalised model), so key alone cannot tell them
  apart. The feature set and the classifier are arguments: `FEATURES` lists the default feature groups,
  and any scikit-learn-style estimator factory can replace `default_classifier`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from vaejax.config import TRACKS
from vaejax.music import note_runs

SIXTEENTHS = 16
LENGTH_BINS = (1, 2, 3, 5, 9, 17)
"""Note-length histogram edges, in sixteenths (lengths rounded to whole sixteenths, at least 1): 1, 2, 3-4,
5-8, 9-16, 17 and longer."""


def note_table(roll: np.ndarray, sub: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Notes of one track's `[steps, pitches]` bool roll: (start step, length in steps, pitch, onset
    sixteenth index counted from the passage start, nearest sixteenth)."""
    pitch, t_on, t_off = note_runs(roll)
    return t_on, t_off - t_on, pitch, (t_on + sub // 2) // sub


def _track_notes(songs: np.ndarray, sub: int):
    """Per track, arrays over all notes of all songs: (sixteenth position in its bar, length in sixteenths,
    song index)."""
    out = []
    for t in range(songs.shape[1]):
        pos, lens, song = [], [], []
        for s in range(songs.shape[0]):
            _, length, _, six = note_table(songs[s, t], sub)
            pos.append(six % SIXTEENTHS)
            lens.append(length / sub)
            song.append(np.full(len(six), s))
        out.append((np.concatenate(pos), np.concatenate(lens), np.concatenate(song)))
    return out


def rhythm_stats(songs: np.ndarray, *, steps_per_bar: int = 96) -> dict:
    """Per track: `onset_hist` (16 shares, onsets at each sixteenth of the bar), `onsets_per_bar` and
    `pitches_per_bar` (distinct pitches sounding; both over the bars where the track plays, `bars_played`),
    `mean_length` and `length_hist` (sixteenths), `notes`."""
    songs = np.asarray(songs, bool)
    sub = steps_per_bar // SIXTEENTHS
    bars = songs.shape[2] // steps_per_bar
    per_bar = songs[..., : bars * steps_per_bar, :].reshape(*songs.shape[:2], bars, steps_per_bar, -1)
    played = per_bar.any(axis=(3, 4)).sum(axis=(0, 2))  # [5] bars where each track plays
    pitches = per_bar.any(axis=3).sum(axis=(0, 2, 3))  # [5] distinct pitches per bar, summed over bars
    out = {}
    for t, (pos, lens, _) in enumerate(_track_notes(songs, sub)):
        n = len(pos)
        hist = np.bincount(pos, minlength=SIXTEENTHS) / max(n, 1)
        lh = np.histogram(np.maximum(np.round(lens), 1), bins=list(LENGTH_BINS) + [np.inf])[0] / max(n, 1)
        out[TRACKS[t]] = {
            "notes": int(n),
            "bars_played": int(played[t]),
            "onset_hist": hist.tolist(),
            "onsets_per_bar": float(n / max(played[t], 1)),
            "pitches_per_bar": float(pitches[t] / max(played[t], 1)),
            "mean_length": float(lens.mean()) if n else 0.0,
            "length_hist": lh.tolist(),
        }
    return out


def pool_stats(parts: list[dict]) -> dict:
    """`rhythm_stats` of several groups of songs -> those of all the songs together (for corpora too large
    to hold as one array)."""
    out = {}
    for t in parts[0]:
        n = np.array([p[t]["notes"] for p in parts], np.float64)
        w = n / max(n.sum(), 1)
        played = np.array([p[t]["bars_played"] for p in parts], np.float64)
        out[t] = {
            "notes": int(n.sum()),
            "bars_played": int(sum(p[t]["bars_played"] for p in parts)),
            "onset_hist": (w @ np.array([p[t]["onset_hist"] for p in parts])).tolist(),
            "onsets_per_bar": float(n.sum() / max(played.sum(), 1)),
            "pitches_per_bar": float(
                played @ np.array([p[t]["pitches_per_bar"] for p in parts]) / max(played.sum(), 1)
            ),
            "mean_length": float(w @ np.array([p[t]["mean_length"] for p in parts])),
            "length_hist": (w @ np.array([p[t]["length_hist"] for p in parts])).tolist(),
        }
    return out


def passage_stats(split, windows, segments: int, *, chunk: int = 64) -> dict:
    """`rhythm_stats` of passages of a prepared split (anything with `cfg` and `song(i)` -> `[5, n, T, P]`):
    `segments` segments from each (song index, first segment) of `windows`, read `chunk` passages at a time
    (a few hundred MB unpacked) and pooled."""
    per_bar = split.cfg.resolution * split.cfg.beats_per_bar
    parts = []
    for lo in range(0, len(windows), chunk):
        real = np.stack([split.song(i)[:, f : f + segments] for i, f in windows[lo : lo + chunk]])
        real = real.reshape(*real.shape[:2], -1, real.shape[-1])  # [passages, 5, steps, P]
        parts.append(rhythm_stats(real, steps_per_bar=per_bar))
    return pool_stats(parts)


def compare(stats: dict, real: dict) -> dict:
    """Distances of `rhythm_stats` from a real reference, per track: `onset_tv` (total variation between
    the onset-position histograms, 0 = same, 1 = disjoint), `onsets_ratio`, `length_ratio` and
    `pitches_ratio` (distinct pitches per playing bar; this over real; the last only where both carry it)."""
    out = {}
    for t in stats:
        a, b = stats[t], real[t]
        out[t] = {
            "onset_tv": 0.5 * float(np.abs(np.subtract(a["onset_hist"], b["onset_hist"])).sum()),
            "onsets_ratio": a["onsets_per_bar"] / max(b["onsets_per_bar"], 1e-9),
            "length_ratio": a["mean_length"] / max(b["mean_length"], 1e-9),
        }
        if "pitches_per_bar" in a and "pitches_per_bar" in b:
            out[t]["pitches_ratio"] = a["pitches_per_bar"] / max(b["pitches_per_bar"], 1e-9)
    return out


# ---- phrase features --------------------------------------------------------------------------------


def _onset_features(roll, sub, bars):
    t_on, length, pitch, six = note_table(roll, sub)
    n = len(six)
    pos = np.bincount(six % SIXTEENTHS, minlength=SIXTEENTHS) / max(n, 1)
    lens = length / sub
    lh = np.histogram(np.maximum(np.round(lens), 1), bins=list(LENGTH_BINS) + [np.inf])[0] / max(n, 1)
    return np.concatenate(
        [pos, lh, [n / bars, lens.mean() if n else 0.0, np.bincount(six, minlength=1).max() if n else 0.0]]
    )


def _pitch_features(roll, lowest_pitch):
    on = roll.any(axis=0)
    cells = roll.sum(axis=0).astype(np.float64)
    pcs = np.zeros(12)
    np.add.at(pcs, (np.arange(len(cells)) + lowest_pitch) % 12, cells)
    pcs = pcs / max(cells.sum(), 1)
    pitches = np.flatnonzero(on)
    poly = roll.sum(axis=1)
    sounding = poly > 0
    return np.concatenate(
        [
            pcs,
            [
                pitches.mean() if len(pitches) else 0.0,
                (pitches.max() - pitches.min()) if len(pitches) else 0.0,
                poly[sounding].mean() if sounding.any() else 0.0,
                sounding.mean(),
            ],
        ]
    )


def _bar_features(roll, steps_per_bar, bars):
    b = roll[: bars * steps_per_bar].reshape(bars, steps_per_bar, -1)
    plays = b.any(axis=(1, 2))
    sims = []
    for i in range(bars - 1):
        u = np.logical_or(b[i], b[i + 1]).sum()
        sims.append(np.logical_and(b[i], b[i + 1]).sum() / u if u else 1.0)
    return np.array([plays.mean(), np.mean(sims) if sims else 1.0])


FEATURES: dict[str, Callable] = {
    "onsets": lambda roll, ctx: _onset_features(roll, ctx["sub"], ctx["bars"]),
    "pitch": lambda roll, ctx: _pitch_features(roll, ctx["lowest_pitch"]),
    "bars": lambda roll, ctx: _bar_features(roll, ctx["steps_per_bar"], ctx["bars"]),
}
"""Feature groups computed per track of a phrase: name -> f(track roll `[steps, pitches]`, context)."""


def feature_names(features: dict[str, Callable] = FEATURES) -> list[str]:
    """Readable names of `phrase_features` columns (for reporting what separates most)."""
    names = {
        "onsets": [f"onset@{i}" for i in range(SIXTEENTHS)]
        + [f"len{lo}+" for lo in LENGTH_BINS]
        + ["onsets/bar", "mean length", "max onsets at one sixteenth"],
        "pitch": [f"pc{i}" for i in range(12)] + ["mean pitch", "pitch range", "polyphony", "sounding share"],
        "bars": ["bars played", "bar-to-bar similarity"],
    }
    out = []
    for t in TRACKS:
        for g in features:
            out += [f"{t} {n}" for n in names.get(g, [g])]
    return out


def phrase_features(
    songs: np.ndarray,
    *,
    phrase_bars: int = 4,
    steps_per_bar: int = 96,
    lowest_pitch: int = 24,
    features: dict[str, Callable] = FEATURES,
) -> tuple[np.ndarray, np.ndarray]:
    """Songs `[S, 5, steps, P]` -> (`[phrases, features]`, the song index of each phrase). Each song is cut
    into consecutive phrases of `phrase_bars` bars."""
    songs = np.asarray(songs, bool)
    bars = songs.shape[2] // steps_per_bar
    n = bars // phrase_bars
    ctx = {
        "sub": steps_per_bar // SIXTEENTHS,
        "bars": phrase_bars,
        "steps_per_bar": steps_per_bar,
        "lowest_pitch": lowest_pitch,
    }
    rows, groups = [], []
    for s in range(songs.shape[0]):
        for k in range(n):
            seg = songs[s, :, k * phrase_bars * steps_per_bar : (k + 1) * phrase_bars * steps_per_bar]
            rows.append(np.concatenate([f(seg[t], ctx) for t in range(seg.shape[0]) for f in features.values()]))
            groups.append(s)
    width = len(feature_names(features)) if features is FEATURES else (len(rows[0]) if rows else 0)
    return (np.asarray(rows, np.float64).reshape(-1, width), np.asarray(groups, np.int64))


def default_classifier(seed: int = 0):
    """Gradient-boosted trees (scikit-learn), small enough for a few thousand phrases in seconds."""
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(n_estimators=100, max_depth=3, subsample=0.8, random_state=seed)


def two_sample_test(
    a: np.ndarray,
    b: np.ndarray,
    groups_a: np.ndarray,
    groups_b: np.ndarray,
    *,
    folds: int = 5,
    seed: int = 0,
    make_classifier: Callable = default_classifier,
    names: list[str] | None = None,
    top: int = 8,
) -> dict:
    """Cross-validated accuracy of a classifier telling rows of `a` (label 0) from rows of `b` (label 1).

    Both sides are cut to the same number of rows (random, seeded) so that 50% is chance; folds keep each
    song's phrases together (a song's phrases are alike, so a classifier could otherwise recognise songs).
    Returns accuracy per fold and its mean, and, where the classifier reports `feature_importances_`, the
    `top` features that separate most (averaged over folds)."""
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    if n < 2 * folds:
        return {"accuracy": float("nan"), "phrases": int(n), "note": "too few phrases"}
    ia, ib = rng.permutation(len(a))[:n], rng.permutation(len(b))[:n]
    x = np.concatenate([a[ia], b[ib]])
    y = np.concatenate([np.zeros(n), np.ones(n)])
    # songs of the two sides are different songs: number them apart, then assign whole songs to folds
    g = np.concatenate([groups_a[ia], groups_b[ib] + (groups_a.max() + 1 if len(groups_a) else 0)])
    songs = np.unique(g)
    fold_of = dict(zip(songs, rng.permutation(len(songs)) % folds))
    fold = np.array([fold_of[s] for s in g])
    acc, imp = [], []
    for k in range(folds):
        test = fold == k
        if test.all() or not test.any() or len(np.unique(y[~test])) < 2:
            continue
        clf = make_classifier(seed + k)
        clf.fit(x[~test], y[~test])
        acc.append(float(np.mean(clf.predict(x[test]) == y[test])))
        if hasattr(clf, "feature_importances_"):
            imp.append(np.asarray(clf.feature_importances_))
    out = {"accuracy": float(np.mean(acc)) if acc else float("nan"), "folds": acc, "phrases": int(n)}
    if imp:
        mean = np.mean(imp, axis=0)
        order = np.argsort(mean)[::-1][:top]
        label = names if names is not None and len(names) == x.shape[1] else [f"f{i}" for i in range(x.shape[1])]
        out["top_features"] = [[label[i], float(mean[i])] for i in order]
    return out


def real_floor(feats: np.ndarray, groups: np.ndarray, *, seed: int = 0, **kw) -> dict:
    """The classifier's accuracy at telling two random halves of the real songs apart (about 50%)."""
    rng = np.random.default_rng(seed + 1)
    songs = np.unique(groups)
    half = set(rng.permutation(songs)[: len(songs) // 2].tolist())
    a = np.array([g in half for g in groups], bool)
    return two_sample_test(feats[a], feats[~a], groups[a], groups[~a], seed=seed, **kw)


def realism(
    real: np.ndarray,
    systems: dict[str, np.ndarray],
    *,
    phrase_bars=(4,),
    lowest_pitch: int = 24,
    steps_per_bar: int = 96,
    seed: int = 0,
    make_classifier: Callable = default_classifier,
) -> dict:
    """Rhythm statistics and two-sample tests of each system's songs against the real ones.

    `real` and each system: `[songs, 5, steps, P]` bool. Returns {"real": stats, "floor": {bars: test},
    name: {"stats", "vs_real", "classifier": {bars: test}}}."""
    names = feature_names()
    out = {"real": rhythm_stats(real, steps_per_bar=steps_per_bar), "floor": {}, "phrase_bars": list(phrase_bars)}
    real_feats = {}
    for pb in phrase_bars:
        real_feats[pb] = phrase_features(real, phrase_bars=pb, steps_per_bar=steps_per_bar, lowest_pitch=lowest_pitch)
        out["floor"][str(pb)] = real_floor(*real_feats[pb], seed=seed, make_classifier=make_classifier, names=names)
    for name, songs in systems.items():
        stats = rhythm_stats(songs, steps_per_bar=steps_per_bar)
        tests = {}
        for pb in phrase_bars:
            fa, ga = real_feats[pb]
            fb, gb = phrase_features(songs, phrase_bars=pb, steps_per_bar=steps_per_bar, lowest_pitch=lowest_pitch)
            tests[str(pb)] = two_sample_test(fa, fb, ga, gb, seed=seed, make_classifier=make_classifier, names=names)
        out[name] = {"stats": stats, "vs_real": compare(stats, out["real"]), "classifier": tests}
    return out
