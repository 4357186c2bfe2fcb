"""Batched LAPACK on the CPU, one matrix at a time: jaxlib's batched kernels can deadlock a small machine.

jaxlib's CPU LAPACK kernels (``potrf``, ``geqrf``, ...) split a batch over XLA's intra-op thread pool and block
their own pool thread until the parts finish. Two such kernels running at once hold every thread of a 2-core
machine, and the program waits forever, with no CPU time used (native stacks: both ``tf_XLAEigen`` threads in
``jax::ParallelBatchMap`` -> ``BlockingCounter::Wait``). Seen here twice:

* PPO with ``num_seeds=2``: a vmapped orthogonal initialiser is one batched QR per layer (hung 3 of 6 runs);
* MJX on the CPU at 256 envs: the mass matrix's and the Newton solver's batched Cholesky factorisations (the first
  env step never returned).

``one_at_a_time(fn)`` is ``fn`` whose ``jax.vmap`` runs ``lax.map`` instead: one unbatched kernel a step, computed
inline, bit for bit an unbatched call. That is also bit for bit jaxlib's batched kernels, except where jaxlib solves a
batch of right-hand sides of one shared factor as the columns of one system: there the rounding depends on the
instruction set (1.9e-7 relative apart on an AVX-512 AMD EPYC). ``serial_cholesky()`` makes
``jax.scipy.linalg.cho_factor`` and ``cho_solve`` such functions while a block traces (MJX calls them through the
module), on the CPU backend only: a GPU keeps its batched solvers.

What it costs: ``custom_vmap`` has no autodiff rule, so a function traced inside ``serial_cholesky`` cannot be
differentiated (herjax never differentiates its physics; to differentiate herjax's MJX engine on a CPU, set
``herjax.envs.physics.MJX_SERIAL_LAPACK = False`` and keep the batch small). Speed on 2 cores, MJX FetchPush:
110 / 130 / 131 env steps/s at 16 / 64 / 256 envs, against 113 / 114 / never with the batched kernels
(``benchmarks/results/lapack_ab_mjx_cpu.json``).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Callable, ContextManager

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from herjax import _swap

__all__ = ["one_at_a_time", "serial_cholesky"]


def one_at_a_time(fn: Callable[..., jax.Array]) -> Callable[..., jax.Array]:
    """``fn`` (arrays in, one array out) whose batched form under ``jax.vmap`` maps over the batch with
    ``lax.map``; unbatched arguments are broadcast. Nested vmaps nest maps."""

    @jax.custom_batching.custom_vmap
    def one(*args):
        return fn(*args)

    @one.def_vmap
    def _batched(axis_size, in_batched, *args):
        args = tuple(a if batched else jnp.broadcast_to(a, (axis_size,) + jnp.shape(a))
                     for a, batched in zip(args, in_batched))
        return jax.lax.map(lambda xs: one(*xs), args), True

    return one


@functools.lru_cache(maxsize=None)
def _cho_factor(lower: bool) -> Callable[[jax.Array], jax.Array]:
    plain = _ORIGINAL["cho_factor"]
    return one_at_a_time(lambda a: plain(a, lower=lower)[0])


@functools.lru_cache(maxsize=None)
def _cho_solve(lower: bool) -> Callable[[jax.Array, jax.Array], jax.Array]:
    plain = _ORIGINAL["cho_solve"]
    return one_at_a_time(lambda c, b: plain((c, lower), b))


def _serial_cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    del overwrite_a, check_finite  # JAX ignores both
    return _cho_factor(bool(lower))(a), lower


def _serial_cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    del overwrite_b, check_finite
    c, lower = c_and_lower
    return _cho_solve(bool(lower))(c, b)


_ORIGINAL = {"cho_factor": jsl.cho_factor, "cho_solve": jsl.cho_solve}
_SERIAL = {"cho_factor": _serial_cho_factor, "cho_solve": _serial_cho_solve}


def _set_cholesky(functions: dict) -> None:
    for name, fn in functions.items():
        setattr(jsl, name, fn)


def _swap_cholesky() -> Callable[[], None]:
    _set_cholesky(_SERIAL)
    return lambda: _set_cholesky(_ORIGINAL)


_serial = _swap.nested_swap(_swap_cholesky)


def serial_cholesky() -> ContextManager[None]:
    """While the block runs (i.e. traces) on the CPU backend, ``jax.scipy.linalg.cho_factor`` and ``cho_solve``
    factor and solve one matrix at a time under ``jax.vmap``. Blocks nest; other threads wait; on a GPU or TPU
    it does nothing."""
    return _serial() if jax.default_backend() == "cpu" else contextlib.nullcontext()
