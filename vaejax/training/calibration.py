"""After the VAEs: encode every bar, and the statistics generation needs (decoding thresholds, latent
normalisation, start bars), written to the run folder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import data as data_lib
from vaejax import latents as latents_lib
from vaejax import metrics, models, realism
from vaejax.config import SIGMA, TRACKS
from vaejax.runs import RunFolder
from vaejax.training.steps import THRESHOLDS

SUSTAIN_GRID = np.round(np.arange(0.2, 0.81, 0.1), 2)  # relative to the sustain where a note starts
GRID_SUSTAIN = np.concatenate([SUSTAIN_GRID, [2.0]])
"""Decoders on a grid also try 2 (a note never outlasts its first cell: drum hits)."""
ONSET_GRID = np.round(np.arange(0.05, 0.61, 0.05), 2)
SINGLE_GRID = THRESHOLDS  # one-channel decoders: the cell threshold, the grid validation reports F1 on
QUALIFIED_MIN = 0.9


def encode_dataset(graphdef, params, split: data_lib.Split, chunk: int = 1024) -> np.ndarray:
    """Latent parameters of every bar: `[bars, 5, 2K]` (mu then logvar), in song order."""
    enc = jax.jit(lambda p, x: models.encode_stack(graphdef, p, x, split.cfg))
    out = []
    for i in range(0, len(split), chunk):
        idx = np.arange(i, min(i + chunk, len(split)))
        x = split.bars(idx).astype(np.float32)
        if x.shape[1] < chunk:  # pad to one compiled shape
            x = np.concatenate([x, np.zeros((5, chunk - x.shape[1]) + x.shape[2:], np.float32)], 1)
        out.append(np.asarray(enc(params, x)).transpose(1, 0, 2)[: len(idx)])
    return np.concatenate(out) if out else np.zeros((0, len(TRACKS), 0), np.float32)


def run_encode(run: RunFolder, ds: dict, graphdef, params) -> dict[str, np.ndarray]:
    """Encode every split with the best VAEs into the run's latents; return them."""
    out = {}
    for name in data_lib.SPLITS:
        out[name] = encode_dataset(graphdef, params, ds[name])
        if jax.process_index() == 0:
            run.write_latents(name, out[name], ds[name].start, ds[name].length)
    return out


def calibrate_notes(graphdef, params, split: data_lib.Split, max_bars: int = 2048):
    """Decoding thresholds `[5, channels]` per track for `models.decode_notes`, searched on a grid over
    held-out bars: the best note-on F1 among settings whose decoded notes are at least QUALIFIED_MIN
    qualified (3 steps or longer; drums excepted, their hits are short), or the most qualified if none is;
    and, for decoders on a grid, the onset threshold of every cell (`onset_cuts`, `[5, cells]`; else None)."""
    n = min(len(split), max_bars)
    # bars from across the split (its first bars would be a handful of songs' intros)
    x = split.bars(np.sort(np.random.default_rng(0).choice(len(split), n, replace=False)))
    probs = jax.jit(lambda p, xb: models.reconstruct_stack(graphdef, p, xb, split.cfg))(params, x.astype(np.float32))
    channels = probs[0].shape[2]
    sub = x.shape[2] // probs[0].shape[3]

    cuts = onset_cuts(probs, x, split.cfg) if channels == 3 else None

    @jax.jit
    def counts(th, probs, x):  # th [5, channels] -> tp, fp, fn, notes, qualified notes per track
        roll = jax.vmap(lambda p, t, pl, oc: models.decode_notes(p, t, plays=pl, sub=sub, onset_cuts=oc))(
            probs[0], th, probs[1], cuts
        )
        nxt = lambda r, k: jnp.pad(r, ((0, 0), (0, 0), (0, k), (0, 0)))[:, :, k:]  # noqa: E731
        start = models.onsets(roll)
        qual = start & nxt(roll, 1) & nxt(roll, 2)
        axes = (1, 2, 3)
        return (*metrics.confusion(roll, x, axis=axes), jnp.sum(start, axis=axes), jnp.sum(qual, axis=axes))

    def search(grid):
        f1, qn = [], []
        for g in grid:
            th = jnp.asarray(g, jnp.float32)
            tp, fp, fn, notes, qual = jax.device_get(counts(th if th.ndim == 2 else jnp.tile(th, (5, 1)), probs, x))
            f1.append(metrics.prf(tp, fp, fn)[2])
            qn.append(qual / np.maximum(notes, 1))
        f1, qn = np.stack(f1), np.stack(qn)  # [grid, 5]
        if channels > 1:
            ok = qn >= QUALIFIED_MIN
            ok[:, 0] = True  # drums
            f1 = np.where(ok.any(0), np.where(ok, f1, -1.0), qn)
        return f1.argmax(0)

    if channels == 1:
        grid = [(a,) for a in SINGLE_GRID]
    elif channels == 2:
        grid = [(a, b) for a in SUSTAIN_GRID for b in ONSET_GRID]
    else:  # on a grid: onsets per cell (`onset_cuts`), then sustain, then each track's last-cell length
        # the onset column is only a summary here (decoding reads the cells' thresholds), kept a probability
        grid = [(a, float(np.clip(np.median(cuts), 0.01, 0.99)), sub) for a in GRID_SUSTAIN]
    best = np.asarray(grid, np.float32)[search(grid)]  # [5, channels]
    if channels == 3:
        tails = [np.concatenate([best[:, :2], np.full((5, 1), n, np.float32)], 1) for n in range(1, sub + 1)]
        pick = search(tails)
        best[:, 2] = pick + 1
        return best, np.asarray(cuts)
    return best, None


