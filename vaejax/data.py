"""The prepared bar cache: `python -m vaejax.data prepare SRC OUT`, and batches for training.

A prepared dataset folder holds, per split (train / valid / test):
  `{split}.bars`   raw uint8, shape [bars, 5, steps, ceil(pitches/8)]: bit-packed binary pianorolls;
  `{split}.songs.npz`  arrays `ids` (str), `start`, `length`: each song's bars in order;
and `report.json` (what was read and skipped, bars per split, per-track share of non-empty bars, the data
configuration and a fingerprint of the input so that re-running reuses the cache).

Exit codes of the command: 0 done (skipped files are listed in the report); 1 nothing usable was found;
2 bad arguments (missing path, no music files); 3 `--strict` and a bad file.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing as mp
import os
import queue
import sys
import threading
import time
from typing import Iterator, NamedTuple

import numpy as np

from vaejax import music
from vaejax.config import TRACKS, DataConfig

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


class PrepareError(Exception):
    """Raised for unusable input; `code` is the command's exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


def split_of(song: str, cfg: DataConfig) -> str:
    """Split for a song id, from a stable hash (the same on every machine and Python run)."""
    bucket = int.from_bytes(hashlib.sha1(song.encode("utf-8")).digest()[:4], "big") % 100
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
        h.update(f"{os.path.abspath(f)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
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
        return path, None, str(e), b"", 0, None, 0
    except Exception as e:  # keep the batch going; report the file
        return path, None, f"unexpected {type(e).__name__}: {e}", b"", 0, None, 0


def prepare(src: str, out: str, cfg: DataConfig = DataConfig(), *, workers: int | None = None,
            strict: bool = False, progress: bool = True, force: bool = False) -> dict:
    """Turn a folder of LPD npz / MIDI files into a prepared bar cache; return the report.

    Memory stays bounded: workers return one song at a time and bars are streamed to disk.

    Raises:
      PrepareError: missing source, no music files, strict mode and a bad file, or no usable song.
    """
    if not os.path.exists(src):
        raise PrepareError(f"{src}: no such file or folder", 2)
    files = music.find_songs(src)
    if not files:
        raise PrepareError(f"{src}: no .npz, .mid or .midi files found", 2)
    os.makedirs(out, exist_ok=True)
    fingerprint = _fingerprint(files, cfg)
    report_path = os.path.join(out, "report.json")
    if not force and os.path.exists(report_path):
        try:
            with open(report_path) as f:
                old = json.load(f)
            if old.get("fingerprint") == fingerprint and all(
                os.path.exists(os.path.join(out, f"{s}.bars")) for s in SPLITS):
                old["reused"] = True
                return old
        except (OSError, json.JSONDecodeError):
            pass

    workers = workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    handles = {s: open(os.path.join(out, f"{s}.bars.tmp"), "wb") for s in SPLITS}
    index = {s: ([], [], [], []) for s in SPLITS}
    bars_in = {s: 0 for s in SPLITS}
    nonempty = np.zeros(len(TRACKS), dtype=np.int64)
    skipped, seen_ids = [], set()
    tasks = [(f, cfg) for f in files]
    # fork is fastest, but forking a process that already runs JAX's threads can deadlock
    method = "spawn" if "jax" in sys.modules else "fork"
    pool = mp.get_context(method).Pool(workers) if workers > 1 and len(files) > 1 else None
    results = pool.imap(_work, tasks, chunksize=4) if pool else map(_work, tasks)
    bar = _progress(len(files), "prepare") if progress else None
    try:
        for path, sid, err, blob, n, song_nonempty, shift in results:
            if bar is not None:
                bar.update(1)
            if err is None and sid in seen_ids:
                err = f"duplicate song id {sid} (kept the first file)"
            if err is not None:
                skipped.append({"path": path, "reason": err})
                if strict:
                    raise PrepareError(f"{path}: {err}", 3)
                continue
            seen_ids.add(sid)
            split = split_of(sid, cfg)
            handles[split].write(blob)
            ids, starts, lengths, shifts = index[split]
            ids.append(sid)
            starts.append(bars_in[split])
            lengths.append(n)
            shifts.append(shift)
            bars_in[split] += n
            nonempty += song_nonempty
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.terminate()
        for h in handles.values():
            h.close()
    songs_read = sum(len(index[s][0]) for s in SPLITS)
    if songs_read == 0:
        for s in SPLITS:
            os.remove(os.path.join(out, f"{s}.bars.tmp"))
        raise PrepareError(f"{src}: none of {len(files)} files could be read "
                           f"(first reason: {skipped[0]['path']}: {skipped[0]['reason']})", 1)
    for s in SPLITS:
        ids, starts, lengths, shifts = index[s]
        np.savez(os.path.join(out, f"{s}.songs.tmp.npz"), ids=np.array(ids, dtype=str),
                 start=np.array(starts, np.int64), length=np.array(lengths, np.int64),
                 shift=np.array(shifts, np.int64))
        os.replace(os.path.join(out, f"{s}.songs.tmp.npz"), os.path.join(out, f"{s}.songs.npz"))
        os.replace(os.path.join(out, f"{s}.bars.tmp"), os.path.join(out, f"{s}.bars"))
    total = sum(bars_in.values())
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
        "nonempty_bar_share": {t: round(float(nonempty[i]) / max(total, 1), 4) for i, t in enumerate(TRACKS)},
        "seconds": round(time.perf_counter() - t0, 2),
        "workers": workers,
        "synthetic": os.path.exists(os.path.join(src, "SYNTHETIC")) if os.path.isdir(src) else False,
    }
    with open(report_path + ".tmp", "w") as f:
        json.dump(report, f, indent=2)
    os.replace(report_path + ".tmp", report_path)
    report["reused"] = False
    return report


