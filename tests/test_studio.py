"""The studio's web API in process (Starlette's TestClient) and the notebook view, with the packaged model:
validation messages, upload limits, every mode, downloads; no browser needed (see test_studio_browser.py)."""

from __future__ import annotations

import base64
import concurrent.futures
import io
import json
import os
import re
import socket
import warnings
import wave

import numpy as np
import pytest

from conftest import save_npz

pytest.importorskip("starlette")
pytest.importorskip("httpx")

with warnings.catch_warnings():  # newer Starlette suggests httpx2 for its test client; httpx still works
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient  # noqa: E402

from vaejax.studio import payload, server  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def model():
    from vaejax import packaging, trained_model

    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("the packaged model lpd5 is absent")
    return trained_model.load("lpd5")


@pytest.fixture(scope="module")
def studio(model):
    s = server.Studio(model, name="lpd5")
    yield s
    s.close()


@pytest.fixture(scope="module")
def client(studio):
    with TestClient(server.make_app(studio)) as c:
        yield c


def wav_seconds(data: bytes) -> float:
    with wave.open(io.BytesIO(data)) as w:
        return w.getnframes() / w.getframerate()


def short_piano(path, bars=4, tempo=100.0):
    """A MIDI file with a piano part of `bars` bars (C major chords) and nothing else."""
    import pretty_midi

    pm = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    piano = pretty_midi.Instrument(program=0, name="Piano")
    beat = 60.0 / tempo
    for b in range(bars * 4):
        for p in ((60, 64, 67), (57, 60, 64), (65, 69, 72), (67, 71, 74))[b // 4 % 4]:
            piano.notes.append(pretty_midi.Note(velocity=90, pitch=p, start=b * beat, end=(b + 0.9) * beat))
    pm.instruments.append(piano)
    pm.write(str(path))
    return str(path)


def test_options_come_from_the_model(client, model):
    d = client.get("/api/options").json()
    opts = {o["name"]: o for o in d["options"]}
    for name in (
        "bars",
        "sigma",
        "seed",
        "key",
        "tempo",
        "harmony",
        "tracks",
        "sustain",
        "sample",
        "min_length",
        "merge_gap",
        "sample_rate",
    ):
        assert name in opts
    assert opts["bars"]["default"] == 32 and opts["sigma"]["default"] == 0.5
    assert (opts["key"]["min"], opts["key"]["max"]) == (-6, 5)
    assert opts["harmony"]["default"] == pytest.approx(model.harmony_guidance)
    assert opts["tracks"]["choices"] == ["Drums", "Guitar", "Bass", "Strings"]
    # a choice of prior only where the model carries a learned one besides the chain
    assert ("prior" in opts) == (model.prior is not None)
    assert d["limits"]["max_upload_bytes"] == 4 << 20
    assert [t["name"] for t in d["tracks"]] == ["Drums", "Piano", "Guitar", "Bass", "Strings"]


def test_new_options_of_the_model_appear(model):
    class WithPriors:  # what a model with a choice of latent priors would offer
        cfg, K, run_dir, synthetic, harmony_guidance = model.cfg, 16, "x", False, 4.0
        priors = ("chain", "sequence")

        def sample(
            self,
            bars=32,
            *,
            sigma=0.5,
            seed=0,
            num=1,
            sustain=None,
            sample=False,
            prior="chain",
            temperature=1.0,
            **kw,
        ):
            return kw

    s = server.Studio(WithPriors())
    opts = {o["name"]: o for o in s.describe()["options"]}
    assert opts["prior"]["choices"] == ["chain", "sequence"] and opts["prior"]["default"] == "chain"
    assert opts["temperature"]["type"] == "float"
    with pytest.raises(server.StudioError, match="prior must be one of chain, sequence, got 'x'"):
        s.parse({"options": {"prior": "x"}})
    assert s.parse({"options": {"prior": "sequence"}})[1]["prior"] == "sequence"
    s.close()


def test_a_learned_prior_appears_where_the_model_carries_one(model, monkeypatch):
    from vaejax import config

    monkeypatch.setattr(config, "PRIORS", ("chain", "transformer"), raising=False)

    class WithPrior:  # a model that refuses the priors it does not carry
        cfg, K, run_dir, synthetic, harmony_guidance = model.cfg, 16, "x", False, 4.0

        def __init__(self, learned):
            self.learned = learned

        def prior_kind(self, prior=None):
            if prior is None:
                return "transformer" if self.learned else "chain"
            if prior == "transformer" and not self.learned:
                raise ValueError("no learned prior")
            return prior

        def sample(self, bars=32, *, sigma=0.5, seed=0, num=1, sustain=None, sample=False, prior=None, **kw):
            return kw

        def continue_song(self, song, bars=32, *, sigma=0.5, seed=0, prior=None, **kw):
            return kw

    s = server.Studio(WithPrior(True))
    prior = {o["name"]: o for o in s.describe()["options"]}["prior"]
    assert prior["choices"] == ["chain", "transformer"] and prior["default"] == "transformer"
    assert prior["modes"] == ["sample", "continue"]
    s.close()
    s = server.Studio(WithPrior(False))
    assert "prior" not in {o["name"] for o in s.describe()["options"]}  # one prior: nothing to choose
    s.close()


@pytest.mark.parametrize(
    "body, message",
    [
        ({"options": {"bars": 0}}, "bars must be an integer from 1 to 4096, got 0"),
        ({"options": {"sigma": "x", "key": 9}}, "sigma must be a number, got 'x'; key must be an integer from -6 to 5"),
        ({"options": {"bars": 600}}, "bars must be at most 512 in the studio"),
        ({"options": {"tempo": 1000}}, "tempo must be a number from 10 to 400"),
        ({"options": {"sustain": 1}}, "sustain must be a number from 1e-06 to 0.999999"),
        ({"options": {"sample": "yes"}}, "sample must be true or false"),
        ({"options": {"bogus": 1}}, "unknown option 'bogus'"),
        ({"mode": "remix"}, "mode must be one of sample, arrange, vary, continue"),
        ({"mode": "arrange"}, "arrange needs a song: upload a MIDI or npz file"),
        ({"mode": "arrange", "source": "1", "options": {"tracks": ["Flute"]}}, "unknown track 'Flute'"),
        ({"mode": "arrange", "source": "1", "options": {"density": "lots"}}, 'density: density must be "data"'),
        (
            {"mode": "arrange", "source": "1", "options": {"tracks": ["Bass"], "density": "strings=0.5"}},
            "density: 'strings' is not a track added here (Bass)",
        ),
        ({"mode": "vary", "source": "nope"}, "no song 'nope' here"),
    ],
)
def test_bad_options_get_a_message(client, body, message):
    r = client.post("/api/generate", json=body)
    assert r.status_code in (400, 404)
    assert message in r.json()["error"]
    assert "Traceback" not in r.text


def test_not_json(client):
    r = client.post("/api/generate", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"] == "the request body is not JSON"


@pytest.mark.slow
def test_generate_and_download(client):
    r = client.post("/api/generate", json={"mode": "sample", "options": {"bars": 2, "seed": 3, "tempo": 120}})
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["kind"] == "sample" and e["bars"] == 2 and e["song"]["steps"] == 2 * 96
    tracks = e["song"]["tracks"]
    assert [t["name"] for t in tracks] == ["Drums", "Piano", "Guitar", "Bass", "Strings"]
    assert e["counts"] == {t["name"]: len(t["notes"]) // 3 for t in tracks}
    for t in tracks:  # triples (start, end, pitch), ordered by start, inside the song
        n = np.array(t["notes"]).reshape(-1, 3)
        if len(n):
            assert (n[:, 0] < n[:, 1]).all() and (n[:, 1] <= 192).all() and (np.diff(n[:, 0]) >= 0).all()
            assert ((n[:, 2] >= 24) & (n[:, 2] < 108)).all()
    import pretty_midi

    midi = client.get("/" + e["midi"])
    assert midi.status_code == 200 and "attachment" in midi.headers["content-disposition"]
    pm = pretty_midi.PrettyMIDI(io.BytesIO(midi.content))
    written = {i.name: len(i.notes) for i in pm.instruments}  # (a track without notes writes no instrument)
    assert {t["name"]: written.get(t["name"], 0) for t in tracks} == e["counts"]
    wav = client.get("/" + e["audio"])
    assert wav.headers["content-type"] == "audio/wav" and wav_seconds(wav.content) == pytest.approx(5.0, abs=0.05)
    solo = client.get("/" + e["audio"] + "?tracks=3")  # the bass alone: same length, another mix
    assert wav_seconds(solo.content) == pytest.approx(5.0, abs=0.05) and solo.content != wav.content
    assert client.get("/" + e["audio"] + "?tracks=7").status_code == 400
    png = client.get("/" + e["png"])
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert client.get(f"/api/song/{e['id']}").json()["song"] == e["song"]
    assert e["id"] in [h["id"] for h in client.get("/api/history").json()["history"]]


def test_uploads_are_checked(client, studio, tmp_path):
    big = client.post("/api/upload?name=big.mid", content=b"\0" * ((4 << 20) + 1))
    assert big.status_code == 413 and "more than the studio's cap of 4 MiB" in big.json()["error"]
    bad = client.post("/api/upload?name=bad.mid", content=b"MThd\0\0\0\x06\0\x01\0\x01\x01\xe0MTrk\xff\xff\xff\xff")
    assert bad.status_code == 400
    assert bad.json()["error"].startswith("bad.mid: not a readable MIDI file")
    assert "unsupported file type '.txt'" in client.post("/api/upload?name=a.txt", content=b"x").json()["error"]
    assert client.post("/api/upload?name=e.mid", content=b"").json()["error"] == "e.mid: the file is empty"
    pickled = tmp_path / "p.npz"
    np.savez(pickled, x=np.array([{"a": 1}], dtype=object))
    r = client.post("/api/upload?name=p.npz", content=pickled.read_bytes())
    assert r.status_code == 400 and "pickled" in r.json()["error"]
    # a small cap is enforced on the stream too (no Content-Length)
    small = server.Studio(studio.model, max_upload=1000)
    with TestClient(server.make_app(small)) as c:
        r = c.post("/api/upload?name=x.mid", content=iter([b"\0" * 600, b"\0" * 600]))
        assert r.status_code == 413
    small.close()


def test_upload_npz(client, tmp_path):
    path = save_npz(
        str(tmp_path / "s.npz"),
        [(0, False, {(t, 60): 100 for t in range(0, 96, 2)}), (33, False, {(t, 40): 100 for t in range(96, 192)})],
        192,
    )
    r = client.post("/api/upload?name=s.npz", content=open(path, "rb").read())
    assert r.status_code == 200, r.text
    e = r.json()
    assert e["kind"] == "upload" and e["counts"]["Piano"] == 48 and e["counts"]["Bass"] == 1


@pytest.mark.slow
def test_arrange_vary_continue(client, tmp_path):
    up = client.post("/api/upload?name=piano.mid", content=open(short_piano(tmp_path / "p.mid"), "rb").read())
    assert up.status_code == 200, up.text
    u = up.json()
    assert u["counts"]["Piano"] == 48 and u["bars"] == 4 and u["song"]["tempo"] == pytest.approx(100)
    piano = u["song"]["tracks"][1]["notes"]

    a = client.post("/api/generate", json={"mode": "arrange", "source": u["id"], "options": {"tracks": ["Bass"]}})
    assert a.status_code == 200, a.text
    a = a.json()
    assert a["song"]["tracks"][1]["notes"] == piano  # the given part, note for note
    assert a["counts"]["Bass"] > 0 and a["counts"]["Drums"] == a["counts"]["Guitar"] == a["counts"]["Strings"] == 0
    assert a["song"]["tempo"] == pytest.approx(100) and a["params"]["source"] == u["id"]
    assert a["params"]["density"] == "data"  # the default: as often as the training data's bands
    quiet = client.post(
        "/api/generate", json={"mode": "arrange", "source": u["id"], "options": {"tracks": ["Bass"], "density": "0"}}
    )
    assert quiet.status_code == 200, quiet.text
    assert quiet.json()["counts"]["Bass"] == 0 and quiet.json()["params"]["density"] == "0"

    v = client.post("/api/generate", json={"mode": "vary", "source": a["id"], "options": {"sigma": 0.75, "bars": 2}})
    assert v.status_code == 200, v.text
    assert v.json()["bars"] == 2 and v.json()["kind"] == "vary"

    c = client.post("/api/generate", json={"mode": "continue", "source": u["id"], "options": {"bars": 2}})
    assert c.status_code == 200, c.text
    c = c.json()
    assert c["bars"] == 6
    n = np.array(c["song"]["tracks"][1]["notes"]).reshape(-1, 3)
    assert n[n[:, 0] < 4 * 96].ravel().tolist() == piano  # the source first, then the new bars
    assert any("are new" in m for m in c["notes"])
    too_long = client.post("/api/generate", json={"mode": "continue", "source": u["id"], "options": {"bars": 510}})
    assert too_long.status_code == 400 and "would pass the studio's 512" in too_long.json()["error"]


def test_several_requests_at_once(studio):
    bodies = [{"options": {"bars": 2, "seed": s}} for s in range(4)]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        entries = list(pool.map(studio.generate, bodies))
    assert len({e.id for e in entries}) == 4
    assert [e.params["seed"] for e in entries] == [0, 1, 2, 3]
    assert all(len(e.audio[(0, 1, 2, 3, 4)].data(timeout=120)) > 44 for e in entries)


def test_history_keeps_the_last(model):
    s = server.Studio(model, keep=2)
    first = s.generate({"options": {"bars": 2}})
    for seed in (1, 2):
        s.generate({"options": {"bars": 2, "seed": seed}})
    with pytest.raises(server.StudioError, match="keeps its last 2 results") as e:
        s.get(first.id)
    assert e.value.status == 404 and len(s.history()) == 2
    s.close()


def test_page_is_offline(client):
    page = client.get("/")
    assert page.status_code == 200 and "vaejax studio" in page.text
    for name in os.listdir(payload.STATIC):
        text = client.get(f"/static/{name}").text
        assert not re.search(r"(src|href)=\"(https?:)?//|url\((https?:)?//|@import|https?://", text), name


def test_port_in_use_is_one_line():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(server.StudioError, match=f"--port {port}: .*choose another with --port"):
            server.bind("127.0.0.1", port)
    assert server.main(["--port", "70000", "--no-browser"]) == 2


def test_show_inline(model):
    import vaejax

    song = model.sample(2, seed=1)[0]
    view = vaejax.show(song)
    html = view.data
    data = json.loads(re.search(r"roll\.setSong\((\{.*?\})\);", html).group(1).replace("<\\/", "</"))
    assert payload.note_counts(data) == payload.note_counts(payload.song_payload(song))
    assert sum(payload.note_counts(data).values()) > 0
    wav = base64.b64decode(re.search(r'src="data:audio/wav;base64,([A-Za-z0-9+/=]+)"', html).group(1))
    assert wav_seconds(wav) == pytest.approx(4.0, abs=0.05)
    assert "VaejaxRoll" in html and "https://" not in html
    assert "data:audio" not in vaejax.show(song, audio=False).data


def test_streamed_audio_sounds_like_the_whole_render(model):
    pytest.importorskip("midirenderer")
    from vaejax import render
    from vaejax.music import from_multitrack

    parts = [from_multitrack(model.sample(2, seed=s)[0]) for s in range(4)]  # 8 bars, no new compilation
    song = render.to_multitrack(np.concatenate(parts, axis=1), tempo=120.0)
    stream = payload.WavStream(song, 22050)
    stream.run()
    data = stream.data()
    assert len(data) == stream.size and len(stream._parts) == 5  # the header, then 1, 2, 4 and 1 bars
    with wave.open(io.BytesIO(data)) as w:
        streamed = np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32767
    assert streamed.size == int(round((16.0 + payload.TAIL_SECONDS) * 22050))  # 8 bars at 120 bpm, and the tail
    whole, how = render.synthesize(song, 22050)
    assert how.startswith("midirenderer")

    def envelope(x):  # loudness in 50 ms windows: chunking changes effect phases, not what one hears
        x = x[: len(x) // 1102 * 1102].reshape(-1, 1102)
        return np.sqrt((x**2).mean(axis=1))

    a, b = envelope(streamed[: whole.size]), envelope(whole[: streamed.size])
    n = min(a.size, b.size)
    assert np.corrcoef(a[:n], b[:n])[0, 1] > 0.9
    assert 0.2 < streamed.std() / whole.std() < 5


def test_whole_audio_is_sample_py_s(model):
    from vaejax import render

    song = model.sample(2, seed=4)[0]
    stream = payload.WavStream(song, 22050, whole=True)
    stream.run()
    with wave.open(io.BytesIO(stream.data())) as w:
        got = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    audio, _ = render.synthesize(song, 22050)
    want = (np.clip(audio, -1, 1) * 32767).astype("<i2")
    n = min(want.size, got.size)
    assert np.array_equal(got[:n], want[:n]) and not got[n:].any()


def test_loopback_studio_answers_its_own_names_only(studio):
    with TestClient(server.make_app(studio, server.LOOPBACK_NAMES), base_url="http://127.0.0.1:8765") as c:
        assert c.get("/api/options").status_code == 200
        assert c.get("/api/options", headers={"host": "evil.example:8765"}).status_code == 400
