"""PPO for goal-conditioned tasks, with the semantics of openai/baselines ``ppo2``.

What follows ``ppo2`` (``baselines/ppo2/model.py``, ``ppo2.py``):

* the clipped surrogate ``-mean(min(r * A, clip(r, 1 - eps, 1 + eps) * A))``;
* the value loss ``0.5 * mean(max((V - R)^2, (V_clip - R)^2))`` with
  ``V_clip = V_old + clip(V - V_old, -eps_v, eps_v)`` (``clip_value``; off: the plain squared error);
* the entropy bonus ``- ent_coef * H``, loss ``= pg + vf_coef * vf - ent_coef * H``;
* GAE(lambda) advantages, normalised per minibatch to mean 0 and std 1;
* ``n_epochs`` passes over the batch, each cut into ``n_minibatches`` minibatches;
* one Adam (``eps = 1e-5``) over policy and value, after clipping the global gradient norm to ``max_grad_norm``;
* a learning rate that is constant or decays linearly to 0 over the run (``ppo2``'s ``lr = lambda f: 3e-4 * f``);
* separate policy and value MLPs (``value_network='copy'``), orthogonal initialisation with gain ``sqrt(2)``,
  0.01 on the policy output and 1 on the value output, a state-independent log-std.

Where it differs, and why:

* **Inputs.** The networks see ``[o_norm, g_norm]``: the observation and the desired goal, each clipped to
  ``±clip_obs`` and normalised by its own running statistics (``herjax.agents.normalizer``, baselines ``her``
  style), as the DDPG agent does. ``ppo2`` normalises observations in ``VecNormalize`` as they arrive.
* **Squashed policy.** Actions are ``a = tanh(u)``, ``u ~ N(mu(x), exp(log_std)^2)`` elementwise, so they lie in
  ``(-1, 1)`` like Fetch's action box (``ppo2`` samples an unbounded Gaussian and lets the env clip). The density
  of ``a`` carries the change-of-variables term::

      log pi(a | x) = sum_i [ log N(u_i; mu_i, sigma_i) - log(1 - tanh(u_i)^2) ]

  The rollout stores ``u`` (never ``atanh(a)``, which is unstable near ``±1``) and every log-probability is taken
  at the stored ``u``. The Jacobian term is the same for old and new policy, so it cancels in the PPO ratio, but
  ``log_prob`` returns the true density of ``a``. The deterministic action is ``tanh(mu)``.
* **Entropy.** A tanh-Gaussian has no closed-form entropy; the loss uses the unbiased one-sample estimate
  ``H ~= H[N(mu, sigma)] + sum_i log(1 - tanh(u_i)^2)`` at a reparameterised ``u = mu + sigma * noise``, with the
  standard-normal ``noise`` passed in by the caller (so the loss is a deterministic function of its arguments).
* **Device-layout-independent minibatches.** Each minibatch holds ``T / n_minibatches`` steps of *every* env: a
  per-env permutation of the ``T`` steps, keyed by the env's global index, picks which. The minibatches are then
  the same whether the ``N`` envs sit on one device or are spread over several, and so is the update (the
  gradient is the mean over the whole minibatch, ``pmean`` across devices). ``ppo2`` shuffles all ``T * N``
  samples uniformly; this is a stratified version of that. ``unroll_length`` must be a multiple of
  ``n_minibatches``.

    agent = make_ppo(PPOConfig(), obs_dim=10, goal_dim=3, act_dim=4, total_updates=1000)
    state = agent.init(key)
    step = agent.act(state, obs, goal, key)             # PolicyStep(action, raw_action, log_prob)
    state, metrics = agent.update(state, batch, key)    # batch: PPOBatch with leaves [T, N, ...]
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable, NamedTuple, Optional, Sequence

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from herjax.agents import normalizer
from herjax.agents.ddpg import preprocess
from herjax.agents.networks import MLP

LR_SCHEDULES = ("constant", "linear")
ACTIVATIONS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "swish": nn.swish}
_LOG_2PI = math.log(2.0 * math.pi)


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters. Names follow ``ppo2`` where it has them.

    The defaults are ``ppo2``'s MuJoCo settings (``baselines/ppo2/defaults.py`` and its ``mlp``: two tanh layers of
    64, ``lam 0.95``, ``cliprange 0.2``, ``vf_coef 0.5``, ``ent_coef 0``, ``max_grad_norm 0.5``, Adam decaying
    linearly) except for a faster, small-batch setting tuned on FetchReach-dense: ``gamma 0.97`` (50-step episodes;
    ``ppo2``: 0.99), ``learning_rate 1e-3`` (3e-4), ``n_epochs 4`` (10), ``n_minibatches 5`` (32; it must divide the
    unroll) and ``log_std_init -0.5`` (0). With ``PPOTrainConfig``'s defaults (32 envs x 50 steps an iteration),
    eight seeds reached test success >= 0.9 within 9.6k-19.2k env steps; ``ppo2``'s lr, gamma, epochs and log-std
    needed 12.8k and 25.6k on two seeds, at 2.5x the gradient steps.

    Attributes:
        hidden: hidden layer sizes of the policy and of the value MLP.
        activation: hidden nonlinearity, one of ``ACTIVATIONS``.
        learning_rate: Adam learning rate (at the start, under ``linear``).
        lr_schedule: ``constant`` or ``linear`` (to 0 at the last update of the run).
        adam_eps: Adam epsilon (``ppo2``: 1e-5).
        max_grad_norm: the global gradient norm is clipped to this; ``None`` turns clipping off.
        clip_range: PPO ratio clip ``eps``.
        clip_value: clip the value prediction around the rollout's value, as ``ppo2``.
        value_clip_range: ``eps_v`` of the value clip; ``None`` uses ``clip_range`` (``ppo2``).
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        gamma: discount.
        gae_lambda: GAE lambda.
        n_epochs: passes over each iteration's batch (``ppo2`` ``noptepochs``).
        n_minibatches: minibatches per pass (``ppo2`` ``nminibatches``); must divide the unroll length.
        normalize_advantage: standardise advantages over each minibatch (over all devices).
        log_std_init: initial log-std of the pre-tanh Gaussian.
        reward_scale: rewards are multiplied by this before GAE.
        clip_obs: raw observations and goals are clipped to ``±clip_obs``.
        norm_eps: std floor of the normalisers.
        norm_clip: normalised inputs are clipped to ``±norm_clip``.
    """

    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    learning_rate: float = 1e-3
    lr_schedule: str = "linear"
    adam_eps: float = 1e-5
    max_grad_norm: Optional[float] = 0.5
    clip_range: float = 0.2
    clip_value: bool = True
    value_clip_range: Optional[float] = None
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    gamma: float = 0.97
    gae_lambda: float = 0.95
    n_epochs: int = 4
    n_minibatches: int = 5
    normalize_advantage: bool = True
    log_std_init: float = -0.5
    reward_scale: float = 1.0
    clip_obs: float = 200.0
    norm_eps: float = 0.01
    norm_clip: float = 5.0


