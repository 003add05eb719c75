"""The prior over bar latents (vaejax.prior), its training stage, generation with it, and the form metrics."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaejax import cli, form, prior, trained_model
from vaejax.config import PIANO, PriorConfig, preset
from vaejax.training.steps import make_prior_fns, prior_optimizer, train_state

CFG = PriorConfig(layers=2, dim=32, heads=4, context=8, mixtures=3, steps=30, batch_size=16, warmup=5, lr=3e-3)
K = 4


def _net(band=False, seed=0, cfg=CFG):
    return prior.prior_net(cfg, K, jax.random.key(seed), band=band)


def _inputs(b=2, length=8, seed=0):
    r = np.random.default_rng(seed)
    z = r.standard_normal((b, length, 5, K)).astype(np.float32)
    plays = (r.random((b, length, 5)) < 0.6).astype(np.float32)
    phase = np.tile(np.arange(length, dtype=np.int32), (b, 1))
    return z, plays, phase


def _piano(z, plays):
    return np.concatenate([z[:, :, PIANO], plays[:, :, PIANO, None]], -1)


@pytest.mark.parametrize("copy", ["both", "track", "bar"])
def test_shapes_and_causality(copy):
    import dataclasses

    net = _net(cfg=dataclasses.replace(CFG, copy=copy))
    z, plays, phase = _inputs()
    out = net(z, plays, phase)
    assert out.plays.shape == (2, 8, 5) and out.weights.shape == (2, 8, 3)
    assert out.means.shape == out.log_scales.shape == (2, 8, 3, 5, K)
    z2, p2 = z.copy(), plays.copy()
    z2[:, 5:] += 3.0
    p2[:, 6:] = 1 - p2[:, 6:]  # (a bar's own plays bits condition its latent mixture, as when sampling)
    out2 = net(z2, p2, phase)
    tracks = () if copy == "bar" else (5,)  # a pointer per track, or one for the whole bar
    assert out.new.shape == (2, 8) + tracks and out.copies.shape == (2, 8, 8) + tracks
    assert (np.asarray(out.copies[0])[np.triu_indices(8)] < -1e8).all()  # bar t copies only bars before it
    if copy == "both":  # and a whole-bar pointer besides the tracks' own
        assert out.bar_new.shape == (2, 8) and out.bar_copies.shape == (2, 8, 8)
    fields = ("plays", "weights", "means", "log_scales", "new", "copies")
    fields += ("bar_new", "bar_copies") if copy == "both" else ()
    for f in fields:  # bar t reads bars < t only: outputs up to bar 5 are unchanged
        np.testing.assert_allclose(np.asarray(getattr(out, f))[:, :6], np.asarray(getattr(out2, f))[:, :6], atol=1e-5)
    for f in ("plays", "weights", "means", "new"):  # (the log scales start at zero everywhere)
        assert not np.allclose(np.asarray(getattr(out, f))[:, 6:], np.asarray(getattr(out2, f))[:, 6:])


def test_band_prior_looks_ahead_at_the_piano_only():
    net = _net(band=True)
    z, plays, phase = _inputs()
    out = net(z, plays, phase, _piano(z, plays))
    z2 = z.copy()
    z2[:, 6, PIANO] += 3.0  # a later piano bar changes earlier outputs ...
    assert not np.allclose(net(z2, plays, phase, _piano(z2, plays)).means[:, 2], out.means[:, 2])
    z3 = z.copy()
    z3[:, 6, 0] += 3.0  # ... a later drum bar does not
    np.testing.assert_allclose(net(z3, plays, phase, _piano(z3, plays)).means[:, :7], out.means[:, :7], atol=1e-5)


def test_cached_step_equals_the_full_window():
    net = _net(band=True)
    z, plays, phase = _inputs()
    piano = _piano(z, plays)
    full = net.hidden(z, plays, phase, piano)
    _, cache = net.hidden(z, plays, phase, piano, cache=True)
    x = net.inputs(z, plays, phase, piano)
    for t in (0, 3, 7):
        h, _ = net.step(x[:, t], cache, t)
        np.testing.assert_allclose(h, full[:, t], atol=1e-4)


def _phrase_songs(n_songs=32, bars=16, seed=0):
    """Songs of 4-bar phrases repeated: bar t equals bar t-4 (plus a little noise)."""
    r = np.random.default_rng(seed)
    phrase = r.standard_normal((n_songs, 4, 5, K)).astype(np.float32)
    z = np.tile(phrase, (1, bars // 4, 1, 1)) + 0.05 * r.standard_normal((n_songs, bars, 5, K)).astype(np.float32)
    plays = np.tile(r.random((n_songs, 4, 5)) < 0.7, (1, bars // 4, 1))
    seqs = prior.Sequences(z.reshape(-1, 5, K), plays.reshape(-1, 5), np.arange(n_songs) * bars, np.full(n_songs, bars))
    return seqs


@pytest.mark.slow
@pytest.mark.e2e
def test_training_reduces_the_loss_on_repeating_sequences():
    seqs = _phrase_songs()
    rows = seqs.windows(CFG.context)
    assert len(rows) == 32 * (16 - 8 + 1)
    nets = {"song": _net(), "band": _net(band=True, seed=1)}
    split = {n: nnx.split(m) for n, m in nets.items()}
    tx = prior_optimizer(CFG)
    state = train_state({n: p for n, (_, p) in split.items()}, tx, jax.random.key(0))
    step, evaluate = make_prior_fns({n: g for n, (g, _) in split.items()}, tx, CFG)
    batch = seqs.batch(rows[:64], CFG.context)
    before = evaluate(state["params"], *batch)
    r = np.random.default_rng(0)
    for i in range(CFG.steps):
        state, _ = step(state, *seqs.batch(rows[r.integers(len(rows), size=CFG.batch_size)], CFG.context), jnp.int32(i))
    after = evaluate(state["params"], *batch)
    for name in ("song", "band"):
        assert float(after[name].loss) < float(before[name].loss) - 5.0
        assert float(after[name].plays) < float(before[name].plays)


def _groove_songs(n_songs=48, bars=16, seed=0):
    """Songs whose drums repeat every bar, whose piano repeats every four bars, and whose other tracks are
    new in every bar."""
    r = np.random.default_rng(seed)
    z = r.standard_normal((n_songs, bars, 5, K)).astype(np.float32)
    z[:, :, 0] = z[:, :1, 0]
    z[:, :, PIANO] = np.tile(z[:, :4, PIANO], (1, bars // 4, 1))
    plays = np.ones((n_songs, bars, 5), bool)
    return prior.Sequences(z.reshape(-1, 5, K), plays.reshape(-1, 5), np.arange(n_songs) * bars, np.full(n_songs, bars))


@pytest.mark.slow
def test_per_track_pointers_learn_which_track_repeats_at_which_distance():
    import dataclasses

    cfg = dataclasses.replace(CFG, steps=150, copy="track")
    seqs = _groove_songs()
    rows = seqs.windows(cfg.context)
    gd, params = nnx.split(_net(cfg=cfg))
    tx = prior_optimizer(cfg)
    state = train_state({"song": params}, tx, jax.random.key(0))
    step, _ = make_prior_fns({"song": gd}, tx, cfg)
    r = np.random.default_rng(0)
    for i in range(cfg.steps):
        state, _ = step(state, *seqs.batch(rows[r.integers(len(rows), size=cfg.batch_size)], cfg.context), jnp.int32(i))
    f = jax.jit(lambda p, *a: prior.sample_window(gd, p, *a))
    z, _ = prior.generate(
        lambda *a: f(state["params"]["song"], *a),
        jax.random.key(1),
        num=32,
        bars=8,
        latent=K,
        context=cfg.context,
        temperature=1.0,
    )

    def repeats(track, lag):  # share of bars whose part is exactly that of `lag` bars before
        return float(np.mean(np.all(z[:, lag:, track] == z[:, :-lag, track], -1)))

    assert repeats(0, 1) > 0.6  # the drums keep their groove bar after bar ...
    assert repeats(PIANO, 4) > 0.35 and repeats(PIANO, 1) < 0.2  # ... the piano comes back after four bars ...
    assert repeats(2, 1) < 0.2 and repeats(2, 4) < 0.2  # ... and the guitar plays something new


def _window(net):
    gd, params = nnx.split(net)
    f = jax.jit(lambda p, *a: prior.sample_window(gd, p, *a))
    return lambda *a: f(params, *a)


def test_sampling_is_seeded_and_temperature_sets_the_variation():
    win = _window(_net())
    kw = dict(num=16, bars=8, latent=K, context=CFG.context)
    a = prior.generate(win, jax.random.key(1), temperature=1.0, **kw)
    b = prior.generate(win, jax.random.key(1), temperature=1.0, **kw)
    c = prior.generate(win, jax.random.key(2), temperature=1.0, **kw)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])
    assert a[0].shape == (16, 8, 5, K) and a[1].shape == (16, 8, 5) and a[1].dtype == bool

    def spread(sigma):  # how far songs of one seed differ from each other
        z, p = prior.generate(win, jax.random.key(3), temperature=prior.temperature_of(sigma), **kw)
        return float(z.std(0).mean() + p.std(0).mean())

    s = [spread(x) for x in (0.0, 0.25, 0.5, 1.0)]
    assert s[0] < 1e-6  # sigma 0: the likeliest choice at every bar, the same song every time
    assert s[0] < s[1] < s[2] < s[3]


def test_one_step_draws_are_the_sampler_s_draws_from_the_real_bars_before():
    net = _net()
    gd, params = nnx.split(net)
    z, plays, phase = map(jnp.asarray, _inputs(b=3))
    key, temp = jax.random.key(4), 1.25
    dz, dp = jax.jit(lambda p: prior.draw_one_step(nnx.merge(gd, p), key, z, plays, phase, temp))(params)
    assert dz.shape == z.shape and dp.shape == plays.shape
    win = jax.jit(lambda p, t: prior.sample_window(gd, p, key, z, plays, phase, temp, t))
    for t in (0, 3, 7):  # the sampler keeps bars < t and draws bar t with the same key
        sz, sp = win(params, t)
        np.testing.assert_allclose(dz[:, t], sz[:, t], atol=1e-4)
        np.testing.assert_array_equal(dp[:, t], sp[:, t])
    assert not np.allclose(dz[:, 3], dz[:, 4])


def test_training_on_own_draws_ramps_in():
    import dataclasses

    from vaejax.training.steps import own_inputs

    cfg = dataclasses.replace(CFG, own_inputs=1.0, steps=20)  # every bar its own draw from step 10
    net = _net()  # the same network: only its training differs
    z, plays, phase = map(jnp.asarray, _inputs(b=3))
    key = jax.random.key(5)
    kd = jax.random.split(jax.random.fold_in(key, 1))[0]

    @jax.jit
    def read(step):
        return own_inputs(cfg, net, key, z, plays, phase, None, step), prior.draw_one_step(
            net, kd, z, plays, phase, 1.25
        )

    (z0, p0), _ = read(0)  # the share starts at 0: the real bars
    np.testing.assert_array_equal(z0, z)
    np.testing.assert_array_equal(p0, plays)
    (z1, p1), drawn = read(10)  # all of them the prior's own draws at the default sigma's temperature
    np.testing.assert_allclose(z1, drawn[0], atol=1e-5)
    np.testing.assert_array_equal(p1, drawn[1])
    (z5, _), _ = read(5)  # half way up the ramp: about half the bars
    mine = np.mean(np.any(np.asarray(z5) != np.asarray(z), axis=(2, 3)))
    assert 0.2 < mine < 0.8
    with pytest.raises(ValueError, match="own_inputs"):
        PriorConfig(own_inputs=1.5)


def test_prefix_kept_and_long_songs_slide():
    win = _window(_net())
    z0, p0, _ = _inputs(b=3, length=5, seed=4)
    z, p = prior.generate(
        win,
        jax.random.key(0),
        num=3,
        bars=20,
        latent=K,
        context=CFG.context,
        temperature=1.0,
        prefix=z0,
        prefix_plays=p0,
    )
    assert z.shape == (3, 20, 5, K)
    np.testing.assert_array_equal(z[:, :5], z0)
    np.testing.assert_array_equal(p[:, :5], p0 > 0.5)
    assert np.abs(z[:, 5:]).sum(-1).all()  # every later bar was drawn (none left at zero)


def test_arranging_keeps_the_given_piano():
    win = _window(_net(band=True))
    z0, p0, _ = _inputs(b=2, length=12, seed=5)
    z, p = prior.generate(
        win, jax.random.key(0), num=2, bars=12, latent=K, context=CFG.context, temperature=1.0, piano=_piano(z0, p0)
    )
    np.testing.assert_allclose(z[:, :, PIANO], z0[:, :, PIANO])
    np.testing.assert_array_equal(p[:, :, PIANO], p0[:, :, PIANO] > 0.5)


# ---- form metrics on hand-made rolls --------------------------------------------------------------------


def _bar(r, density=0.05):
    x = np.zeros((5, 96, 84), bool)
    for t in range(5):
        cells = r.random((16, 84)) < density
        x[t] = np.repeat(cells, 6, axis=0)
    return x


def test_form_of_a_song_that_repeats_every_four_bars():
    r = np.random.default_rng(0)
    phrase = [_bar(r) for _ in range(4)]
    song = np.stack([phrase[t % 4] for t in range(32)], 1)[None]  # [1, 5, 32, 96, 84]
    m = form.form_metrics(song)
    assert m["sim lag 4"] == 1.0 and m["sim lag 8"] == 1.0 and m["sim lag 16"] == 1.0
    assert m["sim lag 1"] < 0.2 and m["phrase ratio"] > 4
    assert m["near repeats %"] == 100.0
    assert m["empty % Drums"] == 0.0


def test_near_repeats_and_empty_bars_as_constructed():
    r = np.random.default_rng(1)
    bars = [_bar(r) for _ in range(24)]
    order = list(range(8)) + list(range(8)) + list(range(8, 24))  # bars 8-15 repeat 0-7, the rest are new
    song = np.stack([bars[i] for i in order], 1)[None]
    song[0, 3, 20:] = False  # the bass rests in the last 12 bars
    m = form.form_metrics(song)
    assert m["near repeats %"] == pytest.approx(100 * 8 / 28)
    assert m["empty % Bass"] == pytest.approx(100 * 12 / 32)
    assert m["sim lag 8"] > 0.2 and m["phrase ratio"] > 1
    ssm = form.self_similarity(song)
    assert ssm.shape == (1, 32, 32) and np.allclose(np.diagonal(ssm[0]), 1)
    np.testing.assert_allclose(ssm[0], ssm[0].T)
    # two silent bars are identical
    assert form.self_similarity(np.zeros((1, 5, 2, 96, 84), bool))[0, 0, 1] == 1.0


def test_self_similarity_picture(tmp_path):
    r = np.random.default_rng(2)
    songs = np.stack([np.stack([_bar(r) for _ in range(8)], 1) for _ in range(2)])
    path = form.plot_self_similarity(str(tmp_path / "ssm.png"), {"a": songs, "b": songs[::-1]}, songs=2)
    assert os.path.getsize(path) > 1000


# ---- the model: stage, generation, packaging ------------------------------------------------------------


@pytest.fixture(scope="module")
def model(tiny_run):
    return trained_model.load(tiny_run)


def test_the_run_carries_a_prior_and_selects_it(model, tiny_run):
    from vaejax.config import PRIOR

    assert os.path.isdir(os.path.join(tiny_run, "ckpt", "prior", "best"))
    assert set(model.prior) == {"song", "band"}
    assert model.prior_kind() == PRIOR and model.prior_kind("chain") == "chain"
    assert model.prior_kind("transformer") == "transformer"
    with pytest.raises(ValueError, match="prior must be one of"):
        model.prior_kind("lstm")
    songs = model.sample(bars=6, sigma=0.5, seed=1, num=2, prior="transformer")
    again = model.sample(bars=6, sigma=0.5, seed=1, num=2, prior="transformer")
    assert len(songs) == 2 and songs[0].tracks[1].pianoroll.shape[0] == 6 * 96
    for a, b in zip(songs, again):
        assert all(np.array_equal(x.pianoroll, y.pianoroll) for x, y in zip(a.tracks, b.tracks))


def test_chain_is_still_there_and_unchanged(model):
    """prior='chain' generates exactly as the chain always has: the chain's latents, rests from its
    predictions before the noise."""
    from vaejax import music

    free = model.with_options(drum_kit=0)  # generated drums keep one kit (tests/test_drum_kit.py)
    got = music.from_multitrack(
        free.sample(bars=5, sigma=0.5, seed=4, num=2, prior="chain", min_length=0, merge_gap=0)[1]
    )
    z, means = model.sample_latents(5, sigma=0.5, seed=4, num=2, with_means=True)
    flat = lambda a: a.map(lambda x: x.reshape((-1,) + x.shape[2:]))  # noqa: E731
    roll = model.rolls(flat(z), seed=5, plays_latents=flat(means))
    np.testing.assert_array_equal(got, roll[:, 5 * 96 :])
    bars = free.prior_bars(5, sigma=0.5, seed=4, num=2, prior="chain")
    np.testing.assert_array_equal(bars.reshape(5, -1, 84), roll)


def test_continue_and_arrange_with_each_prior(model):
    from vaejax import music

    song = model.sample(bars=6, sigma=0.5, seed=2)[0]
    for p in ("transformer", "chain"):
        cont = music.from_multitrack(model.continue_song(song, bars=5, seed=3, prior=p))
        assert cont.shape == (5, 5 * 96, 84)
        piano = np.random.default_rng(0).random((7 * 96, 84)) < 0.03
        out = music.from_multitrack(model.arrange(piano, seed=1, prior=p))
        assert np.array_equal(out[PIANO], piano) and out.shape == (5, 7 * 96, 84)


def test_packaged_model_carries_the_prior(model, tmp_path):
    out = str(tmp_path / "pk")
    assert cli.export_main([model.run_dir, out]) == 0
    packed = trained_model.load(out)
    assert packed.prior_kind("transformer") == "transformer" and set(packed.prior) == set(model.prior)
    for name in model.prior:
        for a, b in zip(jax.tree.leaves(model.prior[name]), jax.tree.leaves(packed.prior[name])):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=2e-3, rtol=2e-3)
    z1, p1 = model._prior_draw("song", 3, 6, sigma=0.5, seed=0)
    z2, p2 = packed._prior_draw("song", 3, 6, sigma=0.5, seed=0)
    assert (p1 == p2).mean() > 0.9


def test_style_of_is_each_tracks_mean_where_it_plays_and_its_share():
    z = np.zeros((1, 4, 5, K), np.float32)
    z[0, :, PIANO, 0] = [1.0, 3.0, 100.0, 5.0]
    plays = np.zeros((1, 4, 5), np.float32)
    plays[0, [0, 1, 3], PIANO] = 1.0  # the piano rests in bar 2: its latents there do not count
    code = np.asarray(prior.style_of(z, plays)).reshape(1, -1)
    assert code.shape == (1, 5 * (K + 1))
    means, share = code[0, : 5 * K].reshape(5, K), code[0, 5 * K :]
    assert means[PIANO, 0] == pytest.approx(3.0) and np.all(means[PIANO, 1:] == 0)
    assert np.all(means[np.arange(5) != PIANO] == 0)  # tracks that never play: 0
    np.testing.assert_allclose(share, [-1, 0.5, -1, -1, -1])  # 3 of 4 bars -> 2 * 0.75 - 1


def test_a_styled_prior_needs_its_song_code():
    import dataclasses

    cfg = dataclasses.replace(CFG, style=True)
    build = lambda band=False: prior.BarPrior(cfg, K, band=band, rngs=nnx.Rngs(0))  # noqa: E731
    assert not nnx.eval_shape(lambda: build(band=True)).styled  # the arranging prior reads the piano part
    assert nnx.eval_shape(build).styled
    with pytest.raises(ValueError, match="song-level code"):  # traced only: shapes, no compiling
        jax.eval_shape(lambda: build()(*_inputs()).means)


def test_stage_prior_retrains_on_an_existing_run(tiny_run, demo_prepared, tmp_path):
    """`train.py --run RUN --stage prior` keeps the run's other settings and trains only the prior; a styled
    prior (`prior.style`) keeps a bank of real passages' song codes in stats.json, new songs draw theirs from
    it, a continued song keeps its own (or the bank's nearest where it is short)."""
    import shutil

    from vaejax import training
    from vaejax.runs import RunFolder

    run = str(tmp_path / "again")
    shutil.copytree(tiny_run, run, ignore=shutil.ignore_patterns(".lock", "prior"))
    before = RunFolder(run).read_config()
    cfg = preset("default").replace(
        prior={
            "layers": 1,
            "dim": 16,
            "heads": 2,
            "context": 4,
            "mixtures": 2,
            "steps": 4,
            "batch_size": 4,
            "epochs": 1,
            "band": False,
            "calibrate_songs": 0,
            "style": True,
        }
    )
    _, results = training.train(run, demo_prepared, cfg, stages=("prior",), progress=False)
    assert set(results) == {"prior"} and np.isfinite(results["prior"]["val_loss"])
    after = RunFolder(run).read_config()
    assert after.model == before.model and after.train == before.train and after.prior.dim == 16
    m = trained_model.load(run)
    assert set(m.prior) == {"song"} and m.prior_kind("transformer") == "transformer"
    assert "band" not in m.prior  # no arranging prior: arrange falls back to the chain
    m.arrange(np.zeros((96, 84), bool))

    bank = np.asarray(RunFolder(run).read_stats()["prior_styles"])
    k = m.K
    assert bank.ndim == 2 and bank.shape[1] == 5 * (k + 1) and 1 < len(bank) <= 512
    assert np.all(np.abs(bank[:, 5 * k :]) <= 1)  # shares of bars played, scaled to [-1, 1]
    new = m.prior_styles(6, seed=3)
    assert all(any(np.array_equal(row, b) for b in bank) for row in new)
    np.testing.assert_array_equal(new, m.prior_styles(6, seed=3))
    z, plays = m.prior_draws(8, num=2, seed=1)
    own = np.asarray(prior.style_of(z[:, :4], plays[:, :4].astype(np.float32)))
    np.testing.assert_allclose(m.prior_styles(2, 0, z[:, :4], plays[:, :4]), own, atol=1e-6)  # a whole context
    short = m.prior_styles(2, 0, z[:, :2], plays[:, :2])  # shorter: the nearest real code
    assert all(any(np.array_equal(row, b) for b in bank) for row in short)
    assert m.continue_song(np.zeros((5, 2 * 96, 84), bool), bars=4) is not None  # (its code: the bank's nearest)
    # the code steers every window of a song (8 bars: two windows of the prior's 4)
    window = lambda *a: m._prior_windows["song"](m.prior["song"], *a)  # noqa: E731
    kw = dict(num=2, bars=8, latent=k, context=4, temperature=1.0)
    a = prior.generate(window, jax.random.key(0), style=bank[:2], **kw)[0]
    np.testing.assert_array_equal(a, prior.generate(window, jax.random.key(0), style=bank[:2], **kw)[0])
    b = prior.generate(window, jax.random.key(0), style=bank[2:4], **kw)[0]
    assert not np.allclose(a[:, :4], b[:, :4]) and not np.allclose(a[:, 4:], b[:, 4:])
    broken = str(tmp_path / "no-bank")  # a copy: the trained run stays this working folder's latest run
    shutil.copytree(run, broken, ignore=shutil.ignore_patterns(".lock"))
    stats = RunFolder(broken).read_stats()
    del stats["prior_styles"]
    RunFolder(broken).write_stats(stats)
    with pytest.raises(ValueError, match="prior_styles"):
        trained_model.load(broken).prior_draws(4)


def _starts(bars):
    """Note starts per track of `[5, ...]` bars (a note sounding where it did not the step before)."""
    b = bars.reshape(5, -1, bars.shape[-1])
    return (b & ~np.pad(b, ((0, 0), (1, 0), (0, 0)))[:, :-1]).sum(axis=(1, 2))


def test_the_prior_stage_calibrates_how_its_bars_are_decoded(model, tiny_run):
    """Training the prior ends with its decoding calibrated (stats.json); the model reads it, and it applies
    to bars drawn from the prior only: the chain and reconstructions decode as before."""
    from vaejax.runs import RunFolder
    from vaejax.training import calibration

    stats = RunFolder(tiny_run).read_stats()
    # the onset rounds, a row with the sustain and one with its ages where a track decodes with one, then the
    # spread and half as many rounds more
    rounds = calibration.PRIOR_ROUNDS + 1 + calibration.PRIOR_ROUNDS // 2 + 1
    assert len(stats["prior_decoding"]) in (rounds, rounds + 2)
    if len(stats["prior_decoding"]) == rounds + 2:
        np.testing.assert_allclose(model.prior_sustain_ages, stats["prior_sustain_ages"])
    assert "prior_spread" in stats and len(stats["prior_spread"]) == 5
    np.testing.assert_allclose(model.prior_sustain, stats["prior_sustain"])
    assert stats["prior_decoding_for"]["step"] > 0  # which prior it was made for: a rerun leaves it
    np.testing.assert_allclose(model.prior_onset_cuts, stats["prior_onset_thresholds"])
    np.testing.assert_allclose(model.prior_count_scale, stats["prior_count_scale"])
    assert model.prior_onset_cuts.shape == model.onset_cuts.shape
    plain = model.with_prior_decoding(model.onset_cuts, np.ones(5))
    more = model.with_prior_decoding(model.onset_cuts, np.full(5, 3.0))
    z, means = model.sample_latents(4, seed=1, with_means=True)
    np.testing.assert_array_equal(more.rolls(z[0], plays_latents=means[0]), plain.rolls(z[0], plays_latents=means[0]))
    a, b = (m.prior_bars(4, sigma=0.5, seed=2, num=4) for m in (plain, more))
    assert _starts(b).sum() > 1.5 * _starts(a).sum() > 0
    held, short = (model.with_prior_decoding(model.onset_cuts, np.ones(5), np.full(5, f)) for f in (0.05, 0.95))
    np.testing.assert_array_equal(held.rolls(z[0], plays_latents=means[0]), short.rolls(z[0], plays_latents=means[0]))
    c, d = (m.prior_bars(4, sigma=0.5, seed=2, num=4) for m in (held, short))

    # the piano (decoded first, on its own) starts the same notes in every bar (counted bar by bar: a note held
    # to a bar's end joins one of its pitch starting the next bar) and holds them as long or longer; the band
    # follows it; together they sound longer
    def per_bar(x):
        b = x.reshape(5, -1, 96, 84)
        return (b & ~np.pad(b, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :-1]).sum(axis=(1, 2, 3))

    assert per_bar(c)[PIANO] == per_bar(d)[PIANO] and c[PIANO].sum() >= d[PIANO].sum() and c.sum() > d.sum()
    with pytest.raises(ValueError, match="prior decoding of shapes"):
        model.with_prior_decoding(np.ones(3), np.ones(5))
    np.testing.assert_allclose(model.prior_spread, stats["prior_spread"])
    with pytest.raises(ValueError, match="pitch spread must lie in"):
        model.with_prior_decoding(model.onset_cuts, np.ones(5), spread=np.zeros(5))
    from vaejax.runs import RunError

    for bad in ([0.0, 1, 1, 1, 1], [1.5] * 5, [1.0] * 4):
        with pytest.raises(RunError, match="prior_spread of shape"):
            RunFolder(tiny_run).check_stats({**stats, "prior_spread": bad}, model.cfg, model.start_bars)


def test_training_calibrates_how_encoded_latents_are_decoded(model, tiny_run):
    """After the chains the decoding of encoded latents is calibrated on validation passages (stats.json keeps
    the encode stage's per-bar values beside it); the model reads it, and its count factor applies to encoded
    latents (reconstructions, the chain), not to the prior's bars."""
    from vaejax.runs import RunFolder
    from vaejax.training import calibration

    stats = RunFolder(tiny_run).read_stats()
    assert len(stats["reconstruction_decoding"]) in (calibration.PRIOR_ROUNDS + 1, calibration.PRIOR_ROUNDS + 3)
    np.testing.assert_allclose(model.count_scale, stats["count_scale"])
    np.testing.assert_allclose(model.onset_cuts, stats["onset_thresholds"])
    assert np.shape(stats["onset_thresholds_bars"]) == model.onset_cuts.shape and len(stats["sustain_bars"]) == 5
    assert ((model.count_scale >= calibration.RECON_MIN_SCALE) & (model.count_scale <= 4)).all()
    z = model.encode(model.prior_bars(4, sigma=0.5, seed=3, num=1)[:, 0].reshape(5, -1, 84))
    fewer, more = (model.with_decoding(model.onset_cuts, np.full(5, f)) for f in (0.5, 2.0))
    assert _starts(more.rolls(z)).sum() > 1.5 * _starts(fewer.rolls(z)).sum() > 0
    a, b = (m.prior_bars(4, sigma=0.5, seed=2, num=4) for m in (fewer, more))
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="^decoding of shapes"):
        model.with_decoding(np.ones(3), np.ones(5))


