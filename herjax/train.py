"""Train from the command line or a notebook; resume a run where it stopped.

    python -m herjax.train env=fetch_reach
    python -m herjax.train env=fetch_push seed=3 ddpg.batch_size=512 total_env_steps=2e5
    python -m herjax.train env=fetch_push scale=paper          # the paper's 19 workers on one device
    python -m herjax.train env=fetch_reach alg=td3_her         # TD3+HER (td3.* keys); sac_her, ppo likewise
    python -m herjax.train resume=runs/fetch_push/ddpg_her/20250101-120000 [total_env_steps=4e6]
    python -m herjax.train env=fetch_reach init_from=runs/fetch_reach/ddpg_her/20250101-120000   # its weights
    python -m herjax.train env=fetch_pick_and_place demos=demos.npz ddpg.batch_size=1024   # herjax.demos' file
    python -m herjax.train --help                              # the groups, every key and its default

    from herjax.train import train
    result = train(["env=fetch_reach", "seed=1"])   # or train(TrainConfig(...)) or train({"seed": 1})
    result = train(["total_env_steps=20000"], resume=result.run_dir)
    result.history[-1]["test/success_rate"]

A run writes into ``run_dir`` (default ``runs/<env>/<alg>/<timestamp>``): ``config.yaml`` (the resolved config),
``progress.csv`` (one row per epoch, columns ``PROGRESS_COLUMNS`` then the trainer's ``epoch_metrics``), TensorBoard
event files (``tensorboard --logdir runs``) and ``checkpoints/`` (``herjax.runs.checkpoint``: ``latest`` every
``save_every`` epochs, ``best`` by test success, ``periodic`` every ``keep_every``). It prints one line per epoch
with the env steps, steps/s, success rates and the ETA (plain lines, so logs stay readable; on a terminal a
status line also counts the running epoch's seconds).

**Resume.** ``resume=<run_dir>`` restores the newest readable checkpoint (whole training state and the host's
history) and goes on in the same directory, appending to ``progress.csv``. Only ``total_env_steps``,
``stop_success``, ``save_every``, ``keep_every`` and ``compile_cache`` may change on resume. On the CPU the resumed
run's rows equal those of an uninterrupted run bit for bit.

**Demonstrations.** ``demos=FILE`` (``python -m herjax.demos``) adds a buffer of demo episodes and a behaviour-
cloning loss (``bc.*``; ``herjax.demos``, ``herjax.replay.mixed``). The run copies the demos into
``run_dir/demos.npz`` and resumes from that copy.

**Start from saved weights.** ``init_from=RUN_DIR`` (``RUN_DIR@latest``: its ``latest`` checkpoint instead of its
``best``) starts a new run, in its own directory, whose agent begins with the networks and input normaliser of
that checkpoint; its replay buffer, optimiser states, PRNG key and counters start fresh (``herjax.runs.init_from``
says what carries over). The run must have the same ``alg`` and every network array the same shape; anything else
is refused with one line. ``init_from`` is part of the config, so resuming such a run restores its own checkpoint.

**Signals.** SIGINT (Ctrl-C) or SIGTERM lets the running epoch finish, saves ``latest``, prints the resume
command and exits with status 130 (SIGINT) or 143 (SIGTERM). A second signal quits at once; the last saved
``latest`` is then what a resume starts from.

**Compile cache.** ``compile_cache=true`` (the default) keeps JAX's compiled programs in ``compile_cache_dir()``
(``~/.cache/herjax/jax``; ``HERJAX_CACHE_DIR`` moves it), so a second run of a config skips compiling what
JAX can cache. ``compile_cache=false`` turns it off.

**One writer per run directory.** A run holds ``<run_dir>/.herjax.lock`` while it trains or resumes; a second
run on the same directory is refused (naming the holding process), and the lock of a killed run is taken over.

**Several processes.** ``distributed=true`` (with ``coordinator_address``, ``num_processes`` and ``process_id``, or
found from Slurm or Open MPI) makes this process one of a run over several (``herjax.runs.hosts``): process 0 picks
and locks the run directory, prints, and writes its files; each process saves and restores its shards of the
checkpoints; all stop after the same epoch.

**Bad input** (unknown env, alg or key, a wrong type, an impossible value, a missing or unreadable resume
directory, an ``init_from`` run that is missing or does not fit, a run directory that cannot be created or is in
use) prints one line on stderr and exits with status 2 before anything is compiled; a run directory this run
created for it is removed again.

**A full disk** during a write (a checkpoint, ``progress.csv``) stops the run with one line saying how much space
the write needed and how much is free, and exits with status 1. The unfinished checkpoint is removed; the earlier
ones, and the previous ``progress.csv``, are intact, so the run resumes once there is space.

**Divergence.** An epoch that leaves a non-finite number in the agent's state (parameters, optimiser states,
normaliser statistics) is never checkpointed: the run stops with one line naming the last good checkpoint and
exits with status 1.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import os
import signal
import statistics
import sys
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence, Union

from herjax import config as config_lib
from herjax.config import ConfigError, TrainConfig
from herjax.runs import checkpoint as ckpt_lib
from herjax.runs import console as console_lib
from herjax.runs import hosts
from herjax.runs import init_from as init_from_lib
from herjax.runs import logs
from herjax.runs.checkpoint import CheckpointError, DiskFullError
from herjax.runs.console import EXIT_CODES, Interrupted
from herjax.runs.lock import LOCK_NAME, RunDirError, RunLock
from herjax.runs.logs import PROGRESS_COLUMNS


@dataclasses.dataclass
class TrainResult:
    """What a run returns.

    Attributes:
        config: the resolved config.
        history: one dict per epoch since the run began (resumed runs included), keyed like ``progress.csv``.
        state: the final ``herjax.loops.TrainState``.
        run_dir: where the run's files are.
        trainer: the compiled ``Trainer``; ``trainer.run_epoch(state)`` goes on without recompiling, and
            ``train(..., trainer=result.trainer)`` reuses it for another run of the same computation.
        stopped_by: ``"SIGINT"`` or ``"SIGTERM"`` when a signal ended the run early, else ``None``.
        resumed_from: the checkpoint a resumed run started from (``"latest/3"``), else ``None``.
        seeds: every seed of the run (``num_seeds`` of them); ``history`` is the first one's.
        histories: each seed's ``history``, in the order of ``seeds``.
        run_dirs: each seed's run directory (``run_dir`` itself for a run of one seed).

    With ``num_seeds > 1``, ``state``'s every leaf has a leading seed axis (``seed_state`` takes one seed's).
    """

    config: TrainConfig
    history: list[dict[str, float]]
    state: Any
    run_dir: str
    trainer: Any
    stopped_by: Optional[str] = None
    resumed_from: Optional[str] = None
    seeds: list[int] = dataclasses.field(default_factory=list)
    histories: list[list[dict[str, float]]] = dataclasses.field(default_factory=list)
    run_dirs: list[str] = dataclasses.field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0, or 130 / 143 when SIGINT / SIGTERM stopped the run."""
        return EXIT_CODES[getattr(signal, self.stopped_by)] if self.stopped_by else 0


