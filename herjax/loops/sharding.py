"""Devices, in one place for both loops: a 1-D mesh over the run's devices, ``shard_map`` over it, per-device keys,
and the layout of a ``TrainState`` (one field per device, the rest replicated).

Each device runs the same program on its own share of the envs (and, off-policy, its own replay buffer, as
each baselines MPI worker keeps its own); agents average gradients and pool normaliser statistics over ``AXIS``.
In a multi-process run (``herjax.runs.hosts``) the mesh spans the devices of every process, each process taking an
equal number of its own, so the program is the one a single process runs on as many devices.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXIS = "devices"
# The ``jax.vmap`` axis of a run's seeds (``num_seeds``): one compiled program trains them all.
SEEDS = "seeds"


def mesh_devices(num_devices: int) -> list:
    """The run's devices: the first ``num_devices / P`` local devices of each of the ``P`` processes, in process order
    (one process: its first ``num_devices``). Raises ``ValueError`` (one line) when the processes cannot give that
    many in equal shares."""
    by_process: dict[int, list] = {}
    for device in sorted(jax.devices(), key=lambda d: (d.process_index, d.id)):
        by_process.setdefault(device.process_index, []).append(device)
    processes, fewest = len(by_process), min(len(ds) for ds in by_process.values())
    if processes == 1 and not 1 <= num_devices <= fewest:
        raise ValueError(f"num_devices={num_devices}, but {fewest} local devices exist")
    if processes > 1 and (num_devices % processes or not 1 <= num_devices // processes <= fewest):
        raise ValueError(f"num_devices={num_devices}, but the run's {processes} processes have {fewest} device(s) "
                         f"each: give a multiple of {processes} up to {processes * fewest}")
    return [d for ds in by_process.values() for d in ds[:num_devices // processes]]


def make_mesh(num_devices: int) -> Mesh:
    """A 1-D mesh ``(AXIS,)`` over ``mesh_devices(num_devices)``: global devices, over every process of the run."""
    return Mesh(np.asarray(mesh_devices(num_devices)), (AXIS,))


def shard(fn: Callable, mesh: Mesh, in_specs: Any, out_specs: Any) -> Callable:
    """``jax.shard_map`` of ``fn`` over ``mesh``.

    ``check_vma=False``: the env code (``vec``'s ``lax.cond``, the C engine's host callback) is not written
    for shard_map's varying-axis types. Replication of the ``P()`` outputs holds by construction (every such value
    is a function of replicated inputs and of psum/pmean results); the multi-device tests check it.
    """
    return jax.shard_map(fn, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)


def named(mesh: Mesh, specs: Any) -> Any:
    """A pytree (prefix) of ``PartitionSpec``s as ``NamedSharding``s on ``mesh``."""
    return jax.tree.map(lambda spec: NamedSharding(mesh, spec), specs, is_leaf=lambda x: isinstance(x, P))


def _put_leaf(x: Any, target: jax.sharding.Sharding) -> Any:
    """One leaf of ``put``."""
    if target.is_fully_addressable or isinstance(x, jax.core.Tracer):
        return jax.device_put(x, target)
    if isinstance(x, jax.Array) and x.sharding == target:
        return x
    if isinstance(x, jax.Array) and not x.is_fully_addressable:  # another layout of the same global array
        return jax.jit(lambda y: y, out_shardings=target)(x)
    # Another process's devices cannot take a local array (no cross-host transfers): each process places the host
    # copy of the value, which is the same on every process. Typed keys go through their raw data.
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        data = jax.device_put(np.asarray(jax.random.key_data(x)), target)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
    return jax.device_put(np.asarray(x), target)


def put(tree: Any, shardings: Any) -> Any:
    """``jax.device_put(tree, shardings)`` (``shardings`` a pytree prefix of ``tree``) that also works on a mesh of
    several processes, where a local array cannot be sent to another process's devices: it must then hold the same
    value on every process. A no-op for leaves already there."""
    is_sharding = lambda x: isinstance(x, jax.sharding.Sharding)
    return jax.tree.map(lambda sh, sub: jax.tree.map(lambda x: _put_leaf(x, sh), sub), shardings, tree,
                        is_leaf=is_sharding)


def on_mesh(fn: Callable, mesh: Mesh, specs: tuple) -> Callable:
    """``fn`` with its arguments first placed on ``mesh`` as ``specs`` (one pytree prefix of ``PartitionSpec``s
    per argument) say: they may come from elsewhere, e.g. a one-device computation or a restored checkpoint. A
    no-op for arguments already there."""
    shardings = tuple(named(mesh, spec_tree) for spec_tree in specs)

    def placed(*args):
        return fn(*(put(a, sh) for a, sh in zip(args, shardings)))

    return placed


def axis_name(num_devices: int) -> Optional[str]:
    """The device axis name the agents and loops reduce over: ``AXIS``, or ``None`` on one device.

    On one device there is nothing to reduce, and XLA compiles a program with one-device collectives in it
    differently (its float results move by ~1e-8), so a one-device run is exactly the plain program.
    """
    return AXIS if num_devices > 1 else None


def device_index(axis_name: Optional[str]) -> jax.Array:
    """This device's index along ``axis_name`` (0 when ``None``)."""
    return 0 if axis_name is None else jax.lax.axis_index(axis_name)


def device_count(axis_name: Optional[str]) -> int:
    """The number of devices along ``axis_name`` (1 when ``None``)."""
    return 1 if axis_name is None else jax.lax.psum(1, axis_name)


def device_key(key: jax.Array, axis_name: Optional[str]) -> jax.Array:
    """This device's own key from a replicated one: ``fold_in(key, device index)``."""
    return jax.random.fold_in(key, device_index(axis_name))


def _with_device_axis(state: Any, per_device: str) -> Any:
    return state.replace(**{per_device: jax.tree.map(lambda x: x[None], getattr(state, per_device))})


def strip_device_axis(fn: Callable, per_device: str) -> Callable:
    """``fn(state, ...)`` seeing field ``per_device`` without its device axis (``[1, ...]`` inside ``shard_map``);
    the device axis is put back on the state it returns (alone or first of a tuple)."""

    def wrapped(state: Any, *args):
        out = fn(state.replace(**{per_device: jax.tree.map(lambda x: x[0], getattr(state, per_device))}), *args)
        if isinstance(out, tuple):
            return (_with_device_axis(out[0], per_device),) + tuple(out[1:])
        return _with_device_axis(out, per_device)

    return wrapped


def add_device_axis(fn: Callable, per_device: str) -> Callable:
    """``fn(...) -> state`` with a device axis added to field ``per_device`` of the state it returns."""
    return lambda *args: _with_device_axis(fn(*args), per_device)
