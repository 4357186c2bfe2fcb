"""Train from the command line or a notebook; resume a run where it stopped.

    python -m herjax.train env=fetch_reach
    python -m herjax.train env=fetch_push seed=3 ddpg.batch_size=512 total_env_steps=2e5
    python -m herjax.train env=fetch_push scale=paper          # the paper's 19 workers on one device
    python -m herjax.train resume=runs/fetch_push/ddpg_her/20250101-120000 [total_env_steps=4e6]
    python -m herjax.train --help                              # the groups, every key and its default

    from herjax.train import train
    result = train(["env=fetch_reach", "seed=1"])   # or train(TrainConfig(...)) or train({"seed": 1})
    result = train(["total_env_steps=20000"], resume=result.run_dir)
    result.history[-1]["test/success_rate"]

A run writes into ``run_dir`` (default ``runs/<env>/<alg>/<timestamp>``): ``config.yaml`` (the resolved config),
``progress.csv`` (one row per epoch, columns ``PROGRESS_COLUMNS`` then the algorithm's metrics), TensorBoard
event files (``tensorboard --logdir runs``) and ``checkpoints/`` (``herjax.checkpoint``: ``latest`` every
``save_every`` epochs, ``best`` by test success, ``periodic`` every ``keep_every``). It prints one line per epoch
with the env steps, steps/s, success rates and the ETA (plain lines, so logs stay readable; on a terminal a
status line also counts the running epoch's seconds).

**Resume.** ``resume=<run_dir>`` restores the newest readable checkpoint (whole training state and the host's
history) and goes on in the same directory, appending to ``progress.csv``. Only ``total_env_steps``,
``stop_success``, ``save_every`` and ``keep_every`` may change on resume. On the CPU the resumed run's rows equal
those of an uninterrupted run bit for bit.

**Signals.** SIGINT (Ctrl-C) or SIGTERM lets the running epoch finish, saves ``latest``, prints the resume
command and exits with status 130 (SIGINT) or 143 (SIGTERM). A second signal quits at once; the last saved
``latest`` is then what a resume starts from.

**Bad input** (unknown env, alg or key, a wrong type, an impossible value, a missing or unreadable resume
directory) prints one line on stderr and exits with status 2 before anything is compiled.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional, Sequence, Union

from herjax import checkpoint as ckpt_lib
from herjax import config as config_lib
from herjax.checkpoint import CheckpointError
from herjax.config import ConfigError, TrainConfig

PROGRESS_COLUMNS = ("epoch", "env_steps", "wall_s", "epoch_s", "steps_per_s")  # then the alg's EPOCH_METRICS
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@dataclasses.dataclass
class TrainResult:
    """What a run returns.

    Attributes:
        config: the resolved config.
        history: one dict per epoch since the run began (resumed runs included), keyed like ``progress.csv``.
        state: the final training state (for DDPG+HER a ``loops.TrainState``).
        run_dir: where the run's files are.
        trainer: the compiled ``Trainer``; ``trainer.run_epoch(state)`` goes on without recompiling, and
            ``train(..., trainer=result.trainer)`` reuses it for another run of the same computation.
        stopped_by: ``"SIGINT"`` or ``"SIGTERM"`` when a signal ended the run early, else ``None``.
        resumed_from: the checkpoint a resumed run started from (``"latest/3"``), else ``None``.
    """

    config: TrainConfig
    history: list[dict[str, float]]
    state: Any
    run_dir: str
    trainer: Any
    stopped_by: Optional[str] = None
    resumed_from: Optional[str] = None

    @property
    def exit_code(self) -> int:
        """0, or 130 / 143 when SIGINT / SIGTERM stopped the run."""
        return EXIT_CODES[getattr(signal, self.stopped_by)] if self.stopped_by else 0


def _make_run_dir(path: str) -> str:
    """Creates ``path``; if it already holds a run, a fresh ``path-1``, ``path-2``... instead."""
    candidate, n = path, 0
    while os.path.exists(os.path.join(candidate, "progress.csv")) or os.path.exists(
        os.path.join(candidate, "checkpoints")
    ):
        n += 1
        candidate = f"{path}-{n}"
    os.makedirs(candidate, exist_ok=True)
    return candidate


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def _progress_line(
    row: dict[str, float], n_epochs: int, total_steps: int, eta_s: float, bound: bool = False
) -> str:
    parts = [
        f"epoch {int(row['epoch']):>3}/{n_epochs}",
        f"env steps {int(row['env_steps']):>9,}/{total_steps:,}",
        f"{row['steps_per_s']:7.0f} steps/s",
        f"test success {row['test/success_rate']:.3f}",
    ]
    if "train/success_rate" in row:
        parts.append(f"train success {row['train/success_rate']:.3f}")
    if "test/mean_Q" in row:
        parts.append(f"test Q {row['test/mean_Q']:7.3f}")
    eta = "0 s" if int(row["epoch"]) >= n_epochs else ("< " if bound else "") + _duration(eta_s)
    parts += [f"{_duration(row['wall_s'])} so far", f"ETA {eta}"]
    return " | ".join(parts)


def resume_command(run_dir: str) -> str:
    return f"python -m herjax.train resume={run_dir}"


def _prepare(cfg_or_overrides: Any, resume: Optional[str]) -> TrainConfig:
    """The resolved config of a new run, or of the run in ``resume`` with the allowed overrides applied. Raises
    ``ConfigError`` or ``CheckpointError`` (one line) before anything is built."""
    if resume is None:
        return config_lib.load(cfg_or_overrides)
    saved = ckpt_lib.read_config(resume)
    if not ckpt_lib.has_checkpoint(resume):
        raise CheckpointError(f"cannot resume {resume!r}: it has no finished checkpoint in {resume}/checkpoints")
    if cfg_or_overrides is None:
        cfg_or_overrides = []
    if isinstance(cfg_or_overrides, TrainConfig):
        cfg = cfg_or_overrides
    else:
        if isinstance(cfg_or_overrides, dict):
            cfg_or_overrides = [f"{k}={config_lib._dotlist_value(v)}" for k, v in cfg_or_overrides.items()]
        if isinstance(cfg_or_overrides, str):
            raise ConfigError(f"expected a list of key=value strings, got the string {cfg_or_overrides!r}")
        cfg = config_lib.parse_overrides(list(cfg_or_overrides), base=saved, apply_scale=False)
    cfg = dataclasses.replace(cfg, run_dir=resume)
    before, after = config_lib.flat_dict(dataclasses.replace(saved, run_dir=resume)), config_lib.flat_dict(cfg)
    changed = [k for k in after if after[k] != before[k] and k not in config_lib.RUN_CONTROL_KEYS]
    if changed:
        raise ConfigError(
            f"cannot change {', '.join(changed)} when resuming (it would be another run); resume may change "
            f"only {', '.join(config_lib.RUN_CONTROL_KEYS)}"
        )
    return config_lib.resolve(cfg)


class Interrupted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: the run quit at once, without saving. ``signum`` is the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _Signals:
    """SIGINT/SIGTERM -> a request to stop at the next epoch boundary; a second one raises ``Interrupted``."""

    def __init__(self, enabled: bool, log: Optional[Callable[[str], None]]):
        self.enabled = enabled
        self.log = log
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}
        self._protected = False
        self._quit: Optional[int] = None

    def __enter__(self) -> "_Signals":
        if self.enabled and threading.current_thread() is threading.main_thread():
            for signum in EXIT_CODES:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)

    @contextlib.contextmanager
    def protect(self):
        """A second signal inside this block (a checkpoint being written) takes effect when the block ends."""
        self._protected = True
        try:
            yield
        finally:
            self._protected = False
        if self._quit is not None:
            raise Interrupted(self._quit)

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            if self._protected:
                self._quit = signum
                return
            raise Interrupted(signum)
        self.received = signum
        if self.log:
            self.log(f"herjax.train: got {signal.Signals(signum).name}: saving the latest checkpoint after this "
                     "epoch (send it again to quit now)")


class _Console:
    """The epoch lines, plus on a terminal a status line that counts the running epoch's seconds."""

    def __init__(self, log: Optional[Callable[[str], None]]):
        self.log = log
        self.live = log is print and sys.stdout.isatty()
        self._status = False

    def line(self, text: str) -> None:
        self.clear()
        if self.log:
            self.log(text)

    def status(self, text: str) -> None:
        if self.live:
            sys.stdout.write("\r\033[K" + text)
            sys.stdout.flush()
            self._status = True

    def clear(self) -> None:
        if self._status:
            sys.stdout.write("\r\033[K")
            sys.stdout.flush()
            self._status = False


