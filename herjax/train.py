"""Train DDPG+HER from the command line or a notebook.

    python -m herjax.train env=fetch_reach
    python -m herjax.train env=fetch_push seed=3 ddpg.batch_size=512 total_env_steps=2e5
    python -m herjax.train env=fetch_push scale=paper          # the paper's 19 workers on one device
    python -m herjax.train --help                              # every key and its default

    from herjax.train import train
    result = train(["env=fetch_reach", "seed=1"])   # or train(TrainConfig(...)) or train({"seed": 1})
    result.history[-1]["test/success_rate"]

A run writes ``<run_dir>/config.yaml`` (the resolved config) and ``<run_dir>/progress.csv`` (one row per epoch,
columns ``PROGRESS_COLUMNS``), and prints one line per epoch. A bad argument prints one line on stderr and exits
with status 2 before anything is compiled.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
from typing import Any, Callable, Optional, Sequence, Union

from herjax import config as config_lib
from herjax.config import ConfigError, TrainConfig

PROGRESS_COLUMNS = ("epoch", "env_steps", "wall_s", "epoch_s", "steps_per_s")  # then loops.EPOCH_METRICS


@dataclasses.dataclass
class TrainResult:
    """What a run returns.

    Attributes:
        config: the resolved config.
        history: one dict per epoch, keyed like ``progress.csv``'s columns.
        state: the final ``loops.TrainState`` (agent, buffer, key, counters).
        run_dir: where the run's files are.
        trainer: the compiled ``loops.Trainer``; ``trainer.run_epoch(state)`` goes on without recompiling.
    """

    config: TrainConfig
    history: list[dict[str, float]]
    state: Any
    run_dir: str
    trainer: Any


def _make_run_dir(path: str) -> str:
    """Creates ``path``; if it already holds a run, a fresh ``path-1``, ``path-2``... instead."""
    candidate, n = path, 0
    while os.path.exists(os.path.join(candidate, "progress.csv")):
        n += 1
        candidate = f"{path}-{n}"
    os.makedirs(candidate, exist_ok=True)
    return candidate


def _progress_line(row: dict[str, float], n_epochs: int) -> str:
    return (
        f"epoch {int(row['epoch']):>3}/{n_epochs} | env steps {int(row['env_steps']):>9,} | "
        f"{row['steps_per_s']:7.0f} steps/s | test success {row['test/success_rate']:.3f} | "
        f"train success {row['train/success_rate']:.3f} | test Q {row['test/mean_Q']:7.3f} | "
        f"{row['wall_s']:7.1f} s"
    )


def train(
    cfg_or_overrides: Union[TrainConfig, Sequence[str], dict, None] = None,
    *,
    log: Optional[Callable[[str], None]] = print,
    should_stop: Optional[Callable[[dict[str, float]], bool]] = None,
) -> TrainResult:
    """Runs a whole training run on the host (NOT a pure function: it writes files and prints).

    Args:
        cfg_or_overrides: a ``TrainConfig``, a list of ``key=value`` strings, a ``{dotted_key: value}`` dict, or
            ``None`` for the defaults. See ``herjax.config``.
        log: called with each progress line; ``None`` silences the run.
        should_stop: called with each epoch's row (after it is logged); ``True`` ends the run there, e.g. on a
            wall-clock budget. ``cfg.stop_success`` is checked as well.

    Returns:
        ``TrainResult``. Raises ``herjax.config.ConfigError`` on a bad config.
    """
    cfg = config_lib.load(cfg_or_overrides)
    # Heavy imports after validation, so that a bad argument fails before JAX does any work.
    import jax

    from herjax import envs, loops

    env = envs.make(cfg.env, backend=cfg.backend)
    trainer = loops.make_train(cfg, env)
    total_epochs = config_lib.n_epochs(cfg, env.episode_length)
    run_dir = _make_run_dir(cfg.run_dir)
    if run_dir != cfg.run_dir:
        cfg = dataclasses.replace(cfg, run_dir=run_dir)
    with open(os.path.join(run_dir, "config.yaml"), "w") as f:
        f.write(config_lib.to_yaml(cfg))
    if log:
        log(f"herjax.train: {cfg.env} ({env.backend}), {total_epochs} epochs of {trainer.steps_per_epoch:,} "
            f"env steps, run_dir {run_dir}")

    columns = PROGRESS_COLUMNS + loops.EPOCH_METRICS
    history: list[dict[str, float]] = []
    start = time.perf_counter()
    state = trainer.init(jax.random.key(cfg.seed))
    with open(os.path.join(run_dir, "progress.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for _ in range(total_epochs):
            epoch_start = time.perf_counter()
            state, metrics = trainer.run_epoch(state)
            metrics = jax.device_get(metrics)
            now = time.perf_counter()
            epoch_s = now - epoch_start
            row = {
                "epoch": int(state.epoch),
                "env_steps": int(state.env_steps),
                "wall_s": now - start,
                "epoch_s": epoch_s,
                "steps_per_s": trainer.steps_per_epoch / epoch_s,
                **{k: float(v) for k, v in metrics.items()},
            }
            history.append(row)
            writer.writerow(row)
            f.flush()
            if log:
                log(_progress_line(row, total_epochs))
            if cfg.stop_success is not None and row["test/success_rate"] >= cfg.stop_success:
                break
            if should_stop is not None and should_stop(row):
                break
    if log and history:
        best = max(row["test/success_rate"] for row in history)
        log(f"herjax.train: done, {len(history)} epochs, {history[-1]['env_steps']:,} env steps, "
            f"{time.perf_counter() - start:.1f} s, best test success {best:.3f}; wrote {run_dir}")
    return TrainResult(config=cfg, history=history, state=state, run_dir=run_dir, trainer=trainer)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI: ``key=value`` overrides; returns the exit status (2 for a bad argument)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__.split("\n\n")[0] + "\n\nusage: python -m herjax.train [key=value ...]\n\nkeys and defaults:")
        print(config_lib.usage())
        return 0
    try:
        cfg = config_lib.load(argv)
    except ConfigError as e:
        print(f"herjax.train: error: {e}", file=sys.stderr)
        return 2
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