@dataclasses.dataclass(frozen=True)
class PPOSection(PPOConfig):
    """The ``ppo.*`` config section: the agent's hyper-parameters (``PPOConfig``) plus the trainer's sizes.

    This is the class to register in ``herjax.algs`` (section ``ppo``; the trainer is ``herjax.ppo_loops``). The
    run-level fields every algorithm shares (``env``, ``seed``, ``total_env_steps``, ``backend``, ``run_dir``,
    ``stop_success``) stay outside it; DDPG's ``num_envs``, ``n_cycles``, ``n_test_rollouts`` and ``scale`` are
    not used by PPO (``herjax.ppo_loops.validate`` rejects all but ``n_cycles`` when set away from their defaults).
    The agent reads only the ``PPOConfig`` fields.

    Attributes:
        num_envs: envs stepped in parallel, over all devices (``ppo2`` ``nenvs``).
        unroll_length: steps per env per iteration (``ppo2`` ``nsteps``); a multiple of ``n_minibatches``.
        n_iterations: PPO iterations per epoch (an epoch ends with an evaluation).
        n_test_episodes: deterministic test episodes per epoch, over all devices (a total, unlike DDPG's
            ``n_test_rollouts`` rounds of ``num_envs``: PPO runs many envs).
        num_devices: local devices to spread the envs over; ``None`` uses all.
    """

    num_envs: int = 32
    unroll_length: int = 50
    n_iterations: int = 2
    n_test_episodes: int = 50
    num_devices: Optional[int] = None


