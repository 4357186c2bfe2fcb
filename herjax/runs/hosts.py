"""One run over several processes (host side: NOT pure, it joins processes and exchanges values between them).

``distributed=true`` joins this process to a multi-process run with ``jax.distributed.initialize()``: under Slurm
(``srun``) or Open MPI (``mpirun``) the coordinator, the process count and this process's id are found from the
environment; elsewhere ``coordinator_address=HOST:PORT num_processes=N process_id=I`` give them (any one given wins
over the environment's). The run's mesh then spans the devices of every process (``herjax.loops.sharding``), and
every process runs the same program on its share of the envs, buffers and batch.

Process 0 alone writes the run directory's own files (``config.yaml``, ``progress.csv``, TensorBoard events, the
lock, checkpoint checksums and deletions) and prints; every process writes its shards of each checkpoint (orbax)
and reads every checkpoint on resume. The host decisions that must agree (the run directory, when to stop) are
process 0's or taken over every process, so that no process is left waiting in a collective.

``HERJAX_DISTRIBUTED_TIMEOUT_S`` (default 300) bounds how long a process waits for the others to join, and for a
process that stopped answering; then XLA aborts the process (its own error, not one line). A process other than 0
given ``coordinator_address`` first waits that long for the coordinator to accept a connection, and stops with one
line if none does.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Sequence

from herjax.checks import ConfigError

TIMEOUT_ENV = "HERJAX_DISTRIBUTED_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 300


def timeout_s() -> int:
    """``$HERJAX_DISTRIBUTED_TIMEOUT_S``, else ``DEFAULT_TIMEOUT_S``. Raises ``ConfigError`` for a bad value."""
    text = os.environ.get(TIMEOUT_ENV, "").strip()
    if not text:
        return DEFAULT_TIMEOUT_S
    if not text.isdigit() or int(text) < 1:
        raise ConfigError(f"bad value {text!r} for ${TIMEOUT_ENV}: expected a whole number of seconds >= 1")
    return int(text)


def initialize(cfg: Any) -> None:
    """Joins the processes of ``cfg`` (a ``TrainConfig``; only its launch keys are read); nothing without
    ``distributed=true``, or when this process has joined already. It must come before any JAX computation. Raises
    ``ConfigError`` (one line) when no coordinator is given or found, or when JAX has started already."""
    if not cfg.distributed:
        return
    import jax

    if jax.distributed.is_initialized():
        return
    from herjax import _xla

    if _xla.backends_started():
        raise ConfigError("distributed=true must join the other processes before this process computes anything "
                          "with JAX: start a new Python process for the run")
    timeout = timeout_s()
    if cfg.coordinator_address is not None and cfg.process_id:
        _wait_for_coordinator(cfg.coordinator_address, timeout)
    try:
        jax.distributed.initialize(
            coordinator_address=cfg.coordinator_address, num_processes=cfg.num_processes, process_id=cfg.process_id,
            initialization_timeout=timeout, heartbeat_timeout_seconds=timeout, shutdown_timeout_seconds=timeout,
        )
    except (ValueError, TypeError) as e:  # what Slurm or Open MPI would have told, and nothing gave
        raise ConfigError(
            f"distributed=true found no run to join ({_one_line(e)}): run under srun (Slurm) or mpirun (Open MPI), "
            "or give coordinator_address=HOST:PORT num_processes=N process_id=I"
        ) from None


def _wait_for_coordinator(address: str, timeout: int) -> None:
    """Waits until something accepts a connection at ``address`` (``HOST:PORT``, process 0's coordinator), for up to
    ``timeout`` seconds. XLA itself, finding no coordinator, aborts the process with a stack trace (exit status 134);
    this says so in one line instead (``ConfigError``). Only a process other than 0 asks: process 0 is the
    coordinator."""
    import socket
    import time

    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=min(5.0, timeout)):
                return
        except OSError as e:
            if time.monotonic() >= deadline:
                raise ConfigError(
                    f"bad value {address!r} for coordinator_address: no coordinator answered there within {timeout} s "
                    f"({_one_line(e)}); process 0 runs it, so start process 0 with the same address, or wait longer "
                    f"with ${TIMEOUT_ENV}"
                ) from None
        time.sleep(0.5)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def count() -> int:
    """Processes in the run: 1 unless this process joined others (``initialize``)."""
    import jax

    return jax.process_count() if jax.distributed.is_initialized() else 1


def is_main() -> bool:
    """Whether this is process 0, the one that writes the run's files and prints (always, outside a multi-process
    run)."""
    import jax

    return not jax.distributed.is_initialized() or jax.process_index() == 0


def _broadcast_bytes(data: bytes) -> bytes:
    """Process 0's ``data`` on every process."""
    import numpy as np
    from jax.experimental import multihost_utils

    size = int(multihost_utils.broadcast_one_to_all(np.asarray(len(data), np.int32)))
    padded = np.frombuffer(data.ljust(size, b"\0")[:size], np.uint8) if size else np.zeros((0,), np.uint8)
    return bytes(np.asarray(multihost_utils.broadcast_one_to_all(padded)))


def from_main(fn: Callable[[], str], errors: Sequence[type]) -> str:
    """``fn()`` run on process 0 alone, its result (text) returned on every process. An error of one of ``errors``
    (one-line exceptions) on process 0 is raised on every process, so none waits for a result that never comes.
    Outside a multi-process run, just ``fn()``."""
    if count() == 1:
        return fn()
    status, text = "ok", ""
    if is_main():
        try:
            text = fn()
        except tuple(errors) as e:
            status, text = str(next(i for i, kind in enumerate(errors) if isinstance(e, kind))), str(e)
    status, text = _broadcast_bytes(f"{status}\n{text}".encode()).decode().split("\n", 1)
    if status != "ok":
        raise errors[int(status)](text)
    return text


def agree_max(values: Sequence[int]) -> list[int]:
    """The largest of each of ``values`` over every process (one process: ``values``): host decisions that must be
    the same everywhere, e.g. stop after this epoch when any process got a signal."""
    if count() == 1:
        return list(values)
    import numpy as np
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.asarray(values, np.int32))
    return [int(v) for v in np.asarray(gathered).reshape(-1, len(values)).max(axis=0)]


def barrier(name: str) -> None:
    """Waits until every process reaches ``barrier(name)`` (nothing outside a multi-process run)."""
    if count() == 1:
        return
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)

