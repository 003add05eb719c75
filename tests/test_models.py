"""Shapes, parameter counts, the patch convolutions, and independence of the stacked members."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from vaejax import models, training
from vaejax.config import DataConfig, ModelConfig, preset


def test_patch_conv_equals_strided_conv():
    pc = models.PatchConv((4, 12), 3, 5, rngs=nnx.Rngs(0))
    conv = nnx.Conv(3, 5, kernel_size=(4, 12), strides=(4, 12), padding="VALID", rngs=nnx.Rngs(1))
    conv.kernel[...] = pc.w[...].reshape(4, 12, 3, 5)
    pc.b[...] = jnp.arange(5.0)
    conv.bias[...] = jnp.arange(5.0)
    x = jax.random.normal(jax.random.key(2), (2, 96, 84, 3))  # [B, T, P, C]
    pitch_major = pc(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(pitch_major, conv(x), atol=1e-4)
    pc2 = models.PatchConv((4, 1), 3, 5, rngs=nnx.Rngs(0))
    conv2 = nnx.Conv(3, 5, kernel_size=(4, 1), strides=(4, 1), padding="VALID", rngs=nnx.Rngs(1))
    conv2.kernel[...] = pc2.w[...].reshape(4, 1, 3, 5)
    np.testing.assert_allclose(pc2(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3), conv2(x), atol=1e-4)


@pytest.mark.parametrize("kernel", [(4, 1), (4, 12)])
def test_patch_deconv_equals_transposed_conv(kernel):
    kt, kp = kernel
    pd = models.PatchDeconv(kernel, 6, 3, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(3), (2, 6, 7, 6))  # [B, T, P, C]
    w = pd.w[...].reshape(6, kt, kp, 3)  # [c_in, kt, kp, c_out]
    # the gradient-of-convolution form of a transposed convolution (kernel given as [kt, kp, c_out, c_in])
    y = jax.lax.conv_transpose(
        x,
        w.transpose(1, 2, 3, 0),
        strides=kernel,
        padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        transpose_kernel=True,
    )
    ours = pd(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(ours, y + pd.b[...], atol=1e-4)


@pytest.mark.parametrize("latent", [8, 16, 32, 64])
def test_vae_shapes_and_parameter_count(latent):
    """The earlier design, at the data's resolution (saved runs of it still load)."""
    cfg = ModelConfig(latent=latent, grid=0, time_patch=(4, 4))
    stack = models.vae_stack(cfg, DataConfig(), jax.random.key(0))
    x = jnp.zeros((5, 3, 96, 84))
    c = models.conditions(x[1], DataConfig())
    g, s = nnx.split(stack)

    def run(p, xi, ci, k):
        m = nnx.merge(g, p)
        return m(m.patches(xi), k, ci)

    out = jax.vmap(run)(s, x, c, jax.random.split(jax.random.key(1), 5))
    assert out.logits.shape == (5, 3, 7, 24, 2 * 48) and out.mu.shape == (5, 3, latent)
    mu, logvar = jax.vmap(lambda p, xi, ci: nnx.merge(g, p).encode(xi, ci))(s, x, c)
    logits = jax.vmap(lambda p, z, ci: nnx.merge(g, p).decode(z, ci))(s, mu, c)
    assert logits.shape == (5, 3, 2, 96, 84) and logvar.shape == (5, 3, latent)
    # conv1 48*32+32, conv2 128*64+64, enc 2688*256+256, head 256*2K+2K, dec K*256+256, expand 256*2688+2688,
    # deconv2 64*128+32, output 32*(2*48) + 2*48, conditions 2 * 48*256, harmonic bias 2*12*12, plays 256+1
    per = (
        (48 * 32 + 32)
        + (128 * 64 + 64)
        + (2688 * 256 + 256)
        + (256 * 2 * latent + 2 * latent)
        + (latent * 256 + 256)
        + (256 * 2688 + 2688)
        + (64 * 128 + 32)
        + (32 * 96 + 96)
        + 2 * 48 * 256
        + 2 * 144
        + 257
    )
    assert models.count_params(stack) == 5 * per


