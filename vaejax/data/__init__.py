"""The prepared bar cache: `python -m vaejax.data prepare SRC OUT`, and batches for training.

A prepared dataset folder holds, per split (train / valid / test):
  `{split}.bars`   raw uint8, shape [bars, 5, steps, ceil(pitches/8)]: bit-packed binary pianorolls;
  `{split}.songs.npz`  arrays `ids` (str), `start`, `length`: each song's bars in order;
and `report.json` (what was read and skipped, bars per split, per-track share of non-empty bars, the data
configuration and a fingerprint of the input so that re-running reuses the cache).

`report.json` also records each split's byte size and CRC-32, so that a damaged cache (a full disk, a partial
copy) is caught when it is opened (`verify`; `python -m vaejax.data verify OUT` checks everything).

Exit codes of the command: 0 done (skipped files are listed in the report); 1 nothing usable was found;
2 bad arguments (missing path, no music files, an output folder that cannot be written, a damaged cache to
verify); 3 `--strict` and a bad file; 4 writing failed (disk full): the previous cache is unchanged.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import queue
import shutil
import sys
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from typing import NamedTuple

import numpy as np

from vaejax import music
from vaejax.config import TRACKS, DataConfig, program

SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 2
DEMO_DIR = os.path.join("data", "demo")
"""Where the SYNTHETIC demo corpus is written when training is given no data (relative to the working folder)."""
PREPARED_DIR = os.path.join("data", "prepared")
"""Where raw folders given for training are prepared (relative to the working folder)."""


def packed_bars(roll: np.ndarray, cfg: DataConfig = DataConfig()) -> np.ndarray:
    """`pack(to_bars(roll))`, but packing before rearranging (8x less data to move): `[n, 5, steps, P/8]`."""
    n = roll.shape[1] // cfg.steps
    packed = np.packbits(roll[:, : n * cfg.steps], axis=-1)
    return packed.reshape(roll.shape[0], n, cfg.steps, packed.shape[-1]).transpose(1, 0, 2, 3)


def pack(bars: np.ndarray) -> np.ndarray:
    """Pack boolean bars along pitch: `[..., P]` -> `[..., ceil(P/8)]` uint8."""
    return np.packbits(bars, axis=-1)


def unpack(packed: np.ndarray, num_pitches: int) -> np.ndarray:
    """Inverse of `pack`."""
    return np.unpackbits(packed, axis=-1, count=num_pitches).astype(bool)


class CacheError(Exception):
    """A prepared cache whose files do not match its report (truncated, damaged, half-copied)."""


class PrepareError(Exception):
    """Raised for unusable input; `code` is the command's exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def split_of(song: str, cfg: DataConfig) -> str:
    """Split for a song id, from a stable hash (the same on every machine and Python run)."""
    # file names that are not UTF-8 reach Python with surrogate escapes: hashed as the bytes they were
    bucket = int.from_bytes(hashlib.sha1(song.encode("utf-8", "surrogateescape")).digest()[:4], "big") % 100
    if bucket < cfg.test_percent:
        return "test"
    if bucket < cfg.test_percent + cfg.valid_percent:
        return "valid"
    return "train"


