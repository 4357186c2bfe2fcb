"""PPO training composed into one compiled epoch, spread over local devices with ``shard_map``.

An **iteration** (``iteration``): every device steps its own ``num_envs / D`` envs (``herjax.envs.vec``: auto-reset
with fresh goals at the time limit) for ``unroll_length`` steps in ``lax.scan`` with the stochastic policy;
computes GAE with the value of each truncated episode's final observation bootstrapped (Fetch episodes end by
time limit, never by termination); runs ``n_epochs * n_minibatches`` updates whose gradients and advantage
statistics are averaged over devices; then adds the unroll's observations (summed over devices) to the input
normaliser. The same statistics serve the unroll and its updates, so the stored log-probabilities are exactly the
acting policy's.

An **epoch** (``run_epoch``): ``n_iterations`` iterations in ``lax.scan``, then ``n_test_rollouts`` episodes of the
deterministic policy (``herjax.rollout.collect_episodes``, split over devices), all under one ``jax.jit``.

    trainer = make_ppo_train(PPOTrainConfig(env="fetch_reach_dense", ppo=PPOSection(num_envs=32)), env)
    state = trainer.init(jax.random.key(0))
    state, metrics = trainer.run_epoch(state)        # compiled once; later epochs reuse it
    action = trainer.policy(state, obs, goal)        # deterministic tanh(mu), for play/export

The trainer has the DDPG ``Trainer``'s interface (``herjax.loops``): ``init``, ``run_epoch``, ``evaluate``, ``env``,
``config``, ``steps_per_epoch``; ``state.epoch`` and ``state.env_steps`` count the same things. The module follows
the ``herjax.algs`` protocol (``make_train``, ``EPOCH_METRICS``, ``greedy_policy``, ``validate``), with
``PPOSection`` as its ``ppo.*`` config section.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from herjax.agents import normalizer
from herjax.agents.ppo import PPOAgent, PPOBatch, PPOSection, PPOState, gae, make_ppo, section_errors
from herjax.envs.fetch import FetchEnv
from herjax.envs.wrappers import VecEnv, VecState, vec
from herjax.rollout import collect_episodes

# How many times each compiled function's Python body has been traced; a test reads it to catch recompiles.
TRACE_COUNTS: collections.Counter = collections.Counter()

AXIS = "envs"
# Budgets when total_env_steps is not given.
DEFAULT_TOTAL_ENV_STEPS = {
    "fetch_reach": 100_000,
    "fetch_push": 20_000_000,
    "fetch_pick_and_place": 50_000_000,
    "fetch_slide": 50_000_000,
}

EPOCH_METRICS = (
    "test/success_rate",
    "test/mean_Q",
    "test/return",
    "train/success_rate",
    "train/actor_loss",
    "train/critic_loss",
    "train/mean_Q",
    "train/entropy",
    "train/approx_kl",
    "train/clip_frac",
    "train/grad_norm",
    "train/learning_rate",
    "train/log_std",
    *normalizer.SUMMARY_KEYS,
)
"""The metrics ``run_epoch`` returns, each ``[]``. Shared names mean what they mean for DDPG (``herjax.loops``)
except: ``test/mean_Q`` and ``train/mean_Q`` are the mean *state value* ``V(s, g)`` (PPO learns no Q), over the
test episodes' steps and over the training unrolls; ``train/actor_loss`` is the clipped surrogate ``pg_loss`` and
``train/critic_loss`` the (clipped) value loss ``vf_loss``, means over the epoch's updates. ``train/success_rate``
is the success at the last step of the training episodes that ended during the epoch (NaN if none did)."""


@dataclasses.dataclass(frozen=True)
class PPOTrainConfig:
    """A PPO training run on its own (``herjax.train``'s ``TrainConfig`` with ``alg=ppo`` works the same way:
    ``make_ppo_train`` reads only these fields).

    The defaults learn FetchReach (dense) to test success >= 0.9 on two CPU cores in 10-20k env steps.

    Attributes:
        env: env name, see ``herjax.envs.names()``.
        alg: ``ppo``.
        seed: seed of the run's PRNG key.
        total_env_steps: env-step budget (``None``: ``DEFAULT_TOTAL_ENV_STEPS`` of the task); it sets the length of
            the linear learning-rate decay, and a run does ``ceil(total_env_steps / steps_per_epoch)`` epochs.
        backend: physics engine, ``auto``, ``mujoco`` or ``mjx``.
        run_dir: where a host loop writes (unused by the trainer).
        stop_success: a host loop may stop at the first epoch whose test success reaches this.
        ppo: every PPO hyper-parameter, the agent's and the trainer's sizes.
    """

    env: str = "fetch_reach_dense"
    alg: str = "ppo"
    seed: int = 0
    total_env_steps: Optional[int] = None
    backend: str = "auto"
    run_dir: Optional[str] = None
    stop_success: Optional[float] = None
    ppo: PPOSection = dataclasses.field(default_factory=PPOSection)


def total_env_steps(cfg: PPOTrainConfig) -> int:
    """``cfg.total_env_steps`` or the task's default budget."""
    if cfg.total_env_steps is not None:
        return int(cfg.total_env_steps)
    base = cfg.env[: -len("_dense")] if cfg.env.endswith("_dense") else cfg.env
    return DEFAULT_TOTAL_ENV_STEPS[base]


