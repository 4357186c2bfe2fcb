"""Every registered env on every backend: jit + vmap, no NaN, determinism; registry, rewards and the wrapper."""

import copy
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import envtools as E
from herjax import envs

SMALL = 4  # envs per batch for the all-backend smoke checks (compiles dominate there)
SHORT = 5  # steps


def test_names():
    base = ["fetch_reach", "fetch_push", "fetch_slide", "fetch_pick_and_place"]
    # The built-in tasks first; envs registered since (by other tests of this process) follow them.
    assert envs.names()[:8] == [n for b in base for n in (b, f"{b}_dense")]


def test_unknown_env_suggests_and_lists():
    with pytest.raises(ValueError) as err:
        envs.make("fetch_pusj")
    msg = str(err.value)
    assert "'fetch_push'" in msg and "fetch_pick_and_place_dense" in msg and "\n" not in msg


def test_unknown_backend_and_option():
    with pytest.raises(ValueError, match="valid backends: auto, mjx, mujoco"):
        envs.make("fetch_reach", backend="cuda")
    with pytest.raises(ValueError, match="distance_threshold"):
        envs.make("fetch_reach", distance_threshhold=0.1)


def test_auto_backend_is_mujoco_on_cpu():
    assert jax.default_backend() == "cpu"
    assert envs.make("fetch_reach").backend == "mujoco"


# MJX compiles each Fetch model for 100-160 s on CI's 2 CPU cores, so these four run under -m slow, beside the MJX
# parity tests. The default run keeps all four on the C engine, and MJX through tests/test_mjx_jdotv.py (the Reach
# model's weld and a generic model under jit(vmap), against C) and PointRoom's MJX-vs-C episode.
MJX_SLOW = {"reach", "push", "slide", "pick_and_place"}


@pytest.mark.parametrize("task, backend", [
    pytest.param(t, b, marks=pytest.mark.slow) if b == "mjx" and t in MJX_SLOW else (t, b)
    for b in ("mujoco", "mjx") for t in E.TASKS
])
def test_jit_vmap_no_nan_and_bit_identical(task, backend):
    env = E.get_env(task, backend)
    keys = E.keys(3, SMALL)
    actions = E.random_actions(4, SMALL, SHORT)
    a = E.run_episodes(task, backend, keys, actions)
    b = E.run_episodes(task, backend, keys, actions)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert not np.isnan(np.asarray(x)).any()
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    obs = a["obs"]
    assert obs["observation"].shape == (SMALL, SHORT + 1, env.obs_dim)
    assert obs["achieved_goal"].shape == obs["desired_goal"].shape == (SMALL, SHORT + 1, 3)
    # Different keys draw different goals (and objects).
    goals = np.asarray(obs["desired_goal"][:, 0])
    assert len({tuple(g) for g in goals.round(6)}) == SMALL
    # The gripper moved under random actions.
    grip = np.asarray(obs["observation"][:, :, :3])
    assert np.abs(grip[:, -1] - grip[:, 0]).max() > 0.01


@pytest.mark.parametrize("name", ["fetch_push", "fetch_push_dense"])
def test_compute_reward_batched(name):
    env = envs.make(name)
    rng = np.random.default_rng(0)
    ag, g = rng.normal(size=(2, 5, 3)) * 0.05, rng.normal(size=(2, 5, 3)) * 0.05
    r = np.asarray(env.compute_reward(jnp.asarray(ag), jnp.asarray(g)))
    d = np.linalg.norm(ag - g, axis=-1)
    assert r.shape == (2, 5)
    expected = -(d > 0.05).astype(np.float32) if name == "fetch_push" else -d
    np.testing.assert_allclose(r, expected, rtol=1e-6, atol=1e-7)


