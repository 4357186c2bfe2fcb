"""Compiled env functions shared by the env and parity tests (one compile per task and backend per session).

MJX compiles take tens of seconds on the CPU, so every test that runs episodes goes through ``episodes_fn``,
whose batch size is fixed at ``BATCH``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

import herjax  # noqa: F401  (XLA flag before any JAX computation)
from herjax import envs
from herjax.envs import scripted

BATCH = 100
T = 50
TASKS = ("reach", "push", "slide", "pick_and_place")
POLICIES = {
    "reach": scripted.reach_policy,
    "push": scripted.push_policy,
    "slide": scripted.push_policy,
    "pick_and_place": scripted.pick_and_place_policy,
}


@functools.lru_cache(maxsize=None)
def get_env(task: str, backend: str) -> envs.FetchEnv:
    return envs.make(f"fetch_{task}", backend=backend)


@functools.lru_cache(maxsize=None)
def episodes_fn(task: str, backend: str, steps: int = T):
    """jit(vmap) of one ``steps``-step episode over a batch of envs.

    Each env resets from its key; where ``use_state`` it is then moved to the given physical state (qpos, qvel,
    goal: e.g. the original env's reset state). It then takes ``T`` steps of either the given actions or, where
    ``use_policy``, the task's scripted policy.

    Returns a dict of ``[BATCH, T+1, ...]`` observations, ``[BATCH, T]`` is_success and reward, and the final
    physical state.
    """
    env = get_env(task, backend)
    policy = POLICIES[task]

    def one(key, actions, use_policy, use_state, qpos, qvel, goal):
        state = env.reset(key)

        def moved():
            phys = state.physics._replace(qpos=qpos, qvel=qvel, qacc_warmstart=jnp.zeros_like(qvel))
            return env.physics.forward(phys), goal

        phys, goal_ = jax.lax.cond(use_state, moved, lambda: (state.physics, state.obs["desired_goal"]))
        state = state.replace(physics=phys, obs=env.observe(phys.sensordata, goal_))

        def body(state, action):
            action = jnp.where(use_policy, policy(state.obs), action)
            state = env.step(state, action)
            return state, (state.obs, state.info["is_success"], state.reward)

        final, (obs, success, reward) = jax.lax.scan(body, state, actions)
        obs = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), state.obs, obs)
        return {"obs": obs, "is_success": success, "reward": reward, "final": final}

    return jax.jit(jax.vmap(one))


def run_episodes(task, backend, keys, actions=None, use_policy=False, states=None):
    """Runs ``episodes_fn``; ``states`` is a list of original-env state dicts (qpos in the ORIGINAL model)."""
    env = get_env(task, backend)
    m = env.model.mj_model
    n = len(keys)
    if actions is None:
        actions = np.zeros((n, T, 4), np.float32)
    qpos = np.tile(env.model.init_qpos, (n, 1))
    qvel = np.zeros((n, m.nv))
    goal = np.zeros((n, 3))
    use_state = np.zeros(n, bool)
    if states is not None:
        for i, s in enumerate(states):
            qpos[i], qvel[i] = map_state(task, s)
            goal[i] = s["goal"]
            use_state[i] = True
    f = jnp.asarray
    real = jnp.asarray(0.0).dtype  # float32, or float64 under jax_enable_x64 (the env's own float type)
    return episodes_fn(task, backend, actions.shape[1])(
        keys, f(actions, real), f(np.broadcast_to(use_policy, (n,))), f(use_state),
        f(qpos, real), f(qvel, real), f(goal, real),
    )


@functools.lru_cache(maxsize=None)
def _original_model(task: str) -> mujoco.MjModel:
    from herjax.envs.model import original_xml_path

    return mujoco.MjModel.from_xml_path(original_xml_path(task))


def map_state(task: str, state: dict) -> tuple[np.ndarray, np.ndarray]:
    """An original-model (qpos, qvel) -> herjax's edited model, joint by joint (welded joints drop out)."""
    m = get_env(task, "mujoco").model.mj_model
    o = _original_model(task)
    qpos, qvel = np.zeros(m.nq), np.zeros(m.nv)
    for j in range(m.njnt):
        name = m.joint(j).name
        oj = o.joint(name)
        nq = {0: 7, 1: 4}.get(int(m.jnt_type[j]), 1)
        nv = {0: 6, 1: 3}.get(int(m.jnt_type[j]), 1)
        qpos[m.jnt_qposadr[j] : m.jnt_qposadr[j] + nq] = state["qpos"][oj.qposadr[0] : oj.qposadr[0] + nq]
        qvel[m.jnt_dofadr[j] : m.jnt_dofadr[j] + nv] = state["qvel"][oj.dofadr[0] : oj.dofadr[0] + nv]
    return qpos, qvel


def keys(seed: int = 0, n: int = BATCH) -> jax.Array:
    return jax.random.split(jax.random.key(seed), n)


def random_actions(seed: int, n: int = BATCH, steps: int = T) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, steps, 4)).astype(np.float32)
