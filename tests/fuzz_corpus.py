"""A corpus of broken and hostile song files, made from real-looking MIDI and npz songs (for the fuzz test
and `bench/bench_fuzz.py`). Everything is generated here, deterministically by seed."""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib

import numpy as np

PROGRAMS = ((0, False), (25, False), (33, False), (48, False), (0, True))  # piano, guitar, bass, strings, drums


def good_midi(rng: np.random.Generator, bars: int = 6) -> bytes:
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=float(rng.choice([90, 110, 120, 128])))
    for program, drum in PROGRAMS:
        inst = pretty_midi.Instrument(program=program, is_drum=drum)
        for _ in range(int(rng.integers(8, 40))):
            start = float(rng.uniform(0, bars * 2.0))
            inst.notes.append(
                pretty_midi.Note(
                    velocity=int(rng.integers(40, 120)),
                    pitch=int(rng.integers(36, 90)),
                    start=start,
                    end=start + float(rng.uniform(0.05, 1.0)),
                )
            )
        pm.instruments.append(inst)
    buf = io.BytesIO()
    pm.write(buf)
    return buf.getvalue()


def good_npz(rng: np.random.Generator, bars: int = 6) -> bytes:
    import pypianoroll

    length = bars * 96
    tracks = []
    for i, (program, drum) in enumerate(PROGRAMS):
        roll = np.zeros((length, 128), np.uint8)
        for _ in range(int(rng.integers(8, 40))):
            t, p = int(rng.integers(0, length - 12)), int(rng.integers(36, 90))
            roll[t : t + int(rng.integers(2, 12)), p] = int(rng.integers(40, 120))
        tracks.append(pypianoroll.StandardTrack(name=f"t{i}", program=program, is_drum=drum, pianoroll=roll))
    downbeat = np.zeros(length, bool)
    downbeat[::96] = True
    mt = pypianoroll.Multitrack(
        name="fuzz", resolution=24, tracks=tracks, tempo=np.full(length, 120.0), downbeat=downbeat
    )
    buf = io.BytesIO()
    pypianoroll.save(buf, mt)
    return buf.getvalue()


# ---- MIDI by hand -----------------------------------------------------------------------------------


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _chunk(kind: bytes, body: bytes, length: int | None = None) -> bytes:
    return kind + struct.pack(">I", len(body) if length is None else length) + body


def midi(
    tracks: list[bytes], tpb: int = 480, fmt: int = 1, ntracks: int | None = None, division: bytes | None = None
) -> bytes:
    head = struct.pack(">HH", fmt, len(tracks) if ntracks is None else ntracks)
    head += division if division is not None else struct.pack(">H", tpb)
    return _chunk(b"MThd", head) + b"".join(_chunk(b"MTrk", t) for t in tracks)


def _notes(pairs, channel=0) -> bytes:
    """(delta, pitch, length) -> note on/off events, then end of track."""
    return (
        b"".join(
            _vlq(delta) + bytes([0x90 | channel, pitch, 100]) + _vlq(length) + bytes([0x80 | channel, pitch, 0])
            for delta, pitch, length in pairs
        )
        + b"\x00\xff\x2f\x00"
    )


