"""Checkpoints of a run, with orbax-checkpoint (host side: NOT pure, it reads and writes files).

A run directory holds three kinds of checkpoint, each a folder of orbax steps named by epoch::

    <run_dir>/checkpoints/latest/<epoch>/    every ``save_every`` epochs, after the last epoch and on a signal;
                                             the two newest are kept
    <run_dir>/checkpoints/best/<epoch>/      the epoch with the highest test success so far (ties: the latest)
    <run_dir>/checkpoints/periodic/<epoch>/  every ``keep_every`` epochs, never deleted

Each step holds two items: ``state``, the whole training state pytree of the algorithm (for DDPG+HER the
``herjax.loops.TrainState``: online and target parameters, optimiser states, normaliser statistics, the replay
buffer, the PRNG key and the counters), and ``meta``, JSON with what the host loop needs to go on exactly: the
``progress.csv`` rows so far, the wall-clock seconds so far and the best test success.

**Atomicity.** orbax writes a step into ``<epoch>.orbax-checkpoint-tmp-*`` and renames it into place only
when every file is written, so a crash or a kill during a save leaves at most a temporary folder, which is
never listed as a step (and is removed when the run is next opened). Each finished step also records the
size and CRC-32 of its files (``herjax_checksums.json``), so damage after the save is caught before orbax reads
the step. ``restore`` goes from the newest step to older ones (of every kind) and uses the first that verifies
and reads back; a step it cannot use is reported and skipped, so one damaged checkpoint costs at most the
epochs since the one before it.

**Several processes** (``herjax.runs.hosts``): every process calls ``save`` and ``restore`` (orbax writes and reads
each process's shards); process 0 alone writes the checksums and deletes steps, and the others wait for it.

    ckpt = Checkpointer(run_dir)
    ckpt.save("latest", state, meta)
    state, meta, where = restore(run_dir, abstract_state)      # newest readable
    run = load_run(run_dir, "best")                             # config, env, trainer and state, for play/export
    agent, meta = restore_field(run_dir, "best", 7, "agent", abstract_agent)   # one field only (init_from)
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import math
import os
import shutil
import sys
import time
import warnings
import zlib
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from herjax.runs import hosts

KINDS = ("latest", "best", "periodic")
KEEP_LATEST = 2
CHECKSUMS = "herjax_checksums.json"


class CheckpointError(RuntimeError):
    """No readable checkpoint (or no run) where one was expected; the message is one line."""


class DiskFullError(RuntimeError):
    """The disk filled up during a write of the run (a checkpoint, ``progress.csv``); what was saved before is
    intact. The message is one line and says how much space the write needed."""


_OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_OUT_OF_SPACE_TEXT = ("no space left on device", "disk quota exceeded", "file too large", "enospc")


def out_of_space(error: BaseException) -> bool:
    """Whether ``error`` (or an error it was raised from) is the disk or a quota filling up. orbax's array writer
    (tensorstore) reports it as a ``ValueError`` with the system's message, so the text counts too."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in _OUT_OF_SPACE:
            return True
        if any(text in str(error).lower() for text in _OUT_OF_SPACE_TEXT):
            return True
        error = error.__cause__ or error.__context__
    return False


def size_text(n_bytes: float) -> str:
    if n_bytes < 1000:
        return f"{n_bytes:.0f} bytes"
    for unit in ("KB", "MB"):
        n_bytes /= 1000
        if n_bytes < 1000:
            return f"{n_bytes:.1f} {unit}"
    return f"{n_bytes / 1000:.1f} GB"


def free_bytes(path: str) -> int:
    """Free bytes on the file system of ``path`` (or of its nearest existing parent)."""
    while not os.path.exists(path):
        path = os.path.dirname(path)
    return shutil.disk_usage(path).free


