"""herjax.envs.mjx_contacts: MJX's box-box contacts, each point once, within the margin and midway between the
surfaces, equal C MuJoCo's."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx
from mujoco.mjx._src import collision_driver

import herjax  # noqa: F401  (XLA flag before any JAX computation)
from herjax.envs import mjx_contacts

# A block on a table, both boxes (FetchPush's pair, smaller).
XML = """
<mujoco>
  <worldbody>
    <geom name="table" type="box" size="0.3 0.3 0.02"/>
    <body name="block" pos="0 0 0.04">
      <freejoint/>
      <geom name="block" type="box" size="0.025 0.025 0.025" mass="2" margin="MARGIN"/>
    </body>
  </worldbody>
</mujoco>
"""
# The block flat (4 corners in the table), on one edge (2) and on three corners (3), each 0.2-1.4 mm deep: (quat, z).
PLACEMENTS = {
    "flat": ([1.0, 0.0, 0.0, 0.0], 0.0445),
    "edge": ([1.0, 0.02, 0.0, 0.0], 0.0447),
    "three corners": ([1.0, 0.01, 0.012, 0.0], 0.0447),
}
# With a margin of 1 mm: (quat, gap between the block's lowest point and the table) and C MuJoCo's point count. Flat
# 0.4 mm above the table (4 points within the margin); on three corners (one in, two within the margin, one beyond);
# turned 45 degrees onto an edge, 0.5 mm above it (2 points) and 1.2 mm above it (none: growing each box by its
# margin, as herjax once did, moves that edge out by the margin times sqrt 2 and found 2 points 0.2 mm early); on
# one corner, tilted both ways, 0.3 mm above (1) and 1.1 mm above (none).
_EDGE_DOWN = [np.cos(np.pi / 8), np.sin(np.pi / 8), 0.0, 0.0]
_CORNER_DOWN = [0.88, 0.28, 0.36, 0.1]
IN_MARGIN = {
    "flat, 0.4 mm above": ([1.0, 0.0, 0.0, 0.0], 0.0004, 4),
    "three corners, two above": ([1.0, 0.01, 0.012, 0.0], -0.0006, 3),
    "edge down, 0.5 mm above": (_EDGE_DOWN, 0.0005, 2),
    "edge down, 1.2 mm above": (_EDGE_DOWN, 0.0012, 0),
    "corner down, 0.3 mm above": (_CORNER_DOWN, 0.0003, 1),
    "corner down, 1.1 mm above": (_CORNER_DOWN, 0.0011, 0),
}
_TABLE_TOP, _HALF = 0.02, 0.025


def _compiled(margin):
    m = mujoco.MjModel.from_xml_string(XML.replace("MARGIN", str(margin)))
    mx = mjx.put_model(m)

    def forward(qpos):
        return mjx.forward(mx, mjx.make_data(mx).replace(qpos=qpos))

    def with_c_contacts(qpos):
        with mjx_contacts.unique_midpoint_contacts():
            return forward(qpos)

    return m, jax.jit(with_c_contacts), jax.jit(forward)


@pytest.fixture(scope="module")
def model():
    return _compiled(0.0)


@pytest.fixture(scope="module")
def model_with_margin():
    return _compiled(0.001)


def _qpos(m, placement):
    qpos = np.zeros(m.nq)
    quat = np.asarray({**PLACEMENTS, **IN_MARGIN}[placement][0])
    qpos[3:7] = quat / np.linalg.norm(quat)
    if placement in PLACEMENTS:
        z = PLACEMENTS[placement][1]
    else:  # the lowest corner `gap` above the table top
        rot = np.zeros(9)
        mujoco.mju_quat2Mat(rot, qpos[3:7])
        z = _TABLE_TOP + IN_MARGIN[placement][1] + _HALF * np.abs(rot.reshape(3, 3)[2]).sum()
    qpos[:3] = [0.01, -0.02, z]
    return qpos


def _c_contacts(m, qpos):
    d = mujoco.MjData(m)
    d.qpos[:] = qpos
    mujoco.mj_forward(m, d)
    return np.array([c.dist for c in d.contact[: d.ncon]]), np.array([c.pos for c in d.contact[: d.ncon]])


def _active(d):
    """The contacts that make constraint rows (closer than their margin)."""
    contact = d._impl.contact
    active = np.asarray(contact.dist) < np.asarray(contact.includemargin)
    return np.asarray(contact.dist)[active], np.asarray(contact.pos)[active]


def _assert_same_contacts(m, forward, placement, count, pos_atol, dist_atol):
    qpos = _qpos(m, placement)
    want_dist, want_pos = _c_contacts(m, qpos)
    got_dist, got_pos = _active(forward(jnp.asarray(qpos, jnp.float32)))
    assert len(got_dist) == len(want_dist) == count
    for dist, pos in zip(want_dist, want_pos):
        nearest = np.argmin(np.linalg.norm(got_pos - pos, axis=1))
        np.testing.assert_allclose(got_pos[nearest], pos, atol=pos_atol)
        np.testing.assert_allclose(got_dist[nearest], dist, atol=dist_atol)


@pytest.mark.parametrize("placement", PLACEMENTS)
def test_active_contacts_are_c_mujocos(model, placement):
    """Each active MJX contact is one of C MuJoCo's (position within 0.02 mm, depth within 0.02 mm), and there are
    as many: no point counted twice, none left on one box's face."""
    m, with_c_contacts, _ = model
    count = {"flat": 4, "edge": 2, "three corners": 3}[placement]
    _assert_same_contacts(m, with_c_contacts, placement, count, pos_atol=2e-5, dist_atol=2e-5)


