"""The algorithm registry: ``alg=<name>`` on the command line picks one entry of ``REGISTRY``.

**Adding an algorithm** is one folder and one line here; no loop, config or host code changes:

1. ``herjax/agents/<name>/``: ``config.py`` (a frozen dataclass of hyper-parameters with ``validate(prefix, *,
   num_envs, horizon)`` raising ``herjax.checks.ConfigError``; off-policy ones subclass
   ``herjax.agents.common.config.OffPolicyConfig``, which brings the replay and update knobs the loop reads),
   ``losses.py`` (standalone loss functions) and ``agent.py`` (``make_<name>(cfg, *, obs_dim, goal_dim, act_dim,
   horizon)`` returning an ``OffPolicyAgent``, or ``(..., total_updates)`` returning an ``OnPolicyAgent``; see
   ``herjax.agents.base``). TD3 (``agents/td3``) and SAC (``agents/sac``) were added exactly this way. An
   off-policy factory that also takes ``bc=`` (a ``herjax.agents.common.config.BCConfig``: learning from
   ``demos=``) says so with ``BC_LOSS = True`` on its config class; ``demos=`` is refused for the others.
2. A field for the section in ``herjax.config.TrainConfig`` (``td3: TD3Config = ...``), so the config is written
   out where an IDE and a type checker see it.
3. One ``Algorithm`` line below: the section's name, the factory's import path and the family (which loop runs it).

The family's loop (``herjax.loops.off_policy`` or ``on_policy``) then runs the agent with the HER buffer, the
normaliser, evaluation, devices, checkpoints, resume, play and export that every algorithm shares.
"""

from __future__ import annotations

import importlib
from typing import Callable, NamedTuple

FAMILIES = ("off_policy", "on_policy")


class Algorithm(NamedTuple):
    """One registered algorithm.

    Attributes:
        section: the ``TrainConfig`` field holding its hyper-parameters (``<section>.<field>=value``).
        factory: ``"module:function"`` of its agent factory, imported only when a run is built.
        family: ``off_policy`` or ``on_policy``: the loop that runs it, and the loop knobs' defaults
            (``herjax.config.FAMILY_DEFAULTS``).
    """

    section: str
    factory: str
    family: str


REGISTRY: dict[str, Algorithm] = {
    "ddpg_her": Algorithm(section="ddpg", factory="herjax.agents.ddpg:make_ddpg", family="off_policy"),
    "td3_her": Algorithm(section="td3", factory="herjax.agents.td3:make_td3", family="off_policy"),
    "sac_her": Algorithm(section="sac", factory="herjax.agents.sac:make_sac", family="off_policy"),
    "ppo": Algorithm(section="ppo", factory="herjax.agents.ppo:make_ppo", family="on_policy"),
}


def names() -> list[str]:
    """Every registered algorithm name."""
    return list(REGISTRY)


def get(name: str) -> Algorithm:
    """The entry of ``name``; ``KeyError`` if it is not registered (``herjax.config`` reports that nicely)."""
    return REGISTRY[name]


def factory(name: str) -> Callable:
    """Imports and returns the agent factory of ``name``."""
    module, _, function = get(name).factory.partition(":")
    return getattr(importlib.import_module(module), function)