def checkpoint_dir(run_dir: str, kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown checkpoint kind {kind!r}; valid: {', '.join(KINDS)}")
    return os.path.abspath(os.path.join(run_dir, "checkpoints", kind))  # orbax takes absolute paths only


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def _to_saveable(tree: Any) -> Any:
    """What orbax can write: typed PRNG keys -> their raw ``uint32`` data, and empty arrays (e.g. the controls of
    an env without actuators, in a state that carries envs) -> a one-element placeholder."""

    def leaf(x: Any) -> Any:
        if _is_key(x):
            return jax.random.key_data(x)
        return _placeholder(x) if math.prod(x.shape) == 0 else x

    return jax.tree.map(leaf, tree)


def _placeholder(x: Any) -> Any:
    """The one-element stand-in of an empty array: replicated on the mesh ``x`` lives on, if any (in a multi-process
    run orbax saves only arrays of the whole mesh), else a plain one."""
    sharding = None if isinstance(x, jax.core.Tracer) else getattr(x, "sharding", None)
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.device_put(np.zeros((1,), x.dtype), _replicated(sharding))
    return jnp.zeros((1,), x.dtype)


def _replicated(sharding: Any) -> Any:
    """``sharding``'s mesh, every array whole on each device (a ``NamedSharding``; any other sharding as it is)."""
    if isinstance(sharding, jax.sharding.NamedSharding):
        return jax.sharding.NamedSharding(sharding.mesh, jax.sharding.PartitionSpec())
    return sharding


def _from_saveable(tree: Any, abstract: Any) -> Any:
    """Inverse of ``_to_saveable``, the key implementation and empty shapes taken from ``abstract``."""

    def leaf(x: Any, a: Any) -> Any:
        if _is_key(a):
            # An abstract key's dtype carries its PRNG implementation; jax.random.key_impl takes concrete keys only.
            return jax.random.wrap_key_data(x, impl=a.dtype._impl)
        return jnp.zeros(a.shape, a.dtype) if math.prod(a.shape) == 0 else x

    return jax.tree.map(leaf, tree, abstract)


def abstract_state(trainer: Any) -> Any:
    """The shapes and dtypes of one seed's state of ``trainer.init`` (what a checkpoint holds; a vmapped run of
    ``num_seeds`` saves each seed's on its own), computed without allocating it."""
    num_seeds = getattr(trainer.config, "num_seeds", 1)
    if num_seeds == 1:
        return jax.eval_shape(trainer.init, jax.random.key(0))
    stacked = jax.eval_shape(trainer.init, jax.random.split(jax.random.key(0), num_seeds))
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), stacked)


def _restore_target(abstract: Any, shardings: Any = None) -> Any:
    """What orbax reads a state of ``abstract``'s shapes into: each array where ``shardings`` (a pytree prefix of
    ``abstract``, e.g. ``Trainer.state_shardings``) puts it, else on this process's first device."""
    if shardings is None:
        shardings = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    saveable = jax.eval_shape(_to_saveable, abstract)

    def target(sharding: Any, sub_abstract: Any, sub_saveable: Any) -> Any:
        def leaf(a: Any, s: Any) -> Any:  # an empty array's placeholder is replicated (``_placeholder``)
            return jax.ShapeDtypeStruct(
                s.shape, s.dtype, sharding=_replicated(sharding) if math.prod(a.shape) == 0 else sharding)

        return jax.tree.map(leaf, sub_abstract, sub_saveable)

    return jax.tree.map(target, shardings, abstract, saveable, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))


class _NoFullDiskRecords(logging.Filter):
    """Drops orbax's own log records of a full disk: herjax reports one itself, in one line (``DiskFullError``).
    orbax logs it at ERROR from a writer thread, which can come after ``Checkpointer.save``'s quiet block has ended
    (seen on Python 3.13: the record printed before herjax's line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage().lower()
        except Exception:  # noqa: BLE001 -- a record that cannot be formatted is not ours to drop
            return True
        return not any(part in text for part in _OUT_OF_SPACE_TEXT)


def _quiet_orbax() -> None:
    # orbax logs every save and restore at INFO through absl; a run's console is for its progress.
    absl = logging.getLogger("absl")
    absl.setLevel(logging.WARNING)
    if not any(isinstance(f, _NoFullDiskRecords) for f in absl.filters):
        absl.addFilter(_NoFullDiskRecords())


@contextlib.contextmanager
def _absl_level(level: int):
    """absl's logger (orbax logs through it) at ``level`` for the block, then back as it was."""
    absl = logging.getLogger("absl")
    previous = absl.level
    absl.setLevel(level)
    try:
        yield
    finally:
        absl.setLevel(previous)


