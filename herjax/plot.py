"""Learning curves of one or more runs as a PNG.

    python -m herjax.plot runs/fetch_reach/ddpg_her/20250101-120000            # -> <run_dir>/success.png
    python -m herjax.plot runs/fetch_push --out push.png                      # every run found below runs/fetch_push
    python -m herjax.plot runs/a runs/b --metric test/mean_Q --out q.png

Two panels: the metric (default ``test/success_rate``) against env steps, and against wall-clock time. Runs of
the same config are one curve: the median across them, with the interquartile range shaded. Two runs share a
config when their ``config.yaml`` are equal except for ``seed``, ``run_dir``, the run-control keys
(``total_env_steps``, ``stop_success``, ``save_every``, ``keep_every``) and the sections of algorithms other
than theirs. A curve is labelled by the keys that tell it apart from the others, and the number of runs.

Arguments are run directories (with ``config.yaml`` and ``progress.csv``) or folders searched for them. The
default ``--out`` is ``<run_dir>/success.png`` for one run and ``success.png`` otherwise (named after the metric
when ``--metric`` is given). Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import os
import sys
import textwrap
import warnings
from typing import Any, Optional, Sequence

import numpy as np

from herjax import algs as algs_lib
from herjax import config as config_lib

IGNORED_KEYS = ("seed", "num_seeds", "run_dir") + config_lib.RUN_CONTROL_KEYS


class PlotError(ValueError):
    """Bad input; the message is one line."""


@dataclasses.dataclass
class Run:
    """One run read back: its directory, flat config (``{dotted_key: value}``) and ``progress.csv`` columns."""

    run_dir: str
    config: dict[str, Any]
    columns: dict[str, np.ndarray]


def find_runs(paths: Sequence[str]) -> list[str]:
    """Run directories at or below ``paths`` (folders holding ``config.yaml`` and ``progress.csv``), sorted."""
    found = []
    for path in paths:
        if not os.path.isdir(path):
            raise PlotError(f"{path!r} is not a directory")
        hits = [root for root, _, files in os.walk(path) if {"config.yaml", "progress.csv"} <= set(files)]
        if not hits:
            raise PlotError(f"no run (a folder with config.yaml and progress.csv) at or below {path!r}")
        found += sorted(hits)
    return list(dict.fromkeys(found))


def read_run(run_dir: str) -> Run:
    from herjax.runs.checkpoint import CheckpointError, read_config

    try:
        cfg = read_config(run_dir)
    except CheckpointError as e:
        raise PlotError(str(e)) from None
    path = os.path.join(run_dir, "progress.csv")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        columns = {}
        for key in rows[0] if rows else ():
            columns[key] = np.array([float(r[key]) if r[key] not in ("", None) else np.nan for r in rows])
    except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as e:
        raise PlotError(f"cannot read {path}: {' '.join(str(e).split())[:160]} (expected the CSV herjax.train "
                        "writes: a header row, then one row of numbers per epoch)") from None
    return Run(run_dir=run_dir, config=config_lib.flat_dict(cfg), columns=columns)


def config_key(config: dict[str, Any]) -> tuple:
    """What runs of one config share: the config without ``IGNORED_KEYS`` and other algorithms' sections."""
    active = algs_lib.get(config["alg"]).section if config["alg"] in algs_lib.REGISTRY else None
    other_sections = set(config_lib.sections()) - {active}
    return tuple(
        (k, config_lib._dotlist_value(v)) for k, v in sorted(config.items())
        if k not in IGNORED_KEYS and k.split(".", 1)[0] not in other_sections
    )


def group_runs(runs: Sequence[Run]) -> dict[tuple, list[Run]]:
    """Runs grouped by ``config_key``, in order of first appearance."""
    groups: dict[tuple, list[Run]] = {}
    for run in runs:
        groups.setdefault(config_key(run.config), []).append(run)
    return groups


def _labels(keys: Sequence[tuple]) -> list[str]:
    """``env alg`` and the keys whose values differ between groups, e.g. ``fetch_reach ddpg_her ddpg.replay_k=8``."""
    dicts = [dict(k) for k in keys]
    all_keys = dict.fromkeys(k for d in dicts for k in d)
    differing = [k for k in all_keys if k not in ("env", "alg") and len({d.get(k) for d in dicts}) > 1]
    return [" ".join([d["env"], d["alg"]] + [f"{k}={d.get(k, '-')}" for k in differing]) for d in dicts]


