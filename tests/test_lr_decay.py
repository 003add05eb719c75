"""The VAEs' learning-rate decay (`train.lr_decay`): a cosine from `lr` to `lr * lr_decay` over the stage's
steps, on Adam's own state, so that a run's checkpoints restore whatever the schedule."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from vaejax.config import TrainConfig
from vaejax.training import steps


def _updates(tx, n, seed=0):
    params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(4)}
    state = tx.init(params)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        grads = jax.tree.map(lambda p: jnp.asarray(rng.normal(size=p.shape), jnp.float32), params)
        u, state = tx.update(grads, state, params)
        out.append(u)
    return out, state


def test_no_decay_is_adam_exactly():
    tc = TrainConfig(lr=3e-3)
    got, _ = _updates(steps.vae_optimizer(tc, steps=10), 5)
    ref, _ = _updates(optax.adam(3e-3), 5)
    for a, b in zip(got, ref):
        jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("decay", [0.1, 0.0])
def test_the_rate_falls_along_a_cosine_to_its_last_step(decay):
    n = 8
    tc = TrainConfig(lr=1e-2, lr_decay=decay)
    got, state = _updates(steps.vae_optimizer(tc, steps=n), n + 2)
    ref, ref_state = _updates(optax.adam(1e-2), n + 2)
    # the same Adam state (moments and step count), so checkpoints of either restore into the other
    assert jax.tree.structure(state) == jax.tree.structure(ref_state)
    jax.tree.map(np.testing.assert_allclose, state, ref_state)
    ratio = np.array([float(a["w"][0, 0] / b["w"][0, 0]) for a, b in zip(got, ref)])
    want = [decay + (1 - decay) * 0.5 * (1 + np.cos(np.pi * k / n)) for k in range(1, n + 1)]
    np.testing.assert_allclose(ratio[:n], want, rtol=1e-4, atol=1e-6)
    assert ratio[0] > 0.95 and np.all(np.diff(ratio[:n]) < 0)
    np.testing.assert_allclose(ratio[n - 1 :], decay, atol=1e-6)  # at lr * decay from the last step on


def test_the_vae_stage_decays_over_its_own_length(monkeypatch, tmp_path, demo_prepared):
    """`train_vae` hands the optimiser the stage's steps (epochs x steps per epoch)."""
    from vaejax import data as data_lib
    from vaejax.config import preset
    from vaejax.devices import DataParallel
    from vaejax.runs import RunFolder
    from vaejax.training import stages

    seen = []
    real = steps.vae_optimizer

    def spy(train, n=0):
        seen.append((train.lr_decay, n))
        return real(train, n)

    monkeypatch.setattr(steps, "vae_optimizer", spy)
    cfg = preset("tiny").replace(train={"max_steps_per_epoch": 3, "vae_epochs": 2, "lr_decay": 0.5})
    ds = data_lib.open_dataset(demo_prepared)
    run = RunFolder(str(tmp_path / "run"))
    run.start(cfg, demo_prepared)
    stages.train_vae(run, cfg, ds, DataParallel(None), progress=False)
    assert seen[0] == (0.5, 6)


def test_lr_decay_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="lr_decay"):
        TrainConfig(lr_decay=1.5)
