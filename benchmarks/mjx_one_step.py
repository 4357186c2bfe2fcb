"""MJX against the C engine one env step at a time on FetchPush: how far apart the block lands from the same state.

    python -m benchmarks.mjx_one_step              # ~5 min on 2 CPU cores; benchmarks/results/mjx_one_step_push_cpu.json

The C engine (herjax's model, C MuJoCo) runs the scripted push for ``--episodes`` episodes of ``--steps`` steps and
records every state. From each recorded state and action, herjax's MJX engine takes one env step (20 substeps), and
the block's distance to where the C engine put it is that step's error. Both engines share the model, so what
differs is MJX itself; float64 and the original's solver settings (100 iterations, tolerance 1e-8, as the C engine)
take precision and the solver cap out, leaving the contacts. Variants: MJX's own contact points, and herjax's
(``herjax.envs.mjx_contacts``). Steps before the finger reaches the block have zero error in both.

Also what herjax's contact points cost: the MJX engine's env steps/s with each, ``--speed-envs`` envs under
``jax.vmap`` in a jitted scan of random actions (float32, the shipped solver), alternating in one process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.machine import describe, in_child, report, save  # noqa: E402
ORIGINAL_SOLVER = {"iterations": 100, "ls_iterations": 50, "tolerance": 1e-8}


def measure(c_contacts: bool, episodes: int, steps: int) -> dict:
    """One variant, in this process (x64 must be on before JAX computes anything)."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import numpy as np

    from herjax import envs
    from herjax.envs import physics, scripted

    physics.MJX_SOLVER.update(ORIGINAL_SOLVER)
    physics.MJX_C_CONTACTS = c_contacts
    c_env, mjx_env = envs.make("fetch_push", backend="mujoco"), envs.make("fetch_push", backend="mjx")
    c_step, mjx_step = jax.jit(jax.vmap(c_env.step)), jax.jit(jax.vmap(mjx_env.step))
    policy = jax.jit(jax.vmap(scripted.push_policy))
    state = jax.jit(jax.vmap(c_env.reset))(jax.random.split(jax.random.key(3), episodes))
    block = lambda s: np.asarray(s.obs["observation"][:, 3:6])
    start = time.perf_counter()
    error = np.zeros((episodes, steps))
    for t in range(steps):
        action = policy(state.obs)
        after = c_step(state, action)
        error[:, t] = np.linalg.norm(block(mjx_step(state, action)) - block(after), axis=1)
        state = after
    mm = error * 1000
    touching = mm[mm > 1e-3]  # empty when the finger never reaches the block (a few steps only)
    return {"c_contacts": c_contacts, "sum_mm": round(float(mm.sum()), 2), "max_mm": round(float(mm.max()), 3),
            "p90_contact_steps_mm": round(float(np.percentile(touching, 90)), 3) if touching.size else None,
            "contact_steps": int(touching.size), "seconds": round(time.perf_counter() - start, 1)}


def speed(num_envs: int, steps: int = 5, repeats: int = 7) -> dict:
    """Env steps/s of the MJX engine with MJX's own contact points and with herjax's, side by side."""
    import statistics

    import jax
    import jax.numpy as jnp
    import numpy as np

    from herjax import envs
    from herjax.envs import physics

    runs = {}
    for name, c_contacts in (("mjx_own", False), ("herjax", True)):
        physics.MJX_C_CONTACTS = c_contacts
        env = envs.make("fetch_push", backend="mjx")
        state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), num_envs))
        actions = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (steps, num_envs, 4)), jnp.float32)
        step = jax.vmap(env.step)
        run = jax.jit(lambda s, a, step=step: jax.lax.scan(lambda s, a: (step(s, a), None), s, a)[0])
        runs[name] = lambda run=run, state=state, actions=actions: jax.block_until_ready(run(state, actions))
        runs[name]()
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    rate = {name: num_envs * steps / statistics.median(t) for name, t in times.items()}
    return {"num_envs": num_envs, **{f"{k}_env_steps_per_s": round(v, 1) for k, v in rate.items()},
            "herjax_over_own": round(rate["herjax"] / rate["mjx_own"], 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=24)
    p.add_argument("--steps", type=int, default=26)
    p.add_argument("--speed-envs", type=int, default=64)
    p.add_argument("--one", choices=["own", "herjax", "speed"], help=argparse.SUPPRESS)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.one == "speed":
        report(speed(args.speed_envs))
        return 0
    if args.one:
        report(measure(args.one == "herjax", args.episodes, args.steps))
        return 0
    variants = {}
    for name, label in (("own", "MJX's own contact points"), ("herjax", "herjax.envs.mjx_contacts"),
                        ("speed", "speed")):
        variants[label] = in_child("benchmarks.mjx_one_step", "--one", name, "--episodes", str(args.episodes),
                                   "--steps", str(args.steps), "--speed-envs", str(args.speed_envs))
        print(label, json.dumps(variants[label]), flush=True)
    speed_row = variants.pop("speed")
    machine = describe()
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"mjx_one_step_push_{machine['jax_backend']}.json")
    save(out, {"machine": machine, "episodes": args.episodes, "steps": args.steps,
               "measure": "per env step from a C-engine state of the scripted push, the block's distance between the "
                          "MJX engine's next state and the C engine's (float64, the original solver settings); sum, "
                          "max and 90th percentile over the steps where it is above 1 micrometre",
               "variants": variants, "speed": speed_row})
    return 0


if __name__ == "__main__":
    sys.exit(main())
