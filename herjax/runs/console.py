"""The console of a run (host side: NOT pure, it prints and handles signals): progress lines, the live status line,
SIGINT/SIGTERM handling and the epoch run on a worker thread so that signals are handled at once."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from typing import Any, Callable, Optional

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def progress_line(
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
    if row.get("train/env_resets_nonfinite", 0) > 0:
        parts.append(f"non-finite env resets {int(row['train/env_resets_nonfinite'])}")
    eta = "0 s" if int(row["epoch"]) >= n_epochs else ("< " if bound else "") + duration(eta_s)
    parts += [f"{duration(row['wall_s'])} so far", f"ETA {eta}"]
    return " | ".join(parts)


class Interrupted(KeyboardInterrupt):
    """A second SIGINT/SIGTERM: the run quit at once, without saving. ``signum`` is the signal."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class Signals:
    """SIGINT/SIGTERM -> a request to stop at the next epoch boundary; a second one raises ``Interrupted``."""

    def __init__(self, enabled: bool, log: Optional[Callable[[str], None]]):
        self.enabled = enabled
        self.log = log
        self.received: Optional[int] = None
        self._previous: dict[int, Any] = {}
        self._protected = False
        self._quit: Optional[int] = None

    def __enter__(self) -> "Signals":
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


class Console:
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


def run_epoch(trainer: Any, state: Any, console: Console, label: str, expected_s: Optional[float]) -> tuple:
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
            guess = f" of ~{duration(expected_s)}" if expected_s else ""
            console.status(f"{label}: {duration(now - start)}{guess}")
    if "error" in box:
        raise box["error"]
    return box["out"]
