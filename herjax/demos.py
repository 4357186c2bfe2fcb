"""Record demonstrations with the scripted policies, and read them back for learning from demonstrations.

    python -m herjax.demos env=fetch_pick_and_place episodes=100 out=demos.npz
    python -m herjax.demos env=fetch_push episodes=100 out=push_demos.npz noise=0.1 seed=1
    python -m herjax.train env=fetch_pick_and_place demos=demos.npz ddpg.batch_size=1024

Keys: ``env`` (a task with a scripted policy: ``fetch_reach``, ``fetch_push``, ``fetch_pick_and_place`` and their
``_dense`` twins), ``episodes`` (100, successful ones to keep), ``out`` (``demos.npz``), ``noise`` (0: std of
Gaussian noise added to every scripted action, in action units, then clipped to ``[-1, 1]``, for more varied
demos), ``seed`` (0), ``max_attempts`` (``10 * episodes``: episodes tried before giving up), ``num_envs`` (20,
episodes run at once) and ``backend`` (``auto``).

Episodes are fresh resets of the env run for its whole horizon by ``herjax.envs.scripted`` (the policies that solve
Push and PickAndPlace in every episode of the parity tests) through ``herjax.rollout.collect_episodes``, the
rollout training uses. Only episodes that end in success (and never turned non-finite) are kept; generation goes
on until ``episodes`` are kept or ``max_attempts`` were tried (then it stops with one line and writes nothing).

**File format** (version 1): an ``.npz`` that plain ``numpy.load`` reads, holding the arrays of
``herjax.types.Episodes``, as the replay buffer stores them:

* ``obs`` float32 ``[E, T+1, obs_dim]``: the observation before each action and after the last;
* ``achieved_goal`` float32 ``[E, T+1, goal_dim]``, aligned with ``obs``;
* ``desired_goal`` float32 ``[E, T, goal_dim]``: the goal at each step;
* ``action`` float32 ``[E, T, act_dim]`` in ``[-1, 1]``: the actions taken (noise included);
* ``env`` (a 0-d string): the env the episodes were recorded in;
* ``format_version`` (a 0-d int): 1;

and, for the record, ``noise``, ``seed`` and ``attempts`` (0-d), which ``load`` does not need. ``load(path,
env)`` checks every array against the env (its sizes, horizon and name), their dtypes, finiteness and the action
bound, and says in one line what is wrong with a file it refuses (``DemoError``, exit status 2 on the command
line).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import sys
import time
from typing import Any, Callable, Optional, Sequence

import numpy as np

from herjax.checks import ConfigError, check, choice, help_requested, suggest

FORMAT_VERSION = 1
ARRAYS = ("obs", "achieved_goal", "desired_goal", "action")
# What a run keeps of its demos: ``<run_dir>/demos.npz``, a copy of the file it started from (resume, play and
# export read the copy, so they never depend on a file that may have changed since).
RUN_FILE = "demos.npz"
# Envs with a scripted policy: the name's task (``fetch_push_dense`` -> push) -> ``herjax.envs.scripted`` function.
SCRIPTED = {"reach": "reach_policy", "push": "push_policy", "pick_and_place": "pick_and_place_policy"}


class DemoError(ConfigError):
    """A demos file (or a ``herjax.demos`` argument) that cannot be used; the message is one line."""


def scripted_envs() -> list[str]:
    """Env names ``herjax.demos`` can record: the Fetch tasks that have a scripted policy, sparse and dense."""
    return [f"fetch_{task}{suffix}" for task in SCRIPTED for suffix in ("", "_dense")]


def scripted_policy(env_name: str) -> Callable[[Any, Any], Any]:
    """``(observation [B, o], desired_goal [B, g]) -> action [B, A]``: the scripted policy of ``env_name``."""
    from herjax.envs import scripted

    choice("env", env_name, scripted_envs())
    task = env_name.removeprefix("fetch_").removesuffix("_dense")
    policy = getattr(scripted, SCRIPTED[task])
    return lambda observation, desired_goal: policy({"observation": observation, "desired_goal": desired_goal})


# --- the file ---------------------------------------------------------------------------------------------------


def save(path: str, episodes: Any, env_name: str, **info: Any) -> None:
    """Writes ``episodes`` (``Episodes`` of arrays) recorded in ``env_name`` as a version-1 demos file, atomically
    (a temporary file, then a rename); ``info``: scalars kept for the record (``noise``, ``seed``, ``attempts``)."""
    arrays = {name: np.asarray(getattr(episodes, name), np.float32) for name in ARRAYS}
    tmp = f"{path}.tmp"
    try:
        with open(tmp, "wb") as f:  # a file object, so numpy does not append .npz to the name
            np.savez_compressed(f, **arrays, env=np.asarray(env_name), format_version=np.asarray(FORMAT_VERSION),
                                **{k: np.asarray(v) for k, v in info.items()})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _refuse(path: str, what: str) -> DemoError:
    return DemoError(f"bad demos file {path}: {what}")


def _read(path: str) -> dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise DemoError(f"demos file {path!r} does not exist (record one with python -m herjax.demos env=... "
                        f"out={path})")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with data:
            return {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError) as e:
        raise _refuse(path, f"not a readable .npz of numpy arrays ({' '.join(str(e).split())[:120]})") from None


def load(path: str, env: Any, *, name: Optional[str] = None) -> Any:
    """The demonstration episodes of a demos file, checked against ``env``.

    Args:
        path: a demos file (see the module docstring).
        env: the env the episodes are for: an env (its ``obs_dim``, ``goal_dim``, ``action_dim`` and
            ``episode_length`` are checked) or its name (then built, and ``name`` is that name).
        name: the env's name, checked against the file's ``env``; ``None``: not checked.

    Returns:
        ``herjax.types.Episodes`` of float32 numpy arrays, ``[E, ...]``.

    Raises:
        DemoError: one line saying what is wrong with the file.
    """
    from herjax.types import Episodes

    if isinstance(env, str):
        from herjax import envs

        name, env = env, envs.make(env)
    data = _read(path)
    missing = [k for k in ARRAYS + ("env", "format_version") if k not in data]
    if missing:
        raise _refuse(path, f"it lacks {', '.join(missing)} (a demos file holds {', '.join(ARRAYS)}, env and "
                            "format_version; record one with python -m herjax.demos)")
    version = data["format_version"]
    if version.shape != () or not np.issubdtype(version.dtype, np.integer) or int(version) != FORMAT_VERSION:
        raise _refuse(path, f"format_version {version.tolist()!r}, but this herjax reads version {FORMAT_VERSION}")
    recorded = data["env"]
    if recorded.shape != () or recorded.dtype.kind != "U":
        raise _refuse(path, f"env must be a 0-d string, got {recorded.dtype} {recorded.shape}")
    if name is not None and str(recorded) != name:
        raise _refuse(path, f"its episodes were recorded in env {str(recorded)!r}, but this run's env is {name!r}")
    horizon, sizes = env.episode_length, {"obs": env.obs_dim, "achieved_goal": env.goal_dim,
                                          "desired_goal": env.goal_dim, "action": env.action_dim}
    n_episodes = data["action"].shape[0] if data["action"].ndim == 3 else None
    for key in ARRAYS:
        array, steps = data[key], horizon + 1 if key in ("obs", "achieved_goal") else horizon
        want = (n_episodes, steps, sizes[key])
        if array.ndim != 3 or array.shape[1:] != want[1:] or (n_episodes is not None and array.shape[0] != n_episodes):
            same_e = f", E={n_episodes} as action has" if key != "action" and n_episodes is not None else ""
            raise _refuse(path, f"{key} has shape {list(array.shape)}, but the env needs [E, {steps}, {sizes[key]}] "
                                f"(E episodes of {horizon} steps{same_e})")
        if not np.issubdtype(array.dtype, np.floating):
            raise _refuse(path, f"{key} has dtype {array.dtype}, expected floating point (float32)")
        bad = ~np.isfinite(array)
        if bad.any():
            raise _refuse(path, f"{key} holds non-finite values (first in episode {int(np.argwhere(bad)[0][0])})")
    if n_episodes == 0:
        raise _refuse(path, "it holds no episode")
    largest = float(np.max(np.abs(data["action"])))
    if largest > 1.0 + 1e-6:
        raise _refuse(path, f"action reaches {largest:g}, outside the env's action bound [-1, 1]")
    return Episodes(**{key: data[key].astype(np.float32) for key in ARRAYS})


def digest(path: str) -> str:
    """The SHA-256 of a file's bytes (hex)."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def run_copy(run_dir: str) -> str:
    """Where a run keeps the copy of its demos file."""
    return os.path.join(run_dir, RUN_FILE)


