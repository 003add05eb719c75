"""Rhythm ablation: trained runs and decoding variants of one run, scored the same way.

    python bench/rhythm_ablation.py --data PREPARED --out bench/results/rhythm_ablation.json \
        NAME=RUN[:VARIANT] [NAME=RUN[:VARIANT] ...] [--songs 50] [--bars 32]

Each row: held-out reconstruction F1 per track (`vaejax.evaluate.reconstruction`), rhythm realism of
reconstructed and generated (sigma 0.5, the chain) passages against real test passages
(`vaejax.evaluate.realism_section`: onset-position TV, onsets per bar and note length ratios, the
two-sample classifier on 4- and 16-bar phrases), and the MuseGAN goals of issue 9 for the generated songs
(tonal distance, scale consistency, qualified notes, raw). Variants change only how notes are decoded:
  - `threshold`: the calibrated thresholds instead of counting notes;
  - `one-cut`: one onset threshold for every sixteenth (no per-cell calibration), thresholded;
  - `no-early`: notes never start a step early (the early map ignored);
  - `full-tail`: every note sounds its whole last sixteenth (no per-track last-cell length);
  - `chain`: generation from the seed's chain where the model also carries a learned prior.
  - `per-bar`: encoded latents decoded with the encode stage's per-bar thresholds (before the reconstruction
    decoding was calibrated on validation passages).
Generated rows use the model's default prior (the learned one where it carries one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from vaejax import data as data_lib
from vaejax import evaluate, metrics, trained_model
from vaejax.config import TRACKS


def _changed(model, **attrs):
    """A copy of the loaded model with internals changed for an ablation row (the public API changes only
    `TrainedModel.OPTIONS`, through `with_options`)."""
    import copy

    model = copy.copy(model)
    for name, value in attrs.items():
        object.__setattr__(model, name, value)
    return model


def apply_variant(model, variant: str | None):
    if not variant:
        return model
    if variant == "threshold":
        model = model.with_options(count_notes=False)
    elif variant == "one-cut":
        model = _changed(model.with_options(count_notes=False), per_cell_onsets=False)
    elif variant == "no-early":
        import jax

        def no_early(b):
            n = b.shape[-1] // 3
            return b.at[..., 2 * n :].set(-30.0)  # the early map's probability 0

        vae = jax.tree.map(lambda a: a, model.vae)  # a new state with the same arrays
        vae["out_b"] = jax.tree.map(no_early, model.vae["out_b"])
        model = _changed(model, vae=vae)
    elif variant == "chain":
        # generation from the seed's chain even where the model carries a learned prior
        model = _changed(model, prior=None)
    elif variant == "per-bar":
        # encoded latents decoded as before calibration.reconstruction_decoding: the encode stage's thresholds
        model = model.with_decoding(model.stats["onset_thresholds_bars"], np.ones(5), model.stats["sustain_bars"])
    elif variant == "full-tail":
        th = model.thresholds.copy()
        th[:, 2] = model.cfg.data.steps // (model.cfg.data.beats * model.cfg.model.grid)
        model = _changed(model, thresholds=th)
    else:
        raise SystemExit(f"unknown variant {variant!r}")
    return model


def row(model, test, songs: int, bars: int, seed: int) -> dict:
    rec = evaluate.reconstruction(model, test)
    rl = evaluate.realism_section(model, test, songs=songs, bars=bars, seed=seed)
    gen = model.prior_bars(bars, sigma=0.5, seed=seed, num=songs)
    m = metrics.all_metrics(gen.reshape(5, -1, *gen.shape[3:]), test.cfg.lowest_pitch, song_bars=bars)
    return {
        "reconstruction": {t: rec[t]["f1"] for t in TRACKS},
        "realism": rl,
        "prior": model.prior_kind(),
        "goals": {k: m[k] for k in m if k.startswith(("TD", "SC", "QN"))},
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("rows", nargs="+", help="NAME=RUN[:VARIANT]")
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--songs", type=int, default=50)
    ap.add_argument("--bars", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    test = data_lib.open_dataset(args.data)["test"]
    real_windows = test.windows(args.bars)
    real = np.stack([test.song(i)[:, f : f + args.bars] for i, f in real_windows], axis=1)
    real_goals = metrics.all_metrics(real.reshape(5, -1, *real.shape[3:]), test.cfg.lowest_pitch, song_bars=args.bars)
    out = {
        "command": "python bench/rhythm_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{evaluate._cpu_name()}, {os.cpu_count()} cores ({platform.machine()})",
        "real_goals": {k: real_goals[k] for k in real_goals if k.startswith(("TD", "SC", "QN"))},
        "rows": {},
    }
    for spec in args.rows:
        name, _, rest = spec.partition("=")
        run, _, variant = rest.partition(":")
        t0 = time.time()
        model = apply_variant(trained_model.load(run), variant or None)
        out["rows"][name] = dict(
            row(model, test, args.songs, args.bars, args.seed), run=run, variant=variant, seconds=time.time() - t0
        )
        print(name, "done in", round(time.time() - t0), "s", flush=True)
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)
    print(table(out))
    return 0


def table(out: dict) -> str:
    """The ablation as a Markdown table (recon = reconstruction, gen = generated at sigma 0.5)."""
    tr = [t[0] for t in TRACKS]
    head = (
        "| row | recon F1 "
        + "/".join(tr)
        + " | recon onset TV "
        + "/".join(tr)
        + " | recon onsets/bar ratio "
        + "/".join(tr)
        + " | recon length ratio "
        + "/".join(tr)
        + " | recon classifier 4 / 16 bars | gen onset TV "
        + "/".join(tr)
        + " | gen onsets ratio | gen length ratio | gen classifier 4 / 16 bars | gen TD G/B/S-P "
        "| gen SC | gen QN P/G/B/S |"
    )
    lines = [head, "|" + "---|" * 14]
    rg = out["real_goals"]
    lines.append(
        "| real test passages | | 0 | 1 | 1 | "
        + " / ".join(
            f"{100 * out['rows'][next(iter(out['rows']))]['realism']['floor'][b]['accuracy']:.0f}%" for b in ("4", "16")
        )
        + " | 0 | 1 | 1 | | "
        + " / ".join(f"{rg[k]:.2f}" for k in ("TD G-P", "TD B-P", "TD S-P"))
        + f" | {rg['SC']:.1f} | "
        + " / ".join(f"{rg[f'QN {t}']:.0f}" for t in ("Piano", "Guitar", "Bass", "Strings"))
        + " |"
    )
    for name, r in out["rows"].items():
        rl = r["realism"]
        rec, gen = rl["reconstructed"], rl["generated sigma=0.5"]
        f = lambda d, k, fmt="{:.2f}": " / ".join(fmt.format(d["vs_real"][t][k]) for t in TRACKS)  # noqa: E731
        acc = lambda d: " / ".join(f"{100 * d['classifier'][b]['accuracy']:.0f}%" for b in ("4", "16"))  # noqa: E731
        g = r["goals"]
        lines.append(
            f"| {name} | "
            + " / ".join(f"{r['reconstruction'][t]:.2f}" for t in TRACKS)
            + " | "
            + f(rec, "onset_tv")
            + " | "
            + f(rec, "onsets_ratio")
            + " | "
            + f(rec, "length_ratio")
            + " | "
            + acc(rec)
            + " | "
            + f(gen, "onset_tv")
            + " | "
            + f(gen, "onsets_ratio")
            + " | "
            + f(gen, "length_ratio")
            + " | "
            + acc(gen)
            + " | "
            + " / ".join(f"{g[k]:.2f}" for k in ("TD G-P", "TD B-P", "TD S-P"))
            + f" | {g['SC']:.1f} | "
            + " / ".join(f"{g[f'QN {t}']:.0f}" for t in ("Piano", "Guitar", "Bass", "Strings"))
            + " |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