def resume_command(run_dir: str) -> str:
    return f"python -m herjax.train resume={run_dir}"


def seed_runs(cfg: TrainConfig) -> list[tuple[int, str]]:
    """``(seed, run directory)`` of each seed of ``cfg``: ``cfg.run_dir`` itself for one seed, else
    ``<run_dir>/seed_<s>`` for ``s`` in ``seed, ..., seed + num_seeds - 1``."""
    if cfg.num_seeds == 1:
        return [(cfg.seed, cfg.run_dir)]
    return [(s, os.path.join(cfg.run_dir, f"seed_{s}")) for s in range(cfg.seed, cfg.seed + cfg.num_seeds)]


def seed_state(state: Any, index: int) -> Any:
    """Seed ``index``'s state out of a vmapped run's (``num_seeds > 1``) state."""
    import jax

    return jax.tree.map(lambda x: x[index], state)


def _per_seed(tree: Any, num_seeds: int) -> list:
    """Each seed's part of a tree whose leaves carry a leading seed axis (``[tree]`` itself for one seed)."""
    return [tree] if num_seeds == 1 else [seed_state(tree, i) for i in range(num_seeds)]


def _stack(states: list) -> Any:
    import jax
    import jax.numpy as jnp

    return states[0] if len(states) == 1 else jax.tree.map(lambda *xs: jnp.stack(xs), *states)


def reached(success_rate: float, target: float) -> bool:
    """Whether a test success rate reaches ``target``. Rates are float32 means of episode outcomes, in which 90 of 100
    is 0.89999998: a float32 rounding below the target counts as reaching it."""
    return success_rate >= target - 1e-6


def _as_overrides(cfg_or_overrides: Any) -> Any:
    """A ``TrainConfig`` as it is, else a list of ``key=value`` strings (from a list, a dict or ``None``)."""
    if cfg_or_overrides is None:
        return []
    if isinstance(cfg_or_overrides, TrainConfig):
        return cfg_or_overrides
    if isinstance(cfg_or_overrides, dict):
        return [f"{k}={config_lib._dotlist_value(v)}" for k, v in cfg_or_overrides.items()]
    if isinstance(cfg_or_overrides, str):
        raise ConfigError(f"expected a list of key=value strings, got the string {cfg_or_overrides!r}")
    return list(cfg_or_overrides)


