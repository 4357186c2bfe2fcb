"""DDPG for goal-conditioned tasks, faithful to openai/baselines ``her/ddpg.py``.

Network inputs are clipped to ``±clip_obs`` and normalised by running
statistics (clipped to ``±norm_clip``); the critic target is
``clip(r + gamma * Q'(o2, g, pi'(o2, g)), -clip_return, 0)`` with no terminal
mask; both gradients of an update come from the same batch and the same
pre-update parameters; target networks move by Polyak averaging once per call
to ``target_update`` (baselines: once per cycle).

Typical use::

    agent = make_ddpg(DDPGConfig(), obs_dim=25, goal_dim=3, act_dim=4, horizon=50)
    state = agent.init(key)
    act = jax.jit(agent.act, static_argnames="deterministic")
    update = jax.jit(agent.update)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple, Optional, Sequence, Union

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from herjax.agents import normalizer
from herjax.agents.networks import Actor, Critic
from herjax.replay.her import Transitions

ActorApply = Callable[[chex.ArrayTree, jax.Array, jax.Array], jax.Array]
CriticApply = Callable[[chex.ArrayTree, jax.Array, jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class DDPGConfig:
    """Hyperparameters; defaults are baselines' ``her`` defaults.

    Attributes:
        hidden: hidden layer sizes of actor and critic.
        pi_lr: actor Adam learning rate.
        q_lr: critic Adam learning rate.
        polyak: target ``= polyak * target + (1 - polyak) * online``.
        batch_size: transitions per update.
        n_batches: updates per cycle (used by a trainer).
        action_l2: weight of the squared-action penalty in the actor loss.
        gamma: discount; ``None`` means ``1 - 1 / horizon``.
        clip_return: ``True`` clips targets to ``[-1 / (1 - gamma), 0]``;
            ``False`` to ``[-inf, 0]``; a float ``c`` to ``[-c, 0]``.
        noise_eps: std of Gaussian exploration noise, in units of ``max_u``.
        random_eps: probability of a uniformly random action.
        clip_obs: observations and goals are clipped to ``±clip_obs``.
        norm_eps: std floor of the normalisers.
        norm_clip: normalised inputs are clipped to ``±norm_clip``.
        max_u: action bound.
        replay_strategy: HER strategy (used by a trainer).
        replay_k: relabelled goals per original goal (used by a trainer).
        buffer_size: replay capacity in transitions (used by a trainer).
    """

    hidden: Sequence[int] = (256, 256, 256)
    pi_lr: float = 1e-3
    q_lr: float = 1e-3
    polyak: float = 0.95
    batch_size: int = 256
    n_batches: int = 40
    action_l2: float = 1.0
    gamma: Optional[float] = None
    clip_return: Union[bool, float] = True
    noise_eps: float = 0.2
    random_eps: float = 0.3
    clip_obs: float = 200.0
    norm_eps: float = 0.01
    norm_clip: float = 5.0
    max_u: float = 1.0
    replay_strategy: str = "future"
    replay_k: int = 4
    buffer_size: int = 1_000_000


def resolve_gamma(cfg: DDPGConfig, horizon: int) -> float:
    """``cfg.gamma``, or ``1 - 1 / horizon`` when it is ``None`` (baselines)."""
    return 1.0 - 1.0 / horizon if cfg.gamma is None else float(cfg.gamma)


def resolve_clip_return(cfg: DDPGConfig, gamma: float) -> float:
    """Magnitude of the lower target clip (baselines: ``1 / (1 - gamma)`` or inf)."""
    if isinstance(cfg.clip_return, bool):
        return 1.0 / (1.0 - gamma) if cfg.clip_return else float("inf")
    return float(cfg.clip_return)


class OnlineAndTarget(NamedTuple):
    """Parameters of a network and of its slowly moving target copy."""

    online: chex.ArrayTree
    target: chex.ArrayTree


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


class CriticAux(NamedTuple):
    """Side outputs of ``critic_loss``: ``q [N]`` and ``target_q [N]``."""

    q: jax.Array
    target_q: jax.Array


class DDPGAgent(NamedTuple):
    """Pure functions of a DDPG agent (see ``make_ddpg``).

    Attributes:
        init: ``(key) -> DDPGState``.
        act: ``(state, obs [N, obs_dim], goal [N, goal_dim], key, deterministic) ->
            action [N, act_dim]``; ``deterministic`` must be static under jit.
        update: ``(state, transitions [N]) -> (state, metrics)``; metrics hold
            ``critic_loss``, ``actor_loss``, ``mean_q`` (each ``[]``).
        target_update: ``(state) -> state``, one Polyak step of both targets.
        update_normalizer: ``(state, transitions) -> state``, adds the
            transitions' ``obs`` and ``desired_goal`` to the statistics.
    """

    init: Callable[[jax.Array], DDPGState]
    act: Callable[..., jax.Array]
    update: Callable[[DDPGState, Transitions], tuple[DDPGState, dict]]
    target_update: Callable[[DDPGState], DDPGState]
    update_normalizer: Callable[[DDPGState, Transitions], DDPGState]


def td_target(
    reward: jax.Array, next_q: jax.Array, *, gamma: float, clip_return: float
) -> jax.Array:
    """Clipped one-step target ``clip(r + gamma * next_q, -clip_return, 0)``.

    No terminal mask: goal-conditioned episodes end by time limit only, as in
    baselines. The upper clip at 0 holds because rewards are in ``{-1, 0}``.

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
        goal: ``[N, goal_dim]`` normalised goals (also the next goal: a goal is
            fixed within an episode).
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
    target_q = jax.lax.stop_gradient(
        td_target(reward, next_q, gamma=gamma, clip_return=clip_return)
    )
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


