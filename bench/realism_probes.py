"""Where the two-sample classifier's accuracy on generated songs comes from (docs/quality-report.md "Where the
classifier's 78-84% comes from"): probes on one model, scored as the realism section scores it.

    python bench/realism_probes.py --data PREPARED --model lpd5 --seeds 0 1 \
        --out bench/results/realism_probes.json

Per seed, 50 songs of 32 bars from the model's default prior at sigma 0.5 against the realism section's 50
test passages (`evaluate.realism_passages`), the classifier on 4-bar phrases (`realism.two_sample_test`):

- `tracks`: one track's features alone, and every feature but one group's (first seed);
- `sigma`: the classifier at other sigmas (the decoding as calibrated for the default);
- `as_reconstructions`: the prior's bars decoded with the reconstructions' decoding;
- `projection`: the generated bars encoded and decoded again as reconstructions (once, twice), and once
  decoded again with the prior's decoding;
- `bass_voice_leading` (first seed): the generated bass moved note by note by octaves to the pitch nearest
  the note before it wherever it leaps further than 7, 9 or 12 semitones: the bass's pitch range per
  phrase (quartiles), the classifier on every feature and on the bass's alone;
- `real_latents` (first seed): the real passages' own latents decoded as reconstructions are, in their
  order, shuffled within each song (each song's bars, its manner kept, its order lost), and each bar taken
  from a random other passage at the same place (real bars, one passage's manner no longer kept);
- `downbeat` (first seed): the share of the bars the drums play that have a hit on the first sixteenth, drum
  hits per playing bar;
- `latent_norms` (first seed): median norm and mean spread per dimension of the standardised latent means per
  track, encoded from the real passages and drawn by the prior;
- `pitch_classes_per_split`: used pitch classes per bar of real passages of each split (piano, guitar,
  bass, strings), the same count as the form table's.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
from provenance import provenance

from vaejax import data as data_lib
from vaejax import evaluate, metrics, realism, trained_model
from vaejax.config import DRUMS, TRACKS
from vaejax.music import note_runs

BASS = TRACKS.index("Bass")

GROUPS = {
    "the piano's note lengths": lambda n: n.startswith("Piano len") or n == "Piano mean length",
    "the piano's largest chord": lambda n: n == "Piano max onsets at one sixteenth",
    "every track's note lengths": lambda n: " len" in n or "mean length" in n,
    "the drums' onset positions": lambda n: n.startswith("Drums onset@"),
    "bars played": lambda n: "bars played" in n,
    "mean pitch and pitch range": lambda n: "pitch range" in n or "mean pitch" in n,
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--model", default="lpd5")
    ap.add_argument("--songs", type=int, default=50)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    model = trained_model.load(args.model)
    ds = data_lib.open_dataset(args.data)
    names = realism.feature_names()
    out = provenance("realism_probes.py", argv)
    out.update(model=args.model, songs=args.songs, bars=args.bars, seeds={})

    for k, seed in enumerate(args.seeds):
        row = probe_seed(model, ds, names, seed, args, first=k == 0)
        out["seeds"][str(seed)] = row
        print(seed, json.dumps(row), flush=True)
    out["pitch_classes_per_split"] = pitch_classes_per_split(ds, args.bars)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")
    return 0


def probe_seed(model, ds, names, seed: int, args, *, first: bool) -> dict:
    real = evaluate.realism_passages(ds["test"], songs=args.songs, bars=args.bars, seed=seed)
    n = real.shape[1]
    flat = real.reshape(5, -1, *real.shape[3:])

    def as_songs(bars):  # [5, n*bars, T, P] -> [n, 5, bars*T, P]
        return evaluate._songs_of(bars, n)

    fr, gr = realism.phrase_features(as_songs(flat))

    def accuracy(bars, keep=None):
        fg, gg = realism.phrase_features(as_songs(bars))
        idx = slice(None) if keep is None else [i for i, name in enumerate(names) if keep(name)]
        return round(realism.two_sample_test(fr[:, idx], fg[:, idx], gr, gg)["accuracy"], 4)

    def drawn(m, sigma=0.5):
        return m.prior_bars(args.bars, sigma=sigma, seed=seed, num=n).reshape(flat.shape)

    gen = drawn(model)
    row = {"all": accuracy(gen)}
    row["sigma"] = {str(s): accuracy(gen if s == 0.5 else drawn(model, s)) for s in args.sigmas}
    recon_decoding = model.with_prior_decoding(model.onset_cuts, np.ones(len(TRACKS)))
    row["as_reconstructions"] = accuracy(drawn(recon_decoding))
    plays = gen.any(axis=(2, 3))[..., None, None]
    encoded = model.encode_bars(gen)
    once = model.rolls(encoded).reshape(gen.shape) & plays
    twice = model.rolls(model.encode_bars(once)).reshape(gen.shape) & plays
    again = model.rolls(encoded, drawn=True).reshape(gen.shape) & plays
    row["projection"] = {"once": accuracy(once), "twice": accuracy(twice), "prior decoding": accuracy(again)}
    if first:
        row["tracks"] = {
            "only": {t: accuracy(gen, lambda name, t=t: name.startswith(t)) for t in TRACKS},
            "without": {g: accuracy(gen, lambda name, f=f: not f(name)) for g, f in GROUPS.items()},
        }
        row["bass_voice_leading"] = {
            "real range": pitch_range(fr, names),
            "as drawn": {"range": pitch_range(realism.phrase_features(as_songs(gen))[0], names), "all": row["all"]},
        }
        bass = lambda name: name.startswith("Bass")  # noqa: E731
        row["bass_voice_leading"]["as drawn"]["bass alone"] = accuracy(gen, bass)
        for leap in (7, 9, 12):
            led = voice_led(gen, BASS, leap, n)
            row["bass_voice_leading"][f"leaps over {leap}"] = {
                "range": pitch_range(realism.phrase_features(as_songs(led))[0], names),
                "all": accuracy(led),
                "bass alone": accuracy(led, bass),
            }
        lat = model.encode_bars(flat).concat()  # [n * bars, 5, 2K]
        rng = np.random.default_rng(seed)
        within = np.arange(n)[:, None] * args.bars + np.array([rng.permutation(args.bars) for _ in range(n)])
        across = rng.integers(n, size=(n, args.bars)) * args.bars + np.arange(args.bars)
        row["real_latents"] = {}
        for name, order in (
            ("in order", np.arange(n * args.bars)),
            ("shuffled within songs", within.ravel()),
            ("bars from other passages", across.ravel()),
        ):
            bars = model.rolls(lat[order], guidance=1.0, single_line=()).reshape(flat.shape)
            row["real_latents"][name] = accuracy(bars)
        row["downbeat"] = {name: downbeat(bars) for name, bars in (("real", flat), ("generated", gen))}
        row["latent_norms"] = latent_norms(model, flat, seed, n, args.bars)
    return row


def pitch_range(features: np.ndarray, names: list[str]) -> list[float]:
    """Quartiles of the bass's pitch range per phrase (semitones)."""
    return [float(q) for q in np.percentile(features[:, names.index("Bass pitch range")], [25, 50, 75])]


