"""Env steps/s against num_envs, for each task and backend; optionally an A/B of the CPU XLA flag.

    python -m benchmarks.env_throughput                      # all tasks, both backends, default sizes
    python -m benchmarks.env_throughput --tasks push --backends mjx --sizes 256 1024 4096   # on a GPU
    python -m benchmarks.env_throughput --xla-flag-ab        # MJX on the CPU with and without the flag
    python -m benchmarks.env_throughput --lapack-ab          # MJX on the CPU, Cholesky one env at a time or batched

One env step is 20 MuJoCo substeps plus the forward pass. Steps run inside one jitted ``lax.scan`` of random
actions, timed after a compile-and-warm-up call; each point is the median of ``--repeats`` timings. Results go
to ``benchmarks/results/env_throughput_<backend>.json`` with the machine described.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import herjax  # noqa: F401  (applies the CPU XLA flag unless HERJAX_NO_XLA_FLAG=1)

RESULTS = os.path.join(os.path.dirname(__file__), "results")


def measure(task: str, backend: str, num_envs: int, steps: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    from herjax import envs

    env = envs.make(f"fetch_{task}", backend=backend)
    step = jax.vmap(env.step)

    @jax.jit
    def run(state, key):
        actions = jax.random.uniform(key, (steps, num_envs, 4), minval=-1.0, maxval=1.0)
        state, _ = jax.lax.scan(lambda s, a: (step(s, a), None), state, actions)
        return state

    state = jax.jit(jax.vmap(env.reset))(jax.random.split(jax.random.key(0), num_envs))
    t0 = time.perf_counter()
    state = jax.block_until_ready(run(state, jax.random.key(1)))
    compile_s = time.perf_counter() - t0
    times = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state = jax.block_until_ready(run(state, jax.random.key(2 + i)))
        times.append(time.perf_counter() - t0)
    median = statistics.median(times)
    return {
        "task": task, "backend": env.backend, "num_envs": num_envs, "steps_per_call": steps,
        "env_steps_per_s": num_envs * steps / median, "median_call_s": median, "compile_and_first_call_s": compile_s,
    }


def _in_fresh_process(task: str, num_envs: int, steps: int, repeats: int, env: dict, prelude: str,
                      timeout: float) -> dict:
    code = (f"import json, benchmarks.env_throughput as b; {prelude};"
            f"print(json.dumps(b.measure({task!r}, 'mjx', {num_envs}, {steps}, {repeats})))")
    try:
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                              timeout=timeout, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    except subprocess.TimeoutExpired:
        return {"env_steps_per_s": None, "did_not_finish_in_s": timeout}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ab(task: str, num_envs: int, steps: int, repeats: int, arms: dict, timeout: float) -> dict:
    """Each arm (``label: (environment changes, Python run first)``) measured in a fresh process."""
    out = {}
    for label, (env_changes, prelude) in arms.items():
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"} | env_changes
        out[label] = _in_fresh_process(task, num_envs, steps, repeats, env, prelude, timeout)
        rate = out[label]["env_steps_per_s"]
        print(f"  {label}: " + (f"{rate:,.0f} env steps/s" if rate else f"did not finish in {timeout:.0f} s"),
              flush=True)
    return out


def xla_flag_ab(task: str, num_envs: int, steps: int, repeats: int) -> dict:
    """MJX on the CPU with and without the flag, each in a fresh process (XLA reads the flag at start-up)."""
    out = _ab(task, num_envs, steps, repeats, {"with_flag": ({}, "pass"),
                                               "without_flag": ({"HERJAX_NO_XLA_FLAG": "1"}, "pass")}, 3600)
    out["speedup"] = out["with_flag"]["env_steps_per_s"] / out["without_flag"]["env_steps_per_s"]
    return out


def lapack_ab(task: str, num_envs: int, steps: int, repeats: int, timeout: float) -> dict:
    """MJX on the CPU with its Cholesky factorisations one env at a time (herjax's default) and batched (jaxlib's,
    ``physics.MJX_SERIAL_LAPACK = False``), each in a fresh process with a deadline: batched ones can deadlock."""
    batched = "import herjax.envs.physics as p; p.MJX_SERIAL_LAPACK = False"
    out = _ab(task, num_envs, steps, repeats, {"one_at_a_time": ({}, "pass"), "batched": ({}, batched)}, timeout)
    rates = [out[k]["env_steps_per_s"] for k in ("one_at_a_time", "batched")]
    out["one_at_a_time_over_batched"] = rates[0] / rates[1] if all(rates) else None
    return out


def main() -> int:
    from benchmarks.machine import describe

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", default=["reach", "push", "slide", "pick_and_place"])
    p.add_argument("--backends", nargs="+", default=["mujoco", "mjx"])
    p.add_argument("--sizes", nargs="+", type=int, default=None, help="num_envs values (default per backend)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--xla-flag-ab", action="store_true", help="only the A/B of the CPU XLA flag (MJX, push)")
    p.add_argument("--lapack-ab", action="store_true",
                   help="only the A/B of MJX's Cholesky one env at a time or batched (MJX, push, CPU)")
    p.add_argument("--timeout", type=float, default=900, help="--lapack-ab: seconds an arm may take")
    p.add_argument("--out", default=None, help="output JSON path")
    args = p.parse_args()
    machine = describe()
    os.makedirs(RESULTS, exist_ok=True)
    if args.xla_flag_ab:
        sizes = args.sizes or [1, 64]
        print(f"XLA flag A/B, MJX push on {machine['jax_backend']}")
        rows = []
        for n in sizes:
            print(f" num_envs={n}", flush=True)
            rows.append({"num_envs": n, **xla_flag_ab("push", n, min(args.steps, 10), args.repeats)})
        path = args.out or os.path.join(RESULTS, f"xla_flag_ab_{machine['jax_backend']}.json")
        with open(path, "w") as f:
            json.dump({"machine": machine, "results": rows}, f, indent=1)
        print(f"wrote {path}")
        return 0
    if args.lapack_ab:
        sizes = args.sizes or [16, 64, 256]
        print(f"LAPACK A/B, MJX push on {machine['jax_backend']}")
        rows = []
        for n in sizes:
            print(f" num_envs={n}", flush=True)
            rows.append({"num_envs": n, **lapack_ab("push", n, min(args.steps, 10), args.repeats, args.timeout)})
        path = args.out or os.path.join(RESULTS, f"lapack_ab_mjx_{machine['jax_backend']}.json")
        with open(path, "w") as f:
            json.dump({"machine": machine, "results": rows}, f, indent=1)
        print(f"wrote {path}")
        return 0
    defaults = {"mujoco": [1, 16, 64, 256], "mjx": [1, 16, 64] if machine["jax_backend"] == "cpu" else [256, 1024, 4096]}
    for backend in args.backends:
        rows = []
        for task in args.tasks:
            for n in args.sizes or defaults[backend]:
                row = measure(task, backend, n, args.steps, args.repeats)
                rows.append(row)
                print(f"{task:15s} {backend:7s} num_envs={n:5d}: {row['env_steps_per_s']:10,.0f} env steps/s "
                      f"(compile {row['compile_and_first_call_s']:.1f} s)", flush=True)
        path = args.out or os.path.join(RESULTS, f"env_throughput_{backend}_{machine['jax_backend']}.json")
        with open(path, "w") as f:
            json.dump({"machine": machine, "results": rows}, f, indent=1)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
