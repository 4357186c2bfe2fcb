"""MJX's contact points made like C MuJoCo's where MJX's own differ: each point once, and box-box contacts made as
C MuJoCo 4.0.1 makes them.

What MJX 3.17's JAX collision functions do that C MuJoCo does not, all seen on FetchPush's block
(``python -m benchmarks.mjx_one_step`` and ``python -m benchmarks.mjx_push_gap`` measure what they do to it):

* **Repeated points.** A collision function that returns a fixed number of points (box-box and plane-box: 4)
  fills the slots it has no distinct point for with copies of one it has. When a tilting block touches the table
  at 3 corners (or 2, or 1), one corner is then a contact 2 or 3 times over: its normal and friction rows count
  double or triple in the constraint solver, and the block turns about that corner. C MuJoCo emits each point once.
  Here a point that repeats an earlier active point of the same geom pair is made inactive (distance 1 m, past
  any margin), so it adds no constraint rows.
* **Box-box.** MJX's ``box_box`` differs from C MuJoCo's in five ways: it keeps only penetrating points, so a box
  with a margin (Push's fingers: 1 mm) has no contact until it penetrates, then one that pushes it out to the
  margin, then none again; it puts a point on the reference face, not midway between the surfaces, so a finger
  pushing the block presses ~1 mm off C MuJoCo's point; it clips against the face the separating axis's sign
  names, not the face whose normal the axis is (a block on an edge, 45 degrees to the table, got depths 1.41 times
  too large); on an edge-edge axis it still clips faces, where C MuJoCo makes one point, midway between the closest
  points of the two edges; and its choice between a face axis and an edge axis that separates by a hair more (a
  finger nearly flat on the block) follows other rules. Here ``box_box`` replaces it, made as C MuJoCo 4.0.1 makes
  box-box contacts (probed: ``tests/test_mjx_contacts.py`` compares the two in 240 random poses of a finger on the
  block): the separating axis is the one of the 15 that separates most, an edge axis winning only by more than
  1e-6 of its depth and giving way to a face axis within about 8 degrees of it unless deeper by 5 percent of the
  face's depth; on a face axis the other box's most opposed face is clipped against that face (MJX's clipping)
  and its vertices closer than the pair's margin are the points, all of them if at most 4 (else 4 spanning a large
  area, the deepest among them), each midway between the faces; on an edge axis, one point. MJX's pair margin is
  the sum of the two geoms', C MuJoCo's their maximum: they agree where one of the two is 0, as for every Fetch
  pair that can touch.

And one thing MJX lacks: a cylinder-box test, which ``herjax.envs.mjx_cylinder_box`` provides (FetchSlide's puck).

All of it acts at trace time: ``unique_midpoint_contacts()`` swaps MJX's collision functions for wrapped ones (and
adds the cylinder-box one) while the block inside it traces, and puts MJX's own back afterwards, so other MJX users
in the process are untouched; ``mjx.put_model`` and ``mjx.make_data`` of a model with cylinder-box pairs must run
inside it too. Everything else (the pairs, the other collision tests, the solver) is MJX's own.

    with unique_midpoint_contacts():
        d = mjx.forward(m, d)          # inside jit: traced with the wrapped collision functions
"""

from __future__ import annotations

import functools
from typing import Callable, ContextManager

import jax
import jax.numpy as jnp
from mujoco.mjx._src import collision_convex, collision_driver
from mujoco.mjx._src import math as mjx_math
from mujoco.mjx._src.types import GeomType

from herjax import _swap
from herjax.envs import mjx_cylinder_box

__all__ = ["box_box", "unique_midpoint_contacts", "wrap"]

# A repeated point is bit-for-bit a copy; 1 micrometre also catches one computed twice along another path.
_SAME_POINT_SQ = 1e-12
_INACTIVE = 1.0  # MJX's own distance for an unused slot


def _repeats(pos: jax.Array, active: jax.Array) -> jax.Array:
    """Which of the points ``pos [..., n, 3]`` repeat an earlier ``active [..., n]`` one."""
    same = jnp.sum((pos[..., :, None, :] - pos[..., None, :, :]) ** 2, axis=-1) < _SAME_POINT_SQ
    return jnp.any(jnp.tril(same, k=-1) & active[..., None, :], axis=-1)


_OTHER_AXES = ((1, 2), (2, 0), (0, 1))  # a box face along axis k is spanned by these, in this order: u x v = e_k
_SQUARE = jnp.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
_EDGE_BIAS = 1e-6  # an edge axis must separate by this much more (relative) than the best face axis
_SUBSTITUTE_DOT = 0.99  # an edge axis this aligned with the best face axis gives way to it ...
_SUBSTITUTE_SLACK = 0.05  # ... unless it separates by this fraction of the face's depth more