def _fingerprint(files: list[str], cfg: DataConfig) -> str:
    h = hashlib.sha1()
    h.update(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    h.update(str(FORMAT_VERSION).encode())
    for f in files:
        st = os.stat(f)
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _work(args: tuple[str, DataConfig]):
    """Worker: one file -> (path, song id, error, packed bars, number of bars, non-empty bars per track,
    transposition applied)."""
    path, cfg = args
    try:
        song = music.read_song(path, cfg)
        shift = music.key_shift(song.roll, cfg.lowest_pitch) if cfg.key_normalize else 0
        packed = packed_bars(music.transpose(song.roll, shift), cfg)  # [n, 5, steps, P/8]
        if packed.shape[0] == 0:
            raise music.BadSong("shorter than one segment")
        nonempty = packed.any(axis=(2, 3)).sum(axis=0)  # a bar is empty when all its bytes are zero
        return path, song.name, None, packed.tobytes(), packed.shape[0], nonempty, shift
    except music.BadSong as e:
        return _failed(path, str(e))
    except Exception as e:  # keep the batch going; report the file
        return _failed(path, f"unexpected {type(e).__name__}: {str(e)[:200]}")


def _failed(path: str, reason: str):
    return path, None, reason, b"", 0, None, 0


FILE_TIMEOUT = music.READ_TIMEOUT
"""Seconds one file may take to read in `prepare` before it is skipped (its reader is stopped)."""
WORKER_MB = 160
"""Resident memory of an idle reader process (Python, NumPy, pretty_midi), measured."""
PREPARE_BUDGET_MB = 2048
"""Memory `prepare` may use as a whole, its reader processes included (`prepare --memory-budget`): it starts
only as many readers as fit, each reading within `music.READ_BUDGET_MB`, and holds at most `HOLD_MB` of
results waiting for an earlier slow file."""
HOLD_MB = 256
PARENT_MB = 300
"""The parent's own share of the budget (its interpreter, the index, the write buffers)."""


def readers_for(budget_mb: float, workers: int) -> int:
    """How many reader processes fit `budget_mb` (at most `workers`); PrepareError when not even one does."""
    per = WORKER_MB + music.READ_BUDGET_MB
    fit = int((budget_mb - PARENT_MB - HOLD_MB) // per)
    if fit < 1:
        raise PrepareError(
            f"--memory-budget {budget_mb:g} MiB is too small: prepare needs at least "
            f"{PARENT_MB + HOLD_MB + per} MiB (one reader of {per} MiB, {PARENT_MB + HOLD_MB} MiB "
            f"for itself)",
            2,
        )
    return max(1, min(workers, fit))


def _work_in_process(task, timeout: float):
    """`_work` in this process, stopped after `timeout` seconds where a timer signal can be used."""
    try:
        with music.time_limit(timeout):
            return _work(task)
    except music.ReadTimeout:
        return _failed(task[0], f"took longer than {timeout:g} s to read (skipped)")


def _die_with(parent: int) -> None:
    """Make this reader process end when `parent` does, even after `kill -9` of the parent: the kernel's
    parent-death signal where Linux offers it, and a watchdog thread that polls the parent's pid everywhere."""
    import signal

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def _serve(conn, parent: int | None = None) -> None:
    """A reader process: files in, results out, until told to stop (or its parent is gone)."""
    if parent is not None:
        _die_with(parent)
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        conn.send(_work(task))


def _read_files(tasks: list, workers: int, timeout: float, method: str):
    """Results of `_work` for every task, in task order. With several workers each file is read in a
    worker process: one that takes longer than `timeout` or kills its process (out of memory, a crash)
    costs that file only; the process is replaced and the batch goes on."""
    if workers <= 1 or len(tasks) <= 1:
        for task in tasks:
            yield _work_in_process(task, timeout)
        return
    from multiprocessing.connection import wait

    ctx = mp.get_context(method)

    def start():
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, os.getpid()), daemon=True)
        proc.start()
        child.close()
        return {"proc": proc, "conn": parent, "task": None, "since": 0.0}

    slots = [start() for _ in range(min(workers, len(tasks)))]
    window = 16 * len(slots)  # results waiting for an earlier slow file are bounded, in number and in bytes
    done: dict[int, tuple] = {}
    held = 0
    sent = emitted = 0
    try:
        while emitted < len(tasks):
            for slot in slots:
                if (
                    slot["task"] is None
                    and sent < len(tasks)
                    and sent < emitted + window
                    and (held < HOLD_MB << 20 or sent == emitted)
                ):
                    slot["conn"].send(tasks[sent])
                    slot["task"], slot["since"] = sent, time.monotonic()
                    sent += 1
            busy = [slot for slot in slots if slot["task"] is not None]
            wait([x for slot in busy for x in (slot["conn"], slot["proc"].sentinel)], timeout=0.25)
            for i, slot in enumerate(slots):
                k = slot["task"]
                if k is None:
                    continue
                result = None
                try:
                    if slot["conn"].poll():
                        result = slot["conn"].recv()
                except (EOFError, OSError):
                    pass
                dead = not slot["proc"].is_alive()
                if result is None and dead:
                    code = slot["proc"].exitcode
                    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
                    result = _failed(tasks[k][0], f"its reader process died ({how}; out of memory?)")
                elif result is None and time.monotonic() - slot["since"] > timeout:
                    result = _failed(tasks[k][0], f"took longer than {timeout:g} s to read (skipped)")
                    slot["proc"].kill()
                    dead = True
                if result is None:
                    continue
                done[k] = result
                held += len(result[3])
                slot["task"] = None
                if dead:  # a fresh reader takes its place
                    slot["proc"].join(1)
                    slot["conn"].close()
                    slots[i] = start()
            while emitted in done:
                result = done.pop(emitted)
                held -= len(result[3])
                yield result
                emitted += 1
    finally:
        for slot in slots:
            try:
                slot["conn"].send(None)
            except (OSError, ValueError):
                pass
        for slot in slots:
            slot["proc"].join(0.5)
            if slot["proc"].is_alive():
                slot["proc"].kill()
                slot["proc"].join(1)


