"""Batching and auto-reset for training."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from herjax.envs.fetch import FetchEnv, State


@struct.dataclass
class VecState:
    """A batch of ``N`` envs.

    Attributes:
        env: the batched env ``State`` (leaves ``[N, ...]``); after an auto-reset it holds the new episode.
        t: ``[N]`` int32, steps taken in the current episode.
        key: the PRNG key that the next resets draw from.
        truncated: ``[N]`` bool, the last step ended an episode by the time limit.
        final_obs: the observation dict at the end of the episode that the last step ended (equal to
            ``env.obs`` where ``truncated`` is False).
        final_info: ``is_success`` at the end of that episode.
    """

    env: State
    t: jax.Array
    key: jax.Array
    truncated: jax.Array
    final_obs: dict
    final_info: dict


class VecEnv(NamedTuple):
    """``reset(key) -> VecState`` and ``step(state, action [N, 4]) -> VecState``, both pure."""

    reset: Callable[[jax.Array], VecState]
    step: Callable[[VecState, jax.Array], VecState]
    env: FetchEnv
    num_envs: int


def vec(env: FetchEnv, num_envs: int) -> VecEnv:
    """Batches ``env`` over ``num_envs`` with auto-reset after ``env.episode_length`` steps.

    Every reset draws a fresh object position and goal from its own key (never a cached first state), so HER
    sees as many goals as episodes.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    batch_reset = jax.vmap(env.reset)
    batch_step = jax.vmap(env.step)

    def reset(key: jax.Array) -> VecState:
        key, key_reset = jax.random.split(key)
        state = batch_reset(jax.random.split(key_reset, num_envs))
        return VecState(
            env=state,
            t=jnp.zeros((num_envs,), jnp.int32),
            key=key,
            truncated=jnp.zeros((num_envs,), bool),
            final_obs=state.obs,
            final_info=state.info,
        )

    def step(vstate: VecState, action: jax.Array) -> VecState:
        stepped = batch_step(vstate.env, action)
        t = vstate.t + 1
        truncated = t >= env.episode_length
        key, key_reset = jax.random.split(vstate.key)

        def with_resets(stepped: State) -> State:
            fresh = batch_reset(jax.random.split(key_reset, num_envs))
            pick = lambda new, old: jnp.where(truncated.reshape((-1,) + (1,) * (old.ndim - 1)), new, old)
            return jax.tree.map(pick, fresh, stepped)

        # Envs usually end together, so the reset pass runs only on the steps that end episodes.
        state = jax.lax.cond(jnp.any(truncated), with_resets, lambda s: s, stepped)
        return VecState(
            env=state,
            t=jnp.where(truncated, 0, t),
            key=key,
            truncated=truncated,
            final_obs=stepped.obs,
            final_info=stepped.info,
        )

    return VecEnv(reset=reset, step=step, env=env, num_envs=num_envs)