def section_errors(p: PPOSection) -> list[str]:
    """One line per bad value of the ``ppo`` section (cheap: builds nothing)."""
    errors = []
    for name in ("num_envs", "unroll_length", "n_iterations", "n_test_episodes", "n_epochs", "n_minibatches"):
        if getattr(p, name) < 1:
            errors.append(f"bad value {getattr(p, name)!r} for ppo.{name}: must be >= 1")
    if p.unroll_length % max(p.n_minibatches, 1):
        errors.append(f"bad value {p.unroll_length!r} for ppo.unroll_length: must be a multiple of "
                      f"ppo.n_minibatches={p.n_minibatches}")
    if p.num_devices is not None and p.num_devices < 1:
        errors.append(f"bad value {p.num_devices!r} for ppo.num_devices: must be >= 1 or null (all)")
    if p.lr_schedule not in LR_SCHEDULES:
        errors.append(f"bad value {p.lr_schedule!r} for ppo.lr_schedule; valid: {', '.join(LR_SCHEDULES)}")
    if p.activation not in ACTIVATIONS:
        errors.append(f"bad value {p.activation!r} for ppo.activation; valid: {', '.join(ACTIVATIONS)}")
    for name in ("learning_rate", "clip_range", "clip_obs", "norm_eps", "norm_clip"):
        if getattr(p, name) <= 0:
            errors.append(f"bad value {getattr(p, name)!r} for ppo.{name}: must be > 0")
    if not 0.0 < p.gamma <= 1.0:
        errors.append(f"bad value {p.gamma!r} for ppo.gamma: must be in (0, 1]")
    if not 0.0 <= p.gae_lambda <= 1.0:
        errors.append(f"bad value {p.gae_lambda!r} for ppo.gae_lambda: must be in [0, 1]")
    if len(p.hidden) == 0 or any(h < 1 for h in p.hidden):
        errors.append(f"bad value {list(p.hidden)!r} for ppo.hidden: must be a non-empty list of positive sizes")
    return errors


class TanhGaussianPolicy(nn.Module):
    """``x -> (mu [..., act_dim], log_std [..., act_dim])`` of the pre-tanh Gaussian.

    Attributes:
        act_dim: action size.
        hidden: hidden layer sizes.
        activation: hidden nonlinearity.
        log_std_init: initial value of the state-independent log-std.
    """

    act_dim: int
    hidden: Sequence[int]
    activation: Callable[[jax.Array], jax.Array] = nn.tanh
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = MLP(
            tuple(self.hidden), self.act_dim, activation=self.activation,
            kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)), out_kernel_init=nn.initializers.orthogonal(0.01),
        )(x)
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.act_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


def make_value_net(hidden: Sequence[int], activation: Callable[[jax.Array], jax.Array]) -> MLP:
    """The value MLP ``x -> [..., 1]`` (``ppo2``'s value head: orthogonal gain 1 on the output)."""
    return MLP(
        tuple(hidden), 1, activation=activation,
        kernel_init=nn.initializers.orthogonal(math.sqrt(2.0)), out_kernel_init=nn.initializers.orthogonal(1.0),
    )


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


@flax.struct.dataclass
class PPOState:
    """Everything PPO learns or accumulates.

    Attributes:
        params: policy and value parameters.
        opt_state: the optimiser's state (gradient clip then Adam).
        obs_stats: running statistics of clipped observations, size ``obs_dim``.
        goal_stats: running statistics of clipped desired goals, size ``goal_dim``.
        step: ``[]`` int32 gradient steps taken (drives the learning-rate schedule).
    """

    params: PPOParams
    opt_state: optax.OptState
    obs_stats: normalizer.NormalizerState
    goal_stats: normalizer.NormalizerState
    step: jax.Array


