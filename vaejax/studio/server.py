"""The studio's web application: `vaejax-studio` (or `python -m vaejax.studio`) loads a model once and serves a
local page to generate, arrange, vary and continue songs, look at them and listen to them.

Built on Starlette (a small, well-kept ASGI toolkit: routing, static files, a thread pool for blocking work)
served by uvicorn; the page is plain HTML/CSS/JavaScript from `static/`, nothing from the internet.

Generation runs off the event loop (in Starlette's thread pool) and one at a time (a lock around the model:
other tabs' requests wait their turn). Audio is rendered by one worker thread as soon as a song exists, a few
bars at a time, the most recently asked-for song first, and streamed: the page draws the roll at once and can
play after the first bars are rendered. Options are validated with the command line's checks
(`vaejax.config.generation_problems`), uploads with its readers (`vaejax.music.read_song`) and their caps;
a bad request gets a one-line message (HTTP 400 / 404 / 413), never a traceback.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import inspect
import itertools
import logging
import os
import socket
import sys
import tempfile
import threading
import time

import numpy as np

from vaejax import config as config_lib
from vaejax.config import HARMONY, PIANO, TRACKS
from vaejax.music import piano_part
from vaejax.studio import payload

log = logging.getLogger("vaejax.studio")

MAX_BARS = 512
"""Longest song the studio makes or accepts (about 17 minutes at 120 bpm): each result is rendered to audio."""
MAX_UPLOAD_BYTES = 4 << 20
"""Largest upload: the MIDI reader's cap (`vaejax.music.MAX_MIDI_BYTES`), for npz files too."""
KEEP = 32
"""Results kept in memory (the oldest are dropped first); the page's history lists them."""
AUDIO_KEEP = 8
"""Results whose rendered audio stays in memory (older ones render again when asked: a WAV of 32 bars is 3 MB)."""
MODES = ("sample", "arrange", "vary", "continue")
"""What a request can do: a new song, or a band for / a variation of / a continuation of a given song."""
ON_SOURCE = ("arrange", "vary", "continue")
UPLOAD_SUFFIXES = (".mid", ".midi", ".npz")


