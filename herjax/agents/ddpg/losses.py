"""DDPG's losses (baselines ``her/ddpg.py``), standalone functions of parameters and normalised batches."""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp

ActorApply = Callable[[chex.ArrayTree, jax.Array, jax.Array], jax.Array]
CriticApply = Callable[[chex.ArrayTree, jax.Array, jax.Array, jax.Array], jax.Array]


class CriticAux(NamedTuple):
    """Side outputs of ``critic_loss``: ``q [N]`` and ``target_q [N]``."""

    q: jax.Array
    target_q: jax.Array


def td_target(reward: jax.Array, next_q: jax.Array, *, gamma: float, clip_return: float) -> jax.Array:
    """Clipped one-step target ``clip(r + gamma * next_q, -clip_return, 0)``.

    No terminal mask: goal-conditioned episodes end by time limit only, as in baselines. The upper clip at 0
    holds because rewards are in ``{-1, 0}``.

    Args:
        reward: ``[N]`` rewards.
        next_q: ``[N]`` target-network values at the next state.
        gamma: discount.
        clip_return: magnitude of the lower clip.

    Returns:
        ``[N]`` targets.
    """
    return jnp.clip(reward + gamma * next_q, -clip_return, 0.0)


def critic_loss(
    critic_params: chex.ArrayTree,
    target_actor_params: chex.ArrayTree,
    target_critic_params: chex.ArrayTree,
    obs: jax.Array,
    goal: jax.Array,
    action: jax.Array,
    reward: jax.Array,
    next_obs: jax.Array,
    *,
    actor_apply: ActorApply,
    critic_apply: CriticApply,
    gamma: float,
    clip_return: float,
) -> tuple[jax.Array, CriticAux]:
    """Mean squared TD error of the online critic.

    Args:
        critic_params: online critic parameters (differentiated).
        target_actor_params: target actor parameters.
        target_critic_params: target critic parameters.
        obs: ``[N, obs_dim]`` normalised observations.
        goal: ``[N, goal_dim]`` normalised goals (also the next goal: a goal is fixed within an episode).
        action: ``[N, act_dim]`` actions taken.
        reward: ``[N]`` rewards.
        next_obs: ``[N, obs_dim]`` normalised next observations.
        actor_apply: ``(params, obs, goal) -> [N, act_dim]``.
        critic_apply: ``(params, obs, goal, action) -> [N]``.
        gamma: discount.
        clip_return: magnitude of the lower target clip.

    Returns:
        ``([] loss, CriticAux)``.
    """
    next_action = actor_apply(target_actor_params, next_obs, goal)
    next_q = critic_apply(target_critic_params, next_obs, goal, next_action)
    target_q = jax.lax.stop_gradient(td_target(reward, next_q, gamma=gamma, clip_return=clip_return))
    q = critic_apply(critic_params, obs, goal, action)
    loss = jnp.mean(jnp.square(target_q - q))
    return loss, CriticAux(q=q, target_q=target_q)


def actor_loss(
    actor_params: chex.ArrayTree,
    critic_params: chex.ArrayTree,
    obs: jax.Array,
    goal: jax.Array,
    *,
    actor_apply: ActorApply,
    critic_apply: CriticApply,
    action_l2: float,
    max_u: float,
) -> jax.Array:
    """``-mean Q(o, g, pi(o, g)) + action_l2 * mean((pi / max_u)^2)``.

    Args:
        actor_params: online actor parameters (differentiated).
        critic_params: online critic parameters (held fixed by the caller's grad).
        obs: ``[N, obs_dim]`` normalised observations.
        goal: ``[N, goal_dim]`` normalised goals.
        actor_apply: ``(params, obs, goal) -> [N, act_dim]``.
        critic_apply: ``(params, obs, goal, action) -> [N]``.
        action_l2: weight of the action penalty.
        max_u: action bound.

    Returns:
        ``[]`` loss; the penalty is averaged over all ``N * act_dim`` entries.
    """
    pi = actor_apply(actor_params, obs, goal)
    q_pi = critic_apply(critic_params, obs, goal, pi)
    return -jnp.mean(q_pi) + action_l2 * jnp.mean(jnp.square(pi / max_u))
