"""herjax.envs.mjx_cylinder_box: MJX's cylinder-box contacts equal C MuJoCo 4.0.1's (the probes its docstring
describes), and herjax's MJX engine steps FetchSlide's original cylinder puck with them."""

import jax
import jax.numpy as jnp
import mujoco
import numpy as np
import pytest
from mujoco import mjx

import herjax  # noqa: F401  (XLA flag before any JAX computation)
from herjax.envs import mjx_contacts, mjx_cylinder_box

PUCK = (0.025, 0.02)  # FetchSlide's puck: radius, half-height
TABLE = (0.625, 0.45, 0.2)  # FetchSlide's table, half-sizes
FINGER = (0.0385, 0.007, 0.0135)  # a Fetch finger, half-sizes
XML = """<mujoco><worldbody>
  <body pos="{cyl_pos}" euler="{cyl_euler}"><freejoint/><geom type="cylinder" size="{cyl_size}"/></body>
  <body pos="{box_pos}" euler="{box_euler}"><freejoint/><geom type="box" size="{box_size}" margin="{margin}"/></body>
</worldbody></mujoco>"""
_PRESS = 0.025 + 0.007 - 0.0005  # a finger's face 0.5 mm into the puck's side
_RIM_Z = 0.02 * np.cos(np.radians(3.7)) + 0.025 * np.sin(np.radians(3.7)) - 5e-6  # the low rim point 5 um deep
# name: (cylinder position, cylinder euler (degrees), box position, box half-sizes, box euler, margin); no exact ties
PROBES = {
    "cap on a face, turned 30 degrees": ((0, 0, 0.0197), (0, 0, 30), (0, 0, -0.2), TABLE, (0, 0, 0), 0.0),
    "cap on a face, tilted 2 degrees": ((0, 0, 0.02), (2, 0, 0), (0, 0, -0.2), TABLE, (0, 0, 0), 0.0),
    "cap on a face, tilted 0.05 degrees": ((0, 0, 0.02), (0.05, 0, 0), (0, 0, -0.2), TABLE, (0, 0, 0), 0.0),
    "rim on a face (10 degrees)": ((0, 0, 0.02), (10, 0, 0), (0, 0, -0.2), TABLE, (0, 0, 0), 0.0),
    # tilted within the face tolerance, 5 micrometres deep at the rim point between two of the 16-gon's corners,
    # none of which reaches the face: one point (found on FetchSlide's table, where herjax once put it 20 cm away)
    "rim on a face (3.7 degrees), between corners": ((0, 0, _RIM_Z), (3.7, 0, 11.25), (0, 0, -0.2), TABLE,
                                                     (0, 0, 0), 0.0),
    "side on a face": ((0, 0, 0), (0, 0, 0), (0, _PRESS, 0), FINGER, (0, 0, 0), 0.0),
    "side on a face, box higher": ((0, 0, 0), (0, 0, 0), (0, _PRESS, 0.01), FINGER, (0, 0, 0), 0.0),
    "side on a face turned 20 degrees": ((0, 0, 0), (0, 0, 0), (0.01, _PRESS, 0), FINGER, (0, 0, 20), 0.0),
    "side on a face tilted 3 degrees (one end, twice)": ((0, 0, 0), (0, 0, 0), (0, _PRESS, 0), FINGER, (3, 0, 0),
                                                         0.0),
    "side on a face, margin": ((0, 0, 0), (0, 0, 0), (0, _PRESS, 0), FINGER, (0, 0, 0), 0.001),
    "side 0.5 mm from a face, within the margin": ((0, 0, 0), (0, 0, 0), (0, _PRESS + 0.001, 0), FINGER, (0, 0, 0),
                                                   0.001),
    "face on the cap": ((0, 0, 0), (0, 0, 0), (0, 0, 0.02 + 0.0135 - 0.0005), FINGER, (0, 0, 0), 0.0),
    "face on the cap's rim": ((0, 0, 0), (0, 0, 0), (0, 0.02, 0.02 + 0.0135 - 0.0005), FINGER, (0, 0, 0), 0.0),
    "edge across the cap": ((0, 0, 0), (0, 0, 0), (0, 0, 0.02 + 0.0135 * 0.7), FINGER, (40, 0, 0), 0.0),
    "edge along the side": ((0, 0, 0), (0, 0, 0), (0.0387, 0.0177, 0), FINGER, (0, 0, 45), 0.0),
    "edge along the side, puck tilted 0.1 degrees": ((0, 0, 0), (0.1, 0, 0), (0.0387, 0.0177, 0), FINGER,
                                                     (0, 0, 45), 0.0),
    "edge along the side, puck tilted -0.1 degrees": ((0, 0, 0), (-0.1, 0, 0), (0.0387, 0.0177, 0), FINGER,
                                                      (0, 0, 45), 0.0),
    "edge along the side, puck tilted 0.5 degrees": ((0, 0, 0), (0, 0.5, 0), (0.0387, 0.0177, 0), FINGER,
                                                     (0, 0, 45), 0.0),
}


# One point from C MuJoCo's EPA, which stops within its tolerance of a curved surface: its point sits up to 0.4 mm
# along the rim from the exact deepest point (its depth up to 0.4 micrometres short), and its normal up to 0.005 off
# the exact one, which herjax takes.
EPA_POINT = {name for name in PROBES if name.startswith(("rim on", "edge along"))}


def _model(cyl_pos, cyl_euler, box_pos, box_size, box_euler, margin):
    text = " ".join
    return mujoco.MjModel.from_xml_string(XML.format(
        cyl_pos=text(map(str, cyl_pos)), cyl_euler=text(map(str, cyl_euler)), cyl_size=text(map(str, PUCK)),
        box_pos=text(map(str, box_pos)), box_euler=text(map(str, box_euler)), box_size=text(map(str, box_size)),
        margin=margin))


