"""Tests of the running normaliser against a numpy re-derivation of baselines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from herjax.agents.common import normalizer

EPS, CLIP = 0.01, 5.0


def numpy_stats(x, eps=EPS):
    x = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    mean = x.sum(0) / len(x)
    std = np.sqrt(np.maximum(eps**2, (x**2).sum(0) / len(x) - mean**2))
    return mean, std


def make_batches(seed=0, n_batches=4):
    rng = np.random.default_rng(seed)
    batches = []
    for i in range(n_batches):
        n = 50 + 17 * i
        x = rng.normal(loc=[3.0, -1.0, 0.0, 0.0], scale=[2.0, 0.1, 1.0, 1.0], size=(n, 4))
        x[:, 2] = 0.7  # constant: the eps floor sets its std
        x[: n // 10, 3] = 40.0  # outliers: normalised values hit the clip
        batches.append(x.astype(np.float32))
    return batches


def test_initial_stats_are_identity():
    state = normalizer.init(3)
    mean, std = normalizer.mean_std(state)
    np.testing.assert_array_equal(mean, np.zeros(3))
    np.testing.assert_array_equal(std, np.ones(3))
    x = jnp.array([[0.5, -7.0, 2.0]])
    np.testing.assert_allclose(normalizer.normalize(state, x), [[0.5, -5.0, 2.0]])


def test_incremental_updates_match_numpy():
    batches = make_batches()
    state = normalizer.init(4)
    update = jax.jit(normalizer.update)
    normalize = jax.jit(normalizer.normalize, static_argnums=(2, 3))
    probe = np.random.default_rng(1).normal(scale=5.0, size=(64, 4)).astype(np.float32)
    for i, x in enumerate(batches):
        state = update(state, x)
        seen = np.concatenate(batches[: i + 1])
        mean, std = numpy_stats(seen)
        assert float(state.count) == len(seen)
        got_mean, got_std = normalizer.mean_std(state, EPS)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got_std, std, rtol=1e-4, atol=1e-5)
        assert got_std[2] == pytest.approx(EPS)
        expected = np.clip((probe - mean) / std, -CLIP, CLIP)
        got = normalize(state, probe, CLIP, EPS)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
        assert np.any(np.abs(expected) == CLIP)


def test_custom_clip_and_eps():
    x = make_batches(seed=2, n_batches=1)[0]
    state = normalizer.update(normalizer.init(4), x)
    mean, std = numpy_stats(x, eps=0.5)
    probe = x[:20]
    np.testing.assert_allclose(
        normalizer.normalize(state, probe, clip_range=1.5, eps=0.5),
        np.clip((probe - mean) / std, -1.5, 1.5),
        rtol=1e-4, atol=1e-4,
    )


def test_update_flattens_leading_dims():
    x = make_batches(seed=3, n_batches=1)[0][:48]
    flat = normalizer.update(normalizer.init(4), x)
    nested = normalizer.update(normalizer.init(4), x.reshape(6, 8, 4))
    jax.tree.map(np.testing.assert_allclose, flat, nested)


def test_averaged_states_give_pooled_stats():
    a, b = make_batches(seed=4, n_batches=2)
    state_a = normalizer.update(normalizer.init(4), a)
    state_b = normalizer.update(normalizer.init(4), b)
    # What a cross-device pmean of the states computes.
    averaged = jax.tree.map(lambda u, v: (u + v) / 2, state_a, state_b)
    mean, std = numpy_stats(np.concatenate([a, b]))
    got_mean, got_std = normalizer.mean_std(averaged, EPS)
    np.testing.assert_allclose(got_mean, mean, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got_std, std, rtol=1e-4, atol=1e-5)


def test_rejects_wrong_size():
    with pytest.raises(AssertionError):
        normalizer.update(normalizer.init(4), np.zeros((3, 5), np.float32))