def preprocess(
    obs_stats: normalizer.NormalizerState,
    goal_stats: normalizer.NormalizerState,
    obs: jax.Array,
    goal: jax.Array,
    *,
    clip_obs: float,
    norm_eps: float,
    norm_clip: float,
) -> tuple[jax.Array, jax.Array]:
    """Clips raw ``obs [..., obs_dim]``, ``goal [..., goal_dim]`` and normalises them."""
    obs = jnp.clip(obs, -clip_obs, clip_obs)
    goal = jnp.clip(goal, -clip_obs, clip_obs)
    return (
        normalizer.normalize(obs_stats, obs, norm_clip, norm_eps),
        normalizer.normalize(goal_stats, goal, norm_clip, norm_eps),
    )


def polyak_update(
    target: chex.ArrayTree, online: chex.ArrayTree, polyak: float
) -> chex.ArrayTree:
    """``polyak * target + (1 - polyak) * online``, leaf by leaf."""
    return jax.tree.map(lambda t, o: polyak * t + (1.0 - polyak) * o, target, online)


def select_action(
    state: DDPGState,
    obs: jax.Array,
    goal: jax.Array,
    key: jax.Array,
    *,
    deterministic: bool,
    actor_apply: ActorApply,
    clip_obs: float,
    norm_eps: float,
    norm_clip: float,
    max_u: float,
    noise_eps: float,
    random_eps: float,
) -> jax.Array:
    """Online-actor actions with baselines' exploration.

    Exploration adds ``noise_eps * max_u * N(0, 1)``, clips to ``±max_u``, then
    replaces each row, with probability ``random_eps``, by ``U[-max_u, max_u]``.

    Args:
        state: agent state.
        obs: ``[N, obs_dim]`` raw observations.
        goal: ``[N, goal_dim]`` raw desired goals.
        key: PRNG key (unused when deterministic).
        deterministic: static; ``True`` returns the policy's action.
        actor_apply: ``(params, obs, goal) -> [N, act_dim]``.
        clip_obs: raw input clip.
        norm_eps: normaliser std floor.
        norm_clip: normalised input clip.
        max_u: action bound.
        noise_eps: Gaussian noise scale.
        random_eps: probability of a random action.

    Returns:
        ``[N, act_dim]`` actions in ``[-max_u, max_u]``.
    """
    obs_n, goal_n = preprocess(
        state.obs_stats, state.goal_stats, obs, goal,
        clip_obs=clip_obs, norm_eps=norm_eps, norm_clip=norm_clip,
    )
    action = actor_apply(state.actor.online, obs_n, goal_n)
    if deterministic:
        return action
    noise_key, coin_key, random_key = jax.random.split(key, 3)
    action = action + noise_eps * max_u * jax.random.normal(noise_key, action.shape)
    action = jnp.clip(action, -max_u, max_u)
    use_random = jax.random.bernoulli(coin_key, random_eps, action.shape[:1])
    random_action = jax.random.uniform(
        random_key, action.shape, minval=-max_u, maxval=max_u
    )
    return jnp.where(use_random[:, None], random_action, action)


