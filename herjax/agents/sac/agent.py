"""SAC with automatic entropy tuning (Haarnoja et al. 2018) in baselines' HER loop, as an ``OffPolicyAgent``.

Inputs are clipped and normalised exactly as DDPG+HER's (``normalizer.preprocess``). The policy is a squashed
Gaussian ``a = max_u * tanh(u)``, ``u ~ N(mu(o, g), sigma(o, g))``; twin critics give the clipped double-Q
target ``clip(r + gamma * (min_i Q'_i(o2, g, a2) - alpha * log pi(a2 | o2, g)), -clip_return, 0)`` with ``a2``
drawn from the current policy (no target actor); the temperature ``alpha = exp(log_alpha)`` is learned toward
``target_entropy``. The three gradients of an update come from the same batch and the pre-update parameters; the
critics' targets move by Polyak averaging once per cycle (``end_of_cycle``), as in baselines HER.

    agent = make_sac(SACConfig(), obs_dim=25, goal_dim=3, act_dim=4, horizon=50)
    state = agent.init(key)
    action = agent.act(state, obs, goal, key)
    state, metrics = jax.jit(agent.update)(state, transitions, key)
"""

from __future__ import annotations

import functools
import math
from typing import Optional, Sequence

import chex
import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from herjax.agents.base import OffPolicyAgent
from herjax.agents.common import export as export_lib
from herjax.agents.common import normalizer, optim
from herjax.agents.common.collectives import pmean
from herjax.agents.common.config import discount_of, resolve_clip_return, resolve_gamma
from herjax.agents.common.networks import DEFAULT_HIDDEN, DoubleCritic, Torso
from herjax.agents.common.targets import OnlineAndTarget, soft_update
from herjax.agents.ddpg.agent import check_inputs, check_transitions, with_td_error
from herjax.agents.ppo.losses import tanh_gaussian_log_prob
from herjax.agents.sac.config import SACConfig, resolve_target_entropy
from herjax.agents.sac.losses import DoubleCriticApply, PolicySample, actor_loss, alpha_loss, critic_loss
from herjax.types import Transitions

METRIC_NAMES = ("critic_loss", "actor_loss", "mean_Q", "alpha", "entropy")


