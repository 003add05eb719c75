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

import dataclasses
import hashlib
import json
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
from vaejax.config import PIANO, TRACKS, DataConfig
from vaejax.data.cache import (
    FORMAT_VERSION,
    MAX_REPORT_BYTES,
    REPORT_KEYS,
    SPLITS,
    VERIFY_BYTES,
    CacheError,
    check_report,
    is_prepared,
    pack,
    pack_song,
    read_report,
    report_config,
    unpack,
    verify,
)
from vaejax.data.readers import (
    FILE_TIMEOUT,
    HOLD_MB,
    PARENT_MB,
    PREPARE_BUDGET_MB,
    WORKER_MB,
    PrepareError,
    _read_files,
    readers_for,
)

__all__ = [  # the dataset API, and the names of the format and of the reader pool that callers use from here
    "DEMO_DIR",
    "FILE_TIMEOUT",
    "FORMAT_VERSION",
    "HOLD_MB",
    "MAX_REPORT_BYTES",
    "PARENT_MB",
    "PREPARED_DIR",
    "PREPARE_BUDGET_MB",
    "REPORT_KEYS",
    "SPLITS",
    "VERIFY_BYTES",
    "WORKER_MB",
    "Batch",
    "CacheError",
    "PrepareError",
    "Split",
    "batches",
    "check_report",
    "dataset_config",
    "fixed_by_dataset",
    "is_prepared",
    "num_batches",
    "open_dataset",
    "pack",
    "pack_song",
    "prefetch",
    "prepare",
    "read_report",
    "readers_for",
    "report_config",
    "resolve",
    "shown",
    "split_of",
    "summary",
    "unpack",
    "verify",
]

DEMO_DIR = os.path.join("data", "demo")
"""Where the SYNTHETIC demo corpus is written when training is given no data (relative to the working folder)."""
PREPARED_DIR = os.path.join("data", "prepared")
"""Where raw folders given for training are prepared (relative to the working folder)."""


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

    def windows(self, bars: int, band: int = 2) -> list[tuple[int, int]]:
        """(song index, first bar) of each song's first bar where the piano and at least `band` other tracks
        play, when `bars` more bars follow it (most songs open with an intro): where passages to compare
        generated songs with are taken."""
        out = []
        for i in range(len(self.ids)):
            s, n = int(self.start[i]), int(self.length[i])
            sounding = self.packed[s : s + n].any(axis=(2, 3))  # [n, 5]
            full = np.flatnonzero(sounding[:, PIANO] & (sounding.sum(axis=1) >= 1 + band))
            full = full[full + bars < n]
            if len(full):
                out.append((i, int(full[0])))
        return out


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
