"""Running a policy in a batch of envs inside ``lax.scan``: the one rollout module of training, evaluation and play.

* ``collect_episodes``: whole fresh episodes. Every episode starts from a fresh ``env.reset`` with its own key (a
  fresh goal and object position) and runs exactly ``env.episode_length`` steps, as baselines'
  ``RolloutWorker.generate_rollouts`` does (off-policy training, evaluation, play). An env whose state turns
  non-finite is reset at once and its episode marked (``RolloutInfo.resets``): the off-policy loop does not store
  it, since HER relabels within whole episodes.
* ``unroll``: a fixed number of steps in auto-resetting envs (``herjax.envs.vec``), recording each step's
  successor, which is the ended episode's final observation where the time limit cut it (on-policy training).
* ``evaluate``: the deterministic policy's summaries over fresh episodes (``EvalMetrics``), for every loop.

Each is a pure, jittable function.

    policy = lambda obs, goal, key: agent.act(agent_state, obs, goal, key)
    episodes, info = collect_episodes(env, policy, key, num_envs=2)
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from herjax.envs.fetch import FetchEnv, State
from herjax.envs.wrappers import VecEnv, VecState, any_env, finite, reset_where
from herjax.types import Episodes, EvalMetrics, PolicyFn, PolicyStep, Unroll


class RolloutInfo(NamedTuple):
    """Per-episode summaries of a batch of ``B`` episodes.

    Attributes:
        is_success: ``[B]`` float, ``is_success`` after the last step (what baselines' ``success_rate``
            averages).
        episode_return: ``[B]`` float, the undiscounted sum of the env's rewards.
        final_state: the batched env ``State`` after the last step (leaves ``[B, ...]``).
        resets: ``[B]`` int32, how often each env's state turned non-finite and was reset at once; an episode
            with any is broken (its steps after the reset belong to a fresh start) and must not be learned from.
        physics: with ``record_physics=True``, the ``PhysState`` at reset and after every step (leaves
            ``[B, T+1, ...]``), e.g. to render the episodes; else ``None``.
    """

    is_success: jax.Array
    episode_return: jax.Array
    final_state: State
    resets: jax.Array
    physics: Any = None


class _Step(NamedTuple):
    """What one scan step records, each ``[B, ...]``; stacked by the scan to ``[T, B, ...]``."""

    obs: jax.Array
    achieved_goal: jax.Array
    desired_goal: jax.Array
    action: jax.Array
    reward: jax.Array


def collect_episodes(
    env: FetchEnv, policy_fn: PolicyFn, key: jax.Array, num_envs: int, *, record_physics: bool = False,
    sync_axis: Optional[str] = None,
) -> tuple[Episodes, RolloutInfo]:
    """Runs ``num_envs`` fresh episodes of ``T = env.episode_length`` steps.

    Args:
        env: a single-env ``FetchEnv`` (pure ``reset``/``step``).
        policy_fn: ``(obs [B, obs_dim], desired_goal [B, goal_dim], key) -> action [B, act_dim]``, batched and
            pure; it is called once per step with a fresh key.
        key: PRNG key for the resets and the policy's noise.
        num_envs: static batch size ``B``.
        record_physics: static; also return every step's physical state in ``info.physics``.
        sync_axis: the vmapped axis of a run's seeds, if any (``herjax.envs.wrappers.any_env``).

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

    def step(carry: tuple[State, jax.Array], step_key: jax.Array) -> tuple[tuple[State, jax.Array], _Step]:
        state, resets = carry
        obs, goal = state.obs["observation"], state.obs["desired_goal"]
        action = policy_fn(obs, goal, step_key)
        chex.assert_shape(action, (num_envs, env.action_dim))
        next_state = batch_step(state, action)
        broken = ~finite(next_state)
        # Resets drawn from a key of their own, so an episode without faults is the same with or without this.
        next_state = jax.lax.cond(
            any_env(broken, sync_axis),
            lambda s: reset_where(env, broken, s, jax.random.fold_in(step_key, 1)),
            lambda s: s,
            next_state,
        )
        record = _Step(
            obs=obs,
            achieved_goal=state.obs["achieved_goal"],
            desired_goal=goal,
            action=action.astype(obs.dtype),
            reward=next_state.reward,
        )
        return (next_state, resets + broken), (record, next_state.physics if record_physics else None)

    no_resets = jnp.zeros((num_envs,), jnp.int32)
    (final, resets), (traj, physics) = jax.lax.scan(
        step, (state, no_resets), jax.random.split(policy_key, horizon)
    )

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
        resets=resets,
        physics=jax.tree.map(with_first, physics, state.physics) if record_physics else None,
    )
    return episodes, info


