"""Probes of a song's manner kept from bar to bar (docs/quality-report.md "Tried: a song-level code"): does
telling the prior what the whole passage is like, or giving each song its own articulation, make generated
phrases harder to tell from real ones?

    python bench/song_manner_probes.py --data PREPARED --styled RUN --model lpd5 --seeds 0 1 \
        --probes codes articulation --out bench/results/prior_style/manner_probes.json
    python bench/song_manner_probes.py --data PREPARED --model lpd5 --seeds 0 1 --probes one_step --sigmas 0.4 0.5 \
        --out bench/results/prior_style/one_step.json
    python bench/song_manner_probes.py --data PREPARED --styled RUN --model lpd5 --seeds 0 --probes spread \
        --sigmas 0.3 0.5 --out bench/results/prior_style/spread.json

Per seed, the realism section's 50 test passages (`evaluate.realism_passages`) against 50 songs of 32 bars,
the two-sample classifier on 4-bar phrases (`realism.two_sample_test`):

- `codes` (`--styled`, a run whose prior reads a song-level code, `prior.style`): songs drawn with codes
  from the run's bank of training passages (as sampling does), and with the test passages' own codes (an
  oracle: the prior told exactly what each real passage is like as a whole), at each of `--sigmas`;
- `articulation` (`--model`): the model's songs decoded again with each song's sustain factors
  (`prior_sustain_ages`, the share of a note's starting probability it must keep to go on) scaled by
  exp(u), u drawn per song (shared by the tracks, `shared` of its variance) with spread `s`: each song held
  more legato or more staccato, as real songs differ; reported with the spread between songs of each
  pitched track's mean note length (sixteenths) and its mean, real and generated;
- `one_step` (`--model`): each test passage's bars drawn one step ahead (bar t drawn by the prior given the
  passage's real bars before it, teacher-forced, at each of `--sigmas`), against the passages' own latents and
  against songs drawn freely, each decoded as generation decodes and as reconstructions are (their onset
  cuts, count scale, sustain and spread, harmony guidance 1, no single-line bass, every drum piece; all
  through the same path, `_prior_rolls`, the plays bits as drawn or as real): whether what gives the
  prior's songs away is already in one bar drawn from real context, or builds up as a song drifts on its
  own bars;
- `spread` (`--model`, and `--styled` where given): the standardised latent means' spread (standard
  deviation per dimension, averaged) within each song and between songs' means, per track over the bars it
  plays in, of the real passages and of songs drawn at each of `--sigmas`: does a song keep one manner.
"""

from __future__ import annotations

import argparse
import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
from provenance import provenance

from vaejax import data as data_lib
from vaejax import evaluate, realism, trained_model
from vaejax import prior as prior_lib
from vaejax.config import DRUMS, TRACKS

PITCHED = [t for i, t in enumerate(TRACKS) if i != DRUMS]
PROBES = ("codes", "articulation", "one_step", "spread")
SPREADS = ((0.5, 1.0), (0.8, 1.0), (0.8, 0.5), (1.2, 0.7))
"""(s, shared) of the articulation rows."""


def _with_styles(model, styles):
    """`model` drawing new songs with `styles` as their codes (a probe: a TrainedModel is otherwise fixed)."""
    object.__setattr__(model, "prior_styles", lambda num, seed, *a: styles)
    return model


def length_spread(feats, groups, names) -> dict:
    """Per pitched track: the spread between songs of their phrases' mean note length, and its mean."""
    out = {}
    for t in PITCHED:
        i = names.index(f"{t} mean length")
        per_song = [feats[groups == g, i].mean() for g in np.unique(groups)]
        out[t] = [round(float(np.std(per_song)), 2), round(float(feats[:, i].mean()), 2)]
    return out


def encoded(model, flat, n):
    """Real passages `flat` `[5, n * bars, T, P]` as the prior reads them: standardised latent means
    `[n, bars, 5, K]` (float32) and plays bits `[n, bars, 5]` (bool)."""
    z = model._standardized_means(model.encode_bars(flat)).reshape(n, -1, len(TRACKS), model.K)
    return z.astype(np.float32), flat.any(axis=(2, 3)).T.reshape(n, -1, len(TRACKS))


def latent_spread(z, plays) -> dict:
    """Within-song and between-song spread per track of standardised means `z` `[S, bars, 5, K]` over the
    bars where the track plays (`plays` `[S, bars, 5]` bool); songs where it plays under 4 bars are left out."""
    out = {}
    for t, name in enumerate(TRACKS):
        within, means = [], []
        for s in range(z.shape[0]):
            x = z[s, plays[s, :, t], t]
            if len(x) >= 4:
                within.append(x.std(0).mean())
                means.append(x.mean(0))
        between = np.std(np.array(means), 0).mean() if len(means) > 1 else float("nan")
        out[name] = [round(float(np.mean(within)), 3), round(float(between), 3)]
    return out


def spread_probe(models: dict, flat, n, seed, sigmas) -> dict:
    """The `spread` probe: [within, between] per track of the real passages' latents and of each model's songs."""
    first = next(iter(models.values()))
    z, plays = encoded(first, flat, n)
    out = {"real": latent_spread(z, plays)}
    for label, m in models.items():
        for sigma in sigmas:
            out[f"{label} sigma={sigma}"] = latent_spread(*m.prior_draws(z.shape[1], sigma=sigma, seed=seed, num=n))
    return out


