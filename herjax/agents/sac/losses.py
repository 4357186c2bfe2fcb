"""SAC's losses (Haarnoja et al. 2018, automatic entropy tuning), standalone functions of parameters and
normalised batches. The policy enters only through ``policy_sample``, a reparameterised sampler, and the twin
critics through ``critic_apply``, so each loss can be checked with stubs of known output."""

from __future__ import annotations

from typing import Callable, Optional

import chex
import jax
import jax.numpy as jnp

from herjax.agents.ddpg.losses import CriticAux, regression_loss, td_target

PolicySample = Callable[[chex.ArrayTree, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
"""``(params, obs [N, o], goal [N, g], key) -> (action [N, A], log_prob [N])``, differentiable in ``params``."""

DoubleCriticApply = Callable[[chex.ArrayTree, jax.Array, jax.Array, jax.Array], jax.Array]
"""``(params, obs [N, o], goal [N, g], action [N, A]) -> [n_critics, N]`` Q-values."""


def critic_loss(
    critic_params: chex.ArrayTree,
    policy_params: chex.ArrayTree,
    target_critic_params: chex.ArrayTree,
    alpha: jax.Array,
    obs: jax.Array,
    goal: jax.Array,
    action: jax.Array,
    reward: jax.Array,
    next_obs: jax.Array,
    key: jax.Array,
    *,
    policy_sample: PolicySample,
    critic_apply: DoubleCriticApply,
    gamma: float,
    clip_return: float,
    weight: Optional[jax.Array] = None,
    huber: bool = False,
) -> tuple[jax.Array, CriticAux]:
    """Summed mean squared soft TD errors of the twin critics (``regression_loss``: optionally weighted, or Huber).

    The target is ``clip(r + gamma * (min_i Q'_i(o2, g, a2) - alpha * log pi(a2 | o2, g)), -clip_return, 0)`` with
    ``a2`` sampled from the current policy at ``o2`` (SAC keeps no target actor), held fixed.

    Args:
        critic_params: online twin-critic parameters (differentiated).
        policy_params: current policy parameters.
        target_critic_params: target twin-critic parameters.
        alpha: ``[]`` entropy temperature.
        obs: ``[N, obs_dim]`` normalised observations.
        goal: ``[N, goal_dim]`` normalised goals (also the next goal).
        action: ``[N, act_dim]`` actions taken.
        reward: ``[N]`` rewards.
        next_obs: ``[N, obs_dim]`` normalised next observations.
        key: PRNG key of the next-action sample.
        policy_sample: the reparameterised policy sampler.
        critic_apply: the twin critics.
        gamma: discount.
        clip_return: magnitude of the lower target clip.
        weight: ``[N]`` importance weights of the samples, or ``None`` (all 1).
        huber: the Huber loss instead of the squared error.

    Returns:
        ``([] loss, CriticAux)`` with ``q`` the first critic's ``[N]`` values and ``td_error`` the larger
        ``|target_q - q|`` of the two critics.
    """
    next_action, next_log_prob = policy_sample(policy_params, next_obs, goal, key)
    next_q = jnp.min(critic_apply(target_critic_params, next_obs, goal, next_action), axis=0)
    soft_next_q = next_q - alpha * next_log_prob
    target_q = jax.lax.stop_gradient(td_target(reward, soft_next_q, gamma=gamma, clip_return=clip_return))
    q = critic_apply(critic_params, obs, goal, action)
    loss = jnp.sum(regression_loss(target_q - q, weight, huber=huber))
    td_error = jax.lax.stop_gradient(jnp.max(jnp.abs(target_q - q), axis=0))
    return loss, CriticAux(q=q[0], target_q=target_q, td_error=td_error)


def actor_loss(
    policy_params: chex.ArrayTree,
    critic_params: chex.ArrayTree,
    alpha: jax.Array,
    obs: jax.Array,
    goal: jax.Array,
    key: jax.Array,
    *,
    policy_sample: PolicySample,
    critic_apply: DoubleCriticApply,
) -> tuple[jax.Array, jax.Array]:
    """``mean(alpha * log pi(a | o, g) - min_i Q_i(o, g, a))`` with ``a`` a reparameterised sample.

    Args:
        policy_params: policy parameters (differentiated).
        critic_params: online twin-critic parameters (held fixed by the caller's grad).
        alpha: ``[]`` entropy temperature (a constant here).
        obs: ``[N, obs_dim]`` normalised observations.
        goal: ``[N, goal_dim]`` normalised goals.
        key: PRNG key of the action sample.
        policy_sample: the reparameterised policy sampler.
        critic_apply: the twin critics.

    Returns:
        ``([] loss, log_prob [N])``: the sample's log-probabilities, for ``alpha_loss`` and the entropy metric.
    """
    pi, log_prob = policy_sample(policy_params, obs, goal, key)
    q_pi = jnp.min(critic_apply(critic_params, obs, goal, pi), axis=0)
    return jnp.mean(alpha * log_prob - q_pi), log_prob


def alpha_loss(log_alpha: jax.Array, log_prob: jax.Array, *, target_entropy: float) -> jax.Array:
    """``-mean(log_alpha * (log pi + target_entropy))``, the log-probabilities held fixed.

    Its gradient ``-mean(log pi) - target_entropy`` is the entropy estimate's excess over the target, so a descent
    step lowers ``alpha`` while the policy is more random than wanted and raises it while it is less.

    Args:
        log_alpha: ``[]`` log temperature (differentiated).
        log_prob: ``[N]`` log-probabilities of policy samples.
        target_entropy: the entropy to steer to.

    Returns:
        ``[]`` loss.
    """
    return -jnp.mean(log_alpha * jax.lax.stop_gradient(log_prob + target_entropy))
