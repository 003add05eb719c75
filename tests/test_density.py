"""How often an arrangement's band plays: the plays-logit bias of the learned prior (`prior.generate`'s
`plays_bias`), the search for the bias that gives asked shares of bars (`trained_model.density_bias`), what
`arrange(density=...)` and `--density` take, and the training data's shares a run records."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from vaejax import prior, trained_model
from vaejax.config import PIANO, TRACKS, PriorConfig
from vaejax.runs import RunError
from vaejax.trained_model import density_bias, density_target, parse_density

CFG = PriorConfig(layers=1, dim=16, heads=2, context=8, mixtures=2)
K = 4


def _window(band: bool):
    from flax import nnx

    gd, params = nnx.split(prior.prior_net(CFG, K, jax.random.key(0), band=band))
    f = jax.jit(lambda p, *a: prior.sample_window(gd, p, *a))
    return lambda *a: f(params, *a)


@pytest.mark.parametrize("band", [False, True])
def test_plays_bias_moves_only_the_drawn_bits(band):
    win = _window(band)
    kw = dict(num=3, bars=12, latent=K, context=CFG.context, temperature=1.0)
    if band:  # the arranging prior: the piano part is given (it rests in bars 3 and 7)
        piano = np.random.default_rng(0).standard_normal((3, 12, K + 1)).astype(np.float32)
        piano[..., K] = 1.0
        piano[:, [3, 7], K] = 0.0
        kw["piano"] = piano
    free = [t for t in range(len(TRACKS)) if not (band and t == PIANO)]
    plain = prior.generate(win, jax.random.key(1), **kw)
    zero = prior.generate(win, jax.random.key(1), plays_bias=np.zeros(5, np.float32), **kw)
    up = prior.generate(win, jax.random.key(1), plays_bias=np.full(5, 30.0, np.float32), **kw)
    down = prior.generate(win, jax.random.key(1), plays_bias=np.full(5, -30.0, np.float32), **kw)
    np.testing.assert_array_equal(plain[1], zero[1])  # no bias draws as the prior has it
    np.testing.assert_array_equal(plain[0], zero[0])
    assert up[1][..., free].all() and not down[1][..., free].any()  # every drawn bit follows a large bias
    assert 0 < plain[1][..., free].mean() < 1
    if band:  # ... while the given piano part is kept either way
        for got in (up, down):
            np.testing.assert_array_equal(got[1][..., PIANO], piano[..., K] > 0.5)
    else:  # a bias per track reaches its track only
        one = np.zeros(5, np.float32)
        one[2] = -30.0
        got = prior.generate(win, jax.random.key(1), plays_bias=one, **kw)[1]
        assert not got[..., 2].any() and got[..., [0, 1, 3, 4]].any()


def test_density_bias_finds_the_asked_shares():
    """Against a draw whose share of each track is a known increasing function of its bias."""
    base = np.array([0.0, 2.0, -3.0, 1.0, -1.0])
    calls = []

    def draw(bias):
        calls.append(bias.copy())
        p = 1 / (1 + np.exp(-(base + bias)))
        return np.random.default_rng(len(calls)).random((4, 2000, 5)) < p  # a noisy share, as real draws

    target = np.array([np.nan, np.nan, 0.5, 0.9, 0.2])
    bias = density_bias(draw, target)
    share = 1 / (1 + np.exp(-(base + bias)))
    assert bias[0] == 0 and bias[1] == 0  # free tracks are left as drawn
    np.testing.assert_allclose(share[2:], target[2:], atol=0.03)
    assert len(calls) <= trained_model.DENSITY_ROUNDS
    # shares already met: one draw, no bias
    calls.clear()
    p0 = 1 / (1 + np.exp(-base))
    assert not density_bias(draw, np.where(np.isnan(target), np.nan, p0)).any() and len(calls) == 1


def test_density_settings_are_parsed_and_checked():
    band = ("Drums", "Guitar", "Bass", "Strings")
    shares = np.array([0.85, 1.0, 0.5, 0.8, 0.75])
    assert np.isnan(density_target(None, band, shares)).all()
    np.testing.assert_allclose(density_target("data", band, shares), [0.85, np.nan, 0.5, 0.8, 0.75])
    assert np.isnan(density_target("data", band, None)).all()  # a model without shares arranges as drawn
    np.testing.assert_allclose(density_target(0.6, ("Bass",)), [np.nan, np.nan, np.nan, 0.6, np.nan])
    np.testing.assert_allclose(density_target({"strings": 1, "Drums": 0}, band), [0, np.nan, np.nan, np.nan, 1])
    assert parse_density("data") == "data" and parse_density("none") is None and parse_density("0.7") == 0.7
    assert parse_density(" strings=0.8,drums=0.9 ") == {"strings": 0.8, "drums": 0.9}
    for bad, match in (
        ("lots", "density must be"),
        ("strings=", "a share of bars"),
        ("=0.5", "is not TRACK=SHARE"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_density(bad)
    for bad, match in (
        (1.5, "from 0 to 1"),
        ({"piano": 0.5}, "'piano' is not a track added here"),
        ({"banjo": 0.5}, "'banjo' is not a track added"),
        ({"bass": "loud"}, "a share of bars"),
        ("full", "density must be"),
    ):
        with pytest.raises(ValueError, match=match):
            density_target(bad, band, shares)


@pytest.fixture(scope="module")
def model(tiny_run):
    return trained_model.load(tiny_run)


def test_a_run_records_its_bands_shares_and_arranges_with_them(model, tiny_run, demo_prepared, tmp_path):
    from vaejax import data as data_lib
    from vaejax import music
    from vaejax.training.stages import band_shares, plays_of

    shares = model.band_shares
    assert shares is not None and shares.shape == (5,) and shares[PIANO] == 1.0
    train = data_lib.open_dataset(demo_prepared)["train"]
    plays = plays_of(train)
    np.testing.assert_allclose(shares, plays[plays[:, PIANO]].mean(0))
    np.testing.assert_allclose(band_shares(train), shares)

    rng = np.random.default_rng(0)
    piano = rng.random((24 * 96, 84)) < 0.02

    drawn = {}
    draw = model._prior_draw

    def spy(*a, **kw):  # the plays bits of the song arranged (the last draw of the call)
        z, plays = draw(*a, **kw)
        drawn["plays"] = plays
        return z, plays

    object.__setattr__(model, "_prior_draw", spy)

    def played(**kw):
        out = music.from_multitrack(model.arrange(piano, seed=1, min_length=0, merge_gap=0, **kw))
        np.testing.assert_array_equal(out[PIANO], piano)
        bits = drawn["plays"][0, :24]
        sounds = out.reshape(5, 24, 96, 84).any(axis=(2, 3)).T
        assert not (sounds & ~bits)[:, [0, 2, 3, 4]].any()  # the band sounds only where its bits say so
        return bits.mean(0)

    try:
        full = played(density={"strings": 1.0, "drums": 0.0})
        assert full[4] == 1.0 and full[0] == 0.0
        assert not played(density=0.0)[[0, 2, 3, 4]].any()
        free = played(density=None)
        assert 0 < free[[0, 2, 3, 4]].mean() < 1
        data = played()  # the default is the training data's shares
        np.testing.assert_array_equal(data, played(density="data"))
    finally:
        object.__delattr__(model, "_prior_draw")
    with pytest.raises(ValueError, match="the chain draws no rests"):
        model.arrange(piano, prior="chain", density=0.5)
    model.arrange(piano, prior="chain")  # the default density leaves the chain as it is

    # a hand-edited share that is not one is refused when the run is read
    bad = str(tmp_path / "bad")
    shutil.copytree(tiny_run, bad, ignore=shutil.ignore_patterns(".lock"))
    with open(os.path.join(bad, "stats.json")) as f:
        stats = json.load(f)
    stats["band_shares"] = [0.5, 1.0, 2.0, 0.5, 0.5]
    with open(os.path.join(bad, "stats.json"), "w") as f:
        json.dump(stats, f)
    with pytest.raises(RunError, match="band_shares must be 5 shares from 0 to 1"):
        trained_model.load(bad)
