"""After the VAEs: encode every bar, and the statistics generation needs (decoding thresholds, latent
normalisation, start bars), written to the run folder."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from vaejax import data as data_lib
from vaejax import latents as latents_lib
from vaejax import metrics, models, realism
from vaejax.config import SIGMA, SUSTAIN_AGES, TRACKS
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
"""Each round moves the decoding this far (as a power) toward the real statistics."""
PRIOR_MIN_SCALE = 1.0
"""The prior's count factor never goes below this: the calibration adds notes where the decoders write too
few, and leaves as many as they expect elsewhere (with fewer, the decoders keep their surest pitches and the
bars lose pitch classes: piano and strings 8-18% fewer per bar in the ablation)."""
RECON_MIN_SCALE = 0.5
"""Reconstructions may start fewer notes than the decoders expect: encoded latents are sharp, and their
expected count runs over the real one (guitar, bass and strings 12-19% over before calibration)."""
PRIOR_SUSTAIN_GRID = (0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5)
"""Sustain factors tried for the prior's bars (a note lasts while its sustain probability stays above the
factor times its value where it started)."""
AGE_GRID = (0.03, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
"""Sustain factors tried per age of a note (`fit_decoding(age_grid=...)`), for reconstructions and the prior's
bars alike."""
RECON_SUSTAIN_GRID = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7)
"""Sustain factors tried for reconstructions (encoded latents hold their notes' probability longer)."""
SPREAD_GRID = (1.0, 0.85, 0.7, 0.6, 0.5, 0.4)
"""Pitch spreads tried (`models.decode_notes(spread=...)`): decoders sure of a bar's rhythm and unsure of
its pitches put their counted notes on the pitch they are surest of, so that encoded and drawn bars alike
repeat one pitch where real bars move between several (held-out reconstructions of lpd5 at 1: 4.4 / 3.9 /
1.9 / 4.7 distinct pitches per playing bar, piano / guitar / bass / strings, against 6.4 / 5.5 / 2.5 /
7.3)."""
SPREAD_TRACKS = ("Piano", "Guitar", "Strings")
"""The tracks whose pitch spread is calibrated: those that play chords, and for the prior's bars also those
decoded as one line (`TrainedModel.single_line`: the bass). Drums' rows are kit pieces; a bass decoded freely,
spread, adds notes under the ones it holds (two pitches at once was what most told a generated bass from a
real one), where as one line its counted notes move between pitches instead."""
RECON_SPREAD_GRID = ()
"""Reconstructions keep plain ranking (spread 1): spread, they have 5-14% fewer distinct pitches per bar than
real instead of 25-33% fewer, but onset TV on held-out passages 0.01-0.02 higher, F1 0.01-0.02 lower and the
classifier no lower (the ablation in docs/quality-report.md). Passing `SPREAD_GRID` calibrates it."""
PRIOR_SEED = 1000
"""Songs drawn for calibration start from this seed, away from the seeds evaluations draw with."""


def fit_decoding(
    measure,
    want: dict,
    cuts,
    scale,
    sustain,
    spread=None,
    *,
    rounds: int,
    min_scale: float,
    sustain_grid,
    spread_grid=(),
    spread_tracks=SPREAD_TRACKS,
    age_grid=(),
):
    """Move a decoding toward real rhythm statistics. `measure(cuts, scale, sustain, spread)` decodes the
    same latents each time and returns their `realism.rhythm_stats`; `want` is the real passages'. Per track,
    each round moves each cell's onset threshold by the ratio of decoded to real onset share at its
    sixteenth (counted notes are ranked by probability over it) and the factor on the number of notes by the
    ratio of onsets per playing bar. Where `spread_grid` is given, the pitch spread
    (`models.decode_notes(spread=...)`) of each track of `spread_tracks` is then the one of the grid whose
    distinct pitches per playing bar are nearest the real number (with as many notes as real: the count is
    matched first), followed by half as many rounds again. Then each pitched track's sustain factor is the
    one of `sustain_grid` whose notes' mean length is nearest the real one. Where `age_grid` is given, the
    sustain factor then becomes one per age of a note (`models.decode_notes(sustain_ages=...)`): in turn for
    ages 1, 2 and 3-4, the value of the grid whose share of notes ending there (of those that last that long:
    1, 2 and 3-4 sixteenths, the bins of `realism`'s length histogram) is nearest the real one, then the
    factor from age 5 on whose mean length is (lengths come last: fitted before the spread and its rounds,
    those moved them again, 7-33% over real on lpd5's prior). Returns (onset thresholds `[5, cells]`, count
    factors `[5]`, the one sustain factor per track `[5]`, pitch spreads `[5]`, per round and track the TV
    distance and the onsets, length and pitch ratios, with an entry for the sustain and one for the ages,
    and the sustain factors per age `[5, SUSTAIN_AGES]`, None without `age_grid` or a pitched track)."""
    cuts = np.array(cuts, np.float32)
    cells = cuts.shape[1]
    scale = np.array(scale, np.float32)
    sustain = np.array(sustain, np.float32)
    spread = np.ones(len(TRACKS), np.float32) if spread is None else np.array(spread, np.float32)
    history = []
    step = np.full((len(TRACKS), realism.SIXTEENTHS), PRIOR_STEP)
    last = np.zeros((len(TRACKS), realism.SIXTEENTHS))
    six = np.arange(cells) % realism.SIXTEENTHS

    def compared(got):
        return {t: {k: round(float(v), 4) for k, v in c.items()} for t, c in realism.compare(got, want).items()}

    def run_rounds(n):
        nonlocal scale
        for r in range(n + 1):
            got = measure(cuts, scale, sustain, spread)
            history.append(compared(got))
            if r == n:
                return
            for i, t in enumerate(TRACKS):
                if not got[t]["notes"] or not want[t]["notes"]:
                    continue
                ratio = (np.asarray(got[t]["onset_hist"]) + 0.005) / (np.asarray(want[t]["onset_hist"]) + 0.005)
                ratio = np.clip(ratio, 0.5, 2.0)  # small steps: a cell without notes would otherwise take them all
                # a sixteenth whose error changed sign overshot: its next steps are half as long (many bars can
                # share a borderline onset there, so that a small move starts or drops all of them at once)
                sign = np.sign(np.log(ratio))
                step[i] = np.where(sign * last[i] < 0, step[i] / 2, step[i])
                last[i] = sign
                cuts[i] *= ratio[six] ** step[i][six]  # more than real: a higher bar
                cuts[i] = np.clip(cuts[i] / max(float(cuts[i].max()), 1.0), 1e-3, 1.0)  # only their ratios rank
                scale[i] *= (want[t]["onsets_per_bar"] / max(got[t]["onsets_per_bar"], 1e-6)) ** PRIOR_STEP
            scale = np.clip(scale, min_scale, 4.0)

    def nearest(grid, set_value, stat, only=None):
        """Per track, the value of `grid` whose `stat` (a key of a track's statistics, or a function of them)
        comes nearest the real one, by ratio (ties: the first)."""
        of = stat if callable(stat) else (lambda c: c.get(stat, 0))
        best, choice = np.full(len(TRACKS), np.inf), np.full(len(TRACKS), np.nan, np.float32)
        for g in grid:
            got = measure(*set_value(g))
            for i, t in enumerate(TRACKS):
                if (only is None or only[i]) and got[t]["notes"] and of(want[t]) > 0:
                    err = abs(np.log(max(of(got[t]), 1e-6) / of(want[t])))
                    if err < best[i] - 1e-9:
                        best[i], choice[i] = err, g
        return choice

    def fit_lengths(sustain):
        """The one sustain factor per track for the mean length, then (`age_grid`) one per age of a note."""
        on = lambda f: (cuts, scale, np.where(pitched, f, sustain).astype(np.float32), spread)  # noqa: E731
        choice = nearest(sustain_grid, on, "mean_length", only=pitched)
        sustain = np.where(np.isnan(choice), sustain, choice).astype(np.float32)
        history.append(compared(measure(cuts, scale, sustain, spread)))
        if not len(age_grid):
            return sustain, None
        ages = np.repeat(sustain[:, None], SUSTAIN_AGES, 1)
        for a in range(SUSTAIN_AGES):

            def at_age(g, a=a):
                table = ages.copy()
                table[pitched, a] = g
                return cuts, scale, table, spread

            last = a == SUSTAIN_AGES - 1  # from age 5 on: the mean length; before: the share ending at bin a
            stat = "mean_length" if last else (lambda c, a=a: _ending_share(c["length_hist"], a))
            choice = nearest(age_grid, at_age, stat, only=pitched)
            ages[:, a] = np.where(np.isnan(choice), ages[:, a], choice)
        history.append(compared(measure(cuts, scale, ages, spread)))
        return sustain, ages

    pitched = sustain <= 1  # drums decode with "no sustain" (2): their hits last a calibrated tail
    ages = None
    run_rounds(rounds)
    if len(spread_grid):
        only = np.isin(TRACKS, spread_tracks)
        choice = nearest(
            spread_grid, lambda g: (cuts, scale, sustain, np.where(only, g, spread)), "pitches_per_bar", only
        )
        spread = np.where(np.isnan(choice), spread, choice).astype(np.float32)
        run_rounds(max(rounds // 2, 1))
    if pitched.any():
        sustain, ages = fit_lengths(sustain)
    return cuts, scale, sustain, spread, history, ages


def _ending_share(hist, k: int) -> float:
    """Of the notes at least as long as bin `k` of a length histogram, the share in that bin."""
    rest = float(np.sum(hist[k:]))
    return float(hist[k]) / rest if rest > 0 else 0.0


def _on_sixteenths(model) -> bool:
    """Whether the model's decoding can be calibrated: counted notes, decoders on a sixteenth grid."""
    d = model.cfg.data
    return bool(
        model.per_cell_onsets and model.count_notes and model.onset_cuts.shape[1] == realism.SIXTEENTHS * d.segment_bars
    )


def prior_decoding(
    model, want: dict, *, songs: int = 100, bars: int = 32, rounds: int = PRIOR_ROUNDS, seed: int = PRIOR_SEED
):
    """Decoding of the bars a learned prior draws, calibrated so that they start as many notes per bar, and
    at the same places in the bar, and hold them as long, as real passages do (`want`: their
    `realism.rhythm_stats`; `fit_decoding`), starting from the reconstruction's decoding.

    The prior's latents are less certain than encoded ones, and a decoder places the notes of a less
    certain latent on the beats it is surest of (drums on the backbeat, piano on the downbeat) and writes
    fewer of them; their sustain probabilities fall faster too. Each round decodes the same `songs` songs
    of `bars` bars, drawn once at the default sigma (one seed). Returns `fit_decoding`'s tuple, or None where the
    decoders are not on a sixteenth grid."""
    if not _on_sixteenths(model):
        return None
    d = model.cfg.data
    per_bar = d.resolution * d.beats_per_bar
    drawn = model.prior_draws(bars, sigma=SIGMA, seed=seed, num=songs)  # drawn once, decoded many times

    def measure(cuts, scale, sustain, spread):
        gen = model.with_prior_decoding(cuts, scale, sustain, spread).prior_bars(
            bars, sigma=SIGMA, seed=seed, num=songs, drawn=drawn
        )
        flat = np.moveaxis(gen, 0, 1).reshape(songs, len(TRACKS), bars * per_bar, -1)  # gen: [5, songs, bars, T, P]
        return realism.rhythm_stats(flat, steps_per_bar=per_bar)

    return fit_decoding(
        measure,
        want,
        model.onset_cuts,
        np.ones(len(TRACKS)),
        model.thresholds[:, 0],
        model.spread,
        rounds=rounds,
        min_scale=PRIOR_MIN_SCALE,
        sustain_grid=PRIOR_SUSTAIN_GRID,
        spread_grid=SPREAD_GRID,
        spread_tracks=tuple(dict.fromkeys(SPREAD_TRACKS + tuple(model.single_line))),
        age_grid=AGE_GRID,
    )


def reconstruction_decoding(model, passages: np.ndarray, want: dict, *, rounds: int = PRIOR_ROUNDS):
    """Decoding of encoded latents (reconstructions, variations, the chain), calibrated on real passages
    (`[S, 5, segments, T, P]`, each segment encoded, the piano decoded from its latents and the band under
    the decoded piano, as generation does, the band as trained, as `vary(sigma=0)` decodes it) so that their
    notes start where, and as often as, and last as long as `want` (the passages' `realism.rhythm_stats`)
    says; `fit_decoding`, starting from the model's decoding (`calibrate_notes`: per-cell thresholds matched
    on single bars, the sustain of the best F1). Returns `fit_decoding`'s tuple, or None where the decoders
    are not on a sixteenth grid."""
    if not _on_sixteenths(model) or not len(passages):
        return None
    d = model.cfg.data
    per_bar = d.resolution * d.beats_per_bar
    s, _, n, t, p = passages.shape
    z = model.encode_bars(np.moveaxis(passages, 1, 0).reshape(len(TRACKS), s * n, t, p))

    def measure(cuts, scale, sustain, spread):
        roll = model.with_decoding(cuts, scale, sustain, spread).rolls(z, guidance=1.0, single_line=())  # [5, S*n*T, P]
        return realism.rhythm_stats(np.moveaxis(roll.reshape(len(TRACKS), s, n * t, p), 1, 0), steps_per_bar=per_bar)

    return fit_decoding(
        measure,
        want,
        model.onset_cuts,
        model.count_scale,
        model.thresholds[:, 0],
        model.spread,
        rounds=rounds,
        min_scale=RECON_MIN_SCALE,
        sustain_grid=RECON_SUSTAIN_GRID,
        spread_grid=RECON_SPREAD_GRID,
        age_grid=AGE_GRID,
    )