class _FixedDecoder:
    """What `calibration.prior_decoding` and `reconstruction_decoding` read of a model, over fixed decoder
    probabilities (a stand-in for a trained model: beats likelier than off-beats, pitches at random), decoded
    as a TrainedModel decodes (counted notes ranked against per-cell thresholds, times the count factor):
    `prior_bars` with the prior's calibration, `rolls` (of "latents" that are only a number of bars) with
    the reconstruction's."""

    per_cell_onsets = True
    count_notes = True
    single_line = ()

    def __init__(self, cuts=None, scale=None, *, recon_cuts=None, recon_scale=None, spread=None, recon_spread=None):
        from vaejax.config import Config

        self.cfg = Config()
        self.onset_cuts = (
            np.full((5, 16), 0.3, np.float32) if recon_cuts is None else np.asarray(recon_cuts, np.float32)
        )
        self.count_scale = np.ones(5, np.float32) if recon_scale is None else np.asarray(recon_scale, np.float32)
        self.thresholds = np.tile(np.array([[2.0, 0.5, 6.0]], np.float32), (5, 1))  # no sustain: lengths fixed
        self.prior_onset_cuts = self.onset_cuts if cuts is None else np.asarray(cuts, np.float32)
        self.prior_count_scale = np.ones(5, np.float32) if scale is None else np.asarray(scale, np.float32)
        self.spread = np.ones(5, np.float32) if recon_spread is None else np.asarray(recon_spread, np.float32)
        self.prior_spread = np.ones(5, np.float32) if spread is None else np.asarray(spread, np.float32)

    def with_prior_decoding(self, cuts, scale, sustain=None, spread=None):
        return self.with_decoding(cuts, scale, sustain, spread, drawn=True)

    def with_decoding(self, cuts, scale, sustain=None, spread=None, *, drawn=False):
        recon = {"recon_cuts": self.onset_cuts, "recon_scale": self.count_scale, "recon_spread": self.spread}
        prior = {"cuts": self.prior_onset_cuts, "scale": self.prior_count_scale, "spread": self.prior_spread}
        if drawn:
            return _FixedDecoder(cuts, scale, spread=self.prior_spread if spread is None else spread, **recon)
        return _FixedDecoder(
            recon_cuts=cuts, recon_scale=scale, recon_spread=self.spread if spread is None else spread, **prior
        )

    def _decode(self, m, cuts, scale, spread):
        from vaejax import models

        r = np.random.default_rng(0)
        beat = np.where(np.arange(16) % 4 == 0, 1.0, 0.4)
        probs = np.zeros((5, m, 3, 16, 84), np.float32)
        probs[:, :, 0] = 0.9
        probs[:, :, 1] = (r.random(probs[:, :, 1].shape) ** 6 * beat[:, None]).astype(np.float32) * 0.5
        th = jnp.asarray(self.thresholds)
        roll = jax.vmap(
            lambda p, t, c, k, g: models.decode_notes(p, t, count=True, sub=6, onset_cuts=c, count_scale=k, spread=g)
        )(jnp.asarray(probs), th, jnp.asarray(cuts), jnp.asarray(scale), jnp.asarray(spread))
        return np.asarray(roll)  # [5, m, 96, 84]

    def prior_draws(self, bars, *, sigma, seed, num):
        return None  # the fixed probabilities stand for whatever was drawn

    def prior_bars(self, bars, *, sigma, seed, num, drawn=None):
        gen = self._decode(num * bars, self.prior_onset_cuts, self.prior_count_scale, self.prior_spread)
        return gen.reshape(5, num, bars, 96, 84)

    def encode_bars(self, bars):
        return bars.shape[1]

    def rolls(self, m, guidance=None, single_line=None):  # no harmony to guide, no line
        return self._decode(m, self.onset_cuts, self.count_scale, self.spread).reshape(5, -1, 84)


