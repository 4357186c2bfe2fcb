"""The typed training config: every default in one place, overridable as ``key=value``.

    cfg = load(["env=fetch_push", "ddpg.batch_size=512"])   # -> a resolved, validated TrainConfig
    cfg = load(TrainConfig(env="fetch_push", alg="td3_her"))

``TrainConfig`` is written out: the run's fields, the loop knobs every algorithm shares (``num_envs``,
``n_cycles``, ``n_test_episodes``, ``num_devices``), then one section per algorithm (``ddpg``, ``td3``, ``sac``,
``ppo``), each a frozen dataclass that validates itself (``section.validate``). Only the section of ``alg`` is
used. Loop knobs left ``None`` are resolved per algorithm family and env by ``resolve`` (the env's
``EnvSpec.defaults``, else ``FAMILY_DEFAULTS``), as are ``total_env_steps`` and ``run_dir``. The resolved
config is what a run writes to ``config.yaml``.

**Loop knobs**, the same meaning for every algorithm:

* ``num_envs``: envs stepped in parallel, over all devices (off-policy: episodes collected per cycle, baselines'
  ``rollout_batch_size`` x workers; default 2, one baselines worker; on-policy: default 32).
* ``n_cycles``: collect-and-learn cycles per epoch (off-policy: baselines' cycles, 10 for FetchReach and 50 for
  the others; on-policy: PPO iterations, default 2). An epoch ends with an evaluation.
* ``n_test_episodes``: deterministic test episodes per epoch, over all devices (off-policy default ``10 *
  num_envs``: baselines' ``n_test_rollouts`` 10 rounds of ``rollout_batch_size``; on-policy default 50).
* ``num_devices``: devices to spread envs, buffers and batches over (default 1); in a multi-process run
  (``distributed=true``) the devices of all processes, each process taking ``num_devices / num_processes``.

**Scale presets** (``scale=...``, off-policy algorithms), applied before the other overrides, which win:

* ``fast`` (default): the env's fastest measured recipe for the kind of device JAX runs on (``EnvSpec.recipes``:
  ``cpu`` or ``accelerator``, else the ``cpu`` one; an env without recipes trains as ``single``). FetchPush,
  PickAndPlace and Slide on a CPU: 16 envs a cycle, batch 1024, 3 x 128 networks, 3-step returns, 25 cycles an
  epoch and 100 test episodes (``herjax.envs``); FetchReach has none (``single``).
* ``single``: one baselines worker, ``num_envs 2`` (rollout_batch_size), ``<alg>.batch_size 256``,
  ``<alg>.buffer_size 1e6``.
* ``workersN`` (``workers8``, ...): N baselines workers on one device, ``num_envs 2N``, ``batch_size 256N``,
  ``buffer_size N * 1e6`` (each worker keeps its own buffer).
* ``paper``: the single-device equivalent of the paper's 19 MPI workers (Plappert et al. 2018): 19 workers x
  2 rollouts = ``num_envs 38`` episodes a cycle; their averaged gradients over 19 x 256 samples = one gradient
  of ``batch_size 4864``; and their 19 buffers of 1e6 transitions each = ``buffer_size 19e6`` (each worker keeps
  its own: about 200 epochs of data, not 1e6). An epoch of 50 cycles is then 95k env steps, as in the paper. On
  these 2 CPU cores it is learning-bound (~600 env steps/s).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import typing
from typing import Any, Optional, Sequence, Tuple, Union

from herjax import algs as algs_lib
from herjax.agents.common.config import BCConfig
from herjax.agents.ddpg.config import DDPGConfig
from herjax.agents.ppo.config import PPOConfig
from herjax.agents.sac.config import SACConfig
from herjax.agents.td3.config import TD3Config
from herjax.checks import ConfigError, check, choice, suggest
from herjax.envs import registry as env_registry
from herjax.replay.config import ReplayConfig

ALGS = tuple(algs_lib.names())
# Keys that steer a run without changing what it computes: ``resume=`` may change them, ``herjax.plot`` ignores
# them (and ``seed``, ``run_dir``) when it groups runs of one config.
# How the processes of a multi-process run find each other (``herjax.runs.hosts``): not part of what a run is, so a
# resume takes them from its own command line only, and a run saves them unset.
LAUNCH_KEYS = ("distributed", "coordinator_address", "num_processes", "process_id")
RUN_CONTROL_KEYS = ("total_env_steps", "stop_success", "save_every", "keep_every", "compile_cache") + LAUNCH_KEYS
BACKENDS = ("auto", "mujoco", "mjx")
SCALES = {
    "single": {},
    "paper": {"num_envs": 38, "{section}.batch_size": 4864, "{section}.buffer_size": 19_000_000},
}
MAX_WORKERS = 256


def scale_names() -> tuple[str, ...]:
    return ("fast", *SCALES, f"workers1..workers{MAX_WORKERS}")


def device_kind() -> str:
    """``accelerator`` when JAX's default backend is a GPU or TPU, else ``cpu``: the recipe ``scale=fast`` takes.
    It starts JAX's backends (a multi-process run joins its processes before: ``herjax.train``)."""
    import jax

    return "cpu" if jax.default_backend() == "cpu" else "accelerator"


