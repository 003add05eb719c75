"""Generation from a trained model: `vaejax.load(...)` -> `TrainedModel`.

The chain: the piano's latent parameters (mu, logvar) advance bar by bar through MelodyNN, each harmony
track's through its HarmonyNN from (piano at t+1, own at t); Gaussian noise of scale sigma is added to
the parameters at every bar (and carried forward); each track decodes its mu with its own decoder.
Sigma and the chain state are in standardised units (`vaejax.latents`): sigma 1 moves every parameter by
about one standard deviation of the data.

Loading needs the networks' structure and their weights only: no training code, no optimiser state.
"""

from __future__ import annotations

import copy
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from vaejax import models, music, packaging, render
from vaejax import prior as prior_lib
from vaejax.config import (
    DRUM_KIT,
    DRUMS,
    GENERATION_BUDGET_MB,
    HARMONY,
    HARMONY_GUIDANCE,
    HARMONY_WEIGHTS,
    MAX_BARS,
    MERGE_GAP,
    MIN_LENGTH,
    PIANO,
    PRIOR,
    PRIORS,
    SIGMA,
    SINGLE_LINE,
    SUSTAIN_AGES,
    TEMPO,
    TRACKS,
    check_generation,
    generation_mb,
)
from vaejax.latents import CLIP, LatentNorm, Latents, add_noise, harmony_input
from vaejax.runs import NoCheckpoint, RunFolder, latest_run

BUCKET = 16
"""Given parts are padded to a multiple of this many segments (the chains are causal: padding at the end
changes nothing before it), so that parts of many lengths share a few compiled programs."""
DECODE_CHUNK = 256
"""Segments decoded (or encoded) in one compiled call: longer songs and many songs go through in chunks of
this many, so that the decoders' working memory (about 1 MB per segment) does not grow with length."""
DENSITY = "data"
"""How often an arrangement's added tracks play by default (`TrainedModel.arrange`, `density_target`)."""
DENSITY_ROUNDS = 8
"""Draws `density_bias` may take to find the plays bias for asked shares of bars."""
DENSITY_RANGE = 8.0
"""The largest plays-logit bias `density_bias` tries, either way."""
DENSITY_DRAWS = 4
"""Songs drawn side by side (seeded) per round of `density_bias`: their mean share steers it."""
DENSITY_BARS = 256
"""`arrange` finds the plays bias on at most this many first segments of a part (a long part would otherwise
be drawn 32 times whole): the bias is one number per track for the whole song."""


