"""Configuration: frozen dataclasses with named presets, the one door for every setting.

A field is set the same way from everywhere: `section.field=value` (`train.py --set model.hidden=512`,
`apply_settings(cfg, ["model.hidden=512"])`), a configuration file (`load_config("configs/lpd5.py")`,
`train.py --config configs/lpd5.py`) or Python (`cfg.replace(model={"hidden": 512})`). A field declared with
`option(...)` also has a command-line option of its own (`--lr`), derived from the field by `vaejax.cli`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import warnings
from typing import Any

TRACKS = ("Drums", "Piano", "Guitar", "Bass", "Strings")
"""LPD-5 track order. Index 1 (piano) carries the melody chain."""

DRUMS = 0
PIANO = 1
HARMONY = (0, 2, 3, 4)
"""The four non-piano tracks, in the order of the stacked HarmonyNNs."""

LATENT_SIZES = (8, 16, 32, 64)

# ---- generation: defaults and limits, for the library and the command line alike ---------------------

RESOLUTION = 24
"""Time steps per beat of the data (LPD's), the default of `DataConfig.resolution`."""
TEMPO = 120.0
"""Beats per minute of sampled songs (given songs keep their own)."""
SIGMA = 0.5
"""Noise on the latent parameters per segment, in units of each parameter's spread over the training data."""
BARS = 32
MAX_BARS = 4096
MAX_SONGS = 1000
HARMONY_GUIDANCE = 8.0
"""Scale on the band decoders' harmonic bias when generating, for models trained with conditioning (chosen
on the evaluation: docs/quality-report.md, "Harmony guidance that keeps the count"); 1 decodes as trained.
It chooses which pitches the band plays; how many notes start is counted from the decoders as trained."""
AGE_INDEX = (0, 0, 1, 2, 2, 3)
"""`models.decode_notes(sustain_ages=...)`: which of the four sustain factors a note uses at each age (cells since
it started; the last entry for every later age): age 1 (does it outlast its first sixteenth), age 2, ages 3
and 4, ages 5 on, as the note-length histogram's bins (1, 2, 3-4, 5-8, ...) of `vaejax.realism`."""
SUSTAIN_AGES = max(AGE_INDEX) + 1
SINGLE_LINE = ("Bass",)
"""Tracks decoded as one line (`models.decode_notes(line=...)`): where notes start, only the likeliest does
(with its octaves), ending the note before it. Real bass parts sound one pitch 95% of the time they sound,
and nearly all their two-note moments are octaves; decoded bar by bar, the bass kept a second voice a
fifth of the time, mostly thirds and fourths (docs/quality-report.md, "A bass that plays one line")."""
DRUM_KIT = 8
"""Generated songs' drums keep the `DRUM_KIT` pieces (pitches) they start most notes on, song by song
(`music.keep_kit`; 0 keeps every piece). A drummer plays one kit through a song: real 32-bar LPD passages use a
median of 8 pieces (7 to 11 between the quartiles), where bars decoded one by one picked 13, among them the
cowbells, agogos and whistles above the cymbals that real rock and pop parts rarely touch
(docs/quality-report.md, "One drum kit per song")."""
LINE_HARMONY = 3.0
"""Where notes of a one-line track start together, a note whose pitch class the piano sounds in that beat counts
its onset probability `1 + LINE_HARMONY` times in the choice (`models.decode_notes(prefer=...)`): kept by
probability alone, the line's notes sat further from the piano's harmony than real bass lines do (tonal
distance to the piano 17% over real, against 12% with this weight; docs/quality-report.md)."""
HARMONY_WEIGHTS = (1.0, 1.0, 11 / 7, 6 / 7, 5 / 7)
"""How strongly each track (LPD-5 order) takes the guidance: a track's scale is 1 + (guidance - 1) x its
weight, at least 0, so guidance 1 decodes every track as trained and the one setting moves every track the
same way. At guidance 8 these give guitar 12, bass 7 and strings 6: guitar needs the most to sit on the
piano's harmony as real guitars do, and strings, guided harder, play fewer pitch classes than real strings
(chosen on the evaluation: docs/quality-report.md, "Guidance per track"). Drums and piano decode
unconditioned (their weights change nothing); a run's stats (`harmony_weights`) may hold its own."""
MIN_LENGTH = 3
"""Post-processing of generated songs: notes shorter than this many steps are dropped ..."""
MERGE_GAP = 2
"""... after silences shorter than this many steps between notes of one pitch are filled."""
SAMPLE_RATE = 22050
PRIORS = ("chain", "transformer")
"""How generation rolls bar latents forward: the seed's MelodyNN / HarmonyNN chain, or the learned prior over
bar sequences (`vaejax.prior`)."""
PRIOR = "transformer"
"""The default way bars follow each other for models that carry a learned prior (models without one use the
chain): the learned prior with per-track and whole-bar pointers measures closer to real music than the
chain on repeats, rests, onsets and the two-sample classifier (docs/quality-report.md, "Form: a prior over
bar latents"); `prior="chain"` / `--prior chain` selects the seed's chain, the baseline."""
MAX_SIGMA = 10.0
"""Noise beyond this many standard deviations only produces the decoders' saturation."""
GENERATION_BUDGET_MB = 2048
"""Memory one generation call (`sample.py`, `TrainedModel.sample` / `arrange`) may use by default: long songs
are decoded in chunks, many songs in groups, and a request whose output alone would not fit is refused
before anything is generated (`sample.py --memory-budget`)."""

SONG_BAR_MB = 0.25
"""Memory a generated bar holds until its song is written (the roll, its post-processed copy, the Multitrack;
measured 0.17 MiB)."""
DECODE_MB = 400
"""Working memory of one decoding chunk and its compiled program (measured: bench/bench_budget.py)."""


def audio_mb(seconds: float, sample_rate: int = SAMPLE_RATE) -> float:
    """Memory (MiB) that rendering `seconds` of audio takes at its peak: the synthesiser's own buffers (about 36
    bytes per 44.1 kHz frame, measured), then the float output."""
    return seconds * (44100 * 36 + sample_rate * 8) / 2**20


def generation_mb(bars: int, num: int = 1, *, audio_seconds: float = 0.0, sample_rate: int = SAMPLE_RATE) -> float:
    """Estimated memory (MiB, beyond the loaded model) of generating `num` songs of `bars` bars at once and
    rendering one song's `audio_seconds` of audio."""
    return DECODE_MB + bars * num * SONG_BAR_MB + audio_mb(audio_seconds, sample_rate)


_LIMITS = {  # name: (low, high, inclusive); what each generation option accepts
    "bars": (1, MAX_BARS, True),
    "num": (1, MAX_SONGS, True),
    "tempo": (10, 400, True),
    "harmony": (0, 20, True),
    "key": (-6, 5, True),
    "sustain": (1e-6, 1 - 1e-6, True),  # float32 keeps these apart from 0 and 1
    "sample_rate": (8000, 96000, True),
    "sigma": (0, MAX_SIGMA, True),
    "seed": (0, 2**31 - 1, True),
    "min_length": (0, 10_000, True),
    "merge_gap": (0, 10_000, True),
    "memory_mb": (64, 1 << 22, True),
}
_INTEGER = ("bars", "num", "key", "sample_rate", "seed", "min_length", "merge_gap", "memory_mb")


def generation_problems(**options) -> list[tuple[str, str]]:
    """(option, what is wrong) for each generation option out of range; None means "not given"."""
    out = []
    for name, value in options.items():
        if value is None:
            continue
        lo, hi, inclusive = _LIMITS[name]
        try:
            if isinstance(value, bool) or isinstance(value, str):
                raise TypeError
            v = float(value)
        except (TypeError, ValueError, OverflowError):
            out.append((name, f"must be a number, got {value!r}"))
            continue
        ok = v == v and (lo <= v <= hi if inclusive else lo < v < hi)
        ok = ok and (name not in _INTEGER or v.is_integer())
        if not ok:
            kind = "an integer" if name in _INTEGER else "a number"
            span = f">= {lo}" if hi == float("inf") else f"from {lo} to {hi}" if inclusive else f"between {lo} and {hi}"
            out.append((name, f"must be {kind} {span}, got {value!r}"))
    return out


def check_generation(**options) -> None:
    """Raise ValueError naming every generation option out of range (see `generation_problems`)."""
    problems = generation_problems(**options)
    if problems:
        raise ValueError("; ".join(f"{name} {msg}" for name, msg in problems))


# ---- settings: what every configuration field accepts, checked where a Config is made -------------------


def option(default, flag: str, help: str, **argparse_kw):
    """A configuration field with a command-line option of its own (`train.py FLAG`), declared here once: the
    command line derives the option from it. A true/false field's option (`--no-...`) sets the opposite of its
    default."""
    return dataclasses.field(default=default, metadata={"flag": flag, "help": help, **argparse_kw})


MAX_SEED = 2**31 - 1
"""Seeds are integers from 0 to this (every random generator used takes them as they are)."""


class ConfigWarning(UserWarning):
    """A configuration file holds keys this version does not know (written by a newer one): they are ignored."""


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _check_fields(obj, rules: dict) -> None:
    """Raise ValueError for the first field of a config dataclass outside what `rules` allow:
    {field: (kind, low, high)} with kind "int", "float" (finite), "bool" or "ints" (a tuple of ints); low and
    high inclusive (None: unbounded)."""
    section = type(obj).__name__.replace("Config", "").lower()
    for name, (kind, lo, hi) in rules.items():
        v = getattr(obj, name)
        where = f"{section}.{name}"
        if kind == "bool":
            if not isinstance(v, bool):
                raise ValueError(f"{where} must be true or false, got {v!r}")
            continue
        values = v if kind == "ints" else (v,)
        if kind == "ints" and (not isinstance(v, tuple) or len(v) != 2):
            raise ValueError(f"{where} must be two integers, got {v!r}")
        for x in values:
            ok = _is_int(x) if kind in ("int", "ints") else _is_number(x) and math.isfinite(x)
            what = "an integer" if kind in ("int", "ints") else "a finite number"
            span = (
                ""
                if lo is None and hi is None
                else f" >= {lo}"
                if hi is None
                else f" <= {hi}"
                if lo is None
                else f" from {lo} to {hi}"
            )
            if not ok or (lo is not None and x < lo) or (hi is not None and x > hi):
                raise ValueError(f"{where} must be {what}{span}, got {v!r}")


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

    resolution: int = RESOLUTION
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

    def __post_init__(self):
        _check_fields(
            self,
            {
                "resolution": ("int", 1, 960),
                "beats_per_bar": ("int", 1, 32),
                "segment_bars": ("int", 1, 64),
                "lowest_pitch": ("int", 0, 127),
                "num_pitches": ("int", 1, 128),
                "velocity_threshold": ("int", 0, 127),
                "valid_percent": ("int", 0, 100),
                "test_percent": ("int", 0, 100),
                "key_normalize": ("bool", None, None),
            },
        )
        if self.lowest_pitch + self.num_pitches > 128:
            raise ValueError(
                f"data.lowest_pitch + data.num_pitches must be at most 128 (MIDI pitches), got "
                f"{self.lowest_pitch} + {self.num_pitches}"
            )
        if self.valid_percent + self.test_percent > 100:
            raise ValueError(
                f"data.valid_percent + data.test_percent must be at most 100, got "
                f"{self.valid_percent} + {self.test_percent}"
            )

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

    latent: int = option(16, "--latent", "latent size K", choices=LATENT_SIZES)
    grid: int = 4
    """Time steps per beat that the VAEs model (4: sixteenth notes, as MusicVAE does); 0 models the data's own
    resolution (24 per beat, the earlier design). On a sixteenth grid each bar becomes three maps: sustain,
    onset (a note starts within half a sixteenth of this one) and "early" (it starts one data step before
    the sixteenth, LPD's most common placement off the grid); decoded notes are drawn back at the data's
    resolution with a per-track last-sixteenth length (`models.decode_notes`)."""
    pitch_patch: int = 12
    time_patch: tuple[int, int] = (2, 2)
    channels: tuple[int, int] = (32, 64)
    hidden: int = 256
    chain_hidden: int = 256
    chain_layers: int = 2
    condition: bool = option(True, "--no-condition", "ablation: the band's VAEs do not see the piano's pitch classes")
    """Encoders and decoders of the non-piano tracks also see the piano's pitch classes per beat (the
    piano's own are zeros): the band follows the piano's harmony."""
    onsets: bool = option(
        True, "--no-onsets", "ablation: decoders write the roll only (no onset channel); notes are thresholded cells"
    )
    """Decoders emit two channels, sustain (the roll) and onset: a note starts only at an onset and lasts
    while sustain is on, so decoded notes are notes, not fragments."""
    plays: bool = option(
        True, "--no-plays", "ablation: no 'this track plays in this segment' head; rests come from thresholds alone"
    )
    """Decoders also predict whether the track plays in the segment at all, so rests are decided rather
    than left to a threshold (and counted notes are placed only where the track plays)."""

    def __post_init__(self):
        if not _is_int(self.latent) or self.latent not in LATENT_SIZES:
            raise ValueError(f"model.latent must be one of {', '.join(map(str, LATENT_SIZES))}, got {self.latent!r}")
        _check_fields(
            self,
            {
                "grid": ("int", 0, 96),
                "pitch_patch": ("int", 1, 128),
                "time_patch": ("ints", 1, 96),
                "channels": ("ints", 1, 4096),
                "hidden": ("int", 1, 65536),
                "chain_hidden": ("int", 1, 65536),
                "chain_layers": ("int", 1, 64),
                "condition": ("bool", None, None),
                "onsets": ("bool", None, None),
                "plays": ("bool", None, None),
            },
        )


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings for the three stages."""

    batch_size: int = option(64, "--batch-size", "global batch (split over all devices)")
    vae_epochs: int = option(20, "--vae-epochs", "epochs of the VAE stage")
    chain_epochs: int = option(50, "--chain-epochs", "epochs of each latent chain stage")
    lr: float = option(1e-3, "--lr", "learning rate of the VAEs")
    lr_decay: float = option(
        1.0,
        "--lr-decay",
        "the VAEs' learning rate falls along a cosine to lr x this by the stage's last step (1: constant)",
    )
    chain_lr: float = 1e-3
    chain_batch_size: int = 256
    # Latent chains work on standardised parameters (per-dimension mean 0, std 1 over the training bars) and
    # see Gaussian noise of this scale on their inputs while training, so that the sampler's noise (sigma,
    # in the same units) keeps the chain on the data instead of driving it off and amplifying.
    chain_noise: float = option(
        0.25, "--chain-noise", "noise (in data standard deviations) on the latent chains' inputs while training"
    )
    beta: float = option(1.0, "--beta", "KL weight after annealing")
    beta_rate: float = 0.999  # beta(step) = (1 - beta_rate**step) * beta, as in MusicVAE
    free_bits: float = option(0.5, "--free-bits", "free nats per latent dimension (the KL term does not charge them)")
    pos_weight: float = option(1.0, "--pos-weight", "weight of note-on cells in the ELBO")
    max_steps_per_epoch: int = option(0, "--max-steps-per-epoch", "cap an epoch (0: whole split)")
    checkpoint_every: int = 200  # steps
    log_every: int = 20  # steps
    seed: int = option(0, "--seed", f"random seed (0 to {MAX_SEED})")
    micro_batch: int = 0
    """Bars of the batch the VAE step computes at once, gradients summed over the slices before one update
    (the same mean gradient): 0 chooses (64 on CPU, whose cache five instruments' activations for more
    bars spill; the whole batch on GPU and TPU). Memory falls with it on any device."""
    calibrate_passages: int = 256
    """After the latent chains, the decoding of encoded latents (reconstructions, variations, the chain) is
    calibrated on this many 32-bar passages of the validation songs so that their notes start as often, at
    the same places in the bar, and last as long as the real ones (`training.calibration.reconstruction_decoding`).
    0: encoded latents decode with the per-bar thresholds of the encode stage alone."""
    precision: str = "auto"
    """Compute dtype of the VAE step: "float32", "bfloat16" (parameters, optimiser state and the loss stay
    float32; the networks run in bfloat16), or "auto": bfloat16 on GPU and TPU, float32 on CPU (where
    bfloat16 has no fast matrix units)."""

    def __post_init__(self):
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"train.precision must be auto, float32 or bfloat16, got {self.precision!r}")
        _check_fields(
            self,
            {
                "batch_size": ("int", 1, 1 << 20),
                "vae_epochs": ("int", 1, 1 << 20),
                "chain_epochs": ("int", 1, 1 << 20),
                "lr": ("float", 1e-12, 10.0),
                "lr_decay": ("float", 0.0, 1.0),
                "chain_lr": ("float", 1e-12, 10.0),
                "chain_batch_size": ("int", 1, 1 << 20),
                "chain_noise": ("float", 0.0, 100.0),
                "beta": ("float", 0.0, 1e6),
                "beta_rate": ("float", 0.0, 1.0),
                "free_bits": ("float", 0.0, 1e6),
                "pos_weight": ("float", 1e-6, 1e6),
                "max_steps_per_epoch": ("int", 0, None),
                "checkpoint_every": ("int", 1, None),
                "log_every": ("int", 1, None),
                "seed": ("int", 0, MAX_SEED),
                "calibrate_passages": ("int", 0, 1 << 20),
                "micro_batch": ("int", 0, 1 << 20),
            },
        )


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
    copy: str = "both"
    """How a bar may repeat earlier material: "track" (each track points at an earlier bar of its own, or
    is new: drums keep their groove while the piano changes), "bar" (the whole bar copies one earlier bar,
    the first version) or "both" (the whole bar repeats an earlier one, as a section comes back, or else
    each track chooses as in "track")."""
    phase_lags: bool = True
    """The pointers' learned preference for the distance t - s also depends on bar t's place in a 16-bar
    phrase (index in the song mod 16), so that repeats come back from four or eight bars before at phrase
    starts; False: one preference per distance."""
    piano_start: bool = True
    """Train on windows that start at a bar where the piano plays, as generated songs and the real
    passages they are measured against do (False: every window, also of songs without a piano)."""
    style: bool = False
    """A song-level code (`prior.style_of`: each track's mean latents and share of bars played over the
    passage) read by every bar of the song prior: trained on each window's own code, drawn at sampling from
    a bank of real training passages' codes (`prior_styles` in the run's stats), so that a song keeps one
    manner throughout. Off by default: on `lpd5`'s latents it left the two-sample classifier where it was,
    even given the real passages' own codes (docs/quality-report.md, "Tried: a song-level code")."""
    own_inputs: float = 0.0
    """Share of the song prior's input bars replaced, while training, by bars it draws itself one step ahead
    at the default sigma (parallel scheduled sampling: `prior.draw_one_step`, its gradient stopped), the
    targets staying the real bars, so that it learns to continue from bars like its own samples rather than
    only from real ones; the share rises linearly from 0 over the first half of the steps. 0: it reads only
    real bars (with `input_noise`)."""
    calibrate_songs: int = 100
    """After training, the decoding of the prior's bars is calibrated so that they start as many notes, at
    the same places in the bar, and hold them as long as real training passages
    (`training.calibration.prior_decoding`): songs drawn per round. 0: the prior's bars decode as
    reconstructions do."""

    def __post_init__(self):
        if not 0.0 <= self.own_inputs <= 1.0:
            raise ValueError(f"prior own_inputs must be between 0 and 1, got {self.own_inputs}")
        if self.calibrate_songs < 0:
            raise ValueError(f"prior calibrate_songs must be 0 or more, got {self.calibrate_songs}")
        if self.copy not in ("both", "track", "bar"):
            raise ValueError(f"prior copy must be 'both', 'track' or 'bar', got {self.copy!r}")
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
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> Config:
        """From `to_dict` output. Fields a saved run predates take the value that matches what it was
        trained with (no key normalisation, no conditioning, one output channel), not today's default.
        Keys this version does not know (a newer version's) are ignored with a `ConfigWarning`; a value of
        the wrong type or out of range is a ValueError naming `source`, the field and what is allowed."""
        if not isinstance(d, dict):
            raise ValueError(f"{source}: expected a mapping of sections data, model and train, got {type(d).__name__}")
        sections = {}
        for name, kind, legacy in (
            ("data", DataConfig, {"key_normalize": False}),
            (
                "model",
                ModelConfig,
                {"condition": False, "onsets": False, "plays": False, "grid": 0, "time_patch": (4, 4)},
            ),
            ("train", TrainConfig, {}),
            ("prior", PriorConfig, {"copy": "bar", "piano_start": False, "phase_lags": False}),
        ):
            part = d.get(name, {})
            if not isinstance(part, dict):
                raise ValueError(f"{source}: section {name!r} must be a mapping of fields, got {type(part).__name__}")
            sections[name] = section_from_dict(kind, {**legacy, **part}, source)
        unknown = sorted(set(d) - set(sections))
        if unknown:
            warnings.warn(
                f"{source}: ignoring unknown section(s) {', '.join(map(repr, unknown))} (written by a newer version?)",
                ConfigWarning,
                stacklevel=2,
            )
        return cls(**sections)

    def replace(self, **sections: dict[str, Any]) -> Config:
        """Return a copy with fields of named sections replaced, e.g. replace(model={'latent': 8})."""
        out = self
        for name, fields in sections.items():
            if fields:
                out = dataclasses.replace(out, **{name: dataclasses.replace(getattr(out, name), **fields)})
        return out


