"""The PyTorch baseline of the training-step benchmark (`bench/torch_vae.py`) is the shipped design: same
parameter count, same output shapes and, on vaejax's weights and the same inputs and noise, the same
outputs and the same losses over two training steps (so the same gradients and Adam). Skipped where PyTorch
is not installed (it is a benchmark baseline only)."""

import os
import sys

import jax
import numpy as np
import pytest
from flax import nnx

torch = pytest.importorskip("torch")

from conftest import ROOT  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "bench"))

import torch_vae  # noqa: E402

from vaejax import models, training  # noqa: E402
from vaejax.config import preset  # noqa: E402


def _setup(batch=6):
    cfg = preset("default").replace(train={"batch_size": batch})
    g, state, tx = training.steps.init_vae_state(cfg.model, cfg.data, cfg.train, jax.random.key(3))
    # vaejax initialises the harmonic bias at zero: give it values so that the check covers it
    state["params"]["harmony"][...] = 0.1 * jax.random.normal(jax.random.key(4), state["params"]["harmony"].shape)
    pure = nnx.to_pure_dict(state["params"])
    rng = np.random.default_rng(0)
    x = (rng.random((5, batch, 96, 84)) < 0.04).astype(np.float32)
    x[:, 0] = 0.0  # a silent bar (the plays head's target is 0 there)
    x[:, 1, :, 40:43] = 1.0  # a long held chord
    return cfg, g, state, tx, pure, x


def _eps(key, step, batch, latent):
    """The noise the vaejax step draws for each member at `step`."""
    keys = jax.random.split(jax.random.fold_in(key, step), 5)

    def rows(k):  # each row's noise from its own key (its place in the batch)
        return np.stack([np.asarray(jax.random.normal(jax.random.fold_in(k, r), (latent,))) for r in range(batch)])

    return torch.from_numpy(np.stack([rows(k) for k in keys]))


def test_same_parameters_and_outputs():
    cfg, g, state, tx, pure, x = _setup()
    single = models.VAE(cfg.model, cfg.data, rngs=nnx.Rngs(0))
    net = torch_vae.TorchVAE()
    assert sum(p.numel() for p in net.parameters()) == models.count_params(single)
    stack = nnx.merge(g, state["params"])
    for i in (0, 1, 3):  # drums, the piano (its condition is zeros), bass
        torch_vae.load_jax(net, jax.tree.map(lambda a, i=i: a[i], pure))
        member = nnx.merge(g, jax.tree.map(lambda a, i=i: a[i], nnx.state(stack)))
        c = models.conditions(x[1], cfg.data)[i]
        mu, logvar = member.encode(x[i], c)
        logits, plays = member.decode_all(mu, c)
        xt = torch.from_numpy(x)
        maps, ct = torch_vae.batch_inputs(xt)
        np.testing.assert_array_equal(maps[i].numpy(), np.asarray(member.maps(x[i])))
        np.testing.assert_array_equal(ct[i].numpy(), np.asarray(c))
        with torch.no_grad():
            tmu, tlogvar = net.encode(maps[i], ct[i])
            tlogits, tplays = net.decode(tmu, ct[i])
        assert tlogits.shape == logits.shape == (6, 3, 16, 84)
        np.testing.assert_allclose(tmu.numpy(), np.asarray(mu), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(tlogvar.numpy(), np.asarray(logvar), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(tlogits.numpy(), np.asarray(logits), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(tplays.numpy(), np.asarray(plays), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("batched", [False, True])
def test_same_losses_over_two_steps(batched):
    cfg, g, state, tx, pure, x = _setup()
    nets = [torch_vae.load_jax(torch_vae.TorchVAE(), jax.tree.map(lambda a, i=i: a[i], pure)) for i in range(5)]
    step, _ = training.steps.make_vae_fns(g, cfg.train, cfg.data, tx)
    tstep = (torch_vae.make_batched_step if batched else torch_vae.make_step)(nets)
    xt = torch.from_numpy(x)
    key = np.asarray(state["key"])
    for s in range(3):
        eps = _eps(key, s, x.shape[1], cfg.model.latent)
        state, m = step(state, x, jax.numpy.int32(s))
        ours = tstep(xt, s, eps).numpy()
        # step 0 checks the forward pass and loss (beta is 0), steps 1 and 2 the gradients and Adam's updates
        np.testing.assert_allclose(ours, np.asarray(m.loss), rtol=1e-4)
