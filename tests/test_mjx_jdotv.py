"""``herjax.envs.mjx_jdotv``: MJX with C MuJoCo's J̇·v correction of connect/weld rows, checked against C.

Everything runs in float64 (``jax.enable_x64`` context) so that MJX and C MuJoCo can agree to ~1e-12. The
Fetch Reach checks compile ``mjx.step`` and the corrected step once each (about a minute on 2 CPU cores).
"""

import functools

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from herjax.envs import mjx_jdotv
from herjax.envs.model import load_model

N_SUBSTEPS = 20


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _reach_start():
    """Fetch Reach, arm moving, mocap displaced from the gripper (so the weld pulls)."""
    m = load_model("reach").mj_model
    d = mujoco.MjData(m)
    d.qvel[:] = np.random.default_rng(0).normal(0.0, 0.5, m.nv)
    mujoco.mj_forward(m, d)
    gid = m.body("robot0:gripper_link").id
    d.mocap_pos[0] = d.xpos[gid] + 0.025
    d.mocap_quat[0] = d.xquat[gid] + [1.0, 0.0, 1.0, 0.0]
    mujoco.mj_forward(m, d)
    return m, d


@functools.lru_cache(maxsize=None)
def _reach_runs():
    """C MuJoCo's 20-substep trajectory, and MJX's (plain and corrected) from the same start, in float64."""
    m, d = _reach_start()
    assert list(m.eq_type) == [mujoco.mjtEq.mjEQ_WELD] and d.ne == 6  # the weld: efc rows 0..5 in both
    with jax.enable_x64(True):
        mx = mjx.put_model(m)
        template = mjx.put_data(m, d)
        both = jax.jit(lambda x: (mjx.step(mx, x), mjx_jdotv.step(mx, x)))

        def from_state(qpos, qvel, warm, time):
            return template.replace(qpos=jnp.asarray(qpos), qvel=jnp.asarray(qvel),
                                    qacc_warmstart=jnp.asarray(warm), time=jnp.asarray(time))

        c = {"aref": [], "qacc": [], "qpos": []}
        one = {"plain_aref": [], "aref": [], "plain_qacc": [], "qacc": []}  # one MJX step from each C state
        for _ in range(N_SUBSTEPS):
            plain, fixed = both(from_state(d.qpos, d.qvel, d.qacc_warmstart, d.time))
            one["plain_aref"].append(np.asarray(plain._impl.efc_aref[:6]))
            one["aref"].append(np.asarray(fixed._impl.efc_aref[:6]))
            one["plain_qacc"].append(np.asarray(plain.qacc))
            one["qacc"].append(np.asarray(fixed.qacc))
            mujoco.mj_step(m, d)  # its forward (efc_aref, qacc) is that of the state before the step
            c["aref"].append(d.efc_aref[:6].copy())
            c["qacc"].append(d.qacc.copy())
        c["qpos"] = d.qpos.copy()

        m0, d0 = _reach_start()
        plain = fixed = mjx.put_data(m0, d0)
        for _ in range(N_SUBSTEPS):
            plain = both(from_state(plain.qpos, plain.qvel, plain.qacc_warmstart, plain.time))[0]
            fixed = both(from_state(fixed.qpos, fixed.qvel, fixed.qacc_warmstart, fixed.time))[1]
        roll = {"plain": np.asarray(plain.qpos), "fixed": np.asarray(fixed.qpos)}
    return c, one, roll


def test_reach_weld_aref_matches_c():
    c, one, _ = _reach_runs()
    errs = [_rel(a, b) for a, b in zip(one["aref"], c["aref"])]
    assert max(errs) < 1e-8, errs
    assert _rel(one["plain_aref"][0], c["aref"][0]) > 1e-5  # plain MJX leaves the term out (measured 1.7e-4)


def test_reach_qacc_matches_c():
    c, one, _ = _reach_runs()
    errs = [float(np.abs(a - b).max()) for a, b in zip(one["qacc"], c["qacc"])]
    assert max(errs) < 1e-6, errs
    assert np.abs(one["plain_qacc"][0] - c["qacc"][0]).max() > 1e-2  # measured 0.17


def test_reach_20_substeps_match_c():
    c, _, roll = _reach_runs()
    assert np.abs(roll["fixed"] - c["qpos"]).max() < 1e-6
    assert np.abs(roll["plain"] - c["qpos"]).max() > 1e-4  # measured 4e-2


# A small model with every supported case: free, ball, hinge and slide joints; connect and weld; body and site
# semantics; a weld relpose and torquescales; a mocap; an inactive weld. No collisions.
GENERIC_XML = """
<mujoco>
  <option timestep="0.002"/>
  <default><geom contype="0" conaffinity="0" size=".03"/></default>
  <worldbody>
    <body name="a" pos="0 0 1">
      <freejoint/>
      <geom type="box" size=".1 .05 .02"/>
      <site name="sa" pos=".1 .02 -.01" quat=".9 .1 .3 .2"/>
      <body name="b" pos=".2 0 0">
        <joint type="ball"/>
        <geom type="capsule" fromto="0 0 0 .2 0 0"/>
        <body name="c" pos=".2 0 0" quat=".8 .2 0 .1">
          <joint type="hinge" axis="0 1 0"/>
          <joint type="slide" axis="1 0 .3"/>
          <geom type="capsule" fromto="0 0 0 .15 0 0"/>
          <site name="sc" pos=".1 .02 0" quat=".7 0 .2 .5"/>
        </body>
      </body>
    </body>
    <body name="e" pos=".5 .3 1.1">
      <freejoint/>
      <geom type="sphere" size=".05"/>
      <site name="se" pos=".02 0 .01" quat=".5 .5 .1 .3"/>
    </body>
    <body name="mocap" mocap="true" pos=".3 .1 1.2" quat=".9 .3 .1 0"/>
  </worldbody>
  <equality>
    <weld body1="mocap" body2="c" relpose=".1 0 0 .8 .2 .3 .1" torquescale=".5"/>
    <connect body1="a" body2="e" anchor=".1 0 0"/>
    <weld site1="sa" site2="se" torquescale="2"/>
    <connect site1="sc" site2="se"/>
    <weld body1="b" body2="e" active="false"/>
    <weld body1="e" body2="c" anchor=".05 .02 0"/>
  </equality>
</mujoco>
"""


