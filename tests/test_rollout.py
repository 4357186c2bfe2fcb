"""``collect_episodes`` (lax.scan + vmap) against a plain Python loop over the same env, keys and policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from herjax import envs
from herjax.rollout import collect_episodes

NUM_ENVS = 2


@pytest.fixture(scope="module")
def env():
    return envs.make("fetch_reach")


def policy(obs, goal, key):
    """A goal-seeking policy with noise, so that the steps depend on obs, goal and key."""
    noise = jax.random.uniform(key, (obs.shape[0], 4), minval=-0.3, maxval=0.3)
    toward = jnp.clip(10.0 * (goal - obs[:, :3]), -1.0, 1.0)
    return jnp.concatenate([toward, jnp.zeros((obs.shape[0], 1))], axis=-1) + noise


def test_scan_equals_python_loop(env):
    key = jax.random.key(7)
    episodes, info = jax.jit(lambda k: collect_episodes(env, policy, k, NUM_ENVS))(key)
    T = env.episode_length
    assert episodes.obs.shape == (NUM_ENVS, T + 1, env.obs_dim)
    assert episodes.achieved_goal.shape == (NUM_ENVS, T + 1, 3)
    assert episodes.desired_goal.shape == (NUM_ENVS, T, 3)
    assert episodes.action.shape == (NUM_ENVS, T, 4)

    # The same key discipline, step by step on the host.
    reset_key, policy_key = jax.random.split(key)
    state = jax.jit(jax.vmap(env.reset))(jax.random.split(reset_key, NUM_ENVS))
    step = jax.jit(jax.vmap(env.step))
    obs, ag, goals, actions, returns = [], [], [], [], 0.0
    for step_key in jax.random.split(policy_key, T):
        obs.append(state.obs["observation"])
        ag.append(state.obs["achieved_goal"])
        goals.append(state.obs["desired_goal"])
        actions.append(policy(state.obs["observation"], state.obs["desired_goal"], step_key))
        state = step(state, actions[-1])
        returns = returns + state.reward
    obs.append(state.obs["observation"])
    ag.append(state.obs["achieved_goal"])
    close = lambda a, b: np.testing.assert_allclose(a, np.stack(b, axis=1), rtol=1e-5, atol=1e-5)
    close(episodes.obs, obs)
    close(episodes.achieved_goal, ag)
    close(episodes.desired_goal, goals)
    close(episodes.action, actions)
    np.testing.assert_allclose(info.episode_return, returns, atol=1e-5)
    np.testing.assert_array_equal(info.is_success, state.info["is_success"])
    # Fresh resets: the two envs pursue different goals, each fixed for its whole episode.
    assert not np.allclose(episodes.desired_goal[0, 0], episodes.desired_goal[1, 0])
    np.testing.assert_array_equal(episodes.desired_goal, np.broadcast_to(episodes.desired_goal[:, :1], goals[0].shape[:1] + (T, 3)))
    # Reach: the achieved goal is the gripper position, the observation's first three entries.
    np.testing.assert_array_equal(episodes.achieved_goal, episodes.obs[..., :3])
