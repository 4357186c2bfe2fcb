"""MJX forward/step with C MuJoCo's J̇·v correction of connect and weld equality rows.

C MuJoCo 4.0 sets the reference acceleration of a constraint row to ``aref = -B*vel - K*I*(pos-margin)`` and
then, for the rows of connect and weld equality constraints, subtracts ``J̇·qvel`` (``mj_Jdotv``, called by
``mj_referenceConstraint``). MJX 3.17's JAX implementation leaves that term out, so a mocap-driven weld (the
Fetch gripper) pulls differently: with the same J, D, pos and vel, the weld rows' ``efc_aref`` differ by
1e-4 to 0.4 relative (Reach, 20 substeps from a moving state), and the gripper drifts ~2 cm from C
MuJoCo's over a 50-step episode.

This module computes the same term from MJX's own kinematic quantities (``cdof``, ``cdof_dot``, ``cvel``,
``subtree_com``, ``xquat``) and provides ``forward``/``step``: drop-ins for ``mjx.forward``/``mjx.step`` that
apply it to ``efc_aref`` before the constraint solver. Everything else is MJX's own pipeline. Connects and
welds with body or site semantics are supported; other equality types have no such term.

Math (per connect/weld: bodies ``b1``, ``b2``; anchors ``p1``, ``p2``; world angular velocities ``w1``, ``w2``
from ``cvel``):

* ``jacDot(p, b)·qvel`` (``mj_jacDot``): the DOFs ``i`` on ``b``'s chain contribute the columns
  ``[ċ_ang ; ċ_lin + ċ_ang × (p - com) + c_ang × v_p]``, ``c = cdof[i]``, ``ċ = cdof_dot[i]`` (for ball and
  free-rotation DOFs ``ċ = cvel[body of i] ×ₘ c`` instead), ``com`` the root subtree COM, ``v_p`` the linear
  velocity of ``b`` at ``p``.
* translational rows: ``aref -= jacDot(p1,b1)·v - jacDot(p2,b2)·v``.
* weld rotational rows, whose Jacobian is ``½ ts · vec(conj(q1) ∘ (0, (Jr1-Jr2)·) ∘ q0r)`` (``q0r`` = ``q0 ∘
  relpose``, or the site frames' quaternions; ``ts`` the torquescale): ``aref -=`` the time derivative of that
  times qvel by the product rule, with MuJoCo's ``q̇ = ½ (0, w) ∘ q``. It simplifies to
  ``½ ts · vec(conj(q1) ∘ (-½|Δw|², Δ(J̇r·v) + ½ Δw × (w1 + w2)) ∘ q0r)``, ``Δw = w1 - w2``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from mujoco.mjx._src import forward as _fwd
from mujoco.mjx._src import math as _math
from mujoco.mjx._src import sensor as _sensor
from mujoco.mjx._src import solver as _solver
from mujoco.mjx._src.types import DataJAX, DisableBit, EqType, IntegratorType, JointType, ModelJAX, ObjType

__all__ = ["jdotv", "correct_aref", "forward", "step"]

_BODY, _SITE = int(ObjType.BODY), int(ObjType.SITE)


def _check(m, d) -> None:
    if not isinstance(m._impl, ModelJAX) or not isinstance(d._impl, DataJAX):
        raise NotImplementedError("herjax.envs.mjx_jdotv supports only MJX's JAX implementation (impl='jax').")


def _eq_rows(m) -> list[tuple[int, int, int]]:
    """Static ``(eq_id, type, first efc row)`` of every connect and weld, in MJX's efc row order.

    MJX (``constraint.make_constraint``) lays out all connect rows (3 each, by eq id), then all weld rows
    (6 each), whether or not the constraint is active (inactive rows are zero).
    """
    if m.opt.disableflags & (DisableBit.CONSTRAINT | DisableBit.EQUALITY):
        return []
    rows, r = [], 0
    for typ, size in ((EqType.CONNECT, 3), (EqType.WELD, 6)):
        for i in np.nonzero(np.asarray(m.eq_type) == typ)[0]:
            if int(m.eq_objtype[i]) not in (_BODY, _SITE):
                raise NotImplementedError(f"equality {i}: objtype {m.eq_objtype[i]} is neither body nor site")
            rows.append((int(i), int(typ), r))
            r += size
    return rows


def _chain(m, body: int) -> np.ndarray:
    """Static DOF indices on ``body``'s kinematic chain (the DOFs that move it), as ``mj_jacDot`` walks them."""
    b = int(m.body_weldid[body])
    if m.body_dofnum[b] == 0:
        return np.zeros(0, np.int64)
    dofs, i = [], int(m.body_dofadr[b] + m.body_dofnum[b] - 1)
    while i >= 0:
        dofs.append(i)
        i = int(m.dof_parentid[i])
    return np.asarray(dofs, np.int64)


