"""Configuration: frozen dataclasses with named presets, overridable from the command line."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

TRACKS = ("Drums", "Piano", "Guitar", "Bass", "Strings")
"""LPD-5 track order. Index 1 (piano) carries the melody chain."""

PIANO = 1
HARMONY = (0, 2, 3, 4)
"""The four non-piano tracks, in the order of the stacked HarmonyNNs."""

LATENT_SIZES = (8, 16, 32, 64)

# ---- generation: defaults and limits, for the library and the command line alike ---------------------

TEMPO = 120.0
"""Beats per minute of sampled songs (given songs keep their own)."""
SIGMA = 0.5
"""Noise on the latent parameters per segment, in units of each parameter's spread over the training data."""
BARS = 32
MAX_BARS = 4096
MAX_SONGS = 1000
HARMONY_GUIDANCE = 4.0
"""Scale on the band decoders' harmonic bias when generating, for models trained with conditioning (chosen
on the evaluation: docs/quality-report.md); 1 decodes as trained."""
MIN_LENGTH = 3
"""Post-processing of generated songs: notes shorter than this many steps are dropped ..."""
MERGE_GAP = 2
"""... after silences shorter than this many steps between notes of one pitch are filled."""
SAMPLE_RATE = 22050
PRIORS = ("chain", "transformer")
"""How generation rolls bar latents forward: the seed's MelodyNN / HarmonyNN chain, or the learned prior over
bar sequences (`vaejax.prior`)."""
PRIOR = "chain"
"""The default way bars follow each other, also for models that carry a learned prior: the learned prior
has not yet measured closer to real music than the chain (docs/quality-report.md, "Form: a prior over bar
latents"); `prior="transformer"` / `--prior transformer` selects it."""

_LIMITS = {  # name: (low, high, inclusive); what each generation option accepts
    "bars": (1, MAX_BARS, True), "num": (1, MAX_SONGS, True), "tempo": (10, 400, True),
    "harmony": (0, 20, True), "key": (-6, 5, True), "threshold": (0, 1, False),
    "sample_rate": (8000, 96000, True), "sigma": (0, float("inf"), True),
}
_INTEGER = ("bars", "num", "key", "sample_rate")


def generation_problems(**options) -> list[tuple[str, str]]:
    """(option, what is wrong) for each generation option out of range; None means "not given"."""
    out = []
    for name, value in options.items():
        if value is None:
            continue
        lo, hi, inclusive = _LIMITS[name]
        try:
            v = float(value)
        except (TypeError, ValueError):
            out.append((name, f"must be a number, got {value!r}"))
            continue
        ok = v == v and (lo <= v <= hi if inclusive else lo < v < hi)
        ok = ok and (name not in _INTEGER or v.is_integer())
        if not ok:
            kind = "an integer" if name in _INTEGER else "a number"
            span = (f">= {lo}" if hi == float("inf") else f"from {lo} to {hi}" if inclusive
                    else f"between {lo} and {hi}")
            out.append((name, f"must be {kind} {span}, got {value!r}"))
    return out


def check_generation(**options) -> None:
    """Raise ValueError naming every generation option out of range (see `generation_problems`)."""
    problems = generation_problems(**options)
    if problems:
        raise ValueError("; ".join(f"{name} {msg}" for name, msg in problems))


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """How songs become training bars.

    Attributes:
      resolution: time steps per beat (LPD uses 24).
      beats_per_bar: only 4/4 music is used, so 4.
      segment_bars: bars per training segment (one VAE input).
      lowest_pitch: MIDI pitch of the first pianoroll row (24 = C1).
      num_pitches: pitch rows kept (84 = C1..B7, as in MuseGAN).
      velocity_threshold: a cell is "on" when its velocity exceeds this.
      valid_percent / test_percent: split shares, assigned per song by a hash of its id.
    """

    resolution: int = 24
    beats_per_bar: int = 4
    segment_bars: int = 1
    lowest_pitch: int = 24
    num_pitches: int = 84
    velocity_threshold: int = 0
    valid_percent: int = 5
    test_percent: int = 5
    key_normalize: bool = True
    """Transpose every song so that its best-fitting diatonic scale is C major's (by -6..+5 semitones;
    drums untouched). The models then learn one key; generated songs are transposed to the key asked for."""

    @property
    def steps(self) -> int:
        """Time steps per segment."""
        return self.resolution * self.beats_per_bar * self.segment_bars

    @property
    def beats(self) -> int:
        """Beats per segment."""
        return self.beats_per_bar * self.segment_bars

    @property
    def packed_pitches(self) -> int:
        return (self.num_pitches + 7) // 8


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The per-instrument VAE and the latent chain networks.

    The encoder uses convolutions whose kernel equals their stride (non-overlapping patches): first
    `time_patch[0]` steps by `pitch_patch` pitches (one octave by default), then `time_patch[1]` steps,
    then a dense layer. The decoder mirrors it with transposed convolutions.
    """

    latent: int = 16
    pitch_patch: int = 12
    time_patch: tuple[int, int] = (4, 4)
    channels: tuple[int, int] = (32, 64)
    hidden: int = 256
    chain_hidden: int = 256
    chain_layers: int = 2
    condition: bool = True
    """Encoders and decoders of the non-piano tracks also see the piano's pitch classes per beat (the
    piano's own are zeros): the band follows the piano's harmony."""
    onsets: bool = True
    """Decoders emit two channels, sustain (the roll) and onset: a note starts only at an onset and lasts
    while sustain is on, so decoded notes are notes, not fragments."""
    plays: bool = True
    """Decoders also predict whether the track plays in the segment at all, so rests are decided rather
    than left to a threshold (and counted notes are placed only where the track plays)."""

    def __post_init__(self):
        if self.latent not in LATENT_SIZES:
            raise ValueError(f"latent must be one of {LATENT_SIZES}, got {self.latent}")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for the three stages."""

    batch_size: int = 64
    vae_epochs: int = 20
    chain_epochs: int = 50
    lr: float = 1e-3
    chain_lr: float = 1e-3
    chain_batch_size: int = 256
    # Latent chains work on standardised parameters (per-dimension mean 0, std 1 over the training bars) and
    # see Gaussian noise of this scale on their inputs while training, so that the sampler's noise (sigma,
    # in the same units) keeps the chain on the data instead of driving it off and amplifying.
    chain_noise: float = 0.25
    beta: float = 1.0
    beta_rate: float = 0.999  # beta(step) = (1 - beta_rate**step) * beta, as in MusicVAE
    free_bits: float = 0.5  # nats per latent dimension that the KL term does not charge
    pos_weight: float = 1.0  # weight on "on" cells in the reconstruction loss
    max_steps_per_epoch: int = 0  # 0: whole epoch
    checkpoint_every: int = 200  # steps
    log_every: int = 20  # steps
    seed: int = 0
    precision: str = "auto"
    """Compute dtype of the VAE step: "float32", "bfloat16" (parameters, optimiser state and the loss stay
    float32; the networks run in bfloat16), or "auto": bfloat16 on GPU and TPU, float32 on CPU (where
    bfloat16 has no fast matrix units)."""

    def __post_init__(self):
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be auto, float32 or bfloat16, got {self.precision!r}")


