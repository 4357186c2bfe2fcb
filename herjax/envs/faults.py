"""A fault-injecting env, to show that physics blowing up never poisons training (tests, ``benchmarks/faults.py``).

    env = NanEvery(herjax.envs.make("fetch_reach"), every=10, fraction=0.5)
    trainer = herjax.loops.make_train(cfg, env)

At each reset an env turns faulty with probability ``fraction``; a faulty env's state (positions, velocities and
observation) turns NaN at every ``every``-th step of its episode, as a blown-up simulation would. The rollouts
reset it at once (``herjax.envs.wrappers.finite``), which redraws whether it is faulty.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from herjax.envs.fetch import FetchEnv, State


class NanEvery:
    """``env`` with NaN injected (see the module docstring); every other attribute is ``env``'s.

    The wrapper keeps its two counters in the state's ``info`` (``fault_t``: steps since reset; ``faulty``), so it
    stays pure and batches with ``jax.vmap`` like ``env``.
    """

    def __init__(self, env: FetchEnv, every: int, fraction: float):
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"fraction must be in [0, 1], got {fraction}")
        self.env, self.every, self.fraction = env, every, fraction

    def __getattr__(self, name: str) -> Any:
        return getattr(self.env, name)

    def __repr__(self) -> str:
        return f"NanEvery({self.env!r}, every={self.every}, fraction={self.fraction})"

    def reset(self, key: jax.Array) -> State:
        state = self.env.reset(key)
        faulty = jax.random.uniform(jax.random.fold_in(key, 0x5EED)) < self.fraction
        return state.replace(info={**state.info, "fault_t": jnp.zeros((), jnp.int32), "faulty": faulty})

    def step(self, state: State, action: jax.Array) -> State:
        stepped = self.env.step(state, action)
        t = state.info["fault_t"] + 1
        poison = state.info["faulty"] & (t % self.every == 0)
        nan_if = lambda x: jnp.where(poison, jnp.nan, x)
        physics = stepped.physics._replace(qpos=nan_if(stepped.physics.qpos), qvel=nan_if(stepped.physics.qvel))
        obs = {**stepped.obs, "observation": nan_if(stepped.obs["observation"])}
        info = {**stepped.info, "fault_t": t, "faulty": state.info["faulty"]}
        return stepped.replace(physics=physics, obs=obs, info=info)
