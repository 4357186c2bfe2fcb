"""What both loops share: the run's state, the compiled pieces of a run, the epoch, the evaluation, and the
compilation over devices. Everything here is a pure function of arrays; the host loop is ``herjax.train``."""

from __future__ import annotations

import collections
import functools
from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P

from herjax import rollout
from herjax.agents.common.collectives import pmean
from herjax.envs.fetch import FetchEnv
from herjax.loops import sharding
from herjax.types import EvalMetrics

# How many times each compiled function's Python body has been traced. A test reads it to catch recompiles:
# ``run_epoch`` must be traced once per Trainer, however many epochs run.
TRACE_COUNTS: collections.Counter = collections.Counter()

# Every loop's metrics, before the agent's. ``train/env_resets_nonfinite``: envs reset because their state turned
# non-finite during the epoch's training (their episodes or steps were not learned from; see herjax.rollout).
TEST_METRICS = (
    "test/success_rate", "test/mean_Q", "test/return", "train/success_rate", "train/env_resets_nonfinite",
)


@flax.struct.dataclass
class TrainState:
    """Everything a run carries from epoch to epoch; ``herjax.runs.checkpoint`` saves and restores it whole.

    Attributes:
        agent: the agent's state (networks, targets, optimisers, normaliser statistics), the same on every device.
        key: the PRNG key the next cycle draws from.
        env_steps: ``[]`` int32 training env steps so far, over all devices (evaluation steps not counted).
        episodes: ``[]`` int32 training episodes ended so far, over all devices.
        epoch: ``[]`` int32 epochs completed.
        buffer: off-policy: each device's replay, leaves ``[D, ...]``: its HER episode ring (a ``BufferState``),
            or with priorities or demos a ``herjax.replay.mixed.ReplayState`` holding it; else ``None``.
        env: on-policy: each device's auto-resetting envs, leaves ``[D, num_envs / D, ...]``; else ``None``.
    """

    agent: Any
    key: jax.Array
    env_steps: jax.Array
    episodes: jax.Array
    epoch: jax.Array
    buffer: Any = None
    env: Any = None


class Trainer(NamedTuple):
    """The compiled pieces of a run (``herjax.loops.make_train``).

    Attributes:
        init: ``(key) -> TrainState``, jitted.
        run_epoch: ``(TrainState) -> (TrainState, metrics)``, jitted; the input state is donated (and first placed
            on the mesh if it is not there, e.g. restored onto one device). ``metrics`` maps each name of
            ``epoch_metrics`` to a ``[]`` array.
        evaluate: ``(agent_state, key) -> EvalMetrics``, jitted: the epoch's deterministic test episodes.
        learn: ``(agent_state, batch, key) -> (agent_state, metrics)``, jitted: an agent's normaliser step and
            update on a batch spread over the devices as ``run_epoch`` spreads its own (off-policy: ``Transitions``
            ``[N]``; on-policy: an ``Unroll`` ``[T, num_envs]``).
        policy: ``(state, obs [N, o], goal [N, g]) -> action [N, A]``, pure: the deterministic policy of a
            ``TrainState`` or of an agent state (evaluation, play and export run it).
        agent: the agent's functions.
        env: the env.
        config: the resolved config.
        steps_per_epoch: training env steps per epoch.
        epoch_metrics: the names ``run_epoch`` returns, in ``progress.csv`` column order.
        num_devices: devices the work is spread over.
        mesh: their mesh, one axis ``sharding.AXIS``.
        state_shardings: where one seed's ``TrainState`` lives on ``mesh`` (a ``TrainState`` of ``NamedSharding``s,
            a prefix of the state): what a checkpoint is restored onto, on every process of a multi-process run.
        buffer: off-policy: the replay's functions (one device's; ``herjax.replay.mixed.Replay``: the HER buffer,
            and its priorities and demos if any); else ``None``.
        venv: on-policy: one device's batched env; else ``None``.
    """

    init: Callable[[jax.Array], TrainState]
    run_epoch: Callable[[TrainState], tuple[TrainState, dict]]
    evaluate: Callable[[Any, jax.Array], EvalMetrics]
    learn: Callable[..., tuple[Any, dict]]
    policy: Callable[[Any, jax.Array, jax.Array], jax.Array]
    agent: Any
    env: FetchEnv
    config: Any
    steps_per_epoch: int
    epoch_metrics: tuple[str, ...]
    num_devices: int
    mesh: Mesh
    state_shardings: Any = None
    buffer: Any = None
    venv: Any = None


def evaluate(
    agent_state: Any,
    key: jax.Array,
    *,
    env: FetchEnv,
    agent: Any,
    value: Callable[..., jax.Array],
    num_episodes: int,
    axis_name: Optional[str],
    per_device_key: bool,
    sync_axis: Optional[str] = None,
) -> EvalMetrics:
    """``num_episodes`` fresh deterministic episodes on this device (``rollout.evaluate``), averaged over devices.

    Args:
        agent_state: the agent to evaluate.
        key: replicated PRNG key of the resets.
        env: the env.
        agent: the agent (``greedy``).
        value: ``(agent_state, obs [B, T, o], goal [B, T, g], action [B, T, A]) -> values``.
        num_episodes: static, this device's episodes.
        axis_name: the device axis.
        per_device_key: draw this device's resets from its own key (else from ``key`` itself).
        sync_axis: the vmapped axis of the run's seeds inside ``run_epoch``, if any (``wrappers.any_env``).
    """
    if per_device_key:
        key = sharding.device_key(key, axis_name)
    greedy = lambda obs, goal, key: agent.greedy(agent_state, obs, goal)
    metrics = rollout.evaluate(env, greedy, functools.partial(value, agent_state), key, num_episodes, sync_axis)
    return pmean(metrics, axis_name)