@pytest.mark.parametrize("latent", [8, 16, 32, 64])
def test_sixteenth_grid_vae_shapes_and_parameter_count(latent):
    cfg = ModelConfig(latent=latent)  # the default: a sixteenth grid, three maps
    stack = models.vae_stack(cfg, DataConfig(), jax.random.key(0))
    x = jnp.zeros((5, 3, 96, 84))
    c = models.conditions(x[1], DataConfig())
    g, s = nnx.split(stack)

    def run(p, xi, ci, k):
        m = nnx.merge(g, p)
        return m(m.encoder_input(xi), k, ci)

    out = jax.vmap(run)(s, x, c, jax.random.split(jax.random.key(1), 5))
    assert out.logits.shape == (5, 3, 7, 8, 3 * 24) and out.mu.shape == (5, 3, latent)
    mu, _ = jax.vmap(lambda p, xi, ci: nnx.merge(g, p).encode(xi, ci))(s, x, c)
    logits = jax.vmap(lambda p, z, ci: nnx.merge(g, p).decode(z, ci))(s, mu, c)
    assert logits.shape == (5, 3, 3, 16, 84)
    # conv1 (3 maps * 2*12)*32+32, conv2 64*64+64, enc 1792*256+256, head, dec, expand 256*1792+1792,
    # deconv2 64*64+32, output 32*(3*24) + 3*24, conditions 2 * 48*256, harmonic bias 3*12*12, plays 256+1
    per = (
        (72 * 32 + 32)
        + (64 * 64 + 64)
        + (1792 * 256 + 256)
        + (256 * 2 * latent + 2 * latent)
        + (latent * 256 + 256)
        + (256 * 1792 + 1792)
        + (64 * 64 + 32)
        + (32 * 72 + 72)
        + 2 * 48 * 256
        + 3 * 144
        + 257
    )
    assert models.count_params(stack) == 5 * per


def test_grid_maps_of_a_roll():
    """Onsets move to their nearest sixteenth (LPD's one-step-early notes to the next one, flagged early);
    sustain covers cells the note sounds over at least half of."""
    x = np.zeros((1, 96, 84), np.float32)
    x[0, 23:47, 10] = 1  # starts one step before the second beat: sixteenth 4, early, sounds through 7
    x[0, 0:6, 20] = 1  # a sixteenth note on the downbeat
    x[0, 6:12, 20] = 1  # ... repeated at once: the roll merges them, the grid cannot tell
    x[0, 50:52, 30] = 1  # a 32nd note at step 50: nearest sixteenth 8, sustained (it starts there)
    x[0, 94:96, 40] = 1  # starts in the last half sixteenth: the next bar's downbeat, not this bar's
    g = np.asarray(models.to_grid(jnp.asarray(x), 6))[0]  # [3, 16, 84]
    sustain, onset, early = g
    assert np.flatnonzero(onset[:, 10]).tolist() == [4] and early[4, 10] and early[:, 10].sum() == 1
    assert np.flatnonzero(sustain[:, 10]).tolist() == [4, 5, 6, 7]
    assert np.flatnonzero(onset[:, 20]).tolist() == [0] and sustain[:2, 20].all()
    assert np.flatnonzero(onset[:, 30]).tolist() == [8] and np.flatnonzero(sustain[:, 30]).tolist() == [8]
    assert not onset[:, 40].any() and not early[:, 40].any()


@pytest.mark.parametrize("sub", [1, 2, 3, 4, 6, 8, 24])
def test_grid_maps_equal_their_definition(sub):
    """`to_grid` (written as slices of the cells' view, for speed) equals its definition on whole rolls: the
    onsets shifted by half a cell, maxima over each cell, the early flag at the step before the cell."""
    x = (np.random.default_rng(sub).random((2, 3, 96, 84)) < 0.3).astype(np.float32)
    n, half = 96 // sub, sub // 2
    on = np.asarray(models.onsets(jnp.asarray(x)))
    shifted = np.pad(on, [(0, 0), (0, 0), (half, 0), (0, 0)])[:, :, :96].reshape(2, 3, n, sub, 84)
    onset = shifted.max(-2)
    sustain = np.maximum(x.reshape(2, 3, n, sub, 84).mean(-2) >= 0.5, onset)
    expected = np.stack([sustain, onset, shifted[..., half - 1, :]], -3)
    np.testing.assert_array_equal(np.asarray(models.to_grid(jnp.asarray(x), sub)), expected)