def _face(centre, rot, size, k, side):
    """A box's face along axis ``k`` on ``side`` (+-1): its corners ``[4, 3]``, counter-clockwise about its
    outward normal (as MJX's clipping wants), and that normal."""
    def along(k):
        u, v = _OTHER_AXES[k]
        middle = centre + side * size[k] * rot[:, k]
        corners = middle + _SQUARE[:, :1] * size[u] * rot[:, u] + _SQUARE[:, 1:] * size[v] * rot[:, v]
        return jnp.where(side > 0, corners, corners[::-1]), side * rot[:, k]

    return jax.lax.switch(k, [functools.partial(along, k) for k in range(3)])


def _face_points(ref, ref_normal, incident, incident_normal, margin):
    """The incident face clipped against the reference face (MJX's clipping), its distinct vertices closer than
    ``margin`` to the reference plane, each midway between the two faces: all of them if at most 4, else 4 spanning a
    large area (MJX's choice) with the deepest among them."""
    clipped, inside = collision_convex._clip(ref, incident, ref_normal, incident_normal)
    depth = (ref[0] - clipped) @ ref_normal
    keep = inside & (depth > -margin)
    keep = keep & ~_repeats(clipped, keep)
    in_order = jnp.argsort(~keep, stable=True)[:4]
    spread = collision_convex._manifold_points(clipped, keep, ref_normal)
    deepest = jnp.argmax(jnp.where(keep, depth, -jnp.inf))
    spread = jnp.where(jnp.any(spread == deepest), spread, spread.at[3].set(deepest))
    pick = jnp.where(jnp.sum(keep) <= 4, in_order, spread)
    dist = jnp.where(keep[pick], -depth[pick], _INACTIVE)
    return dist, clipped[pick] + depth[pick, None] / 2 * ref_normal


def _edge_point(c1, r1, s1, c2, r2, s2, i, j, normal):
    """The distance and midpoint of the closest points of box 1's edge along its axis ``i`` farthest along
    ``normal`` and box 2's edge along its axis ``j`` farthest against it."""
    side = lambda x: jnp.where(x >= 0, 1.0, -1.0)  # noqa: E731
    a1 = c1 + r1 @ jnp.where(jnp.arange(3) != i, side(r1.T @ normal) * s1, 0.0)
    a2 = c2 - r2 @ jnp.where(jnp.arange(3) != j, side(r2.T @ normal) * s2, 0.0)
    d1, d2 = r1[:, i], r2[:, j]
    cos, gap = d1 @ d2, a2 - a1
    along1, along2 = d1 @ gap, d2 @ gap
    denom = 1 - cos * cos
    t1 = jnp.where(denom > 1e-12, (along1 - cos * along2) / jnp.where(denom > 1e-12, denom, 1.0), 0.0)
    t1 = jnp.clip(t1, -s1[i], s1[i])
    t2 = jnp.clip(cos * t1 - along2, -s2[j], s2[j])
    t1 = jnp.clip(along1 + cos * t2, -s1[i], s1[i])
    p1, p2 = a1 + t1 * d1, a2 + t2 * d2
    return (p2 - p1) @ normal, (p1 + p2) / 2