def voice_led(bars: np.ndarray, track: int, leap: int, songs: int) -> np.ndarray:
    """`bars` `[5, songs * bars, T, P]` with `track`'s notes, song by song in the order they start, moved by
    whole octaves to the pitch nearest the note before wherever they leap further than `leap` semitones."""
    out = bars.copy()
    parts = bars[track].reshape(songs, -1, bars.shape[-1])  # each song's part as one roll
    led = np.zeros_like(parts)
    for s, roll in enumerate(parts):
        pitch, on, off = note_runs(roll)
        prev = None
        for j in np.argsort(on, kind="stable"):
            p = int(pitch[j])
            if prev is not None and abs(p - prev) > leap:
                p = min(range(p % 12, roll.shape[1], 12), key=lambda q, prev=prev: abs(q - prev))
            led[s, on[j] : off[j], p] = True
            prev = p
    out[track] = led.reshape(bars[track].shape)
    return out


def downbeat(bars: np.ndarray) -> dict:
    """Of the bars `[5, M, T, P]` where the drums play: the share with a hit in the first sixteenth, and hits
    per bar."""
    drums = bars[DRUMS]
    hits = drums & ~np.pad(drums, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    plays = drums.any(axis=(1, 2))
    first = hits[:, : drums.shape[1] // 16].any(axis=(1, 2))
    return {
        "bars_played": round(float(plays.mean()), 4),
        "downbeat_share": round(float(first[plays].mean()), 4),
        "hits_per_bar": round(float(hits.sum(axis=(1, 2))[plays].mean()), 2),
    }


def latent_norms(model, flat: np.ndarray, seed: int, n: int, bars: int) -> dict:
    real = model._standardized_means(model.encode_bars(flat))  # [M, 5, K]
    real_plays = flat.any(axis=(2, 3)).T
    z, plays = model.prior_draws(bars, sigma=0.5, seed=seed, num=n)
    z, plays = z.reshape(-1, *z.shape[-2:]), plays.reshape(-1, z.shape[-2])
    out = {}
    for t, name in enumerate(TRACKS):
        a, b = real[real_plays[:, t], t], z[plays[:, t], t]
        out[name] = {
            "median_norm_real": round(float(np.median(np.linalg.norm(a, axis=-1))), 3),
            "median_norm_drawn": round(float(np.median(np.linalg.norm(b, axis=-1))), 3),
            "spread_real": round(float(a.std(0).mean()), 3),
            "spread_drawn": round(float(b.std(0).mean()), 3),
        }
    return out


def pitch_classes_per_split(ds, bars: int) -> list[dict]:
    rows = []
    for split, songs, seeds in (("test", 50, (0, 1, 2, 3)), ("valid", 100, (0,)), ("train", 200, (0, 1, 2))):
        for seed in seeds:
            real = evaluate.realism_passages(ds[split], songs=songs, bars=bars, seed=seed)
            flat = real.reshape(5, -1, *real.shape[3:])
            upc = {TRACKS[t]: round(metrics.used_pitch_classes(flat[t]), 3) for t in range(1, 5)}
            rows.append({"split": split, "seed": seed, "passages": int(real.shape[1]), **upc})
    return rows


if __name__ == "__main__":
    sys.exit(main())
