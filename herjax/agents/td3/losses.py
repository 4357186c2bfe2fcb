"""TD3's critic loss (Fujimoto et al. 2018) for goal-conditioned tasks, standalone functions of parameters and
normalised batches.

TD3 keeps DDPG's actor loss (``herjax.agents.ddpg.losses.actor_loss``), taken on the first critic only
(``first_critic``); what changes is the critic: two of them, each regressed on one target built from the smaller
of the two target critics, at a target action smoothed by clipped noise.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from herjax.agents.ddpg.losses import ActorApply, CriticApply, regression_loss, td_target

DoubleCriticApply = Callable[[chex.ArrayTree, jax.Array, jax.Array, jax.Array], jax.Array]
"""``(params, obs [N, obs_dim], goal [N, goal_dim], action [N, act_dim]) -> [n_critics, N]``."""


class TwinCriticAux(NamedTuple):
    """Side outputs of ``twin_critic_loss``: every critic's ``q [n_critics, N]``, the shared ``target_q [N]`` and
    ``td_error [N]``, the largest ``|target_q - q|`` over the critics (the priority of prioritised replay, as
    Fujimoto et al. 2020 take it for TD3)."""

    q: jax.Array
    target_q: jax.Array
    td_error: jax.Array


def first_critic(critic_apply: DoubleCriticApply) -> CriticApply:
    """The first critic alone, ``(params, obs, goal, action) -> [N]``: TD3 trains its actor on ``Q1``."""
    return lambda params, obs, goal, action: critic_apply(params, obs, goal, action)[0]


def smoothed_target_action(
    action: jax.Array, key: jax.Array, *, max_u: float, target_noise: float, target_noise_clip: float
) -> jax.Array:
    """Target policy smoothing: ``clip(a + clip(eps, -c * max_u, c * max_u), -max_u, max_u)``.

    Args:
        action: ``[N, act_dim]`` target actor's actions ``pi'(o2, g)``.
        key: PRNG key of the noise ``eps ~ N(0, (target_noise * max_u)^2)``, drawn per entry.
        max_u: action bound.
        target_noise: noise std in units of ``max_u``.
        target_noise_clip: ``c``, the noise bound in units of ``max_u``.

    Returns:
        ``[N, act_dim]`` smoothed actions in ``[-max_u, max_u]``.
    """
    noise = target_noise * max_u * jax.random.normal(key, action.shape, action.dtype)
    noise = jnp.clip(noise, -target_noise_clip * max_u, target_noise_clip * max_u)
    return jnp.clip(action + noise, -max_u, max_u)


def twin_critic_loss(
    critic_params: chex.ArrayTree,
    target_actor_params: chex.ArrayTree,
    target_critic_params: chex.ArrayTree,
    obs: jax.Array, goal: jax.Array, action: jax.Array, reward: jax.Array, next_obs: jax.Array,
    key: jax.Array,
    *,
    actor_apply: ActorApply,
    critic_apply: DoubleCriticApply,
    gamma: float,
    clip_return: float,
    max_u: float,
    target_noise: float,
    target_noise_clip: float,
    weight: Optional[jax.Array] = None,
    huber: bool = False,
) -> tuple[jax.Array, TwinCriticAux]:
    """Clipped double-Q loss: the sum over the critics of each one's mean squared error to one shared target.

    The target is ``td_target(r, min_i Q'_i(o2, g, a'), gamma, clip_return)`` without gradient, where ``a'`` is
    ``smoothed_target_action(pi'(o2, g), key)``. The loss is ``sum_i mean_N (Q_i(o, g, u) - y)^2``, as
    Fujimoto's and SB3's ``mse(Q1, y) + mse(Q2, y)``: each critic gets the gradient DDPG's ``critic_loss`` would
    give a single critic.

    Args:
        critic_params: online parameters of all critics, the ones differentiated.
        target_actor_params: parameters of the target actor ``pi'``.
        target_critic_params: parameters of all target critics ``Q'_i``.
        obs: ``[N, obs_dim]`` normalised ``o``.
        goal: ``[N, goal_dim]`` normalised ``g``, the goal of both ``o`` and ``o2``.
        action: ``[N, act_dim]`` the action ``u`` taken at ``o``.
        reward: ``[N]`` ``r``.
        next_obs: ``[N, obs_dim]`` normalised ``o2``.
        key: PRNG key of the smoothing noise.
        actor_apply: ``(params, obs, goal) -> [N, act_dim]``.
        critic_apply: ``(params, obs, goal, action) -> [n_critics, N]``.
        gamma: discount.
        clip_return: magnitude of the lower target clip.
        max_u: action bound.
        target_noise: smoothing noise std, in units of ``max_u``.
        target_noise_clip: smoothing noise bound, in units of ``max_u``.
        weight: ``[N]`` importance weights of the samples, or ``None`` (all 1).
        huber: the Huber loss instead of the squared error (``regression_loss``).

    Returns:
        ``([] loss, TwinCriticAux)``.
    """
    next_action = smoothed_target_action(
        actor_apply(target_actor_params, next_obs, goal), key,
        max_u=max_u, target_noise=target_noise, target_noise_clip=target_noise_clip,
    )
    next_q = jnp.min(critic_apply(target_critic_params, next_obs, goal, next_action), axis=0)
    target_q = jax.lax.stop_gradient(td_target(reward, next_q, gamma=gamma, clip_return=clip_return))
    q = critic_apply(critic_params, obs, goal, action)
    loss = jnp.sum(regression_loss(target_q - q, weight, huber=huber))
    td_error = jax.lax.stop_gradient(jnp.max(jnp.abs(target_q - q), axis=0))
    return loss, TwinCriticAux(q=q, target_q=target_q, td_error=td_error)