def crafted_midi() -> dict[str, bytes]:
    """Hostile MIDI files made event by event."""
    program = b"\x00\xc0\x00"
    notes = _notes([(0, 60, 240), (240, 64, 240), (240, 67, 480)])
    return {
        "far-note-tpb1": midi([program + _notes([(2_250_000, 60, 1)])], tpb=1),  # the 60-byte, 84 GiB roll
        "enormous-delta": midi([program + _notes([(0x0FFFFFFF, 60, 10)])]),
        "endless-vlq": midi([program + b"\xff\xff\xff\xff\xff\xff\xff\xff\x90\x3c\x40"]),
        "running-status-abuse": midi([b"\x00\x3c\x40\x00\x3e\x40" * 50 + b"\x00\xff\x2f\x00"]),
        "running-status-long": midi([program + b"\x00\x90\x3c\x40" + b"\x10\x3c\x40" * 2000 + b"\x00\xff\x2f\x00"]),
        "zero-length-track": midi([b""]),
        "declared-zero-length": _chunk(b"MThd", struct.pack(">HHH", 1, 1, 480)) + _chunk(b"MTrk", notes, 0),
        "declared-huge-length": _chunk(b"MThd", struct.pack(">HHH", 1, 1, 480)) + _chunk(b"MTrk", notes, 2**31),
        "missing-tracks": midi([program + notes], ntracks=200),
        "huge-tpb": midi([program + _notes([(0, 60, 32767), (32767 * 40, 62, 100)])], tpb=32767),
        "tpb-zero": midi([program + notes], tpb=0),
        "smpte-division": midi([program + notes], division=b"\xe7\x28"),
        "type-2": midi([program + notes, program + notes], fmt=2),
        "no-notes": midi([b"\x00\xff\x2f\x00"]),
        "wrong-magic": b"MThX" + midi([program + notes])[4:],
        "empty-file": b"",
        "only-header": _chunk(b"MThd", struct.pack(">HHH", 1, 1, 480)),
        "sysex-huge-length": midi([b"\x00\xf0" + _vlq(2**27) + b"\x01\x02"]),
        "meta-huge-length": midi([b"\x00\xff\x01" + _vlq(2**27) + b"ab"]),
        "tempo-zero": midi([b"\x00\xff\x51\x03\x00\x00\x00" + program + notes]),
        "time-signature-garbage": midi([b"\x00\xff\x58\x04\x00\xff\x00\x00" + program + notes]),
        "many-notes": midi([program + _notes([(1, 60 + i % 12, 1) for i in range(600_000)])]),
        "bad-pitch": midi([program + b"\x00\x90\xff\x40\x10\x80\xff\x00\x00\xff\x2f\x00"]),
        "text-non-utf8": midi([b"\x00\xff\x03\x04\xff\xfe\xfd\xfc" + program + notes]),
    }


# ---- npz by hand ------------------------------------------------------------------------------------


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr)
    return buf.getvalue()