def test_grid_decoding_draws_notes_back_at_the_data_resolution():
    """Perfect maps decode to the roll they came from, up to the last cell's length (`tail`) and notes off
    the grid: an early note sounds from the step before its sixteenth, and a note followed at once by
    another of the same pitch ends a step early so that both stay notes."""
    x = np.zeros((1, 96, 84), np.float32)
    x[0, 23:47, 10] = 1  # early, four sixteenths
    x[0, 0:5, 20] = 1
    x[0, 6:11, 20] = 1  # repeated sixteenths with a one-step gap
    x[0, 48, 0] = 1  # a drum-like one-step hit
    maps = models.to_grid(jnp.asarray(x), 6)
    roll = np.asarray(models.decode_notes(maps, jnp.array([0.5, 0.5, 6.0]), sub=6))[0]
    assert np.flatnonzero(roll[:, 10]).tolist() == list(range(23, 47))
    assert np.flatnonzero(roll[:, 20]).tolist() == list(range(0, 5)) + list(range(6, 12))
    short = np.asarray(models.decode_notes(maps, jnp.array([0.5, 0.5, 1.0]), sub=6))[0]
    assert np.flatnonzero(short[:, 0]).tolist() == [48]  # tail 1: a one-step hit stays one step
    plays = np.asarray(models.decode_notes(maps, jnp.array([0.5, 0.5, 6.0]), plays=jnp.array([0.2]), sub=6))
    assert not plays.any()


def test_unconditioned_single_channel_vae():
    """The design before conditioning and onsets (saved runs of it still load): one output channel."""
    cfg = ModelConfig(latent=8, condition=False, onsets=False, plays=False, grid=0, time_patch=(4, 4))
    stack = models.vae_stack(cfg, DataConfig(), jax.random.key(0))
    g, s = nnx.split(stack)
    mu, _ = jax.vmap(lambda p, xi: nnx.merge(g, p).encode(xi))(s, jnp.zeros((5, 2, 96, 84)))
    assert jax.vmap(lambda p, z: nnx.merge(g, p).decode(z))(s, mu).shape == (5, 2, 1, 96, 84)


def test_onsets_and_beat_chroma():
    x = np.zeros((1, 96, 84), np.float32)
    x[0, 0:30, 0] = 1  # C1 from the first step (held from before: starts at step 0)
    x[0, 50:60, 0] = 1
    x[0, 24:48, 16] = 1  # E2 in beat 2
    o = np.asarray(models.onsets(jnp.asarray(x)))
    assert sorted(map(tuple, np.argwhere(o[0]))) == [(0, 0), (24, 16), (50, 0)]
    c = np.asarray(models.beat_pitch_classes(jnp.asarray(x), DataConfig())).reshape(4, 12)
    assert c[0].tolist() == [1] + [0] * 11  # beat 1: C
    assert c[1].nonzero()[0].tolist() == [0, 4]  # beat 2: C (steps 24-29) and E
    assert c[2].nonzero()[0].tolist() == [0] and not c[3].any()


