"""PPO's losses and their parts (``ppo2`` semantics; see ``herjax.agents.ppo.agent`` for where and why herjax
differs): the squashed-Gaussian densities, the clipped surrogate, GAE, advantage standardisation and the
layout-independent minibatches."""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp

from herjax.agents.common.collectives import pmean

_LOG_2PI = math.log(2.0 * math.pi)


def tanh_log_det_jacobian(raw_action: jax.Array) -> jax.Array:
    """``sum_i log(1 - tanh(u_i)^2)`` over the last axis, computed stably as ``2 (log 2 - u - softplus(-2u))``."""
    u = raw_action
    return jnp.sum(2.0 * (math.log(2.0) - u - jax.nn.softplus(-2.0 * u)), axis=-1)


def gaussian_log_prob(raw_action: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """``sum_i log N(u_i; mu_i, exp(log_std_i)^2)`` over the last axis: ``[..., A] -> [...]``."""
    z = (raw_action - mean) * jnp.exp(-log_std)
    return jnp.sum(-0.5 * jnp.square(z) - log_std - 0.5 * _LOG_2PI, axis=-1)


def tanh_gaussian_log_prob(raw_action: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """Log density of ``a = tanh(u)`` at the pre-tanh sample ``u``: ``[..., A] -> [...]``.

    ``log pi(a) = log N(u; mu, sigma) - sum_i log(1 - tanh(u_i)^2)`` (change of variables ``a = tanh(u)``).
    """
    return gaussian_log_prob(raw_action, mean, log_std) - tanh_log_det_jacobian(raw_action)


def tanh_gaussian_entropy(mean: jax.Array, log_std: jax.Array, noise: jax.Array) -> jax.Array:
    """One-sample unbiased estimate of the entropy of ``tanh(N(mu, sigma))``: ``[..., A] -> [...]``.

    ``H[tanh(U)] = H[U] + E[sum_i log(1 - tanh(U_i)^2)]``; the expectation is taken at the single reparameterised
    sample ``u = mu + sigma * noise``.
    """
    gaussian = jnp.sum(log_std + 0.5 * (_LOG_2PI + 1.0), axis=-1)
    return gaussian + tanh_log_det_jacobian(mean + jnp.exp(log_std) * noise)



class PPOParams(NamedTuple):
    """Parameters of the policy (mean MLP and log-std) and of the value MLP."""

    policy: chex.ArrayTree
    value: chex.ArrayTree


class LossInputs(NamedTuple):
    """One minibatch as the loss sees it; every leaf is ``[B, ...]``.

    Attributes:
        x: ``[B, obs_dim + goal_dim]`` normalised network inputs ``[o_norm, g_norm]``.
        raw_action: ``[B, A]`` pre-tanh actions taken.
        old_log_prob: ``[B]`` log-probabilities under the acting policy.
        old_value: ``[B]`` the acting value estimate.
        advantage: ``[B]`` advantages (already normalised, if that is wanted).
        target_return: ``[B]`` value targets.
        noise: ``[B, A]`` standard-normal draws for the entropy estimate.
    """

    x: jax.Array
    raw_action: jax.Array
    old_log_prob: jax.Array
    old_value: jax.Array
    advantage: jax.Array
    target_return: jax.Array
    noise: jax.Array


PolicyApply = Callable[[chex.ArrayTree, jax.Array], tuple[jax.Array, jax.Array]]
ValueApply = Callable[[chex.ArrayTree, jax.Array], jax.Array]


def ppo_loss(
    params: PPOParams,
    inputs: LossInputs,
    *,
    policy_apply: PolicyApply,
    value_apply: ValueApply,
    clip_range: float,
    value_clip_range: Optional[float],
    vf_coef: float,
    ent_coef: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The ``ppo2`` loss on one minibatch of ``B`` samples.

    ``loss = pg_loss + vf_coef * vf_loss - ent_coef * entropy`` where, with ``r = exp(log_prob - old_log_prob)``::

        pg_loss  = mean(max(-A * r, -A * clip(r, 1 - clip_range, 1 + clip_range)))
        vf_loss  = 0.5 * mean(max((V - R)^2, (V_old + clip(V - V_old, -c, c) - R)^2))   # c = value_clip_range
        entropy  = mean(tanh_gaussian_entropy(mu, log_std, noise))

    With ``value_clip_range=None`` the value loss is ``0.5 * mean((V - R)^2)``.

    Args:
        params: policy and value parameters (differentiated).
        inputs: the minibatch, leaves ``[B, ...]``.
        policy_apply: ``(policy_params, x [B, D]) -> (mu [B, A], log_std [B, A])``.
        value_apply: ``(value_params, x [B, D]) -> [B]``.
        clip_range: ratio clip.
        value_clip_range: value clip, or ``None`` for no clipping.
        vf_coef: value loss weight.
        ent_coef: entropy bonus weight.

    Returns:
        ``([] loss, metrics)``; metrics hold ``[]`` ``actor_loss`` (``pg_loss``), ``critic_loss`` (``vf_loss``),
        ``entropy``, ``approx_kl``
        (``ppo2``: ``0.5 * mean((log_prob - old_log_prob)^2)``) and ``clip_frac``.
    """
    mean, log_std = policy_apply(params.policy, inputs.x)
    log_prob = tanh_gaussian_log_prob(inputs.raw_action, mean, log_std)
    log_ratio = log_prob - inputs.old_log_prob
    ratio = jnp.exp(log_ratio)
    adv = inputs.advantage
    pg_loss = jnp.mean(jnp.maximum(-adv * ratio, -adv * jnp.clip(ratio, 1.0 - clip_range, 1.0 + clip_range)))

    value = value_apply(params.value, inputs.x)
    vf_err = jnp.square(value - inputs.target_return)
    if value_clip_range is not None:
        clipped = inputs.old_value + jnp.clip(value - inputs.old_value, -value_clip_range, value_clip_range)
        vf_err = jnp.maximum(vf_err, jnp.square(clipped - inputs.target_return))
    vf_loss = 0.5 * jnp.mean(vf_err)

    entropy = jnp.mean(tanh_gaussian_entropy(mean, log_std, inputs.noise))
    loss = pg_loss + vf_coef * vf_loss - ent_coef * entropy
    metrics = {
        "actor_loss": pg_loss,
        "critic_loss": vf_loss,
        "entropy": entropy,
        "approx_kl": 0.5 * jnp.mean(jnp.square(log_ratio)),
        "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > clip_range).astype(ratio.dtype)),
    }
    return loss, metrics


def gae(
    reward: jax.Array,
    value: jax.Array,
    next_value: jax.Array,
    terminated: jax.Array,
    episode_end: jax.Array,
    *,
    gamma: float,
    gae_lambda: float,
) -> jax.Array:
    """GAE(lambda) advantages of a ``[T, N]`` unroll, with time-limit bootstrapping.

    ``next_value[t]`` is ``V`` of the true successor of step ``t``: the next step's state within an episode and
    the final observation of the episode where step ``t`` ended it by the time limit (the auto-reset wrapper's
    ``final_obs``), so a truncated episode is bootstrapped, not treated as terminal::

        delta[t] = r[t] + gamma * (1 - terminated[t]) * next_value[t] - value[t]
        A[t]     = delta[t] + gamma * lambda * (1 - episode_end[t]) * A[t + 1],       A[T] = 0

    Args:
        reward: ``[T, N]`` rewards.
        value: ``[T, N]`` ``V(s_t)``.
        next_value: ``[T, N]`` ``V`` of each step's successor (see above).
        terminated: ``[T, N]`` 1 where step ``t`` reached a terminal state (never, on Fetch).
        episode_end: ``[T, N]`` 1 where step ``t`` ended its episode, by termination or truncation: the
            advantage does not flow back across it.
        gamma: discount.
        gae_lambda: GAE lambda.

    Returns:
        ``[T, N]`` advantages.
    """
    chex.assert_equal_shape([reward, value, next_value, terminated, episode_end])
    dtype = value.dtype
    not_terminal = 1.0 - terminated.astype(dtype)
    not_end = 1.0 - episode_end.astype(dtype)
    delta = reward.astype(dtype) + gamma * not_terminal * next_value - value

    def back(carry: jax.Array, xs: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        delta_t, not_end_t = xs
        adv = delta_t + gamma * gae_lambda * not_end_t * carry
        return adv, adv

    _, advantage = jax.lax.scan(back, jnp.zeros_like(delta[0]), (delta, not_end), reverse=True)
    return advantage


def standardize(x: jax.Array, axis_name: Optional[str] = None, eps: float = 1e-8) -> jax.Array:
    """``(x - mean) / (std + eps)`` over all entries of ``x`` on all devices of ``axis_name`` (``ppo2``: eps 1e-8).

    Every device must hold the same number of entries.
    """
    mean = pmean(jnp.mean(x), axis_name)
    var = pmean(jnp.mean(jnp.square(x - mean)), axis_name)
    return (x - mean) / (jnp.sqrt(var) + eps)


def minibatch_indices(key: jax.Array, env_ids: jax.Array, horizon: int, n_minibatches: int) -> jax.Array:
    """``[M, T / M, N]`` time indices: minibatch ``m`` holds steps ``idx[m, :, n]`` of env ``n``.

    Env ``n``'s ``T`` steps are permuted by ``fold_in(key, env_ids[n])``, so the choice depends only on the
    env's global index, never on how the envs are spread over devices.

    Args:
        key: one key for the whole pass, the same on every device.
        env_ids: ``[N]`` int32 global indices of this device's envs.
        horizon: ``T``, a multiple of ``n_minibatches``.
        n_minibatches: ``M``.
    """
    perms = jax.vmap(lambda i: jax.random.permutation(jax.random.fold_in(key, i), horizon))(env_ids)  # [N, T]
    return jnp.reshape(perms.T, (n_minibatches, horizon // n_minibatches, env_ids.shape[0]))