def summary(report: dict) -> str:
    """A few lines for the terminal."""
    label = " (SYNTHETIC demo corpus)" if report.get("synthetic") else ""
    lines = [
        f"{report['source']}{label}: {report['songs_read']} songs read, {report['songs_skipped']} skipped"
        + (" (cache reused)" if report.get("reused") else f" in {report['seconds']} s"),
        "bars: " + ", ".join(f"{s} {report['bars_per_split'][s]}" for s in SPLITS),
        "non-empty bars: " + ", ".join(f"{t} {v:.0%}" for t, v in report["nonempty_bar_share"].items()),
    ]
    for item in report["skipped"][:5]:
        lines.append(f"skipped {item['path']}: {item['reason']}")
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

    def __init__(self, root: str, split: str):
        with open(os.path.join(root, "report.json")) as f:
            self.report = json.load(f)
        # caches written before key normalisation existed hold songs in their own keys
        self.cfg = DataConfig(**{"key_normalize": False, **self.report["config"]})
        self.name = split
        path = os.path.join(root, f"{split}.bars")
        shape = (len(TRACKS), self.cfg.steps, self.cfg.packed_pitches)
        n = os.path.getsize(path) // int(np.prod(shape))
        self.packed = (np.memmap(path, np.uint8, "r", shape=(n,) + shape) if n
                       else np.zeros((0,) + shape, np.uint8))
        with np.load(os.path.join(root, f"{split}.songs.npz"), allow_pickle=False) as z:
            self.ids, self.start, self.length = z["ids"], z["start"], z["length"]
            # semitones each song was moved by when prepared (key normalisation)
            self.shift = z["shift"] if "shift" in z.files else np.zeros(len(self.ids), np.int64)

    def __len__(self) -> int:
        return self.packed.shape[0]

    def bars(self, idx) -> np.ndarray:
        """Unpacked bars `[instrument, n, steps, pitch]` (bool) for bar indices `idx`."""
        packed = self.packed[idx]
        return unpack(packed, self.cfg.num_pitches).transpose(1, 0, 2, 3)

    def song(self, i: int) -> np.ndarray:
        """Bars of song i, `[instrument, n, steps, pitch]`."""
        s, n = int(self.start[i]), int(self.length[i])
        return unpack(self.packed[s:s + n], self.cfg.num_pitches).transpose(1, 0, 2, 3)