def copy_into(run_dir: str, path: str) -> None:
    """Copies the demos file ``path`` to ``run_copy(run_dir)`` (atomically), unless it is that file already."""
    target = run_copy(run_dir)
    if os.path.abspath(path) == os.path.abspath(target):
        return
    tmp = f"{target}.tmp"
    shutil.copyfile(path, tmp)
    os.replace(tmp, target)


# --- recording ---------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The keys of ``python -m herjax.demos`` (see the module docstring)."""

    env: str = "fetch_pick_and_place"
    episodes: int = 100
    out: str = "demos.npz"
    noise: float = 0.0
    seed: int = 0
    max_attempts: Optional[int] = None
    num_envs: int = 20
    backend: str = "auto"

    def validate(self) -> "DemoConfig":
        choice("env", self.env, scripted_envs())
        check(self.episodes > 0, "episodes", self.episodes, "> 0")
        check(self.noise >= 0, "noise", self.noise, ">= 0")
        check(self.num_envs > 0, "num_envs", self.num_envs, "> 0")
        check(bool(self.out.strip()), "out", self.out, "a file path, e.g. demos.npz")
        if self.max_attempts is not None:
            check(self.max_attempts >= self.episodes, "max_attempts", self.max_attempts,
                  f">= episodes ({self.episodes})")
        from herjax.config import BACKENDS

        choice("backend", self.backend, BACKENDS)
        return self

    @property
    def attempts_cap(self) -> int:
        return 10 * self.episodes if self.max_attempts is None else self.max_attempts


