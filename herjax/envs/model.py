"""Builds the Fetch MjModel from gymnasium-robotics' own XML, edited for MJX.

The XML files shipped with gymnasium-robotics are the source of truth. Every edit made here is listed, with
its reason, in ``herjax/envs/README.md``, and each is covered by a parity test against the original env.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import os
import sys
from typing import NamedTuple

import mujoco
import numpy as np

N_SUBSTEPS = 20
TIMESTEP = 0.002
EPISODE_STEPS = 50

# Joints whose damping (1e11 for the base slides, 50 and 1000 for the head) holds them still: over a settle and a
# 50-step random episode in the original they move by < 1e-6 m (base) and < 2e-4 rad (head). Welded, they leave
# 5 fewer DOFs to integrate. The torso lift is kept: it creeps ~6 mm per episode against its limit.
WELDED_JOINTS = (
    "robot0:slide0",
    "robot0:slide1",
    "robot0:slide2",
    "robot0:head_pan_joint",
    "robot0:head_tilt_joint",
)
FINGER_JOINTS = ("robot0:r_gripper_finger_joint", "robot0:l_gripper_finger_joint")

# Primitive collision boxes that replace the colliding robot meshes near the table and the object. Half sizes
# and centres are the axis-aligned bounds of each link's collision mesh, in the body frame.
COLLISION_BOXES = {
    "robot0:gripper_link": ((-0.093, 0.0, -0.00015), (0.061, 0.063, 0.03975)),
    "robot0:wrist_roll_link": ((-0.00175, 0.0, 0.0), (0.02125, 0.0519, 0.052)),
}


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """The constants of one original Fetch task (gymnasium-robotics 1.4.2, ``envs/fetch/*.py``)."""

    xml: str
    initial_qpos: dict
    has_object: bool
    block_gripper: bool
    gripper_extra_height: float
    target_in_the_air: bool
    target_offset: tuple[float, float, float]
    obj_range: float
    target_range: float
    distance_threshold: float = 0.05


_BASE = {"robot0:slide1": 0.48, "robot0:slide2": 0.0}
_BLOCK0 = [1.25, 0.53, 0.4, 1.0, 0.0, 0.0, 0.0]
TASKS = {
    "reach": TaskSpec("reach.xml", {"robot0:slide0": 0.4049, **_BASE}, False, True, 0.2, True, (0, 0, 0), 0.15, 0.15),
    "push": TaskSpec(
        "push.xml", {"robot0:slide0": 0.405, **_BASE, "object0:joint": _BLOCK0}, True, True, 0.0, False, (0, 0, 0),
        0.15, 0.15,
    ),
    "slide": TaskSpec(
        "slide.xml", {"robot0:slide0": 0.05, **_BASE, "object0:joint": [1.7, 1.1, 0.41, 1.0, 0.0, 0.0, 0.0]}, True,
        True, -0.02, False, (0.4, 0.0, 0.0), 0.1, 0.3,
    ),
    "pick_and_place": TaskSpec(
        "pick_and_place.xml", {"robot0:slide0": 0.405, **_BASE, "object0:joint": _BLOCK0}, True, False, 0.2, True,
        (0, 0, 0), 0.15, 0.15,
    ),
}


class FetchModel(NamedTuple):
    """The compiled, edited model and the constants its env needs.

    Attributes:
        mj_model: the edited MjModel shared by every engine.
        init_qpos: ``[nq]`` qpos after the original settle procedure (object at its XML start).
        init_qvel: ``[nv]`` qvel after the settle.
        initial_gripper_xpos: ``[3]`` grip site position after the settle; goals are drawn around it.
        height_offset: the object's settled height (table top), or 0 without an object.
        mocap_pos0, mocap_quat0: what ``mj_resetData`` puts in the mocap (the body's XML pose).
        sensors: name -> (start, size) slices of ``sensordata``.
        finger_qpos_adr: qpos addresses of the two finger joints (r, l), held at 0 where the gripper is blocked.
        object_qpos_adr: qpos address of the object's free joint, or -1.
    """

    mj_model: mujoco.MjModel
    init_qpos: np.ndarray
    init_qvel: np.ndarray
    initial_gripper_xpos: np.ndarray
    height_offset: float
    mocap_pos0: np.ndarray
    mocap_quat0: np.ndarray
    sensors: dict
    finger_qpos_adr: tuple[int, int]
    object_qpos_adr: int


def assets_dir() -> str:
    if "gymnasium_robotics" not in sys.modules:
        # On import, gymnasium-robotics 1.4.2 prints a notice about its Adroit hand envs' rewards, which concerns no
        # Fetch task; a command's stderr must hold only its own lines (exactly one, for bad input).
        with contextlib.redirect_stderr(io.StringIO()):
            import gymnasium_robotics
    else:
        gymnasium_robotics = sys.modules["gymnasium_robotics"]
    return os.path.join(os.path.dirname(gymnasium_robotics.__file__), "envs", "assets", "fetch")


def original_xml_path(task: str) -> str:
    return os.path.join(assets_dir(), TASKS[task].xml)


def _reset_mocap_welds(m: mujoco.MjModel) -> None:
    # As gymnasium-robotics' ``reset_mocap_welds``: the weld holds the gripper exactly at the mocap pose.
    for i in range(m.neq):
        if m.eq_type[i] == mujoco.mjtEq.mjEQ_WELD:
            m.eq_data[i, :7] = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]


def settle(m: mujoco.MjModel, task: str) -> mujoco.MjData:
    """Runs the original ``_env_setup``: initial qpos, mocap to the start pose, 10 env steps of physics."""
    spec = TASKS[task]
    d = mujoco.MjData(m)
    for name, value in spec.initial_qpos.items():
        jid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, name)
        if jid < 0:
            continue  # welded in the edited model
        adr = m.jnt_qposadr[jid]
        value = np.atleast_1d(value)
        d.qpos[adr : adr + value.size] = value
    _reset_mocap_welds(m)
    mujoco.mj_forward(m, d)
    grip = d.site("robot0:grip").xpos
    d.mocap_pos[0] = np.array([-0.498, 0.005, -0.431 + spec.gripper_extra_height]) + grip
    d.mocap_quat[0] = [1.0, 0.0, 1.0, 0.0]
    for _ in range(10):
        mujoco.mj_step(m, d, nstep=N_SUBSTEPS)
    return d


def _axis_angle_quat(axis, angle) -> np.ndarray:
    q = np.zeros(4)
    mujoco.mju_axisAngle2Quat(q, np.asarray(axis, float), float(angle))
    return q


def _weld_joints(spec: mujoco.MjSpec, settled: dict[str, float]) -> None:
    """Removes each joint in ``WELDED_JOINTS``, folding its settled value into its body's pose."""
    for name in WELDED_JOINTS:
        joint = spec.joint(name)
        body = joint.parent
        axis = np.asarray(joint.axis, float)
        value = settled[name]
        if joint.type == mujoco.mjtJoint.mjJNT_SLIDE:
            body.pos = np.asarray(body.pos) + value * axis
        elif joint.type == mujoco.mjtJoint.mjJNT_HINGE:
            # Hinges here sit at the body origin; the body is drawn at qpos == ref.
            assert np.allclose(joint.pos, 0.0), name
            rot = _axis_angle_quat(axis, value - joint.ref)
            quat = np.zeros(4)
            mujoco.mju_mulQuat(quat, np.asarray(body.quat, float), rot)
            body.quat = quat
        else:
            raise ValueError(f"cannot weld joint {name} of type {joint.type}")
        spec.delete(joint)


def _primitive_collisions(spec: mujoco.MjSpec) -> None:
    """Robot meshes become visual only; boxes collide where the robot can touch the table or the object."""
    for geom in spec.geoms:
        if geom.type == mujoco.mjtGeom.mjGEOM_MESH:
            geom.contype = 0
            geom.conaffinity = 0
            geom.margin = 0.0
    for body_name, (pos, half) in COLLISION_BOXES.items():
        body = spec.body(body_name)
        body.add_geom(
            name=f"{body_name}:collision",
            type=mujoco.mjtGeom.mjGEOM_BOX,
            pos=pos,
            size=half,
            rgba=[0, 0, 0, 0],
            mass=0.0,
            density=0.0,
            solimp=[0.99, 0.99, 0.01, 0.5, 2.0],
            solref=[0.01, 1.0],
            margin=0.0,
            group=3,
        )


PUCK_SIDES = 16


def _puck_as_convex_mesh(spec: mujoco.MjSpec, original: mujoco.MjModel) -> None:
    """Slide's cylinder puck becomes a 16-sided prism, which MJX stepped before herjax gave it a cylinder-box test
    (``herjax.envs.mjx_cylinder_box``); kept for comparisons: the prism slides differently (``herjax/envs/README.md``).

    Radius, height, friction, mass and the original cylinder's inertia are kept; the prism's flats lie 0.4 mm
    inside the circle.
    """
    geom = spec.geom("object0")
    radius, half_height = float(geom.size[0]), float(geom.size[1])
    angles = 2 * np.pi * np.arange(PUCK_SIDES) / PUCK_SIDES
    ring = np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)
    verts = np.concatenate(
        [np.pad(ring, ((0, 0), (0, 1)), constant_values=-half_height),
         np.pad(ring, ((0, 0), (0, 1)), constant_values=half_height)]
    )
    spec.add_mesh(name="object0:puck", uservert=verts.ravel().tolist())
    body = spec.body("object0")
    bid = original.body("object0").id
    body.explicitinertial = True
    body.mass = float(original.body_mass[bid])
    body.ipos = original.body_ipos[bid].copy()
    body.iquat = original.body_iquat[bid].copy()
    body.inertia = original.body_inertia[bid].copy()
    geom.type = mujoco.mjtGeom.mjGEOM_MESH
    geom.meshname = "object0:puck"
    geom.margin = 0.0
    # MJX has no margin for box-mesh pairs, so the fingers that can touch the puck lose their 1 mm margin.
    for name in FINGER_JOINTS:
        spec.geom(name.replace("_joint", "_link")).margin = 0.0


def _add_sensors(spec: mujoco.MjSpec, has_object: bool) -> None:
    """Sensors give every engine one observation function (read from ``sensordata``)."""
    S, O = mujoco.mjtSensor, mujoco.mjtObj
    sensors = [
        ("grip_pos", S.mjSENS_FRAMEPOS, O.mjOBJ_SITE, "robot0:grip"),
        ("grip_velp", S.mjSENS_FRAMELINVEL, O.mjOBJ_SITE, "robot0:grip"),
        ("gripper_link_pos", S.mjSENS_FRAMEPOS, O.mjOBJ_XBODY, "robot0:gripper_link"),
        ("gripper_link_quat", S.mjSENS_FRAMEQUAT, O.mjOBJ_XBODY, "robot0:gripper_link"),
    ]
    for i, joint in enumerate(FINGER_JOINTS):
        sensors.append((f"finger_qpos{i}", S.mjSENS_JOINTPOS, O.mjOBJ_JOINT, joint))
    for i, joint in enumerate(FINGER_JOINTS):
        sensors.append((f"finger_qvel{i}", S.mjSENS_JOINTVEL, O.mjOBJ_JOINT, joint))
    if has_object:
        sensors += [
            ("object_pos", S.mjSENS_FRAMEPOS, O.mjOBJ_SITE, "object0"),
            ("object_quat", S.mjSENS_FRAMEQUAT, O.mjOBJ_SITE, "object0"),
            ("object_velp", S.mjSENS_FRAMELINVEL, O.mjOBJ_SITE, "object0"),
            ("object_velr", S.mjSENS_FRAMEANGVEL, O.mjOBJ_SITE, "object0"),
        ]
    for name, stype, otype, oname in sensors:
        spec.add_sensor(name=name, type=stype, objtype=otype, objname=oname)


def _sensor_slices(m: mujoco.MjModel) -> dict:
    return {m.sensor(i).name: (int(m.sensor_adr[i]), int(m.sensor_dim[i])) for i in range(m.nsensor)}


@functools.lru_cache(maxsize=None)
def load_model(task: str, *, weld: bool = True, primitive_collisions: bool = True,
               convex_puck: bool = False) -> FetchModel:
    """Builds the edited model of ``task`` and runs the original settle procedure on it.

    Args:
        task: one of ``TASKS`` (``reach``, ``push``, ``slide``, ``pick_and_place``).
        weld: weld the base and head joints (see ``WELDED_JOINTS``).
        primitive_collisions: replace colliding robot meshes by boxes (needed by MJX).
        convex_puck: with ``primitive_collisions``, Slide's cylinder puck becomes a 16-sided prism and the fingers
            lose their margin (what MJX stepped before ``herjax.envs.mjx_cylinder_box``; for comparisons only: the
            prism changes how the puck slides, ``herjax/envs/README.md``). ``False`` (both engines' choice) keeps
            the original cylinder and finger margins.

    Returns:
        The ``FetchModel``. Cached: treat it as read-only.
    """
    if task not in TASKS:
        raise ValueError(f"unknown Fetch task {task!r}; valid tasks: {', '.join(TASKS)}")
    tspec = TASKS[task]
    spec = mujoco.MjSpec.from_file(original_xml_path(task))
    original = mujoco.MjModel.from_xml_path(original_xml_path(task))
    if weld:
        d = settle(original, task)
        settled = {name: float(d.joint(name).qpos[0]) for name in WELDED_JOINTS}
        _weld_joints(spec, settled)
    if primitive_collisions:
        _primitive_collisions(spec)
        if convex_puck and tspec.has_object and original.geom("object0").type[0] == mujoco.mjtGeom.mjGEOM_CYLINDER:
            _puck_as_convex_mesh(spec, original)
    _add_sensors(spec, tspec.has_object)
    m = spec.compile()
    d = settle(m, task)  # also applies the weld-data edit to ``m``, as the original does to its model
    mocap_body = m.body("robot0:mocap")
    finger_adr = tuple(int(m.joint(j).qposadr[0]) for j in FINGER_JOINTS)
    object_adr = int(m.joint("object0:joint").qposadr[0]) if tspec.has_object else -1
    height = float(d.site("object0").xpos[2]) if tspec.has_object else 0.0
    return FetchModel(
        mj_model=m,
        init_qpos=d.qpos.copy(),
        init_qvel=d.qvel.copy(),
        initial_gripper_xpos=d.site("robot0:grip").xpos.copy(),
        height_offset=height,
        mocap_pos0=np.array(mocap_body.pos, dtype=np.float64).reshape(1, 3),
        mocap_quat0=np.array(mocap_body.quat, dtype=np.float64).reshape(1, 4),
        sensors=_sensor_slices(m),
        finger_qpos_adr=finger_adr,
        object_qpos_adr=object_adr,
    )
