"""The algorithm registry: ``alg=<name>`` on the command line picks one entry of ``REGISTRY``.

An entry names three things:

* ``section``: the ``TrainConfig`` field that holds the algorithm's hyper-parameters (``ddpg`` for
  ``ddpg_her``); the command line sets them as ``<section>.<field>=value``. ``herjax.config`` builds
  ``TrainConfig`` with one such field per registered section, so registering is all it takes to get a config
  group, its ``--help`` entry and its ``config.yaml`` block.
* ``config_cls``: that section's frozen dataclass; its defaults are the algorithm's defaults.
* ``module``: the import path of the module that composes the algorithm into a training run. It is imported
  only when a run is built, so importing ``herjax.config`` stays cheap, and it must define:

  ``make_train(cfg: TrainConfig, env: FetchEnv) -> Trainer``
      ``cfg`` is resolved (``herjax.config.load``). The ``Trainer`` has at least
      ``init(key) -> state`` and ``run_epoch(state) -> (state, metrics)`` (both jitted; ``run_epoch`` may
      donate its input), ``steps_per_epoch: int`` (training env steps an epoch adds) and ``env``.
      ``state`` is one pytree holding everything a run carries (parameters, optimiser states, normalisers,
      replay, PRNG keys, counters): ``herjax.checkpoint`` saves and restores it whole, which is what makes a
      resumed run equal an uninterrupted one. It has ``[]`` integer leaves ``state.epoch`` (epochs done) and
      ``state.env_steps``. ``metrics`` maps each name of ``EPOCH_METRICS`` to a ``[]`` array.
  ``EPOCH_METRICS: tuple[str, ...]``
      The metric names, in ``progress.csv`` column order; must include ``test/success_rate`` (the progress
      display and the ``best`` checkpoint use it).
  ``greedy_policy(trainer, state) -> PolicyFn``
      The deterministic policy of ``state``, ``(obs [B, obs_dim], desired_goal [B, goal_dim], key) ->
      action [B, act_dim]``, pure and jittable (``state`` may be a tracer). ``herjax.play`` runs it through
      ``herjax.rollout.collect_episodes`` and ``herjax.policy`` exports it.
  ``validate(cfg) -> None`` (optional)
      Raises ``herjax.config.ConfigError`` (one line) for a bad value of the section; it runs before anything
      is built, so it must stay cheap.

Registering an algorithm is one line in ``REGISTRY`` plus its config class, as PPO shows.
"""

from __future__ import annotations

import importlib
import types
from typing import NamedTuple

from herjax.agents.ddpg import DDPGConfig
from herjax.agents.ppo import PPOSection


class Algorithm(NamedTuple):
    """One registered algorithm; see the module docstring for the protocol ``module`` follows."""

    section: str
    config_cls: type
    module: str


REGISTRY: dict[str, Algorithm] = {
    "ddpg_her": Algorithm(section="ddpg", config_cls=DDPGConfig, module="herjax.loops"),
    "ppo": Algorithm(section="ppo", config_cls=PPOSection, module="herjax.ppo_loops"),
}


def names() -> list[str]:
    """Every registered algorithm name."""
    return list(REGISTRY)


def get(name: str) -> Algorithm:
    """The entry of ``name``; ``KeyError`` if it is not registered (``herjax.config`` reports that nicely)."""
    return REGISTRY[name]


def sections() -> dict[str, type]:
    """Config section -> its dataclass, one per section, in registration order."""
    out: dict[str, type] = {}
    for alg in REGISTRY.values():
        if out.setdefault(alg.section, alg.config_cls) is not alg.config_cls:
            raise ValueError(f"config section {alg.section!r} is registered with two different classes")
    return out


def implementation(name: str) -> types.ModuleType:
    """Imports and returns the module of ``name`` (``make_train``, ``EPOCH_METRICS``, ``greedy_policy``)."""
    module = importlib.import_module(get(name).module)
    missing = [attr for attr in ("make_train", "EPOCH_METRICS", "greedy_policy") if not hasattr(module, attr)]
    if missing:
        raise AttributeError(f"{module.__name__} (alg {name!r}) lacks {', '.join(missing)}; see herjax.algs")
    return module