def _manager(run_dir: str, kind: str):
    import orbax.checkpoint as ocp

    _quiet_orbax()
    options = ocp.CheckpointManagerOptions(
        max_to_keep={"latest": KEEP_LATEST, "best": 1, "periodic": None}[kind],
        enable_async_checkpointing=False,  # run_epoch donates the state: a save must end before the next epoch
        cleanup_tmp_directories=True,
    )
    return ocp.CheckpointManager(checkpoint_dir(run_dir, kind), options=options)


def steps(run_dir: str, kind: str) -> list[int]:
    """The finished steps (epochs) of ``kind``, oldest first; temporary folders of unfinished saves excluded."""
    path = checkpoint_dir(run_dir, kind)
    if not os.path.isdir(path):
        return []
    import orbax.checkpoint as ocp

    _quiet_orbax()
    return sorted(s for s in ocp.utils.checkpoint_steps(path) if s is not None)


def _remove_until_gone(path: str, quiet_s: float = 0.1, limit_s: float = 10.0) -> None:
    """Removes ``path`` and removes it again until it stays gone for ``quiet_s``: a save that failed on a full disk
    raises while tensorstore's writes of its other arrays are still in flight, and those recreate the folders they
    write into (a real full disk left such a folder behind in about 1 of 20 runs here before this)."""
    deadline = time.monotonic() + limit_s
    while True:
        shutil.rmtree(path, ignore_errors=True)
        time.sleep(quiet_s)
        if not os.path.exists(path) or time.monotonic() > deadline:
            return


