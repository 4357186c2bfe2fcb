"""Prioritised replay: sampling frequencies follow the priorities, importance weights are the formula, new
transitions get the largest priority, priority updates land on the sampled transitions, the critics' weighted and
Huber losses by hand, and every off-policy agent returns per-sample TD errors for a weighted batch."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flashbax.buffers import sum_tree

from agenttools import random_transitions
from herjax.agents.base import TD_ERROR
from herjax.agents.ddpg import DDPGConfig, make_ddpg
from herjax.agents.ddpg.losses import critic_loss, regression_loss
from herjax.agents.sac import SACConfig, make_sac
from herjax.agents.td3 import TD3Config, make_td3
from herjax.replay import make_her_buffer, make_prioritized, make_replay
from herjax.replay.prioritized import annealed_beta, importance_weights

E, T = 4, 5  # ring slots and steps: 20 transitions
ALPHA, EPS = 0.6, 1e-6


def prioritized(**kw):
    return make_prioritized(**{**dict(n_slots=E, horizon=T, alpha=ALPHA, beta0=0.4, beta_updates=100, eps=EPS), **kw})


def leaves(state, n=E * T):
    """The tree's first ``n`` leaves (``p^alpha``)."""
    depth = state.tree.tree_depth
    return np.asarray(state.tree.nodes[2**depth - 1: 2**depth - 1 + n])