def scale_preset(scale: str, env: Optional[str] = None) -> dict[str, Any]:
    """The overrides ``scale`` stands for (keys with ``{section}`` for the algorithm's section).

    ``fast`` is ``env``'s recipe for ``device_kind()`` (``EnvSpec.recipes``; the ``cpu`` one on a kind it has none
    for; nothing for an env without recipes, or with ``env`` ``None``).

    ``workersN`` is N baselines workers on one device: ``num_envs 2N``, ``batch_size 256N`` (their averaged
    gradients are one gradient of the pooled batch) and ``buffer_size N * 1e6`` (each worker keeps its own);
    ``paper`` is ``workers19``. Raises ``ConfigError`` for an unknown scale.
    """
    if scale == "fast":
        recipes = env_registry.spec(env).recipes if env is not None else {}
        return dict(recipes.get(device_kind(), recipes.get("cpu", {})) if recipes else {})
    if scale in SCALES:
        return dict(SCALES[scale])
    digits = scale[len("workers"):] if scale.startswith("workers") else ""
    if digits.isdigit() and 1 <= int(digits) <= MAX_WORKERS and digits == str(int(digits)):
        n = int(digits)
        return {"num_envs": 2 * n, "{section}.batch_size": 256 * n, "{section}.buffer_size": 1_000_000 * n}
    raise ConfigError(f"bad value {scale!r} for scale: valid: {', '.join(scale_names())}")


