"""Goal-conditioned envs on MuJoCo MJX or batched C MuJoCo: the four Fetch tasks of gymnasium-robotics (v4), and
any env registered beside them (``herjax.envs.registry``).

    env = herjax.envs.make("fetch_push")            # backend="auto": mjx on GPU/TPU, C MuJoCo on CPU
    state = jax.jit(env.reset)(key)
    state = jax.jit(env.step)(state, action)

    herjax.envs.register("point_room", make_point_room, episode_length=50)   # your own env (see registry.py)
    env = herjax.envs.make("examples.point_room:point_room")                 # or by import path
"""

from __future__ import annotations

import dataclasses

from herjax.checks import suggest
from herjax.envs.fetch import FetchConfig, FetchEnv, State
from herjax.envs.goal_env import GoalTask, MujocoGoalEnv
from herjax.envs.model import TASKS
from herjax.envs.physics import BACKENDS, PhysState, default_backend
from herjax.envs.registry import EnvError, EnvSpec, check_env, make, names, register, spec
from herjax.envs.wrappers import VecEnv, VecState, finite, reset_where, vec

# Loop-knob defaults of the Fetch tasks. Off-policy: baselines' cycles (10 for FetchReach, 50 for the others) and
# the budgets of the published curves (REFERENCE section 2), which on one CPU worker take hours; Reach learns in
# ~5k steps (10 epochs here). PPO: budgets of our measured runs.
_FETCH_BUDGETS = {
    "reach": {"off_policy": {"n_cycles": 10, "total_env_steps": 10_000}, "on_policy": {"total_env_steps": 100_000}},
    "push": {"off_policy": {"total_env_steps": 1_000_000}, "on_policy": {"total_env_steps": 20_000_000}},
    "pick_and_place": {"off_policy": {"total_env_steps": 3_000_000}, "on_policy": {"total_env_steps": 50_000_000}},
    "slide": {"off_policy": {"total_env_steps": 5_000_000}, "on_policy": {"total_env_steps": 50_000_000}},
}
# The fast CPU recipe (``scale=fast``, the default), measured on FetchPush on 2 cores (benchmarks/results/
# push_recipes_cpu.json): 8 baselines workers' 16 envs a cycle, half their batch, critics and actors of 3 x 128
# (2.5x cheaper updates than 3 x 256 on a CPU) and 3-step returns, which more than make up for both; and
# proportional prioritised replay, which reached 0.9 in 360k-420k env steps where uniform replay took 480k-580k
# (3 seeds each, one sitting), about 13% less wall-clock despite its ~14% slower steps. PickAndPlace and Slide
# take Push's recipe (pick_slide_fast_cpu.json). TD3, layer-normalised networks, a 3x learning rate, 5-step returns
# and 32 envs a cycle were each slower on Push (push_recipe_screen_cpu.json). Reach keeps baselines' single worker:
# it learns in ~2k env steps, faster than a bigger batch compiles.
_FAST_CPU = {"num_envs": 16, "n_cycles": 25, "n_test_episodes": 100, "{section}.batch_size": 1024,
             "{section}.hidden": [128, 128, 128], "{section}.n_step": 3, "replay.prioritized": True}
_FETCH_RECIPES = {"reach": {}, "push": {"cpu": _FAST_CPU}, "pick_and_place": {"cpu": _FAST_CPU},
                  "slide": {"cpu": _FAST_CPU}}
_FETCH_OPTIONS = sorted({f.name for f in dataclasses.fields(FetchConfig)} - {"task", "backend"})


def _fetch_maker(task: str, reward_type: str):
    def make_fetch(backend: str = "auto", **options) -> FetchEnv:
        for key in options:
            if key not in _FETCH_OPTIONS:
                raise EnvError(f"unknown env option {key!r}{suggest(key, _FETCH_OPTIONS)}; valid: "
                               f"{', '.join(_FETCH_OPTIONS)}")
        options.setdefault("reward_type", reward_type)
        return FetchEnv(FetchConfig(task=task, backend=backend, **options))

    make_fetch.__qualname__ = f"make_fetch_{task}_{reward_type}"
    return make_fetch


for _task in TASKS:
    for _reward, _suffix in (("sparse", ""), ("dense", "_dense")):
        register(f"fetch_{_task}{_suffix}", _fetch_maker(_task, _reward), episode_length=50,
                 defaults=_FETCH_BUDGETS[_task], recipes=_FETCH_RECIPES[_task], description=f"gymnasium-robotics Fetch {_task} ({_reward} reward)",
                 check=False)


__all__ = [
    "BACKENDS", "EnvError", "EnvSpec", "FetchConfig", "FetchEnv", "GoalTask", "MujocoGoalEnv", "PhysState", "State",
    "VecEnv", "VecState", "check_env", "default_backend", "finite", "make", "names", "register", "reset_where",
    "spec", "vec",
]