def update_step(
    state: DDPGState,
    transitions: Transitions,
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
) -> tuple[DDPGState, dict[str, jax.Array]]:
    """One critic step and one actor step on the same batch.

    Both gradients are taken at the pre-update parameters, as baselines
    computes them in a single session run before applying either.

    Args:
        state: agent state.
        transitions: raw ``Transitions`` with leading dimension ``N``.
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

    Returns:
        ``(state, metrics)`` with ``[]`` metrics ``critic_loss``, ``actor_loss``, ``mean_q``.
    """
    norm = functools.partial(
        preprocess, state.obs_stats, state.goal_stats,
        clip_obs=clip_obs, norm_eps=norm_eps, norm_clip=norm_clip,
    )
    obs, goal = norm(transitions.obs, transitions.desired_goal)
    # The next goal is the same goal; only the observation changes.
    next_obs, _ = norm(transitions.next_obs, transitions.desired_goal)

    (c_loss, c_aux), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(
        state.critic.online,
        state.actor.target,
        state.critic.target,
        obs,
        goal,
        transitions.action,
        transitions.reward,
        next_obs,
        actor_apply=actor_apply,
        critic_apply=critic_apply,
        gamma=gamma,
        clip_return=clip_return,
    )
    a_loss, actor_grads = jax.value_and_grad(actor_loss)(
        state.actor.online,
        state.critic.online,
        obs,
        goal,
        actor_apply=actor_apply,
        critic_apply=critic_apply,
        action_l2=action_l2,
        max_u=max_u,
    )

    critic_updates, critic_opt_state = critic_optimizer.update(
        critic_grads, state.critic_opt_state, state.critic.online
    )
    actor_updates, actor_opt_state = actor_optimizer.update(
        actor_grads, state.actor_opt_state, state.actor.online
    )
    new_state = state.replace(
        critic=state.critic._replace(
            online=optax.apply_updates(state.critic.online, critic_updates)
        ),
        actor=state.actor._replace(
            online=optax.apply_updates(state.actor.online, actor_updates)
        ),
        critic_opt_state=critic_opt_state,
        actor_opt_state=actor_opt_state,
        step=state.step + 1,
    )
    metrics = {
        "critic_loss": c_loss,
        "actor_loss": a_loss,
        "mean_q": jnp.mean(c_aux.q),
    }
    return new_state, metrics