@dataclasses.dataclass(frozen=True)
class PriorConfig:
    """The prior over sequences of bar latents (`vaejax.prior`) and its training (stage `prior`).

    A section of its own: the prior is trained on a run's encoded latents after everything else, so it can
    be retrained (`train.py --run RUN --stage prior`) without touching the VAEs or the chains.
    """

    layers: int = 3
    dim: int = 128
    heads: int = 4
    context: int = 32
    """Bars the prior sees (training windows and the sampling window)."""
    mixtures: int = 8
    """Diagonal Gaussians in the mixture over a bar's five tracks' latent means."""
    band: bool = True
    """Also train the arranging prior: the band tracks given the whole window's piano part."""
    steps: int = 2000
    batch_size: int = 16
    """Windows of `context` bars per step."""
    lr: float = 1e-3
    warmup: int = 100
    input_noise: float = 0.1
    """Gaussian noise on the input tokens' latents while training (standardised units), so that its own
    samples, slightly off the data, keep the prior on it."""
    epochs: int = 4
    """Validation and checkpoint points over `steps` (the steps are split evenly among them)."""

    def __post_init__(self):
        if self.dim % self.heads:
            raise ValueError(f"prior dim {self.dim} must be divisible by its heads {self.heads}")
        if self.context < 2:
            raise ValueError(f"prior context must be at least 2 bars, got {self.context}")


@dataclasses.dataclass(frozen=True)
class Config:
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    train: TrainConfig = TrainConfig()
    prior: PriorConfig = PriorConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Config":
        """From `to_dict` output. Fields a saved run predates take the value that matches what it was
        trained with (no key normalisation, no conditioning, one output channel), not today's default."""
        model = {"condition": False, "onsets": False, "plays": False, **d.get("model", {})}
        data = {"key_normalize": False, **d.get("data", {})}
        for key in ("time_patch", "channels"):
            if key in model:
                model[key] = tuple(model[key])
        return cls(
            data=DataConfig(**data),
            model=ModelConfig(**model),
            train=TrainConfig(**d.get("train", {})),
            prior=PriorConfig(**d.get("prior", {})),
        )

    def replace(self, **sections: dict[str, Any]) -> "Config":
        """Return a copy with fields of named sections replaced, e.g. replace(model={'latent': 8})."""
        out = self
        for name, fields in sections.items():
            if fields:
                out = dataclasses.replace(out, **{name: dataclasses.replace(getattr(out, name), **fields)})
        return out


PRESETS: dict[str, Config] = {
    # Small enough for unit tests to train every stage in seconds on a CPU.
    "tiny": Config(
        model=ModelConfig(latent=8, channels=(8, 16), hidden=32, chain_hidden=32),
        train=TrainConfig(batch_size=16, vae_epochs=2, chain_epochs=2, chain_batch_size=32,
                          checkpoint_every=5, log_every=2),
        prior=PriorConfig(layers=1, dim=16, heads=2, context=4, mixtures=2, steps=6, batch_size=8, warmup=2,
                          epochs=2),
    ),
    "default": Config(),
    "large": Config(
        model=ModelConfig(channels=(64, 128), hidden=512, chain_hidden=512, chain_layers=3),
        train=TrainConfig(batch_size=256),
    ),
}


def preset(name: str) -> Config:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}") from None
