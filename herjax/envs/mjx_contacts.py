"""MJX's contact points made like C MuJoCo's where MJX's own differ: each point once, box-box points within the
margin, and box-box points midway between the surfaces.

Three things MJX 3.17's JAX collision functions do that C MuJoCo does not, all seen on FetchPush's block
(``python -m benchmarks.mjx_push_gap`` measures what they do to the block's path):

* **Repeated points.** A collision function that returns a fixed number of points (box-box and plane-box: 4)
  fills the slots it has no distinct point for with copies of one it has. When a tilting block touches the table
  at 3 corners (or 2, or 1), one corner is then a contact 2 or 3 times over: its normal and friction rows count
  double or triple in the constraint solver, and the block turns about that corner. C MuJoCo emits each point once.
  Here a point that repeats an earlier active point of the same geom pair is made inactive (distance 1 m, past
  any margin), so it adds no constraint rows.
* **Box-box points within the margin.** MJX's constraint rows honour a contact margin (a contact acts from
  ``dist < margin``), but its ``box_box`` emits only penetrating points, so a box with a margin (Push's fingers:
  1 mm) has no contact until it penetrates, then one that pushes it out to the margin, then none again. C MuJoCo
  emits every point within the margin. Here each box of a box-box pair is grown by its own margin for the test
  (MJX's pair margin is their sum, C MuJoCo's their maximum: they agree where one of the two is 0, as for every
  Fetch pair that can touch), and the points' distances get the margins back. Growing a box moves its
  corners out by up to ``margin * sqrt(3)``, so near a corner or an edge a point within the margin is found up to
  that much early (0.7 mm for Push's fingers), and points at the rim of a face sit up to the margin further out.
* **Where a box-box point sits.** C MuJoCo puts a contact midway between the two surfaces; MJX's ``box_box``
  leaves it on the reference face of the separating axis. A finger pushing the block then presses ~1 mm off C
  MuJoCo's point, which turns the block differently. Here each box-box point moves along the normal to midway.

And one thing MJX lacks: a cylinder-box test, which ``herjax.envs.mjx_cylinder_box`` provides (FetchSlide's puck).

All of it acts at trace time: ``unique_midpoint_contacts()`` swaps MJX's collision functions for wrapped ones (and
adds the cylinder-box one) while the block inside it traces, and puts MJX's own back afterwards, so other MJX users
in the process are untouched; ``mjx.put_model`` and ``mjx.make_data`` of a model with cylinder-box pairs must run
inside it too. Everything else (the pairs, the points MJX finds, the normals, the solver) is MJX's own.

    with unique_midpoint_contacts():
        d = mjx.forward(m, d)          # inside jit: traced with the wrapped collision functions
"""

from __future__ import annotations

from typing import Callable, ContextManager

import jax
import jax.numpy as jnp
from mujoco.mjx._src import collision_driver
from mujoco.mjx._src.types import GeomType

from herjax import _swap
from herjax.envs import mjx_cylinder_box

__all__ = ["unique_midpoint_contacts", "wrap"]

# A repeated point is bit-for-bit a copy; 1 micrometre also catches one computed twice along another path.
_SAME_POINT_SQ = 1e-12
_INACTIVE = 1.0  # MJX's own distance for an unused slot


def _in_box_frame(d, m, g: jax.Array, pos: jax.Array) -> tuple[jax.Array, ...]:
    """Box geoms ``g [P]``'s centres, rotations and half-sizes, and points ``pos [P, n, 3]`` in their frames."""
    centre, rot, size = d.geom_xpos[g], d.geom_xmat[g], m.geom_size[g]
    return centre, rot, size, jnp.einsum("pji,pkj->pki", rot, pos - centre[:, None, :])


def _box_surface_distance(d, m, g: jax.Array, pos: jax.Array) -> jax.Array:
    """``|signed distance|`` of points ``pos [P, n, 3]`` to the surface of box geoms ``g [P]`` (0 on it)."""
    _, _, size, local = _in_box_frame(d, m, g, pos)
    return jnp.abs(jnp.max(jnp.abs(local) - size[:, None, :], axis=-1))


def wrap(func: Callable, types: tuple) -> Callable:
    """MJX collision function ``func`` (``(m, d, key, geom [P, 2]) -> (dist [P*n], pos [P*n, 3], frame [P*n, 3,
    3])``, ``n = func.ncon``) with repeated points made inactive and, for box-box, points within the margin and at
    mid-penetration (see the module docstring)."""
    n = func.ncon
    box_box = types == (GeomType.BOX, GeomType.BOX)

    def collide(m, d, key, geom):
        # Box-box: each box grown by its margin, so that a point within the pair's margin (MJX's: the sum) shows as
        # a penetration of the grown boxes; its distance then gets the margins back.
        grown = m.replace(geom_size=m.geom_size + m.geom_margin[:, None]) if box_box else m
        dist, pos, frame = func(grown, d, key, geom)
        pairs = geom.shape[0]
        dist, pos = dist.reshape(pairs, n), pos.reshape(pairs, n, 3)
        same = jnp.sum((pos[:, :, None, :] - pos[:, None, :, :]) ** 2, axis=-1) < _SAME_POINT_SQ
        earlier = jnp.tril(jnp.ones((n, n), bool), k=-1)[None]
        repeated = jnp.any(earlier & same & (dist < _INACTIVE)[:, None, :], axis=2)
        active = (dist < _INACTIVE) & ~repeated
        if box_box:
            # The normal points from geom 1 to geom 2. A point on grown box 1's face: box 1's own surface is its
            # margin m1 back along -normal, box 2's is dist + m2 along it; on grown box 2's face, box 2's surface is
            # m2 along the normal and box 1's -dist - m1 back. The contact goes midway between the two.
            normal = frame.reshape(pairs, n, 3, 3)[:, :, 0, :]
            m1, m2 = (m.geom_margin[geom[:, i]][:, None] for i in (0, 1))
            on_first = _box_surface_distance(d, grown, geom[:, 0], pos) <= _box_surface_distance(
                d, grown, geom[:, 1], pos)
            shift = (jnp.where(on_first, dist, -dist) + m2 - m1) / 2
            pos = pos + jnp.where(active, shift, 0.0)[..., None] * normal
            dist = dist + m1 + m2
            slack = jnp.abs(dist)[..., None] / 2 + 1e-9
            for g in (geom[:, 0], geom[:, 1]):
                centre, rot, size, local = _in_box_frame(d, m, g, pos)
                local = jnp.clip(local, -(size[:, None, :] + slack), size[:, None, :] + slack)
                pos = centre[:, None, :] + jnp.einsum("pij,pkj->pki", rot, local)
        dist = jnp.where(active, dist, _INACTIVE)
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
