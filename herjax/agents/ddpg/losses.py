"""DDPG's losses (baselines ``her/ddpg.py``), standalone functions of parameters and normalised batches."""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import optax

ActorApply = Callable[[chex.ArrayTree, jax.Array, jax.Array], jax.Array]
CriticApply = Callable[[chex.ArrayTree, jax.Array, jax.Array, jax.Array], jax.Array]


class CriticAux(NamedTuple):
    """Side outputs of ``critic_loss``: ``q [N]``, ``target_q [N]`` and ``td_error [N]``, ``|target_q - q|`` (the
    largest over the critics where there are several): prioritised replay's new priorities."""

    q: jax.Array
    target_q: jax.Array
    td_error: jax.Array


class ActorAux(NamedTuple):
    """Side outputs of ``demo_actor_loss``, each ``[]``: ``bc_loss``, the summed cloning error it counted, and
    ``bc_kept``, the fraction of the batch's demo samples it counted (the Q-filter's pass rate; 1 without it)."""

    bc_loss: jax.Array
    bc_kept: jax.Array


def regression_loss(error: jax.Array, weight: Optional[jax.Array] = None, *, huber: bool = False) -> jax.Array:
    """The mean over the last axis of each sample's squared error ``d^2`` (or Huber loss), optionally weighted.

    Args:
        error: ``[..., N]`` TD errors ``d`` (targets minus predictions).
        weight: ``[N]`` per-sample weights (prioritised replay's importance weights), or ``None``.
        huber: ``0.5 * d^2`` for ``|d| <= 1`` and ``|d| - 0.5`` beyond (``optax.losses.huber_loss``, delta 1).

    Returns:
        ``[...]``: ``mean_n w_n * loss(d_n)``.
    """
    per_sample = optax.losses.huber_loss(error) if huber else jnp.square(error)
    if weight is not None:
        per_sample = weight * per_sample
    return jnp.mean(per_sample, axis=-1)


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
    weight: Optional[jax.Array] = None,
    huber: bool = False,
) -> tuple[jax.Array, CriticAux]:
    """Mean squared TD error of the online critic (``regression_loss``: optionally weighted, or Huber).

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
        weight: ``[N]`` importance weights of the samples, or ``None`` (all 1).
        huber: the Huber loss instead of the squared error.

    Returns:
        ``([] loss, CriticAux)``.
    """
    next_action = actor_apply(target_actor_params, next_obs, goal)
    next_q = critic_apply(target_critic_params, next_obs, goal, next_action)
    target_q = jax.lax.stop_gradient(td_target(reward, next_q, gamma=gamma, clip_return=clip_return))
    q = critic_apply(critic_params, obs, goal, action)
    loss = regression_loss(target_q - q, weight, huber=huber)
    return loss, CriticAux(q=q, target_q=target_q, td_error=jax.lax.stop_gradient(jnp.abs(target_q - q)))


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


def cloning_mask(is_demo: jax.Array, q_demo: jax.Array, q_pi: jax.Array, *, q_filter: bool) -> jax.Array:
    """``[N]`` bool: the samples whose action the actor clones: the demo samples, and with ``q_filter`` only those
    where the critic rates the demo action above the policy's, ``Q(s, a_demo) > Q(s, pi(s))`` (Nair et al.)."""
    return is_demo & (q_demo > q_pi) if q_filter else is_demo


def demo_actor_loss(
    actor_params: chex.ArrayTree,
    critic_params: chex.ArrayTree,
    obs: jax.Array,
    goal: jax.Array,
    action: jax.Array,
    is_demo: jax.Array,
    *,
    actor_apply: ActorApply,
    critic_apply: CriticApply,
    action_l2: float,
    max_u: float,
    prm_loss_weight: float,
    aux_loss_weight: float,
    q_filter: bool,
) -> tuple[jax.Array, ActorAux]:
    """Nair et al. (2018)'s actor loss: DDPG's, scaled, plus behaviour cloning of the demo samples.

    ``prm_loss_weight * (-mean Q(o, g, pi) + action_l2 * mean((pi / max_u)^2)) + aux_loss_weight * sum_i m_i *
    ||pi_i - a_i||^2``, the means over all ``N`` samples and the sum over the mask ``m = cloning_mask(...)`` and the
    action entries, as their code has it. The mask is held fixed (no gradient flows through the Q-filter's
    comparison); both critic values come from ``critic_params``.

    Args:
        actor_params: online actor parameters (differentiated).
        critic_params: online critic parameters (held fixed by the caller's grad).
        obs: ``[N, obs_dim]`` normalised observations.
        goal: ``[N, goal_dim]`` normalised goals.
        action: ``[N, act_dim]`` the batch's actions (the demonstrator's on demo samples).
        is_demo: ``[N]`` bool, the demo samples.
        actor_apply: ``(params, obs, goal) -> [N, act_dim]``.
        critic_apply: ``(params, obs, goal, action) -> [N]``.
        action_l2: weight of the action penalty.
        max_u: action bound.
        prm_loss_weight: weight of DDPG's actor loss.
        aux_loss_weight: weight of the cloning error.
        q_filter: clone only where ``Q(s, a_demo) > Q(s, pi(s))``.

    Returns:
        ``([] loss, ActorAux)``.
    """
    pi = actor_apply(actor_params, obs, goal)
    q_pi = critic_apply(critic_params, obs, goal, pi)
    rl_loss = -jnp.mean(q_pi) + action_l2 * jnp.mean(jnp.square(pi / max_u))
    q_demo = critic_apply(critic_params, obs, goal, action)
    mask = jax.lax.stop_gradient(cloning_mask(is_demo, q_demo, q_pi, q_filter=q_filter))
    bc_loss = jnp.sum(jnp.where(mask[:, None], jnp.square(pi - action), 0.0))
    kept = jnp.sum(mask) / jnp.maximum(jnp.sum(is_demo), 1)
    return prm_loss_weight * rl_loss + aux_loss_weight * bc_loss, ActorAux(bc_loss=bc_loss, bc_kept=kept)