class StudioError(Exception):
    """A request the studio refuses: `status` (HTTP) and a one-line message for the page."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class AudioWorker:
    """One thread that renders audio streams span by span, always advancing the stream asked for last: a new
    song (or mix) starts sounding at once even while earlier ones are still being rendered; those finish
    afterwards."""

    def __init__(self):
        self._cond = threading.Condition()
        self._queue: list[list] = []  # [priority, stream]
        self._order = itertools.count()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="studio-audio", daemon=True)
        self._thread.start()

    def submit(self, stream: payload.WavStream) -> None:
        """Render `stream`, before everything submitted or bumped earlier."""
        with self._cond:
            for item in self._queue:
                if item[1] is stream:
                    item[0] = next(self._order)
                    break
            else:
                self._queue.append([next(self._order), stream])
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                item = max(self._queue, key=lambda i: i[0])
            more = item[1].step()  # a span of bars, outside the lock
            if not more:
                with self._cond:
                    self._queue = [i for i in self._queue if i is not item]

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()


class Entry:
    """One result (or upload): the song, its roll and JSON, and its audio mixes (rendered once each)."""

    def __init__(
        self,
        ident: str,
        kind: str,
        mt,
        roll: np.ndarray,
        tempo: float,
        params: dict,
        label: str,
        cfg,
        notes: list[str],
        sample_rate: int,
    ):
        self.id, self.kind, self.mt, self.roll, self.tempo = ident, kind, mt, roll, tempo
        self.params, self.label, self.notes, self.sample_rate = params, label, notes, sample_rate
        self.song = payload.song_payload(mt, cfg, roll=roll)
        self.created = time.time()
        self.audio: dict[tuple[int, ...], payload.WavStream] = {}

    def summary(self) -> dict:
        return {
            "id": self.id,
            "kind": self.kind,
            "label": self.label,
            "params": self.params,
            "created": self.created,
            "bars": self.song["bars"],
            "counts": payload.note_counts(self.song),
        }

    def to_json(self) -> dict:
        base = f"api/song/{self.id}"
        return dict(
            self.summary(),
            notes=self.notes,
            song=self.song,
            audio=f"{base}/audio.wav",
            midi=f"{base}/song.mid",
            png=f"{base}/roll.png",
        )


def _keywords(fn) -> list[inspect.Parameter]:
    """The keyword parameters with defaults of a method (none for a missing one)."""
    try:
        params = inspect.signature(fn).parameters.values() if fn is not None else ()
    except (TypeError, ValueError):
        return []
    return [p for p in params if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is not p.empty]


def _option(name, kind, default, label, help_, modes, **extra) -> dict:
    return dict(name=name, type=kind, default=default, label=label, help=help_, modes=list(modes), **extra)


class Studio:
    """A loaded model and the results made with it; thread-safe (the web handlers call it from threads)."""

    def __init__(
        self,
        model,
        *,
        name: str = "",
        keep: int = KEEP,
        max_bars: int = MAX_BARS,
        max_upload: int = MAX_UPLOAD_BYTES,
        stream: bool = True,
    ):
        self.model, self.name, self.keep, self.stream = model, name, keep, stream
        self.max_bars, self.max_upload = max_bars, max_upload
        self.cfg = model.cfg.data
        self._model_lock = threading.Lock()  # one generation at a time
        self._entries_lock = threading.Lock()
        self._plot_lock = threading.Lock()
        self._entries: collections.OrderedDict[str, Entry] = collections.OrderedDict()
        self._ids = itertools.count(1)
        self._audio = AudioWorker()
        self.options = self._build_options()

    # ---- what can be asked ---------------------------------------------------------------------------

    def _build_options(self) -> list[dict]:
        m = self.model
        band = [TRACKS[i] for i in HARMONY]
        opts = [
            _option(
                "bars",
                "int",
                config_lib.BARS,
                "Bars",
                "length of a new song, of a variation (cut), or of the bars added by a continuation",
                ("sample", "vary", "continue"),
                min=1,
                max=self.max_bars,
            ),
            _option(
                "sigma",
                "float",
                config_lib.SIGMA,
                "Sigma",
                "noise on the latent parameters each bar: 0 settles, 0.5 is close to real music, 1 varies more",
                MODES,
                min=0,
                max=None,
                step=0.05,
            ),
            _option("seed", "int", 0, "Seed", "random seed", MODES, min=0, max=2**31 - 1),
            _option(
                "key",
                "int",
                0,
                "Key",
                "semitones from C major / A minor (-6..5); given songs keep theirs",
                ("sample",),
                min=-6,
                max=5,
            ),
            _option(
                "tempo",
                "float",
                None,
                "Tempo",
                f"beats per minute (empty: the given song's, else {config_lib.TEMPO:g})",
                MODES,
                min=10,
                max=400,
                step=1,
            ),
            _option(
                "harmony",
                "float",
                round(float(m.harmony_guidance), 3),
                "Harmony",
                "how strongly the band follows the piano's pitch classes (1: as trained)",
                MODES,
                min=0,
                max=20,
                step=0.5,
            ),
            _option(
                "tracks",
                "tracks",
                band,
                "Tracks",
                "instruments to add to the given piano part",
                ("arrange",),
                choices=band,
            ),
            _option(
                "density",
                "str",
                "data",
                "Density",
                "how often the added tracks play: data (as often as the training data's bands), none (as the "
                "prior reads the piano), a share of bars (0.7) or shares per track (strings=0.9,guitar=0.3)",
                ("arrange",),
            ),
            _option(
                "sustain",
                "float",
                None,
                "Sustain",
                "a note lasts while its sustain probability stays above this share of its value where it "
                "started, in (0, 1) (empty: the factor calibrated per instrument)",
                MODES,
                min=0,
                max=1,
                step=0.05,
                advanced=True,
            ),
            _option(
                "sample",
                "bool",
                False,
                "Sample cells",
                "draw onsets, sustain and rests from their probabilities instead of deciding them",
                MODES,
                advanced=True,
            ),
            _option(
                "min_length",
                "int",
                config_lib.MIN_LENGTH,
                "Min length",
                "drop notes shorter than this many steps (0: keep all)",
                MODES,
                min=0,
                max=96,
                advanced=True,
            ),
            _option(
                "merge_gap",
                "int",
                config_lib.MERGE_GAP,
                "Merge gap",
                "join notes separated by fewer steps than this (0: never)",
                MODES,
                min=0,
                max=96,
                advanced=True,
            ),
            _option(
                "sample_rate",
                "int",
                config_lib.SAMPLE_RATE,
                "Sample rate",
                "WAV sample rate (Hz)",
                MODES,
                min=8000,
                max=96000,
                advanced=True,
            ),
        ]
        known = {o["name"] for o in opts} | {"num", "self"}
        for p in _keywords(m.sample):  # keyword options a newer TrainedModel.sample takes: shown without code
            if p.name in known:  # changes here
                continue
            modes = [
                mode
                for mode, fn in (
                    ("sample", "sample"),
                    ("arrange", "arrange"),
                    ("vary", "vary"),
                    ("continue", "continue_song"),
                )
                if p.name in {q.name for q in _keywords(getattr(m, fn, None))}
            ]
            if p.name == "prior":
                choices = self._priors()
                if len(choices) > 1:
                    default = m.prior_kind(None) if callable(getattr(m, "prior_kind", None)) else p.default
                    opts.append(
                        _option(
                            "prior",
                            "choice",
                            default if default in choices else choices[0],
                            "Prior",
                            "which model proposes the sequence of bars",
                            modes,
                            choices=choices,
                            extra=True,
                        )
                    )
                continue
            kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(p.default))
            if kind is not None:
                opts.append(
                    _option(
                        p.name,
                        kind,
                        p.default,
                        p.name.replace("_", " ").capitalize(),
                        f"TrainedModel.sample({p.name}=...)",
                        modes,
                        extra=True,
                    )
                )
        return opts

    def _priors(self) -> list[str]:
        """The priors this model can generate with: the model's list (`priors`), else the library's
        (`config.PRIORS`) less those the model refuses (`prior_kind` raises for a prior it does not carry)."""
        m = self.model
        names = getattr(m, "priors", None) or getattr(config_lib, "PRIORS", None) or ()
        out = []
        for name in names:
            try:
                if callable(getattr(m, "prior_kind", None)):
                    m.prior_kind(str(name))
            except ValueError:
                continue
            out.append(str(name))
        return out

    def describe(self) -> dict:
        """What the page builds its controls from."""
        m = self.model
        return {
            "model": {
                "name": self.name or os.path.basename(os.path.normpath(m.run_dir)),
                "folder": m.run_dir,
                "latent": m.K,
                "synthetic": m.synthetic,
            },
            "tracks": [{"name": n, "color": payload.COLORS[n]} for n in TRACKS],
            "modes": list(MODES),
            "options": self.options,
            "limits": {
                "max_bars": self.max_bars,
                "max_upload_bytes": self.max_upload,
                "upload_suffixes": list(UPLOAD_SUFFIXES),
                "keep": self.keep,
            },
        }

    # ---- validation ----------------------------------------------------------------------------------

    def parse(self, body: dict) -> tuple[str, dict, str | None]:
        """A request's (mode, options, source id), every problem reported at once as StudioError."""
        if not isinstance(body, dict):
            raise StudioError("the request must be a JSON object")
        mode = body.get("mode", "sample")
        if mode not in MODES:
            raise StudioError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        given = body.get("options") or {}
        if not isinstance(given, dict):
            raise StudioError("options must be a JSON object")
        specs = {o["name"]: o for o in self.options}
        unknown = sorted(set(given) - set(specs))
        problems = [f"unknown option {n!r}" for n in unknown]
        out = {}
        for name, spec in specs.items():
            value = given.get(name, spec["default"])
            if value == "" or value is None:
                value = spec["default"]
            if value is None:  # an optional number left empty: the model's own choice
                out[name] = None
                continue
            try:
                out[name] = self._coerce(spec, value)
            except ValueError as e:
                problems.append(f"{name} {e}")
        # the command line's checks, on every option that is a number at all
        checked = {n: out.get(n) for n in ("bars", "sigma", "tempo", "sample_rate", "harmony", "key", "sustain")}
        ranges = [f"{n} {msg}" for n, msg in config_lib.generation_problems(**checked)]
        problems += ranges
        if not any(p.startswith("bars ") for p in problems) and out.get("bars", 0) > self.max_bars:
            problems.append(f"bars must be at most {self.max_bars} in the studio, got {out['bars']}")
        for name in ("seed", "min_length", "merge_gap"):
            lo, hi = specs[name]["min"], specs[name]["max"]
            if name in out and not lo <= out[name] <= hi:
                problems.append(f"{name} must be an integer from {lo} to {hi}, got {out[name]}")
        if mode == "arrange" and out.get("tracks") == []:
            problems.append("tracks: choose at least one instrument to add")
        if mode == "arrange" and out.get("tracks"):
            from vaejax.trained_model import density_target, parse_density

            try:
                density_target(parse_density(out["density"]), out["tracks"])
            except ValueError as e:
                problems.append(f"density: {e}")
        if problems:
            raise StudioError("; ".join(problems))
        source = body.get("source")
        if mode in ON_SOURCE and not source:
            raise StudioError(f"{mode} needs a song: upload a MIDI or npz file, or pick a result first")
        return mode, out, source if mode in ON_SOURCE else None

    @staticmethod
    def _coerce(spec: dict, value):
        kind = spec["type"]
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise ValueError(f"must be true or false, got {value!r}")
        if kind == "tracks":
            from vaejax.trained_model import track_list

            if isinstance(value, str):
                value = [v for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"must be a list of instrument names, got {value!r}")
            return list(track_list(value)) if value else []
        if kind in ("choice", "str"):
            if not isinstance(value, str) or (kind == "choice" and value not in spec["choices"]):
                raise ValueError(f"must be one of {', '.join(spec.get('choices') or [])}, got {value!r}")
            return value
        if isinstance(value, bool):
            raise ValueError(f"must be a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number, got {value!r}") from None
        if kind == "int":
            if not (number == number and number.is_integer()):
                raise ValueError(f"must be an integer, got {value!r}")
            return int(number)
        return number

    # ---- results -------------------------------------------------------------------------------------

    def get(self, ident: str) -> Entry:
        with self._entries_lock:
            entry = self._entries.get(ident)
        if entry is None:
            raise StudioError(
                f"no song {ident!r} here (the studio keeps its last {self.keep} results; generate or upload again)", 404
            )
        return entry

    def history(self) -> list[dict]:
        with self._entries_lock:
            return [e.summary() for e in reversed(self._entries.values())]

    def _add(self, kind, mt, roll, tempo, params, label, notes, sample_rate) -> Entry:
        ident = f"{next(self._ids)}"
        entry = Entry(ident, kind, mt, roll, tempo, params, label, self.cfg, notes, sample_rate)
        with self._entries_lock:
            self._entries[ident] = entry
            while len(self._entries) > self.keep:
                self._entries.popitem(last=False)
            for old in list(self._entries.values())[:-AUDIO_KEEP]:
                for mix, stream in list(old.audio.items()):
                    if stream.done:
                        del old.audio[mix]
        self.audio(entry)  # the full mix starts rendering now, while the page draws the roll
        return entry

    def audio(self, entry: Entry, keep=None) -> payload.WavStream:
        """The audio of `entry` with the tracks `keep` (indices; default all): rendered once, a few bars at a
        time, by the audio worker (read it with `part(i)` as it grows, or `data()`)."""
        key = tuple(range(len(TRACKS))) if keep is None else tuple(sorted(set(keep)))
        with self._entries_lock:
            stream = entry.audio.get(key)
            if stream is None:
                full = key == tuple(range(len(TRACKS)))
                stream = entry.audio[key] = payload.WavStream(
                    entry.mt, entry.sample_rate, None if full else key, whole=not self.stream
                )
        if not stream.done:
            self._audio.submit(stream)  # new, or asked for again: it goes first
        return stream

    def midi(self, entry: Entry) -> bytes:
        from vaejax import render

        return render.midi_bytes(entry.mt)

    def png(self, entry: Entry) -> bytes:
        from vaejax import render

        with self._plot_lock, tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "roll.png")
            render.plot(entry.mt, path, title=entry.label, cfg=self.cfg)
            with open(path, "rb") as f:
                return f.read()

    # ---- work ----------------------------------------------------------------------------------------

    def generate(self, body: dict) -> Entry:
        """Validate and run one request (blocking: call from a worker thread)."""
        from vaejax import render
        from vaejax.music import BadSong, from_multitrack, tempo_of
        from vaejax.trained_model import parse_density

        mode, o, source_id = self.parse(body)
        src = self.get(source_id) if source_id else None
        m = self.model
        decode = dict(sustain=o["sustain"], sample=o["sample"], min_length=o["min_length"], merge_gap=o["merge_gap"])
        extra = {s["name"]: o[s["name"]] for s in self.options if s.get("extra") and mode in s["modes"]}
        notes: list[str] = []
        tempo = o["tempo"] or (src.tempo if src is not None else None)
        if src is not None and mode == "continue" and src.song["bars"] + o["bars"] > self.max_bars:
            raise StudioError(
                f"the song has {src.song['bars']} bars; with {o['bars']} more it would pass the "
                f"studio's {self.max_bars}"
            )
        m = m.with_options(harmony_guidance=o["harmony"])
        with self._model_lock:
            try:
                if mode == "sample":
                    mt = m.sample(
                        o["bars"],
                        sigma=o["sigma"],
                        seed=o["seed"],
                        num=1,
                        key=o["key"],
                        tempo=o["tempo"],
                        **decode,
                        **extra,
                    )[0]
                    label = f"new song · seed {o['seed']} · sigma {o['sigma']:g}"
                elif mode == "arrange":
                    piano, merged = piano_part(src.roll)
                    if merged:
                        notes.append(
                            f"{src.label} has no piano part (programs 0-7): all its pitched tracks "
                            f"were arranged as one part"
                        )
                    mt = m.arrange(
                        piano,
                        sigma=o["sigma"],
                        seed=o["seed"],
                        tracks=o["tracks"],
                        density=parse_density(o["density"]),
                        tempo=tempo,
                        **decode,
                        **extra,
                    )
                    label = f"arrangement of {src.label} · {', '.join(o['tracks'])}"
                elif mode == "vary":
                    mt = m.vary(
                        src.roll, sigma=o["sigma"], seed=o["seed"], bars=o["bars"], tempo=tempo, **decode, **extra
                    )
                    label = f"variation of {src.label} · sigma {o['sigma']:g}"
                else:
                    more = m.continue_song(
                        src.roll, o["bars"], sigma=o["sigma"], seed=o["seed"], tempo=tempo, **decode, **extra
                    )
                    tail = from_multitrack(more, self.cfg)
                    whole = np.concatenate([src.roll, tail], axis=1)
                    mt = render.to_multitrack(whole, tempo=tempo or m.tempo, name="continuation", cfg=self.cfg)
                    notes.append(
                        f"bars 1-{src.song['bars']} are {src.label}; the following "
                        f"{-(-tail.shape[1] // (self.cfg.resolution * self.cfg.beats_per_bar))} are new"
                    )
                    label = f"continuation of {src.label}"
            except (ValueError, BadSong) as e:
                raise StudioError(str(e)) from None
        roll = from_multitrack(mt, self.cfg)
        silent = render.silent_tracks(mt)
        if len(silent) == len(TRACKS):
            notes.append("the song is silent (no track has a note)")
        elif silent:
            notes.append(f"{', '.join(silent)} play no note")
        params = dict(o, mode=mode)
        if src is not None:
            params["source"] = src.id
        return self._add(mode, mt, roll, tempo_of(mt), params, label, notes, o["sample_rate"])

    def upload(self, filename: str, data: bytes) -> Entry:
        """A MIDI or npz file as a new entry (blocking: call from a worker thread)."""
        from vaejax import render
        from vaejax.music import BadSong, read_song

        name = os.path.basename(filename or "").strip() or "upload"
        suffix = os.path.splitext(name)[1].lower()
        if suffix not in UPLOAD_SUFFIXES:
            raise StudioError(f"{name}: unsupported file type {suffix or '(none)'!r} (expected .mid, .midi or .npz)")
        if len(data) > self.max_upload:
            raise StudioError(
                f"{name}: {len(data) / 2**20:.1f} MiB, more than the studio's cap of {self.max_upload >> 20} MiB", 413
            )
        if not data:
            raise StudioError(f"{name}: the file is empty")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "upload" + suffix)
            with open(path, "wb") as f:
                f.write(data)
            try:
                song = read_song(path, self.cfg, require_44=False)
            except BadSong as e:
                raise StudioError(f"{name}: {e}") from None
        bar = self.cfg.resolution * self.cfg.beats_per_bar
        bars = -(-song.roll.shape[1] // bar)
        if bars > self.max_bars:
            raise StudioError(f"{name}: {bars} bars, more than the studio's {self.max_bars}")
        if not song.roll.any():
            raise StudioError(f"{name}: no notes in the LPD-5 instruments' range")
        mt = render.to_multitrack(song.roll, tempo=song.tempo, name=name, cfg=self.cfg)
        notes = []
        if not song.roll[PIANO].any():
            notes.append(f"{name} has no piano part (programs 0-7): arranging it uses all its pitched tracks")
        return self._add(
            "upload", mt, song.roll, song.tempo, {"mode": "upload", "file": name}, name, notes, config_lib.SAMPLE_RATE
        )

    def warm(self, bars: int = config_lib.BARS) -> float:
        """Compile the default generation once (the first click is then as fast as the next)."""
        t = time.perf_counter()
        with self._model_lock:
            self.model.sample(bars, seed=0)
        return time.perf_counter() - t

    def close(self) -> None:
        self._audio.close()


# ---- the web application ---------------------------------------------------------------------------------

LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def make_app(studio: Studio, allowed_hosts: list[str] | None = None):
    """The Starlette application serving `studio`; with `allowed_hosts`, requests naming another host are
    refused (a studio on the loopback address then cannot be reached through a web page's DNS tricks)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def guarded(fn):
        try:
            return await fn()
        except StudioError as e:
            return error(str(e), e.status)
        except Exception as e:  # a bug: the page gets one line, the console the traceback
            log.exception("studio request failed")
            return error(f"internal error ({type(e).__name__}: {str(e)[:200]}); see the studio's console", 500)

    async def index(request: Request):
        return FileResponse(os.path.join(payload.STATIC, "index.html"), headers={"Cache-Control": "no-cache"})

    async def options(request: Request):
        return JSONResponse(studio.describe())

    async def generate(request: Request):
        async def go():
            try:
                body = await request.json()
            except ValueError:
                raise StudioError("the request body is not JSON") from None
            entry = await run_in_threadpool(studio.generate, body)
            return JSONResponse(entry.to_json())

        return await guarded(go)

    async def upload(request: Request):
        async def go():
            name = request.query_params.get("name", "")
            declared = request.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > studio.max_upload:
                raise StudioError(
                    f"{name or 'upload'}: {int(declared) / 2**20:.1f} MiB, more than the studio's "
                    f"cap of {studio.max_upload >> 20} MiB",
                    413,
                )
            chunks, size = [], 0
            async for chunk in request.stream():
                size += len(chunk)
                if size > studio.max_upload:
                    raise StudioError(
                        f"{name or 'upload'}: more than the studio's cap of {studio.max_upload >> 20} MiB", 413
                    )
                chunks.append(chunk)
            entry = await run_in_threadpool(studio.upload, name, b"".join(chunks))
            return JSONResponse(entry.to_json())

        return await guarded(go)

    async def history(request: Request):
        return JSONResponse({"history": studio.history()})

    async def song(request: Request):
        async def go():
            return JSONResponse(studio.get(request.path_params["id"]).to_json())

        return await guarded(go)

    def attachment(entry: Entry, ext: str) -> dict:
        return {"Content-Disposition": f'attachment; filename="vaejax-{entry.kind}-{entry.id}.{ext}"'}

    async def audio(request: Request):
        async def go():
            entry = studio.get(request.path_params["id"])
            keep = None
            tracks = request.query_params.get("tracks")
            if tracks is not None:
                try:
                    keep = [int(t) for t in tracks.split(",") if t != ""]
                except ValueError:
                    raise StudioError(f"tracks must be track numbers 0-4, got {tracks!r}") from None
                if any(not 0 <= t < len(TRACKS) for t in keep):
                    raise StudioError(f"tracks must be track numbers 0-4, got {tracks!r}")
            stream = studio.audio(entry, keep)

            async def pieces():  # sent as the bars are rendered: playback starts before the song is done
                i = 0
                while True:
                    try:
                        piece = await run_in_threadpool(stream.part, i)
                    except RuntimeError:
                        log.exception("studio audio failed")
                        return  # the page sees a short file and says the audio could not be loaded
                    if piece is None:
                        return
                    yield piece
                    i += 1

            headers = dict(attachment(entry, "wav"), **{"Content-Length": str(stream.size)})
            return StreamingResponse(pieces(), media_type="audio/wav", headers=headers)

        return await guarded(go)

    async def midi(request: Request):
        async def go():
            entry = studio.get(request.path_params["id"])
            data = await run_in_threadpool(studio.midi, entry)
            return Response(data, media_type="audio/midi", headers=attachment(entry, "mid"))

        return await guarded(go)

    async def png(request: Request):
        async def go():
            entry = studio.get(request.path_params["id"])
            data = await run_in_threadpool(studio.png, entry)
            return Response(data, media_type="image/png", headers=attachment(entry, "png"))

        return await guarded(go)

    routes = [
        Route("/", index),
        Route("/api/options", options),
        Route("/api/generate", generate, methods=["POST"]),
        Route("/api/upload", upload, methods=["POST"]),
        Route("/api/history", history),
        Route("/api/song/{id}", song),
        Route("/api/song/{id}/audio.wav", audio),
        Route("/api/song/{id}/song.mid", midi),
        Route("/api/song/{id}/roll.png", png),
        Mount("/static", StaticFiles(directory=payload.STATIC), name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        studio.close()

    middleware = []
    if allowed_hosts:
        from starlette.middleware import Middleware
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    app.state.studio = studio
    return app


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vaejax-studio",
        description="Generate, arrange, vary and listen to songs in your browser: loads a model once and serves "
        "a local page (no internet needed).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=None,
        help="run directory, packaged model folder or packaged model name (default: the latest run, "
        "runs/LATEST, else the packaged model lpd5)%(default).0s",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (0.0.0.0: every network interface)")
    p.add_argument("--port", type=int, default=8765, help="port (0: any free port)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser tab")
    p.add_argument("--no-warm", action="store_true", help="do not compile the default generation before serving")
    p.add_argument(
        "--whole-audio",
        action="store_true",
        help="render each song's audio whole before it plays (peak-normalised, as sample.py writes it) "
        "instead of streaming it a few bars at a time",
    )
    p.add_argument("--accelerator", default="auto", choices=("auto", "cpu", "gpu", "tpu"))
    return p


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or StudioError naming the address and why."""
    if not 0 <= port <= 65535:
        raise StudioError(f"--port must be from 0 to 65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise StudioError(f"--host {host}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise StudioError(
            f"--host {host} --port {port}: {e.strerror} (choose another with --port, or 0 for any free port)"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for name in ("jax", "absl", "orbax"):
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as e:
        print(f"error: the studio needs {e.name}: pip install 'vaejax[studio]'", file=sys.stderr)
        return 2
    try:
        sock = bind(args.host, args.port)
    except StudioError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from vaejax import devices, trained_model
    from vaejax.checkpoint import CheckpointError
    from vaejax.runs import RunError

    try:
        devices.select(args.accelerator)
        folder, how = trained_model.resolve(args.model)
        print(f"loading {how}", file=sys.stderr)
        model = trained_model.open_folder(folder)
    except (devices.AcceleratorError, RunError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        sock.close()
        return 2
    studio = Studio(model, name=args.model or os.path.basename(os.path.normpath(folder)), stream=not args.whole_audio)
    if not args.no_warm:
        print(f"compiled the default generation in {studio.warm():.1f} s", file=sys.stderr)
    host, port = sock.getsockname()[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    url = f"http://{'[' + shown + ']' if ':' in shown else shown}:{port}/"
    if host not in ("127.0.0.1", "::1", "localhost"):
        print(f"note: serving on {host}: other machines on the network can use this studio", file=sys.stderr)
    print(f"vaejax studio: {url}  (Ctrl+C to stop)", file=sys.stderr, flush=True)
    if not args.no_browser:
        import webbrowser

        threading.Timer(0.3, lambda: webbrowser.open(url)).start()
    loopback = host in ("127.0.0.1", "::1") or host.startswith("127.")
    app = make_app(studio, LOOPBACK_NAMES if loopback else None)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
