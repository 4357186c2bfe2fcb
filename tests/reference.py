"""Harness for running the ORIGINAL gymnasium-robotics Fetch v4 envs (C MuJoCo).

herjax is checked against these envs, so this module gives the tests a way to
construct, inspect, drive and re-position them.  It contains exactly one
behavioural intervention, the compatibility shim below; everything else only
reads or writes state through public attributes.

Compatibility shim
------------------
What broke
    ``gymnasium_robotics.utils.mujoco_utils.{set,get}_joint_{qpos,qvel}``
    (gymnasium-robotics 1.4.2) classify a joint by comparing
    ``model.jnt_type[joint_id]`` with ``mujoco.mjtJoint`` members.  The
    hinge/slide branch ends in::

        assert joint_type in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE)

Why
    In recent ``mujoco`` Python bindings (observed with mujoco 4.0.0; the
    failure is reported from 3.12 on) ``model.jnt_type[i]`` is an
    ``np.int32`` and the ``mjtJoint`` enum members no longer compare equal to
    plain integers *from the enum side*: ``mjJNT_HINGE == np.int32(3)`` is
    False.  ``x in (a, b)`` evaluates ``a == x`` (enum on the left), so the
    assertion fails for every hinge/slide joint and ``FetchXxx-v4`` raises
    ``AssertionError`` already in ``__init__`` (``_env_setup`` sets the
    slide joints of the robot base).  With mujoco 4.0.0 the ``==`` tests with
    the ``np.int32`` on the left (``joint_type == mjJNT_FREE``) still happen
    to evaluate correctly, so in practice only the ``in`` assertion misfires;
    the shim does not rely on either direction.

What the shim changes
    It replaces the four functions in the module
    ``gymnasium_robotics.utils.mujoco_utils`` by copies that convert both
    sides to Python ``int`` before comparing
    (``int(model.jnt_type[j]) == int(mujoco.mjtJoint.mjJNT_FREE)`` etc.).
    Every other line is identical to the 1.4.2 originals -- including the
    upstream quirk that ``get_joint_qvel`` reports 4 (not 3) dofs for a ball
    joint, which is irrelevant for Fetch (no ball joints).  The envs access
    these helpers as ``self._utils.<fn>`` where ``self._utils`` *is* that
    module object (``MujocoRobotEnv.__init__`` does ``self._utils =
    mujoco_utils``), so patching the module attributes is sufficient; the
    shim asserts this once.

What it does not change
    Physics, model, integrator/solver options, reset distribution, goal
    sampling, reward and success computation, action scaling, mocap handling
    and observation layout are untouched: the shim only fixes which slice of
    ``qpos``/``qvel`` the helpers address, which is what the authors intended.

When it is applied
    ``apply_compat_shim()`` probes the installed functions on a tiny model
    with free, ball, slide and hinge joints.  Only if they raise or return a
    wrong-sized slice is the module patched (so it is a no-op on versions of
    mujoco without the bug).  It is idempotent.

Semantics of the original envs worth knowing when comparing (measured with
mujoco 4.0.0, gymnasium-robotics 1.4.2)
    * Stale kinematics after a step (pick-and-place only): ``env.step`` runs
      ``mj_step`` ``n_substeps`` times and reads positions from
      ``data.site_xpos``/``xpos``, which ``mj_step`` computed *before* its
      last integration.  Push/Reach/Slide refresh them through
      ``_step_callback`` (fingers set to 0, then ``mj_forward``);
      PickAndPlace does not.  So in PickAndPlace the observed positions are
      one substep (2 ms) old, velocities are the current ``qvel`` mapped by
      that old Jacobian, and the *next* action's mocap target is built on
      the stale gripper-body pose (``reset_mocap2body_xpos``).  These stale
      kinematics are the only hidden state: ``set_original_state`` (which
      ends with ``mj_forward``) reproduces a running env exactly iff the
      running env had fresh kinematics (true after ``reset`` and after every
      step of the blocked-gripper tasks; for PickAndPlace call
      ``mujoco.mj_forward`` first).
    * ``reset`` calls ``mj_resetData``: the mocap goes back to the XML
      default (pos 0, quat (1,0,0,0)), ctrl and ``qacc_warmstart`` to 0.  The
      mocap is re-based on the gripper body (``xpos`` + 0.05 * a[:3], quat
      ``xquat + (1,0,1,0)``, not normalised) at every step, so its value
      between steps never matters for the dynamics.
    * Goals and object positions are sampled around ``initial_gripper_xpos``,
      recorded during construction from ``site_xpos`` after ``mj_step`` --
      i.e. also one substep stale -- so it differs from the grip position
      observed after ``reset`` by ~1.5e-4 m.
    * The finger action is a *relative* position target: ``ctrl = qpos_finger
      + a[3]``, clamped by MuJoCo to ``ctrlrange = [0, 0.2]``.
    * The solver warm start (``qacc_warmstart``) matters only at the
      1e-14..1e-6 level per step.

Episode length
    ``make_original`` returns ``gym.make(id).unwrapped``: the raw
    ``MujocoFetch*Env`` without ``TimeLimit``/``OrderEnforcing``/
    ``PassiveEnvChecker`` wrappers.  The raw env never terminates or
    truncates; the 50-step limit of the registered v4 ids
    (``max_episode_steps=50``) is applied by the callers here
    (``EPISODE_STEPS``).
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, Optional

import mujoco
import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import gymnasium as gym
    import gymnasium_robotics
    from gymnasium_robotics.utils import mujoco_utils

__all__ = [
    "EPISODE_STEPS",
    "TASK_IDS",
    "apply_compat_shim",
    "compat_bug_present",
    "make_original",
    "original_state",
    "set_original_state",
    "rollout_original",
    "reset_distribution",
]

EPISODE_STEPS = 50  # max_episode_steps of every Fetch*-v4 registration

TASK_IDS = {
    "reach": "FetchReach-v4",
    "push": "FetchPush-v4",
    "slide": "FetchSlide-v4",
    "pick_and_place": "FetchPickAndPlace-v4",
}

STATE_KEYS = ("qpos", "qvel", "mocap_pos", "mocap_quat", "ctrl", "goal")
# Extra keys that original_state() also returns; set_original_state() uses them
# when present so that the next step is bit-identical (solver warm start).
OPTIONAL_STATE_KEYS = ("qacc_warmstart", "act", "time")


# --------------------------------------------------------------------------
# Compatibility shim
# --------------------------------------------------------------------------

_ORIGINALS = {
    name: getattr(mujoco_utils, name)
    for name in ("set_joint_qpos", "set_joint_qvel", "get_joint_qpos", "get_joint_qvel")
}

_FREE = int(mujoco.mjtJoint.mjJNT_FREE)
_BALL = int(mujoco.mjtJoint.mjJNT_BALL)
_SLIDE = int(mujoco.mjtJoint.mjJNT_SLIDE)
_HINGE = int(mujoco.mjtJoint.mjJNT_HINGE)


def _set_joint_qpos(model, data, name, value):
    """Set the joint positions (qpos) of the model."""
    joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    assert joint_id != -1, f"Joint with name '{name}' is not part of the model!"
    joint_type = int(model.jnt_type[joint_id])  # shim: compare as int
    joint_addr = model.jnt_qposadr[joint_id]

    if joint_type == _FREE:
        ndim = 7
    elif joint_type == _BALL:
        ndim = 4
    else:
        assert joint_type in (_HINGE, _SLIDE)
        ndim = 1

    start_idx = joint_addr
    end_idx = joint_addr + ndim
    value = np.array(value)
    if ndim > 1:
        assert value.shape == (
            end_idx - start_idx
        ), f"Value has incorrect shape {name}: {value}"
    data.qpos[start_idx:end_idx] = value


def _set_joint_qvel(model, data, name, value):
    """Set the joints linear and angular (qvel) of the model."""
    joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    assert joint_id != -1, f"Joint with name '{name}' is not part of the model!"
    joint_type = int(model.jnt_type[joint_id])  # shim: compare as int
    joint_addr = model.jnt_dofadr[joint_id]

    if joint_type == _FREE:
        ndim = 6
    elif joint_type == _BALL:
        ndim = 3
    else:
        assert joint_type in (_HINGE, _SLIDE)
        ndim = 1

    start_idx = joint_addr
    end_idx = joint_addr + ndim
    value = np.array(value)
    if ndim > 1:
        assert value.shape == (
            end_idx - start_idx
        ), f"Value has incorrect shape {name}: {value}"
    data.qvel[start_idx:end_idx] = value


def _get_joint_qpos(model, data, name):
    """Return the joints position and orientation (qpos) of the model."""
    joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    assert joint_id != -1, f"Joint with name '{name}' is not part of the model!"
    joint_type = int(model.jnt_type[joint_id])  # shim: compare as int
    joint_addr = model.jnt_qposadr[joint_id]

    if joint_type == _FREE:
        ndim = 7
    elif joint_type == _BALL:
        ndim = 4
    else:
        assert joint_type in (_HINGE, _SLIDE)
        ndim = 1

    start_idx = joint_addr
    end_idx = joint_addr + ndim

    return data.qpos[start_idx:end_idx].copy()


def _get_joint_qvel(model, data, name):
    """Return the joints linear and angular velocities (qvel) of the model."""
    joint_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_JOINT, name)
    assert joint_id != -1, f"Joint with name '{name}' is not part of the model!"
    joint_type = int(model.jnt_type[joint_id])  # shim: compare as int
    joint_addr = model.jnt_dofadr[joint_id]

    if joint_type == _FREE:
        ndim = 6
    elif joint_type == _BALL:
        ndim = 4  # sic: identical to upstream 1.4.2 (a ball joint has 3 dofs)
    else:
        assert joint_type in (_HINGE, _SLIDE)
        ndim = 1

    start_idx = joint_addr
    end_idx = joint_addr + ndim

    return data.qvel[start_idx:end_idx].copy()


_PATCHED = {
    "set_joint_qpos": _set_joint_qpos,
    "set_joint_qvel": _set_joint_qvel,
    "get_joint_qpos": _get_joint_qpos,
    "get_joint_qvel": _get_joint_qvel,
}

_PROBE_XML = """
<mujoco>
  <worldbody>
    <body name="f"><joint name="free" type="free"/><geom size="0.1"/></body>
    <body name="b" pos="1 0 0"><joint name="ball" type="ball"/><geom size="0.1"/>
      <body name="s" pos="0 1 0"><joint name="slide" type="slide"/><geom size="0.1"/>
        <body name="h" pos="0 0 1"><joint name="hinge" type="hinge"/><geom size="0.1"/>
        </body>
      </body>
    </body>
  </worldbody>