def test_calibration_moves_the_prior_decoding_toward_real_rhythm():
    """Real passages decoded with other thresholds and half again as many notes: starting from the
    reconstruction's decoding, the calibration finds a count factor near 1.5 and onset positions close to
    theirs."""
    from vaejax import realism
    from vaejax.training import calibration

    r = np.random.default_rng(1)
    truth = _FixedDecoder(r.uniform(0.05, 1.0, (5, 16)), np.full(5, 1.5))
    real = truth.prior_bars(4, sigma=0.5, seed=0, num=8)
    want = realism.rhythm_stats(np.moveaxis(real, 0, 1).reshape(8, 5, 4 * 96, -1))
    cuts, scale, sustain, spread, history, ages = calibration.prior_decoding(
        _FixedDecoder(), want, songs=8, bars=4, rounds=6
    )
    assert len(history) == 7 + 4 and (sustain == 2.0).all() and ages is None  # 6 rounds, the spread, 3 more
    assert (spread == 1).all()  # the real bars were ranked plainly, and plain ranking gives their pitches
    assert cuts.shape == (5, 16) and ((cuts > 0) & (cuts <= 1)).all()
    np.testing.assert_allclose(scale, 1.5, rtol=0.1)
    for t in want:
        first, last = history[0][t], history[-1][t]
        assert first["onsets_ratio"] < 0.75 and abs(last["onsets_ratio"] - 1) < 0.05, (t, first, last)
        assert last["onset_tv"] < 0.5 * first["onset_tv"], (t, first, last)