def _join_first(cfg_or_overrides: Any) -> None:
    """A new multi-process run joins its processes before its config is resolved: ``scale=fast`` asks JAX which
    kind of device it runs on, and once JAX has started no process can join."""
    overrides = _as_overrides(cfg_or_overrides)
    launch = overrides if isinstance(overrides, TrainConfig) else config_lib.parse_overrides(overrides,
                                                                                               apply_scale=False)
    if launch.distributed:
        config_lib.check_launch(launch)
        hosts.initialize(launch)


def _prepare(cfg_or_overrides: Any, resume: Optional[str]) -> TrainConfig:
    """The resolved config of a new run, or of the run in ``resume`` with the allowed overrides applied. Raises
    ``ConfigError`` or ``CheckpointError`` (one line) before anything is built."""
    if resume is None:
        _join_first(cfg_or_overrides)
        cfg = config_lib.load(cfg_or_overrides)
        if cfg.init_from is not None:
            init_from_lib.check_source(cfg)
        return cfg
    saved = ckpt_lib.read_config(resume)
    for _, run_dir in seed_runs(dataclasses.replace(saved, run_dir=resume)):
        if not ckpt_lib.has_checkpoint(run_dir):
            raise CheckpointError(f"cannot resume {resume!r}: it has no finished checkpoint in {run_dir}/checkpoints")
    overrides = _as_overrides(cfg_or_overrides)
    if isinstance(overrides, TrainConfig):
        cfg = overrides
    else:
        cfg = config_lib.parse_overrides(overrides, base=saved, apply_scale=False)
    cfg = dataclasses.replace(cfg, run_dir=resume)
    before, after = config_lib.flat_dict(dataclasses.replace(saved, run_dir=resume)), config_lib.flat_dict(cfg)
    changed = [k for k in after if after[k] != before[k] and k not in config_lib.RUN_CONTROL_KEYS]
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming (it would be another run); resume may change "
            f"only {', '.join(config_lib.RUN_CONTROL_KEYS)}"
        )
    return config_lib.resolve(cfg)


def _same_computation(a: TrainConfig, b: TrainConfig) -> bool:
    # init_from sets where the state starts, not what the trainer computes.
    neutral = {k: getattr(TrainConfig(), k) for k in config_lib.RUN_CONTROL_KEYS + ("init_from",)}
    return dataclasses.replace(a, seed=0, run_dir=None, **neutral) == dataclasses.replace(
        b, seed=0, run_dir=None, **neutral
    )


class _Start(NamedTuple):
    """Where a run starts: its state (seeds stacked), each seed's history and best test success, and what the
    console says about it."""

    state: Any
    histories: list
    wall_s: float
    bests: list
    resumed_from: Optional[str]


@dataclasses.dataclass
class _Seed:
    """The host side of one seed: its config and run directory, rows, best test success, logs and checkpoints."""

    config: TrainConfig
    history: list
    best: Optional[float]
    progress: Any
    checkpointer: Any
    reached: bool = False  # reached stop_success during this session


def compile_cache_dir() -> str:
    """Where ``compile_cache=true`` keeps compiled programs: ``$HERJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/herjax/jax``
    (``~/.cache/herjax/jax``)."""
    if os.environ.get("HERJAX_CACHE_DIR"):
        return os.path.abspath(os.path.expanduser(os.environ["HERJAX_CACHE_DIR"]))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "herjax", "jax")


def _enable_compile_cache(console: console_lib.Console) -> None:
    """Points JAX's persistent compilation cache at ``compile_cache_dir()`` unless the process already chose one. It
    takes effect for programs compiled from then on; JAX decides once per process whether the cache is used, so a
    process that compiled before its first run keeps its choice."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return
    path = compile_cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        console.line(f"herjax.train: warning: no compile cache ({path}: {e.strerror}); set HERJAX_CACHE_DIR or "
                     "compile_cache=false")
        return
    jax.config.update("jax_compilation_cache_dir", path)


def _build(cfg: TrainConfig, trainer: Any, resume: Optional[str] = None,
           console: Optional[console_lib.Console] = None) -> Any:
    """The run's ``Trainer``: ``trainer`` when it computes the same thing (with the same demos), else a new one."""
    import jax

    from herjax import envs, loops

    processes, available = jax.process_count(), jax.local_device_count()
    if processes == 1 and cfg.num_devices > available:
        raise ConfigError(f"bad value {cfg.num_devices} for num_devices: this machine has {available} local "
                          f"{jax.default_backend()} device(s)")
    if processes > 1 and (cfg.num_devices % processes or cfg.num_devices > processes * available):
        raise ConfigError(f"bad value {cfg.num_devices} for num_devices: the run's {processes} processes have "
                          f"{available} {jax.default_backend()} device(s) each; give a multiple of {processes} up to "
                          f"{processes * available} (all of them)")
    reuse = trainer is not None and _same_computation(trainer.config, cfg)
    env = trainer.env if reuse else envs.make(cfg.env, backend=cfg.backend)
    demos = _run_demos(cfg, resume, env, console)
    if reuse and _same_demos(getattr(trainer.buffer, "demos", None), demos):
        return trainer
    return loops.make_train(cfg, env, demos=demos)