SECTIONS = ("data", "model", "train", "prior")


def apply_settings(cfg: Config, settings: list[str], what: str = "setting") -> Config:
    """`cfg` with `section.field=value` settings applied, each value parsed as its field's type (true/false,
    numbers, comma-separated tuples, text). ValueError names the setting (as `what`) and what was wrong."""
    out = cfg
    for item in settings:
        name, eq, value = item.partition("=")
        section, dot, field = name.strip().partition(".")
        part = getattr(out, section, None) if dot and eq and section in SECTIONS else None
        if part is None or field not in {f.name for f in dataclasses.fields(part)}:
            raise ValueError(
                f"{what} {item!r}: expected SECTION.FIELD=VALUE with SECTION data, model, train or "
                f"prior and a field that --print-config lists"
            )
        current = getattr(part, field)
        try:
            if isinstance(current, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError(value)
                parsed = value.lower() in ("true", "1")
            elif isinstance(current, tuple):
                parsed = tuple(type(current[0])(v) for v in value.split(","))
            else:
                parsed = type(current)(value)
        except ValueError:
            raise ValueError(f"{what} {item!r}: {value!r} is not a {type(current).__name__}") from None
        out = out.replace(**{section: {field: parsed}})
    return out


def load_config(path: str) -> Config:
    """A configuration file: a Python file whose `get_config()` returns a Config (the experiment configs in
    `configs/`), or a JSON file as `Config.to_json` writes it (a run's config.json, `--print-config`'s output).
    ValueError names the file and what is wrong."""
    import importlib.util
    import os

    if not os.path.isfile(path):
        raise ValueError(f"{path}: no such configuration file")
    if path.endswith(".json"):
        try:
            with open(path, encoding="utf-8") as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"{path}: not a readable JSON configuration ({e})") from None
        return Config.from_dict(d, path)
    if not path.endswith(".py"):
        raise ValueError(f"{path}: a configuration file is a .py file with get_config() or a .json file")
    spec = importlib.util.spec_from_file_location(f"_vaejax_config_{abs(hash(os.path.abspath(path)))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    get = getattr(module, "get_config", None)
    cfg = get() if callable(get) else None
    if not isinstance(cfg, Config):
        raise ValueError(f"{path}: expected a function get_config() returning a vaejax.config.Config")
    return cfg


def config_name(path: str) -> str:
    """The name of a configuration file (`configs/lpd5.py` -> `lpd5`), which names its default run folder."""
    import os

    return os.path.splitext(os.path.basename(path))[0]


def section_from_dict(kind, d: dict, source: str):
    """One config section (`DataConfig`, `ModelConfig`, `TrainConfig`) from a mapping read from a file: unknown
    keys ignored with a warning, lists made tuples, every value checked (ValueError naming `source`)."""
    names = {f.name: f for f in dataclasses.fields(kind)}
    section = kind.__name__.replace("Config", "").lower()
    unknown = sorted(str(k) for k in d if k not in names)
    if unknown:
        warnings.warn(
            f"{source}: ignoring unknown field(s) {', '.join(repr(section + '.' + k) for k in unknown)} "
            f"(written by a newer version?)",
            ConfigWarning,
            stacklevel=3,
        )
    fields = {k: v for k, v in d.items() if k in names}
    for k, v in fields.items():
        if isinstance(v, list) and isinstance(names[k].default, tuple):
            fields[k] = tuple(v)
    try:
        return kind(**fields)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{source}: {e}") from None


PRESETS: dict[str, Config] = {
    # Small enough for unit tests to train every stage in seconds on a CPU.
    "tiny": Config(
        model=ModelConfig(latent=8, channels=(8, 16), hidden=32, chain_hidden=32),
        train=TrainConfig(
            batch_size=16, vae_epochs=2, chain_epochs=2, chain_batch_size=32, checkpoint_every=5, log_every=2
        ),
        prior=PriorConfig(
            layers=1,
            dim=16,
            heads=2,
            context=4,
            mixtures=2,
            steps=6,
            batch_size=8,
            warmup=2,
            epochs=2,
            calibrate_songs=4,
        ),
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


def program(default: str) -> str:
    """The name a command's usage line shows: the installed console script's name (`vaejax-sample`, ...)
    when it was started as one, else `default` (`sample.py`, `python -m vaejax.data`, ...)."""
    import os
    import sys

    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return name if name.startswith("vaejax-") else default