def _object_npy() -> bytes:
    """A .npy member declaring an object dtype (its payload is never looked at: readers must refuse the
    header; no pickle is written or read here)."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }".ljust(117) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + b"\x80\x04N."


def _npz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    return buf.getvalue()


def _lpd_members(length=576, data=None, indices=None, indptr=None, shape=None, info=None) -> dict[str, bytes]:
    data = np.array([100, 100], np.uint8) if data is None else data
    indices = np.array([0, 24], np.int32) if indices is None else indices
    indptr = np.r_[np.zeros(61, np.int32), np.full(68, 2, np.int32)] if indptr is None else indptr
    info = (
        info
        if info is not None
        else json.dumps({"resolution": 24, "name": "x", "0": {"program": 0, "is_drum": False, "name": "p"}}).encode()
    )
    return {
        "info.json": info,
        "pianoroll_0_csc_data.npy": _npy(data),
        "pianoroll_0_csc_indices.npy": _npy(indices),
        "pianoroll_0_csc_indptr.npy": _npy(indptr),
        "pianoroll_0_csc_shape.npy": _npy(np.array(shape or (length, 128), np.int64)),
        "downbeat.npy": _npy(np.arange(length) % 96 == 0),
    }


def zip_bomb(inflated: int = 2 << 30) -> bytes:
    """An npz whose one member is a few MB of deflate that inflates to `inflated` bytes of zeros (its sizes
    declared truthfully; the checksum is not computed, the reader must refuse it before reading anyway)."""
    chunk = 64 << 20
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH)
    again = c.compress(b"\0" * chunk) + c.flush(zlib.Z_FULL_FLUSH)  # the state is reset: every later chunk alike
    body = first + again * (inflated // chunk - 1) + c.flush(zlib.Z_FINISH)
    name = b"pianoroll_0_csc_data.npy"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, 0, len(body), inflated, len(name), 0) + name
    central = (
        struct.pack(
            "<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, 0, len(body), inflated, len(name), 0, 0, 0, 0, 0, 0
        )
        + name
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(body), 0)
    return local + body + central + end


def crafted_npz() -> dict[str, bytes]:
    m = _lpd_members
    return {
        "zip-bomb": zip_bomb(),
        "object-dtype": _npz({**m(), "pianoroll_0_csc_data.npy": _object_npy()}),
        "csc-indptr-short": _npz(m(indptr=np.zeros(5, np.int32))),
        "csc-indices-mismatch": _npz(m(indices=np.array([0, 1, 2, 3, 4], np.int32))),
        "csc-negative-indices": _npz(m(indices=np.array([-5, -1], np.int32))),
        "csc-indices-beyond": _npz(m(indices=np.array([10**8, 10**9], np.int32))),
        "huge-shape": _npz(m(shape=(10**9, 128))),
        "negative-shape": _npz(m(shape=(-5, 128))),
        "non-utf8-info": _npz(m(info=b'{"resolution": 24, "name": "\xff\xfe"}')),
        "info-not-json": _npz(m(info=b"{resolution: 24")),
        "info-resolution-zero": _npz(m(info=b'{"resolution": 0, "0": {"program": 0}}')),
        "info-resolution-string": _npz(m(info=b'{"resolution": "fast", "0": {"program": 0}}')),
        "no-info": _npz({k: v for k, v in m().items() if k != "info.json"}),
        "missing-member": _npz({k: v for k, v in m().items() if "indptr" not in k}),
        "not-npy-member": _npz({**m(), "pianoroll_0_csc_data.npy": b"hello"}),
        "npy-truncated": _npz({**m(), "pianoroll_0_csc_data.npy": _npy(np.zeros(1000, np.uint8))[:200]}),
        "npy-header-lies": _npz(
            {**m(), "pianoroll_0_csc_data.npy": _npy(np.zeros(4, np.uint8)).replace(b"(4,)", b"(4000000000,)")}
        ),
        "many-members": _npz({f"m{i}.npy": _npy(np.zeros(1, np.uint8)) for i in range(2000)}),
        "not-a-zip": b"PK\x03\x04" + os.urandom(300),
        "empty-zip": _npz({}),
    }


def mutations(blob: bytes, rng: np.random.Generator) -> dict[str, bytes]:
    """Truncations, byte flips and a wrong header of one good file."""
    out = {}
    n = len(blob)
    for frac in (0.02, 0.3, 0.7, 0.995):
        out[f"trunc{frac}"] = blob[: max(1, int(n * frac))]
    for k, flips in enumerate((1, 1, 4, 16, 64, 256)):
        b = bytearray(blob)
        for pos in rng.integers(0, n, size=flips):
            b[pos] ^= int(rng.integers(1, 256))
        out[f"flip{k}x{flips}"] = bytes(b)
    out["header"] = b"XXXX" + blob[4:]
    return out


def write_corpus(root: str, *, good: int = 10, seed: int = 0) -> tuple[list[str], list[str]]:
    """(good files, bad files) written under `root`: `good` MIDI and `good` npz songs, each with its
    mutations, and the crafted hostile files. Names include spaces and non-ASCII characters."""
    rng = np.random.default_rng(seed)
    good_paths, bad_paths = [], []
    os.makedirs(os.path.join(root, "good songs"), exist_ok=True)
    os.makedirs(os.path.join(root, "bad ünïcode 曲"), exist_ok=True)

    def put(folder, name, blob, into):
        path = os.path.join(root, folder, name)
        with open(path, "wb") as f:
            f.write(blob)
        into.append(path)

    for i in range(good):
        for kind, make in (("mid", good_midi), ("npz", good_npz)):
            blob = make(rng)
            put("good songs", f"{kind} song {i:02d} ♪.{kind}", blob, good_paths)
            for name, bad in mutations(blob, rng).items():
                put("bad ünïcode 曲", f"{kind}-{i:02d}-{name}.{kind}", bad, bad_paths)
    for name, blob in crafted_midi().items():
        put("bad ünïcode 曲", f"crafted-{name}.mid", blob, bad_paths)
    for name, blob in crafted_npz().items():
        put("bad ünïcode 曲", f"crafted-{name}.npz", blob, bad_paths)
    return good_paths, bad_paths


# ---- the second pass's classes ----------------------------------------------------------------------
# 1. small files within every cap that would cost gigabytes to read (budgets, not only caps)


def _deflated_member(name: str, header: bytes, fill: int, total: int) -> tuple[bytes, bytes]:
    """A zip member `header` + `fill` bytes up to `total`, deflated in pieces (never held inflated here)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    body, crc, left = [c.compress(header)], zlib.crc32(header), total - len(header)
    piece = bytes([fill]) * (1 << 20)
    while left > 0:
        blk = piece[: min(left, len(piece))]
        body.append(c.compress(blk))
        crc = zlib.crc32(blk, crc)
        left -= len(blk)
    body.append(c.flush())
    return b"".join(body), struct.pack("<I", crc)


