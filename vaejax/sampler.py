"""Generation from a trained run: `vaejax.load(run_dir)` -> TrainedModel.

The chain: the piano's latent parameters (mu, logvar) advance bar by bar through MelodyNN, each harmony
track's through its HarmonyNN from (piano at t+1, own at t); Gaussian noise of scale sigma is added to
the parameters at every bar (and carried forward); each track decodes its mu with its own decoder.

Sigma is measured in units of each latent parameter's spread over the training bars: the chains run on
standardised parameters (as they were trained), so sigma 1 moves every parameter by about one standard
deviation of the data. The chain state is kept within +-CLIP standard deviations.
"""

from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from vaejax import models, music, render
from vaejax.config import HARMONY, PIANO, TRACKS, Config, latest_run

MAX_BARS = 4096
HARMONY_GUIDANCE = 4.0
"""Default `TrainedModel.harmony_guidance` (chosen on the evaluation: see docs/quality-report.md)."""
BUCKET = 16
"""Given parts are padded to a multiple of this many segments (the chains are causal: padding at the end
changes nothing before it), so that parts of many lengths share a few compiled programs."""
CLIP = 5.0
MIN_LENGTH = 3
"""Default post-processing, as in sample.py: notes shorter than this many steps are dropped ..."""
MERGE_GAP = 2
"""... after silences shorter than this many steps between notes of one pitch are filled (`render.postprocess`)."""


class NoCheckpoint(FileNotFoundError):
    pass


def _check(bars: int, sigma: float) -> None:
    if not isinstance(bars, (int, np.integer)) or bars < 1 or bars > MAX_BARS:
        raise ValueError(f"bars must be an integer from 1 to {MAX_BARS}, got {bars!r}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")


def _chain_state_like(params) -> dict:
    """The structure a stage checkpoints (parameters, Adam state, key), to restore into."""
    params = jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), params)
    return {"params": params, "opt": optax.adam(1.0).init(params), "key": jax.random.key_data(jax.random.key(0))}


WEIGHTS = "weights.npz"
"""A packaged model (`export`): every network's parameters and the start bars in one npz, no pickles."""
PRETRAINED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pretrained")
DEFAULT_PRETRAINED = "lpd5"


def _flatten(state, prefix: str) -> dict[str, np.ndarray]:
    leaves = jax.tree_util.tree_flatten_with_path(state)[0]
    return {prefix + jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}


def _unflatten(template, arrays: dict, prefix: str):
    def get(path, leaf):
        key = prefix + jax.tree_util.keystr(path)
        if key not in arrays or arrays[key].shape != tuple(leaf.shape):
            raise NoCheckpoint(f"packaged model lacks {key} of shape {tuple(leaf.shape)}")
        return jnp.asarray(arrays[key], jnp.float32)
    return jax.tree_util.tree_map_with_path(get, template)