class Checkpointer:
    """Writes the checkpoints of one run (see the module docstring); one orbax manager per kind."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self._managers: dict[str, Any] = {}

    def _get(self, kind: str):
        if kind not in self._managers:
            self._managers[kind] = _manager(self.run_dir, kind)
        return self._managers[kind]

    def save(self, kind: str, state: Any, meta: dict) -> None:
        """Saves ``state`` and ``meta`` (JSON-able, with an integer ``epoch``) as step ``meta['epoch']``.

        Raises ``DiskFullError`` (one line: the space needed and free) when the disk fills up during the save; the
        unfinished step is removed and every earlier step is left as it was (orbax deletes the oldest steps only
        after a save succeeds).
        """
        import orbax.checkpoint as ocp

        manager = self._get(kind)
        epoch = int(meta["epoch"])
        if epoch in manager.all_steps():  # a step left over from before a fallback: this one supersedes it
            manager.delete(epoch)
        saveable = _to_saveable(state)
        args = ocp.args.Composite(state=ocp.args.PyTreeSave(saveable), meta=ocp.args.JsonSave(meta))
        where = step_dir(self.run_dir, kind, epoch)
        _quiet_failed_io()
        # orbax's writer threads log their failures with a traceback before the save raises; the save's own error
        # is what is reported (one line for a full disk), so those logs are held back until the writers are done
        # (they may log from ``wait_until_finished``, after ``save`` has returned).
        try:
            with _absl_level(logging.CRITICAL), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                manager.save(epoch, args=args, force=True)
                manager.wait_until_finished()
            if hosts.is_main():
                _write_checksums(where)
            hosts.barrier(f"herjax checkpoint {kind}/{epoch}")
        except Exception as e:  # noqa: BLE001 -- only a full disk is translated; anything else goes on up
            if not out_of_space(e):
                raise
            self._discard(kind, epoch)
            needed = sum(x.nbytes for x in jax.tree.leaves(saveable)) + len(json.dumps(meta))
            raise DiskFullError(
                f"no space left on the device of {checkpoint_dir(self.run_dir, kind)} while saving checkpoint "
                f"{kind}/{epoch}: it needs about {size_text(needed)}, {size_text(free_bytes(self.run_dir))} is "
                f"free; the earlier checkpoints are intact ({finished_text(self.run_dir)})"
            ) from None

    def _discard(self, kind: str, epoch: int) -> None:
        """Removes what an unfinished save of ``kind/epoch`` left: orbax's temporary folder, or a step renamed into
        place whose checksums could not be written; and drops the manager, whose view of the steps is stale."""
        manager = self._managers.pop(kind)
        try:
            manager.close()
        except Exception:  # noqa: BLE001 -- closing after a failed write may fail the same way
            pass
        folder = checkpoint_dir(self.run_dir, kind)
        for name in os.listdir(folder) if os.path.isdir(folder) and hosts.is_main() else []:
            if name == str(epoch) or name.startswith(f"{epoch}.orbax-checkpoint-tmp"):
                _remove_until_gone(os.path.join(folder, name))

    def close(self) -> None:
        for manager in self._managers.values():
            manager.close()
        self._managers.clear()


def drop_after(run_dir: str, epoch: int) -> list[str]:
    """Deletes every step newer than ``epoch`` (of every kind); returns what it deleted. A run resumed from
    ``epoch`` recomputes those epochs exactly, so nothing is lost. In a multi-process run process 0 deletes and
    every process returns once it has."""
    dropped = [f"{kind}/{step}" for kind in KINDS for step in steps(run_dir, kind) if step > epoch]
    if hosts.is_main():
        for name in dropped:
            kind, step = name.split("/")
            shutil.rmtree(step_dir(run_dir, kind, int(step)))
    hosts.barrier(f"herjax drop_after {run_dir} {epoch}")
    return dropped


def _file_checksums(step_dir: str) -> dict[str, list[int]]:
    out = {}
    for root, _, files in os.walk(step_dir):
        for name in files:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, step_dir)
            if relative.startswith(CHECKSUMS):
                continue
            crc = 0
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 22), b""):
                    crc = zlib.crc32(block, crc)
            out[relative] = [os.path.getsize(path), crc]
    return out


def _write_checksums(step_dir: str) -> None:
    """Records the size and CRC-32 of every file of a finished step (``herjax_checksums.json``, written
    atomically), so that a damaged step is recognised before orbax reads it."""
    tmp = os.path.join(step_dir, CHECKSUMS + ".tmp")
    with open(tmp, "w") as f:
        json.dump(_file_checksums(step_dir), f)
    os.replace(tmp, os.path.join(step_dir, CHECKSUMS))


def verify(step_dir: str) -> None:
    """Raises ``CheckpointError`` naming the first file of ``step_dir`` that is missing or differs from its
    recorded size and CRC-32. A step saved without checksums (a crash between orbax's rename and the checksum
    file) passes unverified."""
    path = os.path.join(step_dir, CHECKSUMS)
    if not os.path.isfile(path):
        return
    with open(path) as f:
        expected = json.load(f)
    actual = _file_checksums(step_dir)
    for name, (size, crc) in expected.items():
        if name not in actual:
            raise CheckpointError(f"file {name} is missing")
        if actual[name][0] != size:
            raise CheckpointError(f"file {name} has {actual[name][0]} bytes, expected {size}")
        if actual[name][1] != crc:
            raise CheckpointError(f"file {name} fails its CRC-32 check")


class IncompatibleCheckpointError(CheckpointError):
    """A readable checkpoint whose arrays do not fit the state its run's config builds (an edited ``config.yaml``, or
    a run written by another herjax version); every step of the run is then the same, so none is tried."""


def _leaf_name(path: tuple) -> str:
    """A state leaf's dotted name, as orbax names the arrays it saves (``agent.obs_stats.sum``)."""
    part = lambda k: str(getattr(k, "name", getattr(k, "key", getattr(k, "idx", k))))
    return ".".join(part(k) for k in path)


def saved_arrays(state_dir: str) -> dict[str, tuple[tuple[int, ...], str]]:
    """``{dotted name: (shape, dtype name)}`` of every array a step's ``state`` item holds (``_leaf_name``'s names),
    from orbax's metadata, without reading the arrays. Raises whatever orbax raises for unreadable metadata."""
    import orbax.checkpoint as ocp

    # ERROR: orbax warns that steps written without its optional step metadata lack it.
    with _absl_level(logging.ERROR), ocp.PyTreeCheckpointer() as checkpointer:
        saved_tree = checkpointer.metadata(state_dir).item_metadata.tree
    return {leaf.name: (tuple(leaf.shape), str(leaf.dtype)) for leaf in jax.tree.leaves(saved_tree)}


def array_specs(tree: Any, prefix: str = "") -> dict[str, tuple[tuple[int, ...], str]]:
    """``{dotted name: (shape, dtype name)}`` of every leaf of ``tree`` (arrays or ``ShapeDtypeStruct``s) as a
    checkpoint stores it (``_to_saveable``: a PRNG key as its ``uint32`` data), in ``tree``'s leaf order, to compare
    with ``saved_arrays``; ``prefix`` (``"agent."``) names a subtree as it is named inside the whole state."""
    saveable = jax.eval_shape(_to_saveable, tree)
    return {
        prefix + _leaf_name(path): (tuple(leaf.shape), str(leaf.dtype))
        for path, leaf in jax.tree_util.tree_flatten_with_path(saveable)[0]
    }


