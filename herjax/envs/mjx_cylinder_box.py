"""A cylinder-box contact test for MJX, which has none, made the way C MuJoCo 4.0.1 makes its contact points.

MJX's JAX collision table has no (cylinder, box) entry, so FetchSlide's puck (a cylinder on a box table, pushed by
box fingers) could run on MJX only as a convex prism, which slides differently (``herjax/envs/README.md``, "Slide's
puck"). C MuJoCo finds the pair's deepest penetration with its general convex test and then, with ``multiccd`` on
(its default), recovers several points from the two touching features, as it does for boxes and meshes. Probed in
C MuJoCo 4.0.1 (``tests/test_mjx_cylinder_box.py`` holds the probes):

* **Cap on a face** (the puck on the table; a finger flat on the puck): the cap, a 16-sided polygon with corners at
  multiples of 22.5 degrees of the cylinder's own frame, is clipped against the box face; the corners that
  penetrate are kept, at most 4 of them spanning the largest area, each with its own depth.
* **Side on a face** (a finger's face pushing the puck's side): the cylinder's side line facing the box, clipped
  to the face: its two ends, each with its own depth.
* **An edge across the cap** (a finger's edge pressed into the puck's top): the edge clipped to the cap: its two
  ends.
* **Anything else** (a corner, an edge along or across the side, a tilted rim): one point, the deepest.

Every point lies midway between the two surfaces and takes the face's normal (or, for one point, the axis of
least penetration), pointing from the cylinder to the box. Two features "touch face to face" within C MuJoCo's
tolerances (``FACE_TOL``: normals within about 5 degrees; ``EDGE_TOL``: an edge within about 5 degrees of a face).
Where a clipped segment keeps only an end made by the cut, C MuJoCo emits that point twice, and so does this.

The deepest penetration comes from a separating-axis test over the axes a cylinder and a box can separate along
(the box's face normals, the cylinder's axis, the axis crossed with each box edge, the directions from the
cylinder's axis to each box edge, to each corner and to where each edge crosses a cap's plane, and across the rim
there), where C MuJoCo runs GJK and EPA; the two agree within EPA's tolerance wherever the pair touches through one
of the features above. Where C MuJoCo picks among equally deep points (a cap resting exactly flat), this picks its
own 4 (the same spread, other corners).

``herjax.envs.mjx_contacts`` puts ``cylinder_box`` into MJX's collision table while herjax's MJX engine traces.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
from mujoco.mjx._src import math as mjx_math

__all__ = ["cylinder_box", "collide_one", "CAP_SIDES", "NCON"]

FACE_TOL = 0.996  # C MuJoCo's mjFACE_TOL: two faces meet face to face when their normals are this anti-parallel
EDGE_TOL = 0.0888  # mjEDGE_TOL: an edge lies along a face when it is this close to perpendicular to its normal
CAP_SIDES = 16  # C MuJoCo's cylinder cap in a contact: a polygon of 16 corners
NCON = 4
_INACTIVE = 1.0  # MJX's distance for an unused contact slot
_EPS = 1e-9

_OTHER = np.array([[1, 2], [2, 0], [0, 1]], np.int32)  # the two in-face axes of the face normal to axis j
# Box corners, and the 12 edges (each from its start corner, along one axis, twice the half-size), in units of the
# half-sizes.
_SIGNS = np.array([[x, y, z] for x in (-1.0, 1.0) for y in (-1.0, 1.0) for z in (-1.0, 1.0)], np.float32)


def _edge_starts() -> np.ndarray:
    starts = np.full((12, 3), -1.0, np.float32)
    for i, (axis, s1, s2) in enumerate((a, s1, s2) for a in range(3) for s1 in (-1.0, 1.0) for s2 in (-1.0, 1.0)):
        starts[i, _OTHER[axis]] = s1, s2
    return starts


_EDGE_START = _edge_starts()
_EDGE_DIR = np.array([2.0 * np.eye(3)[axis] for axis in range(3) for _ in range(4)], np.float32)


def _unit(v: jax.Array) -> tuple[jax.Array, jax.Array]:
    norm = jnp.linalg.norm(v, axis=-1, keepdims=True)
    return v / jnp.maximum(norm, _EPS), norm[..., 0]


def _closest_on_segments(p1, d1, p2, d2):
    """Closest points of segments ``p1 + s d1`` and ``p2 + t d2`` (s, t in [0, 1]); broadcasts over leading axes."""
    r = p1 - p2
    a, e = jnp.sum(d1 * d1, -1), jnp.sum(d2 * d2, -1)
    b, c, f = jnp.sum(d1 * d2, -1), jnp.sum(d1 * r, -1), jnp.sum(d2 * r, -1)
    denom = a * e - b * b
    # parallel: the middle of the part of segment 1 that segment 2 overlaps (or the nearer end)
    s_lo, s_hi = -c / jnp.maximum(a, _EPS), (b - c) / jnp.maximum(a, _EPS)
    lo, hi = jnp.clip(jnp.minimum(s_lo, s_hi), 0, 1), jnp.clip(jnp.maximum(s_lo, s_hi), 0, 1)
    s = jnp.where(denom > 1e-6 * jnp.maximum(a * e, _EPS), jnp.clip((b * f - c * e) / jnp.maximum(denom, _EPS), 0, 1),
                  0.5 * (lo + hi))
    t = (b * s + f) / jnp.maximum(e, _EPS)
    s = jnp.where(t < 0, jnp.clip(-c / jnp.maximum(a, _EPS), 0, 1), jnp.where(t > 1, jnp.clip((b - c) / jnp.maximum(
        a, _EPS), 0, 1), s))
    t = jnp.clip(t, 0, 1)
    return p1 + s[..., None] * d1, p2 + t[..., None] * d2


def _clipped_ends(ends, dist, ok, clipped):
    """The two slots of a segment clipped to a face and pruned by depth, as C MuJoCo fills them: its clipper walks
    the segment as a closed polygon, so an end made by a cut comes out twice, and when it alone survives the depth
    test it is a contact twice over."""
    lone = jnp.sum(ok) == 1
    keep = jnp.argmax(ok)
    slots = jnp.where(lone & clipped[keep], jnp.stack([keep, keep]), jnp.arange(2))
    return (jnp.concatenate([jnp.where(ok[slots], dist[slots], _INACTIVE), jnp.full(2, _INACTIVE)]),
            jnp.concatenate([ends[slots], jnp.zeros((2, 3))]))


def _cross2(u: jax.Array, v: jax.Array) -> jax.Array:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


_QUAD_POOL = 10  # the quad is sought among at most this many points (C(10, 4) = 210 quads)
_QUADS = np.array(list(itertools.combinations(range(_QUAD_POOL), 4)), np.int32)  # increasing: in angular order


def _largest_quad(q: jax.Array, valid: jax.Array) -> jax.Array:
    """Indices of up to 4 of the valid 2-D points ``q [N, 2]`` spanning the largest area, as C MuJoCo prunes a
    clipped polygon (all of them when <= 4 are valid; repeats stand for missing ones). The valid points are put in
    angular order about their centroid and every 4 of them are tried; with more than ``_QUAD_POOL`` (a cap flat on
    a face has 16), every other one (a cap's 8 corners 45 degrees apart hold its largest squares)."""
    count = jnp.sum(valid)
    centroid = jnp.sum(jnp.where(valid[:, None], q, 0.0), 0) / jnp.maximum(count, 1)
    angle = jnp.arctan2(q[:, 1] - centroid[1], q[:, 0] - centroid[0])
    order = jax.lax.top_k(-jnp.where(valid, angle, 10.0), 2 * _QUAD_POOL)[1]  # the first 20 in angular order
    thin = count > _QUAD_POOL
    pool_index = jnp.where(thin, 2, 1) * jnp.arange(_QUAD_POOL)
    pool = order[jnp.minimum(pool_index, order.shape[0] - 1)]
    usable = jnp.where(thin, (count + 1) // 2, count)
    quad = q[pool][_QUADS]  # [C, 4, 2]
    area = jnp.abs(jnp.sum(_cross2(quad, jnp.roll(quad, -1, axis=1)), -1))
    ok = jnp.all(_QUADS < usable, -1)
    best = jnp.asarray(_QUADS)[jnp.argmax(jnp.where(ok, area, -1.0))]
    return jnp.where(count <= 4, order[:4], pool[best])


def collide_one(c_pos, c_mat, c_size, b_pos, b_mat, b_size, margin):
    """One cylinder (``c_*``: centre, rotation, ``[radius, half-height, -]``) against one box (``b_*``: centre,
    rotation, half-sizes): ``(dist [4], pos [4, 3], normal [4, 3])`` in world coordinates, the normal from the
    cylinder to the box; unused slots have distance ``_INACTIVE`` (see the module docstring)."""
    # Work in the box's frame.
    p = b_mat.T @ (c_pos - b_pos)
    rot = b_mat.T @ c_mat
    cx, cy, a = rot[:, 0], rot[:, 1], rot[:, 2]
    r, h = c_size[0], c_size[1]
    s = b_size
    corners = _SIGNS * s

    # Separating axes (module docstring).
    eye = jnp.eye(3)
    edge_start, edge_dir = _EDGE_START * s, _EDGE_DIR * s
    on_edge, on_axis = _closest_on_segments(edge_start, edge_dir, (p - h * a)[None], (2 * h * a)[None])
    to_edge = on_edge - on_axis
    to_corner = corners - p
    # where each edge crosses each cap's plane (clamped to the edge): an edge beside the side line, tilted, is
    # deepest there
    height = jnp.sum((edge_start - p) * a, -1)
    rate = edge_dir @ a
    cross_t = jnp.clip((jnp.stack([-h, h])[:, None] - height) / jnp.where(jnp.abs(rate) > _EPS, rate, _EPS), 0, 1)
    to_cap_crossing = (edge_start + cross_t[..., None] * edge_dir - p).reshape(-1, 3)
    radial = lambda w: w - jnp.sum(w * a, -1, keepdims=True) * a  # noqa: E731
    # an edge across a cap's rim: perpendicular to the edge and to the rim where the edge crosses the cap's plane
    rim_tangent = jnp.cross(a, radial(to_cap_crossing))
    across_rim = jnp.cross(jnp.tile(edge_dir, (2, 1)), rim_tangent)
    axes, norms = _unit(jnp.concatenate([eye, a[None], jnp.cross(a[None], eye), radial(to_edge),
                                         radial(to_corner), radial(to_cap_crossing), across_rim]))
    axes = jnp.where((axes @ -p)[:, None] < 0, -axes, axes)  # from the cylinder towards the box
    au = axes @ a
    overlap = axes @ p + h * jnp.abs(au) + r * jnp.sqrt(jnp.maximum(1 - au * au, 0)) + jnp.abs(axes) @ s
    overlap = jnp.where(norms > 1e-6, overlap, jnp.inf)
    best = jnp.argmin(overlap)
    n, depth = axes[best], overlap[best]

    # The two features facing each other along n.
    an = a @ n
    sig = jnp.where(an >= 0, 1.0, -1.0)
    towards, _ = _unit(n - an * a)  # in the cap's plane, towards the box
    j = jnp.argmax(jnp.abs(n))
    f = -jnp.sign(n[j]) * eye[j]  # outward normal of the box face facing the cylinder
    face_level = s[j]  # f @ x == face_level on that face
    ij = jnp.asarray(_OTHER)[j]
    half = s[ij]
    box_face = jnp.abs(n[j]) >= FACE_TOL

    # Cap on a face: the cap's corners inside the face, the face's corners inside the cap, and the crossings of
    # their edges, all on the face's plane; each one's depth is its distance behind the cap's plane.
    cap_normal = sig * a
    cap_centre = p + sig * h * a
    angles = 2 * jnp.pi * jnp.arange(CAP_SIDES) / CAP_SIDES
    cap = cap_centre + r * (jnp.cos(angles)[:, None] * cx + jnp.sin(angles)[:, None] * cy)
    cap2 = cap[:, ij]
    tol = 1e-9 + 1e-6 * jnp.max(s)
    in_face = jnp.all(jnp.abs(cap2) <= half + tol, -1)
    face2 = jnp.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * half
    cap_edges = jnp.roll(cap2, -1, axis=0) - cap2
    turn = _cross2(cap_edges[None], face2[:, None] - cap2[None])  # [4 face corners, 16 cap edges]
    orient = jnp.sign(jnp.sum(_cross2(cap2, jnp.roll(cap2, -1, axis=0))))  # the projected cap's winding
    in_cap = jnp.all(turn * orient >= -tol * r, -1)
    face_edges = jnp.roll(face2, -1, axis=0) - face2
    denom = _cross2(cap_edges[:, None], face_edges[None])  # [16, 4]
    rel = face2[None] - cap2[:, None]
    t_cap = _cross2(rel, face_edges[None]) / jnp.where(jnp.abs(denom) > _EPS, denom, 1.0)
    t_face = _cross2(rel, cap_edges[:, None]) / jnp.where(jnp.abs(denom) > _EPS, denom, 1.0)
    crossing_ok = (jnp.abs(denom) > _EPS) & (t_cap >= 0) & (t_cap <= 1) & (t_face >= 0) & (t_face <= 1)
    crossing = (cap2[:, None] + t_cap[..., None] * cap_edges[:, None]).reshape(-1, 2)
    q = jnp.concatenate([cap2, face2, crossing])
    q_ok = jnp.concatenate([in_face, in_cap, crossing_ok.reshape(-1)])
    on_plane = jnp.zeros((q.shape[0], 3)).at[:, ij].set(q).at[:, j].set(f[j] * face_level)
    q_dist = (on_plane - cap_centre) @ cap_normal
    q_ok = q_ok & (q_dist <= margin)
    pick = _largest_quad(q, q_ok)
    cap_dist = jnp.where(q_ok[pick], q_dist[pick], _INACTIVE)
    cap_pos = on_plane[pick] + 0.5 * q_dist[pick][:, None] * f
    cap_case = box_face & (jnp.abs(an) >= FACE_TOL) & (cap_normal @ f < -FACE_TOL) & jnp.any(q_ok)

    # Side on a face: the side line facing the box, clipped to the face; each end's depth below the face.
    line0 = p + r * towards - h * a
    line = 2 * h * a
    l0, dl = line0[ij], line[ij]
    safe = jnp.where(jnp.abs(dl) > _EPS, dl, 1.0)
    t_lo = jnp.where(jnp.abs(dl) > _EPS, jnp.minimum((-half - l0) / safe, (half - l0) / safe), -jnp.inf)
    t_hi = jnp.where(jnp.abs(dl) > _EPS, jnp.maximum((-half - l0) / safe, (half - l0) / safe), jnp.inf)
    inside = (jnp.abs(dl) > _EPS) | (jnp.abs(l0) <= half + tol)
    t0, t1 = jnp.maximum(jnp.max(t_lo), 0.0), jnp.minimum(jnp.min(t_hi), 1.0)
    ends = line0 + jnp.stack([t0, t1])[:, None] * line
    end_dist = ends @ f - face_level
    end_ok = jnp.all(inside) & (t0 <= t1) & (end_dist <= margin)
    side_dist, side_pos = _clipped_ends(ends - 0.5 * end_dist[:, None] * f, end_dist, end_ok,
                                        jnp.stack([t0 > 0, t1 < 1]))
    side_case = box_face & (jnp.abs(an) <= EDGE_TOL) & (jnp.abs(a @ f) <= EDGE_TOL) & jnp.any(end_ok)

    # The box's corner or edge facing the cylinder (an edge along the one axis nearly perpendicular to n).
    box_small = jnp.abs(n) <= EDGE_TOL
    corner = -jnp.where(n >= 0, 1.0, -1.0) * s
    edge_axis = jnp.argmax(box_small)
    edge_a = corner.at[edge_axis].set(-s[edge_axis])
    edge_d = (2 * s[edge_axis]) * eye[edge_axis]

    # A box edge across a cap: the edge clipped to the cap polygon (in the cap's plane); each end's depth behind
    # the cap's plane.
    plane = jnp.stack([cx, cy])  # the cap's in-plane axes
    u0, du = plane @ (edge_a - cap_centre), plane @ edge_d
    corners2 = r * jnp.stack([jnp.cos(angles), jnp.sin(angles)], -1)  # counter-clockwise in (cx, cy)
    sides2 = jnp.roll(corners2, -1, axis=0) - corners2
    num, den = _cross2(sides2, u0 - corners2), _cross2(sides2, jnp.broadcast_to(du, sides2.shape))
    bound = -num / jnp.where(jnp.abs(den) > _EPS, den, 1.0)
    e_t0 = jnp.maximum(jnp.max(jnp.where(den > _EPS, bound, -jnp.inf)), 0.0)
    e_t1 = jnp.minimum(jnp.min(jnp.where(den < -_EPS, bound, jnp.inf)), 1.0)
    e_inside = jnp.all((jnp.abs(den) > _EPS) | (num >= -tol * r))
    e_ends = edge_a + jnp.stack([e_t0, e_t1])[:, None] * edge_d
    e_dist = (e_ends - cap_centre) @ cap_normal
    e_ok = e_inside & (e_t0 <= e_t1) & (e_dist <= margin)
    edge_dist, edge_pos = _clipped_ends(e_ends - 0.5 * e_dist[:, None] * cap_normal, e_dist, e_ok,
                                        jnp.stack([e_t0 > 0, e_t1 < 1]))
    edge_case = ((jnp.sum(box_small) == 1) & (jnp.abs(an) >= FACE_TOL) & (jnp.abs(a[edge_axis]) <= EDGE_TOL)
                 & jnp.any(e_ok))

    # One point: at the cylinder's rim point if it is one; else at the box's corner if it is one; else, for a box
    # edge along the side line, at the deeper end of the stretch they share (where EPA stops; parallel within 1e-6
    # rad, its middle); else midway between the closest points of the cylinder's feature (side line or cap centre)
    # and the box's edge.
    rim = jnp.abs(an) > EDGE_TOL
    rim_point = p + sig * h * a + r * towards
    feat_a = jnp.where(rim, cap_centre, line0)
    feat_d = jnp.where(rim, jnp.zeros(3), line)
    on_box, on_cyl = _closest_on_segments(edge_a, edge_d, feat_a, feat_d)
    along = jnp.abs(a[edge_axis]) >= FACE_TOL
    shared = (jnp.stack([line0, line0 + line]) - edge_a) @ edge_d / jnp.maximum(edge_d @ edge_d, _EPS)
    u_ends = jnp.clip(jnp.stack([jnp.min(shared), jnp.max(shared)]), 0.0, 1.0)
    stretch = edge_a + u_ends[:, None] * edge_d  # the box edge where it runs beside the side line
    outward, rho = _unit(radial(stretch - p))
    deep = r - rho
    deeper = jnp.where(deep[1] > deep[0], 1, 0)
    tie = jnp.abs(deep[1] - deep[0]) <= 1e-6 * 2 * h  # within 1e-6 rad of parallel: the middle
    parallel_pos = jnp.where(tie, jnp.mean(stretch + 0.5 * deep[:, None] * outward, 0),
                             stretch[deeper] + 0.5 * deep[deeper] * outward[deeper])
    # (A cap within the face tolerance of a box face whose 16-gon has no corner deep enough has only its rim point:
    # the box offers a face, not a corner.)
    one_pos = jnp.where(
        rim & (~(jnp.abs(an) >= FACE_TOL) | (jnp.sum(box_small) == 2)), rim_point - 0.5 * depth * n,
        jnp.where(jnp.sum(box_small) == 0, corner + 0.5 * depth * n,
                  jnp.where(~rim & along, parallel_pos, 0.5 * (on_box + on_cyl))))
    one_dist = jnp.concatenate([jnp.where(-depth <= margin, -depth, _INACTIVE)[None], jnp.full(3, _INACTIVE)])
    one_pos = jnp.concatenate([one_pos[None], jnp.zeros((3, 3))])

    dist = jnp.where(cap_case, cap_dist, jnp.where(side_case, side_dist, jnp.where(edge_case, edge_dist, one_dist)))
    pos = jnp.where(cap_case, cap_pos, jnp.where(side_case, side_pos, jnp.where(edge_case, edge_pos, one_pos)))
    normal = jnp.where(cap_case | side_case, -f, jnp.where(edge_case, cap_normal, n))
    return dist, pos @ b_mat.T + b_pos, jnp.broadcast_to(b_mat @ normal, (NCON, 3))


def cylinder_box(m, d, key, geom: jax.Array):
    """MJX collision function for (cylinder, box) pairs ``geom [P, 2]`` (cylinder first, as MJX orders them):
    ``(dist [P*4], pos [P*4, 3], frame [P*4, 3, 3])``. The pair's margin is the sum of the two geoms' (MJX's rule)."""
    del key
    g1, g2 = geom[:, 0], geom[:, 1]
    margin = m.geom_margin[g1] + m.geom_margin[g2]
    dist, pos, normal = jax.vmap(collide_one)(d.geom_xpos[g1], d.geom_xmat[g1], m.geom_size[g1], d.geom_xpos[g2],
                                              d.geom_xmat[g2], m.geom_size[g2], margin)
    frame = jax.vmap(mjx_math.make_frame)(normal.reshape(-1, 3))
    return dist.reshape(-1), pos.reshape(-1, 3), frame


cylinder_box.ncon = NCON
