"""The prepare command, the cache and the batches."""

import json
import os

import numpy as np
import pytest

from vaejax import data, demo, music
from vaejax.config import DataConfig
from vaejax.data.__main__ import main as data_main

from conftest import save_npz


def _corpus(root, n=12):
    os.makedirs(root, exist_ok=True)
    for i in range(n):
        save_npz(
            os.path.join(root, f"s{i:02d}.npz"),
            [(0, False, {(0, 60 + i): 100}), (33, False, {(96, 40): 100})],
            length=96 * (2 + i % 3),
        )
    return root


def test_key_shift_and_transpose():
    roll = np.zeros((5, 96, 84), bool)
    # a D major scale (D E F# G A B C#) on the piano, a bass on D: best fit is D major, moved down 2
    for pc in (2, 4, 6, 7, 9, 11, 13):
        roll[1, :10, 36 + pc - 24] = True
    roll[3, :, 26 - 24] = True
    roll[0, :, 12] = True  # drums are not pitched: ignored and never moved
    assert music.key_shift(roll) == -2
    moved = music.transpose(roll, -2)
    assert music.key_shift(moved) == 0
    np.testing.assert_array_equal(moved[0], roll[0])
    np.testing.assert_array_equal(moved[1, :, :-2], roll[1, :, 2:])
    assert moved[3, :, 0].all() and not moved[3, :, 2].any()  # the bass's D1 is now C1
    # notes pushed out of range are dropped; an empty roll does not move
    top = np.zeros((5, 4, 84), bool)
    top[2, :, 83] = True
    assert not music.transpose(top, 1)[2].any()
    assert music.key_shift(np.zeros((5, 4, 84), bool)) == 0


def test_prepare_normalises_keys(tmp_path):
    src = str(tmp_path / "src")
    os.makedirs(src)
    # two songs with the same tune, one a whole tone higher: after preparing, their bars are identical
    for name, up in (("a", 0), ("b", 2)):
        notes = {(i * 12, 48 + up + p): 100 for i, p in enumerate((0, 2, 4, 5, 7, 9, 11, 12))}
        save_npz(os.path.join(src, f"{name}.npz"), [(0, False, notes)], length=96)
    data.prepare(src, str(tmp_path / "out"), workers=1, progress=False)
    songs = {}
    for split in data.open_dataset(str(tmp_path / "out")).values():
        for i, sid in enumerate(split.ids):
            songs[str(sid)] = (split.song(i), int(split.shift[i]))
    assert songs["a"][1] == 0 and songs["b"][1] == -2
    np.testing.assert_array_equal(songs["a"][0], songs["b"][0])


def test_prepare_report_and_reuse(tmp_path):
    src = _corpus(str(tmp_path / "src"))
    cfg = DataConfig(key_normalize=False)
    rep = data.prepare(src, str(tmp_path / "out"), cfg, workers=2, progress=False)
    assert rep["songs_read"] == 12 and rep["songs_skipped"] == 0
    assert sum(rep["bars_per_split"].values()) == sum(2 + i % 3 for i in range(12))
    assert rep["nonempty_bar_share"]["Piano"] == pytest.approx(12 / 36, abs=1e-4)
    assert rep["nonempty_bar_share"]["Bass"] == pytest.approx(12 / 36, abs=1e-4)
    assert rep["nonempty_bar_share"]["Drums"] == 0
    again = data.prepare(src, str(tmp_path / "out"), cfg, workers=2, progress=False)
    assert again["reused"] is True
    # the cache holds exactly the bars of each song, in song order
    ds = data.open_dataset(str(tmp_path / "out"))
    for split in ds.values():
        for i, sid in enumerate(split.ids):
            k = int(sid[1:])
            bars = split.song(i)  # [5, n, 96, 84]
            assert bars.shape == (5, 2 + k % 3, 96, 84)
            assert np.argwhere(bars[1]).tolist() == [[0, 0, 36 + k]]
            assert np.argwhere(bars[3]).tolist() == [[1, 0, 16]]


def test_split_is_by_song_and_stable(tmp_path):
    cfg = DataConfig()
    ids = [f"TR{i:016d}" for i in range(2000)]
    splits = [data.split_of(s, cfg) for s in ids]
    assert splits == [data.split_of(s, cfg) for s in ids]  # deterministic
    shares = {s: splits.count(s) / len(ids) for s in data.SPLITS}
    assert 0.86 < shares["train"] < 0.94 and 0.03 < shares["valid"] < 0.07
    assert data.split_of("TRAAAGR128F425B14B", cfg) == data.split_of("TRAAAGR128F425B14B", DataConfig(segment_bars=2))


def test_split_known_values():
    import hashlib

    cfg = DataConfig()
    for s in ("a", "b", "TRAAAGR128F425B14B"):
        bucket = int.from_bytes(hashlib.sha1(s.encode()).digest()[:4], "big") % 100
        expected = "test" if bucket < 5 else "valid" if bucket < 10 else "train"
        assert data.split_of(s, cfg) == expected


