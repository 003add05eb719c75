"""Reading LPD npz and MIDI files into binary LPD-5 pianorolls, and cutting them into bars.

A song is held as a boolean array `roll[track, time, pitch]` with the five LPD-5 tracks (Drums, Piano,
Guitar, Bass, Strings), `resolution` steps per beat and `num_pitches` rows from `lowest_pitch`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import zipfile
from dataclasses import dataclass

import numpy as np

from vaejax.config import PIANO, TEMPO, TRACKS, DataConfig

LPD5_PROGRAMS = (0, 0, 24, 32, 48)
"""Program written for each LPD-5 track (drums go on the drum channel)."""

MAX_SONG_BARS = 4096
"""Songs longer than this many 4/4 bars (about 2.7 hours at 100 bpm) are skipped before their roll is built."""
MAX_NOTES = 200_000
"""MIDI files with more notes than this are skipped (no song in LPD comes near)."""
MAX_FILE_BYTES = 64 << 20
"""npz files whose members would inflate past this are refused unread (zip bombs)."""
MAX_MIDI_BYTES = 4 << 20
"""MIDI files larger than this are refused unread (parsing one takes seconds and hundreds of MB)."""
MAX_INFO_BYTES = 1 << 20
"""An npz's info.json larger than this is refused (a pypianoroll file's is a few KB; millions of JSON objects
cost gigabytes to parse)."""
READ_BUDGET_MB = 512
"""Memory one file may take to read (`read_song`): estimated from its declared sizes before anything of that
size is allocated, and refused above this (measured peaks: BENCHMARKS.md, memory budgets)."""
READ_TIMEOUT = 60.0
"""Seconds one file may take to read (`prepare --timeout`, `sample.py --read-timeout`)."""
NNZ_CHUNK = 1 << 20
"""Cells of a sparse npz track converted at a time (bounds the index arrays' temporaries)."""
MIDI_EVENT_BYTES = 480
"""Memory per MIDI event while a file is read (mido's and pretty_midi's objects; measured about 460)."""
MIDI_SUFFIXES = (".mid", ".midi")
SUFFIXES = (".npz",) + MIDI_SUFFIXES
_MSD_ID = re.compile(r"^TR[A-Z0-9]{16}$")


class BadSong(Exception):
    """A file that cannot become training bars; the message is a one-line reason."""


class ReadTimeout(BaseException):
    """Raised inside a read that ran past its time limit (a BaseException: no `except Exception` swallows it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None):
    """Raise `ReadTimeout` in the enclosed code after `seconds` (main thread with timer signals only; elsewhere,
    and for None, no limit)."""
    import signal
    import threading

    if not seconds or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def alarm(signum, frame):
        raise ReadTimeout()

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def _budget(mb: float, what: str) -> None:
    if mb > READ_BUDGET_MB:
        raise BadSong(
            f"{what} would need about {mb:.0f} MiB to read, more than the budget of {READ_BUDGET_MB} MiB per file"
        )


def lpd5_track(program: int, is_drum: bool) -> int | None:
    """LPD-5 track index for a General MIDI program, or None if LPD-5 drops it."""
    if is_drum:
        return 0
    if 0 <= program <= 7:
        return 1
    if 24 <= program <= 31:
        return 2
    if 32 <= program <= 39:
        return 3
    if program < 96 or 104 <= program <= 111:
        return 4
    return None


def song_id(path: str) -> str:
    """Stable id of a song: the MSD id folder for LPD files, otherwise the file name without suffix."""
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if _MSD_ID.match(parent):
        return parent
    return os.path.splitext(os.path.basename(path))[0]


@dataclass
class Song:
    """A binarised LPD-5 song."""

    name: str
    roll: np.ndarray  # [5, T, P] bool
    tempo: float  # beats per minute at the start


def _empty_roll(cfg: DataConfig, steps: int) -> np.ndarray:
    return np.zeros((len(TRACKS), steps, cfg.num_pitches), dtype=bool)


_DESCR = re.compile(r"""['"]descr['"]\s*:\s*['"]([^'"]+)['"]""")
_FORTRAN = re.compile(r"""['"]fortran_order['"]\s*:\s*(True|False)""")
_SHAPE = re.compile(r"""['"]shape['"]\s*:\s*\(([^)]*)\)""")


def _npy(blob: bytes, name: str) -> np.ndarray:
    """Parse one .npy member without unpickling (object dtypes are refused) and without numpy's slow
    literal_eval of the header (most LPD arrays are tiny, so header parsing dominated reading)."""
    if blob[:6] != b"\x93NUMPY":
        raise BadSong(f"corrupt npz ({name} is not a .npy array)")
    if blob[6] == 1:
        hlen, start = int.from_bytes(blob[8:10], "little"), 10
    else:
        hlen, start = int.from_bytes(blob[8:12], "little"), 12
    header = blob[start : start + hlen].decode("latin1")
    descr, fortran, shape = _DESCR.search(header), _FORTRAN.search(header), _SHAPE.search(header)
    if not (descr and fortran and shape):
        raise BadSong(f"corrupt npz (unreadable header of {name})")
    dtype = np.dtype(descr.group(1))
    if dtype.hasobject:
        raise BadSong("holds pickled objects (refused: never unpickled)")
    dims = tuple(int(d) for d in shape.group(1).replace(" ", "").split(",") if d)
    count = int(np.prod(dims)) if dims else 1
    offset = start + hlen
    if len(blob) - offset < count * dtype.itemsize:
        raise BadSong(f"corrupt npz ({name} is truncated)")
    arr = np.frombuffer(blob, dtype=dtype, count=count, offset=offset)
    return arr.reshape(dims, order="F" if fortran.group(1) == "True" else "C")


def _load_npz(path: str) -> dict:
    """All members of an npz: arrays by name (without .npy), other members (info.json) as bytes. Members
    that would inflate past MAX_FILE_BYTES are refused before they are read (zip bombs)."""
    out = {}
    with zipfile.ZipFile(path) as zf:
        members = zf.infolist()
        if len(members) > 1024:
            raise BadSong(f"npz with {len(members)} members (a pypianoroll file has a few per track)")
        size = os.path.getsize(path)
        for info in members:
            if info.compress_size > size or info.header_offset > size:
                raise BadSong(f"corrupt npz ({info.filename} claims {info.compress_size} bytes in a {size}-byte file)")
        total = sum(info.file_size for info in members)
        if total > MAX_FILE_BYTES:
            raise BadSong(
                f"npz members would inflate to {total / 2**20:.0f} MiB, more than the cap of {MAX_FILE_BYTES >> 20} MiB"
            )
        for info in members:
            if info.filename == "info.json" and info.file_size > MAX_INFO_BYTES:
                raise BadSong(
                    f"info.json of {info.file_size / 2**20:.1f} MiB, more than the cap of "
                    f"{MAX_INFO_BYTES >> 20} MiB (a pypianoroll file's is a few KB)"
                )
            blob = zf.read(info)
            if info.filename.endswith(".npy"):
                out[info.filename[:-4]] = _npy(blob, info.filename)
            else:
                out[info.filename] = blob
    return out


def read_npz(path: str, cfg: DataConfig = DataConfig()) -> Song:
    """Read an LPD / LPD-5 npz (pypianoroll 0.x or 1.x layout) without unpickling or densifying.

    Tracks are merged into LPD-5 by program (maximum merge, i.e. logical or after binarisation).

    Raises:
      BadSong: the file is unreadable, holds pickled objects, or is not 4/4.
    """
    try:
        z = _load_npz(path)
        if "info.json" not in z:
            raise BadSong("no info.json: not a pypianoroll npz")
        info = json.loads(bytes(z["info.json"]).decode("utf-8"))
        res = int(info.get("resolution") or info.get("beat_resolution") or 0)
        if res <= 0:
            raise BadSong("info.json has no resolution")
        downbeat = z.get("downbeat")
        tempo_arr = z.get("tempo")
        tracks = []
        idx = 0
        while str(idx) in info:
            key = f"pianoroll_{idx}_csc"
            meta = info[str(idx)]
            tracks.append(
                (
                    int(meta.get("program", 0)),
                    bool(meta.get("is_drum", False)),
                    z[key + "_data"],
                    z[key + "_indices"],
                    z[key + "_indptr"],
                    tuple(int(v) for v in z[key + "_shape"]),
                )
            )
            idx += 1
    except BadSong:
        raise
    except Exception as e:  # zipfile, json and numpy raise many types for damaged bytes
        raise BadSong(f"corrupt npz ({type(e).__name__}: {str(e)[:120]})") from None

    if not tracks:
        raise BadSong("no tracks")
    if any(len(shape) != 2 or shape[0] < 0 or shape[1] <= 0 for *_, shape in tracks):
        raise BadSong(f"corrupt npz (track shapes {[shape for *_, shape in tracks][:3]})")
    length = max(shape[0] for *_, shape in tracks)
    _check_size(length / res / 4, 0)  # the cells themselves are bounded by the members' inflated size
    if downbeat is not None and downbeat.size:
        beats = np.flatnonzero(downbeat)
        if beats.size == 0 or beats[0] != 0:
            raise BadSong("first downbeat is not at time 0")
        gaps = np.unique(np.diff(beats))
        if gaps.size and not np.array_equal(gaps, [4 * res]):
            raise BadSong(f"not 4/4 (bar lengths {gaps[:4].tolist()} steps at {res} steps per beat)")
    steps = length * cfg.resolution // res
    members = sum(a.nbytes for a in z.values() if isinstance(a, np.ndarray))
    # the members read, the roll, the bars cut from it (a copy and its packing) and one chunk's index arrays
    _budget((members + 2.2 * len(TRACKS) * steps * cfg.num_pitches + 48 * NNZ_CHUNK) / 2**20, "this npz")
    roll = _empty_roll(cfg, steps)
    for program, is_drum, data, indices, indptr, shape in tracks:
        t = lpd5_track(program, is_drum)
        if t is None or data.size == 0:
            continue
        if len(indptr) != shape[1] + 1 or indptr[-1] != data.size or indices.size != data.size:
            raise BadSong("corrupt npz (inconsistent sparse arrays)")
        if (np.diff(indptr) < 0).any():
            raise BadSong("corrupt npz (sparse column pointers go backwards)")
        for lo in range(0, data.size, NNZ_CHUNK):  # column of each cell by search: no per-cell index copies
            hi = min(lo + NNZ_CHUNK, data.size)
            pitch = np.searchsorted(indptr, np.arange(lo, hi), side="right") - 1 - cfg.lowest_pitch
            keep = (data[lo:hi] > cfg.velocity_threshold) & (pitch >= 0) & (pitch < cfg.num_pitches)
            rows = indices[lo:hi][keep].astype(np.int64)
            if res != cfg.resolution:
                rows = rows * cfg.resolution // res
            ok = (rows >= 0) & (rows < steps)
            roll[t, rows[ok], pitch[keep][ok]] = True
    tempo = float(tempo_arr[0]) if tempo_arr is not None and tempo_arr.size else TEMPO
    return Song(name=song_id(path), roll=roll, tempo=tempo)


def _beat_positions(times: np.ndarray, beats: np.ndarray) -> np.ndarray:
    """Map seconds to fractional beats on the song's beat grid (extrapolating at the last tempo)."""
    if beats.size < 2:
        beats = np.array([0.0, 0.5])
    idx = np.arange(beats.size, dtype=np.float64)
    pos = np.interp(times, beats, idx)
    last = beats[-1]
    period = beats[-1] - beats[-2]
    after = times > last
    pos[after] = idx[-1] + (times[after] - last) / period
    return pos


def _check_size(bars: float, notes: int, what: str = "notes") -> None:
    """Refuse a song too long or too dense to read (before anything of its size is allocated)."""
    if not bars <= MAX_SONG_BARS:
        raise BadSong(f"{bars:.0f} bars long, more than the cap of {MAX_SONG_BARS} bars")
    if notes > MAX_NOTES:
        raise BadSong(f"{notes} {what}, more than the cap of {MAX_NOTES}")


def _midi_extent(path: str):
    """A MIDI file parsed by mido, checked before pretty_midi builds its tick tables and the roll is allocated:
    size, chunk lengths (a chunk may not claim more bytes than the file holds: readers would reserve them),
    then length in beats and note count from the events alone (tempo does not matter to beats)."""
    import io

    import mido

    size = os.path.getsize(path)
    if size > MAX_MIDI_BYTES:
        raise BadSong(f"{size / 2**20:.1f} MiB, more than the cap of {MAX_MIDI_BYTES >> 20} MiB for a MIDI file")
    with open(path, "rb") as f:
        blob = f.read()
    pos = 0
    while pos + 8 <= len(blob):
        length = int.from_bytes(blob[pos + 4 : pos + 8], "big")
        if length > len(blob) - pos - 8:
            raise BadSong(
                f"not a readable MIDI file (a chunk at byte {pos} claims {length} bytes, {len(blob) - pos - 8} remain)"
            )
        pos += 8 + length
    try:
        mid = mido.MidiFile(file=io.BytesIO(blob))
    except Exception as e:  # mido raises many types for bad bytes
        raise BadSong(f"not a readable MIDI file ({type(e).__name__}: {str(e)[:80]})") from None
    if mid.type == 2:
        raise BadSong("MIDI type 2 (independent sequences) is not supported")
    tpb = mid.ticks_per_beat
    if not isinstance(tpb, int) or tpb <= 0:
        raise BadSong(f"unusable ticks per beat ({tpb!r}; SMPTE time division is not supported)")
    end = notes = events = 0
    for track in mid.tracks:
        tick = 0
        events += len(track)
        for msg in track:
            tick += msg.time
            notes += msg.type == "note_on" and msg.velocity > 0
        end = max(end, tick)
    _check_size(end / tpb / 4, notes)
    # pretty_midi keeps an object per event (about 460 bytes each, measured), then the roll and its bars
    _budget((events * MIDI_EVENT_BYTES + 2.2 * len(TRACKS) * (end / tpb) * 24 * 84) / 2**20, "this MIDI file")
    return mid


def read_midi(path: str, cfg: DataConfig = DataConfig(), *, require_44: bool = True) -> Song:
    """Read a MIDI file, quantise notes to `cfg.resolution` steps per beat and merge into LPD-5.

    Only 4/4 is accepted: a file with any other time signature is refused (not split). A file without
    time-signature events is taken as 4/4, as the MIDI standard says. The first downbeat is at time 0.
    `require_44=False` reads any meter onto the beat grid (used to arrange a given part, which is then cut
    every four beats).

    Raises:
      BadSong: unreadable file, no notes, or a meter other than 4/4.
    """
    import pretty_midi

    mid = _midi_extent(path)
    try:  # the parsed file is handed on: a large file is parsed once, not twice
        pm = pretty_midi.PrettyMIDI(mido_object=mid)
    except Exception as e:  # mido/pretty_midi raise many types for bad bytes
        raise BadSong(f"not a readable MIDI file ({type(e).__name__}: {str(e)[:80]})") from None
    for ts in pm.time_signature_changes if require_44 else ():
        if (ts.numerator, ts.denominator) != (4, 4):
            raise BadSong(f"time signature {ts.numerator}/{ts.denominator} at {ts.time:.2f} s; only 4/4 is used")
    if not any(inst.notes for inst in pm.instruments):
        raise BadSong("no notes")
    beats = np.asarray(pm.get_beats(), dtype=np.float64)
    end = max(n.end for inst in pm.instruments for n in inst.notes)
    # a MIDI file ends with its last note: round up to whole segments so that a last bar played only in
    # part is kept rather than dropped
    steps = int(np.ceil(_beat_positions(np.array([end]), beats)[0] * cfg.resolution - 1e-6))
    steps = max(1, -(-steps // cfg.steps)) * cfg.steps
    _check_size(steps / cfg.resolution / 4, 0)  # the beat grid can stretch a file's ticks (tempo-less files)
    roll = _empty_roll(cfg, steps)
    for inst in pm.instruments:
        t = lpd5_track(inst.program, inst.is_drum)
        if t is None or not inst.notes:
            continue
        notes = np.array([(n.start, n.end, n.pitch, n.velocity) for n in inst.notes], dtype=np.float64)
        on = np.rint(_beat_positions(notes[:, 0], beats) * cfg.resolution).astype(np.int64)
        off = np.rint(_beat_positions(notes[:, 1], beats) * cfg.resolution).astype(np.int64)
        off = np.maximum(off, on + 1)
        pitch = notes[:, 2].astype(np.int64) - cfg.lowest_pitch
        keep = (notes[:, 3] > cfg.velocity_threshold) & (pitch >= 0) & (pitch < cfg.num_pitches)
        for a, b, p in zip(on[keep], off[keep], pitch[keep]):
            roll[t, a:b, p] = True
    tempo = float(pm.get_tempo_changes()[1][0]) if len(pm.get_tempo_changes()[1]) else TEMPO
    return Song(name=song_id(path), roll=roll, tempo=tempo)


def read_song(
    path: str, cfg: DataConfig = DataConfig(), *, require_44: bool = True, timeout: float | None = None
) -> Song:
    """Read an npz or MIDI file by its suffix, within `READ_BUDGET_MB` of memory and (in the main thread)
    `timeout` seconds. Only regular files are opened: a FIFO or a device would block or never end."""
    try:
        st = os.stat(path)
    except OSError as e:
        why = "no such file" if isinstance(e, FileNotFoundError) else f"cannot be read ({e.strerror})"
        raise BadSong(why) from None
    if not stat.S_ISREG(st.st_mode):
        raise BadSong("not a regular file (a folder, FIFO or device is not read)")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in SUFFIXES:
        raise BadSong(f"unsupported file type {suffix!r} (expected .npz, .mid or .midi)")
    try:
        with time_limit(timeout):
            if suffix == ".npz":
                return read_npz(path, cfg)
            return read_midi(path, cfg, require_44=require_44)
    except ReadTimeout:
        raise BadSong(f"took longer than {timeout:g} s to read") from None
    except MemoryError:
        raise BadSong("ran out of memory while reading") from None


MAJOR_SCALE = np.array([0, 2, 4, 5, 7, 9, 11])
"""Pitch classes of C major (and of A minor: the same diatonic set)."""


def scale_masks() -> np.ndarray:
    """`[12, 12]` bool: row r marks the pitch classes of the diatonic scale whose major tonic is r."""
    out = np.zeros((12, 12), bool)
    for r in range(12):
        out[r, (MAJOR_SCALE + r) % 12] = True
    return out


def pitch_class_histogram(roll: np.ndarray, lowest_pitch: int = 24) -> np.ndarray:
    """`[12]` sounding cells per pitch class (pitch % 12) over the pitched tracks of a `[5, ..., P]` roll."""
    per_pitch = roll[1:].reshape(-1, roll.shape[-1]).sum(axis=0, dtype=np.int64)  # drums carry no pitch class
    hist = np.zeros(12, np.int64)
    np.add.at(hist, (np.arange(per_pitch.shape[0]) + lowest_pitch) % 12, per_pitch)
    return hist


def key_shift(roll: np.ndarray, lowest_pitch: int = 24) -> int:
    """Semitones (-6..+5) that move the roll's best-fitting diatonic scale onto C major's pitch classes
    (0 for a roll without pitched notes; ties go to the smallest move)."""
    hist = pitch_class_histogram(roll, lowest_pitch)
    if hist.sum() == 0:
        return 0
    fit = scale_masks().astype(np.int64) @ hist  # cells inside each of the 12 scales
    shifts = (6 - np.arange(12)) % 12 - 6  # tonic r -> -r folded into -6..+5
    best = np.flatnonzero(fit == fit.max())
    return int(min(shifts[best], key=lambda s: (abs(s), s)))


def transpose(roll: np.ndarray, shift: int) -> np.ndarray:
    """Move the pitched tracks of a `[5, T, P]` (or `[5, ..., P]`) roll by `shift` semitones; notes pushed
    past the pitch range are dropped. Drums stay as they are."""
    if shift == 0:
        return roll
    out = np.zeros_like(roll)
    out[0] = roll[0]
    p = roll.shape[-1]
    if abs(shift) < p:
        if shift > 0:
            out[1:, ..., shift:] = roll[1:, ..., : p - shift]
        else:
            out[1:, ..., : p + shift] = roll[1:, ..., -shift:]
    return out


def to_bars(roll: np.ndarray, cfg: DataConfig = DataConfig()) -> np.ndarray:
    """Cut a song `[5, T, P]` into segments `[n, 5, steps, P]`; a trailing partial segment is dropped."""
    n = roll.shape[1] // cfg.steps
    bars = roll[:, : n * cfg.steps].reshape(roll.shape[0], n, cfg.steps, roll.shape[2])
    return bars.transpose(1, 0, 2, 3)


def find_songs(src: str, problems: list | None = None) -> list[str]:
    """All .npz/.mid/.midi files under `src` (or `src` itself), sorted for a stable order. Symbolic links
    are followed, but a folder reached again (a link loop) is entered once and reported in `problems` (a
    list of {"path", "reason"} it appends to), as are folders that cannot be listed."""
    if os.path.isfile(src):
        return [src]
    found, seen = [], set()

    def note(path, reason):
        if problems is not None:
            problems.append({"path": path, "reason": reason})

    def walk(folder):
        try:
            st = os.stat(folder)
        except OSError as e:
            note(folder, f"cannot be read ({e.strerror})")
            return
        if (st.st_dev, st.st_ino) in seen:
            note(folder, "a symbolic link loop (this folder was already searched; not followed again)")
            return
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as e:
            note(folder, f"cannot be listed ({e.strerror})")
            return
        for entry in entries:
            try:
                is_dir = entry.is_dir()
                is_file = not is_dir and entry.is_file()
            except OSError:
                is_dir = is_file = False
            if is_dir:
                walk(entry.path)
            elif is_file and entry.name.lower().endswith(SUFFIXES):
                found.append(entry.path)
            elif not is_dir and not is_file and entry.is_symlink() and entry.name.lower().endswith(SUFFIXES):
                note(entry.path, "a broken symbolic link")

    walk(src)
    return sorted(found)


def from_multitrack(mt, cfg: DataConfig = DataConfig()) -> np.ndarray:
    """`pypianoroll.Multitrack` with the five LPD-5 tracks in order -> `[5, T, P]` bool roll."""
    rolls = [np.asarray(tr.pianoroll)[:, cfg.lowest_pitch : cfg.lowest_pitch + cfg.num_pitches] > 0 for tr in mt.tracks]
    return np.stack(rolls)


def tempo_of(mt, default: float = TEMPO) -> float:
    """A Multitrack's first tempo in BPM (pypianoroll keeps tempo as `[T]` or `[T, 1]`)."""
    tempo = None if mt.tempo is None else np.asarray(mt.tempo, np.float64).ravel()
    return float(tempo[0]) if tempo is not None and tempo.size and np.isfinite(tempo[0]) and tempo[0] > 0 else default


def note_runs(roll: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Notes of a `[..., T, P]` bool roll as runs of "on" along time: (index of the leading axes and pitch
    flattened as `[..., P]`, start, end) arrays, end exclusive, ordered by (leading index, pitch, start)."""
    a = np.swapaxes(roll, -1, -2).astype(np.int8)  # [..., P, T]
    a = np.pad(a.reshape(-1, a.shape[-1]), ((0, 0), (1, 1)))
    d = np.diff(a, axis=1)
    row, start = np.nonzero(d == 1)
    _, end = np.nonzero(d == -1)  # nonzero orders by (row, time): starts and ends pair up
    return row, start, end


def notes_per_pitch(roll: np.ndarray) -> np.ndarray:
    """`[pitches]` counts of the notes (runs of "on") in a `[steps, pitches]` bool roll."""
    return np.bincount(note_runs(roll)[0], minlength=roll.shape[-1])


def keep_kit(drums: np.ndarray, pieces: int, *, counts: np.ndarray | None = None) -> np.ndarray:
    """A drum part `[steps, pitches]` (bool) with only its `pieces` most played pieces: the pitches on which
    most notes start (ties: the lower pitch), the others silenced (`config.DRUM_KIT`). `counts` (`[pitches]`)
    adds note counts from elsewhere (a song being continued: its kit stays). `pieces` 0 keeps every piece."""
    drums = np.asarray(drums, bool)
    if pieces <= 0:
        return drums
    n = notes_per_pitch(drums) + (0 if counts is None else np.asarray(counts))
    keep = np.zeros(drums.shape[1], bool)
    keep[np.argsort(-n, kind="stable")[:pieces]] = True
    return drums & keep


def piano_part(roll: np.ndarray) -> tuple[np.ndarray, bool]:
    """The part to arrange around in a `[5, T, P]` roll: its piano, or, where the song has none (no program
    0-7), every pitched track merged into one part. Returns (part `[T, P]`, whether the tracks were merged)."""
    if roll[PIANO].any():
        return roll[PIANO], False
    return roll[1:].any(axis=0), True