def _run_demos(cfg: TrainConfig, resume: Optional[str], env: Any, console: Optional[console_lib.Console]) -> Any:
    """The demonstration episodes of a run with ``demos``: the file's for a new run; on resume the run's own copy
    (``herjax.demos.RUN_FILE``, written when it started), whatever the file named by ``demos`` holds now."""
    if cfg.demos is None:
        return None
    from herjax import demos as demos_lib

    if resume is None:
        return demos_lib.load(cfg.demos, env, name=cfg.env)
    copy = demos_lib.run_copy(seed_runs(cfg)[0][1])
    if not os.path.isfile(copy):
        raise CheckpointError(f"cannot resume {cfg.run_dir!r}: its copy of the demos ({copy}) is missing")
    episodes = demos_lib.load(copy, env, name=cfg.env)
    if console is not None and os.path.isfile(cfg.demos):
        try:
            same = _same_demos(demos_lib.load(cfg.demos, env, name=cfg.env), episodes)
        except demos_lib.DemoError:
            same = False
        if not same:
            console.line(f"herjax.train: warning: {cfg.demos} has changed since the run started; it goes on with "
                         f"the demos it started with ({copy})")
    return episodes


def _same_demos(a: Any, b: Any) -> bool:
    """Whether two sets of demo episodes (or ``None``) are equal array for array."""
    import numpy as np

    if a is None or b is None:
        return a is None and b is None
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def _start(cfg: TrainConfig, trainer: Any, resume: Optional[str], console: console_lib.Console,
           total_epochs: int) -> _Start:
    """A fresh state, or each seed's newest readable checkpoint of ``resume`` (dropping the checkpoints after it;
    the seeds of a vmapped run restart from the newest epoch they all have)."""
    import jax

    env = trainer.env
    seeds = seed_runs(cfg)
    warn = lambda text: console.line(f"herjax.train: warning: {text}")
    if resume is None:
        # Read (and checked against this run's shapes) before anything is compiled or written.
        source = init_from_lib.load(cfg, ckpt_lib.abstract_state(trainer).agent, warn=warn) if cfg.init_from else None
        several = f", seeds {seeds[0][0]}..{seeds[-1][0]} in one program" if len(seeds) > 1 else ""
        console.line(f"herjax.train: {cfg.env} ({env.backend}), {cfg.alg}, {total_epochs} epochs of "
                     f"{trainer.steps_per_epoch:,} env steps{several}, run_dir {cfg.run_dir}")
        keys = jax.random.key(cfg.seed) if len(seeds) == 1 else jax.vmap(jax.random.key)(
            jax.numpy.arange(cfg.seed, cfg.seed + len(seeds)))
        state = trainer.init(keys)
        if source is not None:
            merged = [init_from_lib.merge(agent, source.agent) for agent in _per_seed(state.agent, len(seeds))]
            state = state.replace(agent=_stack(merged))
            console.line(init_from_lib.describe(source, cfg))
        return _Start(state, [[] for _ in seeds], 0.0, [None] * len(seeds), None)
    abstract = ckpt_lib.abstract_state(trainer)
    # Straight onto the run's mesh: in a multi-process run each process reads its own shards.
    restore = functools.partial(ckpt_lib.restore, abstract=abstract, warn=warn, shardings=trainer.state_shardings)
    restored = [restore(run_dir) for _, run_dir in seeds]
    epoch = min(int(meta["epoch"]) for _, meta, _ in restored)
    for i, (_, run_dir) in enumerate(seeds):
        dropped = ckpt_lib.drop_after(run_dir, epoch)
        if int(restored[i][1]["epoch"]) > epoch:  # a stop between the seeds' saves: back to the common epoch
            restored[i] = restore(run_dir)
        if dropped:
            console.line(f"herjax.train: dropped checkpoints newer than {restored[i][2]}: {', '.join(dropped)}")
    meta, resumed_from = restored[0][1], restored[0][2]
    several = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
    console.line(f"herjax.train: resuming {cfg.run_dir}{several} from checkpoint {resumed_from} (epoch "
                 f"{int(meta['epoch'])} of {total_epochs}, {int(meta['env_steps']):,} env steps), {cfg.env} "
                 f"({env.backend})")
    histories = [[dict(row) for row in m["history"]] for _, m, _ in restored]
    state = _stack([st for st, _, _ in restored])
    return _Start(state, histories, float(meta["wall_s"]), [m.get("best_success") for _, m, _ in restored],
                  resumed_from)


