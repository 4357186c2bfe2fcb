"""Grids of runs from the command line, through Hydra's multirun (host side: NOT pure, it launches runs).

    python -m herjax.train -m ddpg.replay_k=0,4 seed=0,1,2                 # 6 runs, one after another
    python -m herjax.train -m env=fetch_push seed='range(5)' run_dir=runs/push_seeds
    python -m herjax.train -m ddpg.replay_k=0,4 seed=0,1,2 hydra/launcher=submitit_slurm \\
        hydra.launcher.partition=gpu hydra.launcher.timeout_min=240 hydra.launcher.gpus_per_node=1

``-m`` (``--multirun``) takes Hydra's sweep syntax for any key of ``herjax.config``: ``key=a,b,c``,
``key=range(0,5)``, ``key=choice(a,b)``; the grid is their product (Hydra's basic sweeper). Every job is an
ordinary ``herjax.train.train`` run of that job's ``key=value`` overrides, so its validation, logs, checkpoints and
``resume=`` are the usual ones. Before anything is launched or created, every job of the grid is loaded with
``herjax.config.load``: a bad key or value anywhere, or a malformed sweep, is one line and exit status 2.

Runs go to ``<root>/<varied keys>/``, e.g. ``runs/grid/20250101-120000/ddpg.replay_k=0,seed=1/`` (as Spinning
Up's ``ExperimentGrid`` names them: only the keys that vary; Hydra's ``hydra.job.override_dirname``, a ``/`` in a
swept path written ``%2F``). The root is ``run_dir=`` (or ``hydra.sweep.dir=``), by default
``runs/grid/<timestamp>``; Hydra leaves one file there, ``multirun.yaml``. A job whose directory already holds a
checkpoint resumes it, so running the same grid again with the same root finishes what a timeout, a preemption or
Ctrl-C left undone (and does nothing for finished runs).

Launchers are Hydra's: the basic one (default: in this process, one job after another; a compiled trainer is
reused by the next job that computes the same thing, e.g. another seed) or any launcher plugin, e.g.
``hydra/launcher=submitit_slurm`` (one Slurm array job per grid, ``hydra.launcher.*`` are its sbatch settings) or
``hydra/launcher=submitit_local`` (subprocesses, all at once). The grid ends with one summary line: how many jobs
ran, where, and how many failed; the exit status is 0, 1 when a job failed, 130 / 143 when a signal stopped it.

With ``distributed=true`` on the basic launcher, every process runs the same grid: the processes join once, before
the root is chosen, so that they share process 0's default root, and each job is one run over all of them; only
process 0 prints the grid's lines.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shlex
import signal
import sys
import traceback
from typing import Any, NamedTuple, Optional, Sequence

import hydra
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from hydra.experimental.callback import Callback
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from herjax import config as config_lib
from herjax import train as train_lib
from herjax.config import ConfigError
from herjax.runs import checkpoint as ckpt_lib
from herjax.runs import hosts
from herjax.runs import init_from as init_from_lib
from herjax.runs.checkpoint import CheckpointError, DiskFullError
from herjax.runs.console import EXIT_CODES, Interrupted
from herjax.runs.lock import RunDirError

CONFIG_NAME = "herjax_grid"
DEFAULT_ROOT = os.path.join("runs", "grid")
SWEEP_SYNTAX = "key=a,b,c, key=range(0,5) or key=choice(a,b)"


class Grid(NamedTuple):
    """A validated grid, ready for Hydra.

    Attributes:
        jobs: each job's ``key=value`` overrides, as ``herjax.train.train`` takes them (the grid's product order).
        hydra_args: the overrides Hydra is given: its own (``hydra.*``, ``hydra/...``), then the sweeps.
        root: the grid's root folder, as given (``run_dir=`` or ``hydra.sweep.dir=``) or the default.
        varied: the swept keys, which name the run directories.
        launcher: Hydra's launcher (``basic``, ``submitit_slurm`` ...).
        argv: the command line without ``-m``, for the resume hint.
    """

    jobs: list[list[str]]
    hydra_args: list[str]
    root: str
    varied: list[str]
    launcher: str
    argv: list[str]


@dataclasses.dataclass
class JobResult:
    """What one job returns to the grid (picklable: launchers such as submitit send it back from another process).

    Attributes:
        overrides: the job's ``key=value`` overrides.
        run_dir: its run directory.
        status: ``finished``, ``failed``, ``stopped`` (a signal ended the run; it resumes) or ``skipped`` (not
            started, since an earlier job was stopped).
        message: why it failed; for ``stopped`` and ``skipped``, the signal (``SIGINT`` or ``SIGTERM``).
        best_success: the best test success rate of the run.
    """

    overrides: list[str]
    run_dir: str
    status: str
    message: str = ""
    best_success: Optional[float] = None


class _Process:
    """What the jobs of one process share: the last compiled trainer, the signal that stopped a job; and, in the
    process that launches the grid, its size and the line that announces it."""

    trainer: Any = None
    stopped_by: Optional[str] = None
    total: Optional[int] = None
    announce: Optional[str] = None


_PROCESS = _Process()


class Announce(Callback):
    """Prints the grid's first line once Hydra has composed its config (a bad Hydra setting fails before it)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        if _PROCESS.announce and hosts.is_main():
            print(_PROCESS.announce, flush=True)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _is_hydra_key(arg: str) -> bool:
    return arg.startswith(("hydra.", "hydra/"))


