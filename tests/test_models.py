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
    y = jax.lax.conv_transpose(x, w.transpose(1, 2, 3, 0), strides=kernel, padding="VALID",
                               dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True)
    ours = pd(x.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    np.testing.assert_allclose(ours, y + pd.b[...], atol=1e-4)


@pytest.mark.parametrize("latent", [8, 16, 32, 64])
def test_vae_shapes_and_parameter_count(latent):
    cfg = ModelConfig(latent=latent)
    stack = models.vae_stack(cfg, DataConfig(), jax.random.key(0))
    x = jnp.zeros((5, 3, 96, 84))
    g, s = nnx.split(stack)
    def run(p, xi, k):
        m = nnx.merge(g, p)
        return m(m.patches(xi), k)
    out = jax.vmap(run)(s, x, jax.random.split(jax.random.key(1), 5))
    assert out.logits.shape == (5, 3, 7, 24, 48) and out.mu.shape == (5, 3, latent)
    mu, logvar = jax.vmap(lambda p, xi: nnx.merge(g, p).encode(xi))(s, x)
    logits = jax.vmap(lambda p, z: nnx.merge(g, p).decode(z))(s, mu)
    assert logits.shape == (5, 3, 96, 84) and logvar.shape == (5, 3, latent)
    # conv1 48*32+32, conv2 128*64+64, enc 2688*256+256, head 256*2K+2K, dec K*256+256, expand 256*2688+2688,
    # deconv2 64*128+32, deconv1 32*48+1
    per = (48 * 32 + 32) + (128 * 64 + 64) + (2688 * 256 + 256) + (256 * 2 * latent + 2 * latent) \
        + (latent * 256 + 256) + (256 * 2688 + 2688) + (64 * 128 + 32) + (32 * 48 + 1)
    assert models.count_params(stack) == 5 * per


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


def test_members_train_independently():
    """A gradient from one instrument's data moves only that instrument's parameters."""
    cfg = preset("tiny")
    g, state, tx = training.init_vae_state(cfg, jax.random.key(0))
    step, _ = training.make_vae_fns(g, cfg, tx)
    x = np.zeros((5, 4, 96, 84), np.float32)
    before = jax.tree.map(np.array, state["params"])
    x2 = x.copy()
    x2[2, :, 10:20, 30] = 1.0  # only guitar's data changes
    s_a, _ = step(jax.tree.map(jnp.array, {"params": before, "opt": tx.init(before), "key": state["key"]}), x, jnp.int32(5))
    s_b, _ = step(jax.tree.map(jnp.array, {"params": before, "opt": tx.init(before), "key": state["key"]}), x2, jnp.int32(5))
    for a, b in zip(jax.tree.leaves(s_a["params"]), jax.tree.leaves(s_b["params"])):
        a, b = np.asarray(a), np.asarray(b)
        for i in (0, 1, 3, 4):
            np.testing.assert_array_equal(a[i], b[i])
    moved = [not np.array_equal(np.asarray(a)[2], np.asarray(b)[2])
             for a, b in zip(jax.tree.leaves(s_a["params"]), jax.tree.leaves(s_b["params"]))]
    assert any(moved)


def test_train_step_compiles_once():
    cfg = preset("tiny")
    g, state, tx = training.init_vae_state(cfg, jax.random.key(0))
    step, _ = training.make_vae_fns(g, cfg, tx)
    x = np.zeros((5, 4, 96, 84), np.float32)
    for i in range(4):
        state, m = step(state, x + (i % 2), jnp.asarray(i, jnp.int32))
    assert step._cache_size() == 1
    assert np.all(np.isfinite(np.asarray(m.loss)))


def test_bernoulli_nll_value_and_gradient():
    from vaejax import losses
    l = jnp.array([-30.0, -2.0, 0.0, 1.5, 40.0])
    x = jnp.array([0.0, 1.0, 1.0, 0.0, 1.0])
    ref = lambda l: jnp.sum(jax.nn.softplus(l) - x * l)
    np.testing.assert_allclose(jnp.sum(losses.bernoulli_nll(l, x)), ref(l), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda l: jnp.sum(losses.bernoulli_nll(l, x)))(l), jax.grad(ref)(l), atol=1e-6)