def _c(m):
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    return d, [(c.dist, np.array(c.pos), np.array(c.frame[:3])) for c in d.contact[: d.ncon]]


@pytest.fixture(scope="module")
def collide():
    with jax.enable_x64(True):
        fn = jax.jit(mjx_cylinder_box.collide_one)

    def run(m, d):
        with jax.enable_x64(True):
            dist, pos, normal = fn(d.geom_xpos[0], d.geom_xmat[0].reshape(3, 3), m.geom_size[0], d.geom_xpos[1],
                                   d.geom_xmat[1].reshape(3, 3), m.geom_size[1], float(m.geom_margin[1]))
        active = np.asarray(dist) < 1.0
        return [(float(x), np.asarray(p), np.asarray(n)) for x, p, n, a in zip(dist, pos, normal, active) if a]

    return run


def _sorted(points):
    return sorted(points, key=lambda c: tuple(np.round(c[1], 6)))


def _assert_same_points(got, want, pos_atol, dist_atol, normal_atol):
    """The same number of ``(dist, pos, normal)`` points, matched in position order, each within the bounds."""
    assert want and len(got) == len(want), (got, want)
    for (w_dist, w_pos, w_n), (g_dist, g_pos, g_n) in zip(_sorted(want), _sorted(got)):
        np.testing.assert_allclose(g_pos, w_pos, atol=pos_atol)
        np.testing.assert_allclose(g_dist, w_dist, atol=dist_atol)
        np.testing.assert_allclose(g_n, w_n, atol=normal_atol)


@pytest.mark.parametrize("probe", PROBES)
def test_points_are_c_mujocos(collide, probe):
    """Every point C MuJoCo makes, and no other: the same count (a point C MuJoCo makes twice, twice), positions
    within 0.02 mm, depths within 2 micrometres, normals within 0.002 (one point from EPA: 0.4 mm, 0.01)."""
    m = _model(*PROBES[probe])
    d, want = _c(m)
    epa = probe in EPA_POINT
    _assert_same_points(collide(m, d), want, pos_atol=4e-4 if epa else 2e-5, dist_atol=2e-6,
                        normal_atol=1e-2 if epa else 2e-3)


def test_a_flat_cap_touches_at_four_of_its_corners_spanning_a_square(collide):
    """Resting exactly flat, every corner of the cap is as deep as the next and C MuJoCo picks 4 of them by the
    order it meets them; herjax picks 4 too, each a corner of the cap, at C MuJoCo's depth, spanning a square."""
    m = _model((0, 0, 0.0197), (0, 0, 0), (0, 0, -0.2), TABLE, (0, 0, 0), 0.0)
    d, want = _c(m)
    got = collide(m, d)
    assert len(got) == len(want) == 4
    angles = np.degrees(np.arctan2([p[1] for _, p, _ in got], [p[0] for _, p, _ in got]))
    np.testing.assert_allclose(np.hypot(*np.array([p[:2] for _, p, _ in got]).T), PUCK[0], atol=1e-9)
    np.testing.assert_allclose(np.mod(angles + 11.25, 22.5) - 11.25, 0, atol=1e-6)  # each a multiple of 22.5
    np.testing.assert_allclose(np.sort(np.mod(np.diff(np.sort(angles)), 360)), [90, 90, 90], atol=1e-6)
    np.testing.assert_allclose([g[0] for g in got], [w[0] for w in want], atol=1e-9)


def test_apart_beyond_the_margin_no_contact(collide):
    m = _model((0, 0, 0), (0, 0, 0), (0, _PRESS + 0.002, 0), FINGER, (0, 0, 0), 0.001)
    d, want = _c(m)
    assert want == [] and collide(m, d) == []


def test_mjx_steps_a_cylinder_on_a_box_only_with_herjax_contacts():
    """MJX alone refuses the pair; inside ``unique_midpoint_contacts`` it builds the model and its forward pass gives
    C MuJoCo's contacts (float32: depths within 1 micrometre, positions within 0.02 mm)."""
    m = _model((0, 0, 0.02), (2, 0, 0), (0, 0, -0.2), TABLE, (0, 0, 0), 0.0)
    with pytest.raises(NotImplementedError, match="collisions not implemented"):
        mjx.put_model(m)
    with mjx_contacts.unique_midpoint_contacts():
        mx = mjx.put_model(m)
        data = mjx.make_data(mx)

    @jax.jit
    def forward(qpos):
        with mjx_contacts.unique_midpoint_contacts():
            return mjx.forward(mx, data.replace(qpos=qpos))

    d, want = _c(m)
    contact = forward(jnp.asarray(d.qpos, jnp.float32))._impl.contact
    active = np.asarray(contact.dist) < np.asarray(contact.includemargin)
    got = [(float(x), np.asarray(p), np.asarray(f[0])) for x, p, f in
           zip(np.asarray(contact.dist)[active], np.asarray(contact.pos)[active], np.asarray(contact.frame)[active])]
    assert len(want) == 4
    _assert_same_points(got, want, pos_atol=2e-5, dist_atol=1e-6, normal_atol=1e-5)


def test_slide_on_mjx_keeps_the_original_cylinder_puck():
    from herjax import envs

    env = envs.make("fetch_slide", backend="mjx")
    m = env.mj_model
    assert m.geom("object0").type[0] == mujoco.mjtGeom.mjGEOM_CYLINDER
    assert m.geom("robot0:r_gripper_finger_link").margin[0] == pytest.approx(0.001)