def _parse(args: Sequence[str]) -> list[Any]:
    """Hydra's ``Override`` of each argument. Raises ``ConfigError`` (one line, naming the argument) for one that
    Hydra's override grammar does not parse."""
    parser, parsed = OverridesParser.create(), []
    for arg in args:
        try:
            parsed += parser.parse_overrides([arg])
        except OverrideParseException as e:
            why = [line for line in str(e).splitlines() if line and not line.startswith(("See ", "Error parsing"))]
            raise ConfigError(f"bad sweep {arg!r}: Hydra's override grammar cannot parse it ({' '.join(why)}); "
                              f"sweeps are {SWEEP_SYNTAX}") from None
    return parsed


def herjax_args(hydra_overrides: Sequence[str]) -> list[str]:
    """Hydra's override strings of one job -> ``key=value`` strings for ``herjax.config`` (the values as Hydra
    parsed them, without Hydra's quoting or escapes)."""
    return [f"{o.get_key_element()}={config_lib._dotlist_value(o.value())}" for o in _parse(hydra_overrides)]


def _quoted(path: str) -> str:
    """``path`` as a Hydra value: quoted, so that commas, spaces and brackets stay part of it."""
    for quote in ("'", '"'):
        if quote not in path and not path.endswith("\\"):
            return f"{quote}{path}{quote}"
    raise ConfigError(f"bad value {path!r} for run_dir: a grid's root cannot hold both kinds of quotes")


def _fresh_root() -> str:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    root, n = os.path.join(DEFAULT_ROOT, stamp), 0
    while os.path.exists(root if n == 0 else f"{root}-{n}"):
        n += 1
    return root if n == 0 else f"{root}-{n}"