FAMILY_DEFAULTS = {
    # The loop knobs' defaults per family, for an env whose ``EnvSpec.defaults`` does not set them (the Fetch tasks
    # set n_cycles and total_env_steps: ``herjax.envs._FETCH_BUDGETS``). A knob is a value or a function of the
    # resolved num_envs.
    "off_policy": dict(
        num_envs=2,
        n_cycles=50,
        n_test_episodes=lambda num_envs: 10 * num_envs,
        total_env_steps=100_000,
    ),
    "on_policy": dict(
        num_envs=32,
        n_cycles=2,
        n_test_episodes=50,
        total_env_steps=1_000_000,
    ),
}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """A training run.

    Attributes:
        env: env name, see ``herjax.envs.names()``, or ``module:attr`` naming an ``EnvSpec`` (your own env).
        alg: algorithm, see ``herjax.algs.names()``; its hyper-parameters are the section it names.
        scale: preset, ``fast``, ``single``, ``paper`` or ``workersN`` (see the module docstring); applied by
            ``load``.
        seed: seed of the run's PRNG key.
        num_seeds: train seeds ``seed, seed + 1, ..., seed + num_seeds - 1`` at once, in one compiled program
            (``jax.vmap`` over the run's state); each seed gets its own run directory ``<run_dir>/seed_<s>``,
            an ordinary run's (progress, TensorBoard, checkpoints: play, export, init_from and resume work on it).
        total_env_steps: env-step budget; the run does ``ceil(total_env_steps / steps_per_epoch)`` epochs.
            ``None``: per env and family (the env's ``EnvSpec.defaults``, else ``FAMILY_DEFAULTS``).
        num_envs: envs stepped in parallel over all devices; ``None``: the family's default.
        n_cycles: cycles per epoch; ``None``: the family's default.
        n_test_episodes: deterministic test episodes per epoch over all devices; ``None``: the family's default.
        num_devices: devices the run is spread over; with ``distributed``, over all processes (a multiple of
            their count; each process takes as many of its own local devices).
        backend: physics engine, ``auto`` (C MuJoCo on CPU, MJX on GPU), ``mujoco`` or ``mjx``.
        run_dir: where ``config.yaml``, ``progress.csv``, TensorBoard events and ``checkpoints/`` go; ``None``:
            ``runs/<env>/<alg>/<timestamp>``.
        stop_success: stop after the first epoch whose test success rate is at least this; ``None``: never.
        save_every: save the ``latest`` checkpoint every this many epochs (and always after the last one, and
            on SIGINT/SIGTERM).
        keep_every: also keep a permanent checkpoint every this many epochs (``checkpoints/periodic``);
            ``None``: none.
        compile_cache: keep JAX's compiled programs on disk (``herjax.train.compile_cache_dir()``: the folder of
            ``HERJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/herjax/jax`` or ``~/.cache/herjax/jax``), so that a
            second run of the same config skips compilation.
        init_from: start from the networks and input normaliser of another run of the same ``alg``: its
            directory, its ``best`` checkpoint (``RUN_DIR@latest``: its ``latest``); see ``herjax.runs.init_from``.
        distributed: join the other processes of a multi-process run (``jax.distributed.initialize``, see
            ``herjax.runs.hosts``); the next three keys are found from Slurm or Open MPI when left ``None``.
        coordinator_address: ``HOST:PORT`` of process 0's coordinator, with ``distributed``.
        num_processes: processes in the run, with ``distributed``.
        process_id: this process's index, ``0 .. num_processes - 1``, with ``distributed``.
        ddpg: ``alg=ddpg_her``'s hyper-parameters.
        td3: ``alg=td3_her``'s hyper-parameters.
        sac: ``alg=sac_her``'s hyper-parameters.
        ppo: ``alg=ppo``'s hyper-parameters.
        demos: an ``.npz`` of demonstration episodes (``python -m herjax.demos``) to learn from as well (Nair et
            al. 2018; ``alg=ddpg_her`` or ``td3_her``): a second HER buffer of them fills ``bc.demo_batch_size`` of
            every batch and the actor also clones them (``bc.*``). The run copies the file into its directory and
            resumes, plays and exports with that copy.
        bc: learning from ``demos``: the demo share of a batch and the behaviour-cloning loss.
        replay: prioritised replay of the off-policy algorithms (``replay.prioritized=true``).
    """

    env: str = "fetch_reach"
    alg: str = "ddpg_her"
    scale: str = "fast"
    seed: int = 0
    num_seeds: int = 1
    total_env_steps: Optional[int] = None
    num_envs: Optional[int] = None
    n_cycles: Optional[int] = None
    n_test_episodes: Optional[int] = None
    num_devices: int = 1
    backend: str = "auto"
    run_dir: Optional[str] = None
    stop_success: Optional[float] = None
    save_every: int = 1
    keep_every: Optional[int] = None
    compile_cache: bool = True
    init_from: Optional[str] = None
    distributed: bool = False
    coordinator_address: Optional[str] = None
    num_processes: Optional[int] = None
    process_id: Optional[int] = None
    ddpg: DDPGConfig = dataclasses.field(default_factory=DDPGConfig)
    td3: TD3Config = dataclasses.field(default_factory=TD3Config)
    sac: SACConfig = dataclasses.field(default_factory=SACConfig)
    ppo: PPOConfig = dataclasses.field(default_factory=PPOConfig)
    demos: Optional[str] = None
    bc: BCConfig = dataclasses.field(default_factory=BCConfig)
    replay: ReplayConfig = dataclasses.field(default_factory=ReplayConfig)

    @property
    def section(self) -> Any:
        """The hyper-parameters of ``alg`` (``self.ddpg`` for ``ddpg_her`` ...)."""
        return getattr(self, algs_lib.get(self.alg).section)