@pytest.mark.parametrize("placement", IN_MARGIN)
def test_contacts_within_the_margin_are_c_mujocos(model_with_margin, placement):
    """With a margin, C MuJoCo's points closer than it are MJX's too, and only those: positions and distances
    within 0.02 mm."""
    m, with_c_contacts, own = model_with_margin
    _assert_same_contacts(m, with_c_contacts, placement, count=IN_MARGIN[placement][2], pos_atol=2e-5,
                          dist_atol=2e-5)
    if "flat" in placement:  # MJX alone: no contact until the block penetrates
        assert len(_active(own(jnp.asarray(_qpos(m, placement), jnp.float32)))[0]) == 0


def test_mjx_alone_repeats_points_and_leaves_them_on_a_face(model):
    """What the module is for, on MJX as installed: on an edge its box-box test fills its 4 slots with 2 points, and
    puts them half the depth off C MuJoCo's (if a later MJX stops doing so, the module may go)."""
    m, _, own = model
    qpos = _qpos(m, "edge")
    want_dist, want_pos = _c_contacts(m, qpos)
    got_dist, got_pos = _active(own(jnp.asarray(qpos, jnp.float32)))
    assert len(want_dist) == 2 and len(got_dist) == 4
    assert len({tuple(p) for p in got_pos.round(6)}) == 2
    assert np.min(np.abs(got_pos[:, 2] - want_pos[0, 2])) > 0.4 * abs(want_dist[0])


def test_the_collision_table_is_restored_and_wrapped_once_when_nested():
    table = collision_driver._COLLISION_FUNC
    own = dict(table)
    box_box = (mjx_contacts.GeomType.BOX, mjx_contacts.GeomType.BOX)
    with mjx_contacts.unique_midpoint_contacts():
        outer = table[box_box]
        assert outer is not own[box_box] and outer.ncon == own[box_box].ncon
        with mjx_contacts.unique_midpoint_contacts():
            assert table[box_box] is outer
        assert table[box_box] is outer
    assert table == own and all(table[k] is own[k] for k in own)