def _step_values(x: np.ndarray, y: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The value of the last row at or before each grid point; NaN before the first row and after the last."""
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    index = np.searchsorted(x, grid, side="right") - 1
    out = np.where(index >= 0, y[np.clip(index, 0, None)], np.nan)
    return np.where(grid > x[-1], np.nan, out)


def median_iqr(runs: Sequence[Run], x_key: str, metric: str, grid: np.ndarray) -> tuple[np.ndarray, ...]:
    """Median, 25th and 75th percentile of ``metric`` across ``runs`` on ``grid`` of ``x_key`` (NaN where no
    run has a value)."""
    values = np.stack([_step_values(r.columns[x_key], r.columns[metric], grid) for r in runs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns stay NaN
        return (np.nanmedian(values, axis=0), np.nanpercentile(values, 25, axis=0),
                np.nanpercentile(values, 75, axis=0))


def plot(paths: Sequence[str], out: Optional[str] = None, metric: str = "test/success_rate") -> str:
    """Writes the PNG of the runs at or below ``paths`` and returns its path (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [read_run(d) for d in find_runs(paths)]
    runs_with_rows = [r for r in runs if r.columns.get("env_steps") is not None and len(r.columns["env_steps"])]
    if not runs_with_rows:
        raise PlotError("no run has a row in progress.csv yet")
    missing = [r.run_dir for r in runs_with_rows if metric not in r.columns]
    if missing:
        raise PlotError(f"metric {metric!r} is not a column of {missing[0]}/progress.csv")
    if out is None:
        name = "success.png" if metric == "test/success_rate" else metric.replace("/", "_") + ".png"
        out = os.path.join(runs[0].run_dir, name) if len(runs) == 1 else name
    groups = group_runs(runs_with_rows)
    labels = _labels(list(groups))

    wall_max = max(float(np.nanmax(r.columns["wall_s"])) for r in runs_with_rows)
    minutes = wall_max > 600
    fig, (ax_steps, ax_wall) = plt.subplots(1, 2, figsize=(12, 5.5), constrained_layout=True)
    for (_, members), label, color in zip(groups.items(), labels, plt.rcParams["axes.prop_cycle"].by_key()["color"]
                                           * (len(groups) // 10 + 1)):
        text = textwrap.fill(f"{label} ({len(members)} run{'s' if len(members) > 1 else ''})", 110)
        steps = np.unique(np.concatenate([r.columns["env_steps"] for r in members]))
        med, lo, hi = median_iqr(members, "env_steps", metric, steps)
        ax_steps.plot(steps, med, color=color, label=text, marker="." if len(steps) < 30 else None)
        ax_steps.fill_between(steps, lo, hi, color=color, alpha=0.25, linewidth=0)
        end = max(float(np.nanmax(r.columns["wall_s"])) for r in members)
        grid = np.linspace(0.0, end, 400)
        med, lo, hi = median_iqr(members, "wall_s", metric, grid)
        scale = 60.0 if minutes else 1.0
        ax_wall.plot(grid / scale, med, color=color, label=text)
        ax_wall.fill_between(grid / scale, lo, hi, color=color, alpha=0.25, linewidth=0)
    for ax, xlabel in [(ax_steps, "env steps"), (ax_wall, "wall-clock (min)" if minutes else "wall-clock (s)")]:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        if metric.endswith("success_rate"):
            ax.set_ylim(-0.02, 1.02)
    fig.legend(*ax_steps.get_legend_handles_labels(), loc="outside lower center", fontsize="small", frameon=False)
    fig.suptitle(f"{metric}: median and interquartile range across runs of one config")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, status 2
        raise PlotError(message)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI; returns the exit status (2 for bad input)."""
    parser = _Parser(prog="python -m herjax.plot", description=__doc__.split("\n\n")[0],
                     epilog="See the module docstring of herjax/plot.py for the grouping rule.")
    parser.add_argument("runs", nargs="+", help="run directories, or folders to search for them")
    parser.add_argument("--out", help="PNG path (default: <run_dir>/success.png for one run, else success.png)")
    parser.add_argument("--metric", default="test/success_rate", help="progress.csv column (default %(default)s)")
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else argv)
        out = plot(args.runs, args.out, args.metric)
    except PlotError as e:
        print(f"herjax.plot: error: {e}", file=sys.stderr)
        return 2
    print(f"herjax.plot: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
