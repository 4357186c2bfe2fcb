"""Inputs shared by the agent tests."""

import jax
import jax.numpy as jnp

from herjax.types import Transitions


def random_transitions(key, n, *, obs_dim, goal_dim, act_dim, obs_scale=1.0, reward=None):
    """``n`` random transitions: normal observations and goals, next observations near the observations, uniform
    actions in ``[-1, 1]``, and rewards in ``{-1, 0}`` (or all ``reward``)."""
    keys = jax.random.split(key, 6)
    obs = obs_scale * jax.random.normal(keys[0], (n, obs_dim))
    goal = jax.random.normal(keys[1], (n, goal_dim))
    return Transitions(
        obs=obs,
        next_obs=obs + 0.1 * jax.random.normal(keys[2], (n, obs_dim)),
        achieved_goal=goal,
        next_achieved_goal=goal,
        desired_goal=jax.random.normal(keys[3], (n, goal_dim)),
        action=jax.random.uniform(keys[4], (n, act_dim), minval=-1.0, maxval=1.0),
        reward=(
            -(jax.random.uniform(keys[5], (n,)) < 0.5).astype(jnp.float32)
            if reward is None
            else jnp.full((n,), reward, jnp.float32)
        ),
    )
