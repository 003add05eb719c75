"""The prepared cache's on-disk format and its checks: the splits, bit-packed bars, `report.json` (every field
checked by `read_report`), and `verify`, which checks a cache's files against its report. Nothing here reads
songs or writes a cache (`vaejax.data.prepare` does)."""

from __future__ import annotations

import json
import os
import zlib

import numpy as np

from vaejax.config import TRACKS, DataConfig

SPLITS = ("train", "valid", "test")
FORMAT_VERSION = 2


def pack_song(roll: np.ndarray, cfg: DataConfig = DataConfig()) -> np.ndarray:
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


VERIFY_BYTES = 256 << 20
"""Opening a cache always checks its files' sizes and song index; checksums too when a split is smaller than
this (larger ones on request: `open_dataset(verify_checksums=True)`, `python -m vaejax.data verify OUT`)."""


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
        raise bad(f"bars_per_split must map {', '.join(SPLITS)} to bar counts, got {repr(counts)[:80]}")
    splits = report.get("splits", {})
    if not isinstance(splits, dict) or not all(
        isinstance(splits.get(s, {}), dict) and all(_count(v) for v in splits.get(s, {}).values()) for s in SPLITS
    ):
        raise bad(f"splits must map each split to its byte size and crc32, got {repr(splits)[:80]}")
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


def is_prepared(root: str) -> bool:
    return os.path.exists(os.path.join(root, "report.json")) and os.path.exists(os.path.join(root, "train.bars"))
