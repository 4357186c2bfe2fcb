"""Runs the parity tests against the original gymnasium-robotics envs and records their numbers.

    python -m benchmarks.parity_report --backend mjx       # the slow MJX parity tests (~10 min on 2 CPU cores)
    python -m benchmarks.parity_report --backend mujoco

Writes ``benchmarks/results/parity_<backend>_<platform>.json``: each test's outcome and the figures it printed
(gripper error, scripted success rates, object-path deviation).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURES = [
    ("reach_gripper_error_mm", r"reach {b}: gripper error max ([\d.]+) mm, mean ([\d.]+) mm", ("max", "mean")),
    ("push_scripted_success", r"push {b}: scripted success herjax ([\d.]+), original ([\d.]+)", ("herjax", "original")),
    ("pick_and_place_scripted_success", r"pick_and_place {b}: scripted success herjax ([\d.]+), original ([\d.]+)",
     ("herjax", "original")),
    ("push_object_path_deviation_cm",
     r"push {b}: object path deviation over 25 steps: median ([\d.]+) cm, 90th pct ([\d.]+) cm, max ([\d.]+) cm",
     ("median", "p90", "max")),
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["mjx", "mujoco"], default="mjx")
    args = p.parse_args()
    sys.path.insert(0, ROOT)
    from benchmarks.machine import describe

    machine = describe()
    cmd = [sys.executable, "-m", "pytest", "-q", "-s", "-rA", "-p", "no:cacheprovider", "tests/test_parity.py",
           "-k", args.backend, "-m", "slow or not slow", "-n", "0"]  # one process: xdist's workers swallow -s prints
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    figures = {}
    for name, pattern, fields in FIGURES:
        match = re.search(pattern.format(b=args.backend), out)
        if match:
            figures[name] = dict(zip(fields, map(float, match.groups())))
    outcomes = {test: status for status, test in re.findall(r"^(PASSED|FAILED) (tests/test_parity.py::\S+)", out, re.M)}
    lines = [line for line in out.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    summary = lines[-1].strip("= ") if lines else "no pytest summary line"
    result = {"machine": machine, "backend": args.backend, "summary": summary, "tests": outcomes, "figures": figures}
    path = os.path.join(ROOT, "benchmarks", "results", f"parity_{args.backend}_{machine['jax_backend']}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(figures, indent=1))
    print(summary)
    print(f"wrote {path}")
    return proc.returncode


if __name__ == "__main__":
    sys.exit(main())
