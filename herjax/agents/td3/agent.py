"""TD3 (Fujimoto et al. 2018) on baselines HER's DDPG for goal-conditioned tasks, as an ``OffPolicyAgent``.

TD3 changes three things in DDPG's update: two critics, each regressed on the smaller of the two target critics
(clipped double Q); target actions smoothed by clipped Gaussian noise; and an actor that steps on every
``policy_delay``-th update only, on the first critic. Everything else is DDPG+HER's: the actor and its inputs,
the exploration, the normaliser and the once-per-cycle Polyak step of every target network. So ``make_td3`` takes
``act``, ``greedy``, ``end_of_cycle``, ``update_normalizer``, ``summary`` and ``export`` from ``make_ddpg`` and
replaces ``init``, ``value`` and ``update``. It is used as DDPG is, except that ``update`` needs its key:

    agent = make_td3(TD3Config(), obs_dim=25, goal_dim=3, act_dim=4, horizon=50)
    state, metrics = jax.jit(agent.update)(agent.init(key), transitions, noise_key)
"""

from __future__ import annotations

import functools
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import optax

from herjax.agents.base import OffPolicyAgent
from herjax.agents.common import normalizer, optim
from herjax.agents.common.collectives import pmean
from herjax.agents.common.config import BCConfig, discount_of, resolve_clip_return, resolve_gamma
from herjax.agents.common.networks import Actor, DoubleCritic, Torso
from herjax.agents.common.targets import OnlineAndTarget
from herjax.agents.ddpg.agent import (
    BC_METRIC_NAMES, DDPGState, actor_value_and_grad, check_transitions, make_ddpg, with_td_error,
)
from herjax.agents.ddpg.losses import ActorApply
from herjax.agents.td3.config import TD3Config
from herjax.agents.td3.losses import DoubleCriticApply, first_critic, twin_critic_loss
from herjax.types import Transitions

METRIC_NAMES = ("critic_loss", "actor_loss", "mean_Q")


@flax.struct.dataclass
class TD3State(DDPGState):
    """``DDPGState`` whose ``critic`` and ``critic_opt_state`` are a ``DoubleCritic``'s: every parameter leaf has
    a leading axis of size 2, one slice per critic. ``step`` counts ``update`` calls and sets the actor's turns."""


def update_step(
    state: TD3State,
    transitions: Transitions,
    key: jax.Array,
    axis_name: Optional[str] = None,
    *,
    actor_apply: ActorApply,
    critic_apply: DoubleCriticApply,
    actor_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
    policy_delay: int,
    gamma: float,
    clip_return: float,
    action_l2: float,
    max_u: float,
    target_noise: float,
    target_noise_clip: float,
    clip_obs: float,
    norm_eps: float,
    norm_clip: float,
    huber: bool = False,
    bc: Optional[BCConfig] = None,
) -> tuple[TD3State, dict[str, jax.Array]]:
    """One step of both critics, and one of the actor when ``(state.step + 1) % policy_delay == 0``.

    As in Fujimoto's reference code and SB3, the critics step first and the actor's gradient is taken at the
    updated first critic. That gradient is computed on every call and its step kept or dropped by a select, so
    the function has no data-dependent branch; a dropped step leaves the actor and its Adam state (and Adam's
    step count) as they were. With ``axis_name`` both gradients are averaged over the devices, as DDPG's are.
    ``transitions.weight``, ``huber`` and ``bc`` act as in DDPG's ``update_step``; the Q-filter reads the first
    critic, the one the actor is trained on.

    Args:
        state: agent state.
        transitions: raw ``Transitions`` with leading dimension ``N``.
        key: PRNG key of the target smoothing noise.
        axis_name: the device axis inside ``shard_map``, or ``None``.
        actor_apply: ``(params, obs, goal) -> [N, act_dim]``.
        critic_apply: ``(params, obs, goal, action) -> [2, N]``.
        actor_optimizer: optimiser of the online actor.
        critic_optimizer: optimiser of the online critics.
        policy_delay: the actor steps when ``state.step + 1`` (this update's count) is a multiple of it.
        gamma: discount.
        clip_return: magnitude of the lower target clip.
        action_l2: actor action penalty.
        max_u: action bound.
        target_noise: smoothing noise std, in units of ``max_u``.
        target_noise_clip: smoothing noise bound, in units of ``max_u``.
        clip_obs: raw input clip.
        norm_eps: normaliser std floor.
        norm_clip: normalised input clip.
        huber: the critics' Huber loss instead of the squared error.
        bc: the behaviour-cloning loss's weights, or ``None`` (DDPG's actor loss).

    Returns:
        ``(state, metrics)``: ``[]`` metrics ``critic_loss`` (summed over the critics), ``actor_loss`` (also when
        its step is dropped) and ``mean_Q`` (the first critic on the batch, before the step), with ``bc`` also
        ``BC_METRIC_NAMES``, averaged over devices; with ``transitions.weight`` also ``TD_ERROR`` ``[N]``.
    """
    # o and o2 share the goal, so they go through the normaliser together.
    both_obs, goal = normalizer.preprocess(
        state.obs_stats, state.goal_stats, jnp.stack([transitions.obs, transitions.next_obs]),
        transitions.desired_goal, clip_obs=clip_obs, norm_eps=norm_eps, norm_clip=norm_clip,
    )
    obs, next_obs = both_obs[0], both_obs[1]
    (c_loss, c_aux), critic_grads = jax.value_and_grad(twin_critic_loss, has_aux=True)(
        state.critic.online, state.actor.target, state.critic.target, obs, goal, transitions.action,
        transitions.reward, next_obs, key, actor_apply=actor_apply, critic_apply=critic_apply,
        gamma=discount_of(transitions, gamma), clip_return=clip_return, max_u=max_u, target_noise=target_noise, target_noise_clip=target_noise_clip,
        weight=transitions.weight, huber=huber,
    )
    critic_params, critic_opt_state = optim.apply(
        critic_optimizer, state.critic.online, pmean(critic_grads, axis_name), state.critic_opt_state
    )
    a_loss, actor_grads, bc_metrics = actor_value_and_grad(
        state.actor.online, critic_params, obs, goal, transitions, bc=bc, actor_apply=actor_apply,
        critic_apply=first_critic(critic_apply), action_l2=action_l2, max_u=max_u,
    )
    stepped = optim.apply(actor_optimizer, state.actor.online, pmean(actor_grads, axis_name), state.actor_opt_state)
    actor_turn = (state.step + 1) % policy_delay == 0  # as Fujimoto's code and SB3 count: the first at update policy_delay
    actor_params, actor_opt_state = jax.tree.map(
        lambda new, old: jnp.where(actor_turn, new, old), stepped, (state.actor.online, state.actor_opt_state)
    )
    metrics = {**dict(zip(METRIC_NAMES, (c_loss, a_loss, jnp.mean(c_aux.q[0])))), **bc_metrics}
    return state.replace(
        actor=state.actor._replace(online=actor_params), critic=state.critic._replace(online=critic_params),
        actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state, step=state.step + 1,
    ), with_td_error(pmean(metrics, axis_name), transitions, c_aux.td_error)


