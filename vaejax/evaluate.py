"""Evaluation report: `python -m vaejax.evaluate --runs RUN [RUN ...] --data PREPARED --out DIR`.

Writes `DIR/report.md`, `DIR/report.json` and pictures with:
- reconstruction precision / recall / F1 of note-on cells per instrument on the held-out test split, for
  every run given (e.g. K = 8, 16, 32, 64);
- MuseGAN metrics (EB, UPC, QN, DP, TD, polyphony) of the real test bars and of generated songs, from the
  prior (chains started from random real training bars) and continuing held-out songs, at each sigma, for the first run;
- a variation measure against sigma: 1 - F1 between a generated continuation and the sigma-0 one (same
  start), and between it and the source song's real continuation.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys

import numpy as np

from vaejax import data as data_lib
from vaejax import form, metrics, music, realism, render, trained_model
from vaejax.config import SIGMA, TRACKS, program
from vaejax.latents import Latents

ARRANGE_COLUMNS = ("TD G-P", "TD B-P", "TD S-P", "UPC Guitar", "UPC Bass", "UPC Strings")
ARRANGE_COLUMNS += ("QN Guitar", "QN Bass", "QN Strings", "SC")
"""The metric columns of the arrangement table, after the bars each band track plays."""
SIGMAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5)
ARRANGE_SIGMA = SIGMA
"""The default noise of `TrainedModel.arrange`."""


def _f1(pred: np.ndarray, true: np.ndarray, axis=None):
    tp, fp, fn = metrics.confusion(pred, true, axis=axis)
    p, r, f1 = metrics.prf(tp, fp, fn)
    return p, r, np.where(tp + fp + fn == 0, 1.0, f1)  # two silent rolls are identical: F1 1


def reconstruction(model, split: data_lib.Split, max_bars: int = 4096) -> dict:
    """Held-out reconstruction per instrument: decode the posterior mean at the calibrated thresholds."""
    n = min(len(split), max_bars)
    x = split.bars(np.arange(n))  # [5, n, T, P]
    out = {}
    tp = np.zeros(5)
    fp = np.zeros(5)
    fn = np.zeros(5)
    for i in range(0, n, 512):
        xb = x[:, i : i + 512]
        z = model.encode_bars(xb)
        # the band decodes under the real piano, as in training; the piano from its own latents
        as_trained = {"guidance": 1.0, "single_line": ()}
        pred = model.rolls(z, piano=xb[1].reshape(-1, xb.shape[-1]), **as_trained).reshape(xb.shape).copy()
        pred[1] = model.rolls(z, **as_trained).reshape(xb.shape)[1]
        counts = metrics.confusion(pred, xb, axis=(1, 2, 3))
        tp, fp, fn = tp + counts[0], fp + counts[1], fn + counts[2]
    p, r, f1 = metrics.prf(tp, fp, fn)
    for i, t in enumerate(TRACKS):
        out[t] = {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f1[i])}
    out["bars"] = n
    return out


def _bars_of(model, latents: Latents, means: Latents | None = None) -> np.ndarray:
    """Latents `[num, bars, 5]` (and the chains' predictions before noise, which decide rests) -> `[5,
    num*bars, T, P]` bool bars, the decoders' raw output."""
    flat = lambda z: z.map(lambda a: a.reshape((-1,) + a.shape[2:]))  # noqa: E731
    rolls = model.rolls(flat(latents), plays_latents=None if means is None else flat(means))
    return rolls.reshape(5, len(flat(latents)), -1, rolls.shape[-1])


def real_rows(test: data_lib.Split, windows, bars: int, lowest_pitch: int) -> dict:
    """Real songs' `bars`-bar windows as they are, and with every track but the piano taken from other
    songs (where chance lies: a band that does not listen to the piano). Songs of a key-normalised cache
    were moved to C major / A minor; the shuffled row is given both ways, moved back to their own keys
    (chance in real life) and as stored (chance when all songs share a key)."""
    if not windows:
        return {}
    songs = np.stack([test.song(i)[:, f + 1 : f + 1 + bars] for i, f in windows])  # [S, 5, bars, T, P]
    shifts = np.array([int(test.shift[i]) for i, _ in windows])
    flat = lambda x: x.transpose(1, 0, 2, 3, 4).reshape(5, -1, *x.shape[3:])  # noqa: E731
    rows = {"real (test songs)": metrics.all_metrics(flat(songs), lowest_pitch, song_bars=bars)}
    own = np.stack([music.transpose(s, -int(k)) for s, k in zip(songs, shifts)])

    def shuffled(x):
        out = x.copy()
        for t in range(5):
            if t != 1:  # track t comes from the song t places further on
                out[:, t] = np.roll(x[:, t], t + 1, axis=0)
        return out

    rows["real, tracks shuffled across songs"] = metrics.all_metrics(flat(shuffled(own)), lowest_pitch, song_bars=bars)
    if shifts.any() or test.cfg.key_normalize:
        rows["real, tracks shuffled across songs, keys normalised"] = metrics.all_metrics(
            flat(shuffled(songs)), lowest_pitch, song_bars=bars
        )
    return rows


def generation(
    model, test: data_lib.Split, *, songs: int, bars: int, sigmas, seed: int = 0, post_sigmas=(0.5, 0.75, 1.0)
) -> dict:
    starts = test.windows(bars)
    rng = np.random.default_rng(seed)
    pick = [starts[j] for j in rng.permutation(len(starts))[:songs]]
    low = test.cfg.lowest_pitch
    rows, variation = {}, {}
    if pick:
        real_next = np.concatenate([test.song(i)[:, f + 1 : f + 1 + bars] for i, f in pick], axis=1)
        firsts = model.encode_bars(np.stack([test.song(i)[:, f] for i, f in pick], axis=1))

        def continuation(sigma):
            cont, means = model.sample_latents(
                bars + 1, sigma=sigma, seed=seed, num=len(pick), start=firsts, with_means=True
            )
            return _bars_of(model, cont[:, 1:], means[:, 1:])

        # the reference of "variation from sigma 0", whether or not 0 is among the sigmas asked for
        base = continuation(0.0)
    for sigma in sigmas:
        gen = _bars_of(model, *model.sample_latents(bars, sigma=sigma, seed=seed, num=songs, with_means=True))
        rows[f"prior sigma={sigma}"] = metrics.all_metrics(gen, low, song_bars=bars)
        if sigma in post_sigmas:  # what sample.py hands the user: post-processed
            post = _post(model, gen)
            rows[f"prior sigma={sigma}, post-processed"] = metrics.all_metrics(post, low, song_bars=bars)
        if pick:
            gen = base if sigma == 0.0 else continuation(sigma)
            rows[f"continuation sigma={sigma}"] = metrics.all_metrics(gen, low, song_bars=bars)
            _, _, f_base = _f1(gen, base, axis=(1, 2, 3))
            _, _, f_src = _f1(gen, real_next, axis=(1, 2, 3))
            variation[str(sigma)] = {
                "from_sigma0": {t: float(1 - f_base[i]) for i, t in enumerate(TRACKS)},
                "from_source": {t: float(1 - f_src[i]) for i, t in enumerate(TRACKS)},
            }
    return {"rows": rows, "variation": variation, "continued_songs": len(pick)}


def arrangement(model, paths: list[str], *, sigma: float, seed: int = 0, prior: str | None = None) -> dict:
    """Arrange the piano part of each MIDI file; metrics of the added tracks, raw and post-processed, and
    per-song scale consistency. Files that cannot be read are listed with the reason."""
    cfg = model.cfg.data
    raw, post, skipped = [], [], []
    for i, path in enumerate(paths):
        try:
            roll = music.read_song(path, cfg, require_44=False).roll
        except music.BadSong as e:
            skipped.append({"path": path, "reason": str(e)})
            continue
        piano = music.piano_part(roll)[0]
        for out, kw in ((raw, {"min_length": 0, "merge_gap": 0}), (post, {})):
            mt = model.arrange(piano, sigma=sigma, seed=seed + i, prior=prior, **kw)
            out.append(music.to_bars(music.from_multitrack(mt, cfg), cfg).transpose(1, 0, 2, 3))
    result = {"songs": len(raw), "skipped": skipped, "sigma": sigma}
    for name, got in (("raw", raw), ("post-processed", post)):
        if got:
            m = metrics.all_metrics(np.concatenate(got, axis=1), cfg.lowest_pitch)
            sc = [metrics.scale_consistency(g, cfg.lowest_pitch) for g in got]
            m["SC"] = 100 * float(np.nanmean(sc))
            result[name] = m
    return result


def _songs_of(bars5: np.ndarray, songs: int) -> np.ndarray:
    """`[5, songs*bars, T, P]` -> `[songs, 5, bars*T, P]`."""
    x = bars5.reshape(5, songs, -1, *bars5.shape[2:])
    return x.transpose(1, 0, 2, 3, 4).reshape(songs, 5, -1, bars5.shape[-1])


def _post(model, roll5: np.ndarray) -> np.ndarray:
    """What sample.py delivers: `render.postprocess` with the model's default lengths, on `[5, ..., P]` bars."""
    flat = roll5.reshape(5, -1, roll5.shape[-1])
    return render.postprocess(flat, min_length=model.min_length, merge_gap=model.merge_gap).reshape(roll5.shape)


def realism_passages(test: data_lib.Split, *, songs: int, bars: int, seed: int = 0) -> np.ndarray:
    """The held-out passages the realism section measures: `songs` of the split's `bars`-bar windows
    (`Split.windows`), drawn at random by `seed`, `[5, S, bars, T, P]`."""
    windows = test.windows(bars)
    pick = [windows[j] for j in np.random.default_rng(seed).permutation(len(windows))[:songs]]
    if not pick:
        return np.zeros((5, 0, bars, test.cfg.steps, test.cfg.num_pitches), bool)
    return np.stack([test.song(i)[:, f : f + bars] for i, f in pick], axis=1)


def realism_section(
    model, test: data_lib.Split, *, songs: int, bars: int, sigma: float = SIGMA, seed: int = 0, phrase_bars=(4, 16)
) -> dict:
    """Rhythm realism (`vaejax.realism`) of held-out songs' passages (`bars` bars from the first bar where the
    piano and two more tracks play), of their reconstructions (every bar encoded and decoded, sigma 0: the
    piano from its own latents, the band under the decoded piano, as generation does) and of songs from the
    model's default prior at `sigma` (and, where it carries a learned prior, of the chain too); raw (the
    decoders' notes) and post-processed (as sample.py delivers)."""
    real = realism_passages(test, songs=songs, bars=bars, seed=seed)  # [5, S, bars, T, P]
    if not real.shape[1]:
        return {}
    flat_real = real.reshape(5, -1, *real.shape[3:])
    z = model.encode_bars(flat_real)
    recon = model.rolls(z, guidance=1.0, single_line=()).reshape(flat_real.shape)  # reconstructions decode as trained
    n = real.shape[1]
    systems = {"reconstructed": _songs_of(recon, n), "reconstructed, post-processed": _songs_of(_post(model, recon), n)}
    priors = ["chain"] + (["transformer"] if model.prior is not None else [])
    for prior in priors:
        gen = model.prior_bars(bars, sigma=sigma, seed=seed, num=n, prior=prior).reshape(5, -1, *flat_real.shape[2:])
        # the model's default prior is the plain "generated" row; the others are named
        label = f"generated sigma={sigma}" + ("" if prior == model.prior_kind() else f" ({prior})")
        systems[label] = _songs_of(gen, n)
        systems[label + ", post-processed"] = _songs_of(_post(model, gen), n)
    out = realism.realism(
        _songs_of(flat_real, n),
        systems,
        phrase_bars=phrase_bars,
        lowest_pitch=test.cfg.lowest_pitch,
        steps_per_bar=test.cfg.steps,
        seed=seed,
    )
    out["songs"], out["bars"] = n, bars
    return out


def real_passages(test: data_lib.Split, bars: int) -> np.ndarray:
    """Held-out passages `[S, 5, bars, T, P]`: each test song's `bars` bars from the first bar where the
    piano plays (songs too short after it are left out)."""
    out = []
    for i in range(len(test.ids)):
        song = test.song(i)
        first = np.flatnonzero(song[1].any(axis=(1, 2)))
        if len(first) and first[0] + bars <= song.shape[1]:
            out.append(song[:, first[0] : first[0] + bars])
    return np.stack(out) if out else np.zeros((0, 5, bars, test.cfg.steps, test.cfg.num_pitches), bool)


FORM_SIGMAS = (0.25, 0.5, 0.75, 1.0)


def form_rows(
    model,
    test: data_lib.Split,
    *,
    songs: int = 100,
    bars: int = 32,
    sigmas=FORM_SIGMAS,
    seed: int = 0,
    priors=None,
    picture: str | None = None,
) -> dict:
    """Form measures (`vaejax.form`) and the metrics that must keep holding (SC, QN, TD) of real held-out
    passages and of `songs` songs of `bars` bars from each prior at each sigma (the decoders' raw output,
    in the model's key), and the time each prior took to draw them; with `picture`, self-similarity
    matrices of a few songs of each beside real ones."""
    low = test.cfg.lowest_pitch
    priors = priors or (["chain", "transformer"] if model.prior is not None else ["chain"])
    real = real_passages(test, bars)
    flat = lambda x: np.moveaxis(x, 1, 0).reshape((5, -1) + x.shape[3:])  # noqa: E731

    def row(x):
        out = form.form_metrics(x, low)
        m = metrics.all_metrics(flat(x), low, song_bars=bars)
        out.update({k: m[k] for k in m if k == "SC" or k.startswith(("QN", "TD B-P", "TD G-P", "TD S-P", "CA"))})
        return out

    # test songs too short for `bars` bars after their first piano bar leave no real row
    rows = {f"real ({test.name}, {len(real)} passages)": row(real)} if len(real) else {}
    shown = {"real": real} if len(real) else {}
    import time

    for prior in priors:
        for sigma in sigmas:
            model.prior_bars(bars, sigma=sigma, seed=seed, num=songs, prior=prior)  # compiled before timing
            t0 = time.perf_counter()
            x = np.moveaxis(model.prior_bars(bars, sigma=sigma, seed=seed + 1, num=songs, prior=prior), 1, 0)
            seconds = time.perf_counter() - t0
            rows[f"{prior} sigma={sigma}"] = {**row(x), "seconds": seconds}
            if sigma == SIGMA:
                shown[f"{prior} sigma={sigma}"] = x
    if picture:
        form.plot_self_similarity(picture, shown)
    return {"rows": rows, "songs": songs, "bars": bars, "real_passages": int(len(real))}


def form_table(result: dict) -> str:
    """A markdown table of `form_rows`' result."""
    rows = result["rows"]
    cols = [c for c in next(iter(rows.values())) if c != "seconds"] + ["seconds"]
    lines = ["| | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, r in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(r.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(v):
    return "-" if v is None or not np.isfinite(v) else (f"{v:.2f}" if abs(v) < 100 else f"{v:.1f}")


def realism_lines(rl: dict | None) -> list[str]:
    """The report's rhythm-realism section (`realism_section`) as Markdown lines."""
    if not rl:
        return []
    systems = [k for k in rl if isinstance(rl[k], dict) and "stats" in rl[k]]
    pitched = [t for t in TRACKS]
    lines = [
        "",
        f"## Rhythm realism ({rl['songs']} held-out passages of {rl['bars']} bars)",
        "",
        "On a sixteenth grid (each onset moved to its nearest sixteenth). Onset TV: total-variation distance "
        "between the track's histogram of onset positions in the bar and the real one (0 = the same). Onsets "
        "per bar count the bars where the track plays; lengths are in sixteenths. Classifier: cross-validated "
        "accuracy (5 folds, songs kept within a fold) of gradient-boosted trees telling phrases of the row "
        "from real phrases (50% = indistinguishable); the real row is two halves of the real songs.",
        "",
        "| row | "
        + " | ".join(f"onset TV {t[0]}" for t in pitched)
        + " | "
        + " | ".join(f"onsets/bar {t[0]}" for t in pitched)
        + " | "
        + " | ".join(f"length {t[0]}" for t in pitched)
        + " | "
        + " | ".join(f"classifier {b}-bar" for b in rl["phrase_bars"])
        + " |",
        "|---|" + "---|" * (3 * len(pitched) + len(rl["phrase_bars"])),
    ]
    real = rl["real"]
    lines.append(
        "| real | "
        + " | ".join("0" for _ in pitched)
        + " | "
        + " | ".join(f"{real[t]['onsets_per_bar']:.2f}" for t in pitched)
        + " | "
        + " | ".join(f"{real[t]['mean_length']:.2f}" for t in pitched)
        + " | "
        + " | ".join(f"{100 * rl['floor'][str(b)]['accuracy']:.1f}%" for b in rl["phrase_bars"])
        + " |"
    )
    for name in systems:
        r = rl[name]
        lines.append(
            f"| {name} | "
            + " | ".join(f"{r['vs_real'][t]['onset_tv']:.3f}" for t in pitched)
            + " | "
            + " | ".join(f"{r['stats'][t]['onsets_per_bar']:.2f}" for t in pitched)
            + " | "
            + " | ".join(f"{r['stats'][t]['mean_length']:.2f}" for t in pitched)
            + " | "
            + " | ".join(f"{100 * r['classifier'][str(b)]['accuracy']:.1f}%" for b in rl["phrase_bars"])
            + " |"
        )
    lines += ["", "Features that separate each row from real phrases most (4-bar classifier, importance):", ""]
    for name in systems:
        top = rl[name]["classifier"][str(rl["phrase_bars"][0])].get("top_features", [])[:5]
        lines.append(f"- {name}: " + ", ".join(f"{f} ({v:.2f})" for f, v in top))
    return lines


def write_report(out_dir: str, result: dict) -> str:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "report.json"), "w") as f:
        json.dump(result, f, indent=2)
    lines = [
        "# vaejax evaluation",
        "",
        f"- date: {result['date']}",
        f"- machine: {result['machine']}",
        f"- command: `{result['command']}`",
        f"- data: {result['data']} (test split: {result['test_songs']} songs, {result['test_bars']} bars)",
        "",
    ]
    lines += [
        "## Reconstruction of held-out bars (note-on cells, calibrated thresholds)",
        "",
        "| run | K | " + " | ".join(f"F1 {t}" for t in TRACKS) + " | mean F1 |",
        "|---|---|" + "---|" * (len(TRACKS) + 1),
    ]
    for run in result["runs"]:
        rec = run["reconstruction"]
        f1s = [rec[t]["f1"] for t in TRACKS]
        lines.append(
            f"| {run['name']} | {run['latent']} | " + " | ".join(f"{v:.3f}" for v in f1s) + f" | {np.mean(f1s):.3f} |"
        )
    lines += ["", "Precision / recall per instrument are in report.json.", ""]
    gen = result["generation"]
    real = dict(result["real"])
    real_rows = result.get("real_rows", {})
    if "real (test songs)" in real_rows:
        real["SC"] = real_rows["real (test songs)"]["SC"]
    keys = list(real)
    lines += [
        f"## MuseGAN metrics ({result['runs'][0]['name']})",
        "",
        "EB, QN, DP and polyphony rate in %, UPC in pitch classes (0-12, pitch % 12), TD per beat. "
        "Rows: real held-out bars (the whole test split; windows of its songs as long as the generated ones; "
        "the same with the band taken from other songs); songs from the prior (a random real training bar "
        "where the piano plays, then the chain); continuations of held-out songs from their first bar where "
        "the piano and two more tracks play. "
        "Generated rows are "
        "the decoder's raw output (notes decoded at the calibrated thresholds, no post-processing) unless marked "
        "post-processed (what `sample.py` writes). SC: scale consistency, the share of pitched cells in each "
        "song's best-fitting diatonic scale (%, mean over songs; real: the held-out songs' windows). "
        "The last column gives, for each row, how many metrics lie within 10% of the real row.",
        "",
        "| row | " + " | ".join(keys) + " | within 10% |",
        "|---|" + "---|" * (len(keys) + 1),
    ]
    lines.append("| real (test split) | " + " | ".join(_fmt(real[k]) for k in keys) + " | |")
    rows = dict(real_rows)
    rows.update({f"reference: {k}": v for k, v in result.get("reference", {}).items()})
    rows.update(gen["rows"])
    for name, row in rows.items():
        ok = sum(
            1
            for k in keys
            if np.isfinite(row.get(k, np.nan))
            and np.isfinite(real[k])
            and real[k] != 0
            and abs(row[k] - real[k]) <= 0.1 * abs(real[k])
        )
        lines.append(f"| {name} | " + " | ".join(_fmt(row.get(k)) for k in keys) + f" | {ok}/{len(keys)} |")
    if gen["variation"]:
        lines += [
            "",
            "## Variation against sigma (continuations of held-out songs)",
            "",
            "1 - F1 of note-on cells: against the sigma-0 continuation from the same first bar, and against "
            "the song's real next bars.",
            "",
            "| sigma | "
            + " | ".join(f"vs sigma 0 {t}" for t in TRACKS)
            + " | "
            + " | ".join(f"vs source {t}" for t in TRACKS)
            + " |",
            "|---|" + "---|" * (2 * len(TRACKS)),
        ]
        for s, v in gen["variation"].items():
            lines.append(
                f"| {s} | "
                + " | ".join(f"{v['from_sigma0'][t]:.3f}" for t in TRACKS)
                + " | "
                + " | ".join(f"{v['from_source'][t]:.3f}" for t in TRACKS)
                + " |"
            )
    arr = result.get("arrangement")
    if arr and "raw" in arr:
        share = result.get("nonempty_bar_share", {})
        lines += [
            "",
            f"## Arrangement of given piano parts ({arr['songs']} songs, sigma {arr['sigma']})",
            "",
            "Each song's piano part is kept and the band added. Playing share: % of bars where the track "
            "sounds (real: the prepared LPD-5 data's share of non-empty bars). TD to the piano: real from "
            "the held-out songs. SC: scale consistency per song (%).",
            "",
            "| row | "
            + " | ".join(f"plays {t}" for t in TRACKS if t != "Piano")
            + " | TD G-P | TD B-P | TD S-P | UPC G | UPC B | UPC S | QN G | QN B | QN S | SC |",
            "|---|" + "---|" * 14,
        ]
        band = [t for t in TRACKS if t != "Piano"]
        lines.append(
            "| real | "
            + " | ".join(_fmt(100 * share[t]) if t in share else "-" for t in band)
            + " | "
            + " | ".join(_fmt(real.get(k)) for k in ARRANGE_COLUMNS)
            + " |"
        )
        for name in ("raw", "post-processed"):
            m = arr[name]
            lines.append(
                f"| arranged, {name} | "
                + " | ".join(_fmt(100 - m[f"EB {t}"]) for t in band)
                + " | "
                + " | ".join(_fmt(m.get(k)) for k in ARRANGE_COLUMNS)
                + " |"
            )
        if arr["skipped"]:
            lines += ["", f"{len(arr['skipped'])} files skipped (reasons in report.json)."]
    lines += realism_lines(result.get("realism"))
    lines += ["", "![metrics against sigma](metrics-vs-sigma.png)", ""]
    path = os.path.join(out_dir, "report.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    _plot(out_dir, result)
    return path


def _plot(out_dir, result):
    rows = result["generation"]["rows"]
    sig = [float(k.split("=")[1]) for k in rows if k.startswith("prior") and "post" not in k]
    fig = render.new_figure((14, 4))
    axes = fig.subplots(1, 3)
    for ax, metric in zip(axes, ("EB", "UPC", "QN")):
        for t in TRACKS[1:]:
            key = f"{metric} {t}"
            ax.plot(sig, [rows[f"prior sigma={s}"][key] for s in sig], "o-", label=t)
            ax.axhline(result["real"][key], ls=":", c=ax.lines[-1].get_color())
        ax.set_xlabel("sigma")
        ax.set_title(f"{metric} (prior; dotted: real)")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "metrics-vs-sigma.png"), dpi=90)


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog=program("python -m vaejax.evaluate"),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--runs", nargs="+", required=True, help="run directories; the first is used for generation")
    ap.add_argument("--data", required=True, help="prepared dataset (its test split is held out)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--songs", type=int, default=100)
    ap.add_argument("--bars", type=int, default=16)
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(SIGMAS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reference",
        nargs="*",
        default=[],
        help="MIDI or npz songs to score as extra rows (e.g. another system's output)",
    )
    ap.add_argument(
        "--arrange", default=None, help="a folder of MIDI files (e.g. POP909 piano parts) to arrange and score"
    )
    ap.add_argument("--arrange-songs", type=int, default=200, help="at most this many files from --arrange")
    ap.add_argument(
        "--arrange-sigma", type=float, default=None, help="noise for the arrangement (default: the arrange() default)"
    )
    ap.add_argument(
        "--harmony", type=float, default=None, help="harmony guidance for generation (default: the model's)"
    )
    ap.add_argument(
        "--threshold-notes",
        action="store_true",
        help="decode notes at the calibrated onset thresholds instead of counting them (ablation)",
    )
    ap.add_argument("--no-realism", action="store_true", help="skip the rhythm-realism section (vaejax.realism)")
    ap.add_argument(
        "--form-only",
        action="store_true",
        help="only the form section (chain and learned prior, with --arrange their arrangements): "
        "form.md, form.json, form-ssm.png",
    )
    ap.add_argument("--form-bars", type=int, default=32, help="bars per song of the form section")
    args = ap.parse_args(argv)
    problems = [f"--runs {run}: no such run folder" for run in args.runs if not os.path.isdir(run)]
    if not os.path.isdir(args.data):
        problems.append(f"--data {args.data}: no such folder")
    for name, value, lo, hi in (
        ("--songs", args.songs, 1, 100_000),
        ("--bars", args.bars, 1, 4096),
        ("--arrange-songs", args.arrange_songs, 1, 100_000),
        ("--seed", args.seed, 0, 2**31 - 1),
    ):
        if not lo <= value <= hi:
            problems.append(f"{name} must be from {lo} to {hi}, got {value}")
    for name, values in (
        ("--sigmas", args.sigmas),
        ("--arrange-sigma", [args.arrange_sigma]),
        ("--harmony", [args.harmony]),
    ):
        bad = [v for v in values if v is not None and not 0 <= v <= 10]
        if bad:
            problems.append(f"{name} must be from 0 to 10, got {bad[0]}")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        problems.append(f"--out {args.out}: is a file, not a folder")
    if problems:
        for msg in problems:
            print(f"error: {msg}", file=sys.stderr)
        return 2
    from vaejax.checkpoint import CheckpointError
    from vaejax.runs import RunError

    try:
        return _main(args, argv)
    except (RunError, CheckpointError, data_lib.CacheError, FileNotFoundError, music.BadSong) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _main(args, argv) -> int:
    ds = data_lib.open_dataset(args.data)
    test = ds["test"]
    if args.form_only:
        return form_main(args, test)
    runs = []
    for run in args.runs:
        model = trained_model.load(run)
        runs.append(
            {
                "name": os.path.basename(os.path.normpath(run)),
                "latent": model.cfg.model.latent,
                "reconstruction": reconstruction(model, test),
            }
        )
        f1 = runs[-1]["reconstruction"]
        print(f"{run}: reconstruction F1 " + ", ".join(f"{t} {f1[t]['f1']:.3f}" for t in TRACKS))
    model = trained_model.load(args.runs[0])
    if args.harmony is not None:
        model = model.with_options(harmony_guidance=args.harmony)
    if args.threshold_notes:
        model = model.with_options(count_notes=False)
    real = metrics.all_metrics(test.bars(np.arange(len(test))))
    real_extra = real_rows(test, test.windows(args.bars), args.bars, test.cfg.lowest_pitch)
    gen = generation(model, test, songs=args.songs, bars=args.bars, sigmas=args.sigmas, seed=args.seed)
    rl = None if args.no_realism else realism_section(model, test, songs=args.songs, bars=args.bars, seed=args.seed)
    arranged = None
    if args.arrange:
        files = [f for f in music.find_songs(args.arrange) if f.lower().endswith(music.MIDI_SUFFIXES)]
        sig = args.arrange_sigma if args.arrange_sigma is not None else ARRANGE_SIGMA
        arranged = arrangement(model, files[: args.arrange_songs], sigma=sig, seed=args.seed)
    from vaejax.music import read_song, to_bars

    reference = {}
    for path in args.reference:
        try:
            bars = to_bars(read_song(path, test.cfg, require_44=False).roll, test.cfg)
        except music.BadSong as e:
            raise music.BadSong(f"--reference {path}: {e}") from None
        reference[f"{os.path.basename(path)} ({len(bars)} bars)"] = metrics.all_metrics(bars.transpose(1, 0, 2, 3))
    result = {
        "date": datetime.datetime.now(datetime.UTC).date().isoformat(),
        "machine": f"{_cpu_name()}, {os.cpu_count()} cores ({platform.machine()})",
        "command": "python -m vaejax.evaluate " + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": ds["train"].report["source"],
        "test_songs": int(len(test.ids)),
        "test_bars": int(len(test)),
        "runs": runs,
        "real": real,
        "real_rows": real_extra,
        "reference": reference,
        "generation": gen,
        "arrangement": arranged,
        "realism": rl,
        "nonempty_bar_share": ds["train"].report["nonempty_bar_share"],
    }
    print(write_report(args.out, result))
    form_main(args, test, model=model)
    return 0


def form_main(args, test: data_lib.Split, model=None) -> int:
    """The form section: form.md, form.json and form-ssm.png in `args.out`."""
    model = model or trained_model.load(args.runs[0])
    if args.harmony is not None:
        model = model.with_options(harmony_guidance=args.harmony)
    os.makedirs(args.out, exist_ok=True)
    res = form_rows(
        model,
        test,
        songs=args.songs,
        bars=args.form_bars,
        seed=args.seed,
        picture=os.path.join(args.out, "form-ssm.png"),
    )
    text = [
        f"# Form: {args.runs[0]}",
        "",
        f"Command: `python -m vaejax.evaluate {' '.join(sys.argv[1:])}`",
        f"Machine: {_cpu_name()}, {os.cpu_count()} cores. {res['songs']} songs x {res['bars']} bars per row; real: "
        f"{res['real_passages']} test passages of {res['bars']} bars from the first bar where the piano plays. "
        "Similarities 0-1, shares %, the decoders' raw output; seconds: drawing and decoding the songs.",
        "",
        form_table(res),
        "",
        "![self-similarity](form-ssm.png)",
        "",
    ]
    if args.arrange:
        files = [f for f in music.find_songs(args.arrange) if f.lower().endswith(music.MIDI_SUFFIXES)]
        files = files[: args.arrange_songs]
        sig = args.arrange_sigma if args.arrange_sigma is not None else ARRANGE_SIGMA
        res["arrangement"] = {}
        band = ("Drums", "Guitar", "Bass", "Strings")
        cols = ("TD G-P", "TD B-P", "TD S-P", "CA G-P", "CA B-P", "CA S-P")
        text += [
            f"Arranging {len(files)} piano parts ({args.arrange}), sigma {sig}: bars where each added track "
            "plays (%), tonal distance (TD) and chroma agreement (CA: Jaccard of the pitch classes per beat) "
            "of each added track with the piano, raw output; real: the test passages' bands",
            "",
            "| prior | " + " | ".join(band) + " | " + " | ".join(cols) + " |",
            "|---" * 11 + "|",
        ]
        real = next((r for k, r in res["rows"].items() if k.startswith("real")), None)
        if real:
            text.append(
                "| real | "
                + " | ".join(_fmt(100 - real[f"empty % {t}"]) for t in band)
                + " | "
                + " | ".join(_fmt(real.get(k)) for k in cols)
                + " |"
            )
        for prior in ["chain", "transformer"] if model.prior is not None else ["chain"]:
            a = arrangement(model, files, sigma=sig, seed=args.seed, prior=prior)
            res["arrangement"][prior] = a
            if "raw" in a:
                r = a["raw"]
                text.append(
                    f"| {prior} | "
                    + " | ".join(_fmt(100 - r[f"EB {t}"]) for t in band)
                    + " | "
                    + " | ".join(_fmt(r[k]) for k in cols)
                    + " |"
                )
    with open(os.path.join(args.out, "form.json"), "w") as f:
        json.dump(res, f, indent=1, default=float)
    with open(os.path.join(args.out, "form.md"), "w") as f:
        f.write("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
