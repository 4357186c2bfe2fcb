"""Loops: agents, replay, rollout and envs composed into one compiled epoch, spread over devices.

    loops/off_policy.py   the cycle collect -> store -> normalise -> n updates -> end of cycle (DDPG, TD3, SAC)
    loops/on_policy.py    the iteration unroll -> prepare -> update -> normalise (PPO)
    loops/common.py       TrainState, Trainer, the epoch, evaluation, compilation over devices
    loops/sharding.py     mesh, shard_map, per-device keys and state layout

    trainer = make_train(herjax.config.load(["env=fetch_push", "alg=td3_her"]), herjax.envs.make("fetch_push"))
"""

from __future__ import annotations

import importlib
from typing import Any

from herjax.loops.common import TRACE_COUNTS, Trainer, TrainState

__all__ = ["TRACE_COUNTS", "TrainState", "Trainer", "make_train"]


def make_train(cfg: Any, env: Any, *, demos: Any = None) -> Trainer:
    """The compiled pieces of a run of ``cfg`` (a resolved ``herjax.config.TrainConfig``) on ``env``: the loop of
    the algorithm's family, running the agent its registry entry names. ``demos``: with ``cfg.demos``, its episodes
    (``herjax.demos.load``)."""
    from herjax import algs

    alg = algs.get(cfg.alg)
    loop = importlib.import_module(f"herjax.loops.{alg.family}")
    options = {} if demos is None else {"demos": demos}
    return loop.make_train(cfg, env, make_agent=algs.factory(cfg.alg), section=getattr(cfg, alg.section), **options)
