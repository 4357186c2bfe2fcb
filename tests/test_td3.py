"""Tests of TD3+HER: the twin critic loss by hand, target smoothing, the delayed actor and the agent plumbing."""

import functools

import agenttools
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from herjax.agents.common import normalizer
from herjax.agents.common.networks import Actor, DoubleCritic
from herjax.agents.td3 import (
    TD3Config,
    TD3State,
    actor_loss,
    first_critic,
    make_td3,
    smoothed_target_action,
    twin_critic_loss,
)
from herjax.checks import ConfigError

OBS_DIM, GOAL_DIM, ACT_DIM, T = 5, 3, 2, 50
DELAY = 3
MAX_U = 2.0
SMALL = TD3Config(hidden=(32, 32), policy_delay=DELAY, max_u=MAX_U)
INPUT_CLIPS = dict(clip_obs=200.0, norm_eps=0.01, norm_clip=5.0)


random_transitions = jax.jit(
    functools.partial(agenttools.random_transitions, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM),
    static_argnums=1,
)


def trees_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


# Stub networks with known outputs. The actor is a + sum(o) (one action dimension); critic i is
# b_i + w_i * sum(u) + v_i * sum(u^2), so every value below is worked out by hand.
def stub_actor(params, obs, goal):
    return params["a"] + jnp.sum(obs, axis=-1, keepdims=True)


def stub_double_critic(params, obs, goal, action):
    col = lambda x: x[:, None]  # noqa: E731
    return (col(params["b"]) + col(params["w"]) * jnp.sum(action, -1)
            + col(params["v"]) * jnp.sum(jnp.square(action), -1))


def critic_params(b, w, v):
    return {"b": jnp.array(b), "w": jnp.array(w), "v": jnp.array(v)}


def stub_loss(online, target_critic, target_actor, next_obs, reward, *, max_u=1.0, target_noise=0.0,
              target_noise_clip=0.5, key=jax.random.key(0)):
    obs = jnp.zeros((2, 1))
    action = jnp.array([[0.5], [-0.5]])
    return twin_critic_loss(
        online, target_actor, target_critic, obs, obs, action, reward, next_obs, key,
        actor_apply=stub_actor, critic_apply=stub_double_critic, gamma=0.98, clip_return=50.0, max_u=max_u,
        target_noise=target_noise, target_noise_clip=target_noise_clip,
    )


