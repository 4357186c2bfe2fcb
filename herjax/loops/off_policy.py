"""The off-policy loop (DDPG+HER, TD3+HER, SAC+HER), with baselines' ``her/train.py`` structure, as one compiled
epoch spread over devices.

A **cycle** (``train_cycle``): each device collects one episode in each of its ``num_envs / D`` envs with the
exploring policy and stores them in its own HER buffer (baselines' per-worker buffers); the agent's input
normaliser takes ``num_envs * T`` HER-resampled transitions of just those episodes (pooled over devices); then
``n_batches`` updates, each on a fresh HER batch of ``batch_size / D`` per device with gradients averaged over
devices (baselines' MPI Adam); then ``agent.end_of_cycle`` (the targets' Polyak step).

An **epoch** (``herjax.loops.common.run_epoch``): ``n_cycles`` cycles in a ``lax.scan``, then ``n_test_episodes``
deterministic episodes, all under one ``jax.jit``. The agent is reached only through ``OffPolicyAgent``.

**Replay** (``herjax.replay.mixed``): the HER buffer alone (baselines), or with ``replay.prioritized`` sampled by
priority (each device keeps the priorities of its own buffer; the agent's per-sample TD errors of each update set
the sampled transitions' new priorities), and with ``demos=`` each batch also takes ``bc.demo_batch_size /
D`` transitions per device from a second HER buffer holding the demonstrations, which the agent also clones.

    trainer = herjax.loops.make_train(herjax.config.load(["alg=td3_her"]), env)
    state = trainer.init(jax.random.key(0))
    state, metrics = trainer.run_epoch(state)     # compiled once; later epochs reuse it
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from herjax.agents.base import TD_ERROR, OffPolicyAgent
from herjax.agents.common.collectives import pmean, psum
from herjax.agents.common.config import resolve_gamma
from herjax.envs.fetch import FetchEnv
from herjax.loops import common, sharding
from herjax.replay.her import episode_capacity, future_p_from_replay_k, make_her_buffer, sample_her_transitions
from herjax.replay.mixed import Replay, make_replay
from herjax.replay.prioritized import make_prioritized
from herjax.rollout import collect_episodes
from herjax.types import Episodes, Transitions

TrainState = common.TrainState


def train_cycle(
    ts: TrainState,
    *,
    env: FetchEnv,
    agent: OffPolicyAgent,
    buffer: Replay,
    num_envs: int,
    n_batches: int,
    batch_size: int,
    replay_strategy: str,
    future_p: float,
    axis_name: Optional[str] = None,
    per_device_keys: bool = False,
    sync_axis: Optional[str] = None,
) -> tuple[TrainState, dict]:
    """One baselines cycle on this device: collect, store, normalise, ``n_batches`` updates, end of cycle.

    Args:
        ts: the run's state (``ts.buffer`` this device's replay: its HER ring, and priorities and demos if any).
        env: the env.
        agent: the agent.
        buffer: the replay's functions (``herjax.replay.mixed.Replay``).
        num_envs: static, this device's episodes per cycle.
        n_batches: static, updates per cycle.
        batch_size: static, this device's transitions per update.
        replay_strategy: HER strategy of the normaliser's resampling (the replay's own sampler has it bound).
        future_p: relabelled fraction of the normaliser's resampling.
        axis_name: the device axis (inside ``shard_map``), or ``None``.
        per_device_keys: draw this device's randomness from its own keys (several devices); one device keeps
            the replicated keys, so its numbers equal a run without ``shard_map``.
        sync_axis: the vmapped axis of the run's seeds, if any (``herjax.envs.wrappers.any_env``).

    Returns:
        ``(ts, metrics)``: ``success_rate`` of the collected episodes and each of ``agent.metric_names``, means
        over the cycle's updates (NaN when ``n_batches`` is 0).
    """
    # Split into five: with JAX's partitionable threefry the first four are the keys of a split into four.
    key, collect_key, norm_key, update_key, agent_key = jax.random.split(ts.key, 5)
    if per_device_keys:
        collect_key, norm_key, update_key, agent_key = (
            sharding.device_key(k, axis_name) for k in (collect_key, norm_key, update_key, agent_key)
        )
    acting = ts.agent
    explore = lambda obs, goal, key: agent.act(acting, obs, goal, key)
    episodes, info = collect_episodes(env, explore, collect_key, num_envs, sync_axis=sync_axis)
    # An episode whose env turned non-finite (and was reset mid-way) is neither stored nor normalised: the kept
    # episodes go first (a stable sort, so without faults nothing moves), then only they are read.
    kept = info.resets == 0
    n_kept = jnp.sum(kept, dtype=jnp.int32)
    kept_first = jnp.argsort(~kept, stable=True)
    episodes = jax.tree.map(lambda x: x[kept_first], episodes)
    buffer_state = buffer.add(ts.buffer, episodes, n_kept)
    # baselines ``store_episode``: the statistics see the new episodes as the sampler would serve them.
    n_norm = num_envs * env.episode_length
    norm_batch = sample_her_transitions(
        episodes, norm_key, n_norm,
        compute_reward=env.compute_reward, strategy=replay_strategy, future_p=future_p, n_valid=n_kept,
    )
    agent_state = agent.update_normalizer(
        acting, norm_batch.obs, norm_batch.desired_goal, axis_name, mask=jnp.broadcast_to(n_kept > 0, (n_norm,))
    )

    def update(carry: tuple[Any, Any], keys: tuple[jax.Array, jax.Array]) -> tuple[tuple[Any, Any], dict]:
        agent_state, replay_state = carry
        sample_key, step_key = keys
        batch, where = buffer.sample(replay_state, sample_key, batch_size)
        agent_state, metrics = agent.update(agent_state, batch, step_key, axis_name)
        replay_state = buffer.learned(replay_state, where, metrics.get(TD_ERROR))
        return (agent_state, replay_state), {name: metrics[name] for name in agent.metric_names}

    keys = (jax.random.split(update_key, n_batches), jax.random.split(agent_key, n_batches))
    (agent_state, buffer_state), update_metrics = jax.lax.scan(update, (agent_state, buffer_state), keys)
    agent_state = agent.end_of_cycle(agent_state)
    metrics = {
        "success_rate": pmean(jnp.mean(info.is_success), axis_name),
        "nonfinite_resets": psum(jnp.sum(info.resets), axis_name),
        **{name: jnp.mean(update_metrics[name]) for name in agent.metric_names},
    }
    num_devices = sharding.device_count(axis_name)
    ts = ts.replace(
        agent=agent_state,
        buffer=buffer_state,
        key=key,
        env_steps=ts.env_steps + num_envs * env.episode_length * num_devices,
        episodes=ts.episodes + num_envs * num_devices,
    )
    return ts, metrics


def init_state(
    key: jax.Array, *, agent: OffPolicyAgent, buffer: Replay,
    demo_batch: Optional[Callable[[jax.Array], Transitions]] = None,
) -> TrainState:
    """A fresh run on this device: new networks (the same on every device), an empty buffer (with demos: the demo
    buffer full), zero counters.

    ``demo_batch``: ``(key) -> Transitions``, HER-resampled demo transitions the input normaliser starts from, as
    Nair et al.'s code stores its demos (the statistics see them like any stored episodes); ``None``: no demos.
    """
    agent_key, key = jax.random.split(key)
    agent_state = agent.init(agent_key)
    if demo_batch is not None:
        key, norm_key = jax.random.split(key)
        sampled = demo_batch(norm_key)
        agent_state = agent.update_normalizer(agent_state, sampled.obs, sampled.desired_goal)
    return TrainState(agent=agent_state, buffer=buffer.init(), key=key, **common.zero_counters())


def demo_normalizer_batch(key: jax.Array, *, demos: Episodes, compute_reward: Any, strategy: str,
                          future_p: float) -> Transitions:
    """``E_demo * T`` HER-resampled transitions of the demo episodes (baselines' ``store_episode`` feeds the
    normaliser as many of each stored batch)."""
    demos = jax.tree.map(jnp.asarray, demos)
    return sample_her_transitions(demos, key, demos.action.shape[0] * demos.action.shape[1],
                                  compute_reward=compute_reward, strategy=strategy, future_p=future_p)


def learn(
    agent_state: Any, transitions: Transitions, key: jax.Array, *, agent: OffPolicyAgent, axis_name: str,
    per_device_keys: bool,
) -> tuple[Any, dict]:
    """The learning half of a cycle on this device's share of a batch: its transitions into the normaliser
    (pooled over devices), then one update (gradients averaged over devices; per-sample TD errors left out)."""
    if per_device_keys:
        key = sharding.device_key(key, axis_name)
    agent_state = agent.update_normalizer(agent_state, transitions.obs, transitions.desired_goal, axis_name)
    agent_state, metrics = agent.update(agent_state, transitions, key, axis_name)
    return agent_state, {name: metrics[name] for name in agent.metric_names}


def flat_value(agent: OffPolicyAgent) -> Callable[..., jax.Array]:
    """``(agent_state, obs [B, T, o], goal [B, T, g], action [B, T, A]) -> [B * T]``: the critic at every step."""

    def value(agent_state: Any, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        flat = lambda x: jnp.reshape(x, (-1, x.shape[-1]))
        return agent.value(agent_state, flat(obs), flat(goal), flat(action))

    return value


def make_run_replay(cfg: Any, section: Any, env: FetchEnv, demos: Optional[Episodes] = None) -> Replay:
    """One device's replay of a run: its HER ring of ``section.buffer_size / D`` transitions, prioritised with
    ``cfg.replay.prioritized``, mixed with a ring holding ``demos`` (``bc.demo_batch_size / D`` of each batch)."""
    num_devices, horizon = cfg.num_devices, env.episode_length
    returns = dict(n_step=section.n_step, gamma=resolve_gamma(section, horizon))
    her = dict(horizon=horizon, obs_dim=env.obs_dim, goal_dim=env.goal_dim, act_dim=env.action_dim,
               compute_reward=env.compute_reward, strategy=section.replay_strategy, replay_k=section.replay_k,
               **returns)
    buffer = make_her_buffer(capacity=section.buffer_size // num_devices, **her)
    prioritized = None
    if cfg.replay.prioritized:
        if cfg.replay.beta_updates is None:
            raise ValueError("replay.beta_updates is None: resolve the config first (herjax.config.load)")
        prioritized = make_prioritized(
            n_slots=episode_capacity(section.buffer_size // num_devices, horizon), horizon=horizon,
            alpha=cfg.replay.alpha, beta0=cfg.replay.beta0, beta_updates=cfg.replay.beta_updates, eps=cfg.replay.eps,
        )
    demo_buffer = None if demos is None else make_her_buffer(capacity=demos.action.shape[0] * horizon, **her)
    return make_replay(
        buffer, compute_reward=env.compute_reward, strategy=section.replay_strategy,
        future_p=future_p_from_replay_k(section.replay_k), prioritized=prioritized, demo_buffer=demo_buffer,
        demos=demos, demo_batch_size=cfg.bc.demo_batch_size // num_devices, **returns,
    )


def make_train(
    cfg: Any, env: FetchEnv, *, make_agent: Callable[..., OffPolicyAgent], section: Any,
    demos: Optional[Episodes] = None,
) -> common.Trainer:
    """Builds the compiled pieces of an off-policy run of ``cfg`` (resolved, see ``herjax.config.load``) on ``env``.

    Args:
        cfg: the resolved ``TrainConfig``.
        env: the env.
        make_agent: the algorithm's factory, ``(section, obs_dim=, goal_dim=, act_dim=, horizon=[, bc=]) ->
            OffPolicyAgent``.
        section: the algorithm's config section (an ``OffPolicyConfig``).
        demos: with ``cfg.demos``, its episodes (``herjax.demos.load``; numpy ``[E_demo, ...]``): they fill the
            demo buffer of every fresh state, and the agent gets ``cfg.bc``.

    Static sizes (``num_envs``, ``n_cycles``, ``n_batches``, ``batch_size``, buffer capacity, devices) are bound here;
    the compiled ``run_epoch`` is reused by every epoch.
    """
    if (cfg.demos is None) != (demos is None):
        raise ValueError(f"demos={cfg.demos!r} in the config, but demo episodes were{' not' * (demos is None)} "
                         "given: pass herjax.demos.load(cfg.demos, env) as demos=")
    num_devices = cfg.num_devices
    mesh = sharding.make_mesh(num_devices)
    horizon = env.episode_length
    bc = {} if demos is None else {"bc": cfg.bc}
    agent = make_agent(section, obs_dim=env.obs_dim, goal_dim=env.goal_dim, act_dim=env.action_dim, horizon=horizon,
                       **bc)
    buffer = make_run_replay(cfg, section, env, demos)
    axis, per_device_keys = sharding.axis_name(num_devices), num_devices > 1
    seeds = sharding.SEEDS if cfg.num_seeds > 1 else None
    cycle = functools.partial(
        train_cycle, env=env, agent=agent, buffer=buffer, num_envs=cfg.num_envs // num_devices,
        n_batches=section.n_batches, batch_size=section.batch_size // num_devices,
        replay_strategy=section.replay_strategy, future_p=future_p_from_replay_k(section.replay_k), axis_name=axis,
        per_device_keys=per_device_keys, sync_axis=seeds,
    )
    test = functools.partial(
        common.evaluate, env=env, agent=agent, value=flat_value(agent),
        num_episodes=cfg.n_test_episodes // num_devices, axis_name=axis, per_device_key=per_device_keys,
    )
    epoch = functools.partial(
        common.run_epoch, cycle=cycle, n_cycles=cfg.n_cycles, evaluate=functools.partial(test, sync_axis=seeds),
        agent=agent, train_success=lambda cycles: jnp.mean(cycles["success_rate"]),
    )
    demo_batch = None if demos is None else functools.partial(
        demo_normalizer_batch, demos=demos, compute_reward=env.compute_reward, strategy=section.replay_strategy,
        future_p=future_p_from_replay_k(section.replay_k),
    )
    init = functools.partial(init_state, agent=agent, buffer=buffer, demo_batch=demo_batch)
    compiled = common.compile_run(
        mesh, "buffer", init=init, epoch=epoch, test=test, num_seeds=cfg.num_seeds,
        learn=functools.partial(learn, agent=agent, axis_name=axis, per_device_keys=per_device_keys),
        learn_specs=(P(), P(sharding.AXIS), P()),
    )
    return common.Trainer(
        **compiled,
        policy=common.policy_of(agent),
        agent=agent,
        env=env,
        config=cfg,
        steps_per_epoch=cfg.n_cycles * cfg.num_envs * horizon,
        epoch_metrics=common.epoch_metric_names(agent, agent.init),
        num_devices=num_devices,
        mesh=mesh,
        buffer=buffer,
    )
