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

from vaejax import models, render
from vaejax.config import HARMONY, PIANO, Config
from vaejax.training import init_vae_state, restore_best

MAX_BARS = 4096
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
    """The structure a chain stage checkpoints (parameters, Adam state, key), to restore into."""
    return {"params": params, "opt": optax.adam(1.0).init(params), "key": jax.random.key_data(jax.random.key(0))}


class TrainedModel:
    """Five VAEs, MelodyNN and four HarmonyNNs restored from a run directory.

    Every generating method returns `pypianoroll.Multitrack`s (Drums, Piano, Guitar, Bass, Strings); see
    `vaejax.render` to write MIDI, plot and listen.
    """

    def __init__(self, run_dir: str):
        cfg_path = os.path.join(run_dir, "config.json")
        if not os.path.exists(cfg_path) or not os.path.isdir(os.path.join(run_dir, "ckpt", "harmony")):
            raise NoCheckpoint(f"{run_dir}: no trained model here; train one with `python train.py` "
                               f"(or `python train.py --data PATH` for your data)")
        with open(cfg_path) as f:
            self.cfg = Config.from_dict(json.load(f))
        self.run_dir = run_dir
        cfg = self.cfg
        self.vae_def, like, _ = init_vae_state(cfg, jax.random.key(0))
        self.vae = restore_best(run_dir, "vae", like)[0]["params"]
        mel = models.melody_net(cfg.model, jax.random.key(0))
        self.mel_def, mel_p = nnx.split(mel)
        har = models.harmony_stack(cfg.model, jax.random.key(0))
        self.har_def, har_p = nnx.split(har)
        self.mel = restore_best(run_dir, "melody", _chain_state_like(mel_p))[0]["params"]
        self.har = restore_best(run_dir, "harmony", _chain_state_like(har_p))[0]["params"]
        with open(os.path.join(run_dir, "stats.json")) as f:
            self.stats = json.load(f)
        self.thresholds = np.asarray(self.stats["thresholds"], np.float32)
        self.synthetic = bool(self.stats.get("data", {}).get("synthetic", False))
        """True when trained on the synthetic demo corpus: generated names and pictures say so."""
        self.start_bars = np.load(os.path.join(run_dir, "start_bars.npy"), allow_pickle=False)
        k2 = self.start_bars.shape[-1]
        self.mean = np.asarray(self.stats.get("latent_mean", np.zeros((5, k2))), np.float32)
        self.std = np.asarray(self.stats.get("latent_std", np.ones((5, k2))), np.float32)
        self.tempo = 120.0
        self._chain = jax.jit(self._chain_impl, static_argnums=(2,))
        self._decode = jax.jit(self._decode_impl)
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
        """Standardised start `[N, 5, 2K]` -> standardised latent parameters `[N, bars, 5, 2K]`."""
        def step(carry, k):
            piano, own = carry
            k1, k2 = jax.random.split(k)
            piano = jnp.clip(self._melody(piano) + sigma * jax.random.normal(k1, piano.shape), -CLIP, CLIP)
            own = jnp.clip(self._harmony_step(piano, own) + sigma * jax.random.normal(k2, own.shape), -CLIP, CLIP)
            return (piano, own), (piano, own)

        k0, ks = jax.random.split(key)
        start = jnp.clip(start + sigma * jax.random.normal(k0, start.shape), -CLIP, CLIP)
        carry = (start[:, PIANO], jnp.moveaxis(start[:, jnp.array(HARMONY)], 1, 0))
        _, (pianos, owns) = jax.lax.scan(step, carry, jax.random.split(ks, bars - 1))
        pianos = jnp.concatenate([carry[0][None], pianos])  # [bars, N, 2K]
        owns = jnp.concatenate([carry[1][None], owns])  # [bars, 4, N, 2K]
        out = jnp.zeros((bars, start.shape[0], 5, start.shape[-1]))
        out = out.at[:, :, PIANO].set(pianos)
        out = out.at[:, :, jnp.array(HARMONY)].set(jnp.moveaxis(owns, 1, 2))
        return jnp.moveaxis(out, 0, 1)  # standardised

    def _decode_impl(self, params):
        """`[M, 5, 2K]` latent parameters -> `[5, M, T, P]` probabilities (each track its own decoder)."""
        z = jnp.moveaxis(params[..., :self.K], 1, 0)  # [5, M, K]
        logits = jax.vmap(lambda p, zi: nnx.merge(self.vae_def, p).decode(zi))(self.vae, z)
        return jax.nn.sigmoid(logits)

    def _encode_impl(self, x):
        """`[5, M, T, P]` -> `[M, 5, 2K]`."""
        return jnp.moveaxis(models.encode_stack(self.vae_def, self.vae, x), 0, 1)

    def _harmony_impl(self, piano, own0, key, sigma):
        """Harmony chain under a fixed piano (standardised), noise carried forward as in `_chain_impl`:
        piano `[bars, 2K]`, own0 `[4, 2K]` -> `[bars, 4, 2K]`."""
        def step(own, pk):
            p, k = pk
            own = self._harmony_step(p[None], own[:, None])[:, 0]
            own = jnp.clip(own + sigma * jax.random.normal(k, own.shape), -CLIP, CLIP)
            return own, own
        return jax.lax.scan(step, own0, (piano, jax.random.split(key, piano.shape[0])))[1]

    # ---- arrays ------------------------------------------------------------------------------------

    def encode(self, song) -> np.ndarray:
        """Multitrack or `[5, T, P]` roll -> latent parameters `[bars, 5, 2K]` (mu then logvar)."""
        roll = song if isinstance(song, np.ndarray) else render.from_multitrack(song, self.cfg.data)
        steps = self.cfg.data.steps
        n = roll.shape[1] // steps
        if n == 0:
            raise ValueError(f"song is shorter than one segment ({steps} steps)")
        x = roll[:, : n * steps].reshape(5, n, steps, -1).astype(np.float32)
        return np.asarray(self._encode(x))

    def decode_probs(self, params: np.ndarray) -> np.ndarray:
        """`[bars, 5, 2K]` -> `[5, bars*T, P]` note-on probabilities."""
        probs = np.asarray(self._decode(jnp.asarray(params)))  # [5, bars, T, P]
        return probs.reshape(5, -1, probs.shape[-1])

    def _binarize(self, probs, *, threshold, sample, key):
        if sample:
            return np.asarray(jax.random.uniform(key, probs.shape)) < probs
        th = self.thresholds if threshold is None else np.full(5, float(threshold), np.float32)
        return probs > th[:, None, None]

    def decode(self, params: np.ndarray, *, threshold: float | None = None, sample: bool = False, seed: int = 0,
               min_length: int = MIN_LENGTH, merge_gap: int = MERGE_GAP, tempo: float | None = None,
               name: str = "decoded"):
        """Latent parameters `[bars, 5, 2K]` -> Multitrack (thresholds calibrated on validation data by
        default; `sample=True` draws each cell from its Bernoulli instead)."""
        roll = self._binarize(self.decode_probs(params), threshold=threshold, sample=sample,
                              key=jax.random.key(seed))
        roll = render.postprocess(roll, min_length=min_length, merge_gap=merge_gap)
        return render.to_multitrack(roll, tempo=tempo or self.tempo, name=self._label(name), cfg=self.cfg.data)

    # ---- generation --------------------------------------------------------------------------------

    def sample_params(self, bars: int = 32, *, sigma: float = 0.5, seed: int = 0, num: int = 1,
                      start: np.ndarray | None = None) -> np.ndarray:
        """Latent parameters `[num, bars, 5, 2K]` from the chain (`bars` counts segments). The first comes
        from `start` (`[num, 5, 2K]`) or from a random real training bar where most of the band plays."""
        _check(bars, sigma)
        key = jax.random.key(seed)
        if start is None:
            pick = np.random.default_rng(seed).integers(len(self.start_bars), size=num)
            start = self.start_bars[pick]
        z = self._chain(jnp.asarray((start - self.mean) / self.std, jnp.float32), key, int(bars), jnp.float32(sigma))
        return np.asarray(z) * self.std + self.mean

    def sample(self, bars: int = 32, *, sigma: float = 0.5, seed: int = 0, num: int = 1, **decode_kw):
        """`num` new songs of `bars` bars, generated together in one compiled call. (The chain advances by
        segments; with segments of several bars the last one is cut to length.)"""
        _check(bars, sigma)
        d = self.cfg.data
        segments = -(-bars // d.segment_bars)
        params = self.sample_params(segments, sigma=sigma, seed=seed, num=num)
        flat = params.reshape((-1,) + params.shape[2:])
        roll = self._binarize(self.decode_probs(flat), threshold=decode_kw.get("threshold"),
                              sample=decode_kw.get("sample", False), key=jax.random.key(seed + 1))
        per_song = segments * d.steps
        length = bars * d.resolution * d.beats_per_bar
        songs = []
        for i in range(num):
            r = render.postprocess(roll[:, i * per_song:i * per_song + length],
                                   min_length=decode_kw.get("min_length", MIN_LENGTH),
                                   merge_gap=decode_kw.get("merge_gap", MERGE_GAP))
            songs.append(render.to_multitrack(r, tempo=decode_kw.get("tempo") or self.tempo,
                                              name=self._label(f"vaejax seed {seed} #{i}"), cfg=self.cfg.data))
        return songs

    def vary(self, song, *, sigma: float = 0.5, seed: int = 0, bars: int | None = None, **decode_kw):
        """A variation: encode every bar of `song`, add sigma noise to its latent parameters, decode."""
        params = self.encode(song)
        if bars is not None:
            _check(bars, sigma)
            params = params[:bars]
        _check(len(params), sigma)
        noisy = params + sigma * self.std * np.asarray(jax.random.normal(jax.random.key(seed), params.shape))
        return self.decode(noisy, seed=seed, name=f"variation sigma {sigma}", **decode_kw)

    def continue_song(self, song, bars: int = 32, *, sigma: float = 0.5, seed: int = 0, **decode_kw):
        """Roll the chain forward from the last bar of `song`."""
        start = self.encode(song)[-1:]
        params = self.sample_params(bars, sigma=sigma, seed=seed, num=1, start=start)[0]
        return self.decode(params, seed=seed, name="continuation", **decode_kw)

    def arrange(self, piano, *, sigma: float = 0.0, seed: int = 0, **decode_kw):
        """Keep a piano part exactly and generate Drums, Guitar, Bass and Strings bar by bar through the
        HarmonyNNs. `piano`: a Multitrack (its Piano track, or its only track) or a `[T, P]` bool roll."""
        cfg = self.cfg.data
        if isinstance(piano, np.ndarray):
            piano_roll = piano.astype(bool)
        else:
            tracks = piano.tracks
            pick = 1 if len(tracks) == 5 else 0
            piano_roll = render.from_multitrack(type(piano)(resolution=piano.resolution, tracks=[tracks[pick]]), cfg)[0]
        steps = cfg.steps
        n = piano_roll.shape[0] // steps
        if n == 0:
            raise ValueError(f"piano part is shorter than one segment ({steps} steps)")
        _check(n, sigma)
        roll = np.zeros((5, n * steps, cfg.num_pitches), bool)
        roll[PIANO] = piano_roll[: n * steps]
        h = np.array(HARMONY)
        p = self.encode(roll)[:, PIANO]  # [n, 2K]
        ps = (p - self.mean[PIANO]) / self.std[PIANO]
        rng = np.random.default_rng(seed)
        own0 = (self.start_bars[rng.integers(len(self.start_bars))][h] - self.mean[h]) / self.std[h]
        own = np.asarray(self._harm(jnp.asarray(ps, jnp.float32), jnp.asarray(own0, jnp.float32),
                                    jax.random.key(seed), jnp.float32(sigma)))  # [n, 4, 2K], standardised
        params = np.zeros((n, 5, p.shape[-1]), np.float32)
        params[:, PIANO] = p
        params[:, h] = own * self.std[h] + self.mean[h]
        mt = self.decode(params, seed=seed, name="arrangement", **decode_kw)
        out = render.from_multitrack(mt, cfg)
        out[PIANO] = roll[PIANO]  # the given part, untouched
        return render.to_multitrack(out, tempo=decode_kw.get("tempo") or self.tempo, name=self._label("arrangement"),
                                    cfg=cfg)

    def interpolate(self, song_a, song_b, *, steps: int = 5, bars: int = 4, **decode_kw):
        """`steps` songs moving linearly in latent space from song_a's first `bars` bars to song_b's."""
        a, b = self.encode(song_a)[:bars], self.encode(song_b)[:bars]
        n = min(len(a), len(b))
        return [self.decode((1 - w) * a[:n] + w * b[:n], name=f"interpolation {w:.2f}", **decode_kw)
                for w in np.linspace(0.0, 1.0, steps)]


def load(run_dir: str | None = None) -> TrainedModel:
    """Load a trained run (default: the latest one trained in this folder)."""
    if run_dir is None:
        from vaejax.cli import latest_run
        run_dir = latest_run()
        if run_dir is None:
            raise NoCheckpoint("no trained run found (runs/LATEST); train one with `python train.py`")
    return TrainedModel(run_dir)