class PolicyStep(NamedTuple):
    """A sampled action, ``[N, ...]``.

    Attributes:
        action: ``[N, A]`` ``tanh(raw_action)``, what the env receives.
        raw_action: ``[N, A]`` the pre-tanh Gaussian sample ``u``.
        log_prob: ``[N]`` ``log pi(action | obs, goal)``, with the tanh correction.
    """

    action: jax.Array
    raw_action: jax.Array
    log_prob: jax.Array


class PPOBatch(NamedTuple):
    """One iteration's training data; every leaf is ``[T, N, ...]`` (time, env).

    Attributes:
        obs: ``[T, N, obs_dim]`` raw observations.
        goal: ``[T, N, goal_dim]`` raw desired goals.
        raw_action: ``[T, N, A]`` pre-tanh actions taken.
        log_prob: ``[T, N]`` their log-probabilities under the acting policy.
        value: ``[T, N]`` the acting value estimate ``V(s_t)``.
        advantage: ``[T, N]`` GAE advantages.
        target_return: ``[T, N]`` value targets ``advantage + value``.
    """

    obs: jax.Array
    goal: jax.Array
    raw_action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    advantage: jax.Array
    target_return: jax.Array


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
        ``([] loss, metrics)``; metrics hold ``[]`` ``pg_loss``, ``vf_loss``, ``entropy``, ``approx_kl``
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
        "pg_loss": pg_loss,
        "vf_loss": vf_loss,
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


def _pmean(x: chex.ArrayTree, axis_name: Optional[str]) -> chex.ArrayTree:
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


def _psum(x: chex.ArrayTree, axis_name: Optional[str]) -> chex.ArrayTree:
    return x if axis_name is None else jax.lax.psum(x, axis_name)


def standardize(x: jax.Array, axis_name: Optional[str] = None, eps: float = 1e-8) -> jax.Array:
    """``(x - mean) / (std + eps)`` over all entries of ``x`` on all devices of ``axis_name`` (``ppo2``: eps 1e-8).

    Every device must hold the same number of entries.
    """
    mean = _pmean(jnp.mean(x), axis_name)
    var = _pmean(jnp.mean(jnp.square(x - mean)), axis_name)
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


class PPOAgent(NamedTuple):
    """Pure functions of a PPO agent (see ``make_ppo``).

    Attributes:
        init: ``(key) -> PPOState``.
        act: ``(state, obs [N, o], goal [N, g], key) -> PolicyStep``: a sample of the stochastic policy.
        policy: ``(state, obs [N, o], goal [N, g]) -> action [N, A]``, the deterministic ``tanh(mu)``.
        value: ``(state, obs [..., o], goal [..., g]) -> [...]``.
        log_prob: ``(state, obs [..., o], goal [..., g], raw_action [..., A]) -> [...]``.
        update: ``(state, batch: PPOBatch, key, axis_name=None) -> (state, metrics)``: ``n_epochs *
            n_minibatches`` gradient steps; with ``axis_name`` (inside ``shard_map``/``pmap`` over envs) the
            advantage statistics and the gradients are averaged over that axis. Metrics are means over the steps.
        update_normalizer: ``(state, obs [..., o], goal [..., g], axis_name=None) -> state``: adds the samples
            (of every device, summed over ``axis_name``) to the statistics.
        config: the config.
    """

    init: Callable[[jax.Array], PPOState]
    act: Callable[[PPOState, jax.Array, jax.Array, jax.Array], PolicyStep]
    policy: Callable[[PPOState, jax.Array, jax.Array], jax.Array]
    value: Callable[[PPOState, jax.Array, jax.Array], jax.Array]
    log_prob: Callable[[PPOState, jax.Array, jax.Array, jax.Array], jax.Array]
    update: Callable[..., tuple[PPOState, dict]]
    update_normalizer: Callable[..., PPOState]
    config: PPOConfig


