"""Batching, auto-reset, and the reset of envs whose state turned non-finite.

Physics can blow up (NaN or infinite positions and velocities) under extreme actions, MJX with a small solver
budget more so. ``finite`` tells which envs of a batch did; ``reset_where`` replaces them with fresh resets. Both
rollouts (``herjax.rollout``) reset such an env at once, so no non-finite number reaches a buffer, a normaliser
or an update.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
from flax import struct

from herjax.envs.fetch import FetchEnv, State


def finite(state: State) -> jax.Array:
    """Whether each env of ``state`` holds only finite numbers (its physics and observations).

    Returns ``[]`` bool for one env's ``State``, ``[B]`` for a batch (leaves ``[B, ...]``).
    """
    batch_ndim = jnp.ndim(state.reward)
    leaves = jax.tree.leaves((state.physics, state.obs))
    per_leaf = [jnp.all(jnp.isfinite(x), axis=tuple(range(batch_ndim, x.ndim))) for x in leaves]
    return functools.reduce(jnp.logical_and, per_leaf)


def _select(mask: jax.Array, new, old):
    """Per env: the leaves of ``new`` where ``mask [B]`` is True, else those of ``old`` (a select, so whatever the
    unselected side holds, NaN included, never reaches the result)."""
    pick = lambda n, o: jnp.where(mask.reshape((-1,) + (1,) * (o.ndim - 1)), n, o)
    return jax.tree.map(pick, new, old)


def any_env(mask: jax.Array, sync_axis: Optional[str] = None) -> jax.Array:
    """Whether any entry of ``mask`` is True: ``[]`` bool, the predicate of the rollouts' ``lax.cond`` reset passes.

    With ``sync_axis`` (the ``jax.vmap`` axis of a run's seeds, ``herjax.loops.sharding.SEEDS``) it is also taken
    over every seed: a predicate that varies along a vmapped axis turns ``lax.cond`` into a select that runs the
    reset pass on every step; one shared across the axis keeps it a branch.
    """
    hit = jnp.any(mask)
    if sync_axis is None:
        return hit
    return jax.lax.psum(hit.astype(jnp.int32), sync_axis) > 0


def reset_where(env: FetchEnv, mask: jax.Array, state: State, key: jax.Array) -> State:
    """``state`` (a batch of ``B``) with the envs where ``mask [B]`` is True replaced by fresh resets, each from its
    own key drawn from ``key``."""
    return _select(mask, jax.vmap(env.reset)(jax.random.split(key, mask.shape[0])), state)


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
        nonfinite: ``[N]`` bool, the last step left the env non-finite: it was reset at once, and the episode
            ended (``truncated``) at its last finite observation, which ``final_obs`` holds.
    """

    env: State
    t: jax.Array
    key: jax.Array
    truncated: jax.Array
    final_obs: dict
    final_info: dict
    nonfinite: jax.Array


class VecEnv(NamedTuple):
    """``reset(key) -> VecState`` and ``step(state, action [N, 4]) -> VecState``, both pure."""

    reset: Callable[[jax.Array], VecState]
    step: Callable[[VecState, jax.Array], VecState]
    env: FetchEnv
    num_envs: int


def vec(env: FetchEnv, num_envs: int, sync_axis: Optional[str] = None) -> VecEnv:
    """Batches ``env`` over ``num_envs`` with auto-reset after ``env.episode_length`` steps.

    ``sync_axis``: the vmapped axis of a run's seeds, if any (``any_env``).

    Every reset draws a fresh object position and goal from its own key (never a cached first state), so HER
    sees as many goals as episodes. An env whose step leaves it non-finite (``finite``) is reset at once too; its
    episode ends there, as if by the time limit, at the last finite observation.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    batch_reset = jax.vmap(env.reset)
    batch_step = jax.vmap(env.step)
    no_env = jnp.zeros((num_envs,), bool)

    def reset(key: jax.Array) -> VecState:
        key, key_reset = jax.random.split(key)
        state = batch_reset(jax.random.split(key_reset, num_envs))
        return VecState(
            env=state,
            t=jnp.zeros((num_envs,), jnp.int32),
            key=key,
            truncated=no_env,
            final_obs=state.obs,
            final_info=state.info,
            nonfinite=no_env,
        )

    def step(vstate: VecState, action: jax.Array) -> VecState:
        stepped = batch_step(vstate.env, action)
        t = vstate.t + 1
        broken = ~finite(stepped)
        truncated = (t >= env.episode_length) | broken
        key, key_reset = jax.random.split(vstate.key)
        # Envs usually end together, so the reset pass runs only on the steps that end episodes.
        state = jax.lax.cond(
            any_env(truncated, sync_axis), lambda s: reset_where(env, truncated, s, key_reset), lambda s: s, stepped
        )
        # A broken step's episode ends at its last finite observation.
        final_obs, final_info = _select(broken, (vstate.env.obs, vstate.env.info), (stepped.obs, stepped.info))
        return VecState(
            env=state,
            t=jnp.where(truncated, 0, t),
            key=key,
            truncated=truncated,
            final_obs=final_obs,
            final_info=final_info,
            nonfinite=broken,
        )

    return VecEnv(reset=reset, step=step, env=env, num_envs=num_envs)
