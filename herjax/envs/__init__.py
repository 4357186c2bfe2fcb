"""The four Fetch tasks of gymnasium-robotics (v4), on MuJoCo MJX or batched C MuJoCo.

    env = herjax.envs.make("fetch_push")            # backend="auto": mjx on GPU/TPU, C MuJoCo on CPU
    state = jax.jit(env.reset)(key)
    state = jax.jit(env.step)(state, action)
"""

from __future__ import annotations

import dataclasses
import difflib

from herjax.envs.fetch import FetchConfig, FetchEnv, State
from herjax.envs.model import TASKS
from herjax.envs.physics import BACKENDS, PhysState, default_backend
from herjax.envs.wrappers import VecEnv, VecState, finite, reset_where, vec

_TASK_OF = {f"fetch_{task}": task for task in TASKS}


def names() -> list[str]:
    """Every registered env name: the four tasks, each also with ``_dense`` (reward ``-d``)."""
    return [n for base in _TASK_OF for n in (base, f"{base}_dense")]


def suggest(name: str, choices: list[str]) -> str:
    """'; did you mean X?' for a close match, else ''."""
    close = difflib.get_close_matches(name, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_name(name: str) -> tuple[str, str]:
    """``fetch_push_dense`` -> (``push``, ``dense``). Raises ValueError naming the valid names."""
    if name not in names():
        raise ValueError(f"unknown env {name!r}{suggest(name, names())} valid envs: {', '.join(names())}")
    base, dense = (name[: -len("_dense")], True) if name.endswith("_dense") else (name, False)
    return _TASK_OF[base], "dense" if dense else "sparse"


def make(name: str, backend: str = "auto", **overrides) -> FetchEnv:
    """Builds the env ``name`` (see ``names()``) on ``backend`` (``auto``, ``mjx`` or ``mujoco``).

    Args:
        name: e.g. ``fetch_push`` or ``fetch_reach_dense``.
        backend: the physics engine.
        **overrides: fields of ``FetchConfig``, e.g. ``distance_threshold=0.02``.
    """
    task, reward_type = parse_name(name)
    valid = {f.name for f in dataclasses.fields(FetchConfig)} - {"task", "backend"}
    for key in overrides:
        if key not in valid:
            raise ValueError(f"unknown env option {key!r}{suggest(key, sorted(valid))} valid: {', '.join(sorted(valid))}")
    overrides.setdefault("reward_type", reward_type)
    return FetchEnv(FetchConfig(task=task, backend=backend, **overrides))


__all__ = [
    "BACKENDS", "FetchConfig", "FetchEnv", "PhysState", "State", "VecEnv", "VecState", "default_backend",
    "finite", "make", "names", "reset_where", "vec",
]