def _row(epoch: Any, env_steps: Any, metrics: dict, names: Sequence[str], wall_s: float, epoch_s: float,
         per_epoch: int) -> dict:
    """One ``progress.csv`` row of an epoch (of one seed)."""
    return {
        "epoch": int(epoch),
        "env_steps": int(env_steps),
        "wall_s": wall_s,
        "epoch_s": epoch_s,
        "steps_per_s": per_epoch / epoch_s,
        **{k: float(metrics[k]) for k in names},
    }


def _save(checkpointer: ckpt_lib.Checkpointer, cfg: TrainConfig, state: Any, row: dict, history: list,
          best: Optional[float], last: bool) -> Optional[float]:
    """The checkpoint policy after an epoch: ``best`` on a new best test success, ``periodic`` every
    ``keep_every``, ``latest`` every ``save_every`` and at the end. Returns the best success so far."""
    epoch, success = row["epoch"], row["test/success_rate"]
    meta = {"epoch": epoch, "env_steps": row["env_steps"], "wall_s": row["wall_s"], "best_success": best,
            "history": history}
    if best is None or success >= best:
        best = meta["best_success"] = success
        checkpointer.save("best", state, meta)
    if cfg.keep_every and epoch % cfg.keep_every == 0:
        checkpointer.save("periodic", state, meta)
    if epoch % cfg.save_every == 0 or last:
        checkpointer.save("latest", state, meta)
    return best


def _finish(log: Optional[Callable[[str], None]], run_dir: str, histories: list[list], stopped_by: Optional[str]
            ) -> None:
    if not log:
        return
    history = histories[0]
    total = history[-1]["env_steps"] if history else 0
    several = f" per seed, {len(histories)} seeds" if len(histories) > 1 else ""
    if stopped_by:
        epoch = history[-1]["epoch"] if history else 0
        log(f"herjax.train: stopped by {stopped_by} after epoch {epoch} ({total:,} env steps{several}); saved "
            f"the latest checkpoint. Resume with: {resume_command(run_dir)}")
    elif history:
        bests = [max(row["test/success_rate"] for row in h) for h in histories]
        best = (f"best test success {bests[0]:.3f}" if len(bests) == 1 else
                f"best test success median {statistics.median(bests):.3f} (min {min(bests):.3f}, max {max(bests):.3f})")
        log(f"herjax.train: done, {len(history)} epochs, {total:,} env steps{several}, "
            f"{console_lib.duration(history[-1]['wall_s'])}, {best}; wrote {run_dir}")


def _interrupted(log: Optional[Callable[[str], None]], run_dir: str, first_seed_dir: str) -> None:
    if not log:
        return
    saved = ckpt_lib.steps(first_seed_dir, "latest")
    if saved:
        log(f"herjax.train: interrupted; the latest checkpoint is epoch {saved[-1]}. Resume with: "
            f"{resume_command(run_dir)}")
    else:
        log("herjax.train: interrupted before the first checkpoint; nothing to resume")