def test_decode_notes_starts_only_at_onsets():
    probs = np.zeros((1, 2, 96, 84), np.float32)
    probs[0, 0, 10:40, 5] = 0.9  # sustain for 30 steps ...
    probs[0, 0, 20:22, 5] = 0.1  # ... with a dip
    probs[0, 1, 9:12, 5] = [0.3, 0.8, 0.4]  # one onset peak at step 10
    probs[0, 0, 60:70, 7] = 0.9  # sustain without any onset: no note
    probs[0, 1, 80, 9] = 0.9  # an onset without sustain: a one-step note
    roll = np.asarray(models.decode_notes(jnp.asarray(probs), jnp.array([0.5, 0.5])))
    assert roll[0, 10:20, 5].all() and not roll[0, 20:, 5].any()  # ends at the dip, no restart without onset
    assert not roll[0, :, 7].any()
    assert roll[0, :, 9].sum() == 1 and roll[0, 80, 9]
    gated = models.decode_notes(jnp.asarray(probs), jnp.array([0.5, 0.5]), plays=jnp.array([0.3]))
    assert not np.asarray(gated).any()  # the segment is judged not to play: a rest, whatever the cells say
    single = np.asarray(models.decode_notes(jnp.asarray(probs[:, :1]), jnp.array([0.5])))
    np.testing.assert_array_equal(single, probs[:, 0] > 0.5)


def test_patches_round_trip():
    x = jax.random.uniform(jax.random.key(0), (2, 96, 84))
    p = models.to_patches(x, 4, 12)
    assert p.shape == (2, 7, 24, 48)
    np.testing.assert_array_equal(models.from_patches(p, 4, 12), x)
    # patch (pitch block 1, time block 2) holds steps 8..11 x pitches 12..23, time-major
    np.testing.assert_array_equal(p[0, 1, 2], x[0, 8:12, 12:24].reshape(-1))


def test_chain_shapes():
    cfg = ModelConfig(latent=16)
    mel = models.melody_net(cfg, jax.random.key(0))
    assert mel(jnp.ones((7, 32))).shape == (7, 32)
    har = models.harmony_stack(cfg, jax.random.key(1))
    g, s = nnx.split(har)
    y = jax.vmap(lambda p, x: nnx.merge(g, p)(x))(s, jnp.ones((4, 7, 64)))
    assert y.shape == (4, 7, 32)
    # the residual starts at "next = previous" for the instrument's own parameters
    np.testing.assert_allclose(y, jnp.ones((4, 7, 32)))


def test_members_start_different():
    stack = models.vae_stack(ModelConfig(latent=8), DataConfig(), jax.random.key(0))
    w = stack.conv1.w[...]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not np.allclose(w[i], w[j])


@pytest.mark.slow
def test_members_train_independently():
    """A gradient from one instrument's data moves only that instrument's parameters."""
    cfg = preset("tiny")
    g, state, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
    step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
    x = np.zeros((5, 4, 96, 84), np.float32)
    before = jax.tree.map(np.array, state["params"])
    x2 = x.copy()
    x2[2, :, 10:20, 30] = 1.0  # only guitar's data changes
    fresh = {"params": before, "opt": tx.init(before), "key": state["key"]}
    s_a, _ = step(jax.tree.map(jnp.array, fresh), x, jnp.int32(5))
    s_b, _ = step(jax.tree.map(jnp.array, fresh), x2, jnp.int32(5))
    for a, b in zip(jax.tree.leaves(s_a["params"]), jax.tree.leaves(s_b["params"])):
        a, b = np.asarray(a), np.asarray(b)
        for i in (0, 1, 3, 4):
            np.testing.assert_array_equal(a[i], b[i])
    moved = [
        not np.array_equal(np.asarray(a)[2], np.asarray(b)[2])
        for a, b in zip(jax.tree.leaves(s_a["params"]), jax.tree.leaves(s_b["params"]))
    ]
    assert any(moved)


def test_a_batch_in_slices_takes_the_same_step():
    """The VAE step computed in slices of the batch (`TrainConfig.micro_batch`: a scan summing the slices'
    gradients) gives the whole batch's mean losses and, after Adam, its parameters (float rounding aside):
    each bar's noise comes from its row of the batch, not its slice."""
    x = (np.random.default_rng(3).random((5, 16, 96, 84)) < 0.03).astype(np.float32)
    out = []
    for bars in (16, 4):
        cfg = preset("tiny").replace(train={"micro_batch": bars})
        g, state, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
        step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
        sliced = "scan" in str(jax.make_jaxpr(step)(state, x, jnp.int32(3)))
        assert sliced == (bars < 16)
        state, m = step(state, x, jnp.int32(3))
        state, m = step(state, x, jnp.int32(4))  # a second step: Adam's moments from the first agree too
        out.append((m, state["params"]))
    (a, pa), (b, pb) = out
    for field in ("loss", "recon", "kl"):
        np.testing.assert_allclose(np.asarray(getattr(b, field)), np.asarray(getattr(a, field)), rtol=2e-5)
    for u, v in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
        np.testing.assert_allclose(np.asarray(v), np.asarray(u), rtol=1e-4, atol=1e-5)