def read_report(root: str) -> dict:
    """A prepared dataset's `report.json`."""
    path = os.path.join(root, "report.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{root}: not a prepared dataset (no report.json); "
                                f"run `python -m vaejax.data prepare SRC {root}`")
    with open(path) as f:
        return json.load(f)


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
    tag = hashlib.sha1(os.path.abspath(data).encode()).hexdigest()[:8]
    out = os.path.join(PREPARED_DIR, f"{os.path.basename(os.path.normpath(data))}-{tag}")
    report = prepare(data, out, progress=progress)
    print(summary(report), file=sys.stderr)
    return out


def open_dataset(root: str) -> dict[str, Split]:
    """All splits of a prepared dataset."""
    read_report(root)
    return {s: Split(root, s) for s in SPLITS}


class Batch(NamedTuple):
    x: np.ndarray  # [instrument, batch, steps, pitch] float32 in {0, 1}


def batches(split: Split, batch_size: int, *, seed: int, epoch: int, shard: tuple[int, int] = (0, 1),
            limit: int = 0, start: int = 0) -> Iterator[Batch]:
    """Shuffled full batches of one epoch (order fixed by `seed` and `epoch`).

    `shard=(i, n)`: host i of n reads only its slice of every global batch (`batch_size // n` bars), so
    n hosts together see exactly the batches one host would. `start` skips batches already trained on
    (resuming mid-epoch) without reading them.
    """
    host, hosts = shard
    if batch_size % hosts:
        raise ValueError(f"batch size {batch_size} is not divisible by {hosts} hosts")
    local = batch_size // hosts
    order = np.random.default_rng([seed, epoch]).permutation(len(split))
    for b in range(start, num_batches(split, batch_size, limit)):
        lo = b * batch_size + host * local
        yield Batch(split.bars(order[lo:lo + local]).astype(np.float32))


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vaejax.data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("prepare", help="turn LPD npz / MIDI files into a prepared bar cache")
    pp.add_argument("src", help="a folder (searched recursively) or one file")
    pp.add_argument("out", help="output folder")
    pp.add_argument("--segment-bars", type=int, default=1)
    pp.add_argument("--lowest-pitch", type=int, default=24, help="MIDI pitch of the lowest row (24 = C1)")
    pp.add_argument("--pitches", type=int, default=84, help="number of pitch rows (84 = C1..B7)")
    pp.add_argument("--velocity-threshold", type=int, default=0, help="cells with velocity above it are on")
    pp.add_argument("--keep-key", action="store_true",
                    help="keep songs in their own keys (default: transpose each to C major / A minor)")
    pp.add_argument("--workers", type=int, default=0, help="processes (0: all cores)")
    pp.add_argument("--strict", action="store_true", help="stop at the first bad file (exit 3)")
    pp.add_argument("--force", action="store_true", help="rebuild even if the cache is up to date")
    pp.add_argument("--quiet", action="store_true", help="no progress bar")
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
        n = demo.write_corpus(args.out, songs=args.songs, seed=args.seed)
        print(f"wrote {n} SYNTHETIC demo songs to {args.out}")
        return 0
    if args.cmd == "download":
        from vaejax import download
        try:
            path = download.fetch(args.url, args.out, sha256=args.sha256)
        except download.DownloadError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(f"unpacked into {path}")
        return 0
    cfg = DataConfig(segment_bars=args.segment_bars, lowest_pitch=args.lowest_pitch,
                     num_pitches=args.pitches, velocity_threshold=args.velocity_threshold,
                     key_normalize=not args.keep_key)
    try:
        report = prepare(args.src, args.out, cfg, workers=args.workers or None, strict=args.strict,
                         progress=not args.quiet, force=args.force)
    except PrepareError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
