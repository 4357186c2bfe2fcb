"""herjax's C engine against raw C MuJoCo on FetchPush, side by side in one process, and where the difference goes.

    python -m benchmarks.c_engine                         # 16, 64, 256 envs; benchmarks/results/c_engine_push_cpu.json
    python -m benchmarks.c_engine --num-envs 16 --out /tmp/c_engine.json

For each batch size, each a median of ``--repeats`` timed calls of ``--steps`` env steps (20 substeps each), all
three stepping the same physics: herjax's env steps under random actions, and the controls they set (``ctrl``,
``mocap_pos``, ``mocap_quat``, recorded once, untimed) are replayed by the other two, each held for its 20 substeps:

* ``raw``: ``mujoco.rollout.rollout`` over the batch, ``nstep = 20 * steps`` in one call, all threads, a persistent
  pool: C MuJoCo at its best, with nothing of herjax.
* ``host``: herjax's host side alone (``_CEngine.step`` called from numpy, once per env step): one rollout call per
  env step, of one substep more than raw's (its first pass gives the sensors of the new state), plus herjax's
  state packing.
* ``herjax``: ``env.step`` under ``jax.vmap`` in a jitted ``lax.scan``, as training runs it: the host side plus
  the host callback round trip (``buffer_callback``), the hand-off to the engine's thread, dtype conversions, the
  actions' controls and the observation.

The ratios ``herjax / raw`` and ``host / raw`` say how much of C MuJoCo's speed herjax keeps, and which part loses
the rest. (Until 2026-12-05 ``raw`` and ``host`` held the reset's controls while herjax moved the arm at random:
different physics, whose cost differs by 10-20% at 16 envs. Until the second version of that day herjax used
``pure_callback`` and a second, one-substep rollout call for the sensors: 0.74 / 0.88 / 0.92 of raw.)
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


def _median_rates(fns: dict, n_env_steps: int, repeats: int) -> dict:
    """Env steps/s of each function, the median of ``repeats`` calls taken in turn (raw, host, herjax, raw, ...),
    so that the machine's drift over the run falls on all of them alike."""
    for fn in fns.values():
        fn()  # warm-up (and compilation)
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: n_env_steps / statistics.median(ts) for name, ts in times.items()}


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

    # herjax: the jitted, vmapped env step in a scan, random actions.
    step = jax.vmap(env.step)

    @jax.jit
    def run(state, actions):
        return jax.lax.scan(lambda s, a: (step(s, a), None), state, actions)[0]

    @jax.jit
    def controls_of(state, actions):  # the controls each env step set, for the others to replay
        def body(s, a):
            s = step(s, a)
            return s, (s.physics.ctrl, s.physics.mocap_pos, s.physics.mocap_quat)

        return jax.lax.scan(body, state, actions)[1]

    actions = jax.numpy.asarray(rng.uniform(-1, 1, (steps, num_envs, 4)), jax.numpy.float32)

    def herjax_step():
        jax.block_until_ready(run(states, actions))

    ctrl, mocap_pos, mocap_quat = (np.asarray(x, np.float64) for x in controls_of(states, actions))  # [steps, n, ...]

    # raw: one rollout of all substeps, each env step's controls held for its substeps.
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    state0 = np.zeros((num_envs, mujoco.mj_stateSize(m, spec)))
    state0[:, 1: 1 + m.nq] = np.asarray(states.physics.qpos)
    state0[:, 1 + m.nq: 1 + m.nq + m.nv] = np.asarray(states.physics.qvel)
    control_spec = (mujoco.mjtState.mjSTATE_CTRL | mujoco.mjtState.mjSTATE_MOCAP_POS
                    | mujoco.mjtState.mjSTATE_MOCAP_QUAT)
    per_step = np.concatenate([x.reshape(steps, num_envs, -1) for x in (ctrl, mocap_pos, mocap_quat)], axis=2)
    controls = np.repeat(per_step.transpose(1, 0, 2), n_sub, axis=1)  # [n, steps * n_sub, ncontrol]
    warm0 = np.asarray(states.physics.qacc_warmstart, np.float64)
    datas = [mujoco.MjData(m) for _ in range(os.cpu_count() or 1)]

    def raw():
        rollout.rollout(m, datas, state0, controls, control_spec=control_spec, nstep=n_sub * steps,
                        initial_warmstart=warm0, persistent_pool=True)

    # host: herjax's engine from numpy, one call per env step, the same controls.
    engine = physics_lib._CEngine(m, n_sub, tuple(env.model.finger_qpos_adr) if env.block_gripper else ())
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), states.physics)

    def host():
        qpos, qvel, warm = p.qpos, p.qvel, p.qacc_warmstart
        for t in range(steps):
            out = engine.step(qpos, qvel, ctrl[t], mocap_pos[t], mocap_quat[t], warm)
            qpos, qvel, warm = out["qpos"], out["qvel"], out["qacc_warmstart"]

    # The same physics: herjax's last state against raw's (float32 state and per-step warm starts apart; a block
    # the arm strikes can go its own way from there).
    final, _ = rollout.rollout(m, datas, state0, controls, control_spec=control_spec, nstep=n_sub * steps,
                               initial_warmstart=warm0, persistent_pool=True)
    # herjax zeroes the blocked fingers after each env step (gymnasium-robotics' _step_callback); raw cannot.
    free = np.setdiff1d(np.arange(m.nq), engine.locked)
    gap = np.abs(final[:, -1, 1: 1 + m.nq] - np.asarray(run(states, actions).physics.qpos))[:, free]
    env_gap = np.max(gap, axis=1)

    n = num_envs * steps
    rates = _median_rates({"raw": raw, "host": host, "herjax": herjax_step}, n, repeats)
    ratio = lambda a, b: round(rates[a] / rates[b], 3)
    row = {"num_envs": num_envs, "steps_per_call": steps,
           **{f"{k}_env_steps_per_s": round(v) for k, v in rates.items()},
           "herjax_over_raw": ratio("herjax", "raw"), "host_over_raw": ratio("host", "raw"),
           "herjax_over_host": ratio("herjax", "host"),
           # per env, the largest |qpos| difference after the last step (the fingers left out): median and largest
           # over envs
           "final_qpos_gap_herjax_vs_raw_median": float(np.median(env_gap)),
           "final_qpos_gap_herjax_vs_raw_max": float(np.max(env_gap))}
    print(json.dumps(row), flush=True)
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-envs", nargs="+", type=int, default=[16, 64, 256])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "c_engine_push_cpu.json"))
    args = parser.parse_args(argv)
    from benchmarks.machine import describe

    rows = [measure(n, args.steps, args.repeats) for n in args.num_envs]
    with open(args.out, "w") as f:
        definition = "\n\n".join(__doc__.split("\n\n")[2:5])
        json.dump({"machine": describe(), "task": "fetch_push", "definition": definition, "rows": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
