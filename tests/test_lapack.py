"""``herjax._lapack``: batched LAPACK one matrix at a time on the CPU, where jaxlib's batched kernels deadlock."""

import re

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import mujoco
import numpy as np
import pytest
from mujoco import mjx

from herjax import _lapack
from herjax.envs import physics
from runtools import finishes

# A box dropped on a plane: MJX factors its mass matrix and its Newton solver's Hessian with Cholesky.
BOX_ON_PLANE = """
<mujoco>
  <worldbody>
    <geom type="plane" size="1 1 0.1"/>
    <body pos="0 0 0.2"><freejoint/><geom type="box" size="0.05 0.05 0.05"/></body>
  </worldbody>
</mujoco>
"""


def _spd(key, batch, n=6):
    x = jax.random.normal(key, batch + (n, n))
    return x @ jnp.swapaxes(x, -1, -2) + n * jnp.eye(n)


def test_serial_cholesky_gives_the_batched_values_bit_for_bit_and_restores_scipy():
    """Batched factors and solves are bit for bit jaxlib's batched ones. A factor shared by a batch of right-hand
    sides (``in_axes=(None, 0)``) is solved one right-hand side at a time, bit for bit an unbatched call; jaxlib
    instead solves all of them as the columns of one system, whose rounding depends on the instruction set (equal on
    the Intel Xeons here, 1.9e-7 relative apart on an AVX-512 AMD EPYC), so there the two agree to float32 only."""
    a, b = _spd(jax.random.key(0), (2, 3)), jax.random.normal(jax.random.key(1), (2, 3, 6, 2))

    def factor_and_solve(a, b):
        c = jsl.cho_factor(a, lower=True)
        return c[0], jsl.cho_solve(c, b)

    plain = [jax.jit(jax.vmap(factor_and_solve))(a[0], b[0]), jax.vmap(jax.vmap(factor_and_solve))(a, b)]
    shared = jax.vmap(factor_and_solve, in_axes=(None, 0))(a[0, 0], b[0])
    one_by_one = [factor_and_solve(a[0, 0], b[0, k]) for k in range(3)]
    with _lapack.serial_cholesky():
        assert jsl.cho_factor is not _lapack._ORIGINAL["cho_factor"]
        with _lapack.serial_cholesky():  # nested blocks restore once, at the outermost
            pass
        assert jsl.cho_solve is not _lapack._ORIGINAL["cho_solve"]
        serial = [jax.jit(jax.vmap(factor_and_solve))(a[0], b[0]), jax.vmap(jax.vmap(factor_and_solve))(a, b)]
        serial_shared = jax.vmap(factor_and_solve, in_axes=(None, 0))(a[0, 0], b[0])
    assert jsl.cho_factor is _lapack._ORIGINAL["cho_factor"] and jsl.cho_solve is _lapack._ORIGINAL["cho_solve"]
    for x, y in zip(jax.tree.leaves(plain), jax.tree.leaves(serial)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for k, (factor, solution) in enumerate(one_by_one):
        np.testing.assert_array_equal(np.asarray(serial_shared[0][k]), np.asarray(factor))
        np.testing.assert_array_equal(np.asarray(serial_shared[1][k]), np.asarray(solution))
    np.testing.assert_array_equal(np.asarray(serial_shared[0]), np.asarray(shared[0]))
    np.testing.assert_allclose(np.asarray(serial_shared[1]), np.asarray(shared[1]), rtol=1e-6, atol=1e-7)


def _lapack_batch_dims(hlo: str) -> dict[str, set[str]]:
    """Each LAPACK custom call in ``hlo`` with the ``num_batch_dims`` it was lowered with."""
    found: dict[str, set[str]] = {}
    for name, dims in re.findall(r"custom_call @(lapack_\w+)\(.*?num_batch_dims = \"(\d+)\"", hlo):
        found.setdefault(name, set()).add(dims)
    return found


def test_herjax_mjx_step_lowers_no_batched_lapack_call_on_the_cpu():
    """MJX's own step under ``jax.vmap`` factors and solves in batches (which hang a 2-core machine at 256 envs);
    herjax's MJX engine lowers each as a single-matrix call inside a loop."""
    m = mujoco.MjModel.from_xml_string(BOX_ON_PLANE)
    qpos = jnp.tile(jnp.asarray(m.qpos0, jnp.float32), (2, 1))
    mx, plain_data = mjx.put_model(m), jax.vmap(lambda q: mjx.make_data(m).replace(qpos=q))(qpos)
    theirs = _lapack_batch_dims(jax.jit(jax.vmap(lambda d: mjx.step(mx, d))).lower(plain_data).as_text())
    assert theirs.get("lapack_spotrf_ffi") == {"1"}, theirs  # the check can fail: MJX alone batches

    engine = physics.make_physics(m, "mjx", n_substeps=2)
    zeros = lambda n: jnp.zeros((2, n), jnp.float32)
    state = physics.PhysState(qpos=qpos, qvel=zeros(m.nv), ctrl=zeros(m.nu), mocap_pos=jnp.zeros((2, 0, 3)),
                              mocap_quat=jnp.zeros((2, 0, 4)), qacc_warmstart=zeros(m.nv),
                              sensordata=zeros(m.nsensordata))
    ours = _lapack_batch_dims(jax.jit(jax.vmap(engine.step)).lower(state).as_text())
    assert "lapack_spotrf_ffi" in ours and all(dims == {"0"} for dims in ours.values()), ours


@pytest.mark.slow
def test_mjx_push_at_256_envs_steps_on_two_cpu_cores():
    """The symptom: 256 MJX FetchPush envs under ``jit(vmap)`` on the CPU. With batched Cholesky the first reset
    or step never returned here (2 of 2 runs, both XLA pool threads waiting in ``ParallelBatchMap``)."""
    finishes("""
        import jax, jax.numpy as jnp
        from herjax import envs
        env = envs.make("fetch_push", backend="mjx")
        states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), 256))
        step = jax.jit(jax.vmap(env.step))
        for _ in range(3):
            states = step(states, jnp.zeros((256, 4)))
        jax.block_until_ready(states)
        print("finished")
    """, 600, "256 MJX envs' reset and 3 steps, the batched-Cholesky deadlock")
