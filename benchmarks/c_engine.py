"""herjax's C engine against raw C MuJoCo on FetchPush, side by side in one process, and where the difference goes.

    python -m benchmarks.c_engine                         # 256 envs; benchmarks/results/c_engine_push_cpu.json
    python -m benchmarks.c_engine --num-envs 16 64 256

For each batch size, each a median of ``--repeats`` timed calls of ``--steps`` env steps (20 substeps each):

* ``raw``: ``mujoco.rollout.rollout`` over the batch, ``nstep = 20 * steps``, all threads, a persistent pool, the
  controls held: C MuJoCo at its best, with nothing of herjax.
* ``host``: herjax's host side alone (``_CEngine.step`` called from numpy, once per env step): the same rollout
  per env step plus herjax's state packing and the one-substep rollout whose first pass gives the sensors of the
  new state.
* ``herjax``: ``env.step`` under ``jax.vmap`` in a jitted ``lax.scan``, as training runs it: the host side plus
  the ``pure_callback`` round trip, the hand-off to the engine's thread, dtype conversions and the observation.

The ratios ``herjax / raw`` and ``host / raw`` say how much of C MuJoCo's speed herjax keeps, and which part loses
the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import herjax  # noqa: E402,F401  (the CPU XLA flag, as in a run)


def _median_rate(fn, n_env_steps: int, repeats: int) -> float:
    fn()  # warm-up (and compilation)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return n_env_steps / statistics.median(times)


def measure(num_envs: int, steps: int, repeats: int) -> dict:
    import jax
    import mujoco
    import numpy as np
    from mujoco import rollout

    from herjax import envs
    from herjax.envs import physics as physics_lib

    env = envs.make("fetch_push", backend="mujoco")
    m = env.model.mj_model
    n_sub = env.config.n_substeps
    states = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), num_envs))
    rng = np.random.default_rng(0)

    # raw: one rollout of all substeps, the controls held.
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.zeros((num_envs, mujoco.mj_stateSize(m, spec)))
    state0[:, 1: 1 + m.nq] = np.asarray(states.physics.qpos)
    state0[:, 1 + m.nq: 1 + m.nq + m.nv] = np.asarray(states.physics.qvel)
    control_spec = (mujoco.mjtState.mjSTATE_CTRL | mujoco.mjtState.mjSTATE_MOCAP_POS
                    | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
    phys = states.physics
    control = np.concatenate(
        [np.asarray(x).reshape(num_envs, -1) for x in (phys.ctrl, phys.mocap_pos, phys.mocap_quat)], axis=1
    )
    controls = np.repeat(control[:, None, :], n_sub * steps, axis=1)
    datas = [mujoco.MjData(m) for _ in range(os.cpu_count() or 1)]

    def raw():
        rollout.rollout(m, datas, state0, controls, control_spec=control_spec, nstep=n_sub * steps,
                        persistent_pool=True)

    # host: herjax's engine from numpy, one call per env step.
    engine = physics_lib._CEngine(m, n_sub, tuple(env.model.finger_qpos_adr) if env.block_gripper else ())
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), states.physics)

    def host():
        qpos, qvel, warm = p.qpos, p.qvel, p.qacc_warmstart
        for _ in range(steps):
            out = engine.step(qpos, qvel, p.ctrl, p.mocap_pos, p.mocap_quat, warm)
            qpos, qvel, warm = out["qpos"], out["qvel"], out["qacc_warmstart"]

    # herjax: the jitted, vmapped env step in a scan, random actions.
    step = jax.vmap(env.step)

    @jax.jit
    def run(state, actions):
        return jax.lax.scan(lambda s, a: (step(s, a), None), state, actions)[0]

    actions = jax.numpy.asarray(rng.uniform(-1, 1, (steps, num_envs, 4)), jax.numpy.float32)

    def herjax_step():
        jax.block_until_ready(run(states, actions))

    n = num_envs * steps
    rates = {"raw": _median_rate(raw, n, repeats), "host": _median_rate(host, n, repeats),
             "herjax": _median_rate(herjax_step, n, repeats)}
    ratio = lambda a, b: round(rates[a] / rates[b], 3)
    row = {"num_envs": num_envs, "steps_per_call": steps,
           **{f"{k}_env_steps_per_s": round(v) for k, v in rates.items()},
           "herjax_over_raw": ratio("herjax", "raw"), "host_over_raw": ratio("host", "raw"),
           "herjax_over_host": ratio("herjax", "host")}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[256])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "c_engine_push_cpu.json"))
    args = parser.parse_args(argv)
    from benchmarks.machine import describe

    rows = [measure(n, args.steps, args.repeats) for n in args.num_envs]
    with open(args.out, "w") as f:
        json.dump({"machine": describe(), "task": "fetch_push", "definition": __doc__.split("\n\n")[2], "rows": rows},
                  f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