def make_td3(
    cfg: TD3Config, *, obs_dim: int, goal_dim: int, act_dim: int, horizon: int, bc: Optional[BCConfig] = None
) -> OffPolicyAgent:
    """Builds a TD3 agent from the arguments ``make_ddpg`` takes (``cfg`` a ``TD3Config``; ``bc``: learning from
    demonstrations, as DDPG's).

    Returns:
        An ``OffPolicyAgent`` whose ``update(state, transitions, key, axis_name=None)`` needs its ``key`` (the
        target smoothing noise); ``act``, ``greedy``, ``end_of_cycle``, ``update_normalizer``, ``summary`` and
        ``export`` are DDPG's (``make_ddpg``), which act on a ``TD3State`` as on the ``DDPGState`` it extends.
    """
    ddpg = make_ddpg(cfg, obs_dim=obs_dim, goal_dim=goal_dim, act_dim=act_dim, horizon=horizon)
    gamma = resolve_gamma(cfg, horizon)
    # The same actor as DDPG's, so that DDPG's greedy and act read these parameters.
    torso = Torso.of(cfg)
    actor_net = Actor(act_dim=act_dim, max_u=cfg.max_u, hidden=tuple(cfg.hidden), torso=torso)
    critic_net = DoubleCritic(max_u=cfg.max_u, hidden=tuple(cfg.hidden), torso=torso)
    actor_optimizer, critic_optimizer = optax.adam(cfg.pi_lr), optax.adam(cfg.q_lr)
    input_clips = dict(clip_obs=cfg.clip_obs, norm_eps=cfg.norm_eps, norm_clip=cfg.norm_clip)
    q1 = first_critic(critic_net.apply)

    def init(key: jax.Array) -> TD3State:
        actor_key, critic_key = jax.random.split(key)
        obs, goal, action = (jnp.zeros((1, size), jnp.float32) for size in (obs_dim, goal_dim, act_dim))
        actor, critic = actor_net.init(actor_key, obs, goal), critic_net.init(critic_key, obs, goal, action)
        return TD3State(
            actor=OnlineAndTarget(actor, actor), critic=OnlineAndTarget(critic, critic),
            actor_opt_state=actor_optimizer.init(actor), critic_opt_state=critic_optimizer.init(critic),
            obs_stats=normalizer.init(obs_dim), goal_stats=normalizer.init(goal_dim), step=jnp.zeros((), jnp.int32),
        )

    def value(state: TD3State, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        """The first online critic ``Q1(o, g, a)`` on raw inputs: ``[N]``."""
        inputs = normalizer.preprocess(state.obs_stats, state.goal_stats, obs, goal, **input_clips)
        return q1(state.critic.online, *inputs, action)

    step = functools.partial(
        update_step, actor_apply=actor_net.apply, critic_apply=critic_net.apply, actor_optimizer=actor_optimizer,
        critic_optimizer=critic_optimizer, policy_delay=cfg.policy_delay, gamma=gamma,
        clip_return=resolve_clip_return(cfg, gamma), action_l2=cfg.action_l2, max_u=cfg.max_u,
        target_noise=cfg.target_noise, target_noise_clip=cfg.target_noise_clip, huber=cfg.huber, bc=bc,
        **input_clips,
    )

    def update(
        state: TD3State, transitions: Transitions, key: jax.Array, axis_name: Optional[str] = None
    ) -> tuple[TD3State, dict[str, jax.Array]]:
        """One TD3 step on ``N`` raw transitions (``update_step``); ``key`` draws the target smoothing noise."""
        check_transitions(transitions, obs_dim, goal_dim, act_dim)
        return step(state, transitions, key, axis_name)

    metric_names = METRIC_NAMES + (BC_METRIC_NAMES if bc is not None else ())
    return ddpg._replace(init=init, value=value, update=update, metric_names=metric_names)