def test_cpu_steps_compute_64_bars_at_a_time():
    from vaejax.config import TrainConfig

    assert training.steps.slice_bars(TrainConfig(), "cpu") == training.steps.CPU_SLICE == 64
    assert training.steps.slice_bars(TrainConfig(), "gpu") == 0  # the whole batch
    assert training.steps.slice_bars(TrainConfig(micro_batch=32), "tpu") == 32


def test_train_step_compiles_once():
    cfg = preset("tiny")
    g, state, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
    step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
    x = np.zeros((5, 4, 96, 84), np.float32)
    for i in range(4):
        state, m = step(state, x + (i % 2), jnp.asarray(i, jnp.int32))
    assert step._cache_size() == 1
    assert np.all(np.isfinite(np.asarray(m.loss)))


def test_bernoulli_nll_value_and_gradient():
    from vaejax import losses

    logits = jnp.array([-30.0, -2.0, 0.0, 1.5, 40.0])
    x = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0])

    def ref(z):
        return jnp.sum(jax.nn.softplus(z) - x * z)

    np.testing.assert_allclose(jnp.sum(losses.bernoulli_nll(logits, x)), ref(logits), rtol=1e-6)
    np.testing.assert_allclose(
        jax.grad(lambda z: jnp.sum(losses.bernoulli_nll(z, x)))(logits), jax.grad(ref)(logits), atol=1e-6
    )


def test_decode_notes_counts_expected_notes():
    probs = np.zeros((2, 2, 96, 84), np.float32)
    probs[:, 0] = 0.9  # sustain everywhere: each note lasts to the end of the bar
    # bar 0: three blurred onset peaks, none above 0.5, summing (with their shoulders) to about 2
    for pitch, p in ((10, 0.45), (20, 0.35), (30, 0.3)):
        probs[0, 1, 8:11, pitch] = [p / 3, p, p / 3]
    probs[0, 1, 50, 40] = 0.25
    roll = np.asarray(models.decode_notes(jnp.asarray(probs), jnp.array([0.5, 0.5]), count=True))
    started = roll[0, 9]
    assert started[10] and started[20] and not started[30] and not roll[0, :, 40].any()  # the two likeliest
    assert not roll[1].any()  # no onset probability: no notes
    # thresholded, the same blurred bar is silent
    assert not np.asarray(models.decode_notes(jnp.asarray(probs), jnp.array([0.5, 0.5]))).any()


def test_harmonic_bias_follows_the_piano_pitch_classes():
    """The conditioned decoder's output bias for a track depends on the pitch classes the piano plays in
    each beat: with the 12x12 map set to 'play what the piano plays', exactly those rows and beats rise."""
    vae = models.VAE(ModelConfig(latent=8), DataConfig(), rngs=nnx.Rngs(0))
    vae.harmony[...] = jnp.stack([jnp.eye(12), jnp.zeros((12, 12)), jnp.zeros((12, 12))])  # sustain channel only
    piano = np.zeros((1, 96, 84), np.float32)
    piano[0, 24:48, 60 - 24] = 1  # C4 in beat 2
    c = models.beat_pitch_classes(jnp.asarray(piano), DataConfig())
    bias = vae._harmonic_bias(c)  # on the sixteenth grid: 16 cells, patches of 2 x 12
    full = np.asarray(models.from_patches(bias.reshape(1, 7, 8, 3, 24)[..., 0, :], 2, 12))[0]  # sustain
    on = np.argwhere(full > 0)
    assert len(on) == 4 * 7 and set(on[:, 1]) == set(range(0, 84, 12))  # every C, ...
    assert set(on[:, 0]) == set(range(4, 8))  # ... in beat 2 only


