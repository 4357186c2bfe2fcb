"""What several test files share about runs: a tiny DDPG config, ``progress.csv`` read back for equality, and a
program run in a subprocess with a deadline (for hangs)."""

import csv
import os
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# DDPG+HER on FetchReach (the default env), small enough that an epoch (2 cycles x 2 envs x 50 steps) takes ~1 s.
TINY_DDPG = ["n_cycles=2", "ddpg.n_batches=2", "ddpg.batch_size=32", "ddpg.hidden=[16]", "ddpg.buffer_size=5000",
             "n_test_episodes=4"]
TIMING = {"wall_s", "epoch_s", "steps_per_s"}


def progress_rows(run_dir):
    """``progress.csv`` as written (strings, so equality is bit equality), without the timing columns."""
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def finishes(program: str, timeout: float, hang: str) -> None:
    """Runs ``program`` (Python source, dedented; it must print ``finished`` last) from the repository root in a
    fresh interpreter; fails the test with ``hang`` if it has not ended in ``timeout`` seconds, or with its stderr."""
    try:
        out = subprocess.run([sys.executable, "-c", textwrap.dedent(program)], cwd=REPO, capture_output=True,
                             text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish in {timeout:.0f} s: {hang}")
    assert out.returncode == 0 and "finished" in out.stdout, out.stderr[-2000:]
