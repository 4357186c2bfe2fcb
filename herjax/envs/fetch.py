"""The Fetch task semantics of gymnasium-robotics 1.4.2 (``envs/fetch/fetch_env.py``), as pure JAX functions.

Action -> mocap and gripper, the reset and goal sampling, the observation layout, reward and success follow
``MujocoFetchEnv`` line by line; the physics behind them is ``physics.Physics``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from herjax.envs import model as model_lib
from herjax.envs import physics as physics_lib

REWARD_TYPES = ("sparse", "dense")
# Where the object's start xy is drawn: candidates, of which the first lying >= 0.1 from the gripper is kept.
# The original loops until one does; for Slide a candidate is rejected with p ~= 0.79, so 64 candidates
# all fail with p ~= 2e-7, and then the farthest one is kept.
_OBJECT_CANDIDATES = 64
_MOCAP_QUAT_DELTA = np.array([1.0, 0.0, 1.0, 0.0])  # numpy: importing must not run JAX


@dataclasses.dataclass(frozen=True)
class FetchConfig:
    """One Fetch env. Defaults are the original task's; any field can be overridden in ``herjax.envs.make``."""

    task: str = "push"
    reward_type: str = "sparse"
    backend: str = "auto"
    n_substeps: int = model_lib.N_SUBSTEPS
    distance_threshold: float | None = None
    obj_range: float | None = None
    target_range: float | None = None
    episode_length: int = model_lib.EPISODE_STEPS


@struct.dataclass
class State:
    """One env's state.

    Attributes:
        physics: the engine-independent physical state.
        obs: ``observation [obs_dim]``, ``achieved_goal [3]``, ``desired_goal [3]``.
        reward: ``[]`` float.
        done: ``[]`` float, always 0: these tasks never terminate (episodes end by time limit).
        info: ``is_success [] float``.
    """

    physics: physics_lib.PhysState
    obs: dict[str, jax.Array]
    reward: jax.Array
    done: jax.Array
    info: dict[str, jax.Array]


def quat2mat(quat: jax.Array) -> jax.Array:
    """``[..., 4]`` (w, x, y, z) -> ``[..., 3, 3]``, as gymnasium-robotics' ``rotations.quat2mat``."""
    w, x, y, z = quat[..., 0], quat[..., 1], quat[..., 2], quat[..., 3]
    nq = jnp.sum(quat * quat, axis=-1)
    s = 2.0 / jnp.where(nq > 0, nq, 1.0)
    X, Y, Z = x * s, y * s, z * s
    wX, wY, wZ = w * X, w * Y, w * Z
    xX, xY, xZ = x * X, x * Y, x * Z
    yY, yZ, zZ = y * Y, y * Z, z * Z
    rows = [
        [1.0 - (yY + zZ), xY - wZ, xZ + wY],
        [xY + wZ, 1.0 - (xX + zZ), yZ - wX],
        [xZ - wY, yZ + wX, 1.0 - (xX + yY)],
    ]
    mat = jnp.stack([jnp.stack(r, axis=-1) for r in rows], axis=-2)
    eps = jnp.finfo(mat.dtype).eps
    return jnp.where((nq > eps)[..., None, None], mat, jnp.eye(3, dtype=mat.dtype))


def mat2euler(mat: jax.Array) -> jax.Array:
    """``[..., 3, 3]`` -> ``[..., 3]`` Euler angles, as gymnasium-robotics' ``rotations.mat2euler``."""
    cy = jnp.sqrt(mat[..., 2, 2] ** 2 + mat[..., 1, 2] ** 2)
    condition = cy > jnp.finfo(mat.dtype).eps * 4.0
    ez = jnp.where(
        condition, -jnp.arctan2(mat[..., 0, 1], mat[..., 0, 0]), -jnp.arctan2(-mat[..., 1, 0], mat[..., 1, 1])
    )
    ey = -jnp.arctan2(-mat[..., 0, 2], cy)
    ex = jnp.where(condition, -jnp.arctan2(mat[..., 1, 2], mat[..., 2, 2]), 0.0)
    return jnp.stack([ex, ey, ez], axis=-1)


def goal_distance(goal_a: jax.Array, goal_b: jax.Array) -> jax.Array:
    return jnp.linalg.norm(goal_a - goal_b, axis=-1)


def distance_reward(achieved_goal: jax.Array, desired_goal: jax.Array, threshold: float, reward_type: str
                    ) -> jax.Array:
    """gymnasium-robotics' goal reward: sparse ``-(d > threshold)`` or dense ``-d``; ``[..., g] -> [...]``."""
    d = goal_distance(achieved_goal, desired_goal)
    if reward_type == "sparse":
        return -(d > threshold).astype(d.dtype)
    return -d


def distance_success(achieved_goal: jax.Array, desired_goal: jax.Array, threshold: float) -> jax.Array:
    """``d < threshold`` as a float; ``[..., g] -> [...]``."""
    d = goal_distance(achieved_goal, desired_goal)
    return (d < threshold).astype(d.dtype)