def test_vec_autoreset_fresh_goals_and_final_obs():
    env = E.get_env("reach", "mujoco")
    venv = envs.vec(env, 3)
    step = jax.jit(venv.step)
    vs = jax.jit(venv.reset)(jax.random.key(0))
    goals0 = np.asarray(vs.env.obs["desired_goal"])
    action = jnp.tile(jnp.array([1.0, 0.0, 0.0, 0.0]), (3, 1))
    for t in range(env.episode_length):
        prev_t = np.asarray(vs.t)
        vs = step(vs, action)
        if t < env.episode_length - 1:
            assert not np.asarray(vs.truncated).any()
            np.testing.assert_array_equal(np.asarray(vs.t), prev_t + 1)
    assert np.asarray(vs.truncated).all()
    np.testing.assert_array_equal(np.asarray(vs.t), 0)
    goals1 = np.asarray(vs.env.obs["desired_goal"])
    assert not np.allclose(goals0, goals1)  # a reset draws a new goal
    final_grip = np.asarray(vs.final_obs["observation"][:, :3])
    new_grip = np.asarray(vs.env.obs["observation"][:, :3])
    assert np.all(final_grip[:, 0] - new_grip[:, 0] > 0.1)  # the ended episode moved +x; the new one is back home
    np.testing.assert_allclose(new_grip, np.tile(env.model.initial_gripper_xpos, (3, 1)), atol=2e-3)
    vs = step(vs, action)
    assert not np.asarray(vs.truncated).any()


def test_vec_rejects_zero_envs():
    with pytest.raises(ValueError, match="num_envs"):
        envs.vec(E.get_env("reach", "mujoco"), 0)