def _check_root(root: str) -> None:
    """Raises ``ConfigError`` if the grid's root is a file or cannot be created (checked, not created)."""
    folder = os.path.abspath(root)
    while not os.path.exists(folder):
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ConfigError(f"bad value {root!r} for run_dir: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"bad value {root!r} for run_dir: {folder} is not writable; give a writable path")


def plan(argv: Sequence[str]) -> Grid:
    """Parses a grid's command line (without ``-m``) and validates every job with ``herjax.config.load`` (and an
    ``init_from`` source with ``herjax.runs.init_from.check_source``). Creates nothing. A grid of
    ``distributed=true`` jobs on the basic launcher joins its processes here, once it is valid (``_join``).

    Raises:
        ConfigError: one line naming the bad key, value or sweep (and, in a grid of several jobs, the job).
        CheckpointError: an ``init_from`` run that is missing or does not fit.
    """
    args = []
    for arg in argv:
        key, sep, _ = arg.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"bad argument {arg!r}: expected key=value or a sweep, e.g. seed=0,1,2")
        if key.strip() == "resume":
            raise ConfigError("resume= does not take -m: resume one run with python -m herjax.train resume=RUN_DIR, "
                              "or run the same grid again with run_dir=<its root> to resume each of its runs")
        # herjax takes +key=value as key=value; for Hydra, + would add a key its config already has.
        args.append(arg if _is_hydra_key(arg) else arg.lstrip("+"))
    parsed = _parse(args)
    hydra_overrides = [o for o in parsed if o.is_hydra_override()]
    task = [o for o in parsed if not o.is_hydra_override()]
    root, launcher = None, "basic"
    for o in hydra_overrides:
        if o.is_sweep_override():
            raise ConfigError(f"bad argument {o.input_line!r}: Hydra's own settings cannot be swept")
        if o.key_or_group == "hydra/sweeper":
            raise ConfigError(f"bad argument {o.input_line!r}: herjax grids use Hydra's basic sweeper")
        if o.key_or_group == "hydra/launcher":
            launcher = str(o.value())
        if o.key_or_group == "hydra.sweep.dir":
            root = str(o.value())
    for o in task:
        if o.key_or_group != "run_dir":
            continue
        if o.is_sweep_override():
            raise ConfigError(f"bad value {o.get_value_string()!r} for run_dir: in a grid (-m) run_dir is the grid's "
                              "root, one folder; the runs go into folders below it named by the swept keys")
        if root is not None:
            raise ConfigError("run_dir= and hydra.sweep.dir= both name the grid's root: give one of them")
        if not o.value():
            raise ConfigError("bad value for run_dir: a grid's root needs a folder, e.g. run_dir=runs/my_grid")
        root = str(o.value())
    task = [o for o in task if o.key_or_group != "run_dir"]

    try:  # the jobs exactly as Hydra's basic sweeper will launch them
        job_lines = BasicSweeper.split_arguments(task, None)[0]
    except HydraException as e:
        raise ConfigError(f"bad sweep: {_one_line(e)}; herjax grids take {SWEEP_SYNTAX}") from None
    jobs = [herjax_args(lines) for lines in job_lines]
    cfgs = []
    for i, job in enumerate(jobs):
        try:
            cfgs.append(config_lib.load(job))
            if cfgs[-1].init_from is not None:
                init_from_lib.check_source(cfgs[-1])
        except (ConfigError, CheckpointError) as e:
            where = f" (in grid job {i + 1} of {len(jobs)}: {' '.join(job)})" if len(jobs) > 1 else ""
            raise ConfigError(f"{e}{where}") from None
    joined = _join(cfgs, launcher)

    last = {o.key_or_group: o for o in task}  # a key given twice: the last wins, as in Hydra's sweeper
    varied = [k for k, o in last.items() if o.is_sweep_override()]
    fixed = [k for k in last if k not in varied]
    hydra_args = [o.input_line for o in hydra_overrides]
    if not any(o.key_or_group == "hydra.sweep.dir" for o in hydra_overrides):
        if root is None:  # the processes of a distributed grid take process 0's timestamp
            root = hosts.from_main(_fresh_root, (ConfigError,)) if joined else _fresh_root()
        _check_root(root)
        # Absolute: a launcher's jobs may start in another working directory.
        hydra_args.append(f"hydra.sweep.dir={_quoted(os.path.abspath(root))}")
    if not any(o.key_or_group == "hydra.job.config.override_dirname.exclude_keys" for o in hydra_overrides):
        hydra_args.append(f"hydra.job.config.override_dirname.exclude_keys=[{','.join(fixed)}]")
    hydra_args += [o.input_line for o in task]
    return Grid(jobs=jobs, hydra_args=hydra_args, root=root, varied=varied, launcher=launcher, argv=list(argv))


LAUNCH_KEYS = ("distributed", "coordinator_address", "num_processes", "process_id")


def _join(cfgs: Sequence[Any], launcher: str) -> bool:
    """Joins the processes of a grid of ``distributed=true`` jobs on the basic launcher (each process runs every job,
    in order, over all of them); returns whether it did. Joined before the grid's root is chosen, so that every
    process takes process 0's default root, and only process 0 prints the grid's own lines, as in a run. Other
    launchers start each job's processes themselves (e.g. ``srun`` inside a submitit job).

    Raises ``ConfigError`` when the jobs differ in a launch key (the processes join once, for the whole grid) or when
    no run is found to join (``hosts.initialize``)."""
    if launcher != "basic" or not any(cfg.distributed for cfg in cfgs):
        return False
    swept = [key for key in LAUNCH_KEYS if len({getattr(cfg, key) for cfg in cfgs}) > 1]
    if swept:
        raise ConfigError(f"bad sweep over {', '.join(swept)}: the processes of a grid join once, for all its jobs, so "
                          f"the launch keys ({', '.join(LAUNCH_KEYS)}) take one value in a grid")
    hosts.initialize(cfgs[0])
    return True