class TrainedModel:
    """Five VAEs, MelodyNN and four HarmonyNNs restored from a run folder or a packaged model folder.

    Every generating method returns `pypianoroll.Multitrack`s (Drums, Piano, Guitar, Bass, Strings); see
    `vaejax.render` to write MIDI, plot and listen.
    """

    def __init__(self, run_dir: str):
        run = RunFolder(run_dir)
        if not run.trained:
            raise NoCheckpoint(
                f"{run_dir}: no trained model here; train one with `python train.py` "
                f"(or `python train.py --data PATH` for your data)"
            )
        self.cfg = cfg = run.read_config()
        self.run_dir = run_dir
        # module structure only (no initialisation is computed); the weights are restored into it
        self.vae_def, vae_t = nnx.split(
            nnx.eval_shape(lambda: models.vae_stack(cfg.model, cfg.data, jax.random.key(0)))
        )
        self.mel_def, mel_t = nnx.split(nnx.eval_shape(lambda: models.melody_net(cfg.model, jax.random.key(0))))
        self.har_def, har_t = nnx.split(nnx.eval_shape(lambda: models.harmony_stack(cfg.model, jax.random.key(0))))
        if run.packaged:
            nets, self.start_bars = packaging.read_weights(run, {"vae": vae_t, "melody": mel_t, "harmony": har_t})
            self.vae, self.mel, self.har = nets["vae"], nets["melody"], nets["harmony"]
        else:
            from vaejax.checkpoint import restore_params  # Orbax: only for training runs

            self.vae, self.mel, self.har = (
                restore_params(run.ckpt(stage), t)
                for stage, t in (("vae", vae_t), ("melody", mel_t), ("harmony", har_t))
            )
            self.start_bars = run.read_start_bars()
        self.stats = run.read_stats()
        run.check_stats(self.stats, cfg, self.start_bars)
        th = np.asarray(self.stats["thresholds"], np.float32)
        self.thresholds = th[:, None] if th.ndim == 1 else th  # [5, channels]: sustain (, onset (, tail))
        cells = cfg.data.steps // models.model_sub(cfg.model, cfg.data)
        cuts = self.stats.get("onset_thresholds")
        self.onset_cuts = np.asarray(cuts, np.float32) if cuts is not None else np.full((5, cells), np.nan, np.float32)
        """Per track and grid cell onset thresholds (`models.decode_notes(onset_cuts=...)`)."""
        self.per_cell_onsets = cuts is not None
        """Decode with `onset_cuts` (False: one onset threshold per track, as the earlier design)."""
        self.count_scale = np.asarray(self.stats.get("count_scale", np.ones(5)), np.float32)
        """Factor on the number of counted notes of encoded latents (reconstructions, variations, the chain),
        per track: `calibration.reconstruction_decoding` sets it with `onset_cuts` and the sustain factor so
        that reconstructed passages start as many notes, where in the bar, and hold them as long, as real ones
        (1 where not calibrated)."""
        gen_cuts = self.stats.get("prior_onset_thresholds")
        self.prior_onset_cuts = self.onset_cuts if gen_cuts is None else np.asarray(gen_cuts, np.float32)
        self.prior_count_scale = np.asarray(self.stats.get("prior_count_scale", np.ones(5)), np.float32)
        self.prior_sustain = np.asarray(self.stats.get("prior_sustain", self.thresholds[:, 0]), np.float32)
        self.sustain_ages = _ages(self.stats.get("sustain_ages"), self.thresholds[:, 0])
        self.prior_sustain_ages = _ages(self.stats.get("prior_sustain_ages"), self.prior_sustain)
        """`[5, SUSTAIN_AGES]` sustain factors per age of a note (`models.decode_notes(sustain_ages=...)`)
        for encoded latents and for the prior's bars, calibrated so that notes last as long as real ones, as
        often one sixteenth, two, three or four, or longer (each row the track's one factor where not)."""
        self.spread = np.asarray(self.stats.get("spread", np.ones(5)), np.float32)
        self.prior_spread = np.asarray(self.stats.get("prior_spread", self.spread), np.float32)
        """Decoding of bars drawn from the learned prior (`calibration.prior_decoding`): per track and cell
        onset thresholds and a factor on the number of notes, calibrated so that sampled bars start as many
        notes, where in the bar, as real bars do. The prior's latents are less sharp than encoded ones, and
        decoders place the notes of a less certain latent on the beats; without a calibration of its own
        (as before it existed) these are the reconstruction's thresholds and 1. `prior_sustain` `[5]`: the
        sustain factor of those bars' notes (their sustain probabilities fall faster; the reconstruction's
        factor where not calibrated). `spread` / `prior_spread` `[5]`: how counted notes are spread over
        pitches (`models.decode_notes(spread=...)`; 1, plain ranking, where not calibrated)."""
        grid = bool(cfg.model.grid)
        self.min_length = 0 if grid else MIN_LENGTH
        self.merge_gap = 0 if grid else MERGE_GAP
        """Post-processing defaults: decoders on a grid write whole notes (none to drop or join), the earlier
        design's notes are cleaned of fragments (`render.postprocess`)."""
        self.synthetic = bool(self.stats.get("data", {}).get("synthetic", False))
        """True when trained on the synthetic demo corpus: generated names and pictures say so."""
        k2 = self.start_bars.shape[-1]
        self.norm = (
            LatentNorm(
                np.asarray(self.stats["latent_mean"], np.float32), np.asarray(self.stats["latent_std"], np.float32)
            )
            if "latent_mean" in self.stats
            else LatentNorm.identity(k2)
        )
        self.tempo = TEMPO
        self.harmony_guidance = float(self.stats.get("harmony_guidance", HARMONY_GUIDANCE))
        """Scale on the conditioned decoders' harmonic bias (`models.VAE.harmony`) when generating: above 1
        the band leans harder on the piano's pitch classes than on its own latents (as classifier-free
        guidance does); 1 decodes as trained. Counted notes (`count_notes`) are as many as the decoders as
        trained expect: guidance moves them onto the piano's harmony without adding any."""
        shares = self.stats.get("band_shares")
        self.band_shares = None if shares is None else np.asarray(shares, np.float64)
        """Share of bars in which each track plays in the training passages (`density="data"`), or None."""
        self.harmony_weights = np.asarray(self.stats.get("harmony_weights", HARMONY_WEIGHTS), np.float32)
        """How strongly each track takes the guidance (`config.HARMONY_WEIGHTS`; `track_guidance`)."""
        self.memory_mb = GENERATION_BUDGET_MB
        """Memory one generating call may use (MiB): a request whose songs alone would not fit is refused."""
        self.count_notes = cfg.model.onsets
        """Decoders with an onset map start as many notes as they expect (`models.decode_notes(count=True)`;
        on a grid, ranked against each cell's calibrated threshold); False decodes at the calibrated onset
        thresholds instead."""
        self.single_line = line_tracks(self.stats.get("single_line", SINGLE_LINE))
        """Tracks decoded as one line (`models.decode_notes(line=True)`): where notes start, the likeliest
        starts and ends the note before it, octave doublings kept (`config.SINGLE_LINE`: the bass)."""
        self.drum_kit = kit_size(self.stats.get("drum_kit", DRUM_KIT))
        """Pieces a generated song's drums keep (`music.keep_kit`, `config.DRUM_KIT`: the 8 it plays most); 0
        keeps every piece. Reconstructions and variations keep theirs."""
        self._load_prior(run)
        self._chain = jax.jit(self._chain_impl, static_argnums=(2,))
        self._rolls = jax.jit(self._rolls_impl, static_argnames=("sample", "count", "cells", "guided"))
        self._encode = jax.jit(self._encode_impl)
        self._harm = jax.jit(self._harmony_impl)
        self._frozen = True

    OPTIONS = ("harmony_guidance", "memory_mb", "count_notes", "tempo", "single_line", "drum_kit")
    """Generation settings that `with_options` changes; everything else is fixed by the run folder."""

    def with_options(self, **options) -> TrainedModel:
        """This model with other generation settings (`OPTIONS`: `harmony_guidance`, `memory_mb`,
        `count_notes`, `tempo`, `single_line`, `drum_kit`; see their descriptions in `__init__`): a new facade
        sharing the weights and the compiled kernels, so it is cheap; the model it came from is unchanged."""
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            raise TypeError(
                f"unknown option(s) {', '.join(unknown)}; a TrainedModel's options are {', '.join(self.OPTIONS)}"
            )
        check_generation(  # the limits sample.py and the studio apply to the same settings
            harmony=options.get("harmony_guidance"), memory_mb=options.get("memory_mb"), tempo=options.get("tempo")
        )
        if "count_notes" in options and not isinstance(options["count_notes"], bool):
            raise ValueError(f"count_notes must be True or False, not {options['count_notes']!r}")
        if "single_line" in options:
            options["single_line"] = line_tracks(options["single_line"])
        if "drum_kit" in options:
            options["drum_kit"] = kit_size(options["drum_kit"])
        new = copy.copy(self)
        for name, value in options.items():
            object.__setattr__(new, name, float(value) if name in ("harmony_guidance", "tempo") else value)
        return new

    def track_guidance(self, guidance: float | None = None) -> np.ndarray:
        """`[5]` scales on the tracks' harmonic bias for an overall `guidance` (the model's
        `harmony_guidance` where None): 1 + (guidance - 1) x `harmony_weights`, at least 0."""
        g = self.harmony_guidance if guidance is None else float(guidance)
        return np.maximum(0.0, 1.0 + (g - 1.0) * self.harmony_weights).astype(np.float32)

    def with_decoding(self, onset_cuts, count_scale, sustain=None, spread=None, *, drawn: bool = False) -> TrainedModel:
        """This model decoding with other calibration: per track and cell onset thresholds `[5, cells]`, count
        factors `[5]`, sustain factors `[5]` and pitch spreads `[5]` (None: the reconstruction's), for
        encoded latents (`onset_cuts`, `count_scale`, `thresholds[:, 0]`, `spread`) or, `drawn=True`, for the
        bars the learned prior draws (`prior_onset_cuts`, `prior_count_scale`, `prior_sustain`,
        `prior_spread`). `sustain` may also be `[5, SUSTAIN_AGES]`, a factor per age of a note
        (`sustain_ages`; `[5]` uses one factor at every age). `training.calibration` finds them."""
        cuts = np.asarray(onset_cuts, np.float32)
        scale = np.asarray(count_scale, np.float32)
        sus = np.asarray(self.sustain_ages if sustain is None else sustain, np.float32)
        spr = np.asarray(self.spread if spread is None else spread, np.float32)
        if (
            cuts.shape != self.onset_cuts.shape
            or {scale.shape, spr.shape} != {(5,)}
            or sus.shape not in ((5,), (5, SUSTAIN_AGES))
        ):
            raise ValueError(
                f"{'prior ' if drawn else ''}decoding of shapes {cuts.shape}, {scale.shape}, {sus.shape} and "
                f"{spr.shape}, not {self.onset_cuts.shape}, (5,), (5,) or (5, {SUSTAIN_AGES}), and (5,)"
            )
        ages = _ages(sus if sus.ndim == 2 else None, sus if sus.ndim == 1 else sus[:, -1])
        if sustain is None and drawn:
            ages = self.prior_sustain_ages
        if not np.all((spr > 0) & (spr <= 1)):
            raise ValueError(f"pitch spread must lie in (0, 1], got {spr.tolist()}")
        new = copy.copy(self)
        if drawn:
            object.__setattr__(new, "prior_onset_cuts", cuts)
            object.__setattr__(new, "prior_count_scale", scale)
            object.__setattr__(new, "prior_sustain", ages[:, -1].copy())
            object.__setattr__(new, "prior_sustain_ages", ages)
            object.__setattr__(new, "prior_spread", spr)
        else:
            th = self.thresholds.copy()
            th[:, 0] = ages[:, -1]
            object.__setattr__(new, "sustain_ages", ages)
            object.__setattr__(new, "onset_cuts", cuts)
            object.__setattr__(new, "count_scale", scale)
            object.__setattr__(new, "thresholds", th)
            object.__setattr__(new, "spread", spr)
        return new

    def with_prior_decoding(self, onset_cuts, count_scale, sustain=None, spread=None) -> TrainedModel:
        """`with_decoding(..., drawn=True)`: the learned prior's bars decoded with other calibration."""
        return self.with_decoding(onset_cuts, count_scale, sustain, spread, drawn=True)

    def __setattr__(self, name, value):
        if self.__dict__.get("_frozen"):
            hint = (
                f"; model.with_options({name}=...) returns a model with another setting" if name in self.OPTIONS else ""
            )
            raise AttributeError(f"a TrainedModel does not change once loaded (setting {name!r}){hint}")
        object.__setattr__(self, name, value)

    # ---- the prior over bar sequences (vaejax.prior) ---------------------------------------------------

    def _load_prior(self, run: RunFolder) -> None:
        """The learned prior, when the folder carries one (packaged weights, or a `prior` stage checkpoint);
        else `self.prior` is None and generation uses the chain."""
        k = self.cfg.model.latent
        templates = {
            name: nnx.split(
                nnx.eval_shape(
                    lambda b=(name == "band"): prior_lib.prior_net(self.cfg.prior, k, jax.random.key(0), band=b)
                )
            )
            for name in ("song", "band")
        }
        self.prior_defs = {name: gd for name, (gd, _) in templates.items()}
        like = {name: t for name, (_, t) in templates.items()}
        self.prior = packaging.read_prior(run, like) if run.packaged else None
        if self.prior is None and os.path.isdir(run.ckpt("prior")):
            from vaejax.checkpoint import restore_params  # Orbax: only for training runs

            if not self.cfg.prior.band:
                like.pop("band")
            self.prior = restore_params(run.ckpt("prior"), like)
        bank = self.stats.get("prior_styles")
        self._style_bank = np.asarray(bank, np.float32) if bank else None
        """Song-level codes of real training passages a styled prior draws new songs' codes from, or None."""
        self._prior_windows = {
            name: jax.jit(lambda p, *a, gd=gd: prior_lib.sample_window(gd, p, *a))
            for name, gd in self.prior_defs.items()
        }

    def prior_kind(self, prior: str | None = None) -> str:
        """The prior generation uses: `prior` ("chain" or "transformer"), by default `config.PRIOR` where the
        model carries a learned prior, else the chain."""
        if prior is None:
            return PRIOR if self.prior is not None else "chain"
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)}, got {prior!r}")
        if prior == "transformer" and self.prior is None:
            raise ValueError(
                f"{self.run_dir} carries no learned prior; train one with `python train.py --run "
                f"{self.run_dir} --stage prior` or use prior='chain'"
            )
        return prior

    def _prior_draw(
        self,
        which: str,
        num: int,
        bars: int,
        *,
        sigma: float,
        seed: int,
        prefix=None,
        prefix_plays=None,
        piano=None,
        phase0: int = 0,
        plays_bias=None,
    ):
        """Standardised means `[num, bars, 5, K]` and plays `[num, bars, 5]` drawn from the prior `which`
        ("song" or "band") at temperature `prior.temperature_of(sigma)`. New songs start with the piano
        playing, as the chain starts from a real bar where it plays (most songs open with an intro).
        `plays_bias` (`[5]`) is added to the logits of the plays bits drawn (`density_bias`)."""
        params = self.prior[which]
        given = None
        if prefix is None and piano is None:
            given = np.full((num, bars, len(TRACKS)), np.nan, np.float32)
            given[:, 0, PIANO] = 1.0
        window = lambda *a: self._prior_windows[which](params, *a)  # noqa: E731
        style = self.prior_styles(num, seed, prefix, prefix_plays) if which == "song" else None
        return prior_lib.generate(
            window,
            jax.random.key(seed),
            num=num,
            bars=bars,
            latent=self.K,
            context=self.cfg.prior.context,
            temperature=prior_lib.temperature_of(sigma),
            prefix=prefix,
            prefix_plays=prefix_plays,
            piano=piano,
            phase0=phase0,
            given=given,
            plays_bias=plays_bias,
            style=style,
        )

    def prior_styles(self, num: int, seed: int, prefix=None, prefix_plays=None) -> np.ndarray | None:
        """Song-level codes `[num, 5 (K + 1)]` for the songs a styled song prior draws (None for a prior
        without them, `PriorConfig.style`): new songs take codes of real training passages from the run's
        bank (`prior_styles` in stats.json), drawn with `seed`; a continued song (`prefix`, `prefix_plays`:
        its standardised means and plays bits) keeps its own where it is a whole context long, else takes
        the bank's code nearest its own."""
        if not self.cfg.prior.style:
            return None
        bank = self._style_bank
        if bank is None:
            raise ValueError(
                f"{self.run_dir}: its prior reads song-level codes but stats.json carries none (prior_styles); "
                f"train the prior again (`train.py --run {self.run_dir} --stage prior`)"
            )
        if prefix is None:
            return bank[np.random.default_rng([seed, 11]).integers(len(bank), size=num)]
        own = np.asarray(prior_lib.style_of(jnp.asarray(prefix, jnp.float32), jnp.asarray(prefix_plays, jnp.float32)))
        if prefix.shape[1] >= self.cfg.prior.context:
            return own
        return bank[np.argmin(((own[:, None] - bank[None]) ** 2).sum(-1), 1)]

    def density_target(self, density, tracks=TRACKS) -> np.ndarray:
        """`density_target` (module function) with this model's `band_shares`."""
        return density_target(density, tracks, self.band_shares)

    def _prior_latents(self, z_std) -> Latents:
        """Standardised means `[..., 5, K]` -> latent parameters in data units (log variances at the
        training bars' mean: decoders read the means only)."""
        k = self.K
        mu = z_std * self.norm.std[:, :k] + self.norm.mean[:, :k]
        return Latents(mu.astype(np.float32), np.broadcast_to(self.norm.mean[:, k:], mu.shape).astype(np.float32))

    def _standardized_means(self, z: Latents) -> np.ndarray:
        k = self.K
        return np.clip((np.asarray(z.mu) - self.norm.mean[:, :k]) / self.norm.std[:, :k], -CLIP, CLIP)

    def _prior_rolls(
        self, z_std, plays, *, piano=None, sustain=None, sample=False, seed=0, kit_counts=None
    ) -> np.ndarray:
        """Bars drawn from the prior -> `[5, num, bars*T, P]` bool rolls, the decoders' raw output; a track
        whose plays bit is off rests in that bar; each song's drums keep their kit (`with_kit`)."""
        num, bars = plays.shape[:2]
        lat = self._prior_latents(z_std.reshape((-1,) + z_std.shape[2:]))
        roll = self.rolls(lat, sustain=sustain, sample=sample, seed=seed, piano=piano, plays_latents=lat, drawn=True)
        d = self.cfg.data
        roll = roll.reshape(5, num, bars, d.steps, -1) & np.moveaxis(plays, 2, 0)[..., None, None]
        return self.with_kit(roll.reshape(5, num, bars * d.steps, -1), counts=kit_counts)

    def with_kit(self, songs: np.ndarray, *, counts=None) -> np.ndarray:
        """Generated songs `[5, num, steps, P]` (or one, `[5, steps, P]`) with each song's drums cut to the
        model's `drum_kit` pieces (`music.keep_kit`; `counts`: note counts per drum pitch of a song being
        continued, so that its kit stays)."""
        if not self.drum_kit:
            return songs
        out = np.array(songs, bool)
        drums = out[DRUMS] if out.ndim == 4 else out[DRUMS][None]
        for i in range(len(drums)):
            drums[i] = music.keep_kit(drums[i], self.drum_kit, counts=counts)
        return out

    def prior_bars(
        self,
        bars: int = 32,
        *,
        sigma: float = SIGMA,
        seed: int = 0,
        num: int = 1,
        prior: str | None = None,
        drawn: tuple | None = None,
    ) -> np.ndarray:
        """`num` new songs as raw bars `[5, num, bars, T, P]` (bool, the decoders' own notes before any
        post-processing, in the model's key) from the prior `prior` (see `prior_kind`). `drawn`: what the
        learned prior drew for these arguments (`prior_draws`), to decode them again without drawing them
        again (the decoding's calibration decodes the same songs many times)."""
        check_generation(bars=bars, sigma=sigma, num=num)
        d = self.cfg.data
        segments = -(-bars // d.segment_bars)
        if self.prior_kind(prior) == "transformer":
            z, plays = self.prior_draws(bars, sigma=sigma, seed=seed, num=num) if drawn is None else drawn
            roll = self._prior_rolls(z, plays, seed=seed + 1)
        else:
            z, means = self.sample_latents(segments, sigma=sigma, seed=seed, num=num, with_means=True)
            flat = lambda a: a.map(lambda x: x.reshape((-1,) + x.shape[2:]))  # noqa: E731
            roll = self.rolls(flat(z), seed=seed + 1, plays_latents=flat(means)).reshape(5, num, segments * d.steps, -1)
            roll = self.with_kit(roll)
        per_bar = d.resolution * d.beats_per_bar
        return roll[:, :, : bars * per_bar].reshape(5, num, bars, per_bar, -1)

    def prior_draws(self, bars: int = 32, *, sigma: float = SIGMA, seed: int = 0, num: int = 1) -> tuple:
        """What the learned prior draws for `prior_bars` with these arguments: standardised means
        `[num, segments, 5, K]` and plays bits `[num, segments, 5]`, before any decoding."""
        return self._prior_draw("song", num, -(-bars // self.cfg.data.segment_bars), sigma=sigma, seed=seed)

    def _label(self, name: str) -> str:
        return f"{name} (model trained on SYNTHETIC demo data)" if self.synthetic and "SYNTHETIC" not in name else name

    @property
    def K(self) -> int:
        return self.cfg.model.latent

    # ---- pure pieces (standardised latent parameters, the chains' layout [..., 2K]) ----------------

    def _melody(self, p):
        return nnx.merge(self.mel_def, self.mel)(p)

    def _harmony_step(self, piano_next, own):
        """piano_next `[N, 2K]`, own `[4, N, 2K]` -> own at t+1 `[4, N, 2K]`."""
        return jax.vmap(lambda p, xi: nnx.merge(self.har_def, p)(xi))(self.har, harmony_input(piano_next, own))

    def _chain_impl(self, start, key, bars: int, sigma):
        """Standardised start `[N, 5, 2K]` -> standardised latent parameters `[N, bars, 5, 2K]`, noisy, and the
        chains' predictions before the noise was added (the same shape)."""
        h = jnp.array(HARMONY)

        def step(carry, k):
            piano, own = carry
            k1, k2 = jax.random.split(k)
            piano_mean = self._melody(piano)
            piano = add_noise(piano_mean, sigma, k1)
            own_mean = self._harmony_step(piano, own)
            own = add_noise(own_mean, sigma, k2)
            return (piano, own), (piano, own, piano_mean, own_mean)

        k0, ks = jax.random.split(key)
        first = add_noise(start, sigma, k0)
        carry = (first[:, PIANO], jnp.moveaxis(first[:, h], 1, 0))
        _, (pianos, owns, piano_means, own_means) = jax.lax.scan(step, carry, jax.random.split(ks, bars - 1))

        def assemble(p0, own0, p, own):
            p = jnp.concatenate([p0[None], p])  # [bars, N, 2K]
            own = jnp.concatenate([own0[None], own])  # [bars, 4, N, 2K]
            out = jnp.zeros((bars, start.shape[0], 5, start.shape[-1]))
            out = out.at[:, :, PIANO].set(p)
            out = out.at[:, :, h].set(jnp.moveaxis(own, 1, 2))
            return jnp.moveaxis(out, 0, 1)

        noisy = assemble(carry[0], carry[1], pianos, owns)
        means = assemble(start[:, PIANO], jnp.moveaxis(start[:, h], 1, 0), piano_means, own_means)
        return noisy, means

    def _harmony_impl(self, piano, own0, key, sigma):
        """Harmony chain under a fixed piano (standardised), noise carried forward as in `_chain_impl`:
        piano `[bars, 2K]`, own0 `[4, 2K]` -> (noisy, predicted before noise), each `[bars, 4, 2K]`."""

        def step(own, pk):
            p, k = pk
            mean = self._harmony_step(p[None], own[:, None])[:, 0]
            own = add_noise(mean, sigma, k)
            return own, (own, mean)

        return jax.lax.scan(step, own0, (piano, jax.random.split(key, piano.shape[0])))[1]

    def _rolls_impl(
        self,
        latents,
        thresholds,
        sustain_ages,
        onset_cuts,
        count_scale,
        spread,
        key,
        piano=None,
        plays_latents=None,
        guidance=1.0,
        lines=False,
        *,
        sample: bool = False,
        count: bool = False,
        cells: bool = False,
        guided: bool = True,
    ):
        """`[M, 5, 2K]` latent parameters -> `[5, M, T, P]` bool rolls. The piano decodes first (or is
        given, `[M, T, P]`); the other tracks decode conditioned on its pitch classes, each with its own
        decoder; `sample` draws cells instead of thresholding. Whether a track plays in a segment is
        decided from `plays_latents` when given (the chains' predictions before noise: sigma varies what
        is played, not whether), else from `latents`. `guided`: False where every track's guidance is 1
        (reconstructions), so the band decodes once, as trained."""
        d = self.cfg.data
        vae = self.vae
        guided = guided and self.cfg.model.condition
        if guided:
            vae = jax.tree.map(lambda a: a, vae)
            g = jnp.asarray(guidance, jnp.float32)  # [] or one scale per track, [5]
            vae["harmony"] = jax.tree.map(lambda a: a * g.reshape(g.shape + (1,) * (a.ndim - g.ndim)), vae["harmony"])
        z = jnp.moveaxis(latents[..., : self.K], 1, 0)  # [5, M, K]: decoders read mu
        zp = z if plays_latents is None else jnp.moveaxis(plays_latents[..., : self.K], 1, 0)

        lines = jnp.zeros(len(TRACKS), bool) if lines is False else lines

        def notes(probs, plays, th, ag, oc, cs, sp, k, ln, cp=None, pf=None):
            kc, kp = jax.random.split(k)
            draws = jax.random.uniform(kc, probs.shape) if sample else None
            cut = jax.random.uniform(kp, plays.shape) if sample else 0.5
            oc = oc if cells else None
            return models.decode_notes(
                probs,
                th,
                draws,
                count=count,
                plays=plays,
                plays_cut=cut,
                sub=models.model_sub(self.cfg.model, d),
                onset_cuts=oc,
                count_scale=cs,
                spread=sp,
                count_probs=cp,
                sustain_ages=ag,
                line=ln,
                prefer=pf,
            )

        kp, kb = jax.random.split(key)
        if piano is None:
            pvae = nnx.merge(self.vae_def, jax.tree.map(lambda a: a[PIANO], vae))
            none = jnp.zeros((z.shape[1], models.condition_dim(d)))
            logits, plays = pvae.decode_all(z[PIANO], none)
            plays = jnp.ones(z.shape[1]) if plays is None else jax.nn.sigmoid(pvae.decode_all(zp[PIANO], none)[1])
            piano = notes(
                jax.nn.sigmoid(logits),
                plays,
                thresholds[PIANO],
                sustain_ages[PIANO],
                onset_cuts[PIANO],
                count_scale[PIANO],
                spread[PIANO],
                kp,
                lines[PIANO],
            )
        c = models.conditions(piano.astype(jnp.float32), d)
        probs, plays = models.decode_stack(self.vae_def, vae, z, c)
        if plays_latents is not None:
            plays = models.decode_stack(self.vae_def, vae, zp, c)[1]
        keys = jax.random.split(kb, len(TRACKS))
        plain = None
        if guided and count and not sample:
            # guidance chooses which pitches play; the decoders as trained, how many notes start (scaling the
            # harmonic bias raises every chord tone's onset probability, and counted from the guided maps
            # the band would start more notes the harder it is guided)
            plain = models.decode_stack(self.vae_def, self.vae, z, c)[0]
        cells = probs.shape[-2]
        chord = c.reshape(c.shape[0], c.shape[1], d.beats, 12)  # [5, M, beats, 12]
        chord = jnp.repeat(chord, cells // d.beats, axis=2)  # [5, M, cells, 12]
        pcs = (jnp.arange(probs.shape[-1]) + d.lowest_pitch) % 12
        prefer = chord[..., pcs]  # [5, M, cells, P]: the piano sounds this pitch class in the cell's beat
        rolls = jax.vmap(notes)(
            probs, plays, thresholds, sustain_ages, onset_cuts, count_scale, spread, keys, lines, plain, prefer
        )
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
        return song if isinstance(song, np.ndarray) else music.from_multitrack(song, self.cfg.data)

    def encode_bars(self, bars: np.ndarray) -> Latents:
        """Segments `[5, M, T, P]` as they are (no key change) -> latent parameters `[M, 5]` (in chunks of
        `DECODE_CHUNK` segments)."""
        m = bars.shape[1]
        if m <= DECODE_CHUNK:
            return Latents.from_concat(np.asarray(self._encode(jnp.asarray(bars, jnp.float32))))
        parts = []
        for lo in range(0, m, DECODE_CHUNK):
            part = _padded(bars[:, lo : lo + DECODE_CHUNK], DECODE_CHUNK, axis=1)
            parts.append(np.asarray(self._encode(jnp.asarray(part, jnp.float32)))[: min(DECODE_CHUNK, m - lo)])
        return Latents.from_concat(np.concatenate(parts))

    def _encode_roll(self, roll: np.ndarray) -> Latents:
        steps = self.cfg.data.steps
        n = roll.shape[1] // steps
        if n == 0:
            raise ValueError(f"song is shorter than one segment ({steps} steps)")
        return self.encode_bars(roll[:, : n * steps].reshape(5, n, steps, -1))

    def encode(self, song) -> Latents:
        """Multitrack or `[5, T, P]` roll -> latent parameters `[bars, 5]`, in the model's key (a
        key-normalised model first transposes the song to C major / A minor)."""
        return self._encode_roll(self._in_model_key(self._roll_of(song))[0])

    def rolls(
        self,
        latents,
        *,
        sustain: float | None = None,
        sample: bool = False,
        seed: int = 0,
        piano: np.ndarray | None = None,
        plays_latents=None,
        drawn: bool = False,
        guidance: float | None = None,
        single_line=None,
    ) -> np.ndarray:
        """Latent parameters `[M, 5]` (`Latents`, or the `[M, 5, 2K]` layout) -> `[5, M*T, P]` bool rolls: the
        decoders' raw output, notes decoded at the calibrated thresholds (`sustain`, in (0, 1), replaces the
        calibrated sustain factor: a note lasts while its sustain probability stays above this share of its
        value where it started), before any post-processing. `piano` (`[M*T, P]`) fixes the piano part that the band
        follows; `plays_latents` (like `latents`) decide which tracks play in which segments. `drawn`: the
        latents were drawn from the learned prior (decoded with `prior_onset_cuts`, `prior_count_scale` and
        `prior_sustain`). `guidance`: the overall harmony guidance (`track_guidance`; the model's
        `harmony_guidance` where None, 1 decodes the band as trained). `single_line`: the tracks decoded as one
        line (the model's `single_line` where None; reconstructions pass `()`: a real bass's own latents
        decode to its line, and the rule would only drop the overlaps and doublings real parts have)."""
        lines = self.single_line if single_line is None else line_tracks(single_line)
        th = self.thresholds.copy()
        ages = self.prior_sustain_ages if drawn else self.sustain_ages
        if sustain is not None:
            th[:, 0] = float(sustain)
            ages = np.full_like(ages, float(sustain))
        elif drawn:
            th[:, 0] = self.prior_sustain
        lat = np.asarray(Latents.of(latents).concat(), np.float32)
        scales = self.track_guidance(guidance)
        m = lat.shape[0]
        p = None if piano is None else np.asarray(piano).reshape(m, self.cfg.data.steps, -1)
        pl = None if plays_latents is None else np.asarray(Latents.of(plays_latents).concat(), np.float32)
        key = jax.random.key(seed)

        def run(lat, p, pl, key):
            return np.asarray(
                self._rolls(
                    jnp.asarray(lat),
                    jnp.asarray(th),
                    jnp.asarray(ages),
                    jnp.asarray(self.prior_onset_cuts if drawn and self.count_notes else self.onset_cuts),
                    jnp.asarray(self.prior_count_scale if drawn else self.count_scale),
                    jnp.asarray(self.prior_spread if drawn else self.spread),
                    key,
                    None if p is None else jnp.asarray(p),
                    None if pl is None else jnp.asarray(pl),
                    jnp.asarray(scales),
                    jnp.asarray([t in lines for t in TRACKS]),
                    sample=sample,
                    count=bool(self.count_notes),
                    cells=bool(self.per_cell_onsets),
                    guided=bool((scales != 1).any()),
                )
            )

        if m <= DECODE_CHUNK:
            out = run(lat, p, pl, key)
        else:  # long or many songs: fixed-size chunks (one compiled program), a key per chunk
            out = np.zeros((5, m) + (self.cfg.data.steps, self.cfg.data.num_pitches), bool)
            for i, lo in enumerate(range(0, m, DECODE_CHUNK)):
                cut = slice(lo, lo + DECODE_CHUNK)
                got = run(
                    *(None if a is None else _padded(a[cut], DECODE_CHUNK) for a in (lat, p, pl)),
                    jax.random.fold_in(key, i),
                )
                out[:, cut] = got[:, : min(DECODE_CHUNK, m - lo)]
        return out.reshape(5, -1, out.shape[-1])

    def _finish(self, roll, *, name, shift=0, key=0, min_length=None, merge_gap=None, tempo=None):
        """Post-process (`min_length`, `merge_gap`: None for the model's defaults), move to the output key
        and wrap a `[5, T, P]` roll as a Multitrack."""
        roll = render.postprocess(
            roll,
            min_length=self.min_length if min_length is None else min_length,
            merge_gap=self.merge_gap if merge_gap is None else merge_gap,
        )
        roll = music.transpose(roll, int(key) - int(shift))
        return render.to_multitrack(roll, tempo=tempo or self.tempo, name=self._label(name), cfg=self.cfg.data)

    def decode(
        self,
        latents,
        *,
        sustain: float | None = None,
        sample: bool = False,
        seed: int = 0,
        name: str = "decoded",
        plays_latents=None,
        guidance: float | None = None,
        single_line=None,
        **finish_kw,
    ):
        """Latent parameters `[bars, 5]` -> Multitrack (thresholds calibrated on validation data by
        default; `sample=True` draws each cell from its Bernoulli instead). `key`: semitones to transpose
        the output by; `min_length`, `merge_gap`: post-processing (0 and 0 for the raw output). `guidance`:
        the harmony guidance (the model's where None; 1 decodes a song's own latents as trained, as
        `vary(sigma=0)` does); `single_line`: as `rolls` (`()` decodes every track as trained, as
        `vary(sigma=0)` does)."""
        roll = self.rolls(
            latents,
            sustain=sustain,
            sample=sample,
            seed=seed,
            plays_latents=plays_latents,
            guidance=guidance,
            single_line=single_line,
        )
        return self._finish(roll, name=name, **finish_kw)

    # ---- generation --------------------------------------------------------------------------------

    def sample_latents(
        self, segments: int = 32, *, sigma: float = SIGMA, seed: int = 0, num: int = 1, start=None, with_means=False
    ):
        """Latent parameters `[num, segments, 5]` from the chain (a segment is a bar by default). The first comes from
        `start` (`[num, 5]`) or from a random real training bar where the piano plays. `with_means`: also
        the chains' predictions before the noise (the same shape)."""
        check_generation(bars=segments, sigma=sigma, num=num, seed=seed)
        key = jax.random.key(seed)
        if start is None:
            pick = np.random.default_rng(seed).integers(len(self.start_bars), size=num)
            start = self.start_bars[pick]
        else:
            start = Latents.of(start).concat()
        z, means = self._chain(
            jnp.asarray(self.norm.standardize(start), jnp.float32), key, int(segments), jnp.float32(sigma)
        )
        z, means = (Latents.from_concat(self.norm.unstandardize(np.asarray(a))) for a in (z, means))
        return (z, means) if with_means else z

    def sample(
        self,
        bars: int = 32,
        *,
        sigma: float = SIGMA,
        seed: int = 0,
        num: int = 1,
        sustain=None,
        sample: bool = False,
        prior: str | None = None,
        **finish_kw,
    ):
        """`num` new songs of `bars` bars, generated together in one compiled call. (The chain advances by
        segments; with segments of several bars the last one is cut to length.) `key=N` transposes the
        songs by N semitones from C major / A minor (key-normalised models). `prior`: "transformer" (the
        learned prior over bar sequences; the default where the model carries one; sigma sets its
        temperature, `prior.temperature_of`) or "chain" (MelodyNN and the HarmonyNNs, sigma their noise)."""
        check_generation(
            bars=bars,
            sigma=sigma,
            num=num,
            sustain=sustain,
            key=finish_kw.get("key"),
            tempo=finish_kw.get("tempo"),
            seed=seed,
        )
        self._fits(bars, num)
        d = self.cfg.data
        segments = -(-bars // d.segment_bars)
        if self.prior_kind(prior) == "transformer":
            z, plays = self._prior_draw("song", num, segments, sigma=sigma, seed=seed)
            roll = self._prior_rolls(z, plays, sustain=sustain, sample=sample, seed=seed + 1)
            length = bars * d.resolution * d.beats_per_bar
            return [self._finish(roll[:, i, :length], name=f"vaejax seed {seed} #{i}", **finish_kw) for i in range(num)]
        z, means = self.sample_latents(segments, sigma=sigma, seed=seed, num=num, with_means=True)
        flat = lambda a: a.map(lambda x: x.reshape((-1,) + x.shape[2:]))  # noqa: E731
        roll = self.rolls(flat(z), sustain=sustain, sample=sample, seed=seed + 1, plays_latents=flat(means))
        per_song = segments * d.steps
        roll = self.with_kit(roll.reshape(5, num, per_song, -1)).reshape(roll.shape)
        length = bars * d.resolution * d.beats_per_bar
        return [
            self._finish(roll[:, i * per_song : i * per_song + length], name=f"vaejax seed {seed} #{i}", **finish_kw)
            for i in range(num)
        ]

    def _fits(self, bars: int, num: int = 1) -> None:
        need = generation_mb(bars, num)
        if need > self.memory_mb:
            raise ValueError(
                f"{num} song(s) of {bars} bars need about {need:.0f} MiB, more than the budget of "
                f"{self.memory_mb:.0f} MiB (model.memory_mb); generate fewer songs per call (sample.py "
                f"does so by itself) or raise the budget"
            )

    def vary(self, song, *, sigma: float = SIGMA, seed: int = 0, bars: int | None = None, **decode_kw):
        """A variation: encode every bar of `song`, add sigma noise to its latent parameters (as the chains
        do), decode (in the song's own key unless `key` is given). Tracks play where the song has them play.
        At sigma 0 (a reconstruction) every track decodes as trained: the song's own latents already carry its
        harmony, and guiding them toward the piano only loses notes, and its bass line, and decoding it as one
        line only drops the overlaps real parts have (`docs/quality-report.md`)."""
        roll, shift = self._in_model_key(self._roll_of(song))
        z = self._encode_roll(roll)
        if bars is not None:
            check_generation(bars=bars)
            z = z[:bars]
        check_generation(bars=len(z), sigma=sigma)
        x = z.concat()
        noisy = (
            x
            if sigma == 0
            else self.norm.unstandardize(
                np.asarray(  # sigma 0: the song's own latents
                    add_noise(jnp.asarray(self.norm.standardize(x)), sigma, jax.random.key(seed))
                )
            )
        )
        decode_kw.setdefault("key", 0)
        if sigma == 0:
            decode_kw.setdefault("guidance", 1.0)
            decode_kw.setdefault("single_line", ())
        return self.decode(noisy, seed=seed, name=f"variation sigma {sigma}", shift=shift, plays_latents=z, **decode_kw)

    def continue_song(
        self, song, bars: int = 32, *, sigma: float = SIGMA, seed: int = 0, prior: str | None = None, **decode_kw
    ):
        """`bars` new bars after `song` (in the song's key unless `key` is given): the learned prior continues
        from the song's last `context` bars, so it can return to the song's material and keep its phrase
        positions; the chain (`prior="chain"`) rolls forward from its last bar."""
        roll, shift = self._in_model_key(self._roll_of(song))
        check_generation(bars=bars, sigma=sigma)
        d = self.cfg.data
        segments = -(-bars // d.segment_bars)  # the models advance by segments; the last is cut to length
        kit = music.notes_per_pitch(roll[DRUMS])  # the song's own kit stays
        length = bars * d.resolution * d.beats_per_bar
        if self.prior_kind(prior) == "transformer":
            given = self._encode_roll(roll)
            n = len(given)
            keep = min(n, self.cfg.prior.context)
            sounds = roll[:, : n * d.steps].reshape(5, n, -1).any(-1).T  # [n, 5]
            z, plays = self._prior_draw(
                "song",
                1,
                keep + segments,
                sigma=sigma,
                seed=seed,
                prefix=self._standardized_means(given[n - keep :])[None],
                prefix_plays=sounds[None, n - keep :].astype(np.float32),
                phase0=n - keep,
            )
            out = self._prior_rolls(
                z[:, keep:],
                plays[:, keep:],
                seed=seed,
                sustain=decode_kw.pop("sustain", None),
                sample=decode_kw.pop("sample", False),
                kit_counts=kit,
            )[:, 0, :length]
            decode_kw.setdefault("key", 0)
            return self._finish(out, name="continuation", shift=shift, **decode_kw)
        start = self._encode_roll(roll)[-1:]
        z, means = self.sample_latents(segments, sigma=sigma, seed=seed, num=1, start=start, with_means=True)
        decode_kw.setdefault("key", 0)
        sustain, sample = decode_kw.pop("sustain", None), decode_kw.pop("sample", False)
        out = self.rolls(z[0], sustain=sustain, sample=sample, seed=seed, plays_latents=means[0])[:, :length]
        return self._finish(self.with_kit(out, counts=kit), name="continuation", shift=shift, **decode_kw)

    def arrange(
        self,
        piano,
        *,
        sigma: float = SIGMA,
        seed: int = 0,
        tracks=None,
        sustain=None,
        sample: bool = False,
        prior: str | None = None,
        density=DENSITY,
        **finish_kw,
    ):
        """Keep a piano part exactly and generate the band bar by bar: the learned arranging prior draws the
        band's latents and rests given the piano part of the whole passage (it looks ahead as well as back,
        `context` bars at a time), or (`prior="chain"`) the HarmonyNNs carry each track's latents under the
        piano's; each decoder follows the piano's pitch classes.

        `piano`: a Multitrack (its Piano track, or its only track) or a `[T, P]` bool roll. `tracks`: the
        instruments to add (names from `TRACKS`, default all four). `density` (learned prior only): how
        often the added tracks play; "data" (the default) as often as the training data's bands play along
        with a piano (`band_shares`; a model that does not record them arranges as with None), None as the
        prior reads the piano part, a share of bars (0-1) for every added track, or a dict of them per track
        (`density_target`); the prior's plays bits are biased until the song's draws play that often
        (`density_bias`), and what each track plays is still drawn given the piano. The output keeps the
        input's length and (for a Multitrack) its tempo, in the piano's own key."""
        cfg = self.cfg.data
        add = track_list(tracks)
        target = self.density_target(density, add)
        if density not in (None, DENSITY) and self.prior_kind(prior) != "transformer":
            raise ValueError("density needs the learned prior (prior='transformer'): the chain draws no rests")
        if isinstance(piano, np.ndarray):
            piano_roll = np.asarray(piano).astype(bool)
            if piano_roll.ndim != 2 or piano_roll.shape[1] != cfg.num_pitches:
                raise ValueError(f"piano roll must be [time, {cfg.num_pitches}], got {piano_roll.shape}")
        else:
            parts = piano.tracks
            if not parts:
                raise ValueError("the song has no tracks")
            pick = 1 if len(parts) == 5 else 0
            piano_roll = music.from_multitrack(type(piano)(resolution=piano.resolution, tracks=[parts[pick]]), cfg)[0]
            finish_kw.setdefault("tempo", music.tempo_of(piano))
        steps = cfg.steps
        length = piano_roll.shape[0]
        n = -(-length // steps)
        if n == 0:
            raise ValueError("the piano part is empty (no time steps)")
        if n > MAX_BARS:
            raise ValueError(f"the piano part has {n} segments; at most {MAX_BARS} can be arranged at once")
        self._fits(n * cfg.segment_bars)
        check_generation(sigma=sigma, sustain=sustain, key=finish_kw.get("key"), tempo=finish_kw.get("tempo"))
        n = -(-n // BUCKET) * BUCKET  # whole buckets of segments: one compiled program serves many lengths
        roll = np.zeros((5, n * steps, cfg.num_pitches), bool)
        roll[PIANO, :length] = piano_roll
        roll, shift = self._in_model_key(roll)
        h = np.array(HARMONY)
        if self.prior_kind(prior) == "transformer" and "band" in self.prior:
            given = self._encode_roll(roll)
            sounds = roll[PIANO].reshape(n, -1).any(-1).astype(np.float32)
            piano_tokens = np.concatenate([self._standardized_means(given)[:, PIANO], sounds[:, None]], -1)
            bias = None
            if not np.isnan(target).all():
                used = min(-(-length // steps), DENSITY_BARS)  # the part's bars (not the padding), the first 256
                probe = min(n, -(-used // BUCKET) * BUCKET)
                many = np.repeat(piano_tokens[None, :probe], DENSITY_DRAWS, 0)
                bias = density_bias(
                    lambda b: self._prior_draw(
                        "band", DENSITY_DRAWS, probe, sigma=sigma, seed=seed, piano=many, plays_bias=b
                    )[1][:, :used],
                    target,
                )
            # with a density, the song is the first of as many draws as the search made (the same compiled
            # program where the search saw the whole part)
            k = 1 if bias is None else DENSITY_DRAWS
            z, plays = self._prior_draw(
                "band", k, n, sigma=sigma, seed=seed, piano=np.repeat(piano_tokens[None], k, 0), plays_bias=bias
            )
            z, plays = z[:1], plays[:1]
            out = self._prior_rolls(z, plays, piano=roll[PIANO], sustain=sustain, sample=sample, seed=seed)[:, 0]
            return self._arranged(out, piano_roll, add, shift, length, finish_kw)
        p = self._encode_roll(roll).concat()[:, PIANO]  # [n, 2K]
        rng = np.random.default_rng(seed)
        own0 = self.norm.standardize(self.start_bars[rng.integers(len(self.start_bars))][h], h)
        own, own_mean = (
            np.asarray(a)
            for a in self._harm(
                jnp.asarray(self.norm.standardize(p, PIANO), jnp.float32),
                jnp.asarray(own0, jnp.float32),
                jax.random.key(seed),
                jnp.float32(sigma),
            )
        )
        z = np.zeros((n, 5, p.shape[-1]), np.float32)  # in the data's units; `own` is standardised
        z[:, PIANO] = p
        means = z.copy()
        z[:, h] = self.norm.unstandardize(own, h)
        means[:, h] = self.norm.unstandardize(own_mean, h)
        out = self.rolls(z, sustain=sustain, sample=sample, seed=seed, piano=roll[PIANO], plays_latents=means)
        return self._arranged(out, piano_roll, add, shift, length, finish_kw)

    def _arranged(self, out, piano_roll, add, shift, length, finish_kw):
        """The decoded arrangement `[5, T, P]` (model key) -> the Multitrack: post-processed, in the piano's
        key, cut to its length, only the tracks asked for, the given piano part untouched."""
        cfg = self.cfg.data
        ml, mg = finish_kw.pop("min_length", None), finish_kw.pop("merge_gap", None)
        out = render.postprocess(
            out, min_length=self.min_length if ml is None else ml, merge_gap=self.merge_gap if mg is None else mg
        )
        out = music.transpose(out, int(finish_kw.pop("key", 0)) - shift)[:, :length]
        for i in range(5):
            if i != PIANO and TRACKS[i] not in add:
                out[i] = False
        out[PIANO] = piano_roll  # the given part, untouched
        return render.to_multitrack(
            out, tempo=finish_kw.get("tempo") or self.tempo, name=self._label("arrangement"), cfg=cfg
        )

    def interpolate(self, song_a, song_b, *, steps: int = 5, bars: int = 4, **decode_kw):
        """`steps` songs moving linearly in latent space from song_a's first `bars` bars to song_b's."""
        check_generation(bars=bars)
        if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= 100:
            raise ValueError(f"steps must be an integer from 2 to 100, got {steps!r}")
        a, b = self.encode(song_a)[:bars].concat(), self.encode(song_b)[:bars].concat()
        n = min(len(a), len(b))
        return [
            self.decode((1 - w) * a[:n] + w * b[:n], name=f"interpolation {w:.2f}", **decode_kw)
            for w in np.linspace(0.0, 1.0, steps)
        ]


def _padded(a: np.ndarray, size: int, axis: int = 0) -> np.ndarray:
    """`a` padded with zeros along `axis` to `size` (chunks of one shape share one compiled program)."""
    if a.shape[axis] == size:
        return a
    pad = [(0, 0)] * a.ndim
    pad[axis] = (0, size - a.shape[axis])
    return np.pad(a, pad)


def _ages(table, sustain) -> np.ndarray:
    """`[5, SUSTAIN_AGES]` sustain factors per age: `table` where given, else each track's one factor
    `sustain` `[5]` at every age."""
    if table is not None:
        return np.asarray(table, np.float32).reshape(len(TRACKS), SUSTAIN_AGES)
    return np.repeat(np.asarray(sustain, np.float32)[:, None], SUSTAIN_AGES, 1)


def density_bias(draw, target, *, rounds: int = DENSITY_ROUNDS, tolerance: float = 0.02) -> np.ndarray:
    """The `[5]` plays-logit bias under which `draw(bias)` (-> plays bits `[..., bars, 5]`) sounds each
    track in the share of bars `target` asks (`[5]`, 0-1; NaN: as the prior draws it, bias 0).

    Bisection per track on the bias (-`DENSITY_RANGE` to +`DENSITY_RANGE`), all tracks at once: a track's
    share rises with its bias (its copies follow the bars they copy, so the rise is not exact, and the
    tracks steer each other a little); stops when every asked share is within `tolerance`."""
    target = np.asarray(target, np.float64)
    free = np.isnan(target)
    lo = np.full(len(TRACKS), -DENSITY_RANGE)
    hi = np.full(len(TRACKS), DENSITY_RANGE)
    bias = np.zeros(len(TRACKS))
    best, best_err = bias.copy(), np.full(len(TRACKS), np.inf)
    for _ in range(rounds):
        share = np.asarray(draw(bias.astype(np.float32)), bool).reshape(-1, len(TRACKS)).mean(0)
        err = np.where(free, 0.0, share - np.nan_to_num(target))
        better = np.abs(err) < best_err
        best[better], best_err[better] = bias[better], np.abs(err[better])
        if (np.abs(err) <= tolerance).all():
            break
        hi = np.where(err > 0, bias, hi)
        lo = np.where(err < 0, bias, lo)
        bias = np.where(free | (np.abs(err) <= tolerance), bias, (lo + hi) / 2)
    return np.where(free, 0.0, best).astype(np.float32)


def density_target(density, tracks=TRACKS, band_shares=None) -> np.ndarray:
    """`[5]` shares of bars for `density_bias` (NaN where free) from what `arrange` takes: None
    (every track free), "data" (each of `tracks` as often as it plays along with the piano in the training
    bars, `band_shares` `[5]`; free where None), a share for all of `tracks`, or a dict track name -> share
    (0-1) for some of them."""
    out = np.full(len(TRACKS), np.nan)
    if density is None:
        return out
    names = {t.lower(): i for i, t in enumerate(TRACKS)}
    if isinstance(density, str):
        if density != "data":
            raise ValueError(f'density must be "data", a share from 0 to 1 or a dict of them, got {density!r}')
        if band_shares is not None:
            for t in tracks:
                out[names[t.lower()]] = band_shares[names[t.lower()]]
        return out
    pairs = density.items() if isinstance(density, dict) else ((t, density) for t in tracks)
    asked = {t.lower() for t in tracks}
    for t, v in pairs:
        if str(t).strip().lower() not in asked:
            raise ValueError(f"density: {t!r} is not a track added here ({', '.join(tracks)})")
        try:
            v = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"density of {t}: a share of bars from 0 to 1, got {v!r}") from None
        if not 0.0 <= v <= 1.0:
            raise ValueError(f"density of {t}: a share of bars from 0 to 1, got {v}")
        out[names[str(t).strip().lower()]] = v
    return out


def parse_density(text: str):
    """A `--density` value as `arrange` takes it: "data", "none" (None), a share ("0.8") or per-track shares
    ("strings=0.8,drums=0.9")."""
    text = text.strip()
    if text.lower() in ("data", "none"):
        return None if text.lower() == "none" else "data"
    if "=" not in text:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f'density must be "data", "none", a share or TRACK=SHARE pairs, got {text!r}') from None
    out = {}
    for pair in text.split(","):
        name, eq, value = pair.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"density: {pair!r} is not TRACK=SHARE")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"density of {name.strip()}: a share of bars from 0 to 1, got {value!r}") from None
    return out


def _track_names(tracks, allowed: tuple[str, ...], what: str, why: dict | None = None) -> tuple[str, ...]:
    """Names (any case) or a comma-separated string -> the names of `allowed` they give, in order; an unknown
    one is refused, saying what it was for (`what`, and `why[name]` where given) and what would do."""
    if isinstance(tracks, str):
        tracks = [t for t in tracks.split(",") if t.strip()]
    names = {t.lower(): t for t in allowed}
    out = []
    for t in tracks:
        if not isinstance(t, str) or t.strip().lower() not in names:
            extra = (why or {}).get(str(t).strip().lower(), "")
            raise ValueError(f"unknown track {t!r} to {what}{extra}; choose from {', '.join(allowed)}")
        out.append(names[t.strip().lower()])
    return tuple(out)


def track_list(tracks) -> tuple[str, ...]:
    """Instrument names to add in an arrangement: None for all four, else names (any case) or a
    comma-separated string."""
    band = tuple(TRACKS[i] for i in HARMONY)
    if tracks is None:
        return band
    return _track_names(tracks, band, "add", {"piano": " (the piano is the given part: it is kept, not added)"})


def line_tracks(tracks) -> tuple[str, ...]:
    """Tracks to decode as one line (`single_line`): names (any case), a comma-separated string, or
    nothing (None, "" or an empty sequence) for none."""
    return tuple(dict.fromkeys(_track_names(tracks, TRACKS, "decode as one line"))) if tracks else ()


def kit_size(pieces) -> int:
    """A `drum_kit` setting: a whole number of pieces from 0 (keep every piece) to 128."""
    if isinstance(pieces, bool) or not isinstance(pieces, (int, np.integer)) or not 0 <= pieces <= 128:
        raise ValueError(f"drum_kit must be a whole number of drum pieces from 0 (every piece) to 128, got {pieces!r}")
    return int(pieces)


def resolve(name: str | None = None) -> tuple[str, str]:
    """(folder, how it was chosen) of the model `load(name)` would use."""
    if name is not None and not os.path.exists(name) and name in packaging.pretrained_names():
        return packaging.pretrained_path(name), f"the packaged model {name}"
    if name is not None:
        if not os.path.exists(name) and os.sep not in name and "/" not in name:
            names = packaging.pretrained_names()
            raise NoCheckpoint(
                f"{name}: no such run folder or packaged model; packaged models: "
                f"{', '.join(names) or 'none installed'} (or give a run folder's path)"
            )
        return name, name
    latest = latest_run()
    if latest is not None:
        return latest, f"the latest run ({latest})"
    if packaging.DEFAULT_PRETRAINED in packaging.pretrained_names():
        return (
            packaging.pretrained_path(packaging.DEFAULT_PRETRAINED),
            f"the packaged model {packaging.DEFAULT_PRETRAINED} (no trained run here: runs/LATEST)",
        )
    raise NoCheckpoint("no trained run found (runs/LATEST); train one with `python train.py`")


_PACKAGED: dict[str, tuple[tuple, TrainedModel]] = {}
"""Packaged models loaded in this process: folder -> (sizes and times of its files, model). A TrainedModel
never changes once loaded, so one instance (and the kernels it has compiled) serves every caller."""


def open_folder(folder: str) -> TrainedModel:
    """The model in a run or packaged-model folder. A packaged model is loaded once per process and shared
    (until its files change); a training run's folder, whose checkpoints move on as it trains, is read anew."""
    if not RunFolder(folder).packaged:
        return TrainedModel(folder)
    stamp = tuple(sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(folder) if e.is_file()))
    path = os.path.realpath(folder)
    if path not in _PACKAGED or _PACKAGED[path][0] != stamp:
        _PACKAGED[path] = (stamp, TrainedModel(folder))
    return _PACKAGED[path][1]


def load(name: str | None = None) -> TrainedModel:
    """Load a trained run or packaged model folder, or a packaged model by name
    (`packaging.pretrained_names()`); default: the latest run trained in this folder, else the packaged
    model `lpd5` (packaged models are loaded once per process: `open_folder`)."""
    return open_folder(resolve(name)[0])
