"""MJX's contact points made like C MuJoCo's where MJX's own differ: each point once, box-box points within the
margin, clipped against the face the separating axis belongs to, and midway between the surfaces.

Four things MJX 3.17's JAX collision functions do that C MuJoCo does not, all seen on FetchPush's block
(``python -m benchmarks.mjx_push_gap`` measures what they do to the block's path):

* **Repeated points.** A collision function that returns a fixed number of points (box-box and plane-box: 4)
  fills the slots it has no distinct point for with copies of one it has. When a tilting block touches the table
  at 3 corners (or 2, or 1), one corner is then a contact 2 or 3 times over: its normal and friction rows count
  double or triple in the constraint solver, and the block turns about that corner. C MuJoCo emits each point once.
  Here a point that repeats an earlier active point of the same geom pair is made inactive (distance 1 m, past
  any margin), so it adds no constraint rows.
* **Box-box points within the margin.** MJX's constraint rows honour a contact margin (a contact acts from
  ``dist < margin``), but its ``box_box`` keeps only penetrating points, so a box with a margin (Push's fingers:
  1 mm) has no contact until it penetrates, then one that pushes it out to the margin, then none again. C MuJoCo
  emits every point within the margin. Here MJX's own box-box test runs (its separating axis, its reference and
  incident faces, its clipping of the one against the other) and the clipped points closer than the pair's
  margin are kept (MJX's pair margin is the sum of the two geoms', C MuJoCo's their maximum: they agree where one
  of the two is 0, as for every Fetch pair that can touch).
* **Which face is the reference.** MJX measures depths along the normal of the face it clips against, and picks
  that face from the sign of the separating axis, not from the box whose face normal the axis is: a block on an
  edge, 45 degrees to the table, was clipped against its own tilted face, so its depths were 1.41 times too large.
  Here the face whose normal is nearer the axis is the reference (the table's, as C MuJoCo's).
* **Where a box-box point sits.** C MuJoCo puts a contact midway between the two surfaces, along the contact
  normal; MJX's ``box_box`` leaves it on the reference face. A finger pushing the block then presses ~1 mm off C
  MuJoCo's point, which turns the block differently. Here each box-box point goes midway.

The points are MJX's clipping's, so where C MuJoCo's box-box test takes another path they can still differ: C
MuJoCo keeps every clipped point (MJX at most 4), and when an edge-edge axis separates the boxes by a hair less
than a face's (a finger nearly flat on the block) C MuJoCo clips along that axis and may make 1 point where MJX
makes 4 (``python -m benchmarks.mjx_one_step`` measures what is left).

And one thing MJX lacks: a cylinder-box test, which ``herjax.envs.mjx_cylinder_box`` provides (FetchSlide's puck).

All of it acts at trace time: ``unique_midpoint_contacts()`` swaps MJX's collision functions for wrapped ones (and
adds the cylinder-box one) while the block inside it traces, and puts MJX's own back afterwards, so other MJX users
in the process are untouched; ``mjx.put_model`` and ``mjx.make_data`` of a model with cylinder-box pairs must run
inside it too. Everything else (the pairs, the separating axes and normals, the solver) is MJX's own.

    with unique_midpoint_contacts():
        d = mjx.forward(m, d)          # inside jit: traced with the wrapped collision functions
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, ContextManager, Iterator

import jax
import jax.numpy as jnp
from mujoco.mjx._src import collision_convex, collision_driver, mesh
from mujoco.mjx._src import math as mjx_math
from mujoco.mjx._src.collision_types import GeomInfo
from mujoco.mjx._src.types import GeomType

from herjax import _swap
from herjax.envs import mjx_cylinder_box

__all__ = ["unique_midpoint_contacts", "wrap"]

# A repeated point is bit-for-bit a copy; 1 micrometre also catches one computed twice along another path.
_SAME_POINT_SQ = 1e-12
_INACTIVE = 1.0  # MJX's own distance for an unused slot


def _manifold_within(ref, incident, ref_normal, incident_normal, sep_axis, *, margin):
    """MJX's ``_create_contact_manifold`` (the incident face clipped against the reference face, up to 4 of the
    clipped points) keeping every point closer than ``margin`` (MJX's: only penetrating ones), each put midway
    between the two faces (MJX's: on the reference face), and with the reference face the one whose normal is the
    separating axis (MJX picks the face of the box the axis's sign names, which may be a box tilted 45 degrees to
    it: its depths are then measured along that tilt)."""
    swap = jnp.abs(incident_normal @ sep_axis) > jnp.abs(ref_normal @ sep_axis)
    ref, incident = jnp.where(swap, incident, ref), jnp.where(swap, ref, incident)
    ref_normal, incident_normal = (jnp.where(swap, incident_normal, ref_normal),
                                   jnp.where(swap, ref_normal, incident_normal))
    clipped, inside = collision_convex._clip(ref, incident, ref_normal, incident_normal)
    on_ref = collision_convex._project_poly_onto_plane(clipped, ref[0], ref_normal)
    depth = (ref[0] - clipped) @ ref_normal
    keep = inside & (depth > -margin)
    best = collision_convex._manifold_points(on_ref, keep, ref_normal)
    dist = jnp.where(keep[best], -depth[best], _INACTIVE)
    # Midway along the contact normal (the separating axis, which on a near tie of faces can be the incident face's
    # normal): where C MuJoCo puts it.
    outward = sep_axis * jnp.sign(sep_axis @ ref_normal)
    pos = on_ref[best] - depth[best, None] / 2 * outward
    return dist, pos, -jnp.stack([sep_axis] * 4, 0)


@contextlib.contextmanager
def _manifold_swapped(manifold: Callable) -> Iterator[None]:
    own = collision_convex._create_contact_manifold
    collision_convex._create_contact_manifold = manifold
    try:
        yield
    finally:
        collision_convex._create_contact_manifold = own


def _box_box_pair(box1, box2, margin):
    """One pair: MJX's box-box test (its separating axis and reference face) with ``_manifold_within``."""
    with _manifold_swapped(functools.partial(_manifold_within, margin=margin)):
        dist, pos, normal = collision_convex._box_box(box1, box2)
    return dist, pos, jax.vmap(mjx_math.make_frame)(normal)


def _box_box_within_margin(m, d, key, geom):
    """MJX's box-box collision function, with ``_manifold_within`` for the points: every point within the pair's
    margin (MJX's: the sum of the two geoms'), midway between the surfaces."""
    del key
    boxes = [mesh.box(GeomInfo(d.geom_xpos[g], d.geom_xmat[g], m.geom_size[g])) for g in geom.T]
    batched = jax.tree_util.tree_map(lambda _: None, boxes[0]).replace(pos=0, mat=0, size=0, face=0, vert=0)
    margin = m.geom_margin[geom[:, 0]] + m.geom_margin[geom[:, 1]]
    dist, pos, frame = jax.vmap(_box_box_pair, in_axes=(batched, batched, 0))(*boxes, margin)
    return dist.reshape(-1), pos.reshape(-1, 3), frame.reshape(-1, 3, 3)


_box_box_within_margin.ncon = 4


def wrap(func: Callable, types: tuple) -> Callable:
    """MJX collision function ``func`` (``(m, d, key, geom [P, 2]) -> (dist [P*n], pos [P*n, 3], frame [P*n, 3,
    3])``, ``n = func.ncon``) with repeated points made inactive and, for box-box, points within the margin and
    midway between the surfaces (see the module docstring)."""
    n = func.ncon
    if types == (GeomType.BOX, GeomType.BOX):
        func = _box_box_within_margin

    def collide(m, d, key, geom):
        dist, pos, frame = func(m, d, key, geom)
        pairs = geom.shape[0]
        dist, pos = dist.reshape(pairs, n), pos.reshape(pairs, n, 3)
        same = jnp.sum((pos[:, :, None, :] - pos[:, None, :, :]) ** 2, axis=-1) < _SAME_POINT_SQ
        earlier = jnp.tril(jnp.ones((n, n), bool), k=-1)[None]
        repeated = jnp.any(earlier & same & (dist < _INACTIVE)[:, None, :], axis=2)
        dist = jnp.where((dist < _INACTIVE) & ~repeated, dist, _INACTIVE)
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