def _box_box_pair(c1, r1, s1, c2, r2, s2, margin):
    """One box pair as C MuJoCo 4.0.1 collides it: ``(dist [4], pos [4, 3], normal [3])``, the normal from box 1
    to box 2, unused slots at distance ``_INACTIVE``."""
    apart_by = c2 - c1
    rot = r1.T @ r2
    face_sep = jnp.concatenate([jnp.abs(r1.T @ apart_by) - s1 - jnp.abs(rot) @ s2,
                                jnp.abs(r2.T @ apart_by) - s2 - jnp.abs(rot).T @ s1])
    code_face = jnp.argmax(face_sep)
    sep_face = face_sep[code_face]
    axes = jnp.cross(r1.T[:, None, :], r2.T[None, :, :]).reshape(9, 3)
    norm2 = jnp.sum(axes * axes, -1)
    # nearly parallel edges: the cross product is rounding noise (the face axes cover them)
    usable = norm2 > (1e-16 if axes.dtype == jnp.float64 else 1e-7)
    axes = axes / jnp.sqrt(jnp.where(usable, norm2, 1.0))[:, None]
    edge_sep = jnp.where(usable, jnp.abs(axes @ apart_by) - jnp.abs(axes @ r1) @ s1 - jnp.abs(axes @ r2) @ s2,
                         -jnp.inf)
    apart = jnp.maximum(sep_face, jnp.max(edge_sep)) > margin

    def take_edge(best, k):
        sep_best, code = best
        take = (edge_sep[k] - _EDGE_BIAS * jnp.abs(edge_sep[k]) > sep_best) & (edge_sep[k] > sep_face)
        return (jnp.where(take, edge_sep[k], sep_best), jnp.where(take, 6 + k, code)), None

    (sep_best, code), _ = jax.lax.scan(take_edge, (sep_face, code_face), jnp.arange(9))
    edge = jnp.maximum(code - 6, 0)
    axis = axes[edge]
    face_axis = jnp.concatenate([r1.T, r2.T])[code_face]
    code = jnp.where((code >= 6) & (jnp.abs(axis @ face_axis) > _SUBSTITUTE_DOT)
                     & (sep_best < sep_face + _SUBSTITUTE_SLACK * jnp.abs(sep_face) + 1e-15), code_face, code)

    # an edge against an edge: one point
    edge_normal = axis * jnp.where(axis @ apart_by >= 0, 1.0, -1.0)
    e_dist, e_pos = _edge_point(c1, r1, s1, c2, r2, s2, edge // 3, edge % 3, edge_normal)
    e_dist = jnp.concatenate([jnp.where(e_dist <= margin, e_dist, _INACTIVE)[None], jnp.full(3, _INACTIVE)])
    e_pos = jnp.concatenate([e_pos[None], jnp.zeros((3, 3), e_pos.dtype)])

    # a face (the reference, of the box whose face axis won) against the other box's most opposed face
    ref_first = code < 3
    pick = lambda a, b: jnp.where(ref_first, a, b)  # noqa: E731
    ref_c, ref_r, ref_s, inc_c, inc_r, inc_s = pick(c1, c2), pick(r1, r2), pick(s1, s2), pick(c2, c1), pick(
        r2, r1), pick(s2, s1)
    k = jnp.minimum(code, 5) % 3
    ref, ref_normal = _face(ref_c, ref_r, ref_s, k, jnp.where(ref_r[:, k] @ (inc_c - ref_c) >= 0, 1.0, -1.0))
    facing = inc_r.T @ ref_normal
    kinc = jnp.argmax(jnp.abs(facing))
    incident, incident_normal = _face(inc_c, inc_r, inc_s, kinc, jnp.where(facing[kinc] > 0, -1.0, 1.0))
    f_dist, f_pos = _face_points(ref, ref_normal, incident, incident_normal, margin)

    on_edge = code >= 6
    dist = jnp.where(apart, _INACTIVE, jnp.where(on_edge, e_dist, f_dist))
    pos = jnp.where(on_edge, e_pos, f_pos)
    normal = jnp.where(on_edge, edge_normal, jnp.where(ref_first, ref_normal, -ref_normal))
    return dist, pos, normal


def box_box(m, d, key, geom: jax.Array):
    """MJX collision function for box pairs ``geom [P, 2]``, made as C MuJoCo 4.0.1 makes them (module
    docstring): ``(dist [P*4], pos [P*4, 3], frame [P*4, 3, 3])``. The pair's margin is the sum of the two geoms'
    (MJX's rule)."""
    del key
    g1, g2 = geom[:, 0], geom[:, 1]
    margin = m.geom_margin[g1] + m.geom_margin[g2]
    dist, pos, normal = jax.vmap(_box_box_pair)(d.geom_xpos[g1], d.geom_xmat[g1], m.geom_size[g1], d.geom_xpos[g2],
                                                d.geom_xmat[g2], m.geom_size[g2], margin)
    frame = jax.vmap(mjx_math.make_frame)(jnp.repeat(normal, 4, axis=0))
    return dist.reshape(-1), pos.reshape(-1, 3), frame


box_box.ncon = 4


def wrap(func: Callable, types: tuple) -> Callable:
    """MJX collision function ``func`` (``(m, d, key, geom [P, 2]) -> (dist [P*n], pos [P*n, 3], frame [P*n, 3,
    3])``, ``n = func.ncon``) with repeated points made inactive; for box-box, herjax's ``box_box`` in its place
    (see the module docstring)."""
    if types == (GeomType.BOX, GeomType.BOX):
        func = box_box
    n = func.ncon

    def collide(m, d, key, geom):
        dist, pos, frame = func(m, d, key, geom)
        pairs = geom.shape[0]
        dist, pos = dist.reshape(pairs, n), pos.reshape(pairs, n, 3)
        active = dist < _INACTIVE
        dist = jnp.where(active & ~_repeats(pos, active), dist, _INACTIVE)
        return dist.reshape(-1), pos.reshape(-1, 3), frame

    collide.ncon = n
    return collide


def _wrap_collision_table() -> Callable[[], None]:
    """Puts ``wrap``ped functions in MJX's collision table (every one returning several points) and herjax's
    cylinder-box test (``herjax.envs.mjx_cylinder_box``, which fills its slots as C MuJoCo does: no wrap); returns
    the undo."""
    table = collision_driver._COLLISION_FUNC
    own = dict(table)
    for types, func in own.items():
        if getattr(func, "ncon", 1) > 1:
            table[types] = wrap(func, types)
    table[(GeomType.CYLINDER, GeomType.BOX)] = mjx_cylinder_box.cylinder_box

    def restore() -> None:
        table.clear()
        table.update(own)

    return restore


_wrapped_table = _swap.nested_swap(_wrap_collision_table)


def unique_midpoint_contacts() -> ContextManager[None]:
    """While the block runs (i.e. traces), MJX collides with ``wrap``ped functions (every one returning several
    points); MJX's own are restored when the outermost such block ends. Blocks nest; other threads wait."""
    return _wrapped_table()
