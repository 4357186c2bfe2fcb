"""DDPG for goal-conditioned tasks, faithful to openai/baselines ``her/ddpg.py``, as an ``OffPolicyAgent``.

Network inputs are clipped to ``±clip_obs`` and normalised by running statistics (clipped to ``±norm_clip``); the
critic target is ``clip(r + gamma * Q'(o2, g, pi'(o2, g)), -clip_return, 0)`` with no terminal mask; both
gradients of an update come from the same batch and the same pre-update parameters; target networks move by
Polyak averaging once per cycle (``end_of_cycle``).

    agent = make_ddpg(DDPGConfig(), obs_dim=25, goal_dim=3, act_dim=4, horizon=50)
    state = agent.init(key)
    action = agent.act(state, obs, goal, key)
    state, metrics = jax.jit(agent.update)(state, transitions, key)
"""

from __future__ import annotations

import functools
from typing import Optional

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from herjax.agents.base import TD_ERROR, OffPolicyAgent
from herjax.agents.common import export as export_lib
from herjax.agents.common import normalizer, optim
from herjax.agents.common.collectives import pmean
from herjax.agents.common.config import BCConfig, discount_of, resolve_clip_return, resolve_gamma
from herjax.agents.common.networks import Actor, Critic, Torso
from herjax.agents.common.targets import OnlineAndTarget, soft_update
from herjax.agents.ddpg.config import DDPGConfig
from herjax.agents.ddpg.losses import ActorApply, CriticApply, actor_loss, critic_loss, demo_actor_loss
from herjax.types import Transitions

METRIC_NAMES = ("critic_loss", "actor_loss", "mean_Q")
# With a ``bc`` config: the cloning error summed over the counted demo samples, and the fraction counted.
BC_METRIC_NAMES = ("bc_loss", "bc_kept")


@flax.struct.dataclass
class DDPGState:
    """Everything DDPG learns or accumulates.

    Attributes:
        actor: actor parameters, online and target.
        critic: critic parameters, online and target.
        actor_opt_state: Adam state of the online actor.
        critic_opt_state: Adam state of the online critic.
        obs_stats: running statistics of clipped observations, size ``obs_dim``.
        goal_stats: running statistics of clipped goals, size ``goal_dim``.
        step: ``[]`` int32 number of ``update`` calls.
    """

    actor: OnlineAndTarget
    critic: OnlineAndTarget
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    obs_stats: normalizer.NormalizerState
    goal_stats: normalizer.NormalizerState
    step: jax.Array


def explore(
    action: jax.Array, key: jax.Array, *, max_u: float, noise_eps: float, random_eps: float
) -> jax.Array:
    """Baselines' exploration: adds ``noise_eps * max_u * N(0, 1)``, clips to ``±max_u``, then replaces each row,
    with probability ``random_eps``, by ``U[-max_u, max_u]``. ``[N, A] -> [N, A]``."""
    noise_key, coin_key, random_key = jax.random.split(key, 3)
    action = action + noise_eps * max_u * jax.random.normal(noise_key, action.shape)
    action = jnp.clip(action, -max_u, max_u)
    use_random = jax.random.bernoulli(coin_key, random_eps, action.shape[:1])
    random_action = jax.random.uniform(random_key, action.shape, minval=-max_u, maxval=max_u)
    return jnp.where(use_random[:, None], random_action, action)