def test_calibration_passages_cut_songs_into_whole_passages():
    """Validation songs cut into consecutive passages of a song's bars (or of the longest song's length where
    none is long enough), a seeded random `limit` of them kept in song order, each the song's own bars."""
    from types import SimpleNamespace

    from vaejax.config import DataConfig
    from vaejax.training.stages import calibration_passages

    lengths = [5, 12, 8, 3]
    songs = [
        np.full((5, n, 96, 84), i, np.int8) + np.arange(n)[None, :, None, None] * 10 for i, n in enumerate(lengths)
    ]
    split = SimpleNamespace(ids=np.arange(4), length=np.array(lengths), song=lambda i: songs[i], cfg=DataConfig())
    out = calibration_passages(split, 4, limit=100)
    assert out.shape == (1 + 3 + 2, 5, 4, 96, 84)  # 5 bars -> 1 passage, 12 -> 3, 8 -> 2, 3 -> none
    firsts = [(int(p[0, 0, 0, 0]) % 10, int(p[0, 0, 0, 0]) // 10) for p in out]  # (song, first bar)
    assert firsts == [(0, 0), (1, 0), (1, 4), (1, 8), (2, 0), (2, 4)]
    some = calibration_passages(split, 4, limit=3, seed=1)
    assert len(some) == 3 and all(any((p == q).all() for q in out) for p in some)
    keys = [int(p[0, 0, 0, 0]) % 10 * 100 + int(p[0, 0, 0, 0]) // 10 for p in some]
    assert keys == sorted(keys)  # song order
    np.testing.assert_array_equal(some, calibration_passages(split, 4, limit=3, seed=1))
    assert calibration_passages(split, 32, limit=100).shape[:3] == (1, 5, 12)  # only the longest song, whole


def test_reconstruction_calibration_moves_encoded_decoding_toward_the_passages():
    """Passages that start fewer notes (0.7 of the count) at other places than the decoders' own decoding:
    the reconstruction's calibration, which may lower the count (the prior's may not), finds a factor near
    0.7 and onset positions close to theirs; the prior's decoding is left as it was."""
    from vaejax import realism
    from vaejax.training import calibration

    r = np.random.default_rng(2)
    truth = _FixedDecoder(recon_cuts=r.uniform(0.05, 1.0, (5, 16)), recon_scale=np.full(5, 0.7))
    real = truth.rolls(32).reshape(5, 8, 4 * 96, 84)
    want = realism.rhythm_stats(np.moveaxis(real, 0, 1))
    passages = np.zeros((8, 5, 4, 96, 84), bool)  # only their number of bars reaches the stand-in
    start = _FixedDecoder()
    cuts, scale, sustain, spread, history, ages = calibration.reconstruction_decoding(start, passages, want, rounds=6)
    assert len(history) == 7 and (sustain == 2.0).all() and (spread == 1).all()  # reconstructions rank plainly
    np.testing.assert_allclose(scale, 0.7, rtol=0.1)
    for t in want:
        first, last = history[0][t], history[-1][t]
        assert first["onsets_ratio"] > 1.3 and abs(last["onsets_ratio"] - 1) < 0.05, (t, first, last)
        assert last["onset_tv"] < 0.5 * first["onset_tv"], (t, first, last)
    np.testing.assert_array_equal(start.prior_count_scale, np.ones(5))


def test_prior_calibration_finds_how_far_notes_spread_over_pitches():
    """Real passages whose counted notes were spread over pitches (`spread` 0.5): the prior's calibration,
    starting from plain ranking, picks for the chord-playing tracks a spread that gives as many distinct
    pitches per bar as theirs (within 10%; plain ranking gives at least 15% fewer), with onset positions and
    counts still matched; drums and bass keep plain ranking (the bass is calibrated where it is decoded as one
    line)."""
    from vaejax import realism
    from vaejax.config import TRACKS
    from vaejax.training import calibration

    truth = _FixedDecoder(spread=np.full(5, 0.5))
    real = truth.prior_bars(4, sigma=0.5, seed=0, num=8)
    want = realism.rhythm_stats(np.moveaxis(real, 0, 1).reshape(8, 5, 4 * 96, -1))
    cuts, scale, sustain, spread, history, ages = calibration.prior_decoding(
        _FixedDecoder(), want, songs=8, bars=4, rounds=4
    )
    chords = np.isin(TRACKS, calibration.SPREAD_TRACKS)
    assert chords.sum() == 3 and (spread[~chords] == 1).all()
    assert (np.abs(spread[chords] - 0.5) < 0.11).all(), spread
    plain = _FixedDecoder().prior_bars(4, sigma=0.5, seed=0, num=8)
    plain = realism.compare(realism.rhythm_stats(np.moveaxis(plain, 0, 1).reshape(8, 5, 4 * 96, -1)), want)
    for t in np.asarray(TRACKS)[chords]:
        assert plain[t]["pitches_ratio"] < 0.85, (t, plain[t])
        assert abs(history[-1][t]["pitches_ratio"] - 1) < 0.1, (t, history[-1][t])
    for t in TRACKS:
        assert abs(history[-1][t]["onsets_ratio"] - 1) < 0.05 and history[-1][t]["onset_tv"] < 0.1, (t, history[-1][t])
    # a track decoded as one line (the bass) has its spread calibrated too
    line = _FixedDecoder()
    line.single_line = ("Bass",)
    spread = calibration.prior_decoding(line, want, songs=8, bars=4, rounds=4)[3]
    assert spread[0] == 1 and abs(spread[TRACKS.index("Bass")] - 0.5) < 0.11, spread


@pytest.mark.slow
@pytest.mark.e2e
def test_packaged_songs_repeat_and_rest_and_the_chain_does_not():
    """The packaged model's default prior repeats bars (about real songs' share: 30% near repeats on held-out
    passages) and rests; the seed's chain, the baseline, almost never repeats a bar."""
    from vaejax import packaging

    if "lpd5" not in packaging.pretrained_names():
        pytest.skip("no packaged model in this checkout")
    m = trained_model.load("lpd5")
    assert m.prior_kind() == "transformer"
    learned = form.form_metrics(np.moveaxis(m.prior_bars(32, seed=1, num=24), 1, 0))
    chain = form.form_metrics(np.moveaxis(m.prior_bars(32, seed=1, num=24, prior="chain"), 1, 0))
    assert learned["near repeats %"] > 12 and chain["near repeats %"] < 5
    assert learned["sim lag 1"] > chain["sim lag 1"]
    assert all(learned[f"empty % {t}"] < 70 for t in ("Drums", "Piano", "Bass", "Strings"))