def test_guidance_scales_the_band_decoders_harmonic_bias():
    """`TrainedModel.harmony_guidance` multiplies `VAE.harmony`: the logits move by (scale - 1) x bias."""
    vae = models.VAE(ModelConfig(latent=8), DataConfig(), rngs=nnx.Rngs(0))
    vae.harmony[...] = jax.random.normal(jax.random.key(1), vae.harmony.shape)
    c = jnp.asarray(np.random.default_rng(0).random((2, 48)) < 0.3, jnp.float32)
    z = jax.random.normal(jax.random.key(2), (2, 8))
    base = vae.decode(z, c)
    bias = vae.decode(z, c) - vae.decode(z, jnp.zeros_like(c))
    vae.harmony[...] = 3.0 * vae.harmony[...]
    assert float(jnp.abs(bias).max()) > 0  # the condition reaches the output
    assert not np.allclose(np.asarray(vae.decode(z, c)), np.asarray(base))


def test_bfloat16_step_keeps_float32_parameters_and_matches_the_loss():
    """precision="bfloat16": the networks compute in bfloat16, parameters and Adam stay float32, and the
    first loss agrees with float32's to bfloat16 accuracy; bit-packed batches give exactly the float loss."""
    from vaejax import data

    cfg = preset("tiny")
    rng = np.random.default_rng(0)
    x = rng.random((5, 4, 96, 84)) < 0.05
    losses = {}
    for precision in ("float32", "bfloat16"):
        c = cfg.replace(train={"precision": precision})
        g, state, tx = training.steps.init_vae_state(c.model, c.data, c.train, jax.random.key(0))
        step, _ = training.steps.make_vae_fns(g, c.train, c.data, tx)
        state, m = step(state, jnp.asarray(data.pack(x)), jnp.int32(0))
        losses[precision] = float(m.loss.sum())
        assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(state["params"]))
    np.testing.assert_allclose(losses["bfloat16"], losses["float32"], rtol=0.03)
    g, state, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(0))
    step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
    _, m = step(state, jnp.asarray(x, jnp.float32), jnp.int32(0))
    assert float(m.loss.sum()) == pytest.approx(losses["float32"], rel=1e-6)
    assert training.steps.compute_dtype(cfg.train, "cpu") == jnp.float32
    assert training.steps.compute_dtype(cfg.train, "gpu") == jnp.bfloat16


def test_threshold_counts_match_one_comparison_per_threshold():
    from vaejax import metrics
    from vaejax.training.steps import THRESHOLDS, threshold_counts

    rng = np.random.default_rng(0)
    p = rng.random((8, 96, 84)).astype(np.float32)
    p[0, 0, : len(THRESHOLDS)] = THRESHOLDS  # probabilities exactly at a threshold are not above it
    on = rng.random(p.shape) < 0.1
    got = threshold_counts(jnp.asarray(p), jnp.asarray(on))
    want = metrics.confusion(p[..., None] > THRESHOLDS.astype(np.float32), on[..., None], axis=(0, 1, 2))
    for a, b in zip(got, want):
        np.testing.assert_array_equal(np.asarray(a), b)


