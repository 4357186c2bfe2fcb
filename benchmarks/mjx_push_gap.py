"""Where MJX's Push (or Slide) object path parts from the original's: the solver cap, float32, or the contacts.

    python -m benchmarks.mjx_push_gap                      # four MJX variants, one process each (~4 min each, 2 cores)
    python -m benchmarks.mjx_push_gap --task slide         # the same for Slide's puck

The measurement is ``tests/test_parity.py``'s: the scripted push from the original FetchPush-v4's first 100 reset
states, and per episode the largest distance over the first 25 steps between herjax's block and the original's.
Variants: herjax's MJX engine as shipped (Newton capped at 10 iterations, float32, contact points placed as C MuJoCo
places them: ``herjax.envs.mjx_contacts``); the same with MJX's own contact points (each box-box pair's 4 slots
filled with repeats, points on the reference face); the original's solver settings (100 iterations, 50 line-search
iterations, tolerance 1e-8); and those in float64 (``jax_enable_x64``). What the last one leaves is neither the
solver nor the precision: it is what still parts MJX's collision from C MuJoCo's (for Push, nothing measurable since
herjax's box-box test: 0.80 cm against the C engine's 0.84 on 2026-12-06). The C engine's
figure, from ``parity_mujoco_<platform>.json`` (``benchmarks.parity_report``), is stored beside them.

For Slide, "MJX's own contacts" is the 16-sided prism puck (MJX has no cylinder-box test without herjax's:
``herjax.envs.mjx_cylinder_box``), and the C engine's figure comes from ``slide_puck_contacts_<platform>.json``.

Writes ``benchmarks/results/mjx_push_gap_<platform>.json`` (Slide: ``mjx_slide_gap_<platform>.json``).
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
# (name, solver settings, float64, herjax's contact points): herjax's MJX engine as shipped, then with MJX's own
# contact points (herjax.envs.mjx_contacts off), then the original's solver settings, then those in float64.
VARIANTS = [("shipped", None, False, True), ("MJX's own contacts", None, False, False),
            ("original solver", ORIGINAL_SOLVER, False, True), ("original solver, float64", ORIGINAL_SOLVER, True, True)]


def measure(solver: dict | None, x64: bool, c_contacts: bool, task: str = "push") -> dict:
    """One variant, in this process (x64 must be chosen before JAX computes anything)."""
    import jax

    jax.config.update("jax_enable_x64", x64)
    sys.path[:0] = [os.path.join(ROOT, "tests"), ROOT]
    import numpy as np

    import test_parity
    from herjax.envs import physics

    physics.MJX_SOLVER.update(solver or {})
    physics.MJX_C_CONTACTS = c_contacts
    start = time.perf_counter()
    ours, theirs, dev = test_parity.scripted_against_original(task, "mjx")
    return {"solver": dict(physics.MJX_SOLVER), "x64": x64, "c_contacts": c_contacts,
            "median_cm": round(float(np.median(dev)) * 100, 3),
            "p90_cm": round(float(np.percentile(dev, 90)) * 100, 3),
            "scripted_success": ours, "original_scripted_success": theirs,
            "seconds": round(time.perf_counter() - start, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--task", default="push", choices=("push", "slide"))
    p.add_argument("--one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        report(measure(*json.loads(args.one)))
        return 0
    results = []
    for name, *variant in VARIANTS:
        results.append({"variant": name, **in_child("benchmarks.mjx_push_gap", "--one",
                                                     json.dumps([*variant, args.task]))})
        print(json.dumps(results[-1]), flush=True)
    machine = describe()
    results_dir = os.path.join(ROOT, "benchmarks", "results")
    if args.task == "push":
        with open(os.path.join(results_dir, f"parity_mujoco_{machine['jax_backend']}.json")) as f:
            c_engine = json.load(f)["figures"]["push_object_path_deviation_cm"]
    else:
        with open(os.path.join(results_dir, f"slide_puck_contacts_{machine['jax_backend']}.json")) as f:
            row = json.load(f)["scripted_push_from_original_states"]["mujoco:cylinder"]
        c_engine = {"median": row["path_deviation_cm_median"], "p90": row["path_deviation_cm_p90"]}
    path = os.path.join(results_dir, f"mjx_{args.task}_gap_{machine['jax_backend']}.json")
    save(path, {"machine": machine, "measure": "per episode, the largest block-position distance to the original "
                "over the first 25 steps of the scripted push from the original's reset states 0-99",
                "c_engine_cm": c_engine, "variants": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
