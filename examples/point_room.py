"""PointRoom: a point mass that must reach goals in a walled room. Not a Fetch task: an example of your own env.

    python -m herjax.train env=examples.point_room:point_room          # DDPG+HER; test success >= 0.9
    python -m herjax.play run=<run_dir> video=point_room.mp4

A 4 cm ball slides on the floor of a 60 cm x 60 cm room (two slide joints, two motors: force along x and y, against
viscous damping, so that an action is close to a velocity command of up to 0.5 m/s). Each episode starts the ball
at rest at a random spot and draws a goal spot uniformly in the room; success is being within 5 cm of it. The
walls are boxes the ball collides with. 50 steps of 0.1 s.

Observation ``[4]``: position and velocity ``(x, y, vx, vy)``. Goal ``[2]``: the ball's ``(x, y)``. Action
``[2]`` in ``[-1, 1]``: the motors' forces.

Everything herjax needs is the ``EnvSpec`` at the bottom: built by ``herjax.envs.MujocoGoalEnv`` from the XML and
three task functions, so it runs on both engines (C MuJoCo on the CPU, MJX on a GPU).
"""

import dataclasses

import jax
import jax.numpy as jnp

import herjax.envs

HALF = 0.3  # the room spans [-HALF, HALF]^2 inside its walls
RADIUS = 0.04
REACH = HALF - RADIUS - 0.01  # where starts and goals are drawn: the ball fits there

XML = f"""
<mujoco model="point_room">
  <option timestep="0.02"/>
  <visual><global offwidth="640" offheight="640"/></visual>
  <asset>
    <texture name="grid" type="2d" builtin="checker" rgb1=".85 .85 .85" rgb2=".75 .75 .75" width="64" height="64"/>
    <material name="grid" texture="grid" texrepeat="4 4"/>
  </asset>
  <default>
    <geom contype="1" conaffinity="1" condim="1"/>  <!-- frictionless walls: the ball slides along them -->
  </default>
  <worldbody>
    <light pos="0 0 2" dir="0 0 -1"/>
    <geom name="floor" type="plane" size="{HALF + 0.1} {HALF + 0.1} 0.05" material="grid" contype="0" conaffinity="0"/>
    <geom name="wall_px" type="box" pos="{HALF + 0.05} 0 0.05" size="0.05 {HALF + 0.1} 0.05" rgba=".4 .4 .5 1"/>
    <geom name="wall_nx" type="box" pos="-{HALF + 0.05} 0 0.05" size="0.05 {HALF + 0.1} 0.05" rgba=".4 .4 .5 1"/>
    <geom name="wall_py" type="box" pos="0 {HALF + 0.05} 0.05" size="{HALF + 0.1} 0.05 0.05" rgba=".4 .4 .5 1"/>
    <geom name="wall_ny" type="box" pos="0 -{HALF + 0.05} 0.05" size="{HALF + 0.1} 0.05 0.05" rgba=".4 .4 .5 1"/>
    <body name="ball" pos="0 0 {RADIUS}">
      <joint name="x" type="slide" axis="1 0 0" damping="10"/>
      <joint name="y" type="slide" axis="0 1 0" damping="10"/>
      <geom name="ball" type="sphere" size="{RADIUS}" mass="0.2" rgba=".2 .5 .9 1"/>
    </body>
    <site name="target0" pos="0 0 {RADIUS}" size="{RADIUS}" rgba="1 0 0 0.5" type="sphere"/>
  </worldbody>
  <actuator>
    <motor joint="x" gear="5" ctrlrange="-1 1" ctrllimited="true"/>
    <motor joint="y" gear="5" ctrlrange="-1 1" ctrllimited="true"/>
  </actuator>
</mujoco>
"""


def _initial_state(key, qpos0, qvel0):
    return jax.random.uniform(key, qpos0.shape, minval=-REACH, maxval=REACH), qvel0


TASK = herjax.envs.GoalTask(
    observation=lambda p: jnp.concatenate([p.qpos, p.qvel]),
    achieved_goal=lambda p: p.qpos[:2],
    sample_goal=lambda key, p: jax.random.uniform(key, (2,), minval=-REACH, maxval=REACH),
    initial_state=_initial_state,
    distance_threshold=0.05,
    goal_position=lambda g: jnp.concatenate([g, jnp.full(g.shape[:-1] + (1,), RADIUS, g.dtype)], axis=-1),
    render_camera={"distance": 1.4, "azimuth": 90.0, "elevation": -70.0, "lookat": (0.0, 0.0, 0.0)},
)


def make_point_room(backend: str = "auto", reward_type: str = "sparse") -> herjax.envs.MujocoGoalEnv:
    """The env; ``reward_type`` ``sparse`` (``-(d > 0.05)``) or ``dense`` (``-d``)."""
    task = dataclasses.replace(TASK, reward_type=reward_type)
    return herjax.envs.MujocoGoalEnv(XML, task, backend=backend, n_substeps=5, episode_length=50)


point_room = herjax.envs.EnvSpec(
    make=make_point_room,
    episode_length=50,
    defaults={"off_policy": {"n_cycles": 10, "total_env_steps": 20_000}},
    description="a point mass reaching goals in a walled room",
)