def _writable(folder: str) -> None:
    """Refuse an output folder that cannot be written, before any work starts."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, f".write-test-{os.getpid()}")
        with open(probe, "wb") as f:
            f.write(b"x")
        os.remove(probe)
    except OSError as e:
        raise PrepareError(f"{folder}: cannot write here ({e.strerror or e})", 2) from None


def shown(text: str) -> str:
    """A path for the terminal: bytes of a name that is not UTF-8 shown as replacement characters."""
    return str(text).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def prepare(
    src: str,
    out: str,
    cfg: DataConfig = DataConfig(),
    *,
    workers: int | None = None,
    strict: bool = False,
    progress: bool = True,
    force: bool = False,
    timeout: float = FILE_TIMEOUT,
    memory_budget: float = PREPARE_BUDGET_MB,
) -> dict:
    """Turn a folder of LPD npz / MIDI files into a prepared bar cache; return the report.

    Memory stays bounded: workers return one song at a time and bars are streamed to disk. Each file has
    `timeout` seconds; a file that is too long, too large, takes too long or crashes its reader is skipped
    and listed in the report. The new cache replaces the old one only once it is complete: interrupted,
    or on a full disk, the previous cache stays as it was (or, if the swap itself was cut short, the next
    run rebuilds it).

    Raises:
      PrepareError: missing source, no music files, unwritable output, disk full, strict mode and a bad
      file, or no usable song.
    """
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 86400:
        raise PrepareError(f"timeout must be a number of seconds above 0 and at most 86400, got {timeout!r}", 2)
    if workers is not None and (not isinstance(workers, int) or isinstance(workers, bool) or not 1 <= workers <= 1024):
        raise PrepareError(f"workers must be an integer from 1 to 1024, got {workers!r}", 2)
    if (
        not isinstance(memory_budget, (int, float))
        or isinstance(memory_budget, bool)
        or not 0 < memory_budget < float("inf")
    ):
        raise PrepareError(f"memory budget must be a number of MiB above 0, got {memory_budget!r}", 2)
    workers = readers_for(memory_budget, workers or os.cpu_count() or 1)
    if not os.path.exists(src):
        raise PrepareError(f"{shown(src)}: no such file or folder", 2)
    if os.path.isfile(src) and not src.lower().endswith(music.SUFFIXES):
        raise PrepareError(f"{shown(src)}: not a song file or folder of songs (expected .npz, .mid or .midi)", 2)
    problems: list[dict] = []
    files = music.find_songs(src, problems)
    if not files:
        raise PrepareError(f"{shown(src)}: no .npz, .mid or .midi files found", 2)
    _writable(out)
    fingerprint = _fingerprint(files, cfg)
    report_path = os.path.join(out, "report.json")
    if not force and os.path.exists(report_path):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an unusable old report only means a rebuild
                old = read_report(out)
            if old.get("fingerprint") == fingerprint and all(
                os.path.exists(os.path.join(out, f"{s}.bars")) for s in SPLITS
            ):
                verify(out, old)
                old["reused"] = True
                return old
        except (OSError, CacheError):
            pass  # damaged, unreadable or from another version: rebuilt below
    try:
        return _prepare(
            src,
            out,
            cfg,
            files,
            problems,
            fingerprint,
            workers=workers,
            strict=strict,
            progress=progress,
            timeout=timeout,
        )
    except BaseException as e:  # strict mode, an interrupt, a full disk: no temporary file is left behind
        for name in os.listdir(out):
            if ".tmp" in name:
                try:
                    os.remove(os.path.join(out, name))
                except OSError:
                    pass
        if not isinstance(e, OSError):
            raise
        raise PrepareError(
            f"{out}: {e.strerror or e} while writing the cache"
            + (" (the previous cache is unchanged)" if os.path.exists(report_path) else ""),
            4,
        ) from None


def _prepare(src, out, cfg, files, problems, fingerprint, *, workers, strict, progress, timeout) -> dict:
    report_path = os.path.join(out, "report.json")
    t0 = time.perf_counter()
    handles = {s: open(os.path.join(out, f"{s}.bars.tmp"), "wb") for s in SPLITS}
    crc = {s: 0 for s in SPLITS}
    index = {s: ([], [], [], []) for s in SPLITS}
    bars_in = {s: 0 for s in SPLITS}
    nonempty = np.zeros(len(TRACKS), dtype=np.int64)
    skipped, seen_ids = list(problems), set()
    tasks = [(f, cfg) for f in files]
    # fork is fastest, but forking a process that already runs JAX's threads can deadlock
    method = "spawn" if "jax" in sys.modules else "fork"
    bar = _progress(len(files), "prepare") if progress else None
    try:
        for path, sid, err, blob, n, song_nonempty, shift in _read_files(tasks, workers, timeout, method):
            if bar is not None:
                bar.update(1)
            if err is None and sid in seen_ids:
                err = f"duplicate song id {sid} (kept the first file)"
            if err is not None:
                skipped.append({"path": path, "reason": err})
                if strict:
                    raise PrepareError(f"{shown(path)}: {err}", 3)
                continue
            seen_ids.add(sid)
            split = split_of(sid, cfg)
            handles[split].write(blob)
            crc[split] = zlib.crc32(blob, crc[split])
            ids, starts, lengths, shifts = index[split]
            ids.append(sid)
            starts.append(bars_in[split])
            lengths.append(n)
            shifts.append(shift)
            bars_in[split] += n
            nonempty += song_nonempty
        for h in handles.values():
            h.flush()
            os.fsync(h.fileno())
    finally:
        if bar is not None:
            bar.close()
        for h in handles.values():
            h.close()
    songs_read = sum(len(index[s][0]) for s in SPLITS)
    if songs_read == 0:
        for s in SPLITS:
            os.remove(os.path.join(out, f"{s}.bars.tmp"))
        raise PrepareError(
            f"{shown(src)}: none of {len(files)} files could be read "
            f"(first reason: {shown(skipped[0]['path'])}: {skipped[0]['reason']})",
            1,
        )
    for s in SPLITS:  # every new file complete before any old one is replaced
        ids, starts, lengths, shifts = index[s]
        np.savez(
            os.path.join(out, f"{s}.songs.tmp.npz"),
            ids=np.array(ids, dtype=str),
            start=np.array(starts, np.int64),
            length=np.array(lengths, np.int64),
            shift=np.array(shifts, np.int64),
        )
    total = sum(bars_in.values())
    bar_bytes = len(TRACKS) * cfg.steps * cfg.packed_pitches
    report = {
        "format": FORMAT_VERSION,
        "source": os.path.abspath(src),
        "fingerprint": fingerprint,
        "config": dataclasses.asdict(cfg),
        "files": len(files),
        "songs_read": songs_read,
        "songs_skipped": len(skipped),
        "skipped": skipped,
        "songs_per_split": {s: len(index[s][0]) for s in SPLITS},
        "bars_per_split": bars_in,
        "splits": {s: {"bytes": bars_in[s] * bar_bytes, "crc32": crc[s]} for s in SPLITS},
        "nonempty_bar_share": {t: round(float(nonempty[i]) / max(total, 1), 4) for i, t in enumerate(TRACKS)},
        "seconds": round(time.perf_counter() - t0, 2),
        "workers": workers,
        "synthetic": os.path.exists(os.path.join(src, "SYNTHETIC")) if os.path.isdir(src) else False,
    }
    with open(report_path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    # the swap: without report.json the folder is not a cache, so a swap cut short is rebuilt, never used
    if os.path.exists(report_path):
        os.remove(report_path)
    for s in SPLITS:
        os.replace(os.path.join(out, f"{s}.songs.tmp.npz"), os.path.join(out, f"{s}.songs.npz"))
        os.replace(os.path.join(out, f"{s}.bars.tmp"), os.path.join(out, f"{s}.bars"))
    os.replace(report_path + ".tmp", report_path)
    report["reused"] = False
    return report


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    label = " (SYNTHETIC demo corpus)" if report.get("synthetic") else ""
    lines = [
        f"{shown(report['source'])}{label}: {report['songs_read']} songs read, {report['songs_skipped']} skipped"
        + (" (cache reused)" if report.get("reused") else f" in {report['seconds']} s"),
        "bars: " + ", ".join(f"{s} {report['bars_per_split'][s]}" for s in SPLITS),
        "non-empty bars: " + ", ".join(f"{t} {v:.0%}" for t, v in report["nonempty_bar_share"].items()),
    ]
    for item in report["skipped"][:5]:
        lines.append(f"skipped {shown(item.get('path'))}: {shown(item.get('reason'))}")
    if len(report["skipped"]) > 5:
        lines.append(f"... and {len(report['skipped']) - 5} more (see report.json)")
    return "\n".join(lines)


def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress bars are a convenience
        return None
    return tqdm(total=total, desc=desc, unit="song", dynamic_ncols=True, file=sys.stderr)


# ---------------------------------------------------------------------------------------------------
# Reading a prepared dataset


VERIFY_BYTES = 256 << 20
"""Opening a cache always checks its files' sizes and song index; checksums too when a split is smaller than
this (larger ones on request: `open_dataset(verify=True)`, `python -m vaejax.data verify OUT`)."""


def _damaged(path: str, why: str) -> CacheError:
    root = os.path.dirname(path) or "."
    return CacheError(
        f"{path}: {why}; the cache is damaged or incomplete, rebuild it with "
        f"`python -m vaejax.data prepare SRC {root} --force`"
    )


def verify(root: str, report: dict | None = None, *, checksums: bool | None = None) -> None:
    """Check a prepared cache against its report: each split's byte size (always), song index (always) and
    checksum (`checksums=True`, or None: when the split is small). Raises CacheError naming the file."""
    report = report if report is not None else read_report(root)
    cfg = report_config(report, os.path.join(root, "report.json"))
    bar_bytes = len(TRACKS) * cfg.steps * cfg.packed_pitches
    recorded = report.get("splits", {})
    for split in SPLITS:
        path = os.path.join(root, f"{split}.bars")
        try:
            size = os.path.getsize(path)
        except OSError:
            raise _damaged(path, "missing") from None
        expected = recorded.get(split, {}).get("bytes")
        if expected is None:  # caches written before sizes were recorded: the bar count must still agree
            expected = report.get("bars_per_split", {}).get(split, size // bar_bytes) * bar_bytes
        if size != expected:
            raise _damaged(path, f"{size} bytes, the cache recorded {expected}")
        want = recorded.get(split, {}).get("crc32")
        if want is not None and (checksums or (checksums is None and size <= VERIFY_BYTES)):
            crc = 0
            with open(path, "rb") as f:
                while chunk := f.read(16 << 20):
                    crc = zlib.crc32(chunk, crc)
            if crc != want:
                raise _damaged(path, "its checksum does not match the one recorded when it was written")
        songs = os.path.join(root, f"{split}.songs.npz")
        try:
            with np.load(songs, allow_pickle=False) as z:
                start, length = z["start"], z["length"]
                ids = z["ids"]
        except Exception as e:  # zipfile, zlib and numpy raise many types for damaged bytes
            raise _damaged(songs, f"unreadable ({type(e).__name__})") from None
        n = size // bar_bytes
        ok = (
            len(start) == len(length) == len(ids)
            and (length > 0).all()
            and np.array_equal(
                start, np.concatenate([[0], np.cumsum(length)[:-1]]).astype(start.dtype) if len(length) else start
            )
            and int(length.sum()) == n
        )
        if not ok:
            raise _damaged(songs, f"its song index does not cover the {n} bars of {split}.bars")


class Split:
    """One split of a prepared dataset, memory-mapped (bars are unpacked only when batched)."""

    def __init__(self, root: str, split: str, report: dict | None = None):
        self.report = report if report is not None else read_report(root)
        self.cfg = report_config(self.report, os.path.join(root, "report.json"))
        self.name = split
        path = os.path.join(root, f"{split}.bars")
        shape = (len(TRACKS), self.cfg.steps, self.cfg.packed_pitches)
        n = os.path.getsize(path) // int(np.prod(shape))
        self.packed = np.memmap(path, np.uint8, "r", shape=(n,) + shape) if n else np.zeros((0,) + shape, np.uint8)
        with np.load(os.path.join(root, f"{split}.songs.npz"), allow_pickle=False) as z:
            self.ids, self.start, self.length = z["ids"], z["start"], z["length"]
            # semitones each song was moved by when prepared (key normalisation)
            self.shift = z["shift"] if "shift" in z.files else np.zeros(len(self.ids), np.int64)

    def __len__(self) -> int:
        return self.packed.shape[0]

    def packed_bars(self, idx) -> np.ndarray:
        """Bit-packed bars `[instrument, n, steps, ceil(pitch/8)]` (uint8) for bar indices `idx`."""
        return np.ascontiguousarray(self.packed[idx].transpose(1, 0, 2, 3))

    def bars(self, idx) -> np.ndarray:
        """Unpacked bars `[instrument, n, steps, pitch]` (bool) for bar indices `idx`."""
        packed = self.packed[idx]
        return unpack(packed, self.cfg.num_pitches).transpose(1, 0, 2, 3)

    def song(self, i: int) -> np.ndarray:
        """Bars of song i, `[instrument, n, steps, pitch]`."""
        s, n = int(self.start[i]), int(self.length[i])
        return unpack(self.packed[s : s + n], self.cfg.num_pitches).transpose(1, 0, 2, 3)


REPORT_KEYS = (
    "format",
    "source",
    "fingerprint",
    "config",
    "files",
    "songs_read",
    "songs_skipped",
    "skipped",
    "songs_per_split",
    "bars_per_split",
    "splits",
    "nonempty_bar_share",
    "seconds",
    "workers",
    "synthetic",
    "reused",
)


def read_report(root: str) -> dict:
    """A prepared dataset's `report.json`, every field checked (CacheError naming the file and the field);
    keys of a newer version are ignored with a warning, a newer format is refused."""
    path = os.path.join(root, "report.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{root}: not a prepared dataset (no report.json); run `python -m vaejax.data prepare SRC {root}`"
        )
    try:
        with open(path, "rb") as f:
            report = json.loads(f.read(MAX_REPORT_BYTES + 1).decode("utf-8"))
    except (OSError, ValueError) as e:
        raise _damaged(path, f"unreadable ({type(e).__name__}: {str(e)[:80]})") from None
    check_report(report, path)
    return report


MAX_REPORT_BYTES = 256 << 20


def check_report(report, path: str) -> None:
    """Raise CacheError unless `report` (read from `path`) has the fields a cache reader relies on."""

    def bad(why):
        return _damaged(path, why)

    if not isinstance(report, dict):
        raise bad(f"expected a JSON object, got {type(report).__name__}")
    fmt = report.get("format", 1)
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise bad(f"format must be a positive integer, got {fmt!r}")
    if fmt > FORMAT_VERSION:
        raise CacheError(
            f"{path}: written by a newer version of vaejax (cache format {fmt}; this version reads up "
            f"to {FORMAT_VERSION}); upgrade vaejax or prepare the data again with this version"
        )
    unknown = sorted(str(k) for k in report if k not in REPORT_KEYS)
    if unknown:
        import warnings

        from vaejax.config import ConfigWarning

        warnings.warn(
            f"{path}: ignoring unknown field(s) {', '.join(map(repr, unknown))} (written by a newer version?)",
            ConfigWarning,
            stacklevel=3,
        )
    if not isinstance(report.get("config"), dict):
        raise bad(f"config must be a mapping of data settings, got {type(report.get('config')).__name__}")
    report_config(report, path)
    counts = report.get("bars_per_split")
    if not isinstance(counts, dict) or not all(_count(counts.get(s)) for s in SPLITS):
        raise bad(f"bars_per_split must map {', '.join(SPLITS)} to bar counts, got {str(counts)[:80]}")
    splits = report.get("splits", {})
    if not isinstance(splits, dict) or not all(
        isinstance(splits.get(s, {}), dict) and all(_count(v) for v in splits.get(s, {}).values()) for s in SPLITS
    ):
        raise bad(f"splits must map each split to its byte size and crc32, got {str(splits)[:80]}")
    skipped = report.get("skipped", [])
    if not isinstance(skipped, list) or not all(isinstance(x, dict) for x in skipped):
        raise bad("skipped must be a list of {path, reason} records")
    for key in ("files", "songs_read", "songs_skipped"):
        if key in report and not _count(report[key]):
            raise bad(f"{key} must be a count, got {report[key]!r}")
    share = report.get("nonempty_bar_share", {})
    if not isinstance(share, dict) or not all(isinstance(v, (int, float)) for v in share.values()):
        raise bad("nonempty_bar_share must map tracks to shares")


def _count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def report_config(report: dict, path: str = "report.json") -> DataConfig:
    """The data settings a cache was prepared with (caches written before key normalisation existed hold
    songs in their own keys)."""
    from vaejax.config import section_from_dict

    try:
        return section_from_dict(DataConfig, {"key_normalize": False, **report["config"]}, path)
    except ValueError as e:
        raise CacheError(
            f"{e}; the cache is damaged or was written otherwise, rebuild it with `python -m vaejax.data "
            f"prepare SRC {os.path.dirname(path) or '.'} --force`"
        ) from None


def dataset_config(data: str | None) -> DataConfig:
    """The data settings training on `data` uses: a prepared dataset's own; the defaults for a raw folder or the
    demo corpus (None), which are prepared with them."""
    if data is not None and is_prepared(data):
        return report_config(read_report(data), os.path.join(data, "report.json"))
    return DataConfig()


def fixed_by_dataset(requested: DataConfig, fixed: DataConfig, where: str) -> DataConfig:
    """`fixed`, the data section of the dataset `where`: the dataset decides how songs became bars. A field of
    `requested` set to something else (neither its default nor the dataset's value) is refused: ValueError,
    one line naming the field and how to prepare data with it."""
    default = DataConfig()
    for f in dataclasses.fields(DataConfig):
        want, have = getattr(requested, f.name), getattr(fixed, f.name)
        if want != have and want != getattr(default, f.name):
            raise ValueError(
                f"data.{f.name}={want} cannot be set for training: the dataset {where} fixes it "
                f"({have}); prepare the songs again with the setting you want "
                f"(`vaejax prepare --help`) and train on that"
            )
    return fixed


def is_prepared(root: str) -> bool:
    return os.path.exists(os.path.join(root, "report.json")) and os.path.exists(os.path.join(root, "train.bars"))


def resolve(data: str | None, *, progress: bool = True) -> str:
    """A prepared dataset folder for training from `data`: a prepared folder as given, a raw folder of
    songs (prepared on the fly, cached under PREPARED_DIR), or None (the SYNTHETIC demo corpus, written
    under DEMO_DIR)."""
    if data is None:
        from vaejax import demo

        if not os.path.exists(os.path.join(DEMO_DIR, "SYNTHETIC")):
            print(f"no data given: writing the SYNTHETIC demo corpus to {DEMO_DIR}/", file=sys.stderr)
        demo.write_corpus(DEMO_DIR)
        data = DEMO_DIR
    if is_prepared(data):
        return data
    tag = hashlib.sha1(os.path.abspath(data).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    out = os.path.join(PREPARED_DIR, f"{os.path.basename(os.path.normpath(data))}-{tag}")
    existed = os.path.exists(out)
    try:
        report = prepare(data, out, progress=progress)
    except BaseException:
        if not existed:  # a failed first prepare leaves no empty folder behind
            shutil.rmtree(out, ignore_errors=True)
            try:
                os.rmdir(PREPARED_DIR)
            except OSError:
                pass
        raise
    print(summary(report), file=sys.stderr)
    return out


def open_dataset(root: str, *, verify_checksums: bool | None = None) -> dict[str, Split]:
    """All splits of a prepared dataset, checked against its report first (see `verify`)."""
    report = read_report(root)
    verify(root, report, checksums=verify_checksums)
    return {s: Split(root, s, report) for s in SPLITS}


class Batch(NamedTuple):
    x: np.ndarray  # [instrument, batch, steps, pitch] float32 in {0, 1}, or packed: uint8 [..., ceil(pitch/8)]


def batches(
    split: Split,
    batch_size: int,
    *,
    seed: int,
    epoch: int,
    shard: tuple[int, int] = (0, 1),
    limit: int = 0,
    start: int = 0,
    packed: bool = False,
) -> Iterator[Batch]:
    """Shuffled full batches of one epoch (order fixed by `seed` and `epoch`).

    `shard=(i, n)`: host i of n reads only its slice of every global batch (`batch_size // n` bars), so
    n hosts together see exactly the batches one host would. `start` skips batches already trained on
    (resuming mid-epoch) without reading them. `packed`: bars stay bit-packed (uint8: 32x less than float32
    to gather and to send to the device; the training step unpacks them).
    """
    host, hosts = shard
    if batch_size % hosts:
        raise ValueError(f"batch size {batch_size} is not divisible by {hosts} hosts")
    local = batch_size // hosts
    order = np.random.default_rng([seed, epoch]).permutation(len(split))
    for b in range(start, num_batches(split, batch_size, limit)):
        lo = b * batch_size + host * local
        idx = order[lo : lo + local]
        yield Batch(split.packed_bars(idx) if packed else split.bars(idx).astype(np.float32))


def num_batches(split: Split, batch_size: int, limit: int = 0) -> int:
    nb = len(split) // batch_size
    return min(nb, limit) if limit else nb


def prefetch(it: Iterator, size: int = 2) -> Iterator:
    """Run an iterator in a background thread, `size` items ahead."""
    q: queue.Queue = queue.Queue(maxsize=size)
    done = object()

    def fill():
        try:
            for item in it:
                q.put(item)
        except BaseException as e:  # hand errors to the consumer
            q.put(e)
        q.put(done)

    threading.Thread(target=fill, daemon=True).start()
    while True:
        item = q.get()
        if item is done:
            return
        if isinstance(item, BaseException):
            raise item
        yield item


# ---------------------------------------------------------------------------------------------------
# Command line


def prepare_arguments(pp: argparse.ArgumentParser) -> None:
    """The options of the prepare command (`python -m vaejax.data prepare`, `vaejax prepare`)."""
    pp.add_argument("src", help="a folder (searched recursively) or one file")
    pp.add_argument("out", help="output folder")
    d = DataConfig()  # the defaults are the configuration's, written once
    pp.add_argument("--segment-bars", type=int, default=d.segment_bars)
    pp.add_argument("--lowest-pitch", type=int, default=d.lowest_pitch, help="MIDI pitch of the lowest row (24 = C1)")
    pp.add_argument("--pitches", type=int, default=d.num_pitches, help="number of pitch rows (84 = C1..B7)")
    pp.add_argument(
        "--velocity-threshold", type=int, default=d.velocity_threshold, help="cells with velocity above it are on"
    )
    pp.add_argument(
        "--keep-key",
        action="store_true",
        help="keep songs in their own keys (default: transpose each to C major / A minor)",
    )
    pp.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    pp.add_argument("--strict", action="store_true", help="stop at the first bad file (exit 3)")
    pp.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    pp.add_argument("--timeout", type=float, default=FILE_TIMEOUT, help="seconds one file may take to read")
    pp.add_argument(
        "--memory-budget",
        type=float,
        default=PREPARE_BUDGET_MB,
        metavar="MIB",
        help="memory the whole prepare may use, reader processes included (it starts only as many "
        f"readers as fit, each reading one file within {music.READ_BUDGET_MB} MiB)",
    )
    pp.add_argument("--quiet", action="store_true", help="no progress bar")


def prepare_command(args) -> int:
    """Run the prepare command on parsed `prepare_arguments`; returns its exit code."""
    try:
        cfg = DataConfig(
            segment_bars=args.segment_bars,
            lowest_pitch=args.lowest_pitch,
            num_pitches=args.pitches,
            velocity_threshold=args.velocity_threshold,
            key_normalize=not args.keep_key,
        )
    except ValueError as e:
        print(
            f"error: {str(e).replace('data.num_pitches', '--pitches').replace('data.', '--').replace('_', '-')}",
            file=sys.stderr,
        )
        return 2
    if args.workers < 0:
        print(f"error: --workers must be 0 (all cores) or more, got {args.workers}", file=sys.stderr)
        return 2
    try:
        report = prepare(
            args.src,
            args.out,
            cfg,
            workers=args.workers or None,
            strict=args.strict,
            progress=not args.quiet,
            force=args.force,
            timeout=args.timeout,
            memory_budget=args.memory_budget,
        )
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    print(summary(report))
    return 0


def verify_command(path: str) -> int:
    """`verify OUT`: check everything of a prepared cache, checksums included; returns the exit code."""
    try:
        verify(path, checksums=True)
    except (CacheError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{path}: sizes, song index and checksums match its report")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog=program("python -m vaejax.data"), description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    prepare_arguments(sub.add_parser("prepare", help="turn LPD npz / MIDI files into a prepared bar cache"))
    vf = sub.add_parser("verify", help="check a prepared cache's sizes, song index and checksums")
    vf.add_argument("out", help="a prepared dataset folder")
    dm = sub.add_parser("demo", help="write the synthetic demo corpus")
    dm.add_argument("out", nargs="?", default="data/demo")
    dm.add_argument("--songs", type=int, default=96)
    dm.add_argument("--seed", type=int, default=0)
    dl = sub.add_parser("download", help="download and unpack an archive (e.g. LPD-5) into a folder")
    dl.add_argument("url")
    dl.add_argument("out")
    dl.add_argument("--sha256", default=None, help="expected checksum of the archive")
    args = p.parse_args(argv)

    if args.cmd == "demo":
        from vaejax import demo

        if not 1 <= args.songs <= 100_000 or not 0 <= args.seed < 2**31:
            print(
                f"error: --songs must be from 1 to 100000 and --seed from 0 to {2**31 - 1}, got {args.songs} and "
                f"{args.seed}",
                file=sys.stderr,
            )
            return 2
        n = demo.write_corpus(args.out, songs=args.songs, seed=args.seed)
        print(f"wrote {n} SYNTHETIC demo songs to {args.out}")
        return 0
    if args.cmd == "verify":
        return verify_command(args.out)
    if args.cmd == "download":
        from vaejax import download

        try:
            path = download.fetch(args.url, args.out, sha256=args.sha256)
        except download.DownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"unpacked into {path}")
        return 0
    return prepare_command(args)


if __name__ == "__main__":
    sys.exit(main())