@pytest.fixture(scope="module")
def filled():
    """Priorities of 3 stored episodes (slots 0..2), each transition's |TD error| chosen: slot i, step t -> 0.1 +
    (i * T + t) / 4; slot 3 never written."""
    prio = prioritized()
    state = prio.add(prio.init(), jnp.arange(E), jnp.asarray(3))
    idx = jnp.arange(3 * T)
    state = prio.update(state, idx // T, idx % T, 0.1 + idx / 4.0)
    return prio, state


def test_new_transitions_get_the_largest_priority_so_far():
    prio = prioritized()
    state = prio.add(prio.init(), jnp.array([0, 1]), jnp.asarray(1))  # only slot 0 stored
    np.testing.assert_array_equal(leaves(state)[:2 * T], [1.0] * T + [0.0] * T)
    state = prio.update(state, jnp.array([0, 0]), jnp.array([1, 2]), jnp.array([9.0, 0.5]))
    big = (9.0 + EPS) ** ALPHA
    assert float(state.tree.max_recorded_priority) == pytest.approx(big)
    state = prio.add(state, jnp.array([1]), jnp.asarray(1))
    np.testing.assert_allclose(leaves(state)[T:2 * T], big, rtol=1e-6)
    assert float(state.tree.nodes[0]) == pytest.approx(leaves(state).sum(), rel=1e-6)


def test_sampling_frequencies_match_priorities(filled):
    """P(i) = p_i^alpha / sum_k p_k^alpha for every stored transition, within 4 standard errors of a binomial
    count (stratified sampling only lowers the spread); the never-written slot is never drawn."""
    prio, state = filled
    draws = jax.jit(jax.vmap(lambda key: prio.sample(state, key, 64, jnp.asarray(3))[:2]))
    episode_idx, t = draws(jax.random.split(jax.random.key(0), 400))
    counts = np.bincount(np.asarray(episode_idx * T + t).ravel(), minlength=E * T)
    n = counts.sum()
    p = (0.1 + np.arange(3 * T) / 4.0 + EPS) ** ALPHA
    expected = n * p / p.sum()
    se = np.sqrt(n * (p / p.sum()) * (1 - p / p.sum()))
    assert np.all(np.abs(counts[:3 * T] - expected) < 4 * se), (counts[:3 * T], expected)
    assert counts[3 * T:].sum() == 0


def test_importance_weights_equal_the_formula(filled):
    prio, state = filled
    episode_idx, t, weight = jax.jit(prio.sample, static_argnums=2)(state, jax.random.key(3), 16, jnp.asarray(3))
    p = (0.1 + np.arange(3 * T) / 4.0 + EPS) ** ALPHA
    probability = p[np.asarray(episode_idx * T + t)] / p.sum()
    beta = 0.4 + 0.6 * 1 / 100  # one priority update of beta_updates 100 so far; N = 15 stored transitions
    raw = (3 * T * probability) ** -beta
    np.testing.assert_allclose(weight, raw / raw.max(), rtol=1e-5)
    assert float(jnp.max(weight)) == pytest.approx(1.0, abs=1e-6)
    # beta grows linearly from beta0 to 1 over beta_updates, then stays 1.
    assert [float(annealed_beta(u, beta0=0.4, beta_updates=100)) for u in (0, 50, 100, 300)] == pytest.approx(
        [0.4, 0.7, 1.0, 1.0])
    # N P = [1.5, 0.75, 0.75] -> (N P)^-1 = [2/3, 4/3, 4/3] -> divided by the largest: [1/2, 1, 1].
    np.testing.assert_allclose(importance_weights(jnp.array([0.5, 0.25, 0.25]), 3, 1.0), [0.5, 1.0, 1.0],
                               rtol=1e-6)
    np.testing.assert_array_equal(importance_weights(jnp.array([0.5, 0.25]), 2, 0.0), [1.0, 1.0])


@pytest.mark.parametrize("set_batch", ["set_batch_scan", "set_batch_bincount"])  # flashbax's CPU and GPU choices
def test_priority_updates_land_on_the_sampled_transitions(set_batch):
    """The loop's replay: a prioritised batch, then ``learned`` with per-sample TD errors: each sampled transition's
    leaf becomes (|td| + eps)^alpha (the last sample's where one was drawn twice), every other leaf is unchanged, and
    the tree's total is the sum of its leaves. Demo samples of the batch touch no priority."""
    reward = lambda ag, g: -(jnp.linalg.norm(ag - g, axis=-1) > 0.05).astype(jnp.float32)
    her = dict(horizon=T, obs_dim=2, goal_dim=3, act_dim=2, compute_reward=reward)
    episodes = jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), make_demo_like(E, 0))
    demos = make_demo_like(2, 1000)
    prio = prioritized(set_batch=getattr(sum_tree, set_batch))
    replay = make_replay(make_her_buffer(capacity=E * T, **her), compute_reward=reward, strategy="future",
                         future_p=0.8, prioritized=prio, demo_buffer=make_her_buffer(capacity=2 * T, **her),
                         demos=demos, demo_batch_size=4)
    state = replay.add(replay.init(), episodes, jnp.asarray(E))
    # Leaf 7 holds most of the mass (1000^0.6 = 63 of 82), so the batch draws it several times.
    state = state.replace(priorities=prio.update(state.priorities, jnp.array([1]), jnp.array([2]), jnp.array([1e3])))
    batch, where = jax.jit(replay.sample, static_argnums=2)(state, jax.random.key(0), 12)
    assert batch.weight.shape == (12,) and np.all(np.asarray(batch.weight[8:]) == 1.0)
    td = jnp.arange(12, dtype=jnp.float32) + 1.0
    new = jax.jit(replay.learned)(state, where, td)
    sampled = np.asarray(where[0] * T + where[1])
    assert sampled.shape == (8,) and np.sum(sampled == 7) >= 2
    # The sampled transitions are those of the batch: obs[:, 0] encodes the episode, obs[:, 1] the step.
    np.testing.assert_array_equal(np.asarray(batch.obs[:8, 0]) * T + np.asarray(batch.obs[:8, 1]), sampled)
    after, before = leaves(new.priorities), leaves(state.priorities)
    for leaf in range(E * T):
        hits = np.flatnonzero(sampled == leaf)
        want = (float(td[hits[-1]]) + EPS) ** ALPHA if hits.size else before[leaf]
        assert after[leaf] == pytest.approx(want, rel=1e-6), leaf
    assert float(new.priorities.tree.nodes[0]) == pytest.approx(after.sum(), rel=1e-5)
    assert int(new.priorities.updates) == 2


