"""Start a new run from the weights of another (host side: NOT pure, it reads a checkpoint).

    python -m herjax.train env=fetch_reach init_from=runs/fetch_reach/ddpg_her/20250101-120000          # its best
    python -m herjax.train env=fetch_reach init_from=runs/fetch_reach/ddpg_her/20250101-120000@latest   # its latest

``init_from=RUN_DIR`` starts a new run (its own ``run_dir``, seed, budget and hyper-parameters) whose agent begins
with the networks and input normaliser of a checkpoint of the run in ``RUN_DIR``: its ``best`` (the highest test
success; if it has none, or it cannot be read, its newest readable ``latest``, with a warning), or with
``RUN_DIR@latest`` its newest readable ``latest`` (``RUN_DIR@best`` is the default spelled out). A suffix other than
``@best`` or ``@latest`` is part of the path.

**What carries over.** The agent's state is an opaque pytree per algorithm (``herjax.agents.base``), so its leaves
are chosen by type, never by field name (``carried``):

* a ``NormalizerState`` comes over whole (``sum``, ``sumsq`` and ``count`` belong together);
* nothing inside an optimiser state comes over (a node of a type that optax defines: ``ScaleByAdamState``,
  ``EmptyState``, a schedule's count ...): Adam's moments and step counts start at zero, as for a new network;
* every other floating-point leaf comes over: the online and target parameters, and learned scalars such as SAC's
  ``log_alpha``; integer leaves are counters (the agent's update count, which sets TD3's delayed actor turns and
  PPO's learning-rate schedule) and start at 0.

Outside the agent nothing carries over: the replay buffer (or PPO's envs), the PRNG key (from this run's
``seed``) and the counters (``env_steps``, ``episodes``, ``epoch``) are those of ``trainer.init``. Only the
agent's arrays are read from the checkpoint (not its replay buffer).

**What must match.** The same ``alg``, and every array of the agent's state the same shape and dtype: the same
network sizes, and an env with the same observation, goal and action sizes. The env itself may differ (e.g.
``fetch_reach`` into ``fetch_reach_dense``, or ``fetch_push`` into ``fetch_pick_and_place``: transfer), as may
every hyper-parameter that sets no shape (learning rates, batch size, exploration ...).

**Errors.** ``check_source`` (before anything is built: a missing run directory, a run of another ``alg``, no
checkpoint) and ``load`` (an array that does not fit, naming the first one and both shapes; no readable checkpoint)
raise ``InitFromError``, one line, which ``herjax.train``'s CLI reports with exit status 2.

**Resume.** ``init_from`` is part of the run's config (``config.yaml``); resuming such a run restores its own
checkpoints and never reads ``RUN_DIR`` again (it may be gone by then).
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp

from herjax.agents.common.normalizer import NormalizerState
from herjax.loops import sharding
from herjax.runs import checkpoint as ckpt_lib
from herjax.runs.checkpoint import CheckpointError

KINDS = ("best", "latest")
FIELD = "agent"  # the field of the saved training state that holds the agent


class InitFromError(CheckpointError):
    """``init_from`` names no usable source: a missing run, a run of another algorithm, no readable checkpoint, or
    arrays that do not fit this run's agent. The message is one line."""


class Source(NamedTuple):
    """The checkpoint a run starts from.

    Attributes:
        run_dir: its run directory.
        kind: ``best`` or ``latest``, as asked (``best`` falls back to ``latest`` in ``where``).
        config: its run's resolved ``TrainConfig``.
        where: the step read, ``kind/epoch``; ``None`` before ``load``.
        agent: the agent's state read from it (every leaf; ``merge`` takes the ``carried`` ones); ``None`` before
            ``load``.
        test_success: the test success of its epoch, if its history records it.
    """

    run_dir: str
    kind: str
    config: Any
    where: Optional[str] = None
    agent: Any = None
    test_success: Optional[float] = None


def parse(init_from: str) -> tuple[str, str]:
    """``RUN_DIR`` or ``RUN_DIR@best`` / ``RUN_DIR@latest`` -> ``(run_dir, kind)``."""
    head, sep, tail = init_from.rpartition("@")
    if sep and head and tail in KINDS:
        return head, tail
    return init_from, "best"


def _error(cfg: Any, text: str) -> InitFromError:
    return InitFromError(f"init_from={cfg.init_from}: {text}")


def _steps(run_dir: str, kind: str) -> list[tuple[str, int]]:
    """The steps to try, in order: those of ``kind``, newest first; for ``best``, then those of ``latest``."""
    kinds = ("best", "latest") if kind == "best" else (kind,)
    return [found for k in kinds for found in ckpt_lib.candidates(run_dir, (k,))]


def check_source(cfg: Any) -> Source:
    """What can be checked before anything is built: ``cfg.init_from`` is a run directory with a readable config of
    the same ``alg`` and a finished checkpoint of the kind asked for. Raises ``InitFromError`` (one line)."""
    run_dir, kind = parse(cfg.init_from)
    try:
        saved = ckpt_lib.read_config(run_dir)
    except CheckpointError as e:
        hint = ""
        if "@" in cfg.init_from and run_dir == cfg.init_from:
            hint = f" (a checkpoint is chosen with RUN_DIR@{' or RUN_DIR@'.join(KINDS)})"
        raise _error(cfg, f"{e}{hint}") from None
    if saved.alg != cfg.alg:
        raise _error(cfg, f"it is a run of alg={saved.alg} and this run is alg={cfg.alg}; weights carry over only "
                          "within one algorithm")
    if not _steps(run_dir, kind):
        which = "best or latest" if kind == "best" else kind
        raise _error(cfg, f"no finished {which} checkpoint in {os.path.join(run_dir, 'checkpoints')}")
    return Source(run_dir=run_dir, kind=kind, config=saved)


