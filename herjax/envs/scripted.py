"""Scripted (hand-written) policies for the Fetch tasks, in pure ``jax.numpy``.

Every policy maps a goal-env observation dict ``{'observation',
'achieved_goal', 'desired_goal'}`` to a float32 action in ``[-1, 1]^4`` and

* is pure and stateless: the phase of the behaviour is decided from the
  observation alone (no memory), so it can run inside ``jit``/``vmap``/
  ``lax.scan`` of herjax;
* is batched over any leading shape (``observation[..., 25]`` ->
  ``action[..., 4]``);
* accepts numpy inputs as well, so the same function drives the original
  gymnasium-robotics env (wrap it in ``jax.jit`` there for speed) and herjax.

Action semantics (Fetch): ``a[0:3]`` is a Cartesian displacement of the
gripper, scaled by ``0.05`` m per env step (0.04 s); ``a[3]`` is the finger
command (+1 opens, -1 closes; ignored when the gripper is blocked).

Observation layout of the object tasks (25-d ``observation``):
``grip_pos[0:3], obj_pos[3:6], obj_rel_pos[6:9], gripper_state[9:11],
obj_rot[11:14], obj_velp[14:17], obj_velr[17:20], grip_velp[20:23],
gripper_vel[23:25]``; FetchReach has the 10-d layout
``grip_pos[0:3], gripper_state[3:5], grip_velp[5:8], gripper_vel[8:10]``.

All gains, distances and thresholds are module constants (metres unless
stated otherwise).
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["reach_policy", "push_policy", "pick_and_place_policy"]

# --------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------

#: Proportional gain from a position error (m) to the action (1 action unit
#: = 0.05 m of mocap displacement).  10 means "cover half the error per step"
#: before saturation, which tracks without overshoot given the weld lag.
POS_GAIN = 10.0
_EPS = 1e-8


def _split(obs):
    o = jnp.asarray(obs["observation"], dtype=jnp.float32)
    goal = jnp.asarray(obs["desired_goal"], dtype=jnp.float32)
    return o, goal


def _action(dpos, grip):
    """Assemble ``[..., 4]`` float32 action from a position error and a finger command."""
    a_pos = jnp.clip(POS_GAIN * dpos, -1.0, 1.0)
    grip = jnp.broadcast_to(jnp.asarray(grip, jnp.float32), a_pos.shape[:-1])
    return jnp.concatenate([a_pos, grip[..., None]], axis=-1).astype(jnp.float32)


def _norm(x):
    return jnp.sqrt(jnp.sum(x * x, axis=-1))


# --------------------------------------------------------------------------
# Reach
# --------------------------------------------------------------------------


def reach_policy(obs):
    """FetchReach: proportional control of the grip site onto the goal.

    ``a[0:3] = clip(POS_GAIN * (desired_goal - grip_pos))``, ``a[3] = 0``.
    """
    o, goal = _split(obs)
    return _action(goal - o[..., 0:3], 0.0)


# --------------------------------------------------------------------------
# Push
# --------------------------------------------------------------------------

#: Distance (xy) behind the block centre of the line-up point that the
#: gripper travels to before pushing: block half-size 0.025 + finger
#: half-width + clearance.
PUSH_BEHIND = 0.065
#: Distance (xy) between grip site and block centre kept while pushing
#: (contact: 0.025 half-size + ~0.01 finger, a little less to press).
PUSH_CONTACT = 0.03
#: Height of the grip site above the block centre when travelling over it.
PUSH_RAISE = 0.07
#: Height of the grip site relative to the block centre while pushing.  The
#: gripper of FetchPush starts about 0.009 m below the block centre; the table
#: stops it from going lower.
PUSH_Z = -0.01
#: The gripper counts as "behind the block" if it is at least this far behind
#: the block centre along the push direction ...
PUSH_ALIGN_ALONG = 0.02
#: ... and at most this far off the push line (xy) to start descending ...
PUSH_ALIGN_LAT = 0.02
#: ... and at most this far off the push line to keep pushing once low (the
#: block drifts sideways while pushed; the tracking term corrects this, so a
#: looser bound here avoids needless re-lining-up).
PUSH_KEEP_LAT = 0.03
#: Gain of the xy motion towards the line-up point.
PUSH_TRAVEL_GAIN = 20.0
#: The gripper only descends to pushing height if it is at least this far
#: behind the block centre (so the fingers clear the block's top edge).
PUSH_DESCEND_ALONG = 0.05
#: Pushing only starts (and continues) while the grip site is at most this
#: high above the block centre; higher up it would hit the block's top edge.
PUSH_LOW_Z = 0.02
#: While not behind the block, the gripper only moves in xy once it is at
#: least this high above the block centre (travel over the block, not
#: through it).
PUSH_CLEAR_Z = 0.045
#: Gain of the push velocity (action units per metre of block-goal distance).
PUSH_GAIN = 10.0
#: Maximal push action along the push direction (slower = less slipping).
PUSH_MAX = 0.8
#: Gain pulling the gripper onto the contact point behind the block.
PUSH_TRACK_GAIN = 10.0
#: Once the block is this close (xy) to the goal the gripper stays put
#: (zero action) instead of lining up for an ill-defined push direction.
PUSH_DONE = 0.02


def push_policy(obs):
    """FetchPush: line up behind the block, opposite to the goal, and push.

    Let ``d`` be the unit xy direction from the block to the goal and ``rel``
    the xy offset of the grip site from the block centre, decomposed into
    ``along = rel . d`` and the lateral distance ``lat``.  The gripper is
    *behind* the block if ``lat < PUSH_ALIGN_LAT`` and ``along <
    -PUSH_ALIGN_ALONG``, *clear behind* if moreover ``along <
    -PUSH_DESCEND_ALONG``, and *low* if the grip site is less than
    ``PUSH_LOW_Z`` above the block centre.  Phases, chosen from the
    observation only (first match wins):

    * **done** (block within ``PUSH_DONE`` of the goal in xy): zero action,
      the gripper stays where it is.
    * **push** (behind and low): keep the grip site on the contact point
      ``block - PUSH_CONTACT * d`` (gain ``PUSH_TRACK_GAIN``, which also
      corrects lateral drift) and move along ``d`` with speed
      ``min(PUSH_GAIN * |goal - block|, PUSH_MAX)``, at height
      ``block_z + PUSH_Z``.
    * **descend** (clear behind): go to height ``block_z + PUSH_Z`` while
      moving in xy towards the line-up point ``block - PUSH_BEHIND * d``.
    * **travel** (otherwise): go to height ``block_z + PUSH_RAISE``; once
      higher than ``block_z + PUSH_CLEAR_Z`` move in xy to the line-up point
      (over the block, never through it).  Reaching it makes the gripper
      *clear behind*, and it descends.

    If the block drifts off the push line or overshoots the goal, ``d``
    changes, the gripper is no longer behind and lines up again.  ``a[3] = 0``
    (the push env blocks the fingers anyway).
    """
    o, goal = _split(obs)
    grip = o[..., 0:3]
    obj = o[..., 3:6]

    to_goal = goal[..., 0:2] - obj[..., 0:2]
    dist_goal = _norm(to_goal)
    d = to_goal / (dist_goal[..., None] + _EPS)
    rel = grip[..., 0:2] - obj[..., 0:2]
    along = jnp.sum(rel * d, axis=-1)
    lat = _norm(rel - along[..., None] * d)
    height = grip[..., 2] - obj[..., 2]

    behind = (along < -PUSH_ALIGN_ALONG) & (lat < PUSH_KEEP_LAT)
    clear_behind = (along < -PUSH_DESCEND_ALONG) & (lat < PUSH_ALIGN_LAT)
    pushing = behind & (height < PUSH_LOW_Z)
    descending = clear_behind & ~pushing

    # push phase
    contact = obj[..., 0:2] - PUSH_CONTACT * d
    speed = jnp.minimum(PUSH_GAIN * dist_goal, PUSH_MAX)
    push_xy = PUSH_TRACK_GAIN * (contact - grip[..., 0:2]) + speed[..., None] * d

    # descend / travel phases
    lineup = obj[..., 0:2] - PUSH_BEHIND * d
    xy_ok = descending | (height > PUSH_CLEAR_Z)
    line_xy = jnp.where(xy_ok[..., None], PUSH_TRAVEL_GAIN * (lineup - grip[..., 0:2]), 0.0)

    a_xy = jnp.where(pushing[..., None], push_xy, line_xy)
    z_target = obj[..., 2] + jnp.where(pushing | descending, PUSH_Z, PUSH_RAISE)
    a_z = POS_GAIN * (z_target - grip[..., 2])
    a = jnp.clip(jnp.concatenate([a_xy, a_z[..., None]], axis=-1), -1.0, 1.0)
    a = jnp.where((dist_goal < PUSH_DONE)[..., None], 0.0, a)
    return jnp.concatenate([a, jnp.zeros_like(a[..., :1])], axis=-1).astype(jnp.float32)


# --------------------------------------------------------------------------
# Pick and place
# --------------------------------------------------------------------------

#: Hover height of the grip site above the block centre while approaching.
PP_HOVER = 0.05
#: xy distance (grip site to block) under which the gripper descends.
PP_XY_TOL = 0.02
#: The fingers close once the grip site is within this xy distance of the
#: block centre ...
PP_GRASP_XY = 0.02
#: ... and at most this high above it.  The fingertips touch the table when
#: the grip site is still ~0.01 above the block centre.
PP_GRASP_Z = 0.02
#: Finger opening (sum of both finger joints, ``gripper_state``) below which
#: the fingers count as closed on the block.  Fully open is ~0.1, closed on
#: the 0.05 m block ~0.048, closed on nothing ~0.
PP_CLOSED = 0.07
#: Finger opening below which the fingers hold nothing (closed on air).
PP_EMPTY = 0.02
#: 3-d distance (grip site to block centre) up to which a block held between
#: closed fingers counts as grasped (the block hangs ~0.01 below the grip
#: site and may slide a little on lifting).
PP_HOLD_DIST = 0.03
#: Gain of the approach/descend motion (action units per metre).
PP_APPROACH_GAIN = 15.0
#: Gain of the carry motion (block error to action).
PP_CARRY_GAIN = 10.0


def pick_and_place_policy(obs):
    """FetchPickAndPlace: approach open, descend, close, carry, hold.

    With ``grip`` the grip site, ``obj`` the block centre, ``rel = obj -
    grip``, ``goal`` the target and ``width = gripper_state.sum()`` (finger
    opening), phases chosen from the observation only (first match wins):

    * **carry / hold** -- fingers closed on something (``PP_EMPTY < width <=
      PP_CLOSED``) and the block within ``PP_HOLD_DIST`` of the grip site:
      move so that the *block* goes to the goal (action ``PP_CARRY_GAIN *
      (goal - obj)``), fingers closed (-1).  At the goal the error vanishes
      and the block is held there.
    * **grasp** -- grip site within ``PP_GRASP_XY`` (xy) of the block centre
      and at most ``PP_GRASP_Z`` above it: hold position, close (-1).
    * **descend** -- xy error below ``PP_XY_TOL``: move the grip site to the
      block centre (xy keeps being tracked; the table stops the fingertips),
      fingers open (+1).
    * **approach** -- otherwise: move to ``obj + (0, 0, PP_HOVER)``, fingers
      open (+1).

    If the block slips out (farther than ``PP_HOLD_DIST``, or the fingers
    close on air), the policy falls back to approach/descend and re-grasps.
    """
    o, goal = _split(obs)
    grip = o[..., 0:3]
    obj = o[..., 3:6]
    width = o[..., 9] + o[..., 10]

    rel = obj - grip
    dist = _norm(rel)
    xy_err = _norm(rel[..., 0:2])

    carrying = (dist < PP_HOLD_DIST) & (width <= PP_CLOSED) & (width > PP_EMPTY)
    grasping = (xy_err < PP_GRASP_XY) & (-rel[..., 2] < PP_GRASP_Z) & ~carrying
    descending = xy_err < PP_XY_TOL

    hover = obj + jnp.array([0.0, 0.0, PP_HOVER], jnp.float32)
    a = PP_APPROACH_GAIN * jnp.where(descending[..., None], rel, hover - grip)
    a = jnp.where(grasping[..., None], 0.0, a)
    a = jnp.where(carrying[..., None], PP_CARRY_GAIN * (goal - obj), a)
    a = jnp.clip(a, -1.0, 1.0)
    finger = jnp.where(carrying | grasping, -1.0, 1.0)
    return jnp.concatenate([a, finger[..., None]], axis=-1).astype(jnp.float32)