</mujoco>
"""
# (joint, expected qpos width, expected qvel width of the upstream helpers)
_PROBE_EXPECT = (("free", 7, 6), ("ball", 4, 4), ("slide", 1, 1), ("hinge", 1, 1))


def _helpers_work(get_qpos, get_qvel, set_qpos, set_qvel) -> bool:
    """True if the given helpers address the right qpos/qvel slices."""
    model = mujoco.MjModel.from_xml_string(_PROBE_XML)
    data = mujoco.MjData(model)
    try:
        for name, nq, nv in _PROBE_EXPECT:
            if get_qpos(model, data, name).shape != (nq,):
                return False
            if get_qvel(model, data, name).shape != (nv,):
                return False
            set_qpos(model, data, name, get_qpos(model, data, name))
            set_qvel(model, data, name, np.zeros(3 if name == "ball" else nv))
    except AssertionError:
        return False
    return True


def compat_bug_present() -> bool:
    """Probe the *unpatched* upstream helpers for the joint-type bug."""
    o = _ORIGINALS
    return not _helpers_work(
        o["get_joint_qpos"], o["get_joint_qvel"], o["set_joint_qpos"], o["set_joint_qvel"]
    )


def _check_env_uses_module() -> None:
    """The Fetch envs must reach the helpers through the module object."""
    from gymnasium_robotics.envs import robot_env

    assert robot_env.mujoco_utils is mujoco_utils


def apply_compat_shim() -> bool:
    """Patch ``mujoco_utils`` if (and only if) the joint-type bug is present.

    Idempotent.  Returns True if the module currently holds the shimmed
    helpers, False if the installed helpers work and were left alone.
    """
    if all(getattr(mujoco_utils, k) is v for k, v in _PATCHED.items()):
        return True
    if not compat_bug_present():
        return False
    _check_env_uses_module()
    assert _helpers_work(_get_joint_qpos, _get_joint_qvel, _set_joint_qpos, _set_joint_qvel)
    for name, fn in _PATCHED.items():
        setattr(mujoco_utils, name, fn)
    return True


# --------------------------------------------------------------------------
# Env construction and state access
# --------------------------------------------------------------------------

_REGISTERED = False


def _register() -> None:
    global _REGISTERED
    if not _REGISTERED:
        gym.register_envs(gymnasium_robotics)
        _REGISTERED = True


def make_original(task: str, reward_type: str = "sparse"):
    """The unwrapped original env for ``task`` in :data:`TASK_IDS`.

    Returns ``gym.make(TASK_IDS[task], reward_type=...).unwrapped`` (no
    TimeLimit: the caller runs :data:`EPISODE_STEPS` steps itself).
    """
    if task not in TASK_IDS:
        raise ValueError(f"unknown task {task!r}; expected one of {sorted(TASK_IDS)}")
    apply_compat_shim()
    _register()
    return gym.make(TASK_IDS[task], reward_type=reward_type).unwrapped


def original_state(env) -> Dict[str, np.ndarray]:
    """Copy of the physical state of an (unwrapped) original env.

    Keys :data:`STATE_KEYS` (qpos, qvel, mocap_pos, mocap_quat, ctrl, goal)
    plus :data:`OPTIONAL_STATE_KEYS` (qacc_warmstart, act, time), which
    ``set_original_state`` restores if present so that the next step is
    bit-identical.  Derived kinematics are not part of the state; see the
    module docstring on the stale kinematics of PickAndPlace after a step.
    """
    d = env.data
    return {
        "qpos": d.qpos.copy(),
        "qvel": d.qvel.copy(),
        "mocap_pos": d.mocap_pos.copy(),
        "mocap_quat": d.mocap_quat.copy(),
        "ctrl": d.ctrl.copy(),
        "goal": np.array(env.goal, dtype=np.float64).copy(),
        "qacc_warmstart": d.qacc_warmstart.copy(),
        "act": d.act.copy(),
        "time": np.float64(d.time),
    }


def set_original_state(env, state: Dict[str, np.ndarray]) -> None:
    """Put an (unwrapped) original env into ``state`` and call ``mj_forward``.

    Required keys: :data:`STATE_KEYS`.  Optional keys
    (:data:`OPTIONAL_STATE_KEYS`) are set when present; if
    ``qacc_warmstart`` is absent it is zeroed (as after ``env.reset()``,
    which calls ``mj_resetData``).
    """
    env = getattr(env, "unwrapped", env)
    m, d = env.model, env.data
    d.qpos[:] = state["qpos"]
    d.qvel[:] = state["qvel"]
    d.mocap_pos[:] = np.reshape(state["mocap_pos"], d.mocap_pos.shape)
    d.mocap_quat[:] = np.reshape(state["mocap_quat"], d.mocap_quat.shape)
    d.ctrl[:] = state["ctrl"]
    env.goal = np.array(state["goal"], dtype=np.float64).copy()
    d.qacc_warmstart[:] = state["qacc_warmstart"] if "qacc_warmstart" in state else 0.0
    if "act" in state:
        d.act[:] = state["act"]
    if "time" in state:
        d.time = float(state["time"])
    mujoco.mj_forward(m, d)  # reads but does not write qacc_warmstart


# --------------------------------------------------------------------------
# Rollouts and reset statistics
# --------------------------------------------------------------------------


def rollout_original(
    task: str,
    policy: Callable[[Dict[str, np.ndarray]], np.ndarray],
    n_episodes: int,
    seed: int,
    record_paths: bool = False,
    reward_type: str = "sparse",
    after_reset: Optional[Callable[[Any], Dict[str, np.ndarray]]] = None,
) -> Dict[str, np.ndarray]:
    """Run ``n_episodes`` full 50-step episodes of the original env.

    Episode ``i`` starts from ``env.reset(seed=seed + i)``, so every episode
    is reproducible on its own; ``after_reset(env)``, if given, then edits the
    reset state and returns the observation the episode starts from (e.g. a
    perturbed start: ``benchmarks/push_path_floor.py``).  ``policy(obs) -> action`` gets the goal-env
    observation dict of numpy arrays and may return anything ``np.asarray``
    accepts (e.g. a jax array); a jitted jnp policy is much faster than an
    eager one.

    Returns a dict with
      ``is_success`` [n] float: ``info['is_success']`` after the final step,
      ``success_any`` [n] bool: success at any step,
      ``final_distance`` [n]: |achieved_goal - desired_goal| after the final step,
      ``return`` [n]: sum of rewards,
      ``desired_goal`` [n,3],
    and with ``record_paths=True`` also ``grip_path`` [n,51,3] and (object
    tasks) ``object_path`` [n,51,3]: observation[0:3] / [3:6] at reset and
    after every step.
    """
    env = make_original(task, reward_type=reward_type)
    has_object = bool(env.has_object)
    succ = np.zeros(n_episodes, np.float32)
    succ_any = np.zeros(n_episodes, bool)
    fdist = np.zeros(n_episodes)
    ret = np.zeros(n_episodes)
    goals = np.zeros((n_episodes, 3))
    grip = np.zeros((n_episodes, EPISODE_STEPS + 1, 3))
    obj = np.zeros((n_episodes, EPISODE_STEPS + 1, 3))
    for i in range(n_episodes):
        obs, _ = env.reset(seed=seed + i)
        if after_reset is not None:
            obs = after_reset(env)
        goals[i] = obs["desired_goal"]
        grip[i, 0] = obs["observation"][0:3]
        if has_object:
            obj[i, 0] = obs["observation"][3:6]
        for t in range(EPISODE_STEPS):
            action = np.asarray(policy(obs), dtype=np.float32).reshape(4)
            obs, reward, _, _, info = env.step(action)
            ret[i] += reward
            succ_any[i] |= bool(info["is_success"])
            grip[i, t + 1] = obs["observation"][0:3]
            if has_object:
                obj[i, t + 1] = obs["observation"][3:6]
        succ[i] = float(info["is_success"])
        fdist[i] = np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"])
    env.close()
    out = {
        "is_success": succ,
        "success_any": succ_any,
        "final_distance": fdist,
        "return": ret,
        "desired_goal": goals,
    }
    if record_paths:
        out["grip_path"] = grip
        if has_object:
            out["object_path"] = obj
    return out


def reset_distribution(task: str, n: int, seed: int) -> Dict[str, np.ndarray]:
    """Statistics of ``n`` resets (``env.reset(seed=seed + i)``).

    Returns ``desired_goal`` [n,3], ``grip_pos`` [n,3] (initial grip site
    position; constant across resets), ``object_pos`` [n,3] (object tasks
    only), plus the scalars ``initial_gripper_xpos`` [3] and (object tasks)
    ``height_offset`` that the env samples relative to.
    """
    env = make_original(task)
    goals = np.zeros((n, 3))
    grips = np.zeros((n, 3))
    objs = np.zeros((n, 3))
    for i in range(n):
        obs, _ = env.reset(seed=seed + i)
        goals[i] = obs["desired_goal"]
        grips[i] = obs["observation"][0:3]
        if env.has_object:
            objs[i] = obs["observation"][3:6]
    out = {
        "desired_goal": goals,
        "grip_pos": grips,
        "initial_gripper_xpos": np.array(env.initial_gripper_xpos).copy(),
    }
    if env.has_object:
        out["object_pos"] = objs
        out["height_offset"] = np.float64(env.height_offset)
    env.close()
    return out
