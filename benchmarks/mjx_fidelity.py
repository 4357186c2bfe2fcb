"""Does a policy trained on MJX keep its success in the original env? The MJX-fidelity check of issue 9.

    python -m benchmarks.mjx_fidelity                          # train FetchPush on MJX (seed 0), then play it
    python -m benchmarks.mjx_fidelity --run-dir RUN_DIR        # play an MJX-trained run that exists

Training is ``herjax.train`` with ``backend=mjx`` and the device's recipe (``scale=fast``; ``--set`` adds keys),
stopped at the first epoch with test success >= ``--threshold`` or at ``--max-steps``. The run's best checkpoint
then plays ``--episodes`` deterministic episodes in three envs:

* MJX, the engine it trained on (``herjax.play``, ``backend=mjx``);
* herjax's C engine (``herjax.play``, ``backend=mujoco``);
* the original gymnasium-robotics env (``FetchPush-v4`` through ``herjax.policy.load``; ``tests/reference.py``).

``original_over_mjx`` is the share of its MJX success the policy keeps in the original env (the goal: >= 0.9).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from benchmarks.machine import describe, save  # noqa: E402
from benchmarks.time_to_success import original_success  # noqa: E402


def train_on_mjx(env: str, seed: int, threshold: float, max_steps: int, extra: list[str]) -> str:
    from herjax.train import train

    run_dir = tempfile.mkdtemp(prefix=f"mjx_fidelity_{env}_{seed}_")
    train([f"env={env}", "backend=mjx", f"seed={seed}", f"stop_success={threshold}",
           f"total_env_steps={max_steps}", f"run_dir={run_dir}", *extra],
          log=lambda line: print(f"  [{env} seed {seed}] {line}", flush=True))
    return run_dir


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="fetch_push")
    parser.add_argument("--run-dir", default=None, help="an MJX-trained run to play (default: train one)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--max-steps", type=int, default=600_000)
    parser.add_argument("--set", nargs="*", default=["n_test_episodes=50"], metavar="KEY=VALUE",
                        help="extra herjax.train keys (default: 50 test episodes an epoch; MJX is slow on a CPU)")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--note", default=None, help="a remark stored with the result")
    parser.add_argument("--out", default=None, help="default: benchmarks/results/mjx_fidelity_<env>_<backend>.json")
    args = parser.parse_args(argv)

    import herjax.play
    from herjax.plot import read_run

    run_dir = args.run_dir or train_on_mjx(args.env, args.seed, args.threshold, args.max_steps, args.set)
    run = read_run(run_dir)  # its flat config and progress.csv
    env, backend = run.config["env"], run.config["backend"]
    if backend != "mjx":
        raise SystemExit(f"mjx_fidelity: {run_dir} trained on backend={backend!r}, not 'mjx'")
    played = {}
    for engine in ("mjx", "mujoco"):
        result = herjax.play.play(run_dir, episodes=args.episodes, backend=engine, seed=10_000, log=None)
        played[engine] = round(float(result.success_rate), 4)
        print(f"best checkpoint ({result.checkpoint}) on herjax {engine}: {played[engine]:.2f}", flush=True)
    original = original_success(env, run_dir, args.episodes)
    print(f"best checkpoint in the original env: {original:.2f}", flush=True)
    history = [{"env_steps": int(steps), "test_success": round(float(success), 3)}
               for steps, success in zip(run.columns["env_steps"], run.columns["test/success_rate"])]
    hit = next((row for row in history if row["test_success"] >= args.threshold), None)
    machine = describe()
    out = args.out or os.path.join(HERE, "results", f"mjx_fidelity_{env}_{machine['jax_backend']}.json")
    save(out, {
        "machine": machine, "definition": __doc__.split("\n\n")[2:4], "env": env, "seed": run.config["seed"],
        "run_config": run.config,
        "trained": {"backend": "mjx", "reached_threshold_at_env_steps": hit["env_steps"] if hit else None,
                    "threshold": args.threshold, "test_success_by_epoch": history},
        "episodes": args.episodes,
        "success": {"mjx": played["mjx"], "herjax_c_engine": played["mujoco"], "original": original},
        "original_over_mjx": round(original / played["mjx"], 3) if played["mjx"] else None,
        **({"note": args.note} if args.note else {}),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