def train(
    cfg_or_overrides: Union[TrainConfig, Sequence[str], dict, None] = None,
    *,
    resume: Optional[str] = None,
    log: Optional[Callable[[str], None]] = print,
    should_stop: Optional[Callable[[dict[str, float]], bool]] = None,
    trainer: Any = None,
    handle_signals: bool = True,
) -> TrainResult:
    """Runs (or resumes) a training run on the host (NOT a pure function: it writes files and prints).

    Args:
        cfg_or_overrides: a ``TrainConfig``, a list of ``key=value`` strings, a ``{dotted_key: value}`` dict, or
            ``None`` for the defaults. See ``herjax.config``. With ``resume``: overrides of the saved config,
            of ``config.RUN_CONTROL_KEYS`` only.
        resume: a run directory to continue from its newest readable checkpoint.
        log: called with each progress line; ``None`` silences the run.
        should_stop: called with each epoch's row (after it is logged); ``True`` ends the run there, e.g. on a
            wall-clock budget. ``cfg.stop_success`` is checked as well.
        trainer: a ``Trainer`` of an earlier run (``TrainResult.trainer``) to reuse, skipping compilation; it is
            used only if its config differs from this one in ``seed``, ``run_dir``, ``init_from`` and the
            run-control keys at most.
        handle_signals: catch SIGINT/SIGTERM (in the main thread) to save and stop at the end of the epoch.

    Returns:
        ``TrainResult``. Raises ``herjax.config.ConfigError`` on a bad config,
        ``herjax.runs.checkpoint.CheckpointError`` on a missing or unreadable resume directory or an ``init_from``
        run that is missing or does not fit (``herjax.runs.init_from.InitFromError``), and
        ``herjax.runs.lock.RunDirError`` on a run directory that cannot be created or that another run holds, all
        before anything is built.
    """
    cfg = _prepare(cfg_or_overrides, resume)
    hosts.initialize(cfg)  # a multi-process run: join the other processes before JAX computes anything
    created: list[str] = []
    locks: list[RunLock] = []
    try:
        with contextlib.ExitStack() as stack:

            def claim() -> str:
                # One writer per run directory, for the whole run; taken before anything is built. In a multi-process
                # run process 0 creates and locks it, and the others take its choice (a timestamp, or run_dir-N).
                run_dir = cfg.run_dir
                if resume is None:
                    run_dir, new = _new_run_dir(cfg.run_dir)
                    created.extend(new)
                locks.append(stack.enter_context(RunLock(run_dir)))
                return run_dir

            run_cfg = dataclasses.replace(cfg, run_dir=hosts.from_main(claim, (RunDirError,)))
            return _run(run_cfg, resume, trainer, log if hosts.is_main() else None, should_stop, handle_signals,
                        locks[0].stale if locks else None)
    except (ConfigError, CheckpointError):
        _remove_unused(created)  # bad input found once the run was built (e.g. init_from's shapes)
        raise