def _quat_dofs(m) -> np.ndarray:
    """Static mask of the DOFs whose ``cdof_dot`` ``mj_jacDot`` recomputes: ball joints, free rotations."""
    jnt = np.asarray(m.dof_jntid)
    typ = np.asarray(m.jnt_type)[jnt]
    k = np.arange(m.nv) - np.asarray(m.jnt_dofadr)[jnt]
    return (typ == JointType.BALL) | ((typ == JointType.FREE) & (k >= 3))


def _jacdot_v(m, d, point: jax.Array, body: int) -> tuple[jax.Array, jax.Array]:
    """``(J̇p·qvel, J̇r·qvel)`` of the global ``point`` attached to ``body`` (``mj_jacDot`` times qvel).

    ``mj_jacDot``'s column of DOF ``i`` is ``[ċ_ang ; ċ_lin + ċ_ang × r + c_ang × v_p]``, so its product with
    qvel is ``a_lin + a_ang × r + w × v_p`` with ``a = Σ qvel_i ċ_i`` and ``w = Σ qvel_i c_ang,i`` over the chain.
    """
    dofs = _chain(m, body)
    if dofs.size == 0:
        z = jnp.zeros(3, d.qvel.dtype)
        return z, z
    mask = np.zeros(m.nv, bool)
    mask[dofs] = True
    qv = jnp.where(mask, d.qvel, 0.0)  # static mask: a dense matvec instead of a gather
    cdof_dot = d.cdof_dot
    quat = np.nonzero(_quat_dofs(m) & mask)[0]
    if quat.size:
        body_vel = d.cvel[np.asarray(m.dof_bodyid)[quat]]
        cdof_dot = cdof_dot.at[quat].set(jax.vmap(_math.motion_cross)(body_vel, d.cdof[quat]))
    a = qv @ cdof_dot
    w = qv @ d.cdof[:, :3]
    offset = point - d.subtree_com[int(m.body_rootid[body])]
    cvel = d.cvel[body]
    pvel_lin = cvel[3:] + jnp.cross(cvel[:3], offset)  # linear velocity of the body at the point
    return a[3:] + jnp.cross(a[:3], offset) + jnp.cross(w, pvel_lin), a[:3]


