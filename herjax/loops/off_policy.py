"""DDPG+HER training composed into one compiled epoch, with baselines' ``her/train.py`` structure.

A **cycle** (``train_cycle``): collect one episode in each of ``num_envs`` envs with the exploring policy; store
them; update the input normaliser with ``num_envs * T`` HER-resampled transitions of just those episodes; run
``n_batches`` updates, each on a fresh HER batch of ``batch_size`` from the whole buffer; then one Polyak step of
the target networks.

An **epoch** (``run_epoch``): ``n_cycles`` cycles in a ``lax.scan``, then ``n_test_rollouts * num_envs``
deterministic episodes (``evaluate``), all under one ``jax.jit``. Everything here is a pure function of a
``TrainState``; the host loop (``herjax.train``) only calls ``run_epoch`` and logs.

    trainer = make_train(cfg, env)
    state = trainer.init(jax.random.key(cfg.seed))
    state, metrics = trainer.run_epoch(state)     # compiled once; later epochs reuse it
"""

from __future__ import annotations

import collections
import functools
from typing import Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp

from herjax.agents import normalizer
from herjax.agents.ddpg import DDPGAgent, DDPGConfig, DDPGState, make_ddpg, preprocess
from herjax.agents.networks import Critic
from herjax.config import TrainConfig
from herjax.envs.fetch import FetchEnv
from herjax.replay.her import (
    BufferState,
    HerBuffer,
    future_p_from_replay_k,
    make_her_buffer,
    sample_her_transitions,
)
from herjax.rollout import collect_episodes

# How many times each compiled function's Python body has been traced. A test reads it to catch recompiles:
# ``run_epoch`` must be traced once per Trainer, however many epochs run.
TRACE_COUNTS: collections.Counter = collections.Counter()

QFn = Callable[[DDPGState, jax.Array, jax.Array, jax.Array], jax.Array]


@flax.struct.dataclass
class TrainState:
    """Everything a run carries from epoch to epoch.

    Attributes:
        agent: the DDPG state (networks, targets, optimisers, normaliser statistics).
        buffer: the HER episode ring.
        key: the PRNG key the next cycle draws from.
        env_steps: ``[]`` int32 training env steps so far (evaluation steps not counted, as in baselines).
        episodes: ``[]`` int32 training episodes so far.
        epoch: ``[]`` int32 epochs completed.
    """

    agent: DDPGState
    buffer: BufferState
    key: jax.Array
    env_steps: jax.Array
    episodes: jax.Array
    epoch: jax.Array


class CycleMetrics(NamedTuple):
    """One cycle's summaries, each ``[]``."""

    success_rate: jax.Array
    critic_loss: jax.Array
    actor_loss: jax.Array
    mean_q: jax.Array


class EvalMetrics(NamedTuple):
    """Deterministic-policy summaries, each ``[]``.

    Attributes:
        success_rate: fraction of episodes whose last step is a success.
        mean_q: mean over all steps of all episodes of ``Q(o, g, pi(o, g))`` under the online critic (baselines'
            ``test/mean_Q``).
        episode_return: mean undiscounted return.
    """

    success_rate: jax.Array
    mean_q: jax.Array
    episode_return: jax.Array


class Trainer(NamedTuple):
    """The compiled pieces of a run (see ``make_train``).

    Attributes:
        init: ``(key) -> TrainState``, jitted.
        run_epoch: ``(TrainState) -> (TrainState, metrics)``, jitted; the input state's buffers are donated.
            ``metrics`` maps the names in ``EPOCH_METRICS`` to ``[]`` arrays.
        evaluate: ``(agent_state, key) -> EvalMetrics``, pure (not jitted).
        agent: the DDPG agent's functions.
        buffer: the HER buffer's functions.
        env: the env.
        config: the resolved config.
        steps_per_epoch: training env steps per epoch.
    """

    init: Callable[[jax.Array], TrainState]
    run_epoch: Callable[[TrainState], tuple[TrainState, dict]]
    evaluate: Callable[[DDPGState, jax.Array], EvalMetrics]
    agent: DDPGAgent
    buffer: HerBuffer
    env: FetchEnv
    config: TrainConfig
    steps_per_epoch: int


EPOCH_METRICS = (
    "test/success_rate",
    "test/mean_Q",
    "test/return",
    "train/success_rate",
    "train/critic_loss",
    "train/actor_loss",
    "train/mean_Q",
    *normalizer.SUMMARY_KEYS,
)


