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
  0.01 on the policy output and 1 on the value output, a state-independent log-std. With ``shared_torso`` one
  torso feeds a policy head and a value head (``value_network='shared'``), with the same initialisers.

Where it differs, and why:

* **Inputs.** The networks see ``[o_norm, g_norm]``: the observation and the desired goal, each clipped to
  ``±clip_obs`` and normalised by its own running statistics (``herjax.agents.common.normalizer``, baselines ``her``
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

    agent = make_ppo(PPOConfig(), obs_dim=10, goal_dim=3, act_dim=4, total_updates=1000)   # an OnPolicyAgent
    state = agent.init(key)
    step = agent.act(state, obs, goal, key)             # PolicyStep(action, raw_action, log_prob)
    batch = agent.prepare(state, unroll)                # values and GAE of a [T, N] herjax.types.Unroll
    state, metrics = agent.update(state, batch, key)    # every pass over the batch
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Optional, Sequence

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from herjax.agents.base import OnPolicyAgent
from herjax.agents.common import export as export_lib
from herjax.agents.common import normalizer
from herjax.agents.common.collectives import pmean
from herjax.agents.common.networks import (  # noqa: F401 (ACTIVATIONS: re-exported)
    ACTIVATIONS,
    Torso,
    activation_fn,
    orthogonal,
)
from herjax.agents.ppo.config import LR_SCHEDULES, PPOConfig
from herjax.agents.ppo.losses import (
    LossInputs,
    PPOParams,
    gae,
    minibatch_indices,
    ppo_loss,
    standardize,
    tanh_gaussian_log_prob,
)
from herjax.types import PolicyStep, Unroll

METRIC_NAMES = ("actor_loss", "critic_loss", "mean_Q", "entropy", "approx_kl", "clip_frac", "grad_norm")
HIDDEN_INIT = orthogonal(math.sqrt(2.0))
POLICY_OUT_INIT = orthogonal(0.01)
VALUE_OUT_INIT = orthogonal(1.0)
PPO_TORSO = Torso(activation="tanh")


class TanhGaussianPolicy(nn.Module):
    """``x -> (mu [..., act_dim], log_std [..., act_dim])`` of the pre-tanh Gaussian.

    Attributes:
        act_dim: action size.
        hidden: hidden layer sizes.
        torso: the network keys (activation, layer norm, or a custom module in place of the MLP).
        log_std_init: initial value of the state-independent log-std.
    """

    act_dim: int
    hidden: Sequence[int]
    torso: Torso = PPO_TORSO
    log_std_init: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        mean = self.torso.build(self.hidden, self.act_dim, kernel_init=HIDDEN_INIT, out_kernel_init=POLICY_OUT_INIT)(x)
        log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.act_dim,))
        return mean, jnp.broadcast_to(log_std, mean.shape)


def make_value_net(hidden: Sequence[int], torso: Torso = PPO_TORSO) -> nn.Module:
    """The value network ``x -> [..., 1]`` (``ppo2``'s value head: orthogonal gain 1 on the output)."""
    return torso.build(hidden, 1, kernel_init=HIDDEN_INIT, out_kernel_init=VALUE_OUT_INIT)