def _run_epoch(trainer: Any, state: Any, console: _Console, label: str, expected_s: Optional[float]) -> tuple:
    """``trainer.run_epoch(state)``, computed to the end, on a worker thread.

    A jitted epoch with host callbacks runs synchronously, and a thread blocked in XLA never runs Python's signal
    handlers; so the main thread only waits here, where a signal is handled at once and the terminal's status
    line can count the seconds.
    """
    import jax

    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["out"] = jax.block_until_ready(trainer.run_epoch(state))
        except BaseException as e:  # noqa: BLE001 -- re-raised on the main thread
            box["error"] = e

    # A daemon: after a second signal the process may leave without waiting for the epoch.
    thread = threading.Thread(target=work, name="herjax-epoch", daemon=True)
    start = last = time.perf_counter()
    thread.start()
    while thread.is_alive():
        thread.join(0.1)
        now = time.perf_counter()
        if now - last >= 0.5:
            last = now
            guess = f" of ~{_duration(expected_s)}" if expected_s else ""
            console.status(f"{label}: {_duration(now - start)}{guess}")
    if "error" in box:
        raise box["error"]
    return box["out"]


def _same_computation(a: TrainConfig, b: TrainConfig) -> bool:
    neutral = {k: getattr(TrainConfig(), k) for k in config_lib.RUN_CONTROL_KEYS}
    return dataclasses.replace(a, seed=0, run_dir=None, **neutral) == dataclasses.replace(
        b, seed=0, run_dir=None, **neutral
    )


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
            used only if its config differs from this one in ``seed``, ``run_dir`` and the run-control keys at
            most.
        handle_signals: catch SIGINT/SIGTERM (in the main thread) to save and stop at the end of the epoch.

    Returns:
        ``TrainResult``. Raises ``herjax.config.ConfigError`` on a bad config and
        ``herjax.checkpoint.CheckpointError`` on a missing or unreadable resume directory, both before anything
        is built.
    """
    cfg = _prepare(cfg_or_overrides, resume)
    # Heavy imports after validation, so that a bad argument fails before JAX does any work.
    import jax

    from herjax import algs, envs

    impl = algs.implementation(cfg.alg)
    ckpt_lib.import_env_dependencies_quietly()
    if trainer is not None and _same_computation(trainer.config, cfg):
        env = trainer.env
    else:
        env = envs.make(cfg.env, backend=cfg.backend)
        trainer = impl.make_train(cfg, env)
    per_epoch = trainer.steps_per_epoch
    total_epochs = -(-cfg.total_env_steps // per_epoch)
    console = _Console(log)
    columns = PROGRESS_COLUMNS + tuple(impl.EPOCH_METRICS)

    if resume is None:
        run_dir = _make_run_dir(cfg.run_dir)
        if run_dir != cfg.run_dir:
            cfg = dataclasses.replace(cfg, run_dir=run_dir)
    else:
        run_dir = cfg.run_dir
    checkpointer = ckpt_lib.Checkpointer(run_dir)
    resumed_from = None
    if resume is None:
        history: list[dict[str, float]] = []
        wall_before, best = 0.0, None
        state = trainer.init(jax.random.key(cfg.seed))
        _write_atomic(os.path.join(run_dir, "progress.csv"), ",".join(columns) + "\r\n")
        console.line(f"herjax.train: {cfg.env} ({env.backend}), {cfg.alg}, {total_epochs} epochs of "
                     f"{per_epoch:,} env steps, run_dir {run_dir}")
    else:
        warn = (lambda text: console.line(f"herjax.train: warning: {text}"))
        state, meta, resumed_from = ckpt_lib.restore(run_dir, ckpt_lib.abstract_state(trainer), warn=warn)
        history = [dict(row) for row in meta["history"]]
        wall_before, best = float(meta["wall_s"]), meta.get("best_success")
        dropped = checkpointer.drop_after(int(meta["epoch"]))
        if dropped:
            console.line(f"herjax.train: dropped checkpoints newer than {resumed_from}: {', '.join(dropped)}")
        _write_progress(os.path.join(run_dir, "progress.csv"), columns, history)
        console.line(f"herjax.train: resuming {run_dir} from checkpoint {resumed_from} (epoch {int(meta['epoch'])} "
                     f"of {total_epochs}, {int(meta['env_steps']):,} env steps), {cfg.env} ({env.backend})")
    _write_atomic(os.path.join(run_dir, "config.yaml"), config_lib.to_yaml(cfg))

    writer = _tensorboard(run_dir, cfg, purge_step=(history[-1]["env_steps"] + 1) if history else None)
    stopped_by = None
    session_epochs: list[float] = []
    start = time.perf_counter()
    try:
        with _Signals(handle_signals, console.line) as signals, open(
            os.path.join(run_dir, "progress.csv"), "a", newline=""
        ) as f:
            csv_writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            first_epoch = int(state.epoch)
            if first_epoch >= total_epochs:
                console.line(f"herjax.train: {run_dir} already has {first_epoch} of {total_epochs} epochs; "
                             "nothing to do (raise total_env_steps= to train longer)")
            for epoch in range(first_epoch + 1, total_epochs + 1):
                epoch_start = time.perf_counter()
                expected = _mean_epoch_s(session_epochs)
                label = f"epoch {epoch}/{total_epochs}" + ("" if session_epochs else " (compiling, then running)")
                state, metrics = _run_epoch(trainer, state, console, label, expected)
                metrics = jax.device_get(metrics)
                now = time.perf_counter()
                epoch_s = now - epoch_start
                session_epochs.append(epoch_s)
                row = {
                    "epoch": int(state.epoch),
                    "env_steps": int(state.env_steps),
                    "wall_s": wall_before + now - start,
                    "epoch_s": epoch_s,
                    "steps_per_s": per_epoch / epoch_s,
                    **{k: float(metrics[k]) for k in impl.EPOCH_METRICS},
                }
                history.append(row)
                csv_writer.writerow(row)
                f.flush()
                if writer is not None:
                    for key in columns[2:]:
                        writer.add_scalar(key, row[key], row["env_steps"])
                    writer.flush()
                eta = _mean_epoch_s(session_epochs) * (total_epochs - epoch)
                # The first epoch of a process includes compilation: its ETA is an upper bound.
                first = len(session_epochs) == 1
                console.line(_progress_line(row, total_epochs, cfg.total_env_steps, eta, bound=first))

                success = row["test/success_rate"]
                stop = (
                    signals.received is not None
                    or (cfg.stop_success is not None and success >= cfg.stop_success)
                    or (should_stop is not None and should_stop(row))
                )
                meta = {"epoch": row["epoch"], "env_steps": row["env_steps"], "wall_s": row["wall_s"],
                        "best_success": best, "history": history}
                with signals.protect():
                    if best is None or success >= best:
                        best = meta["best_success"] = success
                        checkpointer.save("best", state, meta)
                    if cfg.keep_every and epoch % cfg.keep_every == 0:
                        checkpointer.save("periodic", state, meta)
                    if epoch % cfg.save_every == 0 or epoch == total_epochs or stop:
                        checkpointer.save("latest", state, meta)
                if signals.received is not None:
                    stopped_by = signal.Signals(signals.received).name
                if stop:
                    break
    except KeyboardInterrupt:
        console.clear()
        if log:
            saved = ckpt_lib.steps(run_dir, "latest")
            if saved:
                log(f"herjax.train: interrupted; the latest checkpoint is epoch {saved[-1]}. Resume with: "
                    f"{resume_command(run_dir)}")
            else:
                log("herjax.train: interrupted before the first checkpoint; nothing to resume")
        raise
    finally:
        console.clear()
        checkpointer.close()
        if writer is not None:
            writer.close()

    if log:
        total = history[-1]["env_steps"] if history else 0
        if stopped_by:
            log(f"herjax.train: stopped by {stopped_by} after epoch {int(state.epoch)} ({total:,} env steps); saved "
                f"the latest checkpoint. Resume with: {resume_command(run_dir)}")
        elif history:
            best_seen = max(row["test/success_rate"] for row in history)
            log(f"herjax.train: done, {len(history)} epochs, {total:,} env steps, "
                f"{_duration(history[-1]['wall_s'])}, best test success {best_seen:.3f}; wrote {run_dir}")
    return TrainResult(config=cfg, history=history, state=state, run_dir=run_dir, trainer=trainer,
                       stopped_by=stopped_by, resumed_from=resumed_from)


def _mean_epoch_s(epoch_s: list[float]) -> float:
    # The first epoch of a process includes compilation: leave it out once there are others.
    later = epoch_s[1:] or epoch_s
    return sum(later) / len(later) if later else 0.0


def _write_progress(path: str, columns: Sequence[str], history: list[dict]) -> None:
    """Rewrites ``progress.csv`` with exactly ``history`` (a resumed run drops rows newer than its checkpoint)."""
    import io

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    _write_atomic(path, buffer.getvalue())


def _tensorboard(run_dir: str, cfg: TrainConfig, purge_step: Optional[int]):
    """A TensorBoard writer on ``run_dir`` (x axis: env steps); ``None`` if tensorboardX is missing."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    writer = SummaryWriter(run_dir, purge_step=purge_step, flush_secs=30)
    if purge_step is None:
        writer.add_text("config", "```\n" + config_lib.to_yaml(cfg) + "\n```", 0)
    return writer


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI: ``key=value`` overrides and ``resume=<run_dir>``; returns the exit status (2 for bad input, 130
    or 143 after SIGINT or SIGTERM)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        text = (__doc__.split("\n\n")[0] + "\n\nusage: python -m herjax.train [key=value ...]\n"
                "       python -m herjax.train resume=RUN_DIR [total_env_steps=N stop_success=X save_every=N "
                "keep_every=N]\n\n" + config_lib.usage())
        try:
            print(text, flush=True)
        except BrokenPipeError:  # e.g. piped into head
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
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
    except (ConfigError, CheckpointError) as e:
        print(f"herjax.train: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        # A second signal: quit now. The epoch's worker thread may still be inside XLA, and an interpreter that
        # finalises under it can hang or crash; the checkpoints and logs are closed, so leave at once.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_CODES[e.signum] if isinstance(e, Interrupted) else EXIT_CODES[signal.SIGINT])
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