def make_q_fn(cfg: DDPGConfig) -> QFn:
    """``(agent_state, obs [N, o], goal [N, g], action [N, a]) -> [N]``: the online critic on raw inputs,
    clipped and normalised exactly as the agent does for its own updates."""
    critic = Critic(max_u=cfg.max_u, hidden=tuple(cfg.hidden))

    def q_fn(state: DDPGState, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        obs_n, goal_n = preprocess(
            state.obs_stats, state.goal_stats, obs, goal,
            clip_obs=cfg.clip_obs, norm_eps=cfg.norm_eps, norm_clip=cfg.norm_clip,
        )
        return critic.apply(state.critic.online, obs_n, goal_n, action)

    return q_fn


def train_cycle(
    ts: TrainState,
    *,
    env: FetchEnv,
    agent: DDPGAgent,
    buffer: HerBuffer,
    num_envs: int,
    n_batches: int,
    batch_size: int,
    replay_strategy: str,
    future_p: float,
) -> tuple[TrainState, CycleMetrics]:
    """One baselines cycle: collect, store, normalise, ``n_batches`` updates, one target update.

    Args:
        ts: the run's state.
        env: the env.
        agent: the DDPG agent.
        buffer: the HER buffer.
        num_envs: static, episodes collected.
        n_batches: static, updates per cycle.
        batch_size: static, transitions per update.
        replay_strategy: HER strategy of the normaliser's resampling (the buffer's own sampler has it bound).
        future_p: relabelled fraction of the normaliser's resampling.

    Returns:
        ``(ts, CycleMetrics)``; losses are means over the cycle's updates (NaN when ``n_batches`` is 0).
    """
    key, collect_key, norm_key, update_key = jax.random.split(ts.key, 4)
    agent_state = ts.agent

    def explore(obs: jax.Array, goal: jax.Array, key: jax.Array) -> jax.Array:
        return agent.act(agent_state, obs, goal, key, deterministic=False)

    episodes, info = collect_episodes(env, explore, collect_key, num_envs)
    buffer_state = buffer.add(ts.buffer, episodes)
    # baselines ``store_episode``: the statistics see the new episodes as the sampler would serve them.
    norm_batch = sample_her_transitions(
        episodes, norm_key, num_envs * env.episode_length,
        compute_reward=env.compute_reward, strategy=replay_strategy, future_p=future_p,
    )
    agent_state = agent.update_normalizer(agent_state, norm_batch)

    def update(agent_state: DDPGState, key: jax.Array) -> tuple[DDPGState, dict]:
        return agent.update(agent_state, buffer.sample(buffer_state, key, batch_size))

    agent_state, update_metrics = jax.lax.scan(update, agent_state, jax.random.split(update_key, n_batches))
    agent_state = agent.target_update(agent_state)
    metrics = CycleMetrics(
        success_rate=jnp.mean(info.is_success),
        critic_loss=jnp.mean(update_metrics["critic_loss"]),
        actor_loss=jnp.mean(update_metrics["actor_loss"]),
        mean_q=jnp.mean(update_metrics["mean_q"]),
    )
    ts = ts.replace(
        agent=agent_state,
        buffer=buffer_state,
        key=key,
        env_steps=ts.env_steps + num_envs * env.episode_length,
        episodes=ts.episodes + num_envs,
    )
    return ts, metrics


def evaluate(
    agent_state: DDPGState,
    key: jax.Array,
    *,
    env: FetchEnv,
    agent: DDPGAgent,
    q_fn: QFn,
    num_episodes: int,
) -> EvalMetrics:
    """``num_episodes`` fresh episodes of the deterministic policy, run as one batch.

    Args:
        agent_state: the agent to evaluate.
        key: PRNG key of the resets.
        env: the env.
        agent: the DDPG agent.
        q_fn: see ``make_q_fn``.
        num_episodes: static batch size.
    """

    def greedy(obs: jax.Array, goal: jax.Array, key: jax.Array) -> jax.Array:
        return agent.act(agent_state, obs, goal, key, deterministic=True)

    episodes, info = collect_episodes(env, greedy, key, num_episodes)
    horizon = env.episode_length
    # The recorded actions are the deterministic policy's, so Q at them is Q(o, g, pi(o, g)).
    flat = lambda x: jnp.reshape(x, (num_episodes * horizon, x.shape[-1]))
    q = q_fn(agent_state, flat(episodes.obs[:, :horizon]), flat(episodes.desired_goal), flat(episodes.action))
    return EvalMetrics(
        success_rate=jnp.mean(info.is_success),
        mean_q=jnp.mean(q),
        episode_return=jnp.mean(info.episode_return),
    )


def run_epoch(
    ts: TrainState,
    *,
    cycle: Callable[[TrainState], tuple[TrainState, CycleMetrics]],
    n_cycles: int,
    evaluate: Callable[[DDPGState, jax.Array], EvalMetrics],
    norm_eps: float,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """``n_cycles`` cycles then one evaluation; returns the new state and the ``EPOCH_METRICS``.

    Train metrics are means over the epoch's cycles (baselines clears its rollout history every epoch).
    """
    TRACE_COUNTS["run_epoch"] += 1  # runs only while tracing
    ts, cycles = jax.lax.scan(lambda ts, _: cycle(ts), ts, None, length=n_cycles)
    key, eval_key = jax.random.split(ts.key)
    test = evaluate(ts.agent, eval_key)
    metrics = {
        "test/success_rate": test.success_rate,
        "test/mean_Q": test.mean_q,
        "test/return": test.episode_return,
        "train/success_rate": jnp.mean(cycles.success_rate),
        "train/critic_loss": jnp.mean(cycles.critic_loss),
        "train/actor_loss": jnp.mean(cycles.actor_loss),
        "train/mean_Q": jnp.mean(cycles.mean_q),
        **normalizer.summary(ts.agent.obs_stats, ts.agent.goal_stats, norm_eps),
    }
    assert tuple(metrics) == EPOCH_METRICS
    return ts.replace(key=key, epoch=ts.epoch + 1), metrics


def greedy_policy(trainer: Trainer, state: TrainState) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """The deterministic policy of ``state`` (``herjax.algs`` protocol): ``(obs [B, obs_dim], goal [B, goal_dim],
    key) -> action [B, act_dim]``, the policy ``evaluate`` runs."""
    return lambda obs, goal, key: trainer.agent.act(state.agent, obs, goal, key, deterministic=True)


def init_state(key: jax.Array, *, agent: DDPGAgent, buffer: HerBuffer) -> TrainState:
    """A fresh run: new networks, an empty buffer, zero counters."""
    agent_key, key = jax.random.split(key)
    zero = jnp.zeros((), jnp.int32)
    return TrainState(
        agent=agent.init(agent_key), buffer=buffer.init(), key=key, env_steps=zero, episodes=zero, epoch=zero
    )


def make_train(cfg: TrainConfig, env: FetchEnv) -> Trainer:
    """Builds the compiled pieces of a DDPG+HER run of ``cfg`` (resolved, see ``herjax.config.load``) on ``env``.

    Static sizes (``num_envs``, ``n_cycles``, ``n_batches``, ``batch_size``, buffer capacity) are bound here; the
    compiled ``run_epoch`` is reused by every epoch.
    """
    if cfg.n_cycles is None or cfg.total_env_steps is None:
        raise ValueError("make_train needs a resolved config; use herjax.config.load(...)")
    d = cfg.ddpg
    horizon = env.episode_length
    agent = make_ddpg(d, obs_dim=env.obs_dim, goal_dim=env.goal_dim, act_dim=env.action_dim, horizon=horizon)
    buffer = make_her_buffer(
        capacity=d.buffer_size, horizon=horizon, obs_dim=env.obs_dim, goal_dim=env.goal_dim,
        act_dim=env.action_dim, compute_reward=env.compute_reward, strategy=d.replay_strategy,
        replay_k=d.replay_k,
    )
    cycle = functools.partial(
        train_cycle, env=env, agent=agent, buffer=buffer, num_envs=cfg.num_envs, n_batches=d.n_batches,
        batch_size=d.batch_size, replay_strategy=d.replay_strategy, future_p=future_p_from_replay_k(d.replay_k),
    )
    test = functools.partial(
        evaluate, env=env, agent=agent, q_fn=make_q_fn(d), num_episodes=cfg.n_test_rollouts * cfg.num_envs
    )
    epoch = functools.partial(run_epoch, cycle=cycle, n_cycles=cfg.n_cycles, evaluate=test, norm_eps=d.norm_eps)
    return Trainer(
        init=jax.jit(functools.partial(init_state, agent=agent, buffer=buffer)),
        run_epoch=jax.jit(epoch, donate_argnums=0),
        evaluate=test,
        agent=agent,
        buffer=buffer,
        env=env,
        config=cfg,
        steps_per_epoch=cfg.n_cycles * cfg.num_envs * horizon,
    )