def dirname(override_dirname: str) -> str:
    """One directory name for a job's ``key=value,...``: a swept path (``demos=runs/a.npz``) must not nest the run
    folders, so ``/`` becomes ``%2F`` (and ``%`` ``%25``: two different values never share a name)."""
    return override_dirname.replace("%", "%25").replace("/", "%2F")


# Resolved where the job's directory is (in the job's process, for a launcher plugin too: it imports this module).
OmegaConf.register_new_resolver("herjax_dirname", dirname, replace=True)


def _primary_config() -> dict:
    """Hydra's primary config: every herjax key (its value unused: a job reads its overrides, as strings, and
    ``herjax.config`` parses them) and the grid's Hydra settings, which the command line may override."""
    tree: dict = {}
    for key in config_lib.keys():
        *sections, leaf = key.split(".")
        node = tree
        for section in sections:
            node = node.setdefault(section, {})
        node[leaf] = None
    settings = {
        "sweep": {"subdir": "${herjax_dirname:${hydra.job.override_dirname}}"},
        "output_subdir": None,  # no .hydra/ per run: the run's config.yaml is herjax's resolved config
        "job": {"chdir": False},
        "callbacks": {"herjax_announce": {"_target_": f"{__name__}.Announce"}},
    }
    defaults = [{"override hydra/hydra_logging": "none"}, {"override hydra/job_logging": "none"}, "_self_"]
    return {"defaults": defaults, "hydra": settings, **tree}


def _holds_a_run(run_dir: str) -> bool:
    """Whether ``run_dir`` holds a run with a finished checkpoint (its own, or its seeds' in folders below it)."""
    if not os.path.exists(os.path.join(run_dir, "config.yaml")):
        return False
    below = [os.path.join(run_dir, name) for name in os.listdir(run_dir)]
    return any(ckpt_lib.has_checkpoint(d) for d in [run_dir] + [d for d in below if os.path.isdir(d)])


def run_job(task_cfg: Any) -> JobResult:
    """Hydra's task function: one grid job, an ordinary ``herjax.train.train`` run of the job's overrides in the
    job's directory (or its resume, if the directory already holds a checkpoint). Never raises an ``Exception``:
    a failure is the job's ``JobResult``, so the other jobs still run."""
    del task_cfg  # the typed config is herjax's, from the override strings
    hydra_cfg = HydraConfig.get()
    run_dir = str(hydra_cfg.runtime.output_dir)
    overrides = herjax_args(list(hydra_cfg.overrides.task))
    if _PROCESS.stopped_by is not None:
        return JobResult(overrides, run_dir, "skipped", _PROCESS.stopped_by)
    number = int(hydra_cfg.job.num) + 1
    of = f" of {_PROCESS.total}" if _PROCESS.total else ""
    if hosts.is_main():
        print(f"herjax.train: grid job {number}{of}: {hydra_cfg.job.override_dirname or '(no swept keys)'}",
              flush=True)
    try:
        if _holds_a_run(run_dir):
            try:
                result = train_lib.train(overrides, resume=run_dir, trainer=_PROCESS.trainer)
            except ConfigError as e:
                if "when resuming" not in str(e):
                    raise
                raise ConfigError(f"{e} ({_shown(run_dir)} holds a run, which a grid on the same root resumes; give "
                                  "this grid another run_dir=)") from None
        else:
            cfg = dataclasses.replace(config_lib.parse_overrides(overrides), run_dir=run_dir)
            result = train_lib.train(cfg, trainer=_PROCESS.trainer)
    except (ConfigError, CheckpointError, RunDirError, train_lib.NonFiniteError, DiskFullError) as e:
        print(f"herjax.train: error: {e}", file=sys.stderr, flush=True)
        return JobResult(overrides, run_dir, "failed", str(e))
    except Exception as e:  # a bug: its traceback, and the grid goes on
        traceback.print_exc()
        return JobResult(overrides, run_dir, "failed", f"{type(e).__name__}: {_one_line(e)}")
    _PROCESS.trainer = result.trainer
    best = max((row["test/success_rate"] for row in result.history), default=None)
    if result.stopped_by:
        _PROCESS.stopped_by = result.stopped_by
        return JobResult(overrides, result.run_dir, "stopped", result.stopped_by, best)
    return JobResult(overrides, result.run_dir, "finished", "", best)