def test_onset_cuts_start_as_many_notes_per_sixteenth_as_the_real_bars():
    """Per-cell calibration: a decoder surer of downbeats than of off-beats still places off-beat notes."""
    from vaejax.training.calibration import onset_cuts

    rng = np.random.default_rng(0)
    x = np.zeros((5, 64, 96, 84), np.float32)
    for b in range(64):  # every bar: a downbeat note and an off-beat note on sixteenth 3
        x[:, b, 0:6, 30 + b % 5] = 1
        x[:, b, 18:24, 40 + b % 7] = 1
    maps = np.asarray(models.to_grid(jnp.asarray(x), 6))  # [5, 64, 3, 16, 84]
    probs = maps * 0.0 + rng.random(maps.shape) * 0.05  # noise everywhere ...
    # ... off-beats unsure
    probs[:, :, 1] += maps[:, :, 1] * np.where(np.arange(16) == 0, 0.9, 0.2)[None, None, :, None]
    probs[:, :, 0] = np.maximum(probs[:, :, 0], maps[:, :, 0] * 0.9)
    plays = np.ones((5, 64), np.float32)
    cuts = onset_cuts((jnp.asarray(probs), jnp.asarray(plays)), x, None)
    assert cuts.shape == (5, 16) and cuts[0, 3] < 0.25 < cuts[0, 0]
    roll = np.asarray(
        models.decode_notes(jnp.asarray(probs[1]), jnp.array([0.5, 0.5, 6.0]), sub=6, onset_cuts=jnp.asarray(cuts[1]))
    )
    starts = roll & ~np.pad(roll, ((0, 0), (1, 0), (0, 0)))[:, :-1]
    assert starts[:, 0].sum() == 64 and starts[:, 18].sum() == 64 and starts.sum() == 128
    one = np.asarray(models.decode_notes(jnp.asarray(probs[1]), jnp.array([0.5, 0.5, 6.0]), sub=6))
    assert one[:, 18].sum() == 0  # one threshold for all cells keeps the downbeats only


def test_counted_grid_notes_follow_the_calibrated_cells():
    """Counting on a grid ranks cells by probability over their threshold: with off-beats calibrated lower,
    the expected notes land on them too rather than all on the beats the decoder is surest of."""
    probs = np.zeros((1, 3, 16, 84), np.float32)
    probs[0, 0] = 0.9
    probs[0, 1, 0, 10] = 0.6  # a sure downbeat
    probs[0, 1, 4, 12] = 0.5  # beat 2, fairly sure
    probs[0, 1, 3, 20] = 0.3  # an off-beat sixteenth, unsure
    probs[0, 1, 7, 22] = 0.1  # noise
    cuts = np.full(16, 0.5, np.float32)
    cuts[[3, 7]] = 0.25  # the validation bars said off-beat sixteenths deserve lower thresholds
    th = jnp.array([0.5, 0.5, 6.0])
    plain = np.asarray(models.decode_notes(jnp.asarray(probs), th, count=True, sub=6))[0]
    ranked = np.asarray(models.decode_notes(jnp.asarray(probs), th, count=True, sub=6, onset_cuts=jnp.asarray(cuts)))[0]
    # 1.5 notes expected -> 2: by probability the two beats, by calibrated rank the downbeat and the off-beat
    assert plain[0, 10] and plain[24, 12] and not plain[18, 20]
    assert ranked[0, 10] and ranked[18, 20] and not ranked[24, 12]


def test_spread_moves_counted_notes_off_the_one_sure_pitch():
    """A decoder sure of a bar's rhythm (four beats) and of one pitch, less of three others: plainly ranked,
    the four counted notes all take the sure pitch; with `spread` 0.5 a cell is worth half for every cell of
    its pitch ranked above it, and the notes move to the other pitches, as many of them, on the same beats.
    `spread` 1 is plain ranking."""
    probs = np.zeros((1, 3, 16, 84), np.float32)
    probs[0, 0] = 0.9
    for t in (0, 4, 8, 12):
        probs[0, 1, t, 40] = 0.6 - 0.01 * t  # the sure pitch on every beat (no two cells tie)
        probs[0, 1, t, [43, 47, 52]] = np.array([0.4, 0.35, 0.15]) - 0.01 * t  # chord tones it is less sure of
    th = jnp.array([0.5, 0.5, 6.0])

    def starts(**kw):
        roll = np.asarray(models.decode_notes(jnp.asarray(probs), th, count=True, sub=6, **kw))[0]
        return {(t, p) for t in range(16) for p in range(84) if roll[t * 6, p] and (t == 0 or not roll[t * 6 - 1, p])}

    n = round(float(probs[0, 1].sum()))  # 5.04 expected: 5 notes
    plain, spread = starts(), starts(spread=0.5)
    assert len(plain) == len(spread) == n
    assert {p for _, p in plain} == {40, 43} and sum(p == 40 for _, p in plain) == 4
    assert {p for _, p in spread} >= {40, 43, 47} and sum(p == 40 for _, p in spread) <= 2
    assert {t for t, _ in spread} <= {0, 4, 8, 12}
    assert starts(spread=1.0) == plain
    # the earlier design (two maps at 24 steps a beat) ranks plainly whatever the spread
    fine = np.zeros((1, 2, 96, 84), np.float32)
    fine[0, 0] = 0.9
    fine[0, 1, ::24, 40], fine[0, 1, ::24, 43] = 0.6, 0.4
    th2 = jnp.array([0.5, 0.5])
    one, half = (np.asarray(models.decode_notes(jnp.asarray(fine), th2, count=True, spread=g)) for g in (1.0, 0.5))
    np.testing.assert_array_equal(one, half)


