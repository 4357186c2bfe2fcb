"""Tests of the DDPG losses, agent plumbing and a small learning probe."""

import dataclasses
import functools

import agenttools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from herjax.agents.common import normalizer
from herjax.agents.common.networks import Actor, Critic
from herjax.agents.ddpg import (
    DDPGConfig,
    actor_loss,
    critic_loss,
    make_ddpg,
    resolve_clip_return,
    resolve_gamma,
    td_target,
)
from herjax.types import Transitions

OBS_DIM, GOAL_DIM, ACT_DIM, T = 5, 3, 2, 50
SMALL = DDPGConfig(hidden=(32, 32))


random_transitions = functools.partial(
    agenttools.random_transitions, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM
)


def test_config_defaults_resolve_like_baselines():
    cfg = DDPGConfig()
    assert resolve_gamma(cfg, 50) == pytest.approx(0.98)
    assert resolve_clip_return(cfg, 0.98) == pytest.approx(50.0)
    assert resolve_clip_return(dataclasses.replace(cfg, clip_return=False), 0.98) == np.inf
    assert resolve_gamma(dataclasses.replace(cfg, gamma=0.9), 50) == 0.9
    assert (cfg.polyak, cfg.batch_size, cfg.n_batches, cfg.action_l2) == (0.95, 256, 40, 1.0)
    assert tuple(cfg.hidden) == (256, 256, 256)


def test_td_target_by_hand():
    reward = jnp.array([-1.0, -1.0, 0.0, -1.0])
    next_q = jnp.array([-10.0, -60.0, 5.0, 0.0])
    # -1 + 0.98 * -10 = -10.8 (inside); -1 + 0.98 * -60 = -59.8 -> -50 (lower clip);
    # 0 + 0.98 * 5 = 4.9 -> 0 (upper clip); -1 + 0 = -1.
    got = td_target(reward, next_q, gamma=0.98, clip_return=50.0)
    np.testing.assert_allclose(got, [-10.8, -50.0, 0.0, -1.0], rtol=1e-6)


# Stub networks with known outputs: the actor returns its parameter (per row),
# the critic is b + w * sum(u), so every Q value is worked out by hand.
def stub_actor(params, obs, goal):
    return params["a"] * jnp.ones((obs.shape[0], 1))


def stub_critic(params, obs, goal, action):
    return params["b"] + params["w"] * jnp.sum(action, axis=-1)


def test_critic_loss_by_hand():
    obs = jnp.zeros((2, 1))
    goal = jnp.zeros((2, 1))
    action = jnp.array([[0.5], [-0.5]])
    reward = jnp.array([-1.0, 0.0])
    online = {"b": jnp.array(-2.0), "w": jnp.array(1.0)}
    target_actor = {"a": jnp.array(0.3)}
    loss_fn = lambda critic, target_critic: critic_loss(  # noqa: E731
        critic, target_actor, target_critic, obs, goal, action, reward, obs,
        actor_apply=stub_actor, critic_apply=stub_critic, gamma=0.98, clip_return=50.0,
    )

    # Target critic: Q' = -10 whatever the action (w = 0).
    # y = [-1 + 0.98 * -10, 0 + 0.98 * -10] = [-10.8, -9.8]
    # q = -2 + [0.5, -0.5] = [-1.5, -2.5];  y - q = [-9.3, -7.3]
    # loss = (86.49 + 53.29) / 2 = 69.89
    # dloss/dq = -2 (y - q) / 2 = [9.3, 7.3] -> db = 16.6, dw = 0.5*9.3 - 0.5*7.3 = 1.0
    target = {"b": jnp.array(-10.0), "w": jnp.array(0.0)}
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(online, target)
    assert float(loss) == pytest.approx(69.89, rel=1e-5)
    np.testing.assert_allclose(aux.target_q, [-10.8, -9.8], rtol=1e-6)
    np.testing.assert_allclose(aux.q, [-1.5, -2.5], rtol=1e-6)
    assert float(grads["b"]) == pytest.approx(16.6, rel=1e-5)
    assert float(grads["w"]) == pytest.approx(1.0, rel=1e-5)

    # Target critic far below the clip: Q' = -60,
    # y = clip([-1 - 58.8, 0 - 58.8], -50, 0) = [-50, -50]
    # loss = ((-50 + 1.5)^2 + (-50 + 2.5)^2) / 2 = (2352.25 + 2256.25) / 2 = 2304.25
    target = {"b": jnp.array(-60.0), "w": jnp.array(0.0)}
    loss, aux = loss_fn(online, target)
    np.testing.assert_allclose(aux.target_q, [-50.0, -50.0])
    assert float(loss) == pytest.approx(2304.25, rel=1e-6)

    # Q' depends on the target actor's action: Q' = 4 + 10 * 0.3 = 7 > 0,
    # y = clip([-1 + 6.86, 6.86], -50, 0) = [0, 0]; loss = (1.5^2 + 2.5^2) / 2 = 4.25
    target = {"b": jnp.array(4.0), "w": jnp.array(10.0)}
    loss, aux = loss_fn(online, target)
    np.testing.assert_allclose(aux.target_q, [0.0, 0.0])
    assert float(loss) == pytest.approx(4.25, rel=1e-6)


