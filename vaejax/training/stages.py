"""The stages, in order: five vmapped VAEs -> encoded latents -> MelodyNN -> four vmapped HarmonyNNs; and
`train`, which runs them on a dataset exactly as `train.py` does."""

from __future__ import annotations

import contextlib
import dataclasses
import os

import jax
import numpy as np
from flax import nnx

from vaejax import data as data_lib
from vaejax import latents as latents_lib
from vaejax import metrics, models, realism
from vaejax import prior as prior_lib
from vaejax.checkpoint import restore_best
from vaejax.config import BARS, HARMONY, PIANO, TRACKS, Config, TrainConfig
from vaejax.devices import DataParallel
from vaejax.runs import STAGES, RunFolder, default_run, mark_latest
from vaejax.training import calibration
from vaejax.training.loop import Stage, fit, log
from vaejax.training.steps import (
    THRESHOLDS,
    chain_optimizer,
    init_vae_state,
    make_chain_fns,
    make_prior_fns,
    make_vae_fns,
    prior_optimizer,
    train_state,
)


def train_vae(run: RunFolder, cfg: Config, ds: dict, dp: DataParallel, *, progress=True, stop_after=0):
    tc = cfg.train
    key = jax.random.fold_in(jax.random.key(tc.seed), 0)
    train = ds["train"]
    spe = data_lib.num_batches(train, tc.batch_size, tc.max_steps_per_epoch)
    if spe == 0:
        raise ValueError(f"training split has {len(train)} bars, fewer than one batch of {tc.batch_size}")
    graphdef, state, tx = init_vae_state(cfg.model, cfg.data, tc, key, steps=spe * tc.vae_epochs)
    state = dp.replicate(state)
    step_fn, eval_fn = make_vae_fns(graphdef, tc, cfg.data, tx, platform=dp.platform)
    shard = (jax.process_index(), jax.process_count())

    def batches(epoch, start):
        it = data_lib.batches(
            train,
            tc.batch_size,
            seed=tc.seed,
            epoch=epoch,
            shard=shard,
            limit=tc.max_steps_per_epoch,
            start=start,
            packed=True,
        )
        for b in data_lib.prefetch(it):
            yield (dp.shard(b.x, axis=1),)

    def evaluate(state):
        return evaluate_vae(eval_fn, state["params"], ds["valid"], tc, dp)

    def summarize(host):
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *host)
        rec = {
            "loss": float(stacked.loss.sum(-1).mean()),
            "recon": float(stacked.recon.sum(-1).mean()),
            "kl": float(stacked.kl.sum(-1).mean()),
            "kl_bits": float(stacked.kl_bits.sum(-1).mean()),
            "beta": float(stacked.beta[-1]),
        }
        for i, t in enumerate(TRACKS):
            rec[f"recon_{t}"] = float(stacked.recon[:, i].mean())
        return rec

    stage = Stage("vae", state, spe, tc.vae_epochs, batches, step_fn, evaluate, summarize)
    meta_extra = {"config": cfg.to_dict(), "data": calibration.data_stats(ds)}
    state, meta = fit(stage, run, tc, meta_extra, progress=progress, stop_after=stop_after)
    return graphdef, state, meta