def onset_cuts(probs, x: np.ndarray, cfg) -> np.ndarray:
    """Per track and grid cell, the onset threshold at which the decoders start as many notes in that cell
    over the bars `x` (`[5, M, T, P]`) as the real bars do: `[5, cells]`. A decoder unsure where an
    off-beat note falls gives it less probability than a downbeat it is sure of; one threshold for all
    cells keeps the downbeats and drops the off-beats, which is what makes decoded music square."""
    sub = x.shape[2] // probs[0].shape[3]
    real = np.asarray(jax.jit(lambda a: models.to_grid(a, sub)[:, :, 1])(x.astype(np.float32)))  # [5, M, T', P]
    on = np.asarray(probs[0][:, :, 1]) * (np.asarray(probs[1]) > 0.5)[:, :, None, None]  # decoded only where it plays
    out = np.ones(real.shape[:1] + real.shape[2:3], np.float32)
    for t in range(real.shape[0]):
        for j in range(real.shape[2]):
            want = int(real[t, :, j].sum())
            cand = on[t, :, j].ravel()
            if 0 < want < len(cand):
                out[t, j] = max(float(np.partition(cand, len(cand) - want)[len(cand) - want]) - 1e-7, 0.01)
    return out


def data_stats(ds: dict) -> dict:
    """What a run records about the prepared data it was trained on."""
    r = ds["train"].report
    return {
        "source": r["source"],
        "synthetic": r.get("synthetic", False),
        "songs_read": r["songs_read"],
        "bars_per_split": r["bars_per_split"],
        "nonempty_bar_share": r["nonempty_bar_share"],
    }


def calibrate(
    run: RunFolder, vae_meta: dict, latents: dict, ds: dict, seed: int = 0, *, graphdef=None, params=None
) -> dict:
    """Sampling statistics saved beside the checkpoints: decoding thresholds, latent normalisation, and a
    bank of real bars to start generation from."""
    val = vae_meta.get("val", {})
    cuts = None
    if graphdef is not None and len(ds["valid"]):
        thresholds, cuts = calibrate_notes(graphdef, params, ds["valid"])
        thresholds = thresholds.tolist()
    else:
        thresholds = [[val.get(f"threshold_{t}", 0.5)] for t in TRACKS]
    norm = latents_lib.LatentNorm.fit(latents["train"])
    bank = latents_lib.start_bars(latents["train"], ds["train"], seed=seed)
    stats = {
        "thresholds": thresholds,
        "val": val,
        "data": data_stats(ds),
        "latent_mean": norm.mean.tolist(),
        "latent_std": norm.std.tolist(),
    }
    if cuts is not None:
        stats["onset_thresholds"] = cuts.tolist()
    if jax.process_index() == 0:
        run.write_start_bars(bank)
        run.write_stats(stats)  # last: its presence marks the encode stage done
    return stats


PRIOR_ROUNDS = 4
PRIOR_STEP = 0.7
"""Each round moves the prior's decoding this far (as a power) toward the real statistics."""
PRIOR_MIN_SCALE = 1.0
"""The count factor never goes below this: the calibration adds notes where the decoders write too few, and
leaves as many as they expect elsewhere (with fewer, the decoders keep their surest pitches and the bars
lose pitch classes: piano and strings 8-18% fewer per bar in the ablation)."""
PRIOR_SUSTAIN_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
"""Sustain factors tried for the prior's bars (a note lasts while its sustain probability stays above the
factor times its value where it started)."""
PRIOR_SEED = 1000
"""Songs drawn for calibration start from this seed, away from the seeds evaluations draw with."""