def unroll(
    venv: VecEnv,
    policy_fn: Callable[[jax.Array, jax.Array, jax.Array], PolicyStep],
    env_state: VecState,
    key: jax.Array,
    length: int,
) -> tuple[VecState, Unroll]:
    """``length`` steps of a stochastic policy in a batch of auto-resetting envs.

    Args:
        venv: the batched env (``herjax.envs.vec``).
        policy_fn: ``(obs [N, o], desired_goal [N, g], key) -> PolicyStep`` (its ``action`` goes to the envs).
        env_state: the batch of ``N`` envs.
        key: PRNG key of the actions.
        length: static ``T``.

    Returns:
        ``(env_state, Unroll [T, N])``.
    """
    env = venv.env

    def step(vstate: VecState, key: jax.Array) -> tuple[VecState, Unroll]:
        obs, goal = vstate.env.obs["observation"], vstate.env.obs["desired_goal"]
        policy_step = policy_fn(obs, goal, key)
        nxt = venv.step(vstate, policy_step.action)
        final = nxt.final_obs
        truncated = nxt.truncated
        # After an auto-reset, nxt.env holds the new episode; the step's own reward is that of its final
        # observation (Fetch's step reward is exactly compute_reward(achieved_goal, desired_goal)).
        reward = jnp.where(truncated, env.compute_reward(final["achieved_goal"], final["desired_goal"]), nxt.env.reward)
        terminated = jnp.where(truncated, 0.0, nxt.env.done)
        record = Unroll(
            obs=obs, goal=goal, step=policy_step, reward=reward, terminated=terminated,
            truncated=truncated.astype(reward.dtype), next_obs=final["observation"], next_goal=final["desired_goal"],
            final_success=nxt.final_info["is_success"], nonfinite=nxt.nonfinite.astype(reward.dtype),
        )
        return nxt, record

    return jax.lax.scan(step, env_state, jax.random.split(key, length))


def evaluate(
    env: FetchEnv,
    policy_fn: PolicyFn,
    value_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array],
    key: jax.Array,
    num_episodes: int,
    sync_axis: Optional[str] = None,
) -> EvalMetrics:
    """``num_episodes`` fresh episodes of a deterministic policy, run as one batch.

    Args:
        env: the env.
        policy_fn: the deterministic policy (its key argument is unused).
        value_fn: ``(obs [B, T, o], desired_goal [B, T, g], action [B, T, A]) -> values``, the agent's value of
            every step (the recorded actions are the policy's own); ``EvalMetrics.mean_q`` is their mean.
        key: PRNG key of the resets.
        num_episodes: static batch size.
        sync_axis: the vmapped axis of a run's seeds, if any (``herjax.envs.wrappers.any_env``).
    """
    episodes, info = collect_episodes(env, policy_fn, key, num_episodes, sync_axis=sync_axis)
    values = value_fn(episodes.obs[:, : env.episode_length], episodes.desired_goal, episodes.action)
    return EvalMetrics(
        success_rate=jnp.mean(info.is_success),
        mean_q=jnp.mean(values),
        episode_return=jnp.mean(info.episode_return),
    )