def evaluate_vae(
    eval_fn, params, split: data_lib.Split, train: TrainConfig, dp: DataParallel, max_bars: int = 4096
) -> dict:
    """Validation ELBO and note-on precision / recall / F1 per instrument, at every candidate threshold."""
    bs = min(train.batch_size * 4, 512)
    bs -= bs % max(dp.size, jax.process_count())
    n = min(len(split), max_bars) // bs * bs
    if n == 0:
        bs = len(split) - len(split) % max(dp.size, jax.process_count())
        n = bs
    if n == 0:
        return {"val_loss": float("nan")}
    recon = kl = 0.0
    tp = fp = fn = 0
    on = 0
    key = jax.random.key(train.seed + 1)
    host, hosts = jax.process_index(), jax.process_count()
    local = bs // hosts
    for i in range(0, n, bs):
        lo = i + host * local  # each host reads its slice of the global batch
        x = split.packed_bars(np.arange(lo, lo + local))
        r, k, a, b, c, o = jax.device_get(eval_fn(params, dp.shard(x, axis=1), jax.random.fold_in(key, i)))
        recon, kl = recon + r * bs, kl + k * bs
        tp, fp, fn, on = tp + a, fp + b, fn + c, on + o
    recon, kl = recon / n, kl / n
    prec, rec, f1 = metrics.prf(tp, fp, fn)  # [5, thresholds]
    best = f1.argmax(-1)
    half = int(np.argmin(np.abs(THRESHOLDS - 0.5)))
    out = {"val_loss": float((recon + kl).sum()), "val_recon": float(recon.sum()), "val_kl": float(kl.sum())}
    for i, t in enumerate(TRACKS):
        out[f"f1_{t}"] = float(f1[i, best[i]])
        out[f"f1@0.5_{t}"] = float(f1[i, half])
        out[f"precision_{t}"] = float(prec[i, best[i]])
        out[f"recall_{t}"] = float(rec[i, best[i]])
        out[f"threshold_{t}"] = float(THRESHOLDS[best[i]])
        # density of predicted vs real on-cells at 0.5: near 0 means the decoder collapsed to silence
        out[f"on_ratio@0.5_{t}"] = float((tp[i, half] + fp[i, half]) / max(on[i], 1))
    return out


def train_chain(run: RunFolder, cfg: Config, ds: dict, latents: dict, which: str, *, progress=True, stop_after=0):
    """Train MelodyNN (`which='melody'`) or the stacked HarmonyNNs (`which='harmony'`)."""
    tc = cfg.train
    harmony = which == "harmony"
    key = jax.random.fold_in(jax.random.key(tc.seed), 2 if harmony else 1)
    net = models.harmony_stack(cfg.model, key) if harmony else models.melody_net(cfg.model, key)
    graphdef, params = nnx.split(net)
    tx = chain_optimizer(tc)
    state = train_state(params, tx, key)
    step_fn, eval_fn = make_chain_fns(graphdef, tx, stacked=harmony)
    norm = latents_lib.LatentNorm.fit(latents["train"])
    xt, yt = latents_lib.chain_data(
        norm.standardize(latents["train"]), ds["train"].start, ds["train"].length, harmony=harmony
    )
    xv, yv = latents_lib.chain_data(
        norm.standardize(latents["valid"]), ds["valid"].start, ds["valid"].length, harmony=harmony
    )
    n = xt.shape[-2]
    bs = min(tc.chain_batch_size, n)
    if bs == 0:
        raise ValueError("no consecutive bars to train the latent chains on")
    spe = n // bs
    axis = 1 if harmony else 0

    def batches(epoch, start):
        order = np.random.default_rng([tc.seed, 1000 + epoch]).permutation(n)
        for b in range(start, spe):
            idx = order[b * bs : (b + 1) * bs]
            x = np.take(xt, idx, axis=axis)
            if tc.chain_noise > 0:  # denoising inputs; the noise depends on (seed, epoch, batch) only
                x = x + tc.chain_noise * np.random.default_rng([tc.seed, 2000 + epoch, b]).standard_normal(
                    x.shape
                ).astype(np.float32)
            yield (x, np.take(yt, idx, axis=axis))

    def evaluate(state):
        if xv.shape[-2] == 0:
            xe, ye = xt, yt
        else:
            xe, ye = xv, yv
        per = np.asarray(eval_fn(state["params"], xe, ye))
        base = np.mean((xe[..., -yv.shape[-1] :] - ye) ** 2, axis=tuple(range(axis, ye.ndim)))
        out = {"val_loss": float(np.mean(per)), "baseline": float(np.mean(base))}
        if harmony:
            for j, h in enumerate(HARMONY):
                out[f"mse_{TRACKS[h]}"] = float(per[j])
                out[f"baseline_{TRACKS[h]}"] = float(base[j])
        return out

    def summarize(host):
        return {"mse": float(np.mean(np.stack(host)))}

    stage = Stage(which, state, spe, tc.chain_epochs, batches, step_fn, evaluate, summarize)
    state, meta = fit(stage, run, tc, {"config": cfg.to_dict()}, progress=progress, stop_after=stop_after)
    return graphdef, state, meta