def show_array(shape_dtype: tuple[tuple[int, ...], str]) -> str:
    """``float32[13, 256]``, from an entry of ``saved_arrays`` or ``array_specs``."""
    return f"{shape_dtype[1]}{list(shape_dtype[0])}"


def _check_fits(state_dir: str, target: Any, where: str) -> None:
    """Raises ``IncompatibleCheckpointError`` naming the first differences between the arrays saved in
    ``state_dir`` and those of ``target`` (``_restore_target``: missing or extra arrays, other shapes or dtypes).
    Metadata that cannot be read says nothing here: reading the step will fail and report it."""
    try:
        saved = saved_arrays(state_dir)
    except Exception:  # noqa: BLE001 -- unreadable metadata is a damaged step, handled by the read itself
        return
    wanted = array_specs(target)
    differences = [
        f"{name} is {show_array(saved[name])} there but {show_array(wanted[name])} here"
        for name in wanted if name in saved and saved[name] != wanted[name]
    ]
    differences += [f"{name} is missing" for name in wanted if name not in saved]
    differences += [f"it has an extra array {name}" for name in saved if name not in wanted]
    if differences:
        more = f" (and {len(differences) - 2} more)" if len(differences) > 2 else ""
        raise IncompatibleCheckpointError(
            f"checkpoint {where} does not fit the state that the run's config.yaml builds (was config.yaml edited, or "
            f"the run written by another herjax version?): {'; '.join(differences[:2])}{more}"
        )


def step_dir(run_dir: str, kind: str, step: int) -> str:
    """The folder of one finished step."""
    return os.path.join(checkpoint_dir(run_dir, kind), str(step))


def _open_step(run_dir: str, kind: str, step: int) -> tuple[str, dict]:
    """A finished step's folder, its checksums verified, and its ``meta`` (which must be of epoch ``step``)."""
    import orbax.checkpoint as ocp

    _quiet_orbax()
    path = os.path.abspath(step_dir(run_dir, kind, step))
    verify(path)
    # Plain checkpointers, not a manager: a manager closed after a failed read leaves asyncio noise on stderr.
    with ocp.Checkpointer(ocp.JsonCheckpointHandler()) as checkpointer:
        meta = dict(checkpointer.restore(os.path.join(path, "meta"), args=ocp.args.JsonRestore()))
    if int(meta.get("epoch", -1)) != step:
        raise CheckpointError(f"{kind}/{step} holds epoch {meta.get('epoch')!r}")
    return path, meta


def _read_state(path: str, target: Any, *, partial: bool = False) -> Any:
    """The arrays of ``target`` (``_restore_target``'s) from a step folder's ``state``; ``partial``: ``target`` names
    only some of its fields."""
    import orbax.checkpoint as ocp

    restore_args = ocp.checkpoint_utils.construct_restore_args(target)
    with ocp.PyTreeCheckpointer() as checkpointer:
        return checkpointer.restore(
            os.path.join(path, "state"),
            args=ocp.args.PyTreeRestore(target, restore_args=restore_args, partial_restore=partial),
        )


def _restore_step(run_dir: str, kind: str, step: int, abstract: Any, shardings: Any = None) -> tuple[Any, dict]:
    path, meta = _open_step(run_dir, kind, step)
    target = _restore_target(abstract, shardings)
    _check_fits(os.path.join(path, "state"), target, f"{kind}/{step}")
    state = _from_saveable(_read_state(path, target), abstract)
    if int(state.epoch) != step:
        raise CheckpointError(f"{kind}/{step} holds a state of epoch {int(state.epoch)}")
    return state, meta