def one_step(model, flat, n, seed, accuracy, sigma: float = 0.5) -> dict:
    """The `one_step` probe (module docstring) on real passages `flat` `[5, n * bars, T, P]`, drawn at `sigma`."""
    bars = flat.shape[1] // n
    z, plays = encoded(model, flat, n)
    plays = plays.astype(np.float32)
    window = model._prior_windows["song"]
    phase = jnp.broadcast_to(jnp.arange(bars, dtype=jnp.int32), (n, bars))
    given = jnp.full(plays.shape, jnp.nan, jnp.float32)
    bias = jnp.zeros((n, len(TRACKS)), jnp.float32)
    temp = jnp.float32(prior_lib.temperature_of(sigma))
    key = jax.random.key(seed)
    az, ap = np.zeros_like(z), np.zeros_like(plays)
    for t in range(bars):  # bar t given the real bars < t (the rest of the window is drawn and dropped)
        wz, wp = window(
            model.prior["song"],
            jax.random.fold_in(key, t),
            jnp.asarray(z),
            jnp.asarray(plays),
            phase,
            temp,
            jnp.int32(t),
            None,
            given,
            bias,
            None,
        )
        az[:, t], ap[:, t] = np.asarray(wz)[:, t], np.asarray(wp)[:, t]
    free = model.prior_draws(bars, sigma=sigma, seed=seed, num=n)
    # decoded as reconstructions are: their onset cuts, count scale, sustain and spread, the band as trained
    # (harmony guidance 1), no single-line bass, every drum piece
    plain = model.with_options(harmony_guidance=1.0, single_line=(), drum_kit=0)
    recon = plain.with_prior_decoding(plain.onset_cuts, np.ones(len(TRACKS)), plain.sustain_ages, plain.spread)
    out = {}
    for name, (lz, lp) in (
        ("real latents", (z, plays > 0.5)),
        ("one step ahead", (az, ap > 0.5)),
        ("free-running", free),
    ):
        for decoding, m in (("generation's decoding", model), ("reconstructions' decoding", recon)):
            out[f"{name}, {decoding}"] = accuracy(m._prior_rolls(lz, lp, seed=seed + 1))[0]
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--styled", help="a run whose prior reads song-level codes (prior.style)")
    ap.add_argument("--model", default="lpd5")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 0.4, 0.5])
    ap.add_argument(
        "--probes", nargs="+", choices=PROBES, default=list(PROBES), help="which probes to run (`codes` needs --styled)"
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    test = data_lib.open_dataset(args.data)["test"]
    names = realism.feature_names()
    out = provenance("song_manner_probes.py", argv)
    out.update(model=args.model, styled=args.styled, seeds={})
    model = trained_model.load(args.model)
    styled = trained_model.load(args.styled) if args.styled else None
    for seed in args.seeds:
        real = evaluate.realism_passages(test, songs=50, bars=32, seed=seed)
        n = real.shape[1]
        flat = real.reshape(5, -1, *real.shape[3:])
        fr, gr = realism.phrase_features(evaluate._songs_of(flat, n))

        def accuracy(bars, flat=flat, n=n, fr=fr, gr=gr):
            fg, gg = realism.phrase_features(evaluate._songs_of(bars.reshape(flat.shape), n))
            return round(realism.two_sample_test(fr, fg, gr, gg)["accuracy"], 4), (fg, gg)

        row = {}
        if styled is not None and "codes" in args.probes:
            z, plays = encoded(styled, flat, n)
            own = np.asarray(prior_lib.style_of(jnp.asarray(z), jnp.asarray(plays.astype(np.float32))))
            bank = styled._style_bank
            drawn = bank[np.random.default_rng([seed, 11]).integers(len(bank), size=n)]
            row["codes"] = {}
            for sigma in args.sigmas:
                row["codes"][str(sigma)] = {
                    name: accuracy(_with_styles(styled, codes).prior_bars(32, sigma=sigma, seed=seed, num=n))[0]
                    for name, codes in (("bank", drawn), ("the passages' own", own))
                }
        if "spread" in args.probes:
            models = {"model": model} | ({"styled": styled} if styled is not None else {})
            row["spread"] = spread_probe(models, flat, n, seed, args.sigmas)
        if "one_step" in args.probes:
            row["one_step"] = {str(x): one_step(model, flat, n, seed, accuracy, x) for x in args.sigmas}
        if "articulation" not in args.probes:
            out["seeds"][str(seed)] = row
            print(seed, json.dumps(row), flush=True)
            continue
        z, plays = model.prior_draws(32, seed=seed, num=n)
        acc, (fg, gg) = accuracy(model.prior_bars(32, seed=seed, num=n, drawn=(z, plays)))
        row["articulation"] = {
            "real": length_spread(fr, gr, names),
            "as drawn": {"accuracy": acc, "length": length_spread(fg, gg, names)},
        }
        ages = model.prior_sustain_ages
        for s, shared in SPREADS:
            rng = np.random.default_rng([seed, 100])
            songs = []
            for i in range(n):
                u = s * (np.sqrt(shared) * rng.normal() + np.sqrt(1 - shared) * rng.normal(size=len(TRACKS)))
                a = ages.copy()
                pitched = np.arange(len(TRACKS)) != DRUMS  # (drums: one step, no sustain)
                a[pitched] = np.clip(ages[pitched] * np.exp(u[pitched, None]), 0.005, 0.98)
                mi = model.with_prior_decoding(model.prior_onset_cuts, model.prior_count_scale, a, model.prior_spread)
                songs.append(mi.prior_bars(32, seed=seed, num=1, drawn=(z[i : i + 1], plays[i : i + 1]))[:, 0])
            acc, (fg, gg) = accuracy(np.stack(songs, 1))
            row["articulation"][f"s={s}, shared={shared}"] = {"accuracy": acc, "length": length_spread(fg, gg, names)}
        out["seeds"][str(seed)] = row
        print(seed, json.dumps(row), flush=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
