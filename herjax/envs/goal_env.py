"""A goal-conditioned env from any MuJoCo model and a few task functions, on both engines (C MuJoCo and MJX).

    task = GoalTask(
        observation=lambda p: jnp.concatenate([p.qpos, p.qvel]),        # PhysState -> [obs_dim]
        achieved_goal=lambda p: p.qpos[:2],                             # PhysState -> [goal_dim]
        sample_goal=lambda key, p: jax.random.uniform(key, (2,), minval=-0.4, maxval=0.4),
        distance_threshold=0.05,
    )
    env = MujocoGoalEnv(xml_string_or_path_or_MjModel_or_MjSpec, task, backend="auto", n_substeps=5)

The env keeps the registry's contract (``herjax.envs.registry``): pure ``reset``/``step`` over a ``PhysState``,
the goal dict observation, a batched ``compute_reward`` (sparse ``-(d > threshold)`` or dense ``-d``, ``d`` the
Euclidean distance of the goals, as the Fetch tasks) and ``is_success = d < threshold``. A step clips the action
to ``[-1, 1]``, maps it to controls (by default linearly onto each actuator's ``ctrlrange``), runs ``n_substeps``
MuJoCo steps and a forward pass, as the Fetch tasks do. ``herjax.play`` renders it (the model's site ``target0``,
if any, marks the goal).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Optional, Union

import jax
import jax.numpy as jnp
import mujoco
import numpy as np

from herjax.envs import physics as physics_lib
from herjax.envs.fetch import REWARD_TYPES, State, distance_reward, distance_success
from herjax.envs.physics import PhysState

ModelSource = Union[str, "os.PathLike[str]", mujoco.MjModel, mujoco.MjSpec]


@dataclasses.dataclass(frozen=True)
class GoalTask:
    """The task functions of a ``MujocoGoalEnv``; each is pure JAX on one env's ``PhysState`` (``qpos``, ``qvel``,
    ``sensordata`` ... of the state after the forward pass).

    Attributes:
        observation: ``PhysState -> [obs_dim]``.
        achieved_goal: ``PhysState -> [goal_dim]``.
        sample_goal: ``(key, PhysState) -> [goal_dim]``, the goal of a new episode (given its initial state).
        initial_state: ``(key, qpos0 [nq], qvel0 [nv]) -> (qpos, qvel)``, the start of a new episode; ``None``:
            the model's ``qpos0`` at rest.
        control: ``(action [action_dim] in [-1, 1], PhysState) -> ctrl [nu]``; ``None``: each action entry
            scaled linearly onto its actuator's ``ctrlrange`` (``action_dim = nu``).
        action_dim: the action size; ``None``: the model's ``nu``.
        distance_threshold: success when the goals lie closer than this.
        reward_type: ``sparse`` (``-(d > threshold)``) or ``dense`` (``-d``).
        goal_position: ``[..., goal_dim] -> [..., 3]``, where ``herjax.play`` draws a goal; ``None``: the goal itself
            (``goal_dim`` 3), or padded with zeros.
        render_camera: the video's free camera ``{distance, azimuth, elevation, lookat}``; ``None``: one that
            frames the whole model.
    """

    observation: Callable[[PhysState], jax.Array]
    achieved_goal: Callable[[PhysState], jax.Array]
    sample_goal: Callable[[jax.Array, PhysState], jax.Array]
    initial_state: Optional[Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]] = None
    control: Optional[Callable[[jax.Array, PhysState], jax.Array]] = None
    action_dim: Optional[int] = None
    distance_threshold: float = 0.05
    reward_type: str = "sparse"
    goal_position: Optional[Callable[[jax.Array], jax.Array]] = None
    render_camera: Optional[dict] = None


def load_mj_model(source: ModelSource) -> mujoco.MjModel:
    """An ``MjModel`` from a model, an ``MjSpec`` (compiled), an XML file path or an XML string."""
    if isinstance(source, mujoco.MjModel):
        return source
    if isinstance(source, mujoco.MjSpec):
        return source.compile()
    text = os.fspath(source)
    if text.lstrip().startswith("<"):
        return mujoco.MjModel.from_xml_string(text)
    return mujoco.MjModel.from_xml_path(text)


class MujocoGoalEnv:
    """A goal-conditioned env: ``model`` stepped by ``herjax.envs.physics`` on ``backend``, ``task`` on top.

    Attributes:
        mj_model: the compiled model (every engine steps this one).
        backend: ``mujoco`` or ``mjx`` (``auto`` resolved).
        dt: seconds per env step (``n_substeps * timestep``).
        obs_dim, goal_dim, action_dim, episode_length: the contract's sizes.
    """

    def __init__(self, model: ModelSource, task: GoalTask, *, backend: str = "auto", n_substeps: int = 1,
                 episode_length: int = 50):
        if task.reward_type not in REWARD_TYPES:
            raise ValueError(f"unknown reward_type {task.reward_type!r}; valid: {', '.join(REWARD_TYPES)}")
        if n_substeps < 1:
            raise ValueError(f"n_substeps must be >= 1, got {n_substeps}")
        m = load_mj_model(model)
        self.mj_model = m
        self.task = task
        self.episode_length = int(episode_length)
        self.distance_threshold = float(task.distance_threshold)
        self.dt = n_substeps * float(m.opt.timestep)
        self.physics = physics_lib.make_physics(m, backend, n_substeps=n_substeps)
        self.backend = self.physics.backend
        self.render_camera = task.render_camera or _framing_camera(m)
        low, high = np.asarray(m.actuator_ctrlrange, np.float64).reshape(-1, 2).T
        limited = np.asarray(m.actuator_ctrllimited, bool).reshape(-1)
        self._ctrl_mid = np.where(limited, (low + high) / 2, 0.0).astype(np.float32)
        self._ctrl_half = np.where(limited, (high - low) / 2, 1.0).astype(np.float32)
        self.action_dim = int(task.action_dim if task.action_dim is not None else m.nu)
        if task.control is None and self.action_dim != m.nu:
            raise ValueError(f"action_dim={self.action_dim} differs from the model's {m.nu} actuators: give "
                             "GoalTask.control to map actions to controls")
        template = self._template()
        self.obs_dim = int(np.prod(jax.eval_shape(task.observation, template).shape))
        self.goal_dim = int(np.prod(jax.eval_shape(task.achieved_goal, template).shape))

    def __repr__(self) -> str:
        return f"MujocoGoalEnv(nq={self.mj_model.nq}, nu={self.mj_model.nu}, backend={self.backend!r})"

    def _template(self) -> PhysState:
        m, f = self.mj_model, jnp.result_type(float)
        return PhysState(
            qpos=jnp.asarray(m.qpos0, f), qvel=jnp.zeros((m.nv,), f), ctrl=jnp.zeros((m.nu,), f),
            mocap_pos=jnp.asarray(np.array(m.body_pos[m.body_mocapid >= 0]).reshape(m.nmocap, 3), f),
            mocap_quat=jnp.asarray(np.array(m.body_quat[m.body_mocapid >= 0]).reshape(m.nmocap, 4), f),
            qacc_warmstart=jnp.zeros((m.nv,), f), sensordata=jnp.zeros((m.nsensordata,), f),
        )

    def compute_reward(self, achieved_goal: jax.Array, desired_goal: jax.Array) -> jax.Array:
        """Sparse ``-(d > threshold)`` or dense ``-d``; ``[..., goal_dim] -> [...]``."""
        return distance_reward(achieved_goal, desired_goal, self.distance_threshold, self.task.reward_type)

    def is_success(self, achieved_goal: jax.Array, desired_goal: jax.Array) -> jax.Array:
        """``d < threshold`` as a float; ``[..., goal_dim] -> [...]``."""
        return distance_success(achieved_goal, desired_goal, self.distance_threshold)

    def goal_position(self, goal: jax.Array) -> jax.Array:
        """Where ``herjax.play`` draws ``goal [..., goal_dim]``: ``[..., 3]``."""
        if self.task.goal_position is not None:
            return self.task.goal_position(goal)
        goal = jnp.asarray(goal)
        if goal.shape[-1] >= 3:
            return goal[..., :3]
        return jnp.concatenate([goal, jnp.zeros(goal.shape[:-1] + (3 - goal.shape[-1],), goal.dtype)], axis=-1)

    def _obs(self, phys: PhysState, goal: jax.Array) -> dict[str, jax.Array]:
        achieved = jnp.reshape(self.task.achieved_goal(phys), (self.goal_dim,))
        return {
            "observation": jnp.reshape(self.task.observation(phys), (self.obs_dim,)),
            "achieved_goal": achieved,
            "desired_goal": jnp.reshape(goal, (self.goal_dim,)).astype(achieved.dtype),
        }

    def _state(self, phys: PhysState, goal: jax.Array, done: jax.Array) -> State:
        obs = self._obs(phys, goal)
        return State(
            physics=phys, obs=obs, reward=self.compute_reward(obs["achieved_goal"], obs["desired_goal"]),
            done=done, info={"is_success": self.is_success(obs["achieved_goal"], obs["desired_goal"])},
        )

    def reset(self, key: jax.Array) -> State:
        """A new episode: ``task.initial_state`` (or ``qpos0`` at rest), a forward pass, ``task.sample_goal``."""
        k_state, k_goal = jax.random.split(key)
        phys = self._template()
        if self.task.initial_state is not None:
            qpos, qvel = self.task.initial_state(k_state, phys.qpos, phys.qvel)
            phys = phys._replace(qpos=jnp.asarray(qpos, phys.qpos.dtype), qvel=jnp.asarray(qvel, phys.qvel.dtype))
        phys = self.physics.forward(phys)
        goal = self.task.sample_goal(k_goal, phys)
        state = self._state(phys, goal, jnp.zeros((), phys.qpos.dtype))
        return state.replace(reward=jnp.zeros_like(state.reward))

    def step(self, state: State, action: jax.Array) -> State:
        """Clips ``action [action_dim]`` to ``[-1, 1]``, sets the controls, runs ``n_substeps`` and a forward pass."""
        phys = state.physics
        action = jnp.clip(action, -1.0, 1.0).astype(phys.qpos.dtype)
        if self.task.control is not None:
            ctrl = self.task.control(action, phys)
        else:
            ctrl = self._ctrl_mid + self._ctrl_half * action
        phys = self.physics.step(phys._replace(ctrl=jnp.asarray(ctrl, phys.ctrl.dtype).reshape(phys.ctrl.shape)))
        return self._state(phys, state.obs["desired_goal"], jnp.zeros_like(state.done))


def _framing_camera(m: mujoco.MjModel) -> dict:
    """A free camera looking down at the model's centre from far enough to see all of it."""
    return {"distance": 2.2 * float(m.stat.extent), "azimuth": 90.0, "elevation": -60.0,
            "lookat": tuple(float(x) for x in m.stat.center)}