def test_twin_critic_loss_uses_min_of_target_critics_by_hand():
    online = critic_params([-2.0, -3.0], [1.0, 0.0], [0.0, 0.0])
    target = critic_params([-5.0, -4.0], [0.0, 10.0], [0.0, 0.0])
    target_actor = {"a": jnp.array(0.3)}
    next_obs = jnp.array([[0.0], [-1.0]])
    reward = jnp.array([-1.0, 0.0])
    # No smoothing noise: a' = 0.3 + sum(o2) = [0.3, -0.7].
    # Q'_1 = [-5, -5];  Q'_2 = -4 + 10 a' = [-1, -11];  min = [-5, -11] (row 0 from Q'_1, row 1 from Q'_2)
    # y = [-1 + 0.98 * -5, 0 + 0.98 * -11] = [-5.9, -10.78]
    # u = [0.5, -0.5]: Q_1 = -2 + u = [-1.5, -2.5];  Q_2 = [-3, -3]
    # y - Q_1 = [-4.4, -8.28]: mean sq = (19.36 + 68.5584) / 2 = 43.9592
    # y - Q_2 = [-2.9, -7.78]: mean sq = (8.41 + 60.5284) / 2 = 34.4692;  loss = 78.4284
    # dL/dQ_i = -(y - Q_i) (N = 2): db = [12.68, 10.68], dw = -sum((y - Q_i) u) = [-1.94, -2.44],
    # dv = -sum((y - Q_i) u^2) = [3.17, 2.67]
    loss_fn = lambda p: stub_loss(p, target, target_actor, next_obs, reward)  # noqa: E731
    (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(online)
    assert float(loss) == pytest.approx(78.4284, rel=1e-5)
    np.testing.assert_allclose(aux.target_q, [-5.9, -10.78], rtol=1e-6)
    np.testing.assert_allclose(aux.q, [[-1.5, -2.5], [-3.0, -3.0]], rtol=1e-6)
    np.testing.assert_allclose(grads["b"], [12.68, 10.68], rtol=1e-5)
    np.testing.assert_allclose(grads["w"], [-1.94, -2.44], rtol=1e-5)
    np.testing.assert_allclose(grads["v"], [3.17, 2.67], rtol=1e-5)

    # The target is held fixed: no gradient reaches the target critics.
    target_grads = jax.grad(lambda t: stub_loss(online, t, target_actor, next_obs, reward)[0])(target)
    for leaf in jax.tree.leaves(target_grads):
        np.testing.assert_array_equal(leaf, 0.0)


@pytest.mark.parametrize("max_u, expected_target", [(1.0, [-6.88, -5.88]), (2.0, [-12.76, -11.76])])
def test_twin_critic_loss_clips_smoothing_noise(max_u, expected_target):
    # pi' = 0; noise std 1e4 * max_u saturates at the clip, so a' = ±0.5 max_u whatever its sign:
    # Q'_2 = -4 - 8 a'^2 = -4 - 2 max_u^2 = -6 (max_u 1) or -12 (max_u 2), below Q'_1 = -5.
    # (Noise clipped only by ±max_u would give -12 / -36; no noise -4, so min -5.)
    # y = r + 0.98 * min = [-1 - 5.88, -5.88] or [-1 - 11.76, -11.76].
    online = critic_params([0.0, 0.0], [0.0, 0.0], [0.0, 0.0])
    target = critic_params([-5.0, -4.0], [0.0, 0.0], [0.0, -8.0])
    _, aux = stub_loss(online, target, {"a": jnp.array(0.0)}, jnp.zeros((2, 1)), jnp.array([-1.0, 0.0]),
                       max_u=max_u, target_noise=1e4, target_noise_clip=0.5, key=jax.random.key(3))
    np.testing.assert_allclose(aux.target_q, expected_target, rtol=1e-5)


def test_smoothed_target_action_clips_noise_then_action():
    n, max_u = 2000, 2.0
    pi = jnp.tile(jnp.array([[0.3, 1.8, -1.9]]), (n, 1))
    # Saturated noise: exactly ±0.25 * 2 = ±0.5, then the action clip at ±2.
    out = np.asarray(smoothed_target_action(pi, jax.random.key(0), max_u=max_u, target_noise=1e4,
                                            target_noise_clip=0.25))
    for column, values in enumerate(([-0.2, 0.8], [1.3, 2.0], [-2.0, -1.4])):
        np.testing.assert_allclose(np.sort(np.unique(out[:, column].round(5))), values, atol=1e-5)
        assert abs(np.mean(out[:, column] == out[:, column].max()) - 0.5) < 0.05  # both signs, evenly
    assert np.all(np.abs(out) <= max_u)

    # Unsaturated: the noise is N(0, (0.2 max_u)^2), fresh for each key.
    zero = jnp.zeros((n, 2))
    noisy = np.asarray(smoothed_target_action(zero, jax.random.key(1), max_u=max_u, target_noise=0.2,
                                              target_noise_clip=10.0))
    assert noisy.std() == pytest.approx(0.2 * max_u, rel=0.05)
    assert abs(noisy.mean()) < 0.02
    other = smoothed_target_action(zero, jax.random.key(2), max_u=max_u, target_noise=0.2, target_noise_clip=10.0)
    assert not np.array_equal(noisy, other)
    np.testing.assert_array_equal(
        smoothed_target_action(pi, jax.random.key(1), max_u=max_u, target_noise=0.0, target_noise_clip=0.5), pi)


@pytest.fixture(scope="module")
def agent():
    return make_td3(SMALL, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM, horizon=T)


@pytest.fixture(scope="module")
def update(agent):
    return jax.jit(agent.update)


@pytest.fixture(scope="module")
def initial_state(agent):
    return jax.jit(agent.init)(jax.random.key(0))


@pytest.fixture(scope="module")
def fed_state(agent, initial_state):
    """An initial state whose normaliser has seen data, so preprocessing is not the identity."""
    batch = random_transitions(jax.random.key(9), 64, obs_scale=3.0)
    return jax.jit(agent.update_normalizer)(initial_state, batch.obs, batch.desired_goal)


def test_init_has_two_distinct_critics(initial_state):
    state = initial_state
    assert isinstance(state, TD3State)
    kernels = [k.shape for k in jax.tree.leaves(state.critic.online) if k.ndim == 3]
    assert kernels == [(2, OBS_DIM + GOAL_DIM + ACT_DIM, 32), (2, 32, 32), (2, 32, 1)]
    first = jax.tree.leaves(state.critic.online)[1]
    assert not np.array_equal(first[0], first[1])
    assert trees_equal(state.critic.online, state.critic.target)
    assert trees_equal(state.actor.online, state.actor.target)
    assert int(state.step) == 0


def test_actor_steps_only_every_policy_delay_updates(agent, update, fed_state):
    state = fed_state
    keys = jax.random.split(jax.random.key(1), 2 * 7)
    actor_steps = []
    for i in range(7):
        new, _ = update(state, random_transitions(keys[2 * i], 64), keys[2 * i + 1])
        assert int(new.step) == i + 1
        assert not trees_equal(new.critic.online, state.critic.online)
        actor_steps.append(not trees_equal(new.actor.online, state.actor.online))
        # Adam's own count moves with the actor: a dropped step leaves the optimiser state as it was.
        assert trees_equal(new.actor_opt_state, state.actor_opt_state) != actor_steps[-1]
        assert trees_equal(new.actor.target, state.actor.target)
        assert trees_equal(new.critic.target, state.critic.target)
        state = new
    # As Fujimoto's code and SB3 count updates (from 1): the actor steps at updates 3 and 6, not at the first.
    assert actor_steps == [(i + 1) % DELAY == 0 for i in range(7)]  # calls 2 and 5 (from 0)


def test_jitted_update_matches_standalone_losses(agent, update, fed_state):
    state = fed_state
    batch = random_transitions(jax.random.key(1), 64)
    key = jax.random.key(2)
    new_state, metrics = update(state, batch, key)
    assert set(metrics) == set(agent.metric_names) == {"critic_loss", "actor_loss", "mean_Q"}
    for value in metrics.values():
        assert value.shape == () and np.isfinite(value)

    # The metrics are the standalone losses: the critics' at the pre-update state with the same noise key, the
    # actor's on the updated first critic.
    actor_net = Actor(act_dim=ACT_DIM, max_u=MAX_U, hidden=(32, 32))
    critic_net = DoubleCritic(max_u=MAX_U, hidden=(32, 32))
    norm = lambda o: normalizer.preprocess(state.obs_stats, state.goal_stats, o, batch.desired_goal,  # noqa: E731
                                           **INPUT_CLIPS)
    (obs, goal), (next_obs, _) = norm(batch.obs), norm(batch.next_obs)
    want_critic, aux = twin_critic_loss(
        state.critic.online, state.actor.target, state.critic.target, obs, goal, batch.action, batch.reward,
        next_obs, key, actor_apply=actor_net.apply, critic_apply=critic_net.apply, gamma=0.98, clip_return=50.0,
        max_u=MAX_U, target_noise=0.2, target_noise_clip=0.5,
    )
    want_actor = actor_loss(
        state.actor.online, new_state.critic.online, obs, goal, actor_apply=actor_net.apply,
        critic_apply=first_critic(critic_net.apply), action_l2=1.0, max_u=MAX_U,
    )
    assert float(metrics["critic_loss"]) == pytest.approx(float(want_critic), rel=1e-5)
    assert float(metrics["actor_loss"]) == pytest.approx(float(want_actor), rel=1e-5)
    assert float(metrics["mean_Q"]) == pytest.approx(float(jnp.mean(aux.q[0])), rel=1e-5)
    # Another key draws other smoothing noise, hence another critic loss.
    _, other = update(state, batch, jax.random.key(3))
    assert float(other["critic_loss"]) != float(metrics["critic_loss"])


def test_value_is_the_first_critic(agent, fed_state):
    state = fed_state
    batch = random_transitions(jax.random.key(4), 64, obs_scale=3.0)
    q = jax.jit(agent.value)(state, batch.obs, batch.desired_goal, batch.action)
    assert q.shape == (64,)
    inputs = normalizer.preprocess(state.obs_stats, state.goal_stats, batch.obs, batch.desired_goal, **INPUT_CLIPS)
    both = DoubleCritic(max_u=MAX_U, hidden=(32, 32)).apply(state.critic.online, *inputs, batch.action)
    np.testing.assert_allclose(q, both[0], rtol=1e-6)
    assert not np.allclose(q, both[1])


def test_greedy_is_deterministic_and_act_is_bounded(agent, initial_state):
    state, max_u = initial_state, MAX_U
    batch = random_transitions(jax.random.key(1), 64, obs_scale=300.0)
    greedy = jax.jit(agent.greedy)(state, batch.obs, batch.desired_goal)
    assert greedy.shape == (64, ACT_DIM)
    np.testing.assert_array_equal(greedy, jax.jit(agent.greedy)(state, batch.obs, batch.desired_goal))
    act = jax.jit(agent.act)
    explore = act(state, batch.obs, batch.desired_goal, jax.random.key(2))
    assert explore.shape == (64, ACT_DIM)
    assert np.all(np.abs(explore) <= max_u) and np.all(np.abs(greedy) <= max_u)
    # Saturated inputs push tanh to the bound, so the clip at ±max_u is exercised.
    assert np.max(np.abs(explore)) == pytest.approx(max_u)
    assert not np.array_equal(explore, greedy)
    assert not np.array_equal(explore, act(state, batch.obs, batch.desired_goal, jax.random.key(3)))


def test_end_of_cycle_moves_actor_and_both_critics(agent, update, fed_state):
    state = fed_state
    for i in range(DELAY):  # the actor's first step is at update DELAY
        state, _ = update(state, random_transitions(jax.random.key(2 * i + 1), 64), jax.random.key(2 * i + 2))
    moved = jax.jit(agent.end_of_cycle)(state)
    for before, after in ((state.actor, moved.actor), (state.critic, moved.critic)):
        jax.tree.map(lambda t, o, got: np.testing.assert_allclose(got, 0.95 * t + 0.05 * o, rtol=1e-6, atol=1e-7),
                     before.target, before.online, after.target)
        assert trees_equal(before.online, after.online)
        assert not trees_equal(before.target, after.target)


def test_config_defaults():
    cfg = TD3Config()
    assert (cfg.policy_delay, cfg.target_noise, cfg.target_noise_clip) == (2, 0.2, 0.5)
    assert (cfg.pi_lr, cfg.q_lr, cfg.polyak, cfg.noise_eps, cfg.random_eps) == (1e-3, 1e-3, 0.95, 0.2, 0.3)
    assert tuple(cfg.hidden) == (256, 256, 256)
    cfg.validate("td3.", num_envs=2, horizon=50)


@pytest.mark.parametrize("field, value", [
    ("policy_delay", 0), ("policy_delay", 1.5), ("target_noise", -0.1), ("target_noise_clip", -1.0),
])
def test_bad_config_value_names_the_key(field, value):
    with pytest.raises(ConfigError) as error:
        TD3Config(**{field: value}).validate("td3.", num_envs=2, horizon=50)
    message = str(error.value)
    assert f"td3.{field}" in message and repr(value) in message
    assert "\n" not in message