# Sections every off-policy algorithm shares (not an algorithm's own): name -> when they apply, for --help.
SHARED_SECTIONS = {"bc": "with demos=PATH; alg=ddpg_her, td3_her", "replay": "off-policy algorithms"}


def sections() -> dict[str, type]:
    """Section name -> its dataclass, for every algorithm's section of ``TrainConfig`` (not ``SHARED_SECTIONS``)."""
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)
            if dataclasses.is_dataclass(hints[f.name]) and f.name not in SHARED_SECTIONS}


def env_horizon(cfg: TrainConfig) -> int:
    """Steps per episode of ``cfg.env`` (its registered ``episode_length``), known before the env is built."""
    return env_registry.spec(cfg.env).episode_length


def steps_per_epoch(cfg: TrainConfig, horizon: Optional[int] = None) -> int:
    """Training env steps of one epoch of a resolved config (evaluation steps are not counted, as in baselines)."""
    horizon = env_horizon(cfg) if horizon is None else horizon
    return cfg.n_cycles * cfg.num_envs * cfg.section.steps_per_cycle(horizon)


def n_epochs(cfg: TrainConfig, horizon: Optional[int] = None) -> int:
    """Epochs a resolved config runs: enough to spend ``total_env_steps``."""
    return -(-cfg.total_env_steps // steps_per_epoch(cfg, horizon))


def _has_type(value: Any, hint: Any) -> bool:
    if hint is Any:
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        return any(_has_type(value, a) for a in args)
    if hint is type(None):
        return value is None
    if origin is not None and args:  # a sequence of one element type
        return isinstance(value, (list, tuple)) and all(_has_type(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def validate(cfg: TrainConfig) -> TrainConfig:
    """Checks every field of a resolved config; returns ``cfg``. Raises ``ConfigError`` naming the first bad one."""
    _check_types_and_choices(cfg)
    for name in ("total_env_steps", "num_envs", "n_cycles", "n_test_episodes", "num_devices", "save_every",
                 "keep_every", "num_seeds", "num_processes"):
        value = getattr(cfg, name)
        if value is not None:
            check(value > 0, name, value, "> 0")
    check_launch(cfg)
    if cfg.stop_success is not None:
        check(0.0 <= cfg.stop_success <= 1.0, "stop_success", cfg.stop_success, "in [0, 1] or null")
    alg = algs_lib.get(cfg.alg)
    if cfg.scale not in ("fast", "single") and alg.family != "off_policy":
        raise ConfigError(f"bad value {cfg.scale!r} for scale: alg={cfg.alg} has no scale presets (use fast or "
                          "single, which leave its defaults)")
    cfg.section.validate(f"{alg.section}.", num_envs=cfg.num_envs, horizon=env_horizon(cfg))
    split = [("num_envs", cfg.num_envs), ("n_test_episodes", cfg.n_test_episodes)]
    if alg.family == "off_policy":
        split.append((f"{alg.section}.batch_size", cfg.section.batch_size))
    for name, value in split:
        check(value % cfg.num_devices == 0, name, value, f"a multiple of num_devices={cfg.num_devices} (each device "
              "takes an equal share)")
    _check_demos_and_replay(cfg, alg)
    return cfg


def _check_demos_and_replay(cfg: TrainConfig, alg: algs_lib.Algorithm) -> None:
    """``demos`` needs an off-policy algorithm with a behaviour-cloning loss (``bc.*`` is then checked against its
    batch); ``replay.prioritized`` an off-policy one."""
    cfg.replay.validate("replay.")
    off_policy = alg.family == "off_policy"
    if cfg.replay.prioritized and not off_policy:
        raise ConfigError(f"bad value true for replay.prioritized: alg={cfg.alg} has no replay buffer; valid with "
                          f"{', '.join(n for n, a in algs_lib.REGISTRY.items() if a.family == 'off_policy')}")
    if cfg.demos is None:
        return
    check(bool(cfg.demos.strip()), "demos", cfg.demos, "the path of a demos .npz (python -m herjax.demos) or null")
    with_bc = [n for n, a in algs_lib.REGISTRY.items() if getattr(sections()[a.section], "BC_LOSS", False)]
    if cfg.alg not in with_bc:
        raise ConfigError(f"bad value {cfg.demos!r} for demos: alg={cfg.alg} has no behaviour-cloning loss; learning "
                          f"from demos works with alg={', '.join(with_bc)}")
    cfg.bc.validate("bc.", batch_size=cfg.section.batch_size, batch_key=f"{alg.section}.batch_size",
                    num_devices=cfg.num_devices)


def without_launch(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` with ``LAUNCH_KEYS`` at their defaults: the run itself, as ``config.yaml`` records it."""
    return dataclasses.replace(cfg, **{k: getattr(TrainConfig, k) for k in LAUNCH_KEYS})


def check_launch(cfg: TrainConfig) -> None:
    """The multi-process keys: given only with ``distributed=true``, an address ``HOST:PORT``, an id below the count,
    one seed per run (``num_seeds > 1`` is not spread over processes), devices a multiple of the processes."""
    for key in LAUNCH_KEYS[1:]:
        value = getattr(cfg, key)
        if value is not None and not cfg.distributed:
            raise ConfigError(f"bad value {value!r} for {key}: it takes effect only with distributed=true")
    if not cfg.distributed:
        return
    if cfg.num_processes is not None:
        check(cfg.num_processes > 0, "num_processes", cfg.num_processes, "> 0")
    if cfg.coordinator_address is not None:
        host, _, port = cfg.coordinator_address.rpartition(":")
        check(bool(host) and port.isdigit() and 0 < int(port) < 65536, "coordinator_address", cfg.coordinator_address,
              "HOST:PORT, e.g. node001:12345")
    if cfg.process_id is not None:
        check(cfg.process_id >= 0, "process_id", cfg.process_id, ">= 0")
        if cfg.num_processes is not None:
            check(cfg.process_id < cfg.num_processes, "process_id", cfg.process_id,
                  f"below num_processes={cfg.num_processes} (0 .. {cfg.num_processes - 1})")
    if cfg.num_processes is not None:
        check(cfg.num_devices % cfg.num_processes == 0, "num_devices", cfg.num_devices,
              f"a multiple of num_processes={cfg.num_processes} (the devices of all processes, an equal share each)")
    check(cfg.num_seeds == 1, "num_seeds", cfg.num_seeds, "1 with distributed=true (a multi-process run trains one "
          "seed; start one run per seed)")


def _check_types_and_choices(cfg: TrainConfig) -> None:
    for key, hint in _field_types(TrainConfig).items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if not _has_type(value, hint):
            raise ConfigError(f"bad value {value!r} for {key}: expected {_type_name(hint)}")
    env_registry.spec(cfg.env)  # an EnvError (a ConfigError) names the valid envs
    choice("alg", cfg.alg, ALGS)
    if cfg.scale != "fast":  # fast needs the env, checked next; its recipe was applied (or not) by parse_overrides
        scale_preset(cfg.scale)
    choice("backend", cfg.backend, BACKENDS)


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fills the ``None`` defaults of ``cfg`` for its algorithm family and env, then validates it (a new config;
    ``cfg`` is unchanged)."""
    _check_types_and_choices(cfg)
    family = algs_lib.get(cfg.alg).family
    defaults = {**FAMILY_DEFAULTS[family], **env_registry.spec(cfg.env).defaults.get(family, {})}
    knob = lambda name, *args: defaults[name](*args) if callable(defaults[name]) else defaults[name]
    num_envs = knob("num_envs") if cfg.num_envs is None else cfg.num_envs
    pick = lambda name: knob(name, num_envs) if getattr(cfg, name) is None else getattr(cfg, name)
    run_dir = cfg.run_dir
    if run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = os.path.join("runs", cfg.env.replace(":", "."), cfg.alg, stamp)
    return validate(_resolve_beta_updates(dataclasses.replace(
        cfg,
        num_envs=num_envs,
        n_cycles=pick("n_cycles"),
        n_test_episodes=pick("n_test_episodes"),
        total_env_steps=pick("total_env_steps"),
        run_dir=run_dir,
    )))


def _resolve_beta_updates(cfg: TrainConfig) -> TrainConfig:
    """``replay.beta_updates`` of a prioritised off-policy run left ``None``: the run's updates (epochs x cycles x
    ``n_batches``), written into the config so that a resume with a larger ``total_env_steps`` keeps the schedule."""
    if not cfg.replay.prioritized or cfg.replay.beta_updates is not None:
        return cfg
    if algs_lib.get(cfg.alg).family != "off_policy" or min(cfg.total_env_steps, cfg.num_envs, cfg.n_cycles) <= 0:
        return cfg  # validate names what is wrong
    updates = max(n_epochs(cfg) * cfg.n_cycles * cfg.section.n_batches, 1)
    return dataclasses.replace(cfg, replay=dataclasses.replace(cfg.replay, beta_updates=updates))


# --- OmegaConf bridge -------------------------------------------------------------------------------------------
# OmegaConf accepts a subset of typing: it rejects ``Sequence[int]`` (``DDPGConfig.hidden``). The schema below
# mirrors the dataclasses field by field, with the same defaults, and only swaps such annotations for ones
# OmegaConf knows, so the defaults still live in one place.

def _omegaconf_type(hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Sequence, list, tuple, typing.get_origin(Sequence[int])):
        args = [a for a in typing.get_args(hint) if a is not Ellipsis]
        return Tuple[args[0] if args else Any, ...]
    if origin is Union:
        return Union[tuple(_omegaconf_type(a) for a in typing.get_args(hint))]
    if dataclasses.is_dataclass(hint):
        return _schema(hint)
    return hint


_SCHEMAS: dict[type, type] = {}


def _schema(cls: type) -> type:
    if cls not in _SCHEMAS:
        hints = typing.get_type_hints(cls)
        fields = []
        for f in dataclasses.fields(cls):
            kind = _omegaconf_type(hints[f.name])
            if dataclasses.is_dataclass(hints[f.name]):
                default = dataclasses.field(default_factory=kind)
            elif f.default is not dataclasses.MISSING:
                default = dataclasses.field(default=f.default)
            else:
                default = dataclasses.field(default_factory=f.default_factory)
            fields.append((f.name, kind, default))
        _SCHEMAS[cls] = dataclasses.make_dataclass(f"{cls.__name__}Schema", fields)
    return _SCHEMAS[cls]


def _field_types(cls: type, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> type hint, for every leaf field of ``cls``."""
    out = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            out.update(_field_types(hint, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = hint
    return out


def keys() -> list[str]:
    """Every overridable dotted key."""
    return list(_field_types(TrainConfig))


def _type_name(hint: Any) -> str:
    if hint is bool:
        return "a boolean (true/false)"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:
        parts = [_type_name(a) for a in args if a is not type(None)]
        if type(None) in args:
            parts.append("null")
        return " or ".join(parts)
    if origin is not None and args:
        return f"a list of {_type_name(args[0]).removeprefix('a ').removeprefix('an ')}s, e.g. [256,256]"
    return str(hint)


def _unknown_key(key: str) -> ConfigError:
    known = keys()
    leaf_matches = [k for k in known if k.rsplit(".", 1)[-1] == key.rsplit(".", 1)[-1] and k != key]
    hint = f" (did you mean {leaf_matches[0]!r}?)" if leaf_matches else suggest(key, known)
    return ConfigError(f"unknown key {key!r}{hint}; valid keys: {', '.join(known)}")


def _from_container(cls: type, data: dict) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        value = data[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            value = _from_container(hints[f.name], value)
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[f.name] = value
    return cls(**kwargs)


def _to_container(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_container(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_container(v) for v in obj]
    return obj


def _wants_int(hint: Any) -> bool:
    return hint is int or (typing.get_origin(hint) is Union and int in typing.get_args(hint))


def _integral(value: str) -> str:
    """``1e6`` or ``1_000_000`` -> ``1000000`` for integer keys; anything else unchanged."""
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        return value
    return str(int(number)) if number.is_integer() and abs(number) < 2**62 else value


def parse_overrides(
    overrides: Sequence[str], base: Optional[TrainConfig] = None, *, apply_scale: bool = True
) -> TrainConfig:
    """``["key=value", ...]`` -> an unresolved ``TrainConfig``: defaults (or ``base``), the ``scale`` preset (unless
    ``apply_scale`` is False, e.g. on top of a saved config, which has it applied already), then the overrides in
    order. Raises ``ConfigError`` for a malformed argument, an unknown key or a wrong type."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

    types = _field_types(TrainConfig)
    pairs = []
    for arg in overrides:
        key, sep, value = arg.partition("=")
        key = key.strip().lstrip("+")
        if not sep or not key:
            raise ConfigError(f"bad argument {arg!r}: expected key=value, e.g. env=fetch_push")
        if key not in types:
            raise _unknown_key(key)
        pairs.append((key, _integral(value) if _wants_int(types[key]) else value))
    alg = base.alg if base is not None else TrainConfig.alg
    for key, value in pairs:
        if key == "alg":
            alg = value
    active = algs_lib.get(alg).section if alg in algs_lib.REGISTRY else None
    if active is not None:
        for key, _ in pairs:
            section = key.split(".", 1)[0]
            if "." in key and section != active and section in sections():
                owners = [n for n, a in algs_lib.REGISTRY.items() if a.section == section]
                raise ConfigError(
                    f"key {key!r} belongs to alg={'/'.join(owners)}, but alg={alg} (its keys are {active}.*)"
                )
    scale = base.scale if base is not None else TrainConfig.scale
    env = base.env if base is not None else TrainConfig.env
    for key, value in pairs:
        if key == "scale":
            scale = value
        if key == "env":
            env = value
    family = algs_lib.get(alg).family if alg in algs_lib.REGISTRY else None
    use_preset = apply_scale and family == "off_policy"
    preset_items = scale_preset(scale, env if use_preset else None).items()  # fast asks for the device only here

    schema = OmegaConf.structured(_schema(TrainConfig))
    if base is not None:
        schema = OmegaConf.merge(schema, _to_container(base))
    preset = [f"{k.format(section=active)}={v}" for k, v in preset_items] if use_preset else []
    merged = schema
    for key, value in [tuple(p.split("=", 1)) for p in preset] + pairs:
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([f"{key}={value}"]))
        except ConfigKeyError:
            raise _unknown_key(key) from None
        except (ValidationError, OmegaConfBaseException, yaml.YAMLError, OverflowError, ValueError):
            raise ConfigError(f"bad value {value!r} for {key}: expected {_type_name(types[key])}") from None
    try:
        container = OmegaConf.to_container(merged, resolve=True)
    except OmegaConfBaseException as e:  # e.g. an interpolation ${...} that does not resolve
        key = getattr(e, "full_key", None) or "a key"
        raise ConfigError(f"bad value for {key}: {_first_line(e)}") from None
    return _from_container(TrainConfig, container)


def _first_line(error: BaseException) -> str:
    """OmegaConf's message without its ``full_key``/``object_type`` trailer, on one line."""
    return " ".join(str(error).split()).split(" full_key:")[0]


def load(cfg_or_overrides: Union[TrainConfig, Sequence[str], dict, None] = None) -> TrainConfig:
    """A resolved, validated ``TrainConfig`` from a config, a list of ``key=value`` strings, a dict of
    ``{dotted_key: value}`` overrides, or ``None`` (defaults)."""
    if cfg_or_overrides is None:
        cfg_or_overrides = []
    if isinstance(cfg_or_overrides, TrainConfig):
        return resolve(cfg_or_overrides)
    if isinstance(cfg_or_overrides, dict):
        cfg_or_overrides = [f"{k}={_dotlist_value(v)}" for k, v in cfg_or_overrides.items()]
    if isinstance(cfg_or_overrides, str):
        raise ConfigError(f"expected a list of key=value strings, got the string {cfg_or_overrides!r}")
    return resolve(parse_overrides(list(cfg_or_overrides)))


def _dotlist_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_dotlist_value(v) for v in value) + "]"
    return str(value)


def to_yaml(cfg: TrainConfig) -> str:
    """The config as YAML (what ``config.yaml`` holds); ``parse_overrides`` of its flattened keys rebuilds it."""
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(_to_container(cfg)))


def flat_dict(cfg: TrainConfig) -> dict[str, Any]:
    """``{dotted_key: value}`` of every leaf field (lists for sequences)."""
    out = {}
    for key in keys():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        out[key] = _to_container(value)
    return out


def from_yaml(text: str) -> TrainConfig:
    """The resolved, validated ``TrainConfig`` of a ``config.yaml`` (what ``to_yaml`` wrote). Raises
    ``ConfigError`` (one line) for a malformed file, an unknown key or a bad value."""
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        saved = OmegaConf.create(text)
        merged = OmegaConf.merge(OmegaConf.structured(_schema(TrainConfig)), saved)
        container = OmegaConf.to_container(merged, resolve=True)
    except (OmegaConfBaseException, yaml.YAMLError, ValueError, TypeError) as e:
        raise ConfigError(_first_line(e)) from None
    if not isinstance(container, dict):
        raise ConfigError("not a mapping of keys to values")
    return resolve(_from_container(TrainConfig, container))


def usage() -> str:
    """The config groups and every key with its default, for ``--help``."""
    defaults = _to_container(TrainConfig())
    section_names = sections()

    def default(key: str) -> str:
        value = defaults
        for part in key.split("."):
            value = value[part]
        return _dotlist_value(value)

    lines = ["config groups:", f"  env=NAME   one of: {', '.join(env_registry.names())} (default {TrainConfig.env}),",
             "            or module:attr naming your own (herjax.envs.register; see the README)"]
    for name, alg in algs_lib.REGISTRY.items():
        note = " (default)" if name == TrainConfig.alg else ""
        lines.append(f"  alg={name}{note}   hyper-parameters: {alg.section}.*")
    lines += ["", "keys and defaults (null: resolved per algorithm family and env; off-policy: num_envs=2,",
              "  n_cycles=10 for fetch_reach and 50 for the others, n_test_episodes=10*num_envs; ppo: num_envs=32,",
              "  n_cycles=2, n_test_episodes=50; total_env_steps: per task, see herjax.envs._FETCH_BUDGETS):"]
    grouped = set(section_names) | set(SHARED_SECTIONS)
    lines += [f"  {key}={default(key)}" for key in keys() if key.split(".", 1)[0] not in grouped]
    for section in section_names:
        owners = ", ".join(n for n, a in algs_lib.REGISTRY.items() if a.section == section)
        lines += ["", f"  {section}.* (alg={owners}):"]
        lines += [f"  {key}={default(key)}" for key in keys() if key.split(".", 1)[0] == section]
    for section, applies in SHARED_SECTIONS.items():
        lines += ["", f"  {section}.* ({applies}):"]
        lines += [f"  {key}={default(key)}" for key in keys() if key.split(".", 1)[0] == section]
    return "\n".join(lines)