def _new_run_dir(path: str) -> tuple[str, list[str]]:
    """``logs.make_run_dir(path)``, and the folders it created, deepest first."""
    missing, parent = [], os.path.abspath(path)
    while not os.path.exists(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    run_dir = logs.make_run_dir(path)
    if os.path.abspath(run_dir) != os.path.abspath(path):  # path holds a run: run_dir is a new sibling, path-N
        missing = [os.path.abspath(run_dir)]
    return run_dir, missing


def _remove_unused(folders: list[str]) -> None:
    """Removes ``folders`` (deepest first), stopping at the first that holds anything but an unlocked lock file: a
    run stopped by bad input leaves no half-made run directory behind."""
    for folder in folders:
        try:
            names = os.listdir(folder)
            if set(names) - {LOCK_NAME}:
                return
            if names:
                os.remove(os.path.join(folder, LOCK_NAME))
            os.rmdir(folder)
        except OSError:
            return


def _run(cfg: TrainConfig, resume: Optional[str], trainer: Any, log: Optional[Callable[[str], None]],
         should_stop: Optional[Callable[[dict[str, float]], bool]], handle_signals: bool,
         stale_lock: Optional[dict]) -> TrainResult:
    """``train`` once its config is valid and its run directory is locked."""
    # Heavy imports after validation, so that a bad argument fails before JAX does any work.
    import jax

    console = console_lib.Console(log)
    if stale_lock:
        console.line(f"herjax.train: took over the lock of {cfg.run_dir} left by process {stale_lock.get('pid')} "
                     f"on {stale_lock.get('host')}, which is no longer running")
    if cfg.compile_cache:
        _enable_compile_cache(console)
    trainer = _build(cfg, trainer, resume, console)
    per_epoch = trainer.steps_per_epoch
    total_epochs = -(-cfg.total_env_steps // per_epoch)
    start = _start(cfg, trainer, resume, console, total_epochs)
    state = start.state
    seeds = _open_seeds(cfg, trainer, start)
    stopped_by = None
    session_epochs: list[float] = []
    began = time.perf_counter()
    try:
        with console_lib.Signals(handle_signals, console.line) as signals:
            first_epoch = int(jax.numpy.ravel(state.epoch)[0])
            if first_epoch >= total_epochs:
                console.line(f"herjax.train: {cfg.run_dir} already has {first_epoch} of {total_epochs} epochs; "
                             "nothing to do (raise total_env_steps= to train longer)")
            for epoch in range(first_epoch + 1, total_epochs + 1):
                epoch_start = time.perf_counter()
                label = f"epoch {epoch}/{total_epochs}" + ("" if session_epochs else " (compiling, then running)")
                state, metrics = console_lib.run_epoch(trainer, state, console, label, _mean_epoch_s(session_epochs))
                now = time.perf_counter()
                session_epochs.append(now - epoch_start)
                host = jax.device_get((metrics, state.epoch, state.env_steps))
                rows = []
                for seed, (seed_metrics, seed_epoch, seed_steps) in zip(seeds, _per_seed(host, len(seeds))):
                    row = _row(seed_epoch, seed_steps, seed_metrics, trainer.epoch_metrics,
                               start.wall_s + now - began, now - epoch_start, per_epoch)
                    seed.history.append(row)
                    seed.progress.write(row)
                    seed.reached |= cfg.stop_success is not None and reached(row["test/success_rate"], cfg.stop_success)
                    rows.append(row)
                # The first epoch of a process includes compilation: its ETA is an upper bound.
                eta = _mean_epoch_s(session_epochs) * (total_epochs - epoch)
                shown = rows[0] if len(rows) == 1 else _median_row(rows)
                line = console_lib.progress_line(shown, total_epochs, cfg.total_env_steps, eta,
                                                 bound=len(session_epochs) == 1)
                if len(rows) > 1:
                    rates = [r["test/success_rate"] for r in rows]
                    line += f" | {len(rows)} seeds: test success median, min {min(rates):.3f}, max {max(rates):.3f}"
                console.line(line)
                if not _finite(state.agent):  # a replicated value: the same verdict on every process
                    i = next(i for i, agent in enumerate(_per_seed(state.agent, len(seeds))) if not _finite(agent))
                    raise NonFiniteError(_non_finite_message(seeds[i].config.run_dir, rows[i]))
                received = signals.received or 0  # one during the bookkeeping below stops after the next epoch
                wants_stop = all(seed.reached for seed in seeds) or (should_stop is not None and should_stop(shown))
                # Every process stops (and saves) after the same epoch: a signal or a stop on any one counts for all.
                received, wants_stop = hosts.agree_max([received, int(wants_stop)])
                stop = bool(received or wants_stop)
                with signals.protect():
                    for seed, row, one in zip(seeds, rows, _per_seed(state, len(seeds))):
                        seed.best = _save(seed.checkpointer, seed.config, one, row, seed.history, seed.best,
                                          last=epoch == total_epochs or stop)
                if received or signals.received is not None:
                    stopped_by = signal.Signals(received or signals.received).name
                if stop:
                    break
    except KeyboardInterrupt:
        console.clear()
        _interrupted(log, cfg.run_dir, seeds[0].config.run_dir)
        raise
    except DiskFullError as e:
        raise DiskFullError(f"{e}. Free some space, then: {resume_command(cfg.run_dir)}") from None
    finally:
        console.clear()
        for seed in seeds:
            seed.checkpointer.close()
            seed.progress.close()
    _finish(log, cfg.run_dir, [seed.history for seed in seeds], stopped_by)
    return TrainResult(config=cfg, history=seeds[0].history, state=state, run_dir=cfg.run_dir, trainer=trainer,
                       stopped_by=stopped_by, resumed_from=start.resumed_from, seeds=[s for s, _ in seed_runs(cfg)],
                       histories=[seed.history for seed in seeds], run_dirs=[seed.config.run_dir for seed in seeds])


def _open_seeds(cfg: TrainConfig, trainer: Any, start: _Start) -> list[_Seed]:
    """Each seed's config, ``config.yaml``, progress log and checkpointer (a vmapped run's config.yaml too). In a
    multi-process run only process 0 writes config.yaml and the progress log; every process saves checkpoints."""
    main = hosts.is_main()
    seeds = []
    for (seed, run_dir), history, best in zip(seed_runs(cfg), start.histories, start.bests):
        one = cfg if cfg.num_seeds == 1 else dataclasses.replace(cfg, seed=seed, num_seeds=1, run_dir=run_dir)
        progress = logs.NoProgressLog()
        if main:
            os.makedirs(run_dir, exist_ok=True)
            config_yaml = config_lib.to_yaml(config_lib.without_launch(one))
            logs.write_atomic(os.path.join(run_dir, "config.yaml"), config_yaml)
            _keep_demos(cfg, trainer, run_dir)
            progress = logs.ProgressLog(run_dir, PROGRESS_COLUMNS + trainer.epoch_metrics, history, config_yaml)
        seeds.append(_Seed(config=one, history=history, best=best, progress=progress,
                           checkpointer=ckpt_lib.Checkpointer(run_dir)))
    if cfg.num_seeds > 1 and main:
        logs.write_atomic(os.path.join(cfg.run_dir, "config.yaml"), config_lib.to_yaml(cfg))
    return seeds


def _keep_demos(cfg: TrainConfig, trainer: Any, run_dir: str) -> None:
    """A new run with ``demos`` writes the episodes it learns from into its directory (``herjax.demos.RUN_FILE``),
    which resume, play and export read: the run never depends on a file that may change after it started."""
    if cfg.demos is None:
        return
    from herjax import demos as demos_lib

    path = demos_lib.run_copy(run_dir)
    if os.path.exists(path):  # a resumed run keeps its own
        return
    try:
        demos_lib.save(path, trainer.buffer.demos, cfg.env, source=os.path.abspath(cfg.demos))
    except OSError as e:
        if not ckpt_lib.out_of_space(e):
            raise
        raise DiskFullError(f"no space left on the device of {path} for the run's copy of its demos") from None


def _median_row(rows: list[dict]) -> dict:
    """The median over seeds of every column of their rows (one epoch's)."""
    return {k: float(statistics.median(r[k] for r in rows)) for k in rows[0]}


class NonFiniteError(RuntimeError):
    """An epoch left a non-finite number in the agent's state; nothing of it was saved. The message is one line."""


@functools.cache
def _finite_fn() -> Callable[[Any], Any]:
    import jax
    import jax.numpy as jnp

    def finite(tree: Any) -> Any:
        leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
        return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)

    return jax.jit(finite)


def _finite(tree: Any) -> bool:
    """Whether every floating-point leaf of ``tree`` (parameters, optimiser states, statistics) is finite."""
    return bool(_finite_fn()(tree))


def _non_finite_message(run_dir: str, row: dict) -> str:
    bad = [k for k, v in row.items() if k.startswith("train/") and k != "train/success_rate" and not math.isfinite(v)]
    saved = ckpt_lib.candidates(run_dir)
    last = f"the last good checkpoint is {saved[0][0]}/{saved[0][1]}" if saved else "no checkpoint was saved yet"
    return (f"epoch {row['epoch']} left non-finite numbers in the agent's parameters or statistics"
            f"{' (non-finite ' + ', '.join(bad) + ')' if bad else ''}; it was not saved, {last}. Learning diverged: "
            "start again with smaller learning rates, or resume from that checkpoint")


def _mean_epoch_s(epoch_s: list[float]) -> Optional[float]:
    # The first epoch of a process includes compilation: leave it out once there are others.
    later = epoch_s[1:] or epoch_s
    return sum(later) / len(later) if later else None


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI: ``key=value`` overrides and ``resume=<run_dir>``; returns the exit status (2 for bad input, 130
    or 143 after SIGINT or SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        text = (__doc__.split("\n\n")[0] + "\n\nusage: python -m herjax.train [key=value ...]\n"
                "       python -m herjax.train resume=RUN_DIR [total_env_steps=N stop_success=X save_every=N "
                "keep_every=N compile_cache=B]\n"
                "       python -m herjax.train init_from=RUN_DIR[@latest] [key=value ...]\n"
                "       python -m herjax.train distributed=true [coordinator_address=HOST:PORT num_processes=N "
                "process_id=I] num_devices=D [key=value ...]   one run over several processes (srun, mpirun)\n"
                "       python -m herjax.train -m key=a,b key2=range(0,3) [run_dir=ROOT hydra/launcher=submitit_slurm "
                "...]   a grid (herjax.runs.grid)\n\n" + config_lib.usage())
        try:
            print(text, flush=True)
        except BrokenPipeError:  # e.g. piped into head
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if any(a in ("-m", "--multirun") for a in argv):  # a grid: Hydra's sweep syntax and launchers
        from herjax.runs import grid

        return grid.main([a for a in argv if a not in ("-m", "--multirun")])
    resume = None
    overrides = []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if key.strip() == "resume" and sep:
            if not value:
                print("herjax.train: error: resume= needs a run directory, e.g. resume=runs/fetch_reach/ddpg_her/"
                      "20250101-120000", file=sys.stderr)
                return 2
            resume = value
        else:
            overrides.append(arg)
    try:
        result = train(overrides, resume=resume)
    except (ConfigError, CheckpointError, RunDirError) as e:
        print(f"herjax.train: error: {e}", file=sys.stderr)
        return 2
    except (NonFiniteError, DiskFullError) as e:
        print(f"herjax.train: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as e:
        # A second signal: quit now. The epoch's worker thread may still be inside XLA, and an interpreter that
        # finalises under it can hang or crash; the checkpoints and logs are closed, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODES[e.signum] if isinstance(e, Interrupted) else EXIT_CODES[signal.SIGINT])
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