def steps_per_epoch(cfg: PPOTrainConfig) -> int:
    """Training env steps of one epoch (evaluation steps are not counted)."""
    return cfg.ppo.n_iterations * cfg.ppo.num_envs * cfg.ppo.unroll_length


def n_epochs(cfg: PPOTrainConfig) -> int:
    """Epochs a run does: enough to spend the budget."""
    return -(-total_env_steps(cfg) // steps_per_epoch(cfg))


@flax.struct.dataclass
class PPOTrainState:
    """Everything a run carries from epoch to epoch.

    Attributes:
        agent: the PPO state (parameters, optimiser, normaliser statistics), the same on every device.
        env: the envs, every leaf ``[D, num_envs / D, ...]``: device ``d`` steps ``env[d]``.
        key: the PRNG key the next iteration draws from.
        env_steps: ``[]`` int32 training env steps so far (evaluation steps not counted).
        episodes: ``[]`` int32 training episodes ended so far.
        epoch: ``[]`` int32 epochs completed.
    """

    agent: PPOState
    env: VecState
    key: jax.Array
    env_steps: jax.Array
    episodes: jax.Array
    epoch: jax.Array


class Rollout(NamedTuple):
    """What an unroll records, every leaf ``[T, N, ...]``.

    Attributes:
        obs: observation acted on.
        goal: desired goal acted on.
        raw_action: pre-tanh action.
        log_prob: its log-probability.
        reward: the step's reward.
        terminated: 1 where the step reached a terminal state (never, on Fetch).
        truncated: 1 where the step ended the episode by the time limit (the env was then reset).
        next_obs: the observation the step led to (the episode's final one where it was truncated).
        next_goal: the desired goal there.
        final_success: ``is_success`` after the step, of the episode it belongs to.
    """

    obs: jax.Array
    goal: jax.Array
    raw_action: jax.Array
    log_prob: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array
    next_goal: jax.Array
    final_success: jax.Array


class EvalMetrics(NamedTuple):
    """Deterministic-policy summaries, each ``[]``, named as DDPG's (``herjax.loops.EvalMetrics``).

    Attributes:
        success_rate: fraction of episodes whose last step is a success.
        mean_q: mean over all steps of all episodes of the state value ``V(o, g)`` (PPO learns no Q; the name is
            the shared metric's, ``test/mean_Q``).
        episode_return: mean undiscounted return.
    """

    success_rate: jax.Array
    mean_q: jax.Array
    episode_return: jax.Array


class PPOTrainer(NamedTuple):
    """The compiled pieces of a PPO run (see ``make_ppo_train``).

    Attributes:
        init: ``(key) -> PPOTrainState``, jitted.
        run_epoch: ``(PPOTrainState) -> (PPOTrainState, metrics)``, jitted; the input state is donated (and first
            placed on the mesh if it is not there, e.g. restored onto one device). ``metrics`` maps the names in
            ``EPOCH_METRICS`` to ``[]`` arrays.
        evaluate: ``(agent_state, key) -> EvalMetrics``, jitted: ``n_test_rollouts`` deterministic episodes.
        learn: ``(agent_state, batch: PPOBatch [T, num_envs], key) -> (agent_state, metrics)``, jitted: the update
            and normaliser step of an iteration, with the batch's envs spread over the devices as ``run_epoch``
            spreads them.
        policy: ``(state, obs [N, o], goal [N, g]) -> action [N, A]``, pure: the deterministic ``tanh(mu)`` of a
            ``PPOTrainState`` or a ``PPOState``.
        agent: the PPO agent's functions.
        venv: the per-device batched env.
        env: the env.
        config: the config.
        steps_per_epoch: training env steps per epoch.
        num_devices: devices the envs are spread over.
        mesh: their mesh, one axis ``AXIS``.
    """

    init: Callable[[jax.Array], PPOTrainState]
    run_epoch: Callable[[PPOTrainState], tuple[PPOTrainState, dict]]
    evaluate: Callable[[PPOState, jax.Array], EvalMetrics]
    learn: Callable[[PPOState, PPOBatch, jax.Array], tuple[PPOState, dict]]
    policy: Callable[[Any, jax.Array, jax.Array], jax.Array]
    agent: PPOAgent
    venv: VecEnv
    env: FetchEnv
    config: PPOTrainConfig
    steps_per_epoch: int
    num_devices: int
    mesh: Mesh


def collect(
    agent_state: PPOState, env_state: VecState, key: jax.Array, *, venv: VecEnv, agent: PPOAgent, unroll_length: int
) -> tuple[VecState, Rollout]:
    """``unroll_length`` steps of the stochastic policy in a batch of auto-resetting envs.

    Args:
        agent_state: the acting agent.
        env_state: the batch of ``N`` envs.
        key: PRNG key of the actions.
        venv: the batched env.
        agent: the PPO agent.
        unroll_length: static ``T``.

    Returns:
        ``(env_state, Rollout [T, N])``.
    """
    env = venv.env

    def step(vstate: VecState, key: jax.Array) -> tuple[VecState, Rollout]:
        obs, goal = vstate.env.obs["observation"], vstate.env.obs["desired_goal"]
        policy_step = agent.act(agent_state, obs, goal, key)
        nxt = venv.step(vstate, policy_step.action)
        final = nxt.final_obs
        truncated = nxt.truncated
        # After an auto-reset, nxt.env holds the new episode; the step's own reward is that of its final
        # observation (Fetch's step reward is exactly compute_reward(achieved_goal, desired_goal)).
        reward = jnp.where(truncated, env.compute_reward(final["achieved_goal"], final["desired_goal"]), nxt.env.reward)
        terminated = jnp.where(truncated, 0.0, nxt.env.done)
        record = Rollout(
            obs=obs, goal=goal, raw_action=policy_step.raw_action, log_prob=policy_step.log_prob,
            reward=reward, terminated=terminated, truncated=truncated.astype(reward.dtype),
            next_obs=final["observation"], next_goal=final["desired_goal"],
            final_success=nxt.final_info["is_success"],
        )
        return nxt, record

    return jax.lax.scan(step, env_state, jax.random.split(key, unroll_length))


def make_batch(agent_state: PPOState, rollout: Rollout, *, agent: PPOAgent) -> PPOBatch:
    """Values, bootstrapped GAE advantages and value targets of a ``[T, N]`` rollout."""
    cfg = agent.config
    value = agent.value(agent_state, rollout.obs, rollout.goal)
    next_value = agent.value(agent_state, rollout.next_obs, rollout.next_goal)
    episode_end = jnp.maximum(rollout.terminated, rollout.truncated)
    advantage = gae(
        cfg.reward_scale * rollout.reward, value, next_value, rollout.terminated, episode_end,
        gamma=cfg.gamma, gae_lambda=cfg.gae_lambda,
    )
    return PPOBatch(
        obs=rollout.obs, goal=rollout.goal, raw_action=rollout.raw_action, log_prob=rollout.log_prob, value=value,
        advantage=advantage, target_return=advantage + value,
    )


def learn(
    agent_state: PPOState, batch: PPOBatch, key: jax.Array, *, agent: PPOAgent, axis_name: Optional[str]
) -> tuple[PPOState, dict]:
    """The learning half of an iteration: the PPO update, then the unroll's observations into the normaliser."""
    agent_state, metrics = agent.update(agent_state, batch, key, axis_name)
    agent_state = agent.update_normalizer(agent_state, batch.obs, batch.goal, axis_name)
    return agent_state, metrics


def iteration(
    ts: PPOTrainState, *, venv: VecEnv, agent: PPOAgent, unroll_length: int, axis_name: str
) -> tuple[PPOTrainState, dict]:
    """One PPO iteration on this device's envs (``ts.env`` without the device axis), inside ``shard_map``."""
    key, collect_key, update_key = jax.random.split(ts.key, 3)
    device_key = jax.random.fold_in(collect_key, jax.lax.axis_index(axis_name))
    env_state, rollout = collect(ts.agent, ts.env, device_key, venv=venv, agent=agent, unroll_length=unroll_length)
    batch = make_batch(ts.agent, rollout, agent=agent)
    agent_state, metrics = learn(ts.agent, batch, update_key, agent=agent, axis_name=axis_name)
    ended = jax.lax.psum(jnp.sum(rollout.truncated), axis_name)
    metrics = dict(
        metrics,
        ended=ended,
        succeeded=jax.lax.psum(jnp.sum(rollout.truncated * rollout.final_success), axis_name),
        mean_value=jax.lax.pmean(jnp.mean(batch.value), axis_name),
    )
    steps = unroll_length * venv.num_envs * jax.lax.psum(1, axis_name)
    ts = ts.replace(
        agent=agent_state, env=env_state, key=key, env_steps=ts.env_steps + steps,
        episodes=ts.episodes + ended.astype(jnp.int32),
    )
    return ts, metrics


def evaluate(
    agent_state: PPOState, key: jax.Array, *, env: FetchEnv, agent: PPOAgent, num_episodes: int, axis_name: str
) -> EvalMetrics:
    """``num_episodes`` fresh deterministic episodes on this device; summaries averaged over devices."""
    key = jax.random.fold_in(key, jax.lax.axis_index(axis_name))

    def greedy(obs: jax.Array, goal: jax.Array, key: jax.Array) -> jax.Array:
        return agent.policy(agent_state, obs, goal)

    episodes, info = collect_episodes(env, greedy, key, num_episodes)
    values = agent.value(agent_state, episodes.obs[:, : env.episode_length], episodes.desired_goal)
    return jax.lax.pmean(
        EvalMetrics(
            success_rate=jnp.mean(info.is_success),
            mean_q=jnp.mean(values),
            episode_return=jnp.mean(info.episode_return),
        ),
        axis_name,
    )


def run_epoch(
    ts: PPOTrainState,
    *,
    step: Callable[[PPOTrainState], tuple[PPOTrainState, dict]],
    n_iterations: int,
    test: Callable[[PPOState, jax.Array], EvalMetrics],
    learning_rate: Callable[[jax.Array], jax.Array],
    norm_eps: float,
) -> tuple[PPOTrainState, dict[str, jax.Array]]:
    """``n_iterations`` iterations then one evaluation, on one device's share; returns the ``EPOCH_METRICS``."""
    TRACE_COUNTS["run_epoch"] += 1  # runs only while tracing
    ts, it = jax.lax.scan(lambda ts, _: step(ts), ts, None, length=n_iterations)
    key, eval_key = jax.random.split(ts.key)
    result = test(ts.agent, eval_key)
    ended = jnp.sum(it["ended"])
    metrics = {
        "test/success_rate": result.success_rate,
        "test/mean_Q": result.mean_q,
        "test/return": result.episode_return,
        "train/success_rate": jnp.where(ended > 0, jnp.sum(it["succeeded"]) / jnp.maximum(ended, 1), jnp.nan),
        "train/actor_loss": jnp.mean(it["pg_loss"]),
        "train/critic_loss": jnp.mean(it["vf_loss"]),
        "train/mean_Q": jnp.mean(it["mean_value"]),
        "train/entropy": jnp.mean(it["entropy"]),
        "train/approx_kl": jnp.mean(it["approx_kl"]),
        "train/clip_frac": jnp.mean(it["clip_frac"]),
        "train/grad_norm": jnp.mean(it["grad_norm"]),
        "train/learning_rate": learning_rate(ts.agent.step),
        "train/log_std": jnp.mean(ts.agent.params.policy["params"]["log_std"]),
        **normalizer.summary(ts.agent.obs_stats, ts.agent.goal_stats, norm_eps),
    }
    assert tuple(metrics) == EPOCH_METRICS
    return ts.replace(key=key, epoch=ts.epoch + 1), metrics


def init_state(key: jax.Array, *, venv: VecEnv, agent: PPOAgent, axis_name: str) -> PPOTrainState:
    """A fresh run on this device: new networks (the same on every device), this device's envs, zero counters."""
    agent_key, env_key, key = jax.random.split(key, 3)
    env_state = venv.reset(jax.random.fold_in(env_key, jax.lax.axis_index(axis_name)))
    zero = jnp.zeros((), jnp.int32)
    return PPOTrainState(agent=agent.init(agent_key), env=env_state, key=key, env_steps=zero, episodes=zero, epoch=zero)


def _state_spec() -> PPOTrainState:
    return PPOTrainState(agent=P(), env=P(AXIS), key=P(), env_steps=P(), episodes=P(), epoch=P())


def _per_device(fn: Callable[..., PPOTrainState]) -> Callable[..., PPOTrainState]:
    """Drops the device axis of ``state.env`` (``[1, ...]`` inside ``shard_map``) around ``fn``."""

    def wrapped(ts: PPOTrainState, *args):
        out = fn(ts.replace(env=jax.tree.map(lambda x: x[0], ts.env)), *args)
        return _add_device_axis(out)

    return wrapped


def _add_device_axis(out):
    if isinstance(out, PPOTrainState):
        return out.replace(env=jax.tree.map(lambda x: x[None], out.env))
    return (_add_device_axis(out[0]),) + tuple(out[1:])


def device_mesh(num_devices: Optional[int] = None) -> Mesh:
    """A 1-D mesh ``(AXIS,)`` over the first ``num_devices`` local devices (all if ``None``)."""
    devices = jax.local_devices()
    if num_devices is None:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(f"num_devices={num_devices}, but {len(devices)} local devices exist")
    return Mesh(np.asarray(devices[:num_devices]), (AXIS,))


def validate(cfg: Any) -> None:
    """The ``herjax.algs`` hook: raises ``herjax.config.ConfigError`` (one line) for the first bad value of the
    ``ppo`` section, or for a DDPG-only run field set away from its default (PPO would silently ignore it)."""
    from herjax.config import ConfigError

    errors = section_errors(cfg.ppo)
    for f in dataclasses.fields(cfg):
        if f.name in _DDPG_ONLY and f.default is not dataclasses.MISSING and getattr(cfg, f.name) != f.default:
            errors.append(f"{f.name}={getattr(cfg, f.name)!r} is not used by alg=ppo; {_DDPG_ONLY[f.name]}")
    if errors:
        raise ConfigError(errors[0])


# (n_cycles is not checked: herjax.config.resolve fills it for every alg, and it is unused by PPO.)
_DDPG_ONLY = {
    "num_envs": "set ppo.num_envs",
    "n_test_rollouts": "set ppo.n_test_episodes",
    "scale": "PPO has no scale presets",
}


def check_sizes(cfg: PPOTrainConfig, num_devices: int) -> None:
    """Raises ``ValueError`` for the first bad value, or for a size that does not split over the devices."""
    p = cfg.ppo
    errors = section_errors(p)
    for name in ("num_envs", "n_test_episodes"):
        if getattr(p, name) % num_devices:
            errors.append(f"ppo.{name}={getattr(p, name)} must be a multiple of the number of devices "
                          f"({num_devices})")
    if cfg.total_env_steps is not None and cfg.total_env_steps < 1:
        errors.append(f"bad value {cfg.total_env_steps!r} for total_env_steps: must be >= 1")
    if errors:
        raise ValueError(errors[0])


def make_ppo_train(cfg: PPOTrainConfig, env: FetchEnv) -> PPOTrainer:
    """Builds the compiled pieces of a PPO run of ``cfg`` on ``env``.

    ``cfg`` is a ``PPOTrainConfig``, or anything with its fields (``herjax.config.TrainConfig`` with
    ``alg=ppo``). Static sizes (``num_envs``, ``unroll_length``, ``n_iterations``, minibatches, devices) are bound
    here; the compiled ``run_epoch`` is reused by every epoch. The linear learning-rate decay spans
    ``n_epochs(cfg)`` epochs.
    """
    p = cfg.ppo
    mesh = device_mesh(p.num_devices)
    num_devices = mesh.devices.size
    check_sizes(cfg, num_devices)
    total_updates = n_epochs(cfg) * p.n_iterations * p.n_epochs * p.n_minibatches
    agent = make_ppo(p, obs_dim=env.obs_dim, goal_dim=env.goal_dim, act_dim=env.action_dim,
                     total_updates=total_updates)
    venv = vec(env, p.num_envs // num_devices)
    learning_rate = (
        (lambda step: p.learning_rate * jnp.maximum(0.0, 1.0 - step / total_updates))
        if p.lr_schedule == "linear" else (lambda step: jnp.asarray(p.learning_rate))
    )
    state_spec = _state_spec()
    # check_vma=False: the env code (``vec``'s ``lax.cond``, the C engine's ``pure_callback``) is not written for
    # shard_map's varying-axis types. Replication of the P() outputs holds by construction (every such value is a
    # function of replicated inputs and of psum/pmean results); the multi-device test checks it.
    shard = functools.partial(jax.shard_map, mesh=mesh, check_vma=False)

    step = functools.partial(iteration, venv=venv, agent=agent, unroll_length=p.unroll_length, axis_name=AXIS)
    test = functools.partial(
        evaluate, env=env, agent=agent, num_episodes=p.n_test_episodes // num_devices, axis_name=AXIS
    )
    epoch = functools.partial(
        run_epoch, step=step, n_iterations=p.n_iterations, test=test, learning_rate=learning_rate,
        norm_eps=p.norm_eps,
    )
    init = shard(
        _add_device_axis_fn(functools.partial(init_state, venv=venv, agent=agent, axis_name=AXIS)),
        in_specs=P(), out_specs=state_spec,
    )
    epoch_sharded = shard(_per_device(epoch), in_specs=(state_spec,), out_specs=(state_spec, P()))
    learn_sharded = shard(
        functools.partial(learn, agent=agent, axis_name=AXIS),
        in_specs=(P(), P(None, AXIS), P()), out_specs=(P(), P()),
    )
    evaluate_sharded = shard(test, in_specs=(P(), P()), out_specs=P())

    def policy(state: Any, obs: jax.Array, goal: jax.Array) -> jax.Array:
        agent_state = state.agent if isinstance(state, PPOTrainState) else state
        return agent.policy(agent_state, obs, goal)

    return PPOTrainer(
        init=jax.jit(init),
        run_epoch=_on_mesh(jax.jit(epoch_sharded, donate_argnums=0), mesh, (state_spec,)),
        evaluate=_on_mesh(jax.jit(evaluate_sharded), mesh, (P(), P())),
        learn=_on_mesh(jax.jit(learn_sharded), mesh, (P(), P(None, AXIS), P())),
        policy=policy,
        agent=agent,
        venv=venv,
        env=env,
        config=cfg,
        steps_per_epoch=steps_per_epoch(cfg),
        num_devices=num_devices,
        mesh=mesh,
    )


def _on_mesh(fn: Callable, mesh: Mesh, specs: tuple) -> Callable:
    """``fn`` with its arguments first placed on ``mesh`` as ``specs`` (one pytree prefix of ``PartitionSpec``s
    per argument) say: they may come from elsewhere, e.g. a one-device computation or a restored checkpoint. A
    no-op for arguments already there."""
    shardings = tuple(
        jax.tree.map(lambda spec: jax.sharding.NamedSharding(mesh, spec), spec_tree,
                     is_leaf=lambda x: isinstance(x, P))
        for spec_tree in specs
    )

    def placed(*args):
        return fn(*(jax.device_put(a, sh) for a, sh in zip(args, shardings)))

    return placed


def _add_device_axis_fn(fn: Callable[..., PPOTrainState]) -> Callable[..., PPOTrainState]:
    return lambda *args: _add_device_axis(fn(*args))


def make_train(cfg: Any, env: FetchEnv) -> PPOTrainer:
    """The ``herjax.algs`` entry point: ``make_ppo_train`` (``cfg``: a resolved ``TrainConfig`` with ``alg=ppo``,
    or a ``PPOTrainConfig``)."""
    return make_ppo_train(cfg, env)


def greedy_policy(trainer: PPOTrainer, state: PPOTrainState) -> Callable[[jax.Array, jax.Array, jax.Array], jax.Array]:
    """The ``herjax.algs`` hook: ``(obs [B, o], desired_goal [B, g], key) -> action [B, A]``, the deterministic
    ``tanh(mu)`` that ``evaluate`` runs (the key is unused)."""
    return lambda obs, goal, key: trainer.policy(state, obs, goal)


class FitResult(NamedTuple):
    """What ``fit`` returns: the final state and one dict per epoch (``EPOCH_METRICS`` plus ``epoch``,
    ``env_steps``, ``wall_s`` since the call and ``epoch_s``)."""

    state: PPOTrainState
    history: list


def fit(
    trainer: PPOTrainer,
    key: jax.Array,
    *,
    max_epochs: Optional[int] = None,
    stop_success: Optional[float] = None,
    log: Optional[Callable[[dict], None]] = None,
) -> FitResult:
    """Runs epochs until the budget is spent or test success reaches ``stop_success``.

    Note that this is NOT a pure jittable function: it is a thin host loop (for tests and benchmarks; the CLI
    has its own) that times and collects each epoch's metrics.

    Args:
        trainer: see ``make_ppo_train``.
        key: the run's key.
        max_epochs: epochs at most; ``None``: ``n_epochs(trainer.config)``.
        stop_success: stop after the first epoch whose ``test/success_rate`` is at least this.
        log: called with each epoch's row.
    """
    start = time.perf_counter()
    state = trainer.init(key)
    history = []
    for _ in range(n_epochs(trainer.config) if max_epochs is None else max_epochs):
        tick = time.perf_counter()
        state, metrics = trainer.run_epoch(state)
        row = {k: float(v) for k, v in jax.device_get(metrics).items()}
        now = time.perf_counter()
        row.update(epoch=int(state.epoch), env_steps=int(state.env_steps), wall_s=now - start, epoch_s=now - tick)
        history.append(row)
        if log is not None:
            log(row)
        if stop_success is not None and row["test/success_rate"] >= stop_success:
            break
    return FitResult(state=state, history=history)