def _zip(members: list[tuple[str, bytes, int, bytes]]) -> bytes:
    """A zip of pre-deflated members (name, deflated body, inflated size, crc)."""
    out, central = b"", b""
    for name, body, size, crc in members:
        n = name.encode()
        offset = len(out)
        out += (
            struct.pack("<IHHHHH", 0x04034B50, 20, 0, 8, 0, 0)
            + crc
            + struct.pack("<IIHH", len(body), size, len(n), 0)
            + n
            + body
        )
        central += (
            struct.pack("<IHHHHHH", 0x02014B50, 20, 20, 0, 8, 0, 0)
            + crc
            + struct.pack("<IIHHHHHII", len(body), size, len(n), 0, 0, 0, 0, 0, offset)
            + n
        )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    return out + central + end


def dense_npz(cells: int = 31 << 20) -> bytes:
    """Tens of KB that declare `cells` notes in one sparse track (every member just under the inflation cap):
    the reader must stay within its budget (chunked conversion) or refuse before allocating."""

    def npy(dtype, count, fill):
        header = f"{{'descr': '{dtype}', 'fortran_order': False, 'shape': ({count},), }}"
        header = header.ljust(117) + "\n"
        head = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1")
        return head, np.dtype(dtype).itemsize * count + len(head), fill

    members = []
    for name, (head, size, fill) in (
        ("pianoroll_0_csc_data.npy", npy("|u1", cells, 100)),
        ("pianoroll_0_csc_indices.npy", npy("|u1", cells, 0)),
    ):
        body, crc = _deflated_member(name, head, fill, size)
        members.append((name, body, size, crc))
    small = {
        "info.json": json.dumps({"resolution": 24, "0": {"program": 0, "is_drum": False}}).encode(),
        "pianoroll_0_csc_indptr.npy": _npy(np.r_[np.zeros(61, np.int64), np.full(68, cells, np.int64)]),
        "pianoroll_0_csc_shape.npy": _npy(np.array([96 * 64, 128], np.int64)),
    }
    for name, blob in small.items():
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        members.append((name, c.compress(blob) + c.flush(), len(blob), struct.pack("<I", zlib.crc32(blob))))
    return _zip(members)


def json_bomb_npz(objects: int = 2_000_000) -> bytes:
    """An info.json of millions of tiny JSON objects (a few hundred KB deflated, tens of MB inflated)."""
    info = b'{"resolution": 24, "x": [' + b"{}," * (objects - 1) + b'{}], "0": {"program": 0}}'
    return _npz({**_lpd_members(), "info.json": info})


def budget_cases() -> dict[str, bytes]:
    return {"dense-members": dense_npz(), "json-objects": json_bomb_npz()}


# 3. files of the project's own formats with unexpected content: (file name, bytes) per case


def own_format_cases() -> dict[str, tuple[str, bytes]]:
    """report.json, config.json, stats.json and metrics.jsonl as a newer version, a damaged disk or a hand edit
    could leave them."""
    from vaejax.config import Config

    cfg = Config().to_dict()
    newer = json.loads(json.dumps(cfg))
    newer["model"]["attention_heads"] = 8
    newer["sampler"] = {"temperature": 1.0}
    return {
        "config-newer-keys": ("config.json", json.dumps(newer).encode()),
        "config-list": ("config.json", b"[1, 2, 3]"),
        "config-section-list": ("config.json", json.dumps({**cfg, "model": [16]}).encode()),
        "config-wrong-type": ("config.json", json.dumps({**cfg, "train": {**cfg["train"], "lr": "fast"}}).encode()),
        "config-nan": ("config.json", json.dumps({**cfg, "train": {**cfg["train"], "lr": float("nan")}}).encode()),
        "config-not-utf8": ("config.json", b'{"model": {"latent": "\xff"}}'),
        "config-torn": ("config.json", json.dumps(cfg).encode()[:40]),
        "stats-list": ("stats.json", b"[]"),
        "stats-strings": ("stats.json", b'{"thresholds": "high", "harmony_guidance": "strong"}'),
        "stats-nan": ("stats.json", json.dumps({"thresholds": [[float("nan"), 0.5]] * 5}).encode()),
        "report-newer-format": ("report.json", json.dumps({"format": 99, "config": {}, "bars_per_split": {}}).encode()),
        "report-list": ("report.json", b"[]"),
        "report-config-list": ("report.json", json.dumps({"config": [], "bars_per_split": {}}).encode()),
        "report-counts-negative": (
            "report.json",
            json.dumps({"config": {}, "bars_per_split": {"train": -1, "valid": 0, "test": 0}}).encode(),
        ),
        "report-unknown-config-key": (
            "report.json",
            json.dumps({"config": {"hop": 3}, "bars_per_split": {"train": 0, "valid": 0, "test": 0}}).encode(),
        ),
        "metrics-torn-last-line": (
            "metrics.jsonl",
            b'{"stage": "vae", "kind": "train", "step": 2, "epoch": 0, "loss": 1.0}\n{"stage": "vae", "kind": "tr',
        ),
        "metrics-garbage-line": (
            "metrics.jsonl",
            b'{"stage": "vae", "kind": "train", "step": 2, "epoch": 0}\n'
            b'[1, 2]\n\xff\xfe\n{"stage": "vae", "kind": "valid", "step": 2, "epoch": 0, '
            b'"val_loss": 3.0}\n',
        ),
    }