def make_optimizer(cfg: PPOConfig, total_updates: Optional[int]) -> optax.GradientTransformation:
    """Global-norm clip then Adam, at ``cfg.learning_rate`` (linearly to 0 over ``total_updates`` steps)."""
    if cfg.lr_schedule == "linear":
        if not total_updates:
            raise ValueError("lr_schedule='linear' needs total_updates > 0")
        lr = optax.linear_schedule(cfg.learning_rate, 0.0, total_updates)
    elif cfg.lr_schedule == "constant":
        lr = cfg.learning_rate
    else:
        raise ValueError(f"unknown lr_schedule {cfg.lr_schedule!r}; valid: {', '.join(LR_SCHEDULES)}")
    adam = optax.adam(lr, eps=cfg.adam_eps)
    if cfg.max_grad_norm is None:
        return adam
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), adam)


def make_ppo(
    cfg: PPOConfig, *, obs_dim: int, goal_dim: int, act_dim: int, total_updates: Optional[int] = None
) -> PPOAgent:
    """Builds the PPO agent's pure functions.

    Args:
        cfg: hyper-parameters.
        obs_dim: observation size.
        goal_dim: goal size.
        act_dim: action size (actions lie in ``(-1, 1)``).
        total_updates: gradient steps of the whole run, for ``lr_schedule='linear'``.
    """
    if cfg.activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {cfg.activation!r}; valid: {', '.join(ACTIVATIONS)}")
    activation = ACTIVATIONS[cfg.activation]
    policy_net = TanhGaussianPolicy(act_dim, tuple(cfg.hidden), activation, cfg.log_std_init)
    value_net = make_value_net(cfg.hidden, activation)
    policy_apply = policy_net.apply
    value_apply = lambda p, x: value_net.apply(p, x)[..., 0]
    optimizer = make_optimizer(cfg, total_updates)
    value_clip = (cfg.clip_range if cfg.value_clip_range is None else cfg.value_clip_range) if cfg.clip_value else None
    loss_fn = functools.partial(
        ppo_loss, policy_apply=policy_apply, value_apply=value_apply, clip_range=cfg.clip_range,
        value_clip_range=value_clip, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
    )
    grad_fn = jax.grad(loss_fn, has_aux=True)

    def inputs(state: PPOState, obs: jax.Array, goal: jax.Array) -> jax.Array:
        obs_n, goal_n = preprocess(
            state.obs_stats, state.goal_stats, obs, goal,
            clip_obs=cfg.clip_obs, norm_eps=cfg.norm_eps, norm_clip=cfg.norm_clip,
        )
        return jnp.concatenate([obs_n, goal_n], axis=-1)

    def init(key: jax.Array) -> PPOState:
        policy_key, value_key = jax.random.split(key)
        x = jnp.zeros((1, obs_dim + goal_dim))
        params = PPOParams(policy=policy_net.init(policy_key, x), value=value_net.init(value_key, x))
        return PPOState(
            params=params,
            opt_state=optimizer.init(params),
            obs_stats=normalizer.init(obs_dim),
            goal_stats=normalizer.init(goal_dim),
            step=jnp.zeros((), jnp.int32),
        )

    def act(state: PPOState, obs: jax.Array, goal: jax.Array, key: jax.Array) -> PolicyStep:
        mean, log_std = policy_apply(state.params.policy, inputs(state, obs, goal))
        raw = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
        return PolicyStep(action=jnp.tanh(raw), raw_action=raw, log_prob=tanh_gaussian_log_prob(raw, mean, log_std))

    def policy(state: PPOState, obs: jax.Array, goal: jax.Array) -> jax.Array:
        mean, _ = policy_apply(state.params.policy, inputs(state, obs, goal))
        return jnp.tanh(mean)

    def value(state: PPOState, obs: jax.Array, goal: jax.Array) -> jax.Array:
        return value_apply(state.params.value, inputs(state, obs, goal))

    def log_prob(state: PPOState, obs: jax.Array, goal: jax.Array, raw_action: jax.Array) -> jax.Array:
        mean, log_std = policy_apply(state.params.policy, inputs(state, obs, goal))
        return tanh_gaussian_log_prob(raw_action, mean, log_std)

    def update(
        state: PPOState, batch: PPOBatch, key: jax.Array, axis_name: Optional[str] = None
    ) -> tuple[PPOState, dict]:
        horizon, n_envs = batch.log_prob.shape
        if horizon % cfg.n_minibatches:
            raise ValueError(f"unroll length {horizon} is not a multiple of n_minibatches={cfg.n_minibatches}")
        offset = 0 if axis_name is None else jax.lax.axis_index(axis_name) * n_envs
        env_ids = offset + jnp.arange(n_envs, dtype=jnp.int32)
        x = inputs(state, batch.obs, batch.goal)  # the statistics stay fixed during the update
        env_cols = jnp.arange(n_envs)

        def take_noise(key: jax.Array, steps: int, act_dim: int, dtype) -> jax.Array:
            # Keyed by the global env index, like the minibatch choice, so that no draw depends on the layout.
            per_env = jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(key, i), (steps, act_dim), dtype))
            return jnp.reshape(jnp.swapaxes(per_env(env_ids), 0, 1), (steps * n_envs, act_dim))

        def minibatch(carry: tuple[PPOParams, optax.OptState], mb: tuple[jax.Array, jax.Array]):
            params, opt_state = carry
            idx, noise_key = mb  # idx [T / M, N]
            take = lambda leaf: jnp.reshape(leaf[idx, env_cols], (-1,) + leaf.shape[2:])
            adv = take(batch.advantage)
            if cfg.normalize_advantage:
                adv = standardize(adv, axis_name)
            raw_action = take(batch.raw_action)
            data = LossInputs(
                x=take(x), raw_action=raw_action, old_log_prob=take(batch.log_prob), old_value=take(batch.value),
                advantage=adv, target_return=take(batch.target_return),
                noise=take_noise(noise_key, idx.shape[0], raw_action.shape[-1], raw_action.dtype),
            )
            grads, metrics = grad_fn(params, data)
            grads, metrics = _pmean((grads, metrics), axis_name)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            metrics["grad_norm"] = optax.global_norm(grads)
            return (optax.apply_updates(params, updates), opt_state), metrics

        def epoch(carry, key: jax.Array):
            perm_key, noise_key = jax.random.split(key)
            idx = minibatch_indices(perm_key, env_ids, horizon, cfg.n_minibatches)
            return jax.lax.scan(minibatch, carry, (idx, jax.random.split(noise_key, cfg.n_minibatches)))

        (params, opt_state), metrics = jax.lax.scan(
            epoch, (state.params, state.opt_state), jax.random.split(key, cfg.n_epochs)
        )
        n_steps = cfg.n_epochs * cfg.n_minibatches
        state = state.replace(params=params, opt_state=opt_state, step=state.step + n_steps)
        return state, jax.tree.map(jnp.mean, metrics)

    def update_normalizer(
        state: PPOState, obs: jax.Array, goal: jax.Array, axis_name: Optional[str] = None
    ) -> PPOState:
        # The sums of this device's samples, summed over devices, are added once: the statistics equal those of
        # one device holding every sample (the normaliser keeps raw sums for exactly this).
        def added(stats: normalizer.NormalizerState, x: jax.Array) -> normalizer.NormalizerState:
            x = jnp.clip(x, -cfg.clip_obs, cfg.clip_obs)
            new = _psum(normalizer.update(normalizer.init(x.shape[-1], stats.sum.dtype), x), axis_name)
            return jax.tree.map(jnp.add, stats, new)

        return state.replace(obs_stats=added(state.obs_stats, obs), goal_stats=added(state.goal_stats, goal))

    return PPOAgent(
        init=init, act=act, policy=policy, value=value, log_prob=log_prob, update=update,
        update_normalizer=update_normalizer, config=cfg,
    )