def plays_of(split: data_lib.Split, chunk: int = 8192) -> np.ndarray:
    """Which tracks sound in every bar of a split, `[bars, 5]` bool (from the bit-packed bars: a bar sounds
    when any of its bytes is non-zero)."""
    out = [
        np.asarray(split.packed[i : i + chunk]).reshape(min(chunk, len(split) - i), len(TRACKS), -1).any(-1)
        for i in range(0, len(split), chunk)
    ]
    return np.concatenate(out) if out else np.zeros((0, len(TRACKS)), bool)


def band_shares(split: data_lib.Split) -> np.ndarray:
    """`[5]` share of a split's bars where the piano sounds in which each track sounds (the piano's own: 1):
    how often a real band plays along with a piano part (`arrange(density="data")`)."""
    plays = plays_of(split)
    with_piano = plays[plays[:, PIANO]]
    return with_piano.mean(0) if len(with_piano) else np.full(len(TRACKS), np.nan)


def prior_sequences(run: RunFolder, ds: dict, latents: dict, split: str) -> prior_lib.Sequences:
    """A split's bar sequences for the prior: latent means standardised as generation standardises them
    (the run's `stats.json`), and the plays bits."""
    stats = run.read_stats()
    lat = latents[split]
    k = lat.shape[-1] // 2
    if "latent_mean" in stats:
        norm = latents_lib.LatentNorm(
            np.asarray(stats["latent_mean"], np.float32), np.asarray(stats["latent_std"], np.float32)
        )
    else:
        norm = latents_lib.LatentNorm.fit(latents["train"])
    z = norm.standardize(lat)[..., :k].astype(np.float32)
    return prior_lib.Sequences(
        np.clip(z, -latents_lib.CLIP, latents_lib.CLIP), plays_of(ds[split]), ds[split].start, ds[split].length
    )