def update_step(
    state: DDPGState,
    transitions: Transitions,
    axis_name: Optional[str] = None,
    *,
    actor_apply: ActorApply,
    critic_apply: CriticApply,
    actor_optimizer: optax.GradientTransformation,
    critic_optimizer: optax.GradientTransformation,
    gamma: float,
    clip_return: float,
    action_l2: float,
    max_u: float,
    clip_obs: float,
    norm_eps: float,
    norm_clip: float,
    huber: bool = False,
    bc: Optional[BCConfig] = None,
) -> tuple[DDPGState, dict[str, jax.Array]]:
    """One critic step and one actor step on the same batch.

    Both gradients are taken at the pre-update parameters, as baselines computes them in a single session run
    before applying either; with ``axis_name`` they are averaged over the devices (baselines' MPI Adam).
    ``transitions.weight`` (when set) weights each sample's critic loss; with ``bc`` the actor loss is Nair et
    al.'s (``demo_actor_loss``) on the samples ``transitions.is_demo`` marks (none when it is ``None``).

    Args:
        state: agent state.
        transitions: raw ``Transitions`` with leading dimension ``N``.
        axis_name: the device axis inside ``shard_map``, or ``None``.
        actor_apply: ``(params, obs, goal) -> [N, act_dim]``.
        critic_apply: ``(params, obs, goal, action) -> [N]``.
        actor_optimizer: optimiser of the online actor.
        critic_optimizer: optimiser of the online critic.
        gamma: discount.
        clip_return: magnitude of the lower target clip.
        action_l2: actor action penalty.
        max_u: action bound.
        clip_obs: raw input clip.
        norm_eps: normaliser std floor.
        norm_clip: normalised input clip.
        huber: the critic's Huber loss instead of the squared error.
        bc: the behaviour-cloning loss's weights, or ``None`` (DDPG's actor loss).

    Returns:
        ``(state, metrics)`` with ``[]`` metrics ``critic_loss``, ``actor_loss``, ``mean_Q`` (and with ``bc``
        ``BC_METRIC_NAMES``), averaged over devices; with ``transitions.weight`` also ``TD_ERROR`` ``[N]``.
    """
    norm = functools.partial(
        normalizer.preprocess, state.obs_stats, state.goal_stats,
        clip_obs=clip_obs, norm_eps=norm_eps, norm_clip=norm_clip,
    )
    obs, goal = norm(transitions.obs, transitions.desired_goal)
    # The next goal is the same goal; only the observation changes.
    next_obs, _ = norm(transitions.next_obs, transitions.desired_goal)

    (c_loss, c_aux), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic.online, state.actor.target, state.critic.target, obs, goal, transitions.action,
        transitions.reward, next_obs, actor_apply=actor_apply, critic_apply=critic_apply,
        gamma=discount_of(transitions, gamma), clip_return=clip_return, weight=transitions.weight, huber=huber,
    )
    a_loss, actor_grads, bc_metrics = actor_value_and_grad(
        state.actor.online, state.critic.online, obs, goal, transitions, bc=bc, actor_apply=actor_apply,
        critic_apply=critic_apply, action_l2=action_l2, max_u=max_u,
    )
    critic_grads, actor_grads = pmean((critic_grads, actor_grads), axis_name)
    critic_params, critic_opt_state = optim.apply(
        critic_optimizer, state.critic.online, critic_grads, state.critic_opt_state
    )
    actor_params, actor_opt_state = optim.apply(actor_optimizer, state.actor.online, actor_grads, state.actor_opt_state)
    new_state = state.replace(
        critic=state.critic._replace(online=critic_params),
        actor=state.actor._replace(online=actor_params),
        critic_opt_state=critic_opt_state,
        actor_opt_state=actor_opt_state,
        step=state.step + 1,
    )
    metrics = {"critic_loss": c_loss, "actor_loss": a_loss, "mean_Q": jnp.mean(c_aux.q), **bc_metrics}
    return new_state, with_td_error(pmean(metrics, axis_name), transitions, c_aux.td_error)


def actor_value_and_grad(
    actor_params: chex.ArrayTree, critic_params: chex.ArrayTree, obs: jax.Array, goal: jax.Array,
    transitions: Transitions, *, bc: Optional[BCConfig], actor_apply: ActorApply, critic_apply: CriticApply,
    action_l2: float, max_u: float,
) -> tuple[jax.Array, chex.ArrayTree, dict[str, jax.Array]]:
    """DDPG's actor loss (``actor_loss``) and its gradient, or with ``bc`` Nair et al.'s (``demo_actor_loss`` on the
    demo samples of ``transitions``). ``obs`` and ``goal`` are the batch's normalised inputs.

    Returns:
        ``([] loss, actor gradient, metrics)``: ``metrics`` are ``BC_METRIC_NAMES`` with ``bc``, else empty.
    """
    nets = dict(actor_apply=actor_apply, critic_apply=critic_apply, action_l2=action_l2, max_u=max_u)
    if bc is None:
        loss, grads = jax.value_and_grad(actor_loss)(actor_params, critic_params, obs, goal, **nets)
        return loss, grads, {}
    (loss, aux), grads = jax.value_and_grad(demo_actor_loss, has_aux=True)(
        actor_params, critic_params, obs, goal, transitions.action, demo_mask(transitions),
        prm_loss_weight=bc.prm_loss_weight, aux_loss_weight=bc.aux_loss_weight, q_filter=bc.q_filter, **nets,
    )
    return loss, grads, aux._asdict()


