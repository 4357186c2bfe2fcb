"""What several test files share about runs: a tiny DDPG config, and ``progress.csv`` read back for equality."""

import csv
import os

# DDPG+HER on FetchReach (the default env), small enough that an epoch (2 cycles x 2 envs x 50 steps) takes ~1 s.
TINY_DDPG = ["n_cycles=2", "ddpg.n_batches=2", "ddpg.batch_size=32", "ddpg.hidden=[16]", "ddpg.buffer_size=5000",
             "n_test_episodes=4"]
TIMING = {"wall_s", "epoch_s", "steps_per_s"}


def progress_rows(run_dir):
    """``progress.csv`` as written (strings, so equality is bit equality), without the timing columns."""
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]