def _is_optimizer_state(node: Any) -> bool:
    return type(node).__module__.split(".")[0] == "optax"


def _is_unit(node: Any) -> bool:
    return isinstance(node, NormalizerState) or _is_optimizer_state(node)


def carried(agent_state: Any) -> Any:
    """Which leaves of an agent's state a new run takes from its source (see the module docstring).

    Args:
        agent_state: an agent's state, of arrays or ``ShapeDtypeStruct``s.

    Returns:
        A pytree of the same structure with a Python bool at each leaf.
    """

    def mark(node: Any) -> Any:
        if isinstance(node, NormalizerState):
            return jax.tree.map(lambda _: True, node)
        if _is_optimizer_state(node):
            return jax.tree.map(lambda _: False, node)
        return bool(jnp.issubdtype(node.dtype, jnp.floating))

    return jax.tree.map(mark, agent_state, is_leaf=_is_unit)


def _check_fits(cfg: Any, saved: dict, abstract_agent: Any, where: str) -> None:
    """Raises ``InitFromError`` naming the first array of this run's agent (carried ones first) that the step
    ``where`` lacks or holds with another shape or dtype, or the first array of its agent that this run lacks."""
    wanted = ckpt_lib.array_specs(abstract_agent, f"{FIELD}.")
    keep = jax.tree.leaves(carried(abstract_agent))
    names = [n for n, k in zip(wanted, keep) if k] + [n for n, k in zip(wanted, keep) if not k]
    for name in names:
        if name not in saved:
            raise _error(cfg, f"checkpoint {where} has no array {name}, which this run's agent has")
        if saved[name] != wanted[name]:
            raise _error(cfg, f"checkpoint {where} does not fit this run: {name} is "
                              f"{ckpt_lib.show_array(saved[name])} there but {ckpt_lib.show_array(wanted[name])} "
                              "here (other network sizes, or an env with other observation, goal or action sizes)")
    extra = [n for n in saved if n.startswith(f"{FIELD}.") and n not in wanted]
    if extra:
        raise _error(cfg, f"checkpoint {where} has an array {extra[0]} that this run's agent lacks")


def load(cfg: Any, abstract_agent: Any, *, warn: Optional[Callable[[str], None]] = None) -> Source:
    """Reads the agent's state from the checkpoint ``cfg.init_from`` names, after checking that it fits.

    Tries the steps of the kind asked for, newest first (for ``best``, then those of ``latest``), skipping (and
    reporting through ``warn``) those that cannot be read; an array that does not fit stops at once (every step of a
    run has the same shapes).

    Args:
        cfg: the new run's resolved config, ``init_from`` set.
        abstract_agent: the new run's agent state, shapes and dtypes (``abstract_state(trainer).agent``).
        warn: called with one line for each step that could not be read.

    Returns:
        The ``Source``, ``agent`` read. Raises ``InitFromError`` (one line).
    """
    source = check_source(cfg)
    tried = []
    for kind, step in _steps(source.run_dir, source.kind):
        where = f"{kind}/{step}"
        try:
            saved = ckpt_lib.saved_arrays(os.path.join(ckpt_lib.step_dir(source.run_dir, kind, step), "state"))
        except Exception as e:  # noqa: BLE001 -- unreadable metadata: a damaged step, try the next one
            error = e
        else:
            _check_fits(cfg, saved, abstract_agent, where)
            try:
                agent, meta = ckpt_lib.restore_field(source.run_dir, kind, step, FIELD, abstract_agent)
            except Exception as e:  # noqa: BLE001 -- any failure to read a step means: try the next one
                error = e
            else:
                return source._replace(where=where, agent=agent, test_success=_test_success(meta, step))
        tried.append(where)
        if warn is not None:
            text = " ".join(str(error).split()) or type(error).__name__
            warn(f"init_from: checkpoint {where} of {source.run_dir} is unreadable ({text[:160]}); trying the next one")
    raise _error(cfg, f"no readable checkpoint in {os.path.join(source.run_dir, 'checkpoints')} (tried "
                      f"{', '.join(tried)})")


def _test_success(meta: dict, epoch: int) -> Optional[float]:
    """The test success of ``epoch`` in a checkpoint's ``meta`` (its ``progress.csv`` rows), if it is there."""
    rows = [row for row in meta.get("history", []) if int(row.get("epoch", -1)) == epoch]
    success = rows[-1].get("test/success_rate") if rows else None
    return float(success) if isinstance(success, (int, float)) and math.isfinite(success) else None


def merge(fresh_agent: Any, source_agent: Any) -> Any:
    """``fresh_agent`` (a new run's ``agent.init``) with its ``carried`` leaves replaced by ``source_agent``'s, each
    placed where the fresh leaf is (e.g. replicated over the run's devices)."""
    take = lambda keep, old, new: sharding.put(new, old.sharding) if keep else old  # also onto several processes
    return jax.tree.map(take, carried(fresh_agent), fresh_agent, source_agent)


def describe(source: Source, cfg: Any) -> str:
    """The console line of a run that starts from ``source``."""
    success = "test success unknown" if source.test_success is None else f"test success {source.test_success:.3f}"
    env = "" if source.config.env == cfg.env else f", trained on {source.config.env}"
    n_carried = sum(jax.tree.leaves(carried(source.agent)))
    return (f"herjax.train: init_from {source.run_dir}: networks and normaliser of its checkpoint {source.where} "
            f"({success}{env}; {n_carried} arrays); optimiser states, counters and collected data start fresh")
