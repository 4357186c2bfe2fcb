"""The typed training config: every default in one place, overridable as ``key=value``.

    cfg = load(["env=fetch_push", "ddpg.batch_size=512"])   # -> a resolved, validated TrainConfig
    cfg = load(TrainConfig(env="fetch_push"))

Defaults are baselines' ``her`` defaults (``DDPGConfig`` holds the agent's and the replay's). A few fields are
``None`` by default and resolved per env by ``resolve``: ``n_cycles`` (10 for FetchReach, else 50, as baselines),
``total_env_steps`` and ``run_dir``. The resolved config is what a run writes to ``config.yaml``.

**Scale presets** (``scale=...``), applied before the other overrides, which win:

* ``single`` (default): one baselines worker, ``num_envs 2`` (rollout_batch_size), ``ddpg.batch_size 256``.
* ``paper``: the single-device equivalent of the paper's 19 MPI workers (Plappert et al. 2018): 19 workers x
  2 rollouts = ``num_envs 38`` episodes a cycle, and their averaged gradients over 19 x 256 samples = one
  gradient of ``ddpg.batch_size 4864``. An epoch of 50 cycles is then 95k env steps, as in the paper. The same
  as ``num_envs=38 ddpg.batch_size=4864``. On these 2 CPU cores it is learning-bound (~600 env steps/s).

**Groups.** ``env=`` picks the task (``herjax.envs.names()``) and ``alg=`` the algorithm (``herjax.algs``);
each algorithm's hyper-parameters live in its own section (``ddpg.*`` for ``ddpg_her``), which ``TrainConfig``
gets from the registry, so a new algorithm needs no edit here.

Evaluation runs ``n_test_rollouts`` rounds of ``num_envs`` deterministic episodes, i.e. ``n_test_rollouts *
num_envs`` episodes per epoch, as each baselines worker calls its evaluator (``rollout_batch_size`` envs)
``n_test_rollouts`` times.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import os
import typing
from typing import Any, Optional, Sequence, Tuple, Union

from herjax import algs as algs_lib
from herjax.envs import names as env_names
from herjax.replay.her import STRATEGIES

ALGS = tuple(algs_lib.names())
# Keys that steer a run without changing what it computes: ``resume=`` may change them, ``herjax.plot`` ignores
# them (and ``seed``, ``run_dir``) when it groups runs of one config.
RUN_CONTROL_KEYS = ("total_env_steps", "stop_success", "save_every", "keep_every")
BACKENDS = ("auto", "mujoco", "mjx")
SCALES = {
    "single": {},
    "paper": {"num_envs": 38, "ddpg.batch_size": 4864},
}
# Budgets when total_env_steps is not given: Reach learns in ~5k steps (10 epochs here); the others get the
# budgets of the published curves (REFERENCE section 2), which on one CPU worker take hours.
DEFAULT_TOTAL_ENV_STEPS = {
    "fetch_reach": 10_000,
    "fetch_push": 1_000_000,
    "fetch_pick_and_place": 3_000_000,
    "fetch_slide": 5_000_000,
}


class ConfigError(ValueError):
    """A bad key or value; the message is one line that names it and the valid choices."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """The fields of a run that every algorithm shares; ``TrainConfig`` adds one section per algorithm.

    Attributes:
        env: env name, see ``herjax.envs.names()``.
        alg: algorithm, see ``herjax.algs.names()``; its hyper-parameters are the section it names.
        scale: preset, ``single`` or ``paper`` (see the module docstring); applied by ``load``.
        seed: seed of the run's PRNG key.
        total_env_steps: env-step budget; the run does ``ceil(total_env_steps / steps_per_epoch)`` epochs.
            ``None``: per env (``DEFAULT_TOTAL_ENV_STEPS``).
        num_envs: episodes collected per cycle (baselines' ``rollout_batch_size`` x workers).
        n_cycles: cycles per epoch; ``None``: 10 for ``fetch_reach*``, else 50.
        n_test_rollouts: evaluation rounds of ``num_envs`` deterministic episodes after each epoch.
        backend: physics engine, ``auto`` (C MuJoCo on CPU, MJX on GPU), ``mujoco`` or ``mjx``.
        run_dir: where ``config.yaml``, ``progress.csv``, TensorBoard events and ``checkpoints/`` go; ``None``:
            ``runs/<env>/<alg>/<timestamp>``.
        stop_success: stop after the first epoch whose test success rate is at least this; ``None``: never.
        save_every: save the ``latest`` checkpoint every this many epochs (and always after the last one, and
            on SIGINT/SIGTERM).
        keep_every: also keep a permanent checkpoint every this many epochs (``checkpoints/periodic``);
            ``None``: none.
    """

    env: str = "fetch_reach"
    alg: str = "ddpg_her"
    scale: str = "single"
    seed: int = 0
    total_env_steps: Optional[int] = None
    num_envs: int = 2
    n_cycles: Optional[int] = None
    n_test_rollouts: int = 10
    backend: str = "auto"
    run_dir: Optional[str] = None
    stop_success: Optional[float] = None
    save_every: int = 1
    keep_every: Optional[int] = None


def _make_train_config() -> type:
    """``RunConfig`` plus one field per registered algorithm section (``ddpg: DDPGConfig`` ...)."""
    sections = [(name, cls, dataclasses.field(default_factory=cls)) for name, cls in algs_lib.sections().items()]
    cls = dataclasses.make_dataclass("TrainConfig", sections, bases=(RunConfig,), frozen=True)
    cls.__module__ = __name__
    cls.__doc__ = (
        "A training run: the ``RunConfig`` fields, then one section per algorithm of ``herjax.algs`` ("
        + ", ".join(f"``{name}: {c.__name__}``" for name, c in algs_lib.sections().items())
        + "). Only the section of ``alg`` is used."
    )
    return cls


TrainConfig = _make_train_config()


def _base_env(env: str) -> str:
    return env[: -len("_dense")] if env.endswith("_dense") else env


def default_n_cycles(env: str) -> int:
    """Baselines: 10 cycles an epoch for FetchReach, 50 for the others."""
    return 10 if _base_env(env) == "fetch_reach" else 50


def steps_per_epoch(cfg: TrainConfig, horizon: int = 50) -> int:
    """Env steps of the training episodes of one epoch (evaluation steps are not counted, as in baselines)."""
    n_cycles = cfg.n_cycles if cfg.n_cycles is not None else default_n_cycles(cfg.env)
    return n_cycles * cfg.num_envs * horizon


def n_epochs(cfg: TrainConfig, horizon: int = 50) -> int:
    """Epochs a run does: enough to spend ``total_env_steps``."""
    per_epoch = steps_per_epoch(cfg, horizon)
    return -(-cfg.total_env_steps // per_epoch)


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _choice(name: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(
            f"bad value {value!r} for {name}{_suggest(str(value), choices)}; valid: {', '.join(choices)}"
        )


def _check(ok: bool, name: str, value: Any, rule: str) -> None:
    if not ok:
        raise ConfigError(f"bad value {value!r} for {name}: must be {rule}")


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


def validate(cfg: TrainConfig, horizon: int = 50) -> TrainConfig:
    """Checks every field; returns ``cfg``. Raises ``ConfigError`` naming the first bad one."""
    for key, hint in _field_types(TrainConfig).items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        if not _has_type(value, hint):
            raise ConfigError(f"bad value {value!r} for {key}: expected {_type_name(hint)}")
    envs = env_names()
    if cfg.env not in envs:
        raise ConfigError(f"unknown env {cfg.env!r}{_suggest(cfg.env, envs)}; valid envs: {', '.join(envs)}")
    _choice("alg", cfg.alg, ALGS)
    _choice("scale", cfg.scale, tuple(SCALES))
    _choice("backend", cfg.backend, BACKENDS)
    for name, value in [("total_env_steps", cfg.total_env_steps), ("num_envs", cfg.num_envs),
                        ("n_cycles", cfg.n_cycles), ("n_test_rollouts", cfg.n_test_rollouts),
                        ("save_every", cfg.save_every), ("keep_every", cfg.keep_every)]:
        if value is not None:
            _check(value > 0, name, value, "> 0")
    if cfg.stop_success is not None:
        _check(0.0 <= cfg.stop_success <= 1.0, "stop_success", cfg.stop_success, "in [0, 1] or null")
    if algs_lib.get(cfg.alg).section == "ddpg":
        _validate_ddpg(cfg, horizon)
    else:
        check = getattr(algs_lib.implementation(cfg.alg), "validate", None)
        if check is not None:
            check(cfg)
    return cfg


def _validate_ddpg(cfg: TrainConfig, horizon: int) -> None:
    d = cfg.ddpg
    _choice("ddpg.replay_strategy", d.replay_strategy, STRATEGIES)
    for name, value in [("ddpg.batch_size", d.batch_size), ("ddpg.buffer_size", d.buffer_size)]:
        _check(value > 0, name, value, "> 0")
    _check(d.n_batches >= 0, "ddpg.n_batches", d.n_batches, ">= 0")
    _check(len(d.hidden) > 0 and all(h > 0 for h in d.hidden), "ddpg.hidden", list(d.hidden),
           "a non-empty list of positive sizes")
    for name, value in [("ddpg.pi_lr", d.pi_lr), ("ddpg.q_lr", d.q_lr), ("ddpg.max_u", d.max_u),
                        ("ddpg.clip_obs", d.clip_obs), ("ddpg.norm_eps", d.norm_eps),
                        ("ddpg.norm_clip", d.norm_clip)]:
        _check(value > 0, name, value, "> 0")
    for name, value in [("ddpg.polyak", d.polyak), ("ddpg.random_eps", d.random_eps)]:
        _check(0.0 <= value <= 1.0, name, value, "in [0, 1]")
    _check(d.noise_eps >= 0, "ddpg.noise_eps", d.noise_eps, ">= 0")
    _check(d.action_l2 >= 0, "ddpg.action_l2", d.action_l2, ">= 0")
    _check(d.replay_k >= 0, "ddpg.replay_k", d.replay_k, ">= 0")
    if d.gamma is not None:
        _check(0.0 < d.gamma <= 1.0, "ddpg.gamma", d.gamma, "in (0, 1] or null (1 - 1/T)")
    if not isinstance(d.clip_return, bool):
        _check(d.clip_return > 0, "ddpg.clip_return", d.clip_return, "true, false or a float > 0")
    if d.buffer_size // horizon < cfg.num_envs:
        raise ConfigError(
            f"bad value {d.buffer_size!r} for ddpg.buffer_size: must hold at least num_envs={cfg.num_envs} "
            f"episodes of {horizon} steps (>= {cfg.num_envs * horizon})"
        )


def _default_budget(alg: str, base_env: str) -> int:
    """The env-step budget when none is given: the algorithm module's own table where it has one."""
    module = algs_lib.implementation(alg)
    table = getattr(module, "DEFAULT_TOTAL_ENV_STEPS", DEFAULT_TOTAL_ENV_STEPS)
    return table[base_env]


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Validates ``cfg`` and fills the per-env ``None`` defaults (a new config; ``cfg`` is unchanged)."""
    validate(cfg)
    base = _base_env(cfg.env)
    run_dir = cfg.run_dir
    if run_dir is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = os.path.join("runs", cfg.env, cfg.alg, stamp)
    return dataclasses.replace(
        cfg,
        n_cycles=default_n_cycles(cfg.env) if cfg.n_cycles is None else cfg.n_cycles,
        total_env_steps=_default_budget(cfg.alg, base) if cfg.total_env_steps is None else cfg.total_env_steps,
        run_dir=run_dir,
    )


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
    hint = f" (did you mean {leaf_matches[0]!r}?)" if leaf_matches else _suggest(key, known)
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
    if alg in algs_lib.REGISTRY:
        active = algs_lib.get(alg).section
        for key, _ in pairs:
            section = key.split(".", 1)[0]
            if "." in key and section != active and section in algs_lib.sections():
                owners = [n for n, a in algs_lib.REGISTRY.items() if a.section == section]
                raise ConfigError(
                    f"key {key!r} belongs to alg={'/'.join(owners)}, but alg={alg} (its keys are {active}.*)"
                )
    scale = base.scale if base is not None else TrainConfig.scale
    for key, value in pairs:
        if key == "scale":
            scale = value
    if scale not in SCALES:
        raise ConfigError(f"bad value {scale!r} for scale{_suggest(scale, tuple(SCALES))}; valid: {', '.join(SCALES)}")

    schema = OmegaConf.structured(_schema(TrainConfig))
    if base is not None:
        schema = OmegaConf.merge(schema, _to_container(base))
    preset = [f"{k}={v}" for k, v in SCALES[scale].items()] if apply_scale else []
    merged = schema
    for key, value in [tuple(p.split("=", 1)) for p in preset] + pairs:
        try:
            merged = OmegaConf.merge(merged, OmegaConf.from_dotlist([f"{key}={value}"]))
        except ConfigKeyError:
            raise _unknown_key(key) from None
        except (ValidationError, OmegaConfBaseException):
            raise ConfigError(f"bad value {value!r} for {key}: expected {_type_name(types[key])}") from None
    return _from_container(TrainConfig, OmegaConf.to_container(merged, resolve=True))


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
        raise ConfigError(" ".join(str(e).split()).split(" full_key:")[0]) from None
    if not isinstance(container, dict):
        raise ConfigError("not a mapping of keys to values")
    return resolve(_from_container(TrainConfig, container))


def usage() -> str:
    """The config groups and every key with its default, for ``--help``."""
    defaults = _to_container(TrainConfig())
    sections = algs_lib.sections()

    def default(key: str) -> str:
        value = defaults
        for part in key.split("."):
            value = value[part]
        return _dotlist_value(value)

    lines = ["config groups:", f"  env=NAME   one of: {', '.join(env_names())} (default {TrainConfig.env})"]
    for name, alg in algs_lib.REGISTRY.items():
        note = " (default)" if name == TrainConfig.alg else ""
        lines.append(f"  alg={name}{note}   hyper-parameters: {alg.section}.*")
    lines += ["", "keys and defaults:"]
    lines += [f"  {key}={default(key)}" for key in keys() if key.split(".", 1)[0] not in sections]
    for section in sections:
        owners = ", ".join(n for n, a in algs_lib.REGISTRY.items() if a.section == section)
        lines += ["", f"  {section}.* (alg={owners}):"]
        lines += [f"  {key}={default(key)}" for key in keys() if key.split(".", 1)[0] == section]
    return "\n".join(lines)