def _one(m, d, eq: int, typ: int) -> jax.Array:
    """The ``J̇·v`` term (3 or 6 values) of equality ``eq``, before the activity mask."""
    data = m.eq_data[eq]
    o1, o2 = int(m.eq_obj1id[eq]), int(m.eq_obj2id[eq])
    is_site = int(m.eq_objtype[eq]) == _SITE
    if is_site:
        b1, b2 = int(m.site_bodyid[o1]), int(m.site_bodyid[o2])
        p1, p2 = d.site_xpos[o1], d.site_xpos[o2]
    else:
        b1, b2 = o1, o2
        # connect: data[0:3] is on body 1; weld: data[3:6] is on body 1 (MuJoCo's convention)
        a1, a2 = (data[0:3], data[3:6]) if typ == EqType.CONNECT else (data[3:6], data[0:3])
        p1 = d.xmat[b1] @ a1 + d.xpos[b1]
        p2 = d.xmat[b2] @ a2 + d.xpos[b2]

    jv1, jrv1 = _jacdot_v(m, d, p1, b1)
    jv2, jrv2 = _jacdot_v(m, d, p2, b2)
    trans = jv1 - jv2
    if typ == EqType.CONNECT:
        return trans

    # Product rule on ½ conj(q1) ∘ (0, Δw) ∘ q0r, with conj(q1)' = ½ conj(q1) ∘ (0, -w2) and
    # q0r' = ½ (0, w1) ∘ q0r, plus the J̇r·v term:
    #   ½ conj(q1) ∘ [½ (0,-w2)∘(0,Δw) + (0, Δ(J̇r·v)) + ½ (0,Δw)∘(0,w1)] ∘ q0r,
    # where the bracket is (-½ |Δw|², Δ(J̇r·v) + ½ Δw × (w1 + w2)).
    torquescale = data[10]
    w1, w2 = d.cvel[b1, :3], d.cvel[b2, :3]
    dw = w1 - w2
    if is_site:
        q0r = _math.quat_mul(d.xquat[b1], m.site_quat[o1])
        q1 = _math.quat_mul(d.xquat[b2], m.site_quat[o2])
    else:
        q0r = _math.quat_mul(d.xquat[b1], data[6:10])  # relpose
        q1 = d.xquat[b2]
    inner = jnp.concatenate([-0.5 * jnp.dot(dw, dw)[None], (jrv1 - jrv2) + 0.5 * jnp.cross(dw, w1 + w2)])
    t = _math.quat_mul(_math.quat_mul(_math.quat_inv(q1), inner), q0r)
    return jnp.concatenate([trans, 0.5 * torquescale * t[1:]])


def jdotv(m, d) -> jax.Array:
    """C MuJoCo's ``J̇·qvel`` for MJX's connect and weld rows: ``[n]``, ``n`` = 3·nconnect + 6·nweld.

    ``d`` must hold the results of the position and velocity stages (``xpos``, ``xquat``, ``cdof``,
    ``subtree_com``, ``cvel``, ``cdof_dot``). Rows of inactive constraints are zero. Its rows are the first
    ``n`` of MJX's ``efc_aref``, which C MuJoCo's ``efc_aref`` has minus this term.
    """
    _check(m, d)
    rows = _eq_rows(m)
    if not rows:
        return jnp.zeros(0, d.qvel.dtype)
    out = [_one(m, d, eq, typ) * d.eq_active[eq].astype(d.qvel.dtype) for eq, typ, _ in rows]
    return jnp.concatenate(out)


def correct_aref(m, d):
    """``d`` with ``J̇·qvel`` subtracted from the connect/weld rows of ``efc_aref`` (after the velocity stage)."""
    corr = jdotv(m, d)
    n = corr.shape[0]
    if n == 0 or d._impl.efc_aref.shape[-1] < n:
        return d
    aref = d._impl.efc_aref
    return d.tree_replace({"_impl.efc_aref": jnp.concatenate([aref[:n] - corr, aref[n:]])})


def forward(m, d):
    """``mjx.forward`` with C MuJoCo's J̇·v correction of connect/weld ``efc_aref`` (JAX implementation)."""
    _check(m, d)
    _eq_rows(m)  # raises at trace time on an unsupported model
    d = _fwd.fwd_position(m, d)  # make_constraint: efc_J, efc_D, efc_aref from qvel
    d = _sensor.sensor_pos(m, d)
    d = _fwd.fwd_velocity(m, d)  # cvel, cdof_dot
    d = _sensor.sensor_vel(m, d)
    d = _fwd.fwd_actuation(m, d)
    d = _fwd.fwd_acceleration(m, d)
    if d._impl.efc_J.size == 0:
        return d.replace(qacc=d.qacc_smooth)
    d = correct_aref(m, d)
    d = _solver.solve(m, d)
    d = _sensor.sensor_acc(m, d)
    return d


def step(m, d):
    """``mjx.step`` built on the corrected ``forward``; Euler and implicitfast integrators."""
    d = forward(m, d)
    if m.opt.integrator == IntegratorType.EULER:
        return _fwd.euler(m, d)
    if m.opt.integrator == IntegratorType.IMPLICITFAST:
        return _fwd.implicit(m, d)
    raise NotImplementedError(f"integrator {m.opt.integrator}: only Euler and implicitfast are supported")