# 4. processes: a file name that is not UTF-8 (os.fsencode names: bytes)

NON_UTF8_NAME = b"song \xff\xfe.mid"


# 2. options and settings a hostile user types: (command, argv) refused in one line, exit 2

OPTION_CASES = [
    ("train", ["--batch-size", "0"]),
    ("train", ["--batch-size", "-1"]),
    ("train", ["--lr", "nan"]),
    ("train", ["--lr", "inf"]),
    ("train", ["--seed", str(2**63)]),
    ("train", ["--seed", "-1"]),
    ("train", ["--vae-epochs", "-3"]),
    ("train", ["--chain-epochs", "0"]),
    ("train", ["--max-steps-per-epoch", "-1"]),
    ("train", ["--set", "train.checkpoint_every=0"]),
    ("train", ["--set", "train.log_every=-5"]),
    ("train", ["--set", "train.chain_lr=nan"]),
    ("train", ["--set", "model.hidden=0"]),
    ("train", ["--set", "model.time_patch=3"]),
    ("train", ["--set", "train.precision=float8"]),
    ("train", ["--set", "nonsense"]),
    ("train", ["--beta", "-1"]),
    ("train", ["--free-bits", "inf"]),
    ("train", ["--num-processes", "0"]),
    ("train", ["--process-id", "5", "--num-processes", "2"]),
    ("train", ["--coordinator", "host"]),
    ("train", ["--data", "/nonexistent/folder"]),
    ("sample", ["--sigma", "inf"]),
    ("sample", ["--sigma", "nan"]),
    ("sample", ["--seed", str(2**63)]),
    ("sample", ["--bars", "0"]),
    ("sample", ["--bars", "5000"]),
    ("sample", ["--num", "0"]),
    ("sample", ["--min-length", "-1"]),
    ("sample", ["--merge-gap", "-2"]),
    ("sample", ["--tempo", "0"]),
    ("sample", ["--sample-rate", "100"]),
    ("sample", ["--key", "9"]),
    ("sample", ["--sustain", "1"]),
    ("sample", ["--threshold", "0"]),
    ("sample", ["--harmony", "nan"]),
    ("sample", ["--memory-budget", "1"]),
    ("sample", ["--read-timeout", "0"]),
    ("sample", ["--bars", "4096"]),
    ("sample", ["--tracks", "piano"]),
    ("sample", ["--density", "2"]),
    ("sample", ["--from", "/nonexistent.mid"]),
    ("sample", ["--arrange", "a.mid", "--from", "b.mid"]),
    ("sample", ["--interpolate", "/dev/null", "/dev/null"]),
    ("sample", ["--checkpoint", "lpd6"]),
    ("data", ["prepare", "README.md", "OUT"]),
    ("data", ["prepare", "SRC", "OUT", "--timeout", "0"]),
    ("data", ["prepare", "SRC", "OUT", "--timeout", "-1"]),
    ("data", ["prepare", "SRC", "OUT", "--timeout", "nan"]),
    ("data", ["prepare", "SRC", "OUT", "--workers", "-1"]),
    ("data", ["prepare", "SRC", "OUT", "--memory-budget", "100"]),
    ("data", ["prepare", "SRC", "OUT", "--pitches", "0"]),
    ("data", ["prepare", "SRC", "OUT", "--segment-bars", "0"]),
    ("data", ["demo", "OUT", "--songs", "-1"]),
    ("evaluate", ["--runs", "/nonexistent", "--data", "/nonexistent", "--out", "OUT"]),
    ("evaluate", ["--runs", "SRC", "--data", "SRC", "--out", "OUT", "--songs", "0"]),
    ("evaluate", ["--runs", "SRC", "--data", "SRC", "--out", "OUT", "--sigmas", "nan"]),
]