def demo_mask(transitions: Transitions) -> jax.Array:
    """``[N]`` bool: ``transitions.is_demo``, or all False when the batch has no demo samples."""
    if transitions.is_demo is None:
        return jnp.zeros(transitions.reward.shape, bool)
    return transitions.is_demo


def with_td_error(metrics: dict, transitions: Transitions, td_error: jax.Array) -> dict:
    """``metrics`` plus ``TD_ERROR`` (this device's per-sample ``[N]``) when the batch is prioritised (has
    ``weight``): what the loop needs for new priorities."""
    return metrics if transitions.weight is None else {**metrics, TD_ERROR: td_error}


def check_inputs(obs: jax.Array, goal: jax.Array, obs_dim: int, goal_dim: int) -> None:
    """``obs [N, obs_dim]`` and ``goal [N, goal_dim]`` with one ``N``, or a chex error naming the mismatch."""
    chex.assert_rank([obs, goal], 2)
    chex.assert_axis_dimension(obs, 1, obs_dim)
    chex.assert_axis_dimension(goal, 1, goal_dim)
    chex.assert_equal_shape_prefix([obs, goal], 1)


def check_transitions(transitions: Transitions, obs_dim: int, goal_dim: int, act_dim: int) -> None:
    """Every field of ``transitions`` has the agent's sizes and one leading ``N``."""
    n = transitions.reward.shape[0]
    chex.assert_shape(transitions.reward, (n,))
    chex.assert_shape([transitions.obs, transitions.next_obs], (n, obs_dim))
    chex.assert_shape(transitions.desired_goal, (n, goal_dim))
    chex.assert_shape(transitions.action, (n, act_dim))
    if transitions.is_demo is not None:
        chex.assert_shape(transitions.is_demo, (n,))
        chex.assert_type(transitions.is_demo, bool)
    if transitions.weight is not None:
        chex.assert_shape(transitions.weight, (n,))