def make_demo_like(n, first_id):
    """``n`` episodes of ``T`` steps whose obs encode (episode id, step)."""
    ids = np.arange(first_id, first_id + n, dtype=np.float32)[:, None]
    steps = np.arange(T + 1, dtype=np.float32)[None, :]
    obs = np.stack(np.broadcast_arrays(ids, steps), -1)
    from herjax.types import Episodes

    rng = np.random.default_rng(first_id)
    return Episodes(obs=obs, achieved_goal=rng.normal(size=(n, T + 1, 3)).astype(np.float32),
                    desired_goal=rng.normal(size=(n, T, 3)).astype(np.float32),
                    action=rng.uniform(-1, 1, size=(n, T, 2)).astype(np.float32))


def test_weighted_and_huber_regression_by_hand():
    error = jnp.array([0.5, -2.0, 3.0])
    weight = jnp.array([1.0, 0.5, 0.0])
    # Squared: mean(w * d^2) = (0.25 + 0.5 * 4 + 0) / 3.
    assert float(regression_loss(error, weight)) == pytest.approx((0.25 + 2.0) / 3)
    # Huber (delta 1): 0.5 * 0.25, |-2| - 0.5, |3| - 0.5 -> mean(w * .) = (0.125 + 0.75 + 0) / 3.
    assert float(regression_loss(error, weight, huber=True)) == pytest.approx((0.125 + 0.75) / 3)
    assert float(regression_loss(error)) == pytest.approx((0.25 + 4 + 9) / 3)
    # Twin critics: one loss per critic (the last axis is the batch).
    np.testing.assert_allclose(regression_loss(jnp.stack([error, 2 * error]), weight), [2.25 / 3, 9.0 / 3])


def test_critic_loss_weights_and_td_error():
    """DDPG's critic loss with weights: the stub critic's q and target of test_ddpg, |TD| = [9.3, 7.3]."""
    critic_apply = lambda params, obs, goal, action: params["b"] + 0.0 * obs[:, 0]
    actor_apply = lambda params, obs, goal: jnp.zeros((obs.shape[0], 1))
    obs, goal, action = jnp.zeros((2, 1)), jnp.zeros((2, 1)), jnp.zeros((2, 1))
    loss_fn = functools.partial(critic_loss, actor_apply=actor_apply, critic_apply=critic_apply, gamma=0.98,
                                clip_return=50.0)
    args = ({"b": jnp.array([-1.5, -2.5])}, {}, {"b": jnp.array([-10.0, -7.0])}, obs, goal, action,
            jnp.array([-1.0, 0.0]), obs)
    loss, aux = loss_fn(*args, weight=jnp.array([1.0, 0.25]))
    # targets: -1 + 0.98 * -10 = -10.8, 0.98 * -7 = -6.86; errors 9.3, 4.36.
    np.testing.assert_allclose(aux.td_error, [9.3, 4.36], rtol=1e-6)
    assert float(loss) == pytest.approx((9.3**2 + 0.25 * 4.36**2) / 2, rel=1e-6)


AGENTS = {
    "ddpg": (make_ddpg, DDPGConfig(hidden=(8,))),
    "td3": (make_td3, TD3Config(hidden=(8,))),
    "sac": (make_sac, SACConfig(hidden=(8,))),
}


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agents_return_td_errors_for_weighted_batches_only(name):
    make, cfg = AGENTS[name]
    agent = make(cfg, obs_dim=3, goal_dim=2, act_dim=2, horizon=10)
    state = agent.init(jax.random.key(0))
    batch = random_transitions(jax.random.key(1), 16, obs_dim=3, goal_dim=2, act_dim=2)
    update = jax.jit(agent.update)
    _, plain = update(state, batch, jax.random.key(2))
    assert set(plain) == set(agent.metric_names)
    weighted = batch._replace(weight=jnp.ones(16))
    _, metrics = update(state, weighted, jax.random.key(2))
    assert metrics[TD_ERROR].shape == (16,) and np.all(np.asarray(metrics[TD_ERROR]) >= 0)
    # Weights of 1 are the unweighted update.
    assert float(metrics["critic_loss"]) == pytest.approx(float(plain["critic_loss"]), rel=1e-6)
    _, halved = update(state, batch._replace(weight=jnp.full(16, 0.5)), jax.random.key(2))
    assert float(halved["critic_loss"]) == pytest.approx(0.5 * float(plain["critic_loss"]), rel=1e-5)