def launch(grid: Grid) -> list[JobResult]:
    """Runs ``grid`` through Hydra's multirun with its launcher; returns each job's result, in the grid's order.
    Raises Hydra's or OmegaConf's exceptions for a bad Hydra setting (before any job starts)."""
    ConfigStore.instance().store(name=CONFIG_NAME, node=_primary_config())
    values = lambda key: {a.split("=", 1)[1] for job in grid.jobs for a in job if a.split("=", 1)[0] == key}
    over = " x ".join(f"{key} ({len(values(key))})" for key in grid.varied)
    _PROCESS.announce = (f"herjax.train: grid of {len(grid.jobs)} job{'s' if len(grid.jobs) != 1 else ''}"
                         f"{' over ' + over if over else ''} in {grid.root}, Hydra launcher {grid.launcher}")
    _PROCESS.total, _PROCESS.stopped_by = len(grid.jobs), None
    with hydra.initialize(version_base="1.3", config_path=None, job_name="herjax"):
        # Hydra.multirun, as hydra.main calls it, but returning the jobs' results and raising instead of exiting.
        returns = GlobalHydra.instance().hydra.multirun(
            config_name=CONFIG_NAME, task_function=run_job, overrides=grid.hydra_args + ["hydra.mode=MULTIRUN"]
        )
    return [job.return_value for batch in returns for job in batch]


def _shown(path: str) -> str:
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def _resume_command(grid: Grid) -> str:
    kept = [a for a in grid.argv if a.partition("=")[0].strip().lstrip("+") not in ("run_dir", "hydra.sweep.dir")]
    return shlex.join(["python", "-m", "herjax.train", "-m", *kept, f"run_dir={grid.root}"])


def summary(grid: Grid, results: Sequence[JobResult]) -> tuple[str, int]:
    """The grid's last line and its exit status (0; 1 when a job failed; 130 / 143 when a signal stopped one)."""
    count = lambda status: sum(r.status == status for r in results)
    failed, stopped = count("failed"), [r for r in results if r.status == "stopped"]
    jobs = f"{len(results)} job{'s' if len(results) != 1 else ''}"
    text = f"herjax.train: grid done: {jobs} in {grid.root}, {count('finished')} finished, {failed} failed"
    if stopped:
        signame = stopped[0].message
        text += (f", {len(stopped)} stopped by {signame}, {count('skipped')} not started. Resume with: "
                 f"{_resume_command(grid)}")
        return text, EXIT_CODES[signal.Signals[signame]]
    if grid.launcher.startswith("submitit") and not any("submitit_folder" in a for a in grid.argv):
        text += f" (their logs: {os.path.join(grid.root, '.submitit')})"
    if count("finished"):
        root = shlex.quote(grid.root)
        text += f". Plot: python -m herjax.plot {root} --out {shlex.quote(os.path.join(grid.root, 'success.png'))}"
    return text, 1 if failed else 0


def main(argv: Sequence[str]) -> int:
    """``python -m herjax.train -m ...`` (``argv`` without ``-m``): plans, validates and launches a grid; returns
    the exit status (2 for bad input, before anything is created)."""
    try:
        grid = plan(argv)
    except (ConfigError, CheckpointError) as e:
        print(f"herjax.train: error: {e}", file=sys.stderr)
        return 2
    try:
        results = launch(grid)
    except KeyboardInterrupt as e:  # a second signal, or one between jobs: quit now (see herjax.train.main)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODES[e.signum] if isinstance(e, Interrupted) else 130)
    except (HydraException, OmegaConfBaseException) as e:  # a bad Hydra setting, found before any job started
        print(f"herjax.train: error: {_one_line(e).split(' Config search path:')[0]}", file=sys.stderr)
        return 2
    except Exception as e:  # e.g. a launcher that cannot submit (no sbatch), or a job killed outside herjax
        print(f"herjax.train: error: the grid's launcher ({grid.launcher}) failed: {type(e).__name__}: "
              f"{_one_line(e)}", file=sys.stderr)
        return 1
    for r in results if grid.launcher != "basic" else ():  # the jobs' own lines went to the launcher's logs
        what = {"failed": f"failed: {r.message}", "stopped": f"stopped by {r.message}", "skipped": "not started"}
        if r.status in what:
            print(f"herjax.train: grid job {_shown(r.run_dir)} {what[r.status]}", file=sys.stderr)
    text, code = summary(grid, results)
    if hosts.is_main():
        print(text, flush=True)
    return code
