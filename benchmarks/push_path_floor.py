"""How far the original FetchPush-v4's own block path moves when its start moves by a fraction of a millimetre: the
noise floor of the Push path measure that ``tests/test_parity.py`` and ``benchmarks/mjx_push_gap.py`` use.

    python -m benchmarks.push_path_floor                   # ~2 min on 2 cores
    python -m benchmarks.push_path_floor --episodes 3 --shifts 0.0001 --out /tmp/floor.json

The measure is the parity test's: the scripted push from the original's reset states ``0 .. episodes-1``, and per
episode the largest distance over the first 25 steps between two block paths. Here both paths are the original's
(gymnasium-robotics, C MuJoCo, float64): one from its own reset state, one from the same state with the block's
start shifted along x or y by ``shift`` metres (then ``mj_forward``, as a reset). A push is a contact between
a finger and a block on a table: a difference at the start grows through it. herjax's engines start from states as
close as the model edits allow (the settled gripper of Push sits 0.8 mm from the original's: ``herjax/envs/README.md``),
so their path figures read against this floor.

Writes ``benchmarks/results/push_path_floor_<platform>.json``.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 25
AXES = ("x", "y")


def block_paths(policy, episodes: int, shift: float = 0.0, axis: int = 0) -> np.ndarray:
    """``[episodes, STEPS + 1, 3]``: the original's block position at reset and after each scripted step, the block
    started ``shift`` metres along ``axis`` from where the reset put it (``reference.rollout_original``'s episodes,
    as the parity test plays them)."""
    import reference as R

    def shifted(env):
        unwrapped = env.unwrapped
        state = R.original_state(unwrapped)
        state["qpos"][unwrapped.model.jnt_qposadr[unwrapped.model.joint("object0:joint").id] + axis] += shift
        R.set_original_state(unwrapped, state)
        return unwrapped._get_obs()

    out = R.rollout_original("push", policy, episodes, seed=0, record_paths=True,
                             after_reset=shifted if shift else None)
    return out["object_path"][:, : STEPS + 1]


def measure(episodes: int, shifts: list[float]) -> list[dict]:
    sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT]
    import test_parity

    policy = test_parity._jit_policy("push")
    base = block_paths(policy, episodes)
    rows = []
    for shift in shifts:
        for axis, name in enumerate(AXES):
            dev = np.linalg.norm(block_paths(policy, episodes, shift, axis) - base, axis=-1).max(axis=1)
            rows.append({"shift_mm": shift * 1000, "axis": name, "median_cm": round(float(np.median(dev)) * 100, 3),
                         "p90_cm": round(float(np.percentile(dev, 90)) * 100, 3),
                         "max_cm": round(float(dev.max()) * 100, 3)})
            print(f"block start shifted {shift * 1000:g} mm along {name}: path moves {rows[-1]['median_cm']} cm "
                  f"(median), {rows[-1]['p90_cm']} cm (90th percentile)", flush=True)
    return rows


def main(argv=None) -> int:
    sys.path.insert(0, ROOT)
    from benchmarks.machine import describe, save

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--shifts", type=float, nargs="+", default=[1e-5, 1e-4, 8e-4], help="in metres")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.episodes < 1:
        p.error(f"bad value {args.episodes} for --episodes: expected an integer >= 1")
    machine = describe()
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"push_path_floor_{machine['jax_backend']}.json")
    save(out, {"machine": machine, "episodes": args.episodes,
               "measure": "per episode, the largest distance over the first 25 scripted steps between the original "
                          "FetchPush-v4's block path and the same from the block's start shifted by shift_mm",
               "rows": measure(args.episodes, args.shifts)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