def test_actor_loss_by_hand():
    obs = jnp.zeros((2, 1))
    goal = jnp.zeros((2, 1))
    pi = jnp.array([[0.5, -1.0], [0.0, 1.0]])
    critic = {"b": jnp.array(-3.0), "w": jnp.array(1.0)}
    loss_fn = lambda a: actor_loss(  # noqa: E731
        {"a": a}, critic, obs, goal,
        actor_apply=lambda p, o, g: p["a"], critic_apply=stub_critic,
        action_l2=1.0, max_u=2.0,
    )
    # Q(pi) = -3 + row sums = [-3.5, -2.0]; -mean Q = 2.75
    # (pi / 2)^2 = [[0.0625, 0.25], [0, 0.25]], mean = 0.140625
    # loss = 2.75 + 0.140625 = 2.890625
    # dloss/dpi = -1/2 (mean over rows of dQ/dpi = 1) + 2 * pi / 4 / 4 = -0.5 + pi / 8
    loss, grad = jax.value_and_grad(loss_fn)(pi)
    assert float(loss) == pytest.approx(2.890625, rel=1e-6)
    np.testing.assert_allclose(grad, -0.5 + pi / 8, rtol=1e-6)


@pytest.fixture(scope="module")
def agent():
    return make_ddpg(SMALL, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM, horizon=T)


def test_init_copies_online_to_target(agent):
    state = agent.init(jax.random.key(0))
    jax.tree.map(np.testing.assert_array_equal, state.actor.online, state.actor.target)
    jax.tree.map(np.testing.assert_array_equal, state.critic.online, state.critic.target)
    kernels = [k.shape for k in jax.tree.leaves(state.actor.online) if k.ndim == 2]
    assert kernels == [(OBS_DIM + GOAL_DIM, 32), (32, 32), (32, ACT_DIM)]
    kernels = [k.shape for k in jax.tree.leaves(state.critic.online) if k.ndim == 2]
    assert kernels == [(OBS_DIM + GOAL_DIM + ACT_DIM, 32), (32, 32), (32, 1)]
    assert int(state.step) == 0