def run_epoch(
    ts: TrainState,
    *,
    cycle: Callable[[TrainState], tuple[TrainState, dict]],
    n_cycles: int,
    evaluate: Callable[[Any, jax.Array], EvalMetrics],
    train_success: Callable[[dict], jax.Array],
    agent: Any,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """``n_cycles`` cycles then one evaluation: the epoch of every loop.

    Train metrics are means over the epoch's cycles (baselines clears its rollout history every epoch) of each
    cycle's means; ``train/success_rate`` is ``train_success`` of the stacked cycle outputs, and
    ``train/env_resets_nonfinite`` the sum of the cycles' ``nonfinite_resets``.
    """
    TRACE_COUNTS["run_epoch"] += 1  # runs only while tracing
    ts, cycles = jax.lax.scan(lambda ts, _: cycle(ts), ts, None, length=n_cycles)
    key, eval_key = jax.random.split(ts.key)
    test = evaluate(ts.agent, eval_key)
    metrics = {
        "test/success_rate": test.success_rate,
        "test/mean_Q": test.mean_q,
        "test/return": test.episode_return,
        "train/success_rate": train_success(cycles),
        "train/env_resets_nonfinite": jnp.sum(cycles["nonfinite_resets"]),
        **{f"train/{name}": jnp.mean(cycles[name]) for name in agent.metric_names},
        **agent.summary(ts.agent),
    }
    return ts.replace(key=key, epoch=ts.epoch + 1), metrics


def epoch_metric_names(agent: Any, init: Callable[[jax.Array], Any]) -> tuple[str, ...]:
    """The names ``run_epoch`` returns for ``agent`` (its summary's keys come from an abstract evaluation)."""
    summary = jax.eval_shape(lambda key: agent.summary(init(key)), jax.random.key(0))
    return TEST_METRICS + tuple(f"train/{name}" for name in agent.metric_names) + tuple(summary)


def zero_counters() -> dict[str, jax.Array]:
    zero = jnp.zeros((), jnp.int32)
    return dict(env_steps=zero, episodes=zero, epoch=zero)


def strongly_typed(tree: Any) -> Any:
    """``tree`` with every weakly typed array made strong (same dtype and value). An epoch returns strong types, so
    a weakly typed leaf of a fresh state (e.g. flashbax's ``jnp.array(1.0)`` priority maximum) made the second
    epoch compile the whole epoch again: 7 s of a FetchPush run on 2 cores."""
    strong = lambda x: x if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else jax.lax.convert_element_type(
        x, x.dtype)
    return jax.tree.map(strong, tree)


def compile_run(
    mesh: Mesh,
    per_device: str,
    *,
    init: Callable[[jax.Array], TrainState],
    epoch: Callable[[TrainState], tuple[TrainState, dict]],
    test: Callable[[Any, jax.Array], EvalMetrics],
    learn: Callable[..., tuple[Any, dict]],
    learn_specs: tuple,
    num_seeds: int = 1,
) -> dict[str, Callable]:
    """``init``, ``run_epoch``, ``evaluate`` and ``learn`` of one device's share, compiled over ``mesh``.

    ``init`` and ``epoch`` see the state's field ``per_device`` without its device axis; every other field, the
    agent's state and the metrics are replicated. With ``num_seeds > 1``, ``init`` takes ``[num_seeds]`` keys and
    ``run_epoch`` runs every seed's epoch at once (``jax.vmap`` over axis ``sharding.SEEDS``, outside the device
    axis): every leaf of the state and of the metrics has a leading seed axis. ``evaluate`` and ``learn`` stay
    those of one seed (its state is the seed's slice). ``state_shardings``: one seed's state's layout on ``mesh``.
    """
    batched = num_seeds > 1
    state_spec = lambda per_device_spec: TrainState(
        agent=P(), key=P(), env_steps=P(), episodes=P(), epoch=P(), **{per_device: per_device_spec})
    spec = state_spec(P(None, sharding.AXIS) if batched else P(sharding.AXIS))
    init_one = sharding.add_device_axis(lambda key: strongly_typed(init(key)), per_device)
    epoch_one = sharding.strip_device_axis(epoch, per_device)
    if batched:
        init_one = jax.vmap(init_one)
        epoch_one = jax.vmap(epoch_one, axis_name=sharding.SEEDS)
    init_sharded = sharding.shard(init_one, mesh, in_specs=P(), out_specs=spec)
    epoch_sharded = sharding.shard(epoch_one, mesh, in_specs=(spec,), out_specs=(spec, P()))
    test_sharded = sharding.shard(test, mesh, in_specs=(P(), P()), out_specs=P())
    learn_sharded = sharding.shard(learn, mesh, in_specs=learn_specs, out_specs=(P(), P()))
    return dict(
        init=jax.jit(init_sharded),
        run_epoch=sharding.on_mesh(jax.jit(epoch_sharded, donate_argnums=0), mesh, (spec,)),
        evaluate=sharding.on_mesh(jax.jit(test_sharded), mesh, (P(), P())),
        learn=sharding.on_mesh(jax.jit(learn_sharded), mesh, learn_specs),
        state_shardings=sharding.named(mesh, state_spec(P(sharding.AXIS))),
    )


def policy_of(agent: Any) -> Callable[[Any, jax.Array, jax.Array], jax.Array]:
    """``(state, obs, goal) -> action``: the agent's deterministic policy, of a ``TrainState`` or an agent state."""

    def policy(state: Any, obs: jax.Array, goal: jax.Array) -> jax.Array:
        return agent.greedy(state.agent if isinstance(state, TrainState) else state, obs, goal)

    return policy