def restore_field(run_dir: str, kind: str, step: int, field: str, abstract: Any) -> tuple[Any, dict]:
    """One field of a step's training state (e.g. ``agent``) and the step's ``meta``, reading none of the other
    arrays (the replay buffer is most of a step). The caller has checked that ``abstract`` fits what the step holds
    (``saved_arrays``); the step's checksums are verified here.

    Args:
        run_dir: the run directory.
        kind: the checkpoint kind.
        step: the step (epoch).
        field: the field of the saved state (its name in ``saved_arrays``, before the first dot).
        abstract: the field's shapes and dtypes.

    Returns:
        ``(tree, meta)``, ``tree`` with ``abstract``'s structure. Raises ``CheckpointError`` or orbax's error for a
        damaged step.
    """
    path, meta = _open_step(run_dir, kind, step)
    restored = _read_state(path, {field: _restore_target(abstract)}, partial=True)
    return _from_saveable(restored[field], abstract), meta


class _DropOrphanedReads(logging.Filter):
    """Drops asyncio's "Task (Future, _GatheringFuture) exception was never retrieved" for orbax's reads or writes of
    a failed step, and for any write that found the disk full (herjax has said so in one line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "exception was never retrieved" not in message.split("\n", 1)[0]:
            return True
        error = record.exc_info[1] if record.exc_info else None
        words = ("async_deserialize", "async_serialize", "tensorstore", "zarr", "OCDBT", "RESOURCE_EXHAUSTED")
        return not ((error is not None and out_of_space(error)) or any(word in message for word in words))


def _quiet_failed_io() -> None:
    """Silences the aftermath of a step that failed to restore or save (the failure itself is reported as one line).

    When one array of a step cannot be read or written, orbax abandons the step's other operations: each later
    reaches the ``asyncio`` logger as "Task (or Future) exception was never retrieved" with a long traceback, or
    raises ``RuntimeError('Event loop is closed')`` from a tensorstore thread into ``sys.unraisablehook`` or
    ``sys.excepthook``, while or long after the failure is handled; their coroutines, collected at exit, warn that
    they were never awaited. Drop exactly those; everything else goes through. Installed once, before the first read
    or write.
    """
    if getattr(sys.unraisablehook, "_herjax_filter", False):
        return
    closed_loop = lambda value: isinstance(value, RuntimeError) and str(value) == "Event loop is closed"
    previous_unraisable, previous_except = sys.unraisablehook, sys.excepthook

    def unraisable_hook(unraisable: Any) -> None:
        if not closed_loop(unraisable.exc_value):
            previous_unraisable(unraisable)

    def except_hook(kind: type, value: BaseException, traceback: Any) -> None:
        if not closed_loop(value):
            previous_except(kind, value, traceback)

    unraisable_hook._herjax_filter = True  # type: ignore[attr-defined]
    sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook
    logging.getLogger("asyncio").addFilter(_DropOrphanedReads())
    # The abandoned writes' coroutines, collected at exit: "coroutine '...write_fragment' was never awaited".
    warnings.filterwarnings("ignore", message=r"coroutine '[^']*(async_serialize|async_deserialize)[^']*' was never "
                            "awaited", category=RuntimeWarning)


def candidates(run_dir: str, kinds: tuple[str, ...] = KINDS) -> list[tuple[str, int]]:
    """``(kind, epoch)`` of every finished step, newest epoch first (``latest`` before the others on a tie)."""
    found = [(kind, step) for kind in kinds for step in steps(run_dir, kind)]
    return sorted(found, key=lambda ks: (-ks[1], kinds.index(ks[0])))


def finished_text(run_dir: str) -> str:
    """Every finished step as ``kind/epoch``, newest first, comma-separated; ``none yet`` when there is none."""
    return ", ".join(f"{kind}/{epoch}" for kind, epoch in candidates(run_dir)) or "none yet"


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def restore(
    run_dir: str,
    abstract: Any,
    *,
    kinds: tuple[str, ...] = KINDS,
    warn: Optional[Callable[[str], None]] = None,
    shardings: Any = None,
) -> tuple[Any, dict, str]:
    """The newest readable checkpoint among ``kinds``.

    Args:
        run_dir: the run directory.
        abstract: the state's shapes (``abstract_state(trainer)``).
        kinds: which kinds to consider, in order of preference on equal epochs.
        warn: called with one line for each step that could not be read (and is skipped).
        shardings: where to put the state (``Trainer.state_shardings``: on the run's mesh, which a multi-process run
            needs); ``None``: this process's first device.

    Returns:
        ``(state, meta, "kind/epoch")``. Raises ``CheckpointError`` if none reads back.
    """
    tried = []
    _quiet_failed_io()  # before the first read: the noise of a failed one can come at any time after it
    for kind, step in candidates(run_dir, kinds):
        try:
            state, meta = _restore_step(run_dir, kind, step, abstract, shardings)
        except IncompatibleCheckpointError:
            raise
        except Exception as e:  # noqa: BLE001 -- any failure to read a step means: try the one before it
            tried.append(f"{kind}/{step}")
            if warn is not None:
                warn(f"checkpoint {kind}/{step} is unreadable ({_one_line(e)}); trying an older one")
            continue
        return state, meta, f"{kind}/{step}"
    where = os.path.join(run_dir, "checkpoints")
    if tried:
        raise CheckpointError(f"no readable checkpoint in {where} (tried {', '.join(tried)})")
    raise CheckpointError(f"no checkpoint in {where} ({'/'.join(kinds)})")


class LoadedRun(NamedTuple):
    """A run brought back from disk (see ``load_run``).

    Attributes:
        config: the run's resolved ``TrainConfig``.
        env: its env.
        trainer: its ``Trainer`` (nothing compiled yet).
        state: the restored training state.
        meta: the checkpoint's host-side record (``epoch``, ``history`` ...).
        where: which checkpoint, ``kind/epoch``.
    """

    config: Any
    env: Any
    trainer: Any
    state: Any
    meta: dict
    where: str


def read_config(run_dir: str) -> Any:
    """The resolved ``TrainConfig`` a run saved in ``config.yaml``. Raises ``CheckpointError`` (one line) when
    ``run_dir`` is not a run directory or its config does not load."""
    from herjax import config as config_lib

    if not os.path.isdir(run_dir):
        raise CheckpointError(f"run directory {run_dir!r} does not exist")
    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        raise CheckpointError(f"{run_dir!r} is not a herjax run directory: it has no config.yaml")
    try:
        with open(path) as f:
            return config_lib.from_yaml(f.read())
    except (OSError, UnicodeDecodeError, config_lib.ConfigError) as e:
        raise CheckpointError(f"cannot read {path}: {_one_line(e)}") from None


def load_run(run_dir: str, checkpoint: str = "best", *, backend: Optional[str] = None) -> LoadedRun:
    """Rebuilds a saved run: its config, env and trainer, and the state of its ``checkpoint`` (``best`` or
    ``latest``; ``best`` falls back to ``latest`` if the run has none).

    Args:
        run_dir: the run directory.
        checkpoint: ``best`` or ``latest``.
        backend: physics engine to build the env on; ``None``: the run's own (``auto`` by default).

    Raises ``CheckpointError`` (one line) for a missing run, a bad config or no readable checkpoint.
    """
    from herjax import envs, loops

    if checkpoint not in ("best", "latest"):
        raise CheckpointError(f"bad checkpoint {checkpoint!r}: expected best or latest")
    cfg = read_config(run_dir)
    if cfg.num_seeds > 1:
        first = os.path.join(run_dir, f"seed_{cfg.seed}")
        raise CheckpointError(f"{run_dir!r} holds {cfg.num_seeds} seeds, each a run of its own: name one, e.g. "
                              f"{first}")
    if backend is not None:
        cfg = dataclasses.replace(cfg, backend=backend)
    env = envs.make(cfg.env, backend=cfg.backend)
    trainer = loops.make_train(cfg, env, demos=_run_demos(run_dir, cfg, env))
    kinds = (checkpoint,) if checkpoint == "latest" or not steps(run_dir, "best") else ("best",)
    state, meta, where = restore(run_dir, abstract_state(trainer), kinds=kinds)
    return LoadedRun(config=cfg, env=env, trainer=trainer, state=state, meta=meta, where=where)


def _run_demos(run_dir: str, cfg: Any, env: Any) -> Any:
    """The demos a run with ``demos`` learns from: its own copy (``herjax.demos.RUN_FILE``), else ``None``."""
    if cfg.demos is None:
        return None
    from herjax import demos as demos_lib

    path = demos_lib.run_copy(run_dir)
    try:
        return demos_lib.load(path, env, name=cfg.env)
    except demos_lib.DemoError as e:
        raise CheckpointError(f"cannot load the run {run_dir!r}: {e}") from None


def has_checkpoint(run_dir: str) -> bool:
    """Whether ``run_dir`` has at least one finished step."""
    return bool(candidates(run_dir))