def test_bad_files_are_skipped_and_reported(tmp_path):
    src = _corpus(str(tmp_path / "src"), n=4)
    (tmp_path / "src" / "noise.mid").write_bytes(os.urandom(200))
    bad = tmp_path / "src" / "trunc.npz"
    save_npz(bad, [(0, False, {(0, 60): 1})], length=96)
    bad.write_bytes(bad.read_bytes()[:100])
    rep = data.prepare(src, str(tmp_path / "out"), workers=1, progress=False)
    assert rep["songs_read"] == 4
    reasons = {os.path.basename(s["path"]): s["reason"] for s in rep["skipped"]}
    assert set(reasons) == {"noise.mid", "trunc.npz"}
    assert "not a readable MIDI" in reasons["noise.mid"] and "corrupt npz" in reasons["trunc.npz"]
    with open(tmp_path / "out" / "report.json") as f:
        assert json.load(f)["songs_skipped"] == 2


def test_strict_stops_at_first_bad_file(tmp_path):
    src = _corpus(str(tmp_path / "src"), n=2)
    (tmp_path / "src" / "noise.mid").write_bytes(b"MThd garbage")
    with pytest.raises(data.PrepareError) as e:
        data.prepare(src, str(tmp_path / "out"), workers=1, progress=False, strict=True)
    assert e.value.code == 3 and "noise.mid" in str(e.value)
    assert data_main(["prepare", src, str(tmp_path / "o2"), "--strict", "--quiet"]) == 3


def test_cli_exit_codes(tmp_path, capsys):
    assert data_main(["prepare", str(tmp_path / "missing"), str(tmp_path / "o"), "--quiet"]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert data_main(["prepare", str(tmp_path / "empty"), str(tmp_path / "o"), "--quiet"]) == 2
    assert "no .npz, .mid or .midi" in capsys.readouterr().err
    (tmp_path / "allbad").mkdir()
    (tmp_path / "allbad" / "x.mid").write_bytes(b"nope")
    assert data_main(["prepare", str(tmp_path / "allbad"), str(tmp_path / "o"), "--quiet"]) == 1
    src = _corpus(str(tmp_path / "src"), n=3)
    assert data_main(["prepare", src, str(tmp_path / "o3"), "--quiet"]) == 0
    assert "3 songs read" in capsys.readouterr().out


def test_batches_layout_shuffle_and_hosts(demo_prepared):
    split = data.open_dataset(demo_prepared)["train"]
    b0 = list(data.batches(split, 8, seed=0, epoch=0))
    assert b0[0].x.shape == (5, 8, 96, 84) and b0[0].x.dtype == np.float32
    assert len(b0) == len(split) // 8
    again = list(data.batches(split, 8, seed=0, epoch=0))
    assert all(np.array_equal(a.x, b.x) for a, b in zip(b0, again))
    other = list(data.batches(split, 8, seed=0, epoch=1))
    assert not np.array_equal(b0[0].x, other[0].x)
    # two hosts each read half of every global batch; together they are the one-host batch
    h0 = list(data.batches(split, 8, seed=0, epoch=0, shard=(0, 2)))
    h1 = list(data.batches(split, 8, seed=0, epoch=0, shard=(1, 2)))
    for full, a, b in zip(b0, h0, h1):
        assert np.array_equal(full.x, np.concatenate([a.x, b.x], axis=1))
    # resuming mid-epoch skips batches without changing the rest
    tail = list(data.batches(split, 8, seed=0, epoch=0, start=3))
    assert all(np.array_equal(a.x, b.x) for a, b in zip(b0[3:], tail))
    assert [x.x.sum() for x in data.prefetch(iter(b0))] == [x.x.sum() for x in b0]


def test_demo_corpus_is_deterministic_and_labelled(tmp_path):
    a, _ = demo.song(7, bars=4)
    b, _ = demo.song(7, bars=4)
    c, _ = demo.song(8, bars=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    demo.write_corpus(str(tmp_path / "d"), songs=3, seed=0, bars=4)
    assert (tmp_path / "d" / "SYNTHETIC").exists()
    rep = data.prepare(str(tmp_path / "d"), str(tmp_path / "p"), workers=1, progress=False)
    assert rep["synthetic"] is True and "SYNTHETIC" in data.summary(rep)
    song = music.read_song(str(tmp_path / "d" / "synthetic-000-0000.npz"))
    assert song.roll[1].any()  # every demo song has piano


def test_download_helper(tmp_path):
    """Fetch and unpack an archive from a local HTTP server."""
    import hashlib
    import http.server
    import tarfile
    import threading
    from functools import partial

    from vaejax import download

    src = _corpus(str(tmp_path / "lpd5"), n=2)
    archive = tmp_path / "srv" / "lpd5.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as t:
        t.add(src, arcname="lpd5")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/lpd5.tar.gz"
        out = download.fetch(url, str(tmp_path / "got"), sha256=digest, progress=False)
        assert sorted(os.listdir(os.path.join(out, "lpd5"))) == ["s00.npz", "s01.npz"]
        with pytest.raises(download.DownloadError, match="checksum"):
            download.fetch(url, str(tmp_path / "got2"), sha256="0" * 64, progress=False)
        with pytest.raises(download.DownloadError, match="404"):
            download.fetch(url + ".missing", str(tmp_path / "got3"), progress=False)
    finally:
        server.shutdown()