FINGER, BLOCK = np.array([0.0385, 0.007, 0.0135]), np.array([0.025, 0.025, 0.025])  # FetchPush's, half-sizes
PAIR_XML = """<mujoco><worldbody>
  <body pos="{pos}" quat="{quat}"><freejoint/><geom type="box" size="{finger}" margin="0.001"/></body>
  <body><freejoint/><geom type="box" size="{block}"/></body>
</worldbody></mujoco>"""


def _finger_on_block(rng):
    """A finger against the block's +y face, 2 mm in to 1.5 mm out, anywhere along it: two in three nearly flat
    (tilted up to 6 degrees, lying or standing), one in three turned at random."""
    axis = rng.normal(size=3)
    angle = np.radians(rng.uniform(0, 6)) if rng.random() < 2 / 3 else rng.uniform(0, np.pi)
    quat, base = np.zeros(4), np.array([1.0, 0, 0, 0])
    if rng.random() < 0.5:
        mujoco.mju_axisAngle2Quat(base, [1.0, 0, 0], np.pi / 2)
    tilt = np.zeros(4)
    mujoco.mju_axisAngle2Quat(tilt, axis / np.linalg.norm(axis), angle)
    mujoco.mju_mulQuat(quat, tilt, base)
    rot = np.zeros(9)
    mujoco.mju_quat2Mat(rot, quat)
    reach = np.abs(rot.reshape(3, 3)[1]) @ FINGER
    pos = [rng.uniform(-0.03, 0.03), BLOCK[1] + reach + rng.uniform(-0.002, 0.0015), rng.uniform(-0.02, 0.02)]
    text = lambda v: " ".join(map(str, v))  # noqa: E731
    return mujoco.MjModel.from_xml_string(PAIR_XML.format(pos=text(pos), quat=text(quat), finger=text(FINGER),
                                                          block=text(BLOCK)))


def test_box_box_points_are_c_mujocos_in_random_finger_block_poses():
    """240 random poses of a Push finger against the block (float64): wherever C MuJoCo makes at most 4 points
    (all but about 1 in 500), herjax makes the same ones, positions and distances within 0.02 mm, normals within
    1e-6; where it makes more, herjax's 4 are among them. The sample holds every path: face against face (several
    points; 86 of the poses) and edge against edge (one point; 69)."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        pair = jax.jit(mjx_contacts._box_box_pair)
        paths = {"face": 0, "edge": 0}
        for _ in range(240):
            m = _finger_on_block(rng)
            d = mujoco.MjData(m)
            mujoco.mj_forward(m, d)
            want = [(c.dist, np.array(c.pos), np.array(c.frame[:3])) for c in d.contact[: d.ncon]]
            dist, pos, normal = pair(d.geom_xpos[0], d.geom_xmat[0].reshape(3, 3), m.geom_size[0], d.geom_xpos[1],
                                     d.geom_xmat[1].reshape(3, 3), m.geom_size[1], 0.001)
            got = {tuple(np.round(p, 9)): (float(x), p) for x, p in zip(np.asarray(dist), np.asarray(pos)) if x < 1.0}
            got = list(got.values())
            if len(want) <= 4:
                assert len(got) == len(want)
            for g_dist, g_pos in got:
                w_dist, w_pos, w_normal = min(want, key=lambda w: np.linalg.norm(w[1] - g_pos))
                np.testing.assert_allclose(g_pos, w_pos, atol=2e-5)
                np.testing.assert_allclose(g_dist, w_dist, atol=2e-5)
                np.testing.assert_allclose(np.asarray(normal), w_normal, atol=1e-6)
            if want:  # an edge-edge normal is no face's normal
                face_axes = np.concatenate([d.geom_xmat[0].reshape(3, 3).T, d.geom_xmat[1].reshape(3, 3).T])
                paths["edge" if np.max(np.abs(face_axes @ want[0][2])) < 1 - 1e-9 else "face"] += 1
    assert paths["edge"] >= 40 and paths["face"] >= 40, paths
