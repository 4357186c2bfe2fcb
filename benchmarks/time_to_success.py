"""Env steps and wall-clock time to the first epoch whose test success rate reaches a threshold.

Runs ``herjax.train.train`` (the defaults: ``scale=single``, one baselines worker; ``--set KEY=VALUE`` for any
other config, e.g. ``scale=workers8``) for each env and seed, stopping at the first epoch with test success >=
``--threshold`` or when a budget (env steps or wall seconds) is spent. Reports per seed and the median over
seeds, with machine info, into a JSON file; results for envs already in that file and not run now are kept.

    python benchmarks/time_to_success.py --envs fetch_reach --seeds 0 1 2
    python benchmarks/time_to_success.py --envs fetch_reach --algs ddpg_her td3_her sac_her --out reach_algs.json
    python benchmarks/time_to_success.py --envs fetch_push --max-steps 150000 --max-wall-s 420

Wall time counts everything from the call of ``train``: env and agent construction, the first epoch's
compilation (reported separately as ``first_epoch_s``) and the evaluations. Env steps count training episodes
only, as baselines does. The medians are over all seeds when every seed reached the threshold; otherwise they are
``null`` and ``reached`` says how many did.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from herjax.train import reached, train  # noqa: E402  (after the path insert; herjax sets its XLA flag on import)

DEFAULT_OUT = os.path.join(HERE, "results", "time_to_success_cpu.json")
DEFAULT_MAX_STEPS = {"fetch_reach": 20_000, "fetch_push": 1_000_000}
# Slide's published curve plateaus near 0.7 (REFERENCE section 2): its target is that plateau, the others' 0.9.
DEFAULT_THRESHOLDS = {"fetch_slide": 0.7}
# The published curves (Plappert et al. 2018's hyper-parameters in a PyTorch port, median of 5 seeds; REFERENCE
# section 2), stored beside every result of the same task.
PUBLISHED = {
    "fetch_reach": {"workers": 1, "success": 1.0, "epochs": 5, "env_steps": 5_000},
    "fetch_push": {"workers": 8, "success": 0.9, "epochs": 15, "env_steps": 600_000},
    "fetch_pick_and_place": {"workers": 16, "success": 0.9, "epochs": 33, "env_steps": 2_600_000},
    "fetch_slide": {"workers": 8, "success": 0.7, "epochs": None, "env_steps": 4_000_000,
                    "remark": "plateaus near 0.7 at >= 4M env steps"},
}


def machine_info() -> dict:
    import jax
    import mujoco

    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "mujoco": mujoco.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }


def original_success(env: str, run_dir: str, episodes: int) -> float:
    """Success rate of the run's best checkpoint (``herjax.policy.load``) in the original gymnasium-robotics env
    (``FetchPush-v4``, ...), over ``episodes`` episodes from seeds 10000, 10001, ... (tests/reference.py)."""
    tests = os.path.join(os.path.dirname(HERE), "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    import reference

    import herjax.policy

    out = reference.rollout_original(env.removeprefix("fetch_"), herjax.policy.load(run_dir), episodes, seed=10_000)
    return round(float(out["is_success"].mean()), 4)


def run_one(env: str, seed: int, threshold: float, max_steps: int, max_wall_s: float | None,
            overrides: list[str], original_episodes: int = 0) -> dict:
    run_dir = tempfile.mkdtemp(prefix=f"tts_{env}_{seed}_")
    stop_wall = (lambda row: row["wall_s"] >= max_wall_s) if max_wall_s else None
    start = time.perf_counter()
    result = train(
        [f"env={env}", f"seed={seed}", f"total_env_steps={max_steps}", f"stop_success={threshold}",
         f"run_dir={run_dir}", *overrides],
        log=lambda line: print(f"  [{env} seed {seed}] {line}", flush=True),
        should_stop=stop_wall,
    )
    total_s = time.perf_counter() - start
    history = result.history
    hit = next((row for row in history if reached(row["test/success_rate"], threshold)), None)
    original = {}
    if original_episodes:
        original = {"original_env_success": original_success(env, run_dir, original_episodes),
                    "original_env_episodes": original_episodes}
        print(f"  [{env} seed {seed}] best checkpoint in the original env: {original['original_env_success']:.2f} "
              f"over {original_episodes} episodes", flush=True)
    return {
        "seed": seed,
        "reached": hit is not None,
        "env_steps": int(hit["env_steps"]) if hit else None,
        "wall_s": round(hit["wall_s"], 2) if hit else None,
        "epochs_run": len(history),
        "env_steps_run": int(history[-1]["env_steps"]),
        "wall_s_run": round(total_s, 2),
        "first_epoch_s": round(history[0]["epoch_s"], 2),
        "steady_steps_per_s": round(statistics.median(r["steps_per_s"] for r in history[1:]), 1)
        if len(history) > 1 else None,
        "best_test_success": round(max(r["test/success_rate"] for r in history), 4),
        "final_test_success": round(history[-1]["test/success_rate"], 4),
        "test_success_by_epoch": [round(r["test/success_rate"], 3) for r in history],
        "stopped_by": "threshold" if hit else ("wall budget" if max_wall_s and history[-1]["wall_s"] >= max_wall_s
                                               else "env-step budget"),
        "run_dir": run_dir,
        **original,
    }


def summarise(runs: list[dict]) -> dict:
    reached = [r for r in runs if r["reached"]]
    every = len(reached) == len(runs)
    return {
        "reached": f"{len(reached)}/{len(runs)}",
        "median_env_steps": statistics.median(r["env_steps"] for r in runs) if every else None,
        "median_wall_s": round(statistics.median(r["wall_s"] for r in runs), 2) if every else None,
        "median_best_test_success": statistics.median(r["best_test_success"] for r in runs),
        "median_env_steps_run": statistics.median(r["env_steps_run"] for r in runs),
        **({"median_original_env_success": statistics.median(r["original_env_success"] for r in runs)}
           if all("original_env_success" in r for r in runs) else {}),
    }


def parse_max_steps(values: list[str], envs: list[str]) -> dict[str, int]:
    """``["20000"]`` for every env, or ``["fetch_push=200000", ...]`` per env; defaults fill the rest."""
    out = {env: DEFAULT_MAX_STEPS.get(env, 1_000_000) for env in envs}
    for value in values or []:
        env, sep, steps = value.rpartition("=")
        steps = int(float(steps))
        if sep:
            out[env] = steps
        else:
            out = {e: steps for e in envs}
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["fetch_reach", "fetch_push"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--algs", nargs="+", default=["ddpg_her"],
                        help="algorithms to run one after another in this sitting; results of alg X other than "
                             "ddpg_her are stored under 'ENV@X'")
    parser.add_argument("--threshold", type=float, default=None,
                        help="test success to reach (default 0.9; fetch_slide 0.7, its published plateau)")
    parser.add_argument("--max-steps", nargs="+", default=None,
                        help="env-step budget per run: N for all envs, or env=N pairs (defaults: "
                             + ", ".join(f"{k}={v}" for k, v in DEFAULT_MAX_STEPS.items()) + ")")
    parser.add_argument("--max-wall-s", type=float, default=None,
                        help="wall-clock budget per run, checked after each epoch")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra herjax.train overrides, e.g. ddpg.batch_size=512")
    parser.add_argument("--label", default=None,
                        help="store results under 'ENV@LABEL' (e.g. the recipe's name), beside other recipes' results")
    parser.add_argument("--original-episodes", type=int, default=0,
                        help="after each run, play its best checkpoint this many episodes in the original "
                             "gymnasium-robotics env and store the success rate (fidelity of the recipe's policy)")
    parser.add_argument("--note", default=None, help="a remark stored with each env's results")
    parser.add_argument("--add-seeds", action="store_true",
                        help="add these seeds' runs to the entry already in --out (same threshold, budget and "
                             "overrides, checked) instead of replacing it; the summary is taken over all its runs, "
                             "and each sitting's machine is kept")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    max_steps = parse_max_steps(args.max_steps, args.envs)

    report = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            report = json.load(f)
    report.setdefault("results", {})
    report["machine"] = machine_info()
    report["definition"] = (
        "first epoch whose test success rate (n_test_episodes deterministic episodes, 10 x num_envs by default) "
        ">= threshold; env_steps = training env steps at that epoch; wall_s = seconds from the call of train() "
        "(construction, compilation and evaluation included); each algorithm's defaults (off-policy: baselines' loop, "
        "scale=single: 1 worker, 2 envs, batch 256) unless overrides say otherwise"
    )
    jobs = []
    for env, alg in [(env, alg) for env in args.envs for alg in args.algs]:
        key = f"{env}@{args.label}" if args.label else (env if alg == "ddpg_her" else f"{env}@{alg}")
        entry = {
            "threshold": args.threshold if args.threshold is not None else DEFAULT_THRESHOLDS.get(env, 0.9),
            "budget": {"max_env_steps": max_steps[env], "max_wall_s_per_seed": args.max_wall_s},
            "overrides": [f"alg={alg}", *args.set],
        }
        earlier = report["results"].get(key) if args.add_seeds else None
        if args.add_seeds:  # check every entry before the first run, not hours into the sitting
            if earlier is None:
                print(f"--add-seeds: no entry {key!r} in {args.out} to add to (it has: "
                      f"{', '.join(sorted(report['results'])) or 'none'})", file=sys.stderr)
                return 2
            differ = [k for k in entry if earlier.get(k) != entry[k]]
            if differ:
                print(f"--add-seeds: {key!r} in {args.out} was run with another {', '.join(differ)}: "
                      + "; ".join(f"{k} {earlier.get(k)!r} there, {entry[k]!r} here" for k in differ), file=sys.stderr)
                return 2
        jobs.append((env, key, entry, earlier))
    for env, key, entry, earlier in jobs:
        runs = [run_one(env, seed, entry["threshold"], max_steps[env], args.max_wall_s, entry["overrides"],
                        args.original_episodes)
                for seed in args.seeds]
        sittings = [{"seeds": list(args.seeds), "machine": report["machine"]}]
        if earlier:
            kept = [r for r in earlier["runs"] if r["seed"] not in args.seeds]
            runs = sorted(kept + runs, key=lambda r: r["seed"])
            sittings = earlier.get("sittings", [{"seeds": [r["seed"] for r in earlier["runs"]],
                                                 "machine": earlier["machine"]}]) + sittings
        report["results"][key] = {
            **entry,
            "machine": report["machine"],
            **({"sittings": sittings} if earlier else {}),
            "summary": summarise(runs),
            "note": args.note if args.note is not None or not earlier else earlier.get("note"),
            "runs": runs,
            "published": PUBLISHED.get(env),
        }
        print(f"{key}: {json.dumps(report['results'][key]['summary'])}", flush=True)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