class SharedTorsoActorCritic(nn.Module):
    """One torso, two heads (``ppo2``'s ``value_network='shared'``): ``policy(x) -> (mu, log_std)``, ``value(x) ->
    [...]``, both reading the torso's ``[..., hidden[-1]]`` features. ``__call__`` runs both (to initialise).

    Attributes:
        act_dim: action size.
        hidden: hidden layer sizes of the torso.
        torso: the network keys; an ``MLP`` without output layer, or a custom module asked for ``hidden[-1]``
            outputs.
        log_std_init: initial value of the state-independent log-std.
    """

    act_dim: int
    hidden: Sequence[int]
    torso: Torso = PPO_TORSO
    log_std_init: float = 0.0

    def setup(self) -> None:
        self.trunk = self.torso.build(self.hidden, None, kernel_init=HIDDEN_INIT)
        self.policy_head = nn.Dense(self.act_dim, kernel_init=POLICY_OUT_INIT)
        self.value_head = nn.Dense(1, kernel_init=VALUE_OUT_INIT)
        self.log_std = self.param("log_std", nn.initializers.constant(self.log_std_init), (self.act_dim,))

    def __call__(self, x: jax.Array) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
        return self.policy(x), self.value(x)

    def policy(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x [..., D] -> (mu [..., act_dim], log_std [..., act_dim])``."""
        mean = self.policy_head(self.trunk(x))
        return mean, jnp.broadcast_to(self.log_std, mean.shape)

    def value(self, x: jax.Array) -> jax.Array:
        """``x [..., D] -> [...]``."""
        return self.value_head(self.trunk(x))[..., 0]


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
) -> OnPolicyAgent:
    """Builds the PPO agent's pure functions (an ``OnPolicyAgent``).

    Args:
        cfg: hyper-parameters.
        obs_dim: observation size.
        goal_dim: goal size.
        act_dim: action size (actions lie in ``(-1, 1)``).
        total_updates: gradient steps of the whole run, for ``lr_schedule='linear'``.
    """
    activation_fn(cfg.activation)  # a bad name fails here, not at the first call of a network
    hidden, torso = tuple(cfg.hidden), Torso.of(cfg)
    if cfg.shared_torso:
        # One parameter tree, kept in PPOParams.policy (PPOParams.value is None): the loss reads it in both slots,
        # so the torso's gradient is the sum of the policy's and the value's.
        net = SharedTorsoActorCritic(act_dim, hidden, torso, cfg.log_std_init)
        policy_apply = functools.partial(net.apply, method=SharedTorsoActorCritic.policy)
        value_apply = functools.partial(net.apply, method=SharedTorsoActorCritic.value)
        init_params = lambda key, x: PPOParams(policy=net.init(key, x), value=None)
        loss_params = lambda params: params._replace(value=params.policy)
    else:
        policy_net = TanhGaussianPolicy(act_dim, hidden, torso, cfg.log_std_init)
        value_net = make_value_net(hidden, torso)
        policy_apply = policy_net.apply
        value_apply = lambda p, x: value_net.apply(p, x)[..., 0]

        def init_params(key: jax.Array, x: jax.Array) -> PPOParams:
            policy_key, value_key = jax.random.split(key)
            return PPOParams(policy=policy_net.init(policy_key, x), value=value_net.init(value_key, x))

        loss_params = lambda params: params
    optimizer = make_optimizer(cfg, total_updates)
    value_clip = (cfg.clip_range if cfg.value_clip_range is None else cfg.value_clip_range) if cfg.clip_value else None
    loss_fn = functools.partial(
        ppo_loss, policy_apply=policy_apply, value_apply=value_apply, clip_range=cfg.clip_range,
        value_clip_range=value_clip, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
    )
    grad_fn = jax.grad(lambda params, data: loss_fn(loss_params(params), data), has_aux=True)

    def inputs(state: PPOState, obs: jax.Array, goal: jax.Array) -> jax.Array:
        obs_n, goal_n = normalizer.preprocess(
            state.obs_stats, state.goal_stats, obs, goal,
            clip_obs=cfg.clip_obs, norm_eps=cfg.norm_eps, norm_clip=cfg.norm_clip,
        )
        return jnp.concatenate([obs_n, goal_n], axis=-1)

    def init(key: jax.Array) -> PPOState:
        params = init_params(key, jnp.zeros((1, obs_dim + goal_dim)))
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

    def greedy(state: PPOState, obs: jax.Array, goal: jax.Array) -> jax.Array:
        mean, _ = policy_apply(state.params.policy, inputs(state, obs, goal))
        return jnp.tanh(mean)

    def value(state: PPOState, obs: jax.Array, goal: jax.Array) -> jax.Array:
        return value_apply(loss_params(state.params).value, inputs(state, obs, goal))

    def prepare(state: PPOState, unroll: Unroll) -> PPOBatch:
        """Values, bootstrapped GAE advantages and value targets of a ``[T, N]`` unroll."""
        value_t = value(state, unroll.obs, unroll.goal)
        next_value = value(state, unroll.next_obs, unroll.next_goal)
        episode_end = jnp.maximum(unroll.terminated, unroll.truncated)
        advantage = gae(
            cfg.reward_scale * unroll.reward, value_t, next_value, unroll.terminated, episode_end,
            gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
        )
        return PPOBatch(
            obs=unroll.obs, goal=unroll.goal, raw_action=unroll.step.raw_action, log_prob=unroll.step.log_prob,
            value=value_t, advantage=advantage, target_return=advantage + value_t,
        )

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
            grads, metrics = pmean((grads, metrics), axis_name)
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
        metrics = jax.tree.map(jnp.mean, metrics)
        metrics["mean_Q"] = pmean(jnp.mean(batch.value), axis_name)  # the state value V (PPO learns no Q)
        return state, metrics

    def update_normalizer(
        state: PPOState, obs: jax.Array, goal: jax.Array, axis_name: Optional[str] = None,
        mask: Optional[jax.Array] = None,
    ) -> PPOState:
        obs_stats, goal_stats = normalizer.update_inputs(
            state.obs_stats, state.goal_stats, obs, goal, clip_obs=cfg.clip_obs, axis_name=axis_name, mask=mask
        )
        return state.replace(obs_stats=obs_stats, goal_stats=goal_stats)

    def learning_rate(step: jax.Array) -> jax.Array:
        if cfg.lr_schedule == "linear":
            return cfg.learning_rate * jnp.maximum(0.0, 1.0 - step / total_updates)
        return jnp.asarray(cfg.learning_rate)

    def summary(state: PPOState) -> dict[str, jax.Array]:
        return {
            "train/learning_rate": learning_rate(state.step),
            "train/log_std": jnp.mean(state.params.policy["params"]["log_std"]),
            **normalizer.summary(state.obs_stats, state.goal_stats, cfg.norm_eps),
        }

    def export(state: PPOState) -> dict:
        """``greedy``'s weights (``tanh(mu)``: the policy's mean layers under a ``tanh`` head, ``max_u`` 1). Host
        side."""
        params = state.params.policy["params"]
        if cfg.shared_torso:
            layers = export_lib.mlp_layers(params, len(hidden), torso, name="trunk", output=False)
            layers.append(params["policy_head"])
        else:
            layers = export_lib.mlp_layers(params, len(hidden), torso)
        return export_lib.policy_weights(state.obs_stats, state.goal_stats, layers, torso=torso, max_u=1.0,
                                         clip_obs=cfg.clip_obs, norm_eps=cfg.norm_eps, norm_clip=cfg.norm_clip)

    return OnPolicyAgent(
        init=init, act=act, greedy=greedy, value=value, prepare=prepare, update=update,
        update_normalizer=update_normalizer, summary=summary, metric_names=METRIC_NAMES, export=export,
    )
