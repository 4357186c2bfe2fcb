"""Whole episodes of a policy in a batch of envs: the one rollout shared by training, evaluation and play.

Every episode starts from a fresh ``env.reset`` with its own key (a fresh goal and object position) and runs
exactly ``env.episode_length`` steps, as baselines' ``RolloutWorker.generate_rollouts`` does. The steps run inside
``lax.scan`` with ``jax.vmap`` over envs, so the whole call is one pure, jittable function.

    policy = lambda obs, goal, key: agent.act(agent_state, obs, goal, key)
    episodes, info = collect_episodes(env, policy, key, num_envs=2)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

from herjax.envs.fetch import FetchEnv, State
from herjax.replay.her import Episodes

PolicyFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


class RolloutInfo(NamedTuple):
    """Per-episode summaries of a batch of ``B`` episodes.

    Attributes:
        is_success: ``[B]`` float, ``is_success`` after the last step (what baselines' ``success_rate``
            averages).
        episode_return: ``[B]`` float, the undiscounted sum of the env's rewards.
        final_state: the batched env ``State`` after the last step (leaves ``[B, ...]``).
        physics: with ``record_physics=True``, the ``PhysState`` at reset and after every step (leaves
            ``[B, T+1, ...]``), e.g. to render the episodes; else ``None``.
    """

    is_success: jax.Array
    episode_return: jax.Array
    final_state: State
    physics: Any = None


class _Step(NamedTuple):
    """What one scan step records, each ``[B, ...]``; stacked by the scan to ``[T, B, ...]``."""

    obs: jax.Array
    achieved_goal: jax.Array
    desired_goal: jax.Array
    action: jax.Array
    reward: jax.Array


def collect_episodes(
    env: FetchEnv, policy_fn: PolicyFn, key: jax.Array, num_envs: int, *, record_physics: bool = False
) -> tuple[Episodes, RolloutInfo]:
    """Runs ``num_envs`` fresh episodes of ``T = env.episode_length`` steps.

    Args:
        env: a single-env ``FetchEnv`` (pure ``reset``/``step``).
        policy_fn: ``(obs [B, obs_dim], desired_goal [B, goal_dim], key) -> action [B, act_dim]``, batched and
            pure; it is called once per step with a fresh key.
        key: PRNG key for the resets and the policy's noise.
        num_envs: static batch size ``B``.
        record_physics: static; also return every step's physical state in ``info.physics``.

    Returns:
        ``(episodes, info)``: ``Episodes`` with ``obs [B, T+1, obs_dim]``, ``achieved_goal [B, T+1, goal_dim]``,
        ``desired_goal [B, T, goal_dim]``, ``action [B, T, act_dim]``; and ``RolloutInfo``.
    """
    if num_envs < 1:
        raise ValueError(f"num_envs must be >= 1, got {num_envs}")
    horizon = env.episode_length
    reset_key, policy_key = jax.random.split(key)
    state = jax.vmap(env.reset)(jax.random.split(reset_key, num_envs))
    batch_step = jax.vmap(env.step)

    def step(state: State, step_key: jax.Array) -> tuple[State, _Step]:
        obs, goal = state.obs["observation"], state.obs["desired_goal"]
        action = policy_fn(obs, goal, step_key)
        chex.assert_shape(action, (num_envs, env.action_dim))
        next_state = batch_step(state, action)
        record = _Step(
            obs=obs,
            achieved_goal=state.obs["achieved_goal"],
            desired_goal=goal,
            action=action.astype(obs.dtype),
            reward=next_state.reward,
        )
        return next_state, (record, next_state.physics if record_physics else None)

    final, (traj, physics) = jax.lax.scan(step, state, jax.random.split(policy_key, horizon))

    def with_last(stepped: jax.Array, last: jax.Array) -> jax.Array:
        # [T, B, d] + [B, d] -> [B, T+1, d]: the observation after the last action closes the episode.
        return jnp.swapaxes(jnp.concatenate([stepped, last[None]], axis=0), 0, 1)

    def with_first(stepped: jax.Array, first: jax.Array) -> jax.Array:
        # [T, B, ...] after each step + [B, ...] at reset -> [B, T+1, ...].
        return jnp.swapaxes(jnp.concatenate([first[None], stepped], axis=0), 0, 1)

    episodes = Episodes(
        obs=with_last(traj.obs, final.obs["observation"]),
        achieved_goal=with_last(traj.achieved_goal, final.obs["achieved_goal"]),
        desired_goal=jnp.swapaxes(traj.desired_goal, 0, 1),
        action=jnp.swapaxes(traj.action, 0, 1),
    )
    info = RolloutInfo(
        is_success=final.info["is_success"],
        episode_return=jnp.sum(traj.reward, axis=0),
        final_state=final,
        physics=jax.tree.map(with_first, physics, state.physics) if record_physics else None,
    )
    return episodes, info
