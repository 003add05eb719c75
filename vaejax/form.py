"""Form: how songs repeat themselves, rest and come back, measured on bars compared with each other.

A bar is the set of (track, sixteenth, pitch) cells where any of the five tracks sounds (a cell of the
sixteenth grid is on when the pianoroll is on at any step inside it). Two bars are compared by Jaccard
similarity, |a & b| / |a | b|; two silent bars count as identical (1). From the bar-by-bar
self-similarity matrix of each song:

- similarity at lag L: the mean over songs and bars t of sim(t, t + L);
- phrase ratio: mean similarity at lags 4 and 8 over the mean at lags 3, 5 and 7 (above 1: material comes
  back at phrase distances more than at others, as in songs built of 4- and 8-bar phrases);
- near repeats: the share of bars from the fifth on whose best match among the earlier bars has
  similarity >= 0.8;
- empty bars per track (%), used pitch classes per non-empty bar per pitched track (`metrics`).

Songs are `[S, 5, bars, T, P]` bool arrays (T divisible by 16).
"""

from __future__ import annotations

import numpy as np

from vaejax import metrics
from vaejax.config import TRACKS

LAGS = (1, 2, 3, 4, 8, 16)
PHRASE_LAGS = (4, 8)
OTHER_LAGS = (3, 5, 7)
NEAR = 0.8
"""Similarity from which a bar counts as a near repeat of an earlier one."""
FIRST = 4
"""Near repeats are counted from this bar on (0-based: the fifth bar)."""


def grid(songs: np.ndarray, cells: int = 16) -> np.ndarray:
    """`[S, 5, bars, T, P]` -> `[S, bars, 5 * cells * P]` bool: each bar's sounding cells on a grid of
    `cells` per bar."""
    s, n, b, t, p = songs.shape
    g = songs.reshape(s, n, b, cells, t // cells, p).any(4)  # [S, 5, bars, cells, P]
    return np.moveaxis(g, 2, 1).reshape(s, b, -1)


def self_similarity(songs: np.ndarray) -> np.ndarray:
    """Bar-by-bar Jaccard similarity `[S, bars, bars]` of `[S, 5, bars, T, P]` songs."""
    g = grid(songs).astype(np.float32)
    inter = np.einsum("sbc,sdc->sbd", g, g)
    size = g.sum(-1)
    union = size[:, :, None] + size[:, None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


def lag_similarity(ssm: np.ndarray, lag: int) -> float:
    """Mean of sim(t, t + lag) over songs and bars (NaN when the songs are too short)."""
    if lag >= ssm.shape[-1]:
        return float("nan")
    return float(np.mean(np.diagonal(ssm, offset=lag, axis1=1, axis2=2)))


def near_repeats(ssm: np.ndarray, near: float = NEAR, first: int = FIRST) -> float:
    """Share of bars t >= `first` with max over s < t of sim(t, s) >= `near`."""
    b = ssm.shape[-1]
    if b <= first:
        return float("nan")
    earlier = np.tril(np.ones((b, b), bool), -1)
    best = np.where(earlier, ssm, -1.0).max(-1)[:, first:]  # [S, bars - first]
    return float(np.mean(best >= near))


def form_metrics(songs: np.ndarray, lowest_pitch: int = 24) -> dict:
    """Every form measure of `[S, 5, bars, T, P]` songs (see the module docstring); similarities 0-1,
    shares in percent."""
    ssm = self_similarity(songs)
    out = {f"sim lag {lag}": lag_similarity(ssm, lag) for lag in LAGS}
    phrase = np.mean([lag_similarity(ssm, lag) for lag in PHRASE_LAGS])
    other = np.mean([lag_similarity(ssm, lag) for lag in OTHER_LAGS])
    out["phrase ratio"] = float(phrase / other) if other > 0 else float("nan")
    out["near repeats %"] = 100 * near_repeats(ssm)
    for i, name in enumerate(TRACKS):
        bars = songs[:, i].reshape((-1,) + songs.shape[3:])
        out[f"empty % {name}"] = 100 * metrics.empty_bar_rate(bars)
        if i:
            out[f"UPC {name}"] = metrics.used_pitch_classes(bars, lowest_pitch)
    return out


def plot_self_similarity(path: str, rows: dict, songs: int = 4) -> str:
    """Self-similarity matrices of the first `songs` songs of each row ({label: `[S, 5, bars, T, P]`}), one
    row of pictures per label, saved to `path`."""
    from vaejax.render import new_figure

    fig = new_figure((2.2 * songs, 2.3 * len(rows)))
    axes = fig.subplots(len(rows), songs, squeeze=False)
    for r, (label, x) in enumerate(rows.items()):
        ssm = self_similarity(x[:songs])
        for c in range(songs):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(ssm):
                ax.imshow(ssm[c], vmin=0, vmax=1, cmap="magma", interpolation="nearest")
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    fig.suptitle("bar self-similarity (Jaccard, sixteenth grid, all five tracks)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path
