"""The whole GPU check in one command: dependencies, MJX throughput and time-to-success, into one JSON file.

On a lent device machine (one ``run`` call of under 10 minutes; the wheels carried in ``.whl``, see
``/work/.library/device/README.md`` and REFERENCE §3)::

    python3 benchmarks/gpu_check.py --wheels .whl --out $OUT/gpu_check.json

On your own GPU (with ``pip install -e .`` done, nothing to install)::

    python benchmarks/gpu_check.py --out benchmarks/results/gpu_check_<gpu>.json

On a CPU, as a smoke test of the script itself (tiny sizes and budgets, the C engine)::

    python benchmarks/gpu_check.py --tiny --out /tmp/gpu_check.json

Steps, each recorded as it ends (a step that fails is recorded with its error and the next one runs):

1. **Dependencies.** If a module of ``NEEDED`` cannot be imported and ``--wheels`` names a folder, its wheels
   are installed into ``/tmp/herjax-site`` (``pip --no-index --no-deps --target``) and the script starts again
   with that folder on ``PYTHONPATH``.
2. **Throughput.** MJX FetchPush env steps/s (random actions, 20 substeps each) at 1,024, 4,096 and 16,384 envs.
3. **Time to success.** FetchPush, then FetchPickAndPlace and FetchSlide while the budget lasts, on the accelerator
   recipe (``ACCELERATOR_RECIPE``), to test success >= 0.9 (Slide: 0.7, its published plateau). Push's best
   checkpoint, trained on MJX, then plays 100 episodes in the original gymnasium-robotics env (MJX fidelity).

The JSON holds the machine (device name included), every step's figures and the recipe.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SITE = "/tmp/herjax-site"

# The candidate accelerator recipe: DDPG+HER with HER's future relabelling and sparse rewards, 1,024 envs on one
# device and a batch and update count scaled with them (1 cycle an epoch, so that the test success is seen every
# 51,200 env steps). Not yet measured on a GPU: this check is what measures it.
# Self-contained (scale=single under it), with the 3-step returns that made the CPU recipe (scale=fast).
ACCELERATOR_RECIPE = ["scale=single", "backend=mjx", "num_envs=1024", "n_cycles=1", "ddpg.n_batches=50",
                      "ddpg.batch_size=8192", "ddpg.buffer_size=5000000", "n_test_episodes=1024", "ddpg.n_step=3"]
TINY_RECIPE = ["backend=mujoco", "num_envs=2", "n_cycles=2", "ddpg.n_batches=2", "ddpg.batch_size=32",
               "ddpg.hidden=[16]", "ddpg.buffer_size=5000", "n_test_episodes=2"]
TASKS = (("fetch_push", 0.9), ("fetch_pick_and_place", 0.9), ("fetch_slide", 0.7))


# What the check imports beyond the device image's own packages (jax, flax, optax, chex, orbax, numpy, ...): the
# modules of the wheels ``gpu_wheels.sh`` fetches (tests/test_gpu_check.py keeps the two lists in step).
NEEDED = ("mujoco", "mujoco.mjx", "flashbax", "gymnasium_robotics", "omegaconf", "tensorboardX")


def _missing() -> list[str]:
    def found(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a submodule of a missing package
            return False

    return [name for name in NEEDED if not found(name)]


def ensure_dependencies(wheels: str | None) -> None:
    """Installs the carried wheels and restarts, if a module the check needs is missing (step 1)."""
    missing = _missing()
    if not missing or os.environ.get("HERJAX_GPU_CHECK_INSTALLED") == "1":
        return
    if not wheels or not os.path.isdir(wheels):
        raise SystemExit(f"gpu_check: {', '.join(missing)} missing and no wheel folder was given (--wheels; "
                         f"{wheels!r} is not a folder): fetch them with bash benchmarks/gpu_wheels.sh")
    found = sorted(os.path.join(wheels, name) for name in os.listdir(wheels) if name.endswith(".whl"))
    print(f"gpu_check: installing {len(found)} wheels from {wheels} into {SITE}", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--no-cache-dir", "--upgrade", "--target", SITE, *found], check=True)
    env = dict(os.environ, HERJAX_GPU_CHECK_INSTALLED="1",
               PYTHONPATH=os.pathsep.join(filter(None, [SITE, REPO, os.environ.get("PYTHONPATH")])))
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def _step(name: str, results: dict, out: str, fn, *args) -> None:
    began = time.perf_counter()
    try:
        results[name] = fn(*args)
    except Exception as e:  # noqa: BLE001 -- a failed step is recorded, and the check goes on
        results[name] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()[-3000:]}
        print(f"gpu_check: {name} failed: {type(e).__name__}: {e}", flush=True)
    results.setdefault("step_s", {})[name] = round(time.perf_counter() - began, 1)
    _write(results, out)


def _write(results: dict, out: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(results, f, indent=1)
    os.replace(out + ".tmp", out)


def throughput(sizes: list[int], steps: int, repeats: int, backend: str) -> list[dict]:
    from benchmarks.env_throughput import measure

    rows = []
    for num_envs in sizes:
        row = measure("push", backend, num_envs, steps, repeats)
        print(f"gpu_check: {backend} push at {num_envs:,} envs: {row['env_steps_per_s']:,.0f} env steps/s "
              f"(compile and first call {row['compile_and_first_call_s']:.1f} s)", flush=True)
        rows.append(row)
    return rows


def time_to_success(recipe: list[str], deadline: float, max_steps: int, tasks=TASKS,
                    original_episodes: int = 0) -> list[dict]:
    """Each task to its threshold while the budget lasts; then Push's best checkpoint (trained on MJX) plays
    ``original_episodes`` episodes in the original gymnasium-robotics env (issue 9's MJX fidelity check)."""
    from benchmarks.time_to_success import original_success, run_one

    rows = []
    for env, threshold in tasks:
        left = deadline - time.time()
        if left < 30:
            rows.append({"env": env, "skipped": f"budget spent ({left:.0f} s left)"})
            continue
        row = run_one(env, 0, threshold, max_steps, left, recipe)
        rows.append({"env": env, "threshold": threshold, "wall_budget_s": round(left), **row})
        print(f"gpu_check: {env}: reached {row['reached']} at {row['env_steps']} env steps, {row['wall_s']} s",
              flush=True)
        if env == "fetch_push" and original_episodes:
            try:  # a failure here keeps the time-to-success row
                rows[-1]["original_env_success"] = original_success(env, row["run_dir"], original_episodes)
                rows[-1]["original_env_episodes"] = original_episodes
                print(f"gpu_check: {env}: best checkpoint in the original env: {rows[-1]['original_env_success']}",
                      flush=True)
            except Exception as e:  # noqa: BLE001 -- recorded, and the check goes on
                rows[-1]["original_env_error"] = f"{type(e).__name__}: {e}"
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheels", default=None, help="folder of wheels to install if mujoco or MJX is missing")
    parser.add_argument("--out", default=os.path.join(os.environ.get("OUT", HERE), "gpu_check.json"))
    parser.add_argument("--budget-s", type=float, default=540.0, help="wall-clock for the whole check")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and budgets on the C engine (a CPU test)")
    args = parser.parse_args(argv)
    began = time.time()
    ensure_dependencies(args.wheels)
    sys.path.insert(0, REPO)
    from benchmarks.machine import describe

    results: dict = {"machine": describe(), "tiny": args.tiny}
    results["machine"]["device_name"] = results["machine"]["devices"][0] if results["machine"]["devices"] else None
    if args.tiny:
        backend, sizes, steps, repeats, recipe, max_steps = "mujoco", [4, 8], 2, 1, TINY_RECIPE, 400
    else:
        backend, sizes, steps, repeats, recipe, max_steps = "mjx", [1024, 4096, 16384], 10, 3, ACCELERATOR_RECIPE, 10**8
    results["recipe"] = recipe
    _step("throughput", results, args.out, throughput, sizes, steps, repeats, backend)
    tasks = TASKS[:1] if args.tiny else TASKS
    _step("time_to_success", results, args.out, time_to_success, recipe, began + args.budget_s, max_steps, tasks,
          2 if args.tiny else 100)
    results["wall_s"] = round(time.time() - began, 1)
    _write(results, args.out)
    print(f"gpu_check: wrote {args.out} ({results['wall_s']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