def train_prior(run: RunFolder, cfg: Config, ds: dict, latents: dict, *, progress=True, stop_after=0):
    """Train the prior over bar sequences (and, with `cfg.prior.band`, the arranging prior) on the run's
    encoded latents."""
    pc, tc = cfg.prior, cfg.train
    key = jax.random.fold_in(jax.random.key(tc.seed), 3)
    nets = {"song": prior_lib.prior_net(pc, cfg.model.latent, jax.random.fold_in(key, 0))}
    if pc.band:
        nets["band"] = prior_lib.prior_net(pc, cfg.model.latent, jax.random.fold_in(key, 1), band=True)
    split = {name: nnx.split(net) for name, net in nets.items()}
    graphdefs = {name: gd for name, (gd, _) in split.items()}
    params = {name: p for name, (_, p) in split.items()}
    tx = prior_optimizer(pc)
    state = train_state(params, tx, key)
    step_fn, eval_fn = make_prior_fns(graphdefs, tx, pc)
    train, valid = (prior_sequences(run, ds, latents, s) for s in ("train", "valid"))
    rows = train.windows(pc.context, pc.piano_start)
    if len(rows) == 0:
        raise ValueError(
            f"no training song has {pc.context} bars, the prior's context"
            f"{' from a bar where the piano plays' if pc.piano_start else ''}; lower prior.context"
        )
    vrows = valid.windows(pc.context, pc.piano_start)
    if len(vrows) == 0:
        valid, vrows = train, rows
    vrows = vrows[np.random.default_rng(tc.seed).permutation(len(vrows))[:512]]
    epochs = max(1, min(pc.epochs, pc.steps))
    spe = max(1, pc.steps // epochs)

    def batches(epoch, start):
        for b in range(start, spe):
            pick = np.random.default_rng([tc.seed, 3000 + epoch, b]).integers(len(rows), size=pc.batch_size)
            yield train.batch(rows[pick], pc.context)

    def evaluate(state):
        parts = [
            jax.device_get(eval_fn(state["params"], *valid.batch(vrows[i : i + 64], pc.context)))
            for i in range(0, len(vrows), 64)
        ]
        out = {}
        for name in graphdefs:
            for field in prior_lib.PriorLoss._fields:
                out[f"{field}_{name}"] = float(np.mean([getattr(p[name], field) for p in parts]))
        out["val_loss"] = sum(out[f"loss_{name}"] for name in graphdefs)
        return out

    def summarize(host):
        out = {"loss": float(np.mean([sum(float(m[n].loss) for n in graphdefs) for m in host]))}
        for name in graphdefs:
            out[f"plays_{name}"] = float(np.mean([m[name].plays for m in host]))
            out[f"latent_{name}"] = float(np.mean([m[name].latent for m in host]))
        return out

    stage = Stage("prior", state, spe, epochs, batches, step_fn, evaluate, summarize)
    state, meta = fit(stage, run, tc, {"config": cfg.to_dict()}, progress=progress, stop_after=stop_after)
    if pc.style and jax.process_index() == 0:
        stats = run.read_stats()
        stats["prior_styles"] = style_bank(train, rows, pc.context, seed=tc.seed).tolist()
        run.write_stats(stats)
    return graphdefs, state, meta


STYLE_BANK = 512
"""Training passages whose song-level codes a styled prior draws from (one passage per song)."""


def style_bank(seqs: prior_lib.Sequences, rows: np.ndarray, context: int, *, seed: int = 0) -> np.ndarray:
    """Song-level codes `[n, 5 (K + 1)]` (`prior.style_of`, rounded to 4 decimals) of up to `STYLE_BANK`
    training windows `rows` (`Sequences.windows`), one drawn from each of as many songs, songs drawn at
    random."""
    rng = np.random.default_rng([seed, 7])
    song = np.searchsorted(seqs.start, rows[:, 0], side="right") - 1
    songs = rng.permutation(np.unique(song))[:STYLE_BANK]
    pick = np.array([rng.choice(np.flatnonzero(song == s)) for s in songs])
    z, plays, _ = seqs.batch(rows[pick], context)
    return np.round(np.asarray(prior_lib.style_of(z, plays)), 4).astype(np.float32)


def train_all(run_dir: str, cfg: Config, data_dir: str, *, stages=STAGES, devices=None, progress=True) -> dict:
    """Run the requested stages in order on a prepared dataset; each resumes from its own checkpoints.
    `cfg.data` must be the dataset's (see `train`, which takes it from the dataset)."""
    run = RunFolder(run_dir)
    ds = data_lib.open_dataset(data_dir)
    if ds["train"].cfg != cfg.data:
        raise ValueError(f"{data_dir} was prepared with {ds['train'].cfg}, the run expects {cfg.data}")
    writer = jax.process_index() == 0
    with run.lock() if writer else contextlib.nullcontext():
        run.start(cfg, data_dir, writer=writer)
        return _stages(run, cfg, ds, stages, DataParallel(devices), progress)


def _stages(run: RunFolder, cfg: Config, ds: dict, stages, dp: DataParallel, progress: bool) -> dict:
    results = {}
    vae_state = None
    graphdef, like, _ = init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
    if "vae" in stages:
        graphdef, vae_state, vae_meta = train_vae(run, cfg, ds, dp, progress=progress)
        results["vae"] = vae_meta.get("val", {})
    latents = run.read_latents({name: len(ds[name]) for name in data_lib.SPLITS}, cfg.model.latent)
    if "encode" in stages or (latents is None and ({"melody", "harmony", "prior"} & set(stages))):
        if vae_state is None:
            vae_state, vae_meta = restore_best(run.ckpt("vae"), like)
        latents = calibration.run_encode(run, ds, graphdef, vae_state["params"])
        calibration.calibrate(
            run, vae_meta, latents, ds, seed=cfg.train.seed, graphdef=graphdef, params=vae_state["params"]
        )
    for which in ("melody", "harmony"):
        if which in stages:
            _, _, meta = train_chain(run, cfg, ds, latents, which, progress=progress)
            results[which] = meta.get("val", {})
    if {"harmony", "prior", "decoding"} & set(stages) and cfg.train.calibrate_passages and jax.process_index() == 0:
        calibrate_reconstruction(run, cfg, ds, force="decoding" in stages)
    made_for = None
    if "prior" in stages:
        if latents is None:
            raise ValueError(
                f"{run.root}: no encoded latents to train the prior on; run `train.py --stage encode` first"
            )
        _, _, meta = train_prior(run, cfg, ds, latents, progress=progress)
        results["prior"] = meta.get("val", {})
        made_for = {"step": meta.get("step"), "best_val": meta.get("best_val")}
    if ("prior" in stages or "decoding" in stages) and jax.process_index() == 0:
        record_band_shares(run, ds["train"])
        if cfg.prior.calibrate_songs:
            calibrate_prior(run, cfg, ds, made_for=None if "decoding" in stages else made_for)
    return results


def record_band_shares(run: RunFolder, train: data_lib.Split) -> None:
    """Write `band_shares` (how often each track plays along with the piano in the training bars) to the
    run's sampling statistics, where the split has bars with the piano."""
    shares = band_shares(train)
    if np.isfinite(shares).all():
        stats = run.read_stats()
        stats["band_shares"] = [float(v) for v in shares]
        run.write_stats(stats)


def calibration_passages(split: data_lib.Split, segments: int, limit: int, seed: int = 0) -> np.ndarray:
    """Up to `limit` passages `[S, 5, segments, T, P]` of a split's songs: every song cut into consecutive
    passages of `segments` segments (or of its longest song's length, where none is that long), a random
    `limit` of them in song order."""
    if not len(split.ids):
        return np.zeros((0, len(TRACKS), segments, split.cfg.steps, split.cfg.num_pitches), bool)
    segments = min(segments, int(split.length.max()))
    where = [(i, f) for i in range(len(split.ids)) for f in range(0, int(split.length[i]) - segments + 1, segments)]
    if len(where) > limit:
        where = [where[j] for j in np.sort(np.random.default_rng(seed).choice(len(where), limit, replace=False))]
    return np.stack([split.song(i)[:, f : f + segments] for i, f in where])


def calibrate_reconstruction(run: RunFolder, cfg: Config, ds: dict, *, force: bool = False) -> dict | None:
    """Calibrate how encoded latents are decoded (`calibration.reconstruction_decoding`) on passages of the
    validation songs (held out, as the reconstructions users make are of songs the VAEs never saw), and record
    it in the run's sampling statistics (`onset_thresholds`, `count_scale`, the sustain column of
    `thresholds`; the encode stage's per-bar values stay as `onset_thresholds_bars`). Done once per encode
    stage (its statistics carry no `count_scale` until then) unless `force`. Returns the per-round
    comparison, or None where nothing was calibrated."""
    from vaejax.trained_model import TrainedModel

    stats = run.read_stats()
    if ("count_scale" in stats and not force) or not run.trained:
        return None
    bars = min(BARS, cfg.prior.context)
    passages = calibration_passages(ds["valid"], bars, cfg.train.calibrate_passages, seed=cfg.train.seed)
    if not len(passages):
        return None
    model = TrainedModel(run.root)
    if "onset_thresholds_bars" in stats:  # calibrated before: start again from the encode stage's decoding
        model = model.with_decoding(
            stats["onset_thresholds_bars"], np.ones(len(TRACKS)), stats["sustain_bars"], np.ones(len(TRACKS))
        )
    per_bar = cfg.data.resolution * cfg.data.beats_per_bar
    want = realism.rhythm_stats(passages.reshape(*passages.shape[:2], -1, passages.shape[-1]), steps_per_bar=per_bar)
    got = calibration.reconstruction_decoding(model, passages, want)
    if got is None:
        return None
    cuts, scale, sustain, spread, history, ages = got
    th = np.asarray(stats["thresholds"], np.float32)
    stats.setdefault("onset_thresholds_bars", stats["onset_thresholds"])
    stats.setdefault("sustain_bars", th[:, 0].tolist())
    th[:, 0] = sustain
    stats.pop("sustain_ages", None)
    if ages is not None:
        stats["sustain_ages"] = ages.tolist()
    stats.update(
        thresholds=th.tolist(),
        onset_thresholds=cuts.tolist(),
        count_scale=scale.tolist(),
        spread=spread.tolist(),
        reconstruction_decoding=history,
    )
    run.write_stats(stats)
    log.info("reconstruction decoding calibrated on %d validation passages: %s", len(passages), _tv_change(history))
    return history


def _tv_change(history: list) -> str:
    """A calibration's onset TV per track, first round -> last, for the log."""
    tv = lambda row: " / ".join(f"{row[t]['onset_tv']:.3f}" for t in TRACKS)  # noqa: E731
    return f"onset TV {tv(history[0])} -> {tv(history[-1])}"


def calibrate_prior(run: RunFolder, cfg: Config, ds: dict, *, made_for: dict | None = None) -> dict | None:
    """Calibrate how the bars the run's learned prior draws are decoded (`calibration.prior_decoding`)
    against every real training passage (from the first bar where the piano and two more tracks play), and
    record it in the run's sampling statistics. `made_for` identifies the prior (its best checkpoint's step
    and validation loss): a prior already calibrated is left as it is (a finished run trained again), None
    calibrates anyway. Returns the per-round comparison, or None where nothing was calibrated (already done,
    no learned prior, decoders off a sixteenth grid, no passage long enough)."""
    from vaejax.trained_model import TrainedModel

    if made_for is not None and run.read_stats().get("prior_decoding_for") == made_for:
        return None
    model = TrainedModel(run.root)
    if model.prior is None:
        return None
    bars = min(BARS, cfg.prior.context)
    train = ds["train"]
    windows = train.windows(bars)
    if not windows:
        return None
    seed = calibration.PRIOR_SEED + cfg.train.seed
    want = realism.passage_stats(train, windows, bars)
    got = calibration.prior_decoding(model, want, songs=cfg.prior.calibrate_songs, bars=bars, seed=seed)
    if got is None:
        return None
    cuts, scale, sustain, spread, history, ages = got
    stats = run.read_stats()
    stats.pop("prior_sustain_ages", None)
    if ages is not None:
        stats["prior_sustain_ages"] = ages.tolist()
    stats.update(
        prior_onset_thresholds=cuts.tolist(),
        prior_count_scale=scale.tolist(),
        prior_sustain=sustain.tolist(),
        prior_spread=spread.tolist(),
        prior_decoding=history,
    )
    if made_for is not None:
        stats["prior_decoding_for"] = made_for
    run.write_stats(stats)
    log.info(
        "prior decoding calibrated on %d real passages: %s; pitch spread %s",
        len(windows),
        _tv_change(history),
        " / ".join(f"{g:.2f}" for g in spread),
    )
    return history


def with_data(cfg: Config, data_dir: str) -> Config:
    """`cfg` with the data section of the prepared dataset: the data defines the segment (bars per segment,
    pitch range, binarisation, key normalisation); a data field set to something else is refused."""
    report = data_lib.read_report(data_dir)
    fixed = data_lib.report_config(report, os.path.join(data_dir, "report.json"))
    return dataclasses.replace(cfg, data=data_lib.fixed_by_dataset(cfg.data, fixed, data_dir))


def train(
    run_dir: str | None = None,
    data: str | None = None,
    cfg: Config | None = None,
    *,
    preset_name: str = "default",
    stages=STAGES,
    devices=None,
    progress: bool = True,
) -> tuple[str, dict]:
    """Train every stage (or `stages`) as `train.py` does; returns (run folder, validation figures).

    `data`: a prepared dataset, a raw folder of LPD npz / MIDI files (prepared on the fly and cached under
    data/prepared/), or None for the SYNTHETIC demo corpus. `cfg` (default: the preset `preset_name`) takes
    its data section from the dataset. The run folder defaults to runs/<preset>-k<latent>; when training
    ends it becomes the default model of `vaejax.load()` and `sample.py` (runs/LATEST).
    """
    from vaejax.config import preset

    cfg = cfg or preset(preset_name)
    data_dir = data_lib.resolve(data, progress=progress)
    cfg = with_data(cfg, data_dir)
    run_dir = run_dir or default_run(preset_name, cfg.model.latent)
    if tuple(stages) == ("prior",) and os.path.exists(RunFolder(run_dir).config_path):
        # (re)training the prior of an existing run: its VAEs and chains stay as they were trained
        cfg = RunFolder(run_dir).read_config().replace(prior=dataclasses.asdict(cfg.prior))
    elif tuple(stages) == ("decoding",) and os.path.exists(RunFolder(run_dir).config_path):
        cfg = RunFolder(run_dir).read_config()  # the run as it was trained: only its prior's decoding changes
    log.info(
        "training %s in %s on %d %s device(s) (%d process(es))",
        ", ".join(stages),
        run_dir,
        jax.device_count(),
        (devices or jax.devices())[0].platform,
        jax.process_count(),
    )
    results = train_all(run_dir, cfg, data_dir, stages=stages, devices=devices, progress=progress)
    if jax.process_index() == 0:
        mark_latest(run_dir)
    return os.path.abspath(run_dir), results