def prior_decoding(
    model, want: dict, *, songs: int = 100, bars: int = 32, rounds: int = PRIOR_ROUNDS, seed: int = PRIOR_SEED
):
    """Decoding of the bars a learned prior draws, calibrated so that they start as many notes per bar, and
    at the same places in the bar, as real passages do (`want`: their `realism.rhythm_stats`).

    The prior's latents are less certain than encoded ones, and a decoder places the notes of a less
    certain latent on the beats it is surest of (drums on the backbeat, piano on the downbeat) and writes
    fewer of them. Per track, each round samples `songs` songs of `bars` bars at the default sigma,
    compares their onset-position histogram (sixteenths) and onsets per playing bar with the real ones
    (`realism.rhythm_stats`), and moves each cell's onset threshold (counted notes are ranked by
    probability over it) and the factor on the number of notes toward them. Then, on the same songs, each
    pitched track's sustain factor is the one of `PRIOR_SUSTAIN_GRID` whose notes' mean length is nearest
    the real one (the prior's notes, decoded with the reconstruction's factor, ended too early). Returns
    (onset thresholds `[5, cells]`, count factors `[5]`, sustain factors `[5]`, per round and track the TV
    distance, onsets and length ratios, the last entry with the chosen sustain), or None where the decoders
    are not on a sixteenth grid."""
    d = model.cfg.data
    per_bar = d.resolution * d.beats_per_bar
    cells = model.onset_cuts.shape[1]
    if not model.per_cell_onsets or cells != realism.SIXTEENTHS * d.segment_bars:
        return None
    cuts = np.array(model.onset_cuts, np.float32)
    scale = np.ones(len(TRACKS), np.float32)
    sustain = np.array(model.thresholds[:, 0], np.float32)

    def measure(m):
        # the same songs every time (one seed), so that rounds differ by their decoding alone
        gen = m.prior_bars(bars, sigma=SIGMA, seed=seed, num=songs)  # [5, songs, bars, T, P]
        flat = np.moveaxis(gen, 0, 1).reshape(songs, len(TRACKS), bars * per_bar, -1)
        got = realism.rhythm_stats(flat, steps_per_bar=per_bar)
        return got, {t: {k: round(float(v), 4) for k, v in c.items()} for t, c in realism.compare(got, want).items()}

    history, m = [], model.with_prior_decoding(cuts, scale, sustain)  # from the reconstruction's decoding
    for r in range(rounds + 1):
        got, row = measure(m)
        history.append(row)
        if r == rounds:
            break
        for i, t in enumerate(TRACKS):
            if not got[t]["notes"] or not want[t]["notes"]:
                continue
            ratio = (np.asarray(got[t]["onset_hist"]) + 0.005) / (np.asarray(want[t]["onset_hist"]) + 0.005)
            ratio = np.clip(ratio, 0.5, 2.0)  # small steps: a cell without notes would otherwise take them all
            cuts[i] *= ratio[np.arange(cells) % realism.SIXTEENTHS] ** PRIOR_STEP  # more than real: a higher bar
            cuts[i] = np.clip(cuts[i] / max(float(cuts[i].max()), 1.0), 1e-3, 1.0)  # only their ratios rank
            scale[i] *= (want[t]["onsets_per_bar"] / max(got[t]["onsets_per_bar"], 1e-6)) ** PRIOR_STEP
        scale = np.clip(scale, PRIOR_MIN_SCALE, 4.0)
        m = model.with_prior_decoding(cuts, scale, sustain)
    pitched = sustain <= 1  # drums decode with "no sustain" (2): their hits last a calibrated tail
    if pitched.any():
        best, choice = np.full(len(TRACKS), np.inf), sustain.copy()
        for f in PRIOR_SUSTAIN_GRID:
            got, _ = measure(model.with_prior_decoding(cuts, scale, np.where(pitched, f, sustain)))
            for i, t in enumerate(TRACKS):
                if pitched[i] and got[t]["notes"] and want[t]["mean_length"] > 0:
                    err = abs(np.log(max(got[t]["mean_length"], 1e-6) / want[t]["mean_length"]))
                    if err < best[i]:
                        best[i], choice[i] = err, f
        sustain = choice
        history.append(measure(model.with_prior_decoding(cuts, scale, sustain))[1])
    return cuts, scale, sustain, history