def make_ddpg(
    cfg: DDPGConfig, *, obs_dim: int, goal_dim: int, act_dim: int, horizon: int
) -> DDPGAgent:
    """Builds a DDPG agent for fixed input/output sizes.

    Args:
        cfg: hyperparameters.
        obs_dim: observation size.
        goal_dim: goal size.
        act_dim: action size.
        horizon: episode length ``T`` (sets the default ``gamma``).

    Returns:
        ``DDPGAgent(init, act, update, target_update, update_normalizer)``.
    """
    gamma = resolve_gamma(cfg, horizon)
    clip_return = resolve_clip_return(cfg, gamma)
    hidden = tuple(cfg.hidden)
    actor_net = Actor(act_dim=act_dim, max_u=cfg.max_u, hidden=hidden)
    critic_net = Critic(max_u=cfg.max_u, hidden=hidden)
    actor_optimizer = optax.adam(cfg.pi_lr)
    critic_optimizer = optax.adam(cfg.q_lr)
    input_clips = dict(clip_obs=cfg.clip_obs, norm_eps=cfg.norm_eps, norm_clip=cfg.norm_clip)

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

    select = functools.partial(
        select_action,
        actor_apply=actor_net.apply,
        max_u=cfg.max_u,
        noise_eps=cfg.noise_eps,
        random_eps=cfg.random_eps,
        **input_clips,
    )

    def act(
        state: DDPGState,
        obs: jax.Array,
        goal: jax.Array,
        key: jax.Array,
        deterministic: bool = False,
    ) -> jax.Array:
        """``[N, obs_dim]``, ``[N, goal_dim]`` -> ``[N, act_dim]``; see ``select_action``."""
        chex.assert_rank([obs, goal], 2)
        chex.assert_axis_dimension(obs, 1, obs_dim)
        chex.assert_axis_dimension(goal, 1, goal_dim)
        chex.assert_equal_shape_prefix([obs, goal], 1)
        return select(state, obs, goal, key, deterministic=deterministic)

    step = functools.partial(
        update_step,
        actor_apply=actor_net.apply,
        critic_apply=critic_net.apply,
        actor_optimizer=actor_optimizer,
        critic_optimizer=critic_optimizer,
        gamma=gamma,
        clip_return=clip_return,
        action_l2=cfg.action_l2,
        max_u=cfg.max_u,
        **input_clips,
    )

    def _check_transitions(transitions: Transitions) -> None:
        n = transitions.reward.shape[0]
        chex.assert_shape(transitions.reward, (n,))
        chex.assert_shape([transitions.obs, transitions.next_obs], (n, obs_dim))
        chex.assert_shape(transitions.desired_goal, (n, goal_dim))
        chex.assert_shape(transitions.action, (n, act_dim))

    def update(
        state: DDPGState, transitions: Transitions
    ) -> tuple[DDPGState, dict[str, jax.Array]]:
        """One DDPG step on ``N`` raw transitions; see ``update_step``."""
        _check_transitions(transitions)
        return step(state, transitions)

    def target_update(state: DDPGState) -> DDPGState:
        """Moves both targets toward the online networks by ``cfg.polyak``."""
        return state.replace(
            actor=state.actor._replace(
                target=polyak_update(state.actor.target, state.actor.online, cfg.polyak)
            ),
            critic=state.critic._replace(
                target=polyak_update(state.critic.target, state.critic.online, cfg.polyak)
            ),
        )

    def update_normalizer(state: DDPGState, transitions: Transitions) -> DDPGState:
        """Adds clipped ``obs [N, obs_dim]`` and ``desired_goal [N, goal_dim]`` to the stats.

        Baselines feeds HER-resampled transitions of the episodes just stored
        (``rollout_batch_size * T`` of them), so goals reflect relabelling.
        """
        chex.assert_axis_dimension(transitions.obs, -1, obs_dim)
        chex.assert_axis_dimension(transitions.desired_goal, -1, goal_dim)
        obs = jnp.clip(transitions.obs, -cfg.clip_obs, cfg.clip_obs)
        goal = jnp.clip(transitions.desired_goal, -cfg.clip_obs, cfg.clip_obs)
        return state.replace(
            obs_stats=normalizer.update(state.obs_stats, obs),
            goal_stats=normalizer.update(state.goal_stats, goal),
        )

    return DDPGAgent(
        init=init,
        act=act,
        update=update,
        target_update=target_update,
        update_normalizer=update_normalizer,
    )