class FetchEnv:
    """A Fetch task: pure ``reset(key)``, ``step(state, action)`` and ``compute_reward(ag, g)`` of one env.

    ``jax.jit`` and ``jax.vmap`` work on ``reset`` and ``step`` for every backend. The instance holds only
    constants; all that changes travels in ``State``.
    """

    def __init__(self, config: FetchConfig):
        if config.task not in model_lib.TASKS:
            raise ValueError(f"unknown Fetch task {config.task!r}; valid tasks: {', '.join(model_lib.TASKS)}")
        if config.reward_type not in REWARD_TYPES:
            raise ValueError(f"unknown reward_type {config.reward_type!r}; valid: {', '.join(REWARD_TYPES)}")
        if config.n_substeps < 1:
            raise ValueError(f"n_substeps must be >= 1, got {config.n_substeps}")
        self.config = config
        spec = model_lib.TASKS[config.task]
        self.task_spec = spec
        # Both engines step Slide's original cylinder puck: MJX with herjax's cylinder-box test (envs/README.md);
        # the prism stays for MJX without herjax's contacts (physics.MJX_C_CONTACTS off, as benchmarks compare).
        backend = physics_lib.resolve_backend(config.backend)
        self.model = model_lib.load_model(config.task,
                                          convex_puck=backend == "mjx" and not physics_lib.MJX_C_CONTACTS)
        m = self.model.mj_model
        self.has_object = spec.has_object
        self.block_gripper = spec.block_gripper
        self.distance_threshold = (
            spec.distance_threshold if config.distance_threshold is None else config.distance_threshold
        )
        self.obj_range = spec.obj_range if config.obj_range is None else config.obj_range
        self.target_range = spec.target_range if config.target_range is None else config.target_range
        self.target_offset = np.asarray(spec.target_offset, np.float32)
        self.dt = config.n_substeps * float(m.opt.timestep)
        self.episode_length = config.episode_length
        self.physics = physics_lib.make_physics(
            m,
            backend,
            n_substeps=config.n_substeps,
            locked_qpos=self.model.finger_qpos_adr if spec.block_gripper else (),
        )
        self.backend = self.physics.backend
        # Position actuators take ctrl = qpos[joint] + action (gymnasium-robotics ``ctrl_set_action``).
        self._actuator_qpos_adr = np.array([m.jnt_qposadr[m.actuator_trnid[i, 0]] for i in range(m.nu)], np.int32)
        self.obs_dim = 25 if self.has_object else 10
        self.goal_dim = 3
        self.action_dim = 4

    @property
    def mj_model(self):
        """The edited ``MjModel`` every engine steps (what ``herjax.play`` renders)."""
        return self.model.mj_model

    def __repr__(self) -> str:
        return f"FetchEnv(task={self.config.task!r}, reward_type={self.config.reward_type!r}, backend={self.backend!r})"

    def _sensor(self, sensordata: jax.Array, name: str) -> jax.Array:
        start, size = self.model.sensors[name]
        return sensordata[..., start : start + size]

    def compute_reward(self, achieved_goal: jax.Array, desired_goal: jax.Array) -> jax.Array:
        """Sparse ``-(d > threshold)`` or dense ``-d``; batched over any leading shape ``[..., 3]`` -> ``[...]``."""
        return distance_reward(achieved_goal, desired_goal, self.distance_threshold, self.config.reward_type)

    def is_success(self, achieved_goal: jax.Array, desired_goal: jax.Array) -> jax.Array:
        return distance_success(achieved_goal, desired_goal, self.distance_threshold)

    def observe(self, sensordata: jax.Array, desired_goal: jax.Array) -> dict[str, jax.Array]:
        """The original ``_get_obs`` from the sensors; batched over leading dims."""
        s = lambda name: self._sensor(sensordata, name)
        dt = self.dt
        grip_pos = s("grip_pos")
        grip_velp = s("grip_velp") * dt
        gripper_state = jnp.concatenate([s("finger_qpos0"), s("finger_qpos1")], axis=-1)
        gripper_vel = jnp.concatenate([s("finger_qvel0"), s("finger_qvel1")], axis=-1) * dt
        if self.has_object:
            object_pos = s("object_pos")
            object_rot = mat2euler(quat2mat(s("object_quat")))
            object_velp = s("object_velp") * dt - grip_velp
            object_velr = s("object_velr") * dt
            parts = [grip_pos, object_pos, object_pos - grip_pos, gripper_state, object_rot, object_velp,
                     object_velr, grip_velp, gripper_vel]
            achieved_goal = object_pos
        else:
            parts = [grip_pos, gripper_state, grip_velp, gripper_vel]
            achieved_goal = grip_pos
        return {
            "observation": jnp.concatenate(parts, axis=-1),
            "achieved_goal": achieved_goal,
            "desired_goal": jnp.broadcast_to(desired_goal, achieved_goal.shape).astype(achieved_goal.dtype),
        }

    def _sample_object_xy(self, key: jax.Array) -> jax.Array:
        grip_xy = jnp.asarray(self.model.initial_gripper_xpos[:2], jnp.float32)
        offsets = jax.random.uniform(key, (_OBJECT_CANDIDATES, 2), minval=-self.obj_range, maxval=self.obj_range)
        far = jnp.linalg.norm(offsets, axis=-1) >= 0.1
        index = jnp.where(jnp.any(far), jnp.argmax(far), jnp.argmax(jnp.linalg.norm(offsets, axis=-1)))
        return grip_xy + offsets[index]

    def _sample_goal(self, key: jax.Array) -> jax.Array:
        k_xyz, k_air, k_height = jax.random.split(key, 3)
        grip = jnp.asarray(self.model.initial_gripper_xpos, jnp.float32)
        goal = grip + jax.random.uniform(k_xyz, (3,), minval=-self.target_range, maxval=self.target_range)
        if self.has_object:
            goal = goal + self.target_offset
            goal = goal.at[2].set(self.model.height_offset)
            if self.task_spec.target_in_the_air:
                lift = jax.random.uniform(k_height, (), minval=0.0, maxval=0.45)
                goal = goal.at[2].add(jnp.where(jax.random.uniform(k_air) < 0.5, lift, 0.0))
        return goal

    def reset(self, key: jax.Array) -> State:
        """The original ``reset``: the settled state, a fresh object position and a fresh goal.

        Args:
            key: a PRNG key.
        """
        k_object, k_goal = jax.random.split(key)
        m = self.model
        fdtype = jnp.result_type(float)
        qpos = jnp.asarray(m.init_qpos, fdtype)
        if self.has_object:
            qpos = qpos.at[m.object_qpos_adr : m.object_qpos_adr + 2].set(self._sample_object_xy(k_object))
        mj = m.mj_model
        phys = physics_lib.PhysState(
            qpos=qpos,
            qvel=jnp.asarray(m.init_qvel, fdtype),
            ctrl=jnp.zeros((mj.nu,), fdtype),  # mj_resetData zeroes ctrl, warm start and puts the mocap home
            mocap_pos=jnp.asarray(m.mocap_pos0, fdtype),
            mocap_quat=jnp.asarray(m.mocap_quat0, fdtype),
            qacc_warmstart=jnp.zeros((mj.nv,), fdtype),
            sensordata=jnp.zeros((mj.nsensordata,), fdtype),
        )
        phys = self.physics.forward(phys)
        goal = self._sample_goal(k_goal).astype(fdtype)
        obs = self.observe(phys.sensordata, goal)
        zero = jnp.zeros((), fdtype)
        return State(
            physics=phys, obs=obs, reward=zero, done=zero,
            info={"is_success": self.is_success(obs["achieved_goal"], goal)},
        )

    def step(self, state: State, action: jax.Array) -> State:
        """The original ``step``: mocap += 0.05 * a[:3] about the gripper's pose, gripper ctrl, physics.

        Args:
            state: the current ``State``.
            action: ``[4]`` in [-1, 1] (clipped, as the original does).
        """
        phys = state.physics
        action = jnp.clip(action, -1.0, 1.0).astype(phys.qpos.dtype)
        pos_ctrl = action[:3] * 0.05
        gripper_ctrl = jnp.zeros((2,), action.dtype) if self.block_gripper else jnp.stack([action[3], action[3]])
        # mocap_set_action: the mocap first jumps to the gripper body's current pose, then moves by the delta.
        mocap_pos = self._sensor(phys.sensordata, "gripper_link_pos")[None] + pos_ctrl
        mocap_quat = self._sensor(phys.sensordata, "gripper_link_quat")[None] + _MOCAP_QUAT_DELTA
        ctrl = phys.ctrl
        if self._actuator_qpos_adr.size:
            ctrl = phys.qpos[self._actuator_qpos_adr] + gripper_ctrl[: self._actuator_qpos_adr.size]
        phys = self.physics.step(phys._replace(ctrl=ctrl, mocap_pos=mocap_pos, mocap_quat=mocap_quat))
        goal = state.obs["desired_goal"]
        obs = self.observe(phys.sensordata, goal)
        return state.replace(
            physics=phys,
            obs=obs,
            reward=self.compute_reward(obs["achieved_goal"], goal),
            done=jnp.zeros_like(state.done),
            info={"is_success": self.is_success(obs["achieved_goal"], goal)},
        )

    def observation_spec(self) -> dict[str, Any]:
        """Shapes of one env's observation dict and action."""
        return {
            "observation": (self.obs_dim,),
            "achieved_goal": (self.goal_dim,),
            "desired_goal": (self.goal_dim,),
            "action": (self.action_dim,),
        }