def test_act_shapes_bounds_and_exploration():
    max_u = 2.0
    cfg = dataclasses.replace(SMALL, max_u=max_u, noise_eps=0.0, random_eps=0.3)
    agent = make_ddpg(cfg, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM, horizon=T)
    state = agent.init(jax.random.key(0))
    act = jax.jit(agent.act)
    greedy_fn = jax.jit(agent.greedy)
    n = 4000
    obs = 300.0 * jax.random.normal(jax.random.key(1), (n, OBS_DIM))
    goal = jax.random.normal(jax.random.key(2), (n, GOAL_DIM))

    greedy = greedy_fn(state, obs, goal)
    assert greedy.shape == (n, ACT_DIM)
    assert np.all(np.abs(greedy) <= max_u)
    np.testing.assert_array_equal(
        greedy, greedy_fn(state, obs, goal)
    )

    # No Gaussian noise: a row differs from the greedy action iff it was replaced.
    explore = act(state, obs, goal, jax.random.key(5))
    assert np.all(np.abs(explore) <= max_u)
    replaced = np.any(np.asarray(explore) != np.asarray(greedy), axis=-1)
    se = np.sqrt(0.3 * 0.7 / n)
    assert abs(replaced.mean() - 0.3) < 3 * se
    # Random actions are uniform on [-max_u, max_u]: mean 0, variance max_u^2 / 3.
    random_rows = np.asarray(explore)[replaced]
    assert abs(random_rows.mean()) < 0.1
    assert random_rows.var() == pytest.approx(max_u**2 / 3, rel=0.1)

    noisy_agent = make_ddpg(
        dataclasses.replace(cfg, noise_eps=0.2, random_eps=0.0),
        obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM, horizon=T,
    )
    noisy_act = jax.jit(noisy_agent.act)
    obs = obs / 300.0  # unsaturated inputs, so most greedy actions are interior
    greedy = greedy_fn(state, obs, goal)
    noisy = noisy_act(state, obs, goal, jax.random.key(6))
    assert np.all(np.abs(noisy) <= max_u)
    # Where the clip at ±max_u is 3 noise stds away, noise is N(0, (0.2 max_u)^2).
    delta = np.asarray(noisy - greedy)
    interior = np.all(np.abs(np.asarray(greedy)) < max_u - 3 * 0.2 * max_u, axis=-1)
    assert interior.sum() > 1000
    assert delta[interior].std() == pytest.approx(0.2 * max_u, rel=0.1)
    assert abs(delta[interior].mean()) < 0.05
    assert not np.array_equal(
        noisy, noisy_act(state, obs, goal, jax.random.key(7))
    )


def test_act_rejects_bad_shapes(agent):
    state = agent.init(jax.random.key(0))
    with pytest.raises(AssertionError):
        agent.greedy(state, jnp.zeros((4, OBS_DIM + 1)), jnp.zeros((4, GOAL_DIM)))


def trees_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_update_and_end_of_cycle(agent):
    state = agent.init(jax.random.key(0))
    batch = random_transitions(jax.random.key(1), 64)
    new_state, metrics = jax.jit(agent.update)(state, batch)
    assert set(metrics) == {"critic_loss", "actor_loss", "mean_Q"}
    for value in metrics.values():
        assert value.shape == () and np.isfinite(value)
    assert int(new_state.step) == 1

    # Metrics are the standalone losses at the pre-update state (both
    # gradients come from the same parameters, as in baselines).
    actor_net, critic_net = Actor(act_dim=ACT_DIM, hidden=(32, 32)), Critic(hidden=(32, 32))
    obs_n = normalizer.normalize(state.obs_stats, batch.obs)
    goal_n = normalizer.normalize(state.goal_stats, batch.desired_goal)
    next_n = normalizer.normalize(state.obs_stats, batch.next_obs)
    want_critic, aux = critic_loss(
        state.critic.online, state.actor.target, state.critic.target,
        obs_n, goal_n, batch.action, batch.reward, next_n,
        actor_apply=actor_net.apply, critic_apply=critic_net.apply,
        gamma=0.98, clip_return=50.0,
    )
    want_actor = actor_loss(
        state.actor.online, state.critic.online, obs_n, goal_n,
        actor_apply=actor_net.apply, critic_apply=critic_net.apply,
        action_l2=1.0, max_u=1.0,
    )
    assert float(metrics["critic_loss"]) == pytest.approx(float(want_critic), rel=1e-5)
    assert float(metrics["actor_loss"]) == pytest.approx(float(want_actor), rel=1e-5)
    assert float(metrics["mean_Q"]) == pytest.approx(float(jnp.mean(aux.q)), rel=1e-5)

    # Online networks moved; targets only move in end_of_cycle.
    assert not trees_equal(new_state.actor.online, state.actor.online)
    assert not trees_equal(new_state.critic.online, state.critic.online)
    assert trees_equal(new_state.actor.target, state.actor.target)
    assert trees_equal(new_state.critic.target, state.critic.target)

    moved = jax.jit(agent.end_of_cycle)(new_state)
    for before, after in ((new_state.actor, moved.actor), (new_state.critic, moved.critic)):
        jax.tree.map(
            lambda t, o, got: np.testing.assert_allclose(
                got, 0.95 * t + 0.05 * o, rtol=1e-6, atol=1e-7
            ),
            before.target, before.online, after.target,
        )
        assert trees_equal(before.online, after.online)
        assert not trees_equal(before.target, after.target)