def _random_state(m, d, rng):
    d.qpos[:] = m.qpos0 + rng.normal(0, 0.3, m.nq)
    for j in range(m.njnt):
        adr = m.jnt_qposadr[j]
        if m.jnt_type[j] == mujoco.mjtJoint.mjJNT_FREE:
            d.qpos[adr + 3:adr + 7] /= np.linalg.norm(d.qpos[adr + 3:adr + 7])
        elif m.jnt_type[j] == mujoco.mjtJoint.mjJNT_BALL:
            d.qpos[adr:adr + 4] /= np.linalg.norm(d.qpos[adr:adr + 4])
    d.qvel[:] = rng.normal(0, 2.0, m.nv)
    d.mocap_pos[0] += rng.normal(0, 0.05, 3)
    mujoco.mj_forward(m, d)


def _mjx_eq_rows(m):
    """MJX's efc rows of each equality, in C's order: connects first, then welds, inactive ones included."""
    rows, r = {}, 0
    for typ, size in ((mujoco.mjtEq.mjEQ_CONNECT, 3), (mujoco.mjtEq.mjEQ_WELD, 6)):
        for i in np.nonzero(m.eq_type == typ)[0]:
            rows[int(i)] = np.arange(r, r + size)
            r += size
    return rows


def test_generic_model_matches_c():
    m = mujoco.MjModel.from_xml_string(GENERIC_XML)
    d = mujoco.MjData(m)
    rows = _mjx_eq_rows(m)
    active = [i for i in range(m.neq) if m.eq_active0[i]]
    c_rows = np.concatenate([rows[i] for i in active])  # C lists active equalities by id
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        mx = mjx.put_model(m)
        fwd = jax.jit(lambda x: (mjx.forward(mx, x), mjx_jdotv.forward(mx, x)))
        term = jax.jit(functools.partial(mjx_jdotv.jdotv, mx))
        for _ in range(3):
            _random_state(m, d, rng)
            assert d.ne == c_rows.size and d.nefc == d.ne
            plain, fixed = fwd(mjx.put_data(m, d))
            np.testing.assert_allclose(np.asarray(fixed._impl.efc_J)[c_rows], d.efc_J.reshape(d.nefc, m.nv),
                                       atol=1e-12)
            # C's own J̇·v term: its aref before mj_Jdotv minus its aref after
            kbip = d.efc_KBIP.reshape(-1, 4)
            c_term = -kbip[:, 1] * d.efc_vel - kbip[:, 0] * kbip[:, 2] * (d.efc_pos - d.efc_margin) - d.efc_aref
            got = np.asarray(term(fixed))
            assert _rel(got[c_rows], c_term) < 1e-9
            inactive = np.concatenate([rows[i] for i in range(m.neq) if not m.eq_active0[i]])
            assert np.all(got[inactive] == 0)
            assert _rel(np.asarray(fixed._impl.efc_aref)[c_rows], d.efc_aref) < 1e-9
            assert _rel(np.asarray(plain._impl.efc_aref)[c_rows], d.efc_aref) > 1e-4
            assert np.abs(np.asarray(fixed.qacc) - d.qacc).max() < 1e-6 * np.abs(d.qacc).max()


def test_jit_vmap_float32():
    """Under jit(vmap), in JAX's default float32, each env's step agrees with C MuJoCo's from its state."""
    m = mujoco.MjModel.from_xml_string(GENERIC_XML)
    d = mujoco.MjData(m)
    rng = np.random.default_rng(2)
    mx = mjx.put_model(m)
    states, expected = [], []
    for _ in range(2):
        _random_state(m, d, rng)
        states.append(mjx.put_data(m, d))
        mujoco.mj_step(m, d)
        expected.append((d.qpos.copy(), d.qvel.copy()))
    batch = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *states)
    out = jax.jit(jax.vmap(functools.partial(mjx_jdotv.step, mx)))(batch)
    assert out.qpos.dtype == jnp.float32 and out.qpos.shape == (2, m.nq)
    for i, (qpos, qvel) in enumerate(expected):
        np.testing.assert_allclose(out.qpos[i], qpos, atol=1e-5)
        np.testing.assert_allclose(out.qvel[i], qvel, atol=1e-3 * np.abs(qvel).max())


def test_unsupported_integrator_raises():
    m = mujoco.MjModel.from_xml_string(GENERIC_XML)
    m.opt.integrator = mujoco.mjtIntegrator.mjINT_RK4
    mx = mjx.put_model(m)
    with pytest.raises(NotImplementedError, match="integrator"):
        jax.eval_shape(functools.partial(mjx_jdotv.step, mx), mjx.make_data(mx))