def test_guidance_chooses_pitches_and_the_trained_decoder_how_many_notes():
    """`count_probs`: the notes counted come from these probabilities, the pitches from `probs`. A guided
    decoder (here: chord tones 43 / 47 raised on every beat) would start more notes if it also counted them;
    counting from the decoder as trained keeps its number, and the guided ranking moves them to the chord."""
    plain = np.zeros((1, 3, 16, 84), np.float32)
    plain[0, 0] = 0.9
    for t in (0, 4, 8, 12):
        plain[0, 1, t, 40] = 0.5 - 0.01 * t
        plain[0, 1, t, [43, 47]] = np.array([0.2, 0.19]) - 0.01 * t  # no two cells tie
    guided = plain.copy()
    guided[0, 1, :, [43, 47]] = np.minimum(plain[0, 1, :, [43, 47]] * 4, 0.95)
    th = jnp.array([0.5, 0.5, 6.0])

    def starts(probs, **kw):
        roll = np.asarray(models.decode_notes(jnp.asarray(probs), th, count=True, sub=6, **kw))[0]
        return {(t, p) for t in range(16) for p in range(84) if roll[t * 6, p] and (t == 0 or not roll[t * 6 - 1, p])}

    n_plain, n_guided = round(float(plain[0, 1].sum())), round(float(guided[0, 1].sum()))
    assert n_guided > n_plain + 2
    assert len(starts(guided)) == n_guided  # counting from the guided map: more notes
    kept = starts(guided, count_probs=jnp.asarray(plain))
    assert len(kept) == n_plain and len(starts(plain)) == n_plain
    assert {p for _, p in kept} <= {43, 47} and {p for _, p in starts(plain)} == {40}  # on the chord now
    np.testing.assert_array_equal(  # count_probs equal to probs changes nothing
        np.asarray(models.decode_notes(jnp.asarray(plain), th, count=True, sub=6)),
        np.asarray(models.decode_notes(jnp.asarray(plain), th, count=True, sub=6, count_probs=jnp.asarray(plain))),
    )


def test_count_scale_sets_how_many_notes_start():
    """Counted notes: the decoder's expected number times `count_scale`, placed by rank (most likely first)."""
    probs = np.zeros((1, 3, 16, 84), np.float32)
    probs[0, 0] = 0.9
    sure = [(0, 10), (4, 12), (8, 14), (12, 16)]
    for k, (t, p) in enumerate(sure):
        probs[0, 1, t, p] = 0.5 - 0.05 * k  # 0.5 + 0.45 + 0.4 + 0.35: 1.7 notes expected
    th = jnp.array([0.5, 0.5, 6.0])

    def starts(scale):
        roll = np.asarray(models.decode_notes(jnp.asarray(probs), th, count=True, sub=6, count_scale=scale))[0]
        return [(t, p) for t, p in sure if roll[t * 6, p]]

    assert starts(1.0) == sure[:2]  # round(1.7) = 2, the likeliest two
    assert starts(2.0) == sure[:3]  # round(3.4) = 3
    assert starts(0.25) == []  # round(0.425) = 0