def parse(argv: Sequence[str]) -> DemoConfig:
    """``key=value`` arguments -> a validated ``DemoConfig``; ``DemoError`` (one line) for a bad one."""
    import typing

    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from herjax.config import _has_type, _type_name

    types = typing.get_type_hints(DemoConfig)
    merged = OmegaConf.structured(DemoConfig)
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise DemoError(f"bad argument {arg!r}: expected key=value, e.g. env=fetch_push")
        if key not in types:
            raise DemoError(f"unknown key {key!r}{suggest(key, list(types))}; valid keys: {', '.join(types)}")
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([f"{key}={value}"]))
        except (OmegaConfBaseException, yaml.YAMLError, ValueError, OverflowError):
            raise DemoError(f"bad value {value!r} for {key}: expected {_type_name(types[key])}") from None
    try:
        values = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:  # e.g. an interpolation ${...} that does not resolve
        raise DemoError(f"bad value for {getattr(e, 'full_key', None) or 'a key'}: "
                        f"{' '.join(str(e).split()).split(' full_key:')[0]}") from None
    for key, value in values.items():
        if not _has_type(value, types[key]):
            raise DemoError(f"bad value {value!r} for {key}: expected {_type_name(types[key])}")
    try:
        return DemoConfig(**values).validate()
    except ConfigError as e:
        raise DemoError(str(e)) from None


def record(cfg: DemoConfig, log: Optional[Callable[[str], None]] = print) -> tuple[Any, int]:
    """Runs the scripted policy of ``cfg.env`` until ``cfg.episodes`` episodes succeed (host side: NOT pure, it
    loops and prints). Returns ``(episodes, attempts)``: ``Episodes`` of numpy arrays ``[cfg.episodes, ...]`` and
    the episodes tried. Raises ``DemoError`` when ``cfg.attempts_cap`` episodes were tried first."""
    import jax
    import jax.numpy as jnp

    from herjax import envs
    from herjax.rollout import collect_episodes

    env = envs.make(cfg.env, backend=cfg.backend)
    policy = scripted_policy(cfg.env)

    def act(obs: jax.Array, goal: jax.Array, key: jax.Array) -> jax.Array:
        action = policy(obs, goal)
        if cfg.noise > 0:
            action = jnp.clip(action + cfg.noise * jax.random.normal(key, action.shape, action.dtype), -1.0, 1.0)
        return action

    batch = min(cfg.num_envs, cfg.episodes)
    collect = jax.jit(lambda key: collect_episodes(env, act, key, batch))
    key, kept, n_kept, attempts, began = jax.random.key(cfg.seed), [], 0, 0, time.perf_counter()
    while n_kept < cfg.episodes and attempts < cfg.attempts_cap:
        key, collect_key = jax.random.split(key)
        episodes, info = jax.device_get(collect(collect_key))
        good = (np.asarray(info.is_success) > 0) & (np.asarray(info.resets) == 0)
        kept.append(jax.tree.map(lambda x: np.asarray(x)[good], episodes))
        n_kept, attempts = n_kept + int(good.sum()), attempts + batch
        if log:
            log(f"herjax.demos: {min(n_kept, cfg.episodes)}/{cfg.episodes} successful episodes, {attempts} tried "
                f"({time.perf_counter() - began:.0f} s)")
    if n_kept < cfg.episodes:
        raise DemoError(f"only {n_kept} of {attempts} episodes of {cfg.env} succeeded (max_attempts="
                        f"{cfg.attempts_cap}); nothing written: raise max_attempts= or lower noise=")
    joined = jax.tree.map(lambda *xs: np.concatenate(xs)[: cfg.episodes], *kept)
    return joined, attempts


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI; returns the exit status: 0, 2 for bad input, 1 when too few episodes succeeded."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if help_requested(argv, __doc__):
        return 0
    try:
        cfg = parse(argv)
        try:
            folder = os.path.dirname(os.path.abspath(cfg.out))
            found = os.path.isdir(folder)
        except ValueError:  # e.g. a NUL character
            folder, found = cfg.out, False
        if not found:
            raise DemoError(f"bad value {cfg.out!r} for out: folder {folder} does not exist")
    except DemoError as e:
        print(f"herjax.demos: error: {e}", file=sys.stderr)
        return 2
    try:
        episodes, attempts = record(cfg)
    except DemoError as e:
        print(f"herjax.demos: error: {e}", file=sys.stderr)
        return 1
    save(cfg.out, episodes, cfg.env, noise=cfg.noise, seed=cfg.seed, attempts=attempts)
    print(f"herjax.demos: wrote {cfg.out}: {cfg.episodes} successful episodes of {cfg.env} ({attempts} tried, "
          f"noise {cfg.noise:g}, seed {cfg.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