class SquashedGaussianActor(nn.Module):
    """Goal-conditioned pre-tanh Gaussian ``MLP([o, g]) -> (mu, log_std)`` with a state-dependent ``log_std``.

    Attributes:
        act_dim: action size.
        hidden: hidden layer sizes.
        log_std_min: lower clip of ``log_std``.
        log_std_max: upper clip of ``log_std``.
        torso: the network keys (activation, layer norm, or a custom module in place of the MLP).
    """

    act_dim: int
    hidden: Sequence[int] = DEFAULT_HIDDEN
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    torso: Torso = Torso()

    @nn.compact
    def __call__(self, obs: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``[N, obs_dim]``, ``[N, goal_dim]`` normalised -> ``(mu [N, act_dim], log_std [N, act_dim])``."""
        out = self.torso.build(self.hidden, 2 * self.act_dim)(jnp.concatenate([obs, goal], axis=-1))
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, self.log_std_min, self.log_std_max)


def squashed_gaussian_sample(
    mean: jax.Array, log_std: jax.Array, key: jax.Array, *, max_u: float
) -> tuple[jax.Array, jax.Array]:
    """A reparameterised sample ``a = max_u * tanh(mu + sigma * eps)`` and its log-probability.

    The log-probability is that of the normalised action ``a / max_u = tanh(u)`` in ``[-1, 1]``:
    ``log N(u; mu, sigma) - sum_i log(1 - tanh(u_i)^2)`` (PPO's ``tanh_gaussian_log_prob``). The density of ``a``
    in env units is this minus ``act_dim * log(max_u)``, a constant that moves no gradient; leaving it out (as SB3
    does) keeps ``alpha``, ``target_entropy`` and the ``entropy`` metric independent of ``max_u``.

    Args:
        mean: ``[N, A]`` pre-tanh means.
        log_std: ``[N, A]`` pre-tanh log-stds.
        key: PRNG key of the noise.
        max_u: action bound.

    Returns:
        ``(action [N, A] in [-max_u, max_u], log_prob [N])``.
    """
    raw_action = mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape, mean.dtype)
    return max_u * jnp.tanh(raw_action), tanh_gaussian_log_prob(raw_action, mean, log_std)


def sample_policy(
    params: chex.ArrayTree, obs: jax.Array, goal: jax.Array, key: jax.Array, *, policy_apply, max_u: float
) -> tuple[jax.Array, jax.Array]:
    """The ``PolicySample`` of a ``SquashedGaussianActor``: ``policy_apply(params, obs, goal)`` then
    ``squashed_gaussian_sample``; ``(action [N, A], log_prob [N])``."""
    mean, log_std = policy_apply(params, obs, goal)
    return squashed_gaussian_sample(mean, log_std, key, max_u=max_u)


@flax.struct.dataclass
class SACState:
    """Everything SAC learns or accumulates.

    Attributes:
        actor: policy parameters (SAC keeps no target policy).
        critic: twin-critic parameters, online and target.
        log_alpha: ``[]`` log of the entropy temperature.
        actor_opt_state: Adam state of the policy.
        critic_opt_state: Adam state of the online critics.
        alpha_opt_state: Adam state of ``log_alpha``.
        obs_stats: running statistics of clipped observations, size ``obs_dim``.
        goal_stats: running statistics of clipped goals, size ``goal_dim``.
        step: ``[]`` int32 number of ``update`` calls.
    """

    actor: chex.ArrayTree
    critic: OnlineAndTarget
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    obs_stats: normalizer.NormalizerState
    goal_stats: normalizer.NormalizerState
    step: jax.Array


def update_step(
    state: SACState,
    transitions: Transitions,
    key: jax.Array,
    axis_name: Optional[str] = None,
    *,
    policy_sample: PolicySample,
    critic_apply: DoubleCriticApply,
    actor_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
    alpha_optimizer: optax.GradientTransformation,
    gamma: float,
    clip_return: float,
    target_entropy: float,
    clip_obs: float,
    norm_eps: float,
    norm_clip: float,
    huber: bool = False,
) -> tuple[SACState, dict[str, jax.Array]]:
    """One critic, one policy and one temperature step on the same batch.

    All three gradients are taken at the pre-update parameters and temperature; the temperature's gradient uses
    the log-probabilities of the policy loss's own sample. With ``axis_name`` the gradients are averaged over the
    devices, like DDPG's. ``transitions.weight`` (when set) weights each sample's critic loss.

    Args:
        state: agent state.
        transitions: raw ``Transitions`` with leading dimension ``N``.
        key: PRNG key of this update's two policy samples.
        axis_name: the device axis inside ``shard_map``, or ``None``.
        policy_sample: ``(params, obs, goal, key) -> (action [N, A], log_prob [N])``.
        critic_apply: ``(params, obs, goal, action) -> [2, N]``.
        actor_optimizer: optimiser of the policy.
        critic_optimizer: optimiser of the online critics.
        alpha_optimizer: optimiser of ``log_alpha``.
        gamma: discount.
        clip_return: magnitude of the lower target clip.
        target_entropy: entropy the temperature steers to.
        clip_obs: raw input clip.
        norm_eps: normaliser std floor.
        norm_clip: normalised input clip.
        huber: the critics' Huber loss instead of the squared error.

    Returns:
        ``(state, metrics)`` with ``[]`` metrics ``METRIC_NAMES``; ``alpha`` is the temperature the losses used and
        ``entropy`` is ``-mean log pi`` of the policy loss's sample. With ``transitions.weight`` also ``TD_ERROR``
        ``[N]`` (the larger over the two critics).
    """
    clips = dict(clip_obs=clip_obs, norm_eps=norm_eps, norm_clip=norm_clip)
    stats = (state.obs_stats, state.goal_stats)
    obs, goal = normalizer.preprocess(*stats, transitions.obs, transitions.desired_goal, **clips)
    # The goal is fixed within an episode, so the next goal is the same normalised goal.
    next_obs, _ = normalizer.preprocess(*stats, transitions.next_obs, transitions.desired_goal, **clips)
    critic_key, actor_key = jax.random.split(key)
    alpha = jnp.exp(state.log_alpha)
    nets = dict(policy_sample=policy_sample, critic_apply=critic_apply)

    (c_loss, c_aux), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic.online, state.actor, state.critic.target, alpha, obs, goal, transitions.action,
        transitions.reward, next_obs, critic_key, gamma=discount_of(transitions, gamma), clip_return=clip_return,
        weight=transitions.weight, huber=huber, **nets,
    )
    (a_loss, log_prob), actor_grads = jax.value_and_grad(actor_loss, has_aux=True)(
        state.actor, state.critic.online, alpha, obs, goal, actor_key, **nets
    )
    alpha_grad = jax.grad(alpha_loss)(state.log_alpha, log_prob, target_entropy=target_entropy)
    grads = pmean((critic_grads, actor_grads, alpha_grad), axis_name)

    steps = [
        optim.apply(optimizer, params, grad, opt_state)
        for optimizer, params, grad, opt_state in zip(
            (critic_optimizer, actor_optimizer, alpha_optimizer),
            (state.critic.online, state.actor, state.log_alpha),
            grads,
            (state.critic_opt_state, state.actor_opt_state, state.alpha_opt_state),
        )
    ]
    (critic_params, critic_opt_state), (actor_params, actor_opt_state), (log_alpha, alpha_opt_state) = steps
    new_state = state.replace(
        critic=state.critic._replace(online=critic_params), actor=actor_params, log_alpha=log_alpha,
        critic_opt_state=critic_opt_state, actor_opt_state=actor_opt_state, alpha_opt_state=alpha_opt_state,
        step=state.step + 1,
    )
    metrics = dict(zip(METRIC_NAMES, (c_loss, a_loss, jnp.mean(c_aux.q), alpha, -jnp.mean(log_prob))))
    return new_state, with_td_error(pmean(metrics, axis_name), transitions, c_aux.td_error)


def make_sac(cfg: SACConfig, *, obs_dim: int, goal_dim: int, act_dim: int, horizon: int) -> OffPolicyAgent:
    """Builds a SAC+HER agent; every size is static.

    Args:
        cfg: the ``sac.*`` hyper-parameters.
        obs_dim: size of an observation.
        goal_dim: size of a goal.
        act_dim: size of an action (sets the default ``target_entropy = -act_dim``).
        horizon: episode length ``T`` (sets the default ``gamma = 1 - 1/T``).

    Returns:
        The agent's pure functions.
    """
    gamma = resolve_gamma(cfg, horizon)
    clip_return = resolve_clip_return(cfg, gamma)
    hidden, torso = tuple(cfg.hidden), Torso.of(cfg)
    policy_net = SquashedGaussianActor(
        act_dim=act_dim, hidden=hidden, log_std_min=cfg.log_std_min, log_std_max=cfg.log_std_max, torso=torso
    )
    critic_net = DoubleCritic(max_u=cfg.max_u, hidden=hidden, torso=torso)
    actor_optimizer, critic_optimizer, alpha_optimizer = map(optax.adam, (cfg.pi_lr, cfg.q_lr, cfg.alpha_lr))
    clips = dict(clip_obs=cfg.clip_obs, norm_eps=cfg.norm_eps, norm_clip=cfg.norm_clip)
    policy_sample = functools.partial(sample_policy, policy_apply=policy_net.apply, max_u=cfg.max_u)

    def inputs(state: SACState, obs: jax.Array, goal: jax.Array) -> tuple[jax.Array, jax.Array]:
        check_inputs(obs, goal, obs_dim, goal_dim)
        return normalizer.preprocess(state.obs_stats, state.goal_stats, obs, goal, **clips)

    def init(key: jax.Array) -> SACState:
        policy_key, critic_key = jax.random.split(key)
        obs, goal, action = (jnp.zeros((1, size), jnp.float32) for size in (obs_dim, goal_dim, act_dim))
        policy_params = policy_net.init(policy_key, obs, goal)
        critic_params = critic_net.init(critic_key, obs, goal, action)
        log_alpha = jnp.asarray(math.log(cfg.init_alpha), jnp.float32)
        return SACState(
            actor=policy_params,
            critic=OnlineAndTarget(online=critic_params, target=critic_params),
            log_alpha=log_alpha,
            actor_opt_state=actor_optimizer.init(policy_params),
            critic_opt_state=critic_optimizer.init(critic_params),
            alpha_opt_state=alpha_optimizer.init(log_alpha),
            obs_stats=normalizer.init(obs_dim),
            goal_stats=normalizer.init(goal_dim),
            step=jnp.zeros((), jnp.int32),
        )

    def act(state: SACState, obs: jax.Array, goal: jax.Array, key: jax.Array) -> jax.Array:
        """A sample of the policy: ``[N, obs_dim]``, ``[N, goal_dim]`` -> ``[N, act_dim]``."""
        action, _ = policy_sample(state.actor, *inputs(state, obs, goal), key)
        return action

    def greedy(state: SACState, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """The policy's squashed mean ``max_u * tanh(mu)``: ``[N, act_dim]``."""
        mean, _ = policy_net.apply(state.actor, *inputs(state, obs, goal))
        return cfg.max_u * jnp.tanh(mean)

    def value(state: SACState, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        """The first online critic ``Q_1(o, g, a)`` on raw inputs: ``[N]``."""
        return critic_net.apply(state.critic.online, *inputs(state, obs, goal), action)[0]

    step = functools.partial(
        update_step, policy_sample=policy_sample, critic_apply=critic_net.apply, actor_optimizer=actor_optimizer,
        critic_optimizer=critic_optimizer, alpha_optimizer=alpha_optimizer, gamma=gamma, clip_return=clip_return,
        target_entropy=resolve_target_entropy(cfg, act_dim), huber=cfg.huber, **clips,
    )

    def update(
        state: SACState, transitions: Transitions, key: jax.Array, axis_name: Optional[str] = None
    ) -> tuple[SACState, dict[str, jax.Array]]:
        """One SAC step on ``N`` raw transitions; ``key`` draws its policy samples."""
        check_transitions(transitions, obs_dim, goal_dim, act_dim)
        return step(state, transitions, key, axis_name)

    def end_of_cycle(state: SACState) -> SACState:
        """Moves the critics' targets toward the online critics by ``cfg.polyak`` (there is no target policy)."""
        return state.replace(critic=soft_update(state.critic, cfg.polyak))

    def summary(state: SACState) -> dict[str, jax.Array]:
        """The normaliser statistics (the temperature is already the update metric ``alpha``)."""
        return normalizer.summary(state.obs_stats, state.goal_stats, cfg.norm_eps)

    def update_normalizer(
        state: SACState, obs: jax.Array, goal: jax.Array, axis_name: Optional[str] = None,
        mask: Optional[jax.Array] = None,
    ) -> SACState:
        """Adds clipped raw ``obs [..., obs_dim]`` and ``goal [..., goal_dim]`` to the statistics, as DDPG does."""
        chex.assert_shape([obs, goal], [(..., obs_dim), (..., goal_dim)])
        obs_stats, goal_stats = normalizer.update_inputs(state.obs_stats, state.goal_stats, obs, goal,
                                                         clip_obs=cfg.clip_obs, axis_name=axis_name, mask=mask)
        return state.replace(obs_stats=obs_stats, goal_stats=goal_stats)

    def export(state: SACState) -> dict:
        """``greedy``'s weights: the policy MLP cut to its mean outputs, under ``max_u * tanh``. Host side."""
        layers = export_lib.mlp_layers(state.actor["params"], len(hidden), torso)
        return export_lib.policy_weights(state.obs_stats, state.goal_stats, layers, torso=torso, max_u=cfg.max_u,
                                         out_columns=act_dim, **clips)

    return OffPolicyAgent(
        metric_names=METRIC_NAMES, init=init, act=act, greedy=greedy, value=value, update=update,
        update_normalizer=update_normalizer, end_of_cycle=end_of_cycle, summary=summary, export=export,
    )