def test_update_normalizer_clips_inputs(agent):
    state = agent.init(jax.random.key(0))
    batch = random_transitions(jax.random.key(1), 128, obs_scale=300.0)
    state = jax.jit(agent.update_normalizer)(state, batch.obs, batch.desired_goal)
    clipped = np.clip(np.asarray(batch.obs), -200.0, 200.0)
    assert np.abs(np.asarray(batch.obs)).max() > 200.0
    np.testing.assert_allclose(state.obs_stats.sum, clipped.sum(0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(state.obs_stats.sumsq, (clipped**2).sum(0), rtol=1e-5)
    np.testing.assert_allclose(
        state.goal_stats.sum, np.asarray(batch.desired_goal).sum(0), rtol=1e-5, atol=1e-4
    )
    assert float(state.obs_stats.count) == 128 and float(state.goal_stats.count) == 128


def train(agent, state, batches):
    """Runs one update and one target update per batch, inside a single jit."""

    def step(state, batch):
        state, metrics = agent.update(state, batch)
        return agent.end_of_cycle(state), metrics

    return jax.jit(lambda s, b: jax.lax.scan(step, s, b))(state, batches)


@pytest.mark.parametrize("clip_return, expected_q", [(True, -2.0), (1.5, -1.5)])
def test_probe_critic_learns_constant_return(clip_return, expected_q):
    # Reward -1 forever with gamma 0.5: Q* = -1 / (1 - 0.5) = -2, or the lower
    # clip when that is tighter.
    cfg = dataclasses.replace(
        SMALL, gamma=0.5, clip_return=clip_return, polyak=0.5, q_lr=3e-3
    )
    agent = make_ddpg(cfg, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM, horizon=T)
    n_updates, batch_size = 400, 64
    keys = jax.random.split(jax.random.key(0), n_updates)
    batches = jax.vmap(lambda k: random_transitions(k, batch_size, reward=-1.0))(keys)
    state, metrics = train(agent, agent.init(jax.random.key(1)), batches)
    assert abs(float(metrics["mean_Q"][-1]) - expected_q) < 0.1
    assert float(metrics["critic_loss"][-1]) < 0.02


def test_probe_actor_finds_best_action():
    # One state, one step (gamma = 0, no clip): r(u) = -|u - 0.4|^2, so the best
    # action is 0.4 in every dimension and regret(u) = |u - 0.4|^2. The critic
    # sees uniform random actions; the actor must climb the learned Q.
    cfg = dataclasses.replace(
        SMALL, gamma=0.0, clip_return=False, action_l2=0.0, polyak=0.0,
        q_lr=3e-3, pi_lr=3e-3,
    )
    agent = make_ddpg(cfg, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM, horizon=T)
    n_updates, batch_size = 400, 64
    obs = jnp.full((batch_size, OBS_DIM), 0.5)
    goal = jnp.full((batch_size, GOAL_DIM), -0.3)

    def make_batch(key):
        action = jax.random.uniform(key, (batch_size, ACT_DIM), minval=-1.0, maxval=1.0)
        return Transitions(
            obs=obs, next_obs=obs, achieved_goal=goal, next_achieved_goal=goal,
            desired_goal=goal, action=action,
            reward=-jnp.sum(jnp.square(action - 0.4), axis=-1),
        )

    def regret(state):
        action = agent.greedy(state, obs[:1], goal[:1])
        return float(jnp.sum(jnp.square(action - 0.4)))

    batches = jax.vmap(make_batch)(jax.random.split(jax.random.key(0), n_updates))
    initial = agent.init(jax.random.key(1))
    trained, _ = train(agent, initial, batches)
    assert regret(initial) > 0.1
    assert regret(trained) < 0.05
