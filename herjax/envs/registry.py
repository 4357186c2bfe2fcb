"""The env registry: every name ``env=NAME`` accepts, the four Fetch tasks and yours.

An env is anything that keeps the contract the Fetch tasks keep (``check_env`` tests it, one line per broken rule):

* ``reset(key) -> State`` and ``step(state, action [action_dim]) -> State``, pure (``jax.jit`` and ``jax.vmap``
  work on them), where ``State`` is ``herjax.envs.State``: ``physics`` (any pytree; all-finite while the env is
  sound), ``obs`` (``observation [obs_dim]``, ``achieved_goal [goal_dim]``, ``desired_goal [goal_dim]``),
  ``reward []``, ``done []`` and ``info`` (``is_success []``); ``step`` returns the same structure it is given;
* ``compute_reward(achieved_goal [..., goal_dim], desired_goal [..., goal_dim]) -> [...]`` and ``is_success``
  (same shapes), pure and batched over any leading dims: HER relabels a whole batch with it;
* ``obs_dim``, ``goal_dim``, ``action_dim`` and ``episode_length`` (ints; actions lie in ``[-1, 1]``, episodes end
  by time limit only).

Optional: ``backend`` (a name printed by the trainer), ``dt`` (seconds per step, the video's frame rate),
``mj_model`` with ``physics`` a ``PhysState`` (``herjax.play`` renders the episodes), ``goal_position(goal
[..., goal_dim]) -> [..., 3]`` (where play draws the goal; the goal itself when ``goal_dim`` is 3) and
``render_camera`` (a free camera ``{distance, azimuth, elevation, lookat}``).
``herjax.envs.MujocoGoalEnv`` builds such an env from a MuJoCo model and a few task functions, on both engines.

Three ways to name one:

    herjax.envs.register("point_room", make_point_room, episode_length=50)   # in code run before herjax.train
    python -m herjax.train env=examples.point_room:point_room                # a module attribute holding an EnvSpec
    [project.entry-points."herjax.envs"] point_room = "my_pkg.envs:point_room"   # an installed package's EnvSpec
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import re
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp

from herjax.checks import ConfigError, suggest

ENTRY_POINT_GROUP = "herjax.envs"
LOOP_KNOBS = ("num_envs", "n_cycles", "n_test_episodes", "total_env_steps")
_NAME = re.compile(r"^[A-Za-z_][\w.\-]*(:[A-Za-z_]\w*)?$")


class EnvError(ConfigError):
    """An env that cannot be found, built or used: one line naming the env and the broken rule."""


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """A registered env: how to build it, and the facts a config needs before building it.

    Attributes:
        make: ``(backend: str = "auto", **options) -> env``; ``options`` are what ``herjax.envs.make(name,
            **options)`` passes on (Fetch: fields of ``FetchConfig``).
        episode_length: steps per episode (the env's ``episode_length``); configs are sized with it.
        defaults: per algorithm family (``off_policy``, ``on_policy``), defaults of the loop knobs ``num_envs``,
            ``n_cycles``, ``n_test_episodes`` and ``total_env_steps`` for this env; a knob not given takes its
            family's default (``herjax.config.FAMILY_DEFAULTS``).
        recipes: the env's fastest measured settings of the off-policy algorithms per kind of device, ``cpu`` and
            ``accelerator``, which ``scale=fast`` (the default) applies: ``{key: value}`` overrides, ``{section}.``
            standing for the algorithm's section (``herjax.config.scale_preset``). On a device kind without one,
            ``fast`` takes the ``cpu`` recipe; an env without any trains with ``scale=single``'s settings.
        description: one line for ``--help``.
        check: run ``check_env`` on every env ``make`` builds (the built-in Fetch tasks are tested instead).
    """

    make: Callable[..., Any]
    episode_length: int
    defaults: Mapping[str, Mapping[str, int]] = dataclasses.field(default_factory=dict)
    recipes: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    description: str = ""
    check: bool = True

    def __post_init__(self):
        if not callable(self.make):
            raise EnvError(f"EnvSpec.make must be a function (backend, **options) -> env, got {self.make!r}")
        if not isinstance(self.episode_length, int) or self.episode_length < 1:
            raise EnvError(f"EnvSpec.episode_length must be an int >= 1, got {self.episode_length!r}")
        for family, knobs in self.defaults.items():
            if family not in ("off_policy", "on_policy"):
                raise EnvError(f"EnvSpec.defaults: unknown family {family!r}; valid: off_policy, on_policy")
            for knob, value in knobs.items():
                if knob not in LOOP_KNOBS:
                    raise EnvError(f"EnvSpec.defaults[{family!r}]: unknown knob {knob!r}; valid: "
                                   f"{', '.join(LOOP_KNOBS)}")
                if not isinstance(value, int) or value < 1:
                    raise EnvError(f"EnvSpec.defaults[{family!r}][{knob!r}] must be an int >= 1, got {value!r}")
        for kind in self.recipes:
            if kind not in DEVICE_KINDS:
                raise EnvError(f"EnvSpec.recipes: unknown device kind {kind!r}; valid: {', '.join(DEVICE_KINDS)}")


DEVICE_KINDS = ("cpu", "accelerator")
_REGISTRY: dict[str, EnvSpec] = {}


def register(name: str, make: Callable[..., Any], *, episode_length: int,
             defaults: Optional[Mapping[str, Mapping[str, int]]] = None,
             recipes: Optional[Mapping[str, Mapping[str, Any]]] = None, description: str = "",
             check: bool = True) -> EnvSpec:
    """Registers ``make`` under ``name`` (see ``EnvSpec`` for the arguments) and returns its ``EnvSpec``.

    Registering a name again with the same ``make`` (a module imported twice) is allowed; with another, an error.
    """
    if not isinstance(name, str) or not _NAME.match(name):
        raise EnvError(f"bad env name {name!r}: use letters, digits, '_', '.', '-' (and 'module:attr' for an "
                       "import path)")
    spec = EnvSpec(make=make, episode_length=episode_length, defaults=dict(defaults or {}),
                   recipes=dict(recipes or {}), description=description, check=check)
    old = _REGISTRY.get(name)
    if old is not None and old.make is not make:
        raise EnvError(f"env {name!r} is already registered (by {_where(old.make)}); pick another name")
    _REGISTRY[name] = spec
    return spec


def _where(fn: Callable) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"


def names() -> list[str]:
    """Every registered env name (import paths appear once they have been used)."""
    return list(_REGISTRY)


def _from_import_path(name: str) -> EnvSpec:
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # noqa: BLE001 -- whatever the user's module raises on import, say it in one line
        detail = " ".join(str(e).split()) or type(e).__name__
        raise EnvError(f"env {name!r}: cannot import module {module_name!r} ({type(e).__name__}: {detail}); "
                       "is it on the Python path (run from its parent folder, or pip install it)?") from None
    if name in _REGISTRY:  # the module registered the full name itself
        return _REGISTRY[name]
    if not hasattr(module, attr):
        public = sorted(k for k, v in vars(module).items() if isinstance(v, EnvSpec))
        hint = f"; its EnvSpecs: {', '.join(public)}" if public else "; it defines no EnvSpec"
        raise EnvError(f"env {name!r}: module {module_name!r} has no attribute {attr!r}{hint}")
    found = getattr(module, attr)
    if not isinstance(found, EnvSpec):
        raise EnvError(f"env {name!r}: {module_name}.{attr} is a {type(found).__name__}, not an EnvSpec; define it "
                       "with herjax.envs.register(...) or herjax.envs.EnvSpec(...)")
    return _adopt(name, found)


def _adopt(name: str, found: EnvSpec) -> EnvSpec:
    """Registers an ``EnvSpec`` found by import path or entry point under the name it was asked for."""
    return register(name, found.make, episode_length=found.episode_length, defaults=found.defaults,
                    description=found.description, check=found.check)


def _from_entry_point(name: str) -> Optional[EnvSpec]:
    try:
        points = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # noqa: BLE001 -- broken package metadata must not break the built-in envs
        return None
    for point in points:
        if point.name == name:
            try:
                found = point.load()
            except Exception as e:  # noqa: BLE001 -- as for an import path
                raise EnvError(f"env {name!r}: cannot load entry point {point.value!r} ({type(e).__name__}: "
                               f"{' '.join(str(e).split())})") from None
            if not isinstance(found, EnvSpec):
                raise EnvError(f"env {name!r}: entry point {point.value!r} is a {type(found).__name__}, not an "
                               "EnvSpec")
            return _adopt(name, found)
    return None


def spec(name: str) -> EnvSpec:
    """The ``EnvSpec`` of ``name``: a registered name, an entry point of group ``herjax.envs``, or an import path
    ``module:attr`` (imported now). Raises ``EnvError`` (one line, with the valid names) otherwise."""
    if not isinstance(name, str):
        raise EnvError(f"bad env {name!r}: expected a name, e.g. fetch_push")
    if name in _REGISTRY:
        return _REGISTRY[name]
    if ":" in name:
        return _from_import_path(name)
    found = _from_entry_point(name)
    if found is not None:
        return found
    raise EnvError(f"unknown env {name!r}{suggest(name, names())}; valid envs: {', '.join(names())}, or "
                   "module:attr naming an EnvSpec (see herjax.envs.register)")


def make(name: str, backend: str = "auto", **options) -> Any:
    """Builds the env ``name`` (see ``spec``) on ``backend``; ``options`` go to its ``make``.

    Raises ``EnvError`` (one line) for an unknown name, an env that fails to build, or one that breaks the
    contract (see the module docstring).
    """
    found = spec(name)
    try:
        env = found.make(backend=backend, **options)
    except (ConfigError, ValueError, TypeError) as e:
        if isinstance(e, EnvError):
            raise
        raise EnvError(f"env {name!r}: {' '.join(str(e).split())}") from None
    if found.check:
        check_env(env, name, episode_length=found.episode_length)
    return env


def _fail(name: str, rule: str) -> EnvError:
    return EnvError(f"env {name!r} breaks the env contract: {rule}")


def _shape(x: Any) -> tuple:
    return tuple(getattr(x, "shape", ()))


def check_env(env: Any, name: str = "env", *, episode_length: Optional[int] = None) -> None:
    """Checks that ``env`` keeps the contract of the module docstring, without stepping any physics (shapes only,
    with ``jax.eval_shape``). Raises ``EnvError`` naming the first broken rule, in one line."""
    from herjax.envs.fetch import State

    for method in ("reset", "step", "compute_reward", "is_success"):
        if not callable(getattr(env, method, None)):
            raise _fail(name, f"it has no method {method}() (needs reset, step, compute_reward and is_success)")
    for attr in ("obs_dim", "goal_dim", "action_dim", "episode_length"):
        value = getattr(env, attr, None)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise _fail(name, f"{attr} must be an int >= 1, got {value!r}")
    if episode_length is not None and env.episode_length != episode_length:
        raise _fail(name, f"its episode_length {env.episode_length} differs from the registered {episode_length}")
    o, g, a = env.obs_dim, env.goal_dim, env.action_dim
    want = {"observation": (o,), "achieved_goal": (g,), "desired_goal": (g,)}

    def check_state(state: Any, where: str) -> None:
        if not isinstance(state, State):
            raise _fail(name, f"{where} returned a {type(state).__name__}, not a herjax.envs.State")
        if not isinstance(state.obs, dict) or set(state.obs) != set(want):
            keys = sorted(state.obs) if isinstance(state.obs, dict) else type(state.obs).__name__
            raise _fail(name, f"{where}: obs must be a dict with keys {', '.join(want)}, got {keys}")
        for key, shape in want.items():
            if _shape(state.obs[key]) != shape:
                raise _fail(name, f"{where}: obs[{key!r}] has shape {_shape(state.obs[key])}, expected {shape} "
                                  f"(obs_dim={o}, goal_dim={g})")
        if _shape(state.reward) != () or _shape(state.done) != ():
            raise _fail(name, f"{where}: reward and done must be scalars [], got {_shape(state.reward)} and "
                              f"{_shape(state.done)}")
        if not isinstance(state.info, dict) or _shape(state.info.get("is_success", 0.0)) != () or \
                "is_success" not in state.info:
            raise _fail(name, f"{where}: info must hold is_success [] (a scalar)")

    key = jax.random.key(0)
    state = _trace(name, "reset(key)", env.reset, key)
    check_state(state, "reset(key)")
    action = jnp.zeros((a,), jnp.result_type(float))
    after = _trace(name, f"step(state, action [{a}])", env.step, state, action)
    check_state(after, "step(state, action)")
    if jax.tree.structure(after) != jax.tree.structure(state) or any(
            (x.shape, x.dtype) != (y.shape, y.dtype) for x, y in zip(jax.tree.leaves(after), jax.tree.leaves(state))):
        raise _fail(name, "step returns a State of another structure, shape or dtype than the one it is given")
    batch = (5, 7)
    goals = jax.ShapeDtypeStruct(batch + (g,), jnp.result_type(float))
    for fn in ("compute_reward", "is_success"):
        out = _trace(name, f"{fn}(achieved_goal [5, 7, {g}], desired_goal [5, 7, {g}])", getattr(env, fn), goals,
                     goals)
        if _shape(out) != batch:
            raise _fail(name, f"{fn} must be batched over leading dims: achieved_goal and desired_goal [5, 7, {g}] "
                              f"gave shape {_shape(out)}, expected (5, 7)")


def _trace(name: str, call: str, fn: Callable, *args) -> Any:
    try:
        return jax.eval_shape(fn, *args)
    except Exception as e:  # noqa: BLE001 -- whatever the user's function raises, name the call in one line
        detail = " ".join(str(e).split())
        if len(detail) > 300:
            detail = detail[:300] + "..."
        raise _fail(name, f"{call} failed: {type(e).__name__}: {detail}") from None


__all__ = ["ENTRY_POINT_GROUP", "EnvError", "EnvSpec", "check_env", "make", "names", "register", "spec"]