def test_xla_flag_applied_on_import_where_jaxlib_takes_it():
    from herjax import _xla

    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "HERJAX_NO_XLA_FLAG")}
    code = "import herjax, os, jax; jax.numpy.ones(1).block_until_ready(); print(os.environ.get('XLA_FLAGS'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    known = _xla.flag_known(_xla.jaxlib_version())
    assert out.stdout.strip() == ("--xla_cpu_use_fusion_emitters=false" if known else "None")
    env["HERJAX_NO_XLA_FLAG"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "None"


def test_xla_flag_only_for_the_jaxlib_versions_that_know_it():
    """XLA aborts the process on a flag it does not know (jaxlib 0.11.2 and 0.12.1 abort on this one), so
    ``import herjax`` on a newer jaxlib must leave ``XLA_FLAGS`` alone."""
    from herjax import _xla

    known = {v: _xla.flag_known(v) for v in [(0, 6, 2), (0, 7, 0), (0, 7, 1), (0, 10, 2), (0, 11, 0), (0, 11, 2),
                                             (0, 12, 1), (1, 0, 0), None]}
    assert [v for v, k in known.items() if k] == [(0, 7, 1), (0, 10, 2)]


@pytest.mark.parametrize("task", ["push", "pick_and_place"])
def test_c_engine_sensors_equal_mj_forward(task):
    """The C engine takes its sensors from the first pass of one extra substep, before the blocked fingers are set
    to 0, instead of a ``mj_forward`` after the lock: over 10 steps of random controls the state must be that of
    ``n_substeps`` substeps and the lock, bit for bit, and the sensors those of ``mj_forward`` on it: bit for bit
    without a lock (PickAndPlace), and within 1e-12 with one (Push: the fingers' mass moves the arm tree's
    centre of mass, about which MuJoCo carries frame velocities)."""
    import mujoco

    from herjax.envs import physics

    env = envs.make(f"fetch_{task}", backend="mujoco")
    m = env.model.mj_model
    locked = tuple(env.model.finger_qpos_adr) if env.block_gripper else ()
    engine = physics._CEngine(m, 20, locked)
    assert engine.locked_sensors is not None  # the one-rollout path is the one under test
    rng = np.random.default_rng(0)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    n = 5
    qpos, qvel, warm = np.tile(d.qpos, (n, 1)), np.tile(d.qvel, (n, 1)), np.zeros((n, m.nv))
    mocap_pos, mocap_quat = np.tile(d.mocap_pos, (n, 1, 1)), np.tile(d.mocap_quat, (n, 1, 1))
    ctrl = rng.uniform(-1, 1, (n, m.nu))
    worst = 0.0
    for _ in range(10):
        mocap_pos = mocap_pos + rng.normal(0, 0.02, mocap_pos.shape)
        out = engine.step(qpos, qvel, ctrl, mocap_pos, mocap_quat, warm)
        state, _ = engine._rollout(engine._state(qpos, qvel), engine._control(ctrl, mocap_pos, mocap_quat), warm, 20)
        want_qpos, want_qvel = state[:, -1, 1: 1 + m.nq].copy(), state[:, -1, 1 + m.nq: 1 + m.nq + m.nv]
        want_qpos[:, list(locked)] = 0.0
        np.testing.assert_array_equal(out["qpos"], want_qpos)
        np.testing.assert_array_equal(out["qvel"], want_qvel)
        assert not np.array_equal(out["qpos"], qpos)  # the step moved something
        for i in range(n):
            d.qpos[:], d.qvel[:], d.ctrl[:] = out["qpos"][i], out["qvel"][i], ctrl[i]
            d.mocap_pos[:], d.mocap_quat[:], d.qacc_warmstart[:] = mocap_pos[i], mocap_quat[i], warm[i]
            mujoco.mj_forward(m, d)
            if not locked:
                np.testing.assert_array_equal(out["sensordata"][i], d.sensordata)
            worst = max(worst, float(np.max(np.abs(out["sensordata"][i] - d.sensordata))))
        if locked:
            assert np.all(out["sensordata"][:, engine.locked_sensors] == 0.0)
        qpos, qvel = out["qpos"], out["qvel"]
    assert worst <= 1e-12, worst


def test_c_engine_falls_back_to_a_forward_pass_for_sensors_the_lock_moves():
    """A sensor on a body a locked joint moves (here a site on a finger) would read the state before the lock: the
    engine must then take its sensors from a forward pass after the lock, as ``mj_forward`` gives them."""
    import mujoco

    from herjax.envs import physics

    env = envs.make("fetch_push", backend="mujoco")
    m0 = env.model.mj_model
    locked = tuple(env.model.finger_qpos_adr)
    finger_body = int(m0.jnt_bodyid[[j for j in range(m0.njnt) if m0.jnt_qposadr[j] == locked[0]][0]])
    assert physics._locked_sensor_adr(m0, np.asarray(locked)) is not None
    m = copy.deepcopy(m0)
    m.sensor_objtype[0], m.sensor_objid[0] = mujoco.mjtObj.mjOBJ_XBODY, finger_body  # grip_pos -> a finger's frame
    assert physics._locked_sensor_adr(m, np.asarray(locked)) is None
    engine = physics._CEngine(m, 20, locked)
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    n, rng = 3, np.random.default_rng(1)
    mocap_pos = np.tile(d.mocap_pos, (n, 1, 1)) + rng.normal(0, 0.02, (n, *d.mocap_pos.shape))
    ctrl, mocap_quat = rng.uniform(-1, 1, (n, m.nu)), np.tile(d.mocap_quat, (n, 1, 1))
    out = engine.step(np.tile(d.qpos, (n, 1)), np.tile(d.qvel, (n, 1)), ctrl, mocap_pos, mocap_quat,
                      np.zeros((n, m.nv)))
    for i in range(n):
        d.qpos[:], d.qvel[:], d.ctrl[:] = out["qpos"][i], out["qvel"][i], ctrl[i]
        d.mocap_pos[:], d.mocap_quat[:], d.qacc_warmstart[:] = mocap_pos[i], mocap_quat[i], 0.0
        mujoco.mj_forward(m, d)
        np.testing.assert_array_equal(out["sensordata"][i], d.sensordata)
