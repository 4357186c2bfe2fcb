"""The on-policy loop (PPO) as one compiled epoch spread over devices.

A **cycle** (``iteration``; ``ppo2``'s update): every device steps its own ``num_envs / D`` envs
(``herjax.envs.vec``: auto-reset with fresh goals at the time limit) for ``unroll_length`` steps with the
stochastic policy (``herjax.rollout.unroll``); the agent turns the unroll into a batch (``prepare``: values and
advantages, the value of each truncated episode's final observation bootstrapped) and learns from it
(``update``: every pass of minibatches, gradients and advantage statistics averaged over devices); then the
unroll's observations (pooled over devices) go into the input normaliser. The same statistics serve the unroll
and its updates, so the stored log-probabilities are exactly the acting policy's.

An **epoch** (``herjax.loops.common.run_epoch``): ``n_cycles`` iterations in ``lax.scan``, then
``n_test_episodes`` episodes of the deterministic policy, all under one ``jax.jit``. The agent is reached only
through ``OnPolicyAgent``.

    trainer = herjax.loops.make_train(herjax.config.load(["alg=ppo", "env=fetch_reach_dense"]), env)
    state = trainer.init(jax.random.key(0))
    state, metrics = trainer.run_epoch(state)        # compiled once; later epochs reuse it
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from herjax import rollout
from herjax.agents.base import OnPolicyAgent
from herjax.agents.common.collectives import psum
from herjax.envs.fetch import FetchEnv
from herjax.envs.wrappers import VecEnv, vec
from herjax.loops import common, sharding
from herjax.types import Unroll

TrainState = common.TrainState


def learn(
    agent_state: Any, unroll: Unroll, key: jax.Array, *, agent: OnPolicyAgent, axis_name: Optional[str]
) -> tuple:
    """The learning half of an iteration: the batch of the unroll, the update, then the unroll's observations into
    the normaliser."""
    batch = agent.prepare(agent_state, unroll)
    agent_state, metrics = agent.update(agent_state, batch, key, axis_name)
    agent_state = agent.update_normalizer(agent_state, unroll.obs, unroll.goal, axis_name)
    return agent_state, metrics


def iteration(
    ts: TrainState, *, venv: VecEnv, agent: OnPolicyAgent, unroll_length: int, axis_name: Optional[str]
) -> tuple[TrainState, dict]:
    """One iteration on this device's envs (``ts.env`` without the device axis), inside ``shard_map``."""
    key, collect_key, update_key = jax.random.split(ts.key, 3)
    acting = ts.agent
    env_state, record = rollout.unroll(
        venv, lambda obs, goal, key: agent.act(acting, obs, goal, key), ts.env,
        sharding.device_key(collect_key, axis_name), unroll_length,
    )
    agent_state, metrics = learn(acting, record, update_key, agent=agent, axis_name=axis_name)
    ended = psum(jnp.sum(record.truncated), axis_name)
    metrics = dict(
        metrics, ended=ended, succeeded=psum(jnp.sum(record.truncated * record.final_success), axis_name),
        nonfinite_resets=psum(jnp.sum(record.nonfinite, dtype=jnp.int32), axis_name),
    )
    steps = unroll_length * venv.num_envs * sharding.device_count(axis_name)
    ts = ts.replace(
        agent=agent_state, env=env_state, key=key, env_steps=ts.env_steps + steps,
        episodes=ts.episodes + ended.astype(jnp.int32),
    )
    return ts, metrics


def train_success(cycles: dict) -> jax.Array:
    """Success at the last step of the training episodes that ended during the epoch (NaN if none did)."""
    ended = jnp.sum(cycles["ended"])
    return jnp.where(ended > 0, jnp.sum(cycles["succeeded"]) / jnp.maximum(ended, 1), jnp.nan)


def init_state(key: jax.Array, *, venv: VecEnv, agent: OnPolicyAgent, axis_name: Optional[str]) -> TrainState:
    """A fresh run on this device: new networks (the same on every device), this device's envs, zero counters."""
    agent_key, env_key, key = jax.random.split(key, 3)
    env_state = venv.reset(sharding.device_key(env_key, axis_name))
    return TrainState(agent=agent.init(agent_key), env=env_state, key=key, **common.zero_counters())


def state_value(agent: OnPolicyAgent) -> Callable[..., jax.Array]:
    """``(agent_state, obs [B, T, o], goal [B, T, g], action) -> [B, T]``: the state value at every step."""
    return lambda agent_state, obs, goal, action: agent.value(agent_state, obs, goal)


def make_train(cfg: Any, env: FetchEnv, *, make_agent: Callable[..., OnPolicyAgent], section: Any) -> common.Trainer:
    """Builds the compiled pieces of an on-policy run of ``cfg`` (resolved, see ``herjax.config.load``) on ``env``.

    Args:
        cfg: the resolved ``TrainConfig``.
        env: the env.
        make_agent: the algorithm's factory, ``(section, obs_dim=, goal_dim=, act_dim=, total_updates=) ->
            OnPolicyAgent``.
        section: the algorithm's config section (``PPOConfig``).

    Static sizes (``num_envs``, ``unroll_length``, ``n_cycles``, minibatches, devices) are bound here; the
    compiled ``run_epoch`` is reused by every epoch. A linear learning-rate decay spans the run's epochs.
    """
    num_devices = cfg.num_devices
    mesh = sharding.make_mesh(num_devices)
    steps_per_epoch = cfg.n_cycles * cfg.num_envs * section.unroll_length
    n_epochs = -(-cfg.total_env_steps // steps_per_epoch)
    total_updates = n_epochs * cfg.n_cycles * section.n_epochs * section.n_minibatches
    agent = make_agent(section, obs_dim=env.obs_dim, goal_dim=env.goal_dim, act_dim=env.action_dim,
                       total_updates=total_updates)
    seeds = sharding.SEEDS if cfg.num_seeds > 1 else None
    venv = vec(env, cfg.num_envs // num_devices, sync_axis=seeds)
    axis = sharding.axis_name(num_devices)
    step = functools.partial(iteration, venv=venv, agent=agent, unroll_length=section.unroll_length, axis_name=axis)
    test = functools.partial(
        common.evaluate, env=env, agent=agent, value=state_value(agent),
        num_episodes=cfg.n_test_episodes // num_devices, axis_name=axis, per_device_key=True,
    )
    epoch = functools.partial(
        common.run_epoch, cycle=step, n_cycles=cfg.n_cycles, evaluate=functools.partial(test, sync_axis=seeds),
        agent=agent, train_success=train_success,
    )
    init = functools.partial(init_state, venv=venv, agent=agent, axis_name=axis)
    compiled = common.compile_run(
        mesh, "env", init=init, epoch=epoch, test=test, num_seeds=cfg.num_seeds,
        learn=functools.partial(learn, agent=agent, axis_name=axis), learn_specs=(P(), P(None, sharding.AXIS), P()),
    )
    return common.Trainer(
        **compiled,
        policy=common.policy_of(agent),
        agent=agent,
        env=env,
        config=cfg,
        steps_per_epoch=steps_per_epoch,
        epoch_metrics=common.epoch_metric_names(agent, agent.init),
        num_devices=num_devices,
        mesh=mesh,
        venv=venv,
    )
