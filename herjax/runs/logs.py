"""The files of a run directory besides its checkpoints (host side: NOT pure, it writes files): the directory
itself, ``config.yaml``, ``progress.csv`` and TensorBoard events."""

from __future__ import annotations

import csv
import io
import os
from typing import Any, Optional, Sequence

from herjax.runs.checkpoint import DiskFullError, finished_text, free_bytes, out_of_space, size_text
from herjax.runs.lock import RunDirError

PROGRESS_COLUMNS = ("epoch", "env_steps", "wall_s", "epoch_s", "steps_per_s")  # then the trainer's epoch_metrics


def make_run_dir(path: str) -> str:
    """Creates ``path``; if it already holds a run, a fresh ``path-1``, ``path-2``... instead. Raises
    ``herjax.runs.lock.RunDirError`` (one line) when the directory cannot be created."""
    candidate, n = path, 0
    while os.path.exists(os.path.join(candidate, "progress.csv")) or os.path.exists(
        os.path.join(candidate, "checkpoints")
    ):
        n += 1
        candidate = f"{path}-{n}"
    if os.path.exists(candidate) and not os.path.isdir(candidate):
        raise RunDirError(f"bad value {path!r} for run_dir: it is a file, not a directory")
    try:
        os.makedirs(candidate, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"bad value {path!r} for run_dir: cannot create it ({e.strerror}); give a writable "
                          "path") from None
    return candidate


def write_atomic(path: str, text: str) -> None:
    """Replaces ``path`` with ``text`` at once (a temporary file, then a rename): a failed write leaves the old
    file. A full disk raises ``DiskFullError`` (one line, with the bytes the file needed)."""
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        if not out_of_space(e):
            raise
        raise DiskFullError(f"no space left on the device of {path}: writing it needs {size_text(len(text.encode()))}"
                            f", {size_text(free_bytes(path))} is free; the previous {os.path.basename(path)} is "
                            "intact") from None


def write_progress(path: str, columns: Sequence[str], history: list[dict]) -> None:
    """Rewrites ``progress.csv`` with exactly ``history`` (a resumed run drops rows newer than its checkpoint)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_atomic(path, buffer.getvalue())


def tensorboard(run_dir: str, config_yaml: str, purge_step: Optional[int]):
    """A TensorBoard writer on ``run_dir`` (x axis: env steps); ``None`` if tensorboardX is missing."""
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        return None
    # tensorboardX names its file by the second and the host only, and opens it with "wb": a resume started
    # within the same second as the run before it would overwrite that run's events. The suffix counts the
    # event files already there, so each writer of a run gets a file of its own.
    earlier = sum(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))
    writer = SummaryWriter(run_dir, purge_step=purge_step, flush_secs=30, filename_suffix=f".{earlier}")
    if purge_step is None:
        writer.add_text("config", "```\n" + config_yaml + "\n```", 0)
    return writer




class ProgressLog:
    """``progress.csv`` (and TensorBoard, when tensorboardX is installed) of a run, one row per epoch.

    A new run writes the header; a resumed one rewrites the file with exactly the rows of its checkpoint (it drops
    rows newer than the checkpoint, which the resumed run recomputes), then both append.
    """

    def __init__(self, run_dir: str, columns: Sequence[str], history: list[dict], config_yaml: str):
        self.columns = tuple(columns)
        path = os.path.join(run_dir, "progress.csv")
        self._run_dir, self._path = run_dir, path
        write_progress(path, self.columns, history)
        self._file = open(path, "a", newline="")
        self._csv = csv.DictWriter(self._file, fieldnames=self.columns, extrasaction="ignore")
        self._tb = tensorboard(run_dir, config_yaml, purge_step=(history[-1]["env_steps"] + 1) if history else None)

    def write(self, row: dict[str, Any]) -> None:
        """Appends ``row`` to ``progress.csv`` and TensorBoard. A full disk raises ``DiskFullError`` (one line: the
        bytes the row needed, the bytes free, and the checkpoints a resume starts from, which it leaves as they
        were; a resume rewrites ``progress.csv`` from its checkpoint, so a half-written row is dropped then)."""
        try:
            self._csv.writerow(row)
            self._file.flush()
            if self._tb is not None:
                for key in self.columns[2:]:
                    self._tb.add_scalar(key, row[key], row["env_steps"])
                self._tb.flush()
        except OSError as e:
            if not out_of_space(e):
                raise
            needed = len(",".join(str(row.get(c, "")) for c in self.columns)) + 1
            raise DiskFullError(
                f"no space left on the device of {self._path} while writing the row of epoch {row['epoch']}: it "
                f"needs about {size_text(needed)}, {size_text(free_bytes(self._path))} is free; the checkpoints "
                f"are intact ({finished_text(self._run_dir)})") from None

    def close(self) -> None:
        """Closes both files. A full disk at close is not raised: every row was flushed by ``write``, which reports
        a full disk itself, and a close in the ``finally`` of a run that already failed must not hide that error."""
        for close in [self._file.close] + ([self._tb.close] if self._tb is not None else []):
            try:
                close()
            except OSError as e:
                if not out_of_space(e):
                    raise


class NoProgressLog:
    """A ``ProgressLog`` that writes nothing: a multi-process run's processes other than process 0."""

    def write(self, row: dict[str, Any]) -> None:
        pass

    def close(self) -> None:
        pass