def export(model: "TrainedModel", out_dir: str, *, dtype=np.float16) -> dict:
    """Write `model` as a packaged model folder (config.json, stats.json, weights.npz with parameters in
    `dtype`) that `load(out_dir)` restores without Orbax or training code. Returns file sizes in bytes."""
    os.makedirs(out_dir, exist_ok=True)
    arrays = {**_flatten(model.vae, "vae/"), **_flatten(model.mel, "melody/"), **_flatten(model.har, "harmony/")}
    arrays = {k: v.astype(dtype) for k, v in arrays.items()}
    arrays["start_bars"] = model.start_bars.astype(dtype)
    np.savez_compressed(os.path.join(out_dir, WEIGHTS), **arrays)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        f.write(model.cfg.to_json())
    stats = {k: v for k, v in model.stats.items() if k != "val"}
    stats["harmony_guidance"] = model.harmony_guidance
    with open(os.path.join(out_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)
    return {f: os.path.getsize(os.path.join(out_dir, f)) for f in (WEIGHTS, "config.json", "stats.json")}


class TrainedModel:
    """Five VAEs, MelodyNN and four HarmonyNNs restored from a run directory.

    Every generating method returns `pypianoroll.Multitrack`s (Drums, Piano, Guitar, Bass, Strings); see
    `vaejax.render` to write MIDI, plot and listen.
    """

    def __init__(self, run_dir: str):
        cfg_path = os.path.join(run_dir, "config.json")
        packaged = os.path.exists(os.path.join(run_dir, WEIGHTS))
        if not os.path.exists(cfg_path) or not (packaged or os.path.isdir(os.path.join(run_dir, "ckpt", "harmony"))):
            raise NoCheckpoint(f"{run_dir}: no trained model here; train one with `python train.py` "
                               f"(or `python train.py --data PATH` for your data)")
        with open(cfg_path) as f:
            self.cfg = Config.from_dict(json.load(f))
        self.run_dir = run_dir
        cfg = self.cfg
        # module structure only (no initialisation is computed); the weights are restored into it
        self.vae_def, vae_t = nnx.split(nnx.eval_shape(lambda: models.vae_stack(cfg.model, cfg.data, jax.random.key(0))))
        self.mel_def, mel_t = nnx.split(nnx.eval_shape(lambda: models.melody_net(cfg.model, jax.random.key(0))))
        self.har_def, har_t = nnx.split(nnx.eval_shape(lambda: models.harmony_stack(cfg.model, jax.random.key(0))))
        if packaged:
            with np.load(os.path.join(run_dir, WEIGHTS), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            self.vae, self.mel, self.har = (_unflatten(t, arrays, name + "/")
                                            for t, name in ((vae_t, "vae"), (mel_t, "melody"), (har_t, "harmony")))
        else:
            from vaejax.checkpoint import restore_best
            self.vae = restore_best(run_dir, "vae", _chain_state_like(vae_t))[0]["params"]
            self.mel = restore_best(run_dir, "melody", _chain_state_like(mel_t))[0]["params"]
            self.har = restore_best(run_dir, "harmony", _chain_state_like(har_t))[0]["params"]
        with open(os.path.join(run_dir, "stats.json")) as f:
            self.stats = json.load(f)
        th = np.asarray(self.stats["thresholds"], np.float32)
        self.thresholds = th[:, None] if th.ndim == 1 else th  # [5, channels]: sustain (, onset)
        self.synthetic = bool(self.stats.get("data", {}).get("synthetic", False))
        """True when trained on the synthetic demo corpus: generated names and pictures say so."""
        if packaged:
            self.start_bars = arrays["start_bars"].astype(np.float32)
        else:
            self.start_bars = np.load(os.path.join(run_dir, "start_bars.npy"), allow_pickle=False)
        k2 = self.start_bars.shape[-1]
        self.mean = np.asarray(self.stats.get("latent_mean", np.zeros((5, k2))), np.float32)
        self.std = np.asarray(self.stats.get("latent_std", np.ones((5, k2))), np.float32)
        self.tempo = 120.0
        self._chain = jax.jit(self._chain_impl, static_argnums=(2,))
        self.harmony_guidance = float(self.stats.get("harmony_guidance", HARMONY_GUIDANCE))
        """Scale on the conditioned decoders' harmonic bias (`models.VAE.harmony`) when generating: above 1
        the band leans harder on the piano's pitch classes than on its own latents (as classifier-free
        guidance does); 1 decodes as trained."""
        self.count_notes = cfg.model.onsets
        """Two-channel decoders start as many notes as they expect (`models.decode_notes(count=True)`);
        False decodes at the calibrated onset thresholds instead."""
        self._rolls = jax.jit(self._rolls_impl, static_argnames=("sample", "count"))
        self._encode = jax.jit(self._encode_impl)
        self._harm = jax.jit(self._harmony_impl)

    def _label(self, name: str) -> str:
        return f"{name} (model trained on SYNTHETIC demo data)" if self.synthetic and "SYNTHETIC" not in name else name

    # ---- pure pieces -------------------------------------------------------------------------------

    @property
    def K(self) -> int:
        return self.cfg.model.latent

    def _melody(self, p):
        return nnx.merge(self.mel_def, self.mel)(p)

    def _harmony_step(self, piano_next, own):
        """piano_next `[N, 2K]`, own `[4, N, 2K]` -> own at t+1 `[4, N, 2K]`."""
        x = jnp.concatenate([jnp.broadcast_to(piano_next, own.shape), own], -1)
        return jax.vmap(lambda p, xi: nnx.merge(self.har_def, p)(xi))(self.har, x)

    def _chain_impl(self, start, key, bars: int, sigma):
        """Standardised start `[N, 5, 2K]` -> standardised latent parameters `[N, bars, 5, 2K]`, noisy, and the
        chains' predictions before the noise was added (the same shape)."""
        def step(carry, k):
            piano, own = carry
            k1, k2 = jax.random.split(k)
            piano_mean = self._melody(piano)
            piano = jnp.clip(piano_mean + sigma * jax.random.normal(k1, piano.shape), -CLIP, CLIP)
            own_mean = self._harmony_step(piano, own)
            own = jnp.clip(own_mean + sigma * jax.random.normal(k2, own.shape), -CLIP, CLIP)
            return (piano, own), (piano, own, piano_mean, own_mean)

        k0, ks = jax.random.split(key)
        first = jnp.clip(start + sigma * jax.random.normal(k0, start.shape), -CLIP, CLIP)
        carry = (first[:, PIANO], jnp.moveaxis(first[:, jnp.array(HARMONY)], 1, 0))
        _, (pianos, owns, piano_means, own_means) = jax.lax.scan(step, carry, jax.random.split(ks, bars - 1))

        def assemble(p0, own0, p, own):
            p = jnp.concatenate([p0[None], p])  # [bars, N, 2K]
            own = jnp.concatenate([own0[None], own])  # [bars, 4, N, 2K]
            out = jnp.zeros((bars, start.shape[0], 5, start.shape[-1]))
            out = out.at[:, :, PIANO].set(p)
            out = out.at[:, :, jnp.array(HARMONY)].set(jnp.moveaxis(own, 1, 2))
            return jnp.moveaxis(out, 0, 1)

        noisy = assemble(carry[0], carry[1], pianos, owns)
        means = assemble(start[:, PIANO], jnp.moveaxis(start[:, jnp.array(HARMONY)], 1, 0), piano_means, own_means)
        return noisy, means

    def _harmony_impl(self, piano, own0, key, sigma):
        """Harmony chain under a fixed piano (standardised), noise carried forward as in `_chain_impl`:
        piano `[bars, 2K]`, own0 `[4, 2K]` -> (noisy, predicted before noise), each `[bars, 4, 2K]`."""
        def step(own, pk):
            p, k = pk
            mean = self._harmony_step(p[None], own[:, None])[:, 0]
            own = jnp.clip(mean + sigma * jax.random.normal(k, own.shape), -CLIP, CLIP)
            return own, (own, mean)
        return jax.lax.scan(step, own0, (piano, jax.random.split(key, piano.shape[0])))[1]

    def _rolls_impl(self, latents, thresholds, key, piano=None, plays_latents=None, guidance=1.0, *,
                    sample: bool = False, count: bool = False):
        """`[M, 5, 2K]` latent parameters -> `[5, M, T, P]` bool rolls. The piano decodes first (or is
        given, `[M, T, P]`); the other tracks decode conditioned on its pitch classes, each with its own
        decoder; `sample` draws cells instead of thresholding. Whether a track plays in a segment is
        decided from `plays_latents` when given (the chains' predictions before noise: sigma varies what
        is played, not whether), else from `latents`."""
        d = self.cfg.data
        vae = self.vae
        if self.cfg.model.condition:
            vae = jax.tree.map(lambda a: a, vae)
            vae["harmony"] = jax.tree.map(lambda a: a * guidance, vae["harmony"])
        z = jnp.moveaxis(latents[..., :self.K], 1, 0)  # [5, M, K]
        zp = z if plays_latents is None else jnp.moveaxis(plays_latents[..., :self.K], 1, 0)

        def notes(probs, plays, th, k):
            kc, kp = jax.random.split(k)
            draws = jax.random.uniform(kc, probs.shape) if sample else None
            cut = jax.random.uniform(kp, plays.shape) if sample else 0.5
            return models.decode_notes(probs, th, draws, count=count, plays=plays, plays_cut=cut)

        kp, kb = jax.random.split(key)
        if piano is None:
            pvae = nnx.merge(self.vae_def, jax.tree.map(lambda a: a[PIANO], vae))
            none = jnp.zeros((z.shape[1], models.condition_dim(d)))
            logits, plays = pvae.decode_all(z[PIANO], none)
            plays = jnp.ones(z.shape[1]) if plays is None else jax.nn.sigmoid(pvae.decode_all(zp[PIANO], none)[1])
            piano = notes(jax.nn.sigmoid(logits), plays, thresholds[PIANO], kp)
        c = models.conditions(piano.astype(jnp.float32), d)
        probs, plays = models.decode_stack(self.vae_def, vae, z, c)
        if plays_latents is not None:
            plays = models.decode_stack(self.vae_def, vae, zp, c)[1]
        rolls = jax.vmap(notes)(probs, plays, thresholds, jax.random.split(kb, len(TRACKS)))
        return rolls.at[PIANO].set(piano.astype(bool))

    def _encode_impl(self, x):
        """`[5, M, T, P]` -> `[M, 5, 2K]`."""
        return jnp.moveaxis(models.encode_stack(self.vae_def, self.vae, x, self.cfg.data), 0, 1)

    # ---- arrays ------------------------------------------------------------------------------------

    def _in_model_key(self, roll: np.ndarray) -> tuple[np.ndarray, int]:
        """A `[5, T, P]` input roll moved into the key the model was trained in, and the shift applied."""
        if not self.cfg.data.key_normalize:
            return roll, 0
        shift = music.key_shift(roll, self.cfg.data.lowest_pitch)
        return music.transpose(roll, shift), shift

    def _roll_of(self, song) -> np.ndarray:
        return song if isinstance(song, np.ndarray) else render.from_multitrack(song, self.cfg.data)

    def _encode_roll(self, roll: np.ndarray) -> np.ndarray:
        steps = self.cfg.data.steps
        n = roll.shape[1] // steps
        if n == 0:
            raise ValueError(f"song is shorter than one segment ({steps} steps)")
        x = roll[:, : n * steps].reshape(5, n, steps, -1).astype(np.float32)
        return np.asarray(self._encode(x))

    def encode(self, song) -> np.ndarray:
        """Multitrack or `[5, T, P]` roll -> latent parameters `[bars, 5, 2K]` (mu then logvar), in the
        model's key (a key-normalised model first transposes the song to C major / A minor)."""
        return self._encode_roll(self._in_model_key(self._roll_of(song))[0])

    def rolls(self, latents: np.ndarray, *, threshold: float | None = None, sample: bool = False, seed: int = 0,
              piano: np.ndarray | None = None, plays_latents: np.ndarray | None = None) -> np.ndarray:
        """Latent parameters `[M, 5, 2K]` -> `[5, M*T, P]` bool rolls: the decoders' raw output, notes
        decoded at the calibrated thresholds (`threshold` replaces the sustain threshold), before any
        post-processing. `piano` (`[M*T, P]`) fixes the piano part that the band follows; `plays_latents`
        (like `latents`) decide which tracks play in which segments."""
        th = self.thresholds.copy()
        if threshold is not None:
            th[:, 0] = float(threshold)
        lat = jnp.asarray(latents, jnp.float32)
        p = None if piano is None else jnp.asarray(piano.reshape(lat.shape[0], self.cfg.data.steps, -1))
        pl = None if plays_latents is None else jnp.asarray(plays_latents, jnp.float32)
        out = np.asarray(self._rolls(lat, jnp.asarray(th), jax.random.key(seed), p, pl,
                                     jnp.float32(self.harmony_guidance), sample=sample, count=bool(self.count_notes)))
        return out.reshape(5, -1, out.shape[-1])

    def _finish(self, roll, *, name, shift=0, key=0, min_length=MIN_LENGTH, merge_gap=MERGE_GAP, tempo=None,
                **_):
        """Post-process, move to the output key and wrap a `[5, T, P]` roll as a Multitrack."""
        roll = render.postprocess(roll, min_length=min_length, merge_gap=merge_gap)
        roll = music.transpose(roll, int(key) - int(shift))
        return render.to_multitrack(roll, tempo=tempo or self.tempo, name=self._label(name), cfg=self.cfg.data)

    def decode(self, params: np.ndarray, *, threshold: float | None = None, sample: bool = False, seed: int = 0,
               name: str = "decoded", plays_latents: np.ndarray | None = None, **finish_kw):
        """Latent parameters `[bars, 5, 2K]` -> Multitrack (thresholds calibrated on validation data by
        default; `sample=True` draws each cell from its Bernoulli instead). `key`: semitones to transpose
        the output by; `min_length`, `merge_gap`: post-processing (0 and 0 for the raw output)."""
        roll = self.rolls(params, threshold=threshold, sample=sample, seed=seed, plays_latents=plays_latents)
        return self._finish(roll, name=name, **finish_kw)

    # ---- generation --------------------------------------------------------------------------------

    def sample_params(self, bars: int = 32, *, sigma: float = 0.5, seed: int = 0, num: int = 1,
                      start: np.ndarray | None = None, with_means: bool = False):
        """Latent parameters `[num, bars, 5, 2K]` from the chain (`bars` counts segments). The first comes
        from `start` (`[num, 5, 2K]`) or from a random real training bar where the piano plays.
        `with_means`: also the chains' predictions before the noise (the same shape)."""
        _check(bars, sigma)
        key = jax.random.key(seed)
        if start is None:
            pick = np.random.default_rng(seed).integers(len(self.start_bars), size=num)
            start = self.start_bars[pick]
        z, means = self._chain(jnp.asarray((start - self.mean) / self.std, jnp.float32), key, int(bars),
                               jnp.float32(sigma))
        z, means = np.asarray(z) * self.std + self.mean, np.asarray(means) * self.std + self.mean
        return (z, means) if with_means else z

    def sample(self, bars: int = 32, *, sigma: float = 0.5, seed: int = 0, num: int = 1, threshold=None,
               sample: bool = False, **finish_kw):
        """`num` new songs of `bars` bars, generated together in one compiled call. (The chain advances by
        segments; with segments of several bars the last one is cut to length.) `key=N` transposes the
        songs by N semitones from C major / A minor (key-normalised models)."""
        _check(bars, sigma)
        d = self.cfg.data
        segments = -(-bars // d.segment_bars)
        params, means = self.sample_params(segments, sigma=sigma, seed=seed, num=num, with_means=True)
        flat = lambda a: a.reshape((-1,) + a.shape[2:])  # noqa: E731
        roll = self.rolls(flat(params), threshold=threshold, sample=sample, seed=seed + 1, plays_latents=flat(means))
        per_song = segments * d.steps
        length = bars * d.resolution * d.beats_per_bar
        return [self._finish(roll[:, i * per_song:i * per_song + length], name=f"vaejax seed {seed} #{i}",
                             **finish_kw) for i in range(num)]

    def vary(self, song, *, sigma: float = 0.5, seed: int = 0, bars: int | None = None, **decode_kw):
        """A variation: encode every bar of `song`, add sigma noise to its latent parameters, decode (in the
        song's own key unless `key` is given). Tracks play in the bars where the song has them play."""
        roll, shift = self._in_model_key(self._roll_of(song))
        params = self._encode_roll(roll)
        if bars is not None:
            _check(bars, sigma)
            params = params[:bars]
        _check(len(params), sigma)
        noisy = params + sigma * self.std * np.asarray(jax.random.normal(jax.random.key(seed), params.shape))
        decode_kw.setdefault("key", 0)
        return self.decode(noisy, seed=seed, name=f"variation sigma {sigma}", shift=shift, plays_latents=params,
                           **decode_kw)

    def continue_song(self, song, bars: int = 32, *, sigma: float = 0.5, seed: int = 0, **decode_kw):
        """Roll the chain forward from the last bar of `song` (in the song's key unless `key` is given)."""
        roll, shift = self._in_model_key(self._roll_of(song))
        start = self._encode_roll(roll)[-1:]
        params, means = self.sample_params(bars, sigma=sigma, seed=seed, num=1, start=start, with_means=True)
        decode_kw.setdefault("key", 0)
        return self.decode(params[0], seed=seed, name="continuation", shift=shift, plays_latents=means[0],
                           **decode_kw)

    def arrange(self, piano, *, sigma: float = 0.5, seed: int = 0, tracks=None, threshold=None,
                sample: bool = False, **finish_kw):
        """Keep a piano part exactly and generate the band bar by bar: the HarmonyNNs carry each track's
        latents under the piano's, and each decoder follows the piano's pitch classes.

        `piano`: a Multitrack (its Piano track, or its only track) or a `[T, P]` bool roll. `tracks`: the
        instruments to add (names from `TRACKS`, default all four). The output keeps the input's length
        and (for a Multitrack) its tempo, in the piano's own key."""
        cfg = self.cfg.data
        add = _track_list(tracks)
        if isinstance(piano, np.ndarray):
            piano_roll = np.asarray(piano).astype(bool)
            if piano_roll.ndim != 2 or piano_roll.shape[1] != cfg.num_pitches:
                raise ValueError(f"piano roll must be [time, {cfg.num_pitches}], got {piano_roll.shape}")
        else:
            parts = piano.tracks
            if not parts:
                raise ValueError("the song has no tracks")
            pick = 1 if len(parts) == 5 else 0
            piano_roll = render.from_multitrack(type(piano)(resolution=piano.resolution, tracks=[parts[pick]]), cfg)[0]
            finish_kw.setdefault("tempo", render.tempo_of(piano))
        steps = cfg.steps
        length = piano_roll.shape[0]
        n = -(-length // steps)
        if n == 0:
            raise ValueError("the piano part is empty (no time steps)")
        if n > MAX_BARS:
            raise ValueError(f"the piano part has {n} segments; at most {MAX_BARS} can be arranged at once")
        _check(n, sigma)
        n = -(-n // BUCKET) * BUCKET  # whole buckets of segments: one compiled program serves many lengths
        roll = np.zeros((5, n * steps, cfg.num_pitches), bool)
        roll[PIANO, :length] = piano_roll
        roll, shift = self._in_model_key(roll)
        h = np.array(HARMONY)
        p = self._encode_roll(roll)[:, PIANO]  # [n, 2K]
        ps = (p - self.mean[PIANO]) / self.std[PIANO]
        rng = np.random.default_rng(seed)
        own0 = (self.start_bars[rng.integers(len(self.start_bars))][h] - self.mean[h]) / self.std[h]
        own, own_mean = (np.asarray(a) for a in self._harm(jnp.asarray(ps, jnp.float32), jnp.asarray(own0, jnp.float32),
                                                           jax.random.key(seed), jnp.float32(sigma)))
        params = np.zeros((n, 5, p.shape[-1]), np.float32)  # in the data's units; `own` is standardised
        params[:, PIANO] = p
        means = params.copy()
        params[:, h] = own * self.std[h] + self.mean[h]
        means[:, h] = own_mean * self.std[h] + self.mean[h]
        out = self.rolls(params, threshold=threshold, sample=sample, seed=seed, piano=roll[PIANO],
                         plays_latents=means)
        out = render.postprocess(out, min_length=finish_kw.pop("min_length", MIN_LENGTH),
                                 merge_gap=finish_kw.pop("merge_gap", MERGE_GAP))
        out = music.transpose(out, int(finish_kw.pop("key", 0)) - shift)[:, :length]
        for i in range(5):
            if i != PIANO and TRACKS[i] not in add:
                out[i] = False
        out[PIANO] = piano_roll  # the given part, untouched
        return render.to_multitrack(out, tempo=finish_kw.get("tempo") or self.tempo,
                                    name=self._label("arrangement"), cfg=cfg)

    def interpolate(self, song_a, song_b, *, steps: int = 5, bars: int = 4, **decode_kw):
        """`steps` songs moving linearly in latent space from song_a's first `bars` bars to song_b's."""
        a, b = self.encode(song_a)[:bars], self.encode(song_b)[:bars]
        n = min(len(a), len(b))
        return [self.decode((1 - w) * a[:n] + w * b[:n], name=f"interpolation {w:.2f}", **decode_kw)
                for w in np.linspace(0.0, 1.0, steps)]


def _track_list(tracks) -> tuple[str, ...]:
    """Instrument names to add in an arrangement: None for all four, else names (any case) or a
    comma-separated string."""
    band = tuple(TRACKS[i] for i in HARMONY)
    if tracks is None:
        return band
    if isinstance(tracks, str):
        tracks = [t for t in tracks.split(",") if t.strip()]
    names = {t.lower(): t for t in band}
    out = []
    for t in tracks:
        if t.strip().lower() not in names:
            raise ValueError(f"unknown track {t!r}; choose from {', '.join(band)}")
        out.append(names[t.strip().lower()])
    return tuple(out)


def pretrained_names() -> list[str]:
    """Names of the models packaged with vaejax (`load(name)`)."""
    if not os.path.isdir(PRETRAINED):
        return []
    return sorted(d for d in os.listdir(PRETRAINED) if os.path.exists(os.path.join(PRETRAINED, d, WEIGHTS)))


def load(run_dir: str | None = None) -> TrainedModel:
    """Load a trained run or packaged model folder, or a packaged model by name (`pretrained_names()`);
    default: the latest run trained in this folder, else the packaged model `DEFAULT_PRETRAINED`."""
    if run_dir is not None and not os.path.exists(run_dir) and run_dir in pretrained_names():
        return TrainedModel(os.path.join(PRETRAINED, run_dir))
    if run_dir is None:
        run_dir = latest_run()
        if run_dir is None:
            if DEFAULT_PRETRAINED in pretrained_names():
                return TrainedModel(os.path.join(PRETRAINED, DEFAULT_PRETRAINED))
            raise NoCheckpoint("no trained run found (runs/LATEST); train one with `python train.py`")
    return TrainedModel(run_dir)


def main(argv=None) -> int:
    """`python -m vaejax.sampler export RUN OUT`: package a trained run for `load(OUT)`."""
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m vaejax.sampler", description=main.__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write a run's best weights (float16) as a packaged model folder")
    ex.add_argument("run")
    ex.add_argument("out")
    ex.add_argument("--float32", action="store_true", help="keep float32 weights")
    args = ap.parse_args(argv)
    try:
        model = load(args.run)
    except NoCheckpoint as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = export(model, args.out, dtype=np.float32 if args.float32 else np.float16)
    print(f"{args.out}: " + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in sizes.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