def make_ddpg(
    cfg: DDPGConfig, *, obs_dim: int, goal_dim: int, act_dim: int, horizon: int, bc: Optional[BCConfig] = None
) -> OffPolicyAgent:
    """Builds a DDPG agent for fixed input/output sizes.

    Args:
        cfg: hyperparameters.
        obs_dim: observation size.
        goal_dim: goal size.
        act_dim: action size.
        horizon: episode length ``T`` (sets the default ``gamma``).
        bc: learning from demonstrations: the actor also clones the batch's demo samples (``demo_actor_loss``);
            ``None``: DDPG's actor loss.

    Returns:
        An ``OffPolicyAgent``.
    """
    gamma = resolve_gamma(cfg, horizon)
    clip_return = resolve_clip_return(cfg, gamma)
    hidden, torso = tuple(cfg.hidden), Torso.of(cfg)
    actor_net = Actor(act_dim=act_dim, max_u=cfg.max_u, hidden=hidden, torso=torso)
    critic_net = Critic(max_u=cfg.max_u, hidden=hidden, torso=torso)
    actor_optimizer = optax.adam(cfg.pi_lr)
    critic_optimizer = optax.adam(cfg.q_lr)
    input_clips = dict(clip_obs=cfg.clip_obs, norm_eps=cfg.norm_eps, norm_clip=cfg.norm_clip)
    inputs = lambda state, obs, goal: normalizer.preprocess(state.obs_stats, state.goal_stats, obs, goal,
                                                            **input_clips)

    def init(key: jax.Array) -> DDPGState:
        actor_key, critic_key = jax.random.split(key)
        obs = jnp.zeros((1, obs_dim), jnp.float32)
        goal = jnp.zeros((1, goal_dim), jnp.float32)
        action = jnp.zeros((1, act_dim), jnp.float32)
        actor_params = actor_net.init(actor_key, obs, goal)
        critic_params = critic_net.init(critic_key, obs, goal, action)
        return DDPGState(
            actor=OnlineAndTarget(online=actor_params, target=actor_params),
            critic=OnlineAndTarget(online=critic_params, target=critic_params),
            actor_opt_state=actor_optimizer.init(actor_params),
            critic_opt_state=critic_optimizer.init(critic_params),
            obs_stats=normalizer.init(obs_dim),
            goal_stats=normalizer.init(goal_dim),
            step=jnp.zeros((), jnp.int32),
        )

    def greedy(state: DDPGState, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """``[N, obs_dim]``, ``[N, goal_dim]`` -> the online actor's ``[N, act_dim]``."""
        check_inputs(obs, goal, obs_dim, goal_dim)
        return actor_net.apply(state.actor.online, *inputs(state, obs, goal))

    def act(state: DDPGState, obs: jax.Array, goal: jax.Array, key: jax.Array) -> jax.Array:
        """The greedy action with baselines' exploration (``explore``)."""
        return explore(greedy(state, obs, goal), key, max_u=cfg.max_u, noise_eps=cfg.noise_eps,
                       random_eps=cfg.random_eps)

    def value(state: DDPGState, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        """The online critic ``Q(o, g, a)`` on raw inputs: ``[N]``."""
        return critic_net.apply(state.critic.online, *inputs(state, obs, goal), action)

    step = functools.partial(
        update_step, actor_apply=actor_net.apply, critic_apply=critic_net.apply, actor_optimizer=actor_optimizer,
        critic_optimizer=critic_optimizer, gamma=gamma, clip_return=clip_return, action_l2=cfg.action_l2,
        max_u=cfg.max_u, huber=cfg.huber, bc=bc, **input_clips,
    )

    def update(
        state: DDPGState, transitions: Transitions, key: Optional[jax.Array] = None, axis_name: Optional[str] = None
    ) -> tuple[DDPGState, dict[str, jax.Array]]:
        """One DDPG step on ``N`` raw transitions (``key`` is unused: DDPG's update is deterministic)."""
        check_transitions(transitions, obs_dim, goal_dim, act_dim)
        return step(state, transitions, axis_name)

    def end_of_cycle(state: DDPGState) -> DDPGState:
        """Moves both targets toward the online networks by ``cfg.polyak``."""
        return state.replace(actor=soft_update(state.actor, cfg.polyak), critic=soft_update(state.critic, cfg.polyak))

    def update_normalizer(
        state: DDPGState, obs: jax.Array, goal: jax.Array, axis_name: Optional[str] = None,
        mask: Optional[jax.Array] = None,
    ) -> DDPGState:
        """Adds clipped raw ``obs [..., obs_dim]`` and ``goal [..., goal_dim]`` to the statistics (baselines feeds
        HER-resampled transitions of the episodes just stored, so the goals reflect relabelling)."""
        chex.assert_axis_dimension(obs, -1, obs_dim)
        chex.assert_axis_dimension(goal, -1, goal_dim)
        obs_stats, goal_stats = normalizer.update_inputs(
            state.obs_stats, state.goal_stats, obs, goal, clip_obs=cfg.clip_obs, axis_name=axis_name, mask=mask
        )
        return state.replace(obs_stats=obs_stats, goal_stats=goal_stats)

    def summary(state: DDPGState) -> dict[str, jax.Array]:
        return normalizer.summary(state.obs_stats, state.goal_stats, cfg.norm_eps)

    def export(state: DDPGState) -> dict:
        """``greedy``'s weights (the online actor's; ``herjax.agents.common.export``). Host side."""
        layers = export_lib.mlp_layers(state.actor.online["params"], len(hidden), torso)
        return export_lib.policy_weights(state.obs_stats, state.goal_stats, layers, torso=torso, max_u=cfg.max_u,
                                         **input_clips)

    return OffPolicyAgent(
        init=init, act=act, greedy=greedy, value=value, update=update, end_of_cycle=end_of_cycle,
        update_normalizer=update_normalizer, summary=summary, export=export,
        metric_names=METRIC_NAMES + (BC_METRIC_NAMES if bc is not None else ()),
    )
