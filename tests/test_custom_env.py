"""Your own env: the registry, its contract check (one line per broken rule), MujocoGoalEnv on both engines, and
the PointRoom example trained from the command line and played with video."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from herjax import config, envs
from herjax.envs import registry
from herjax.envs.registry import EnvError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POINT_ROOM = "examples.point_room:point_room"


def run_cli(*args, timeout=600):
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "PYOPENGL_PLATFORM")}
    env["PYTHONPATH"] = REPO  # also where herjax is not installed
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def point_room_run(tmp_path_factory):
    """``python -m herjax.train env=examples.point_room:point_room stop_success=0.9``: DDPG+HER, baselines'
    defaults, the env's own budget (20 epochs of 1,000 steps)."""
    run_dir = str(tmp_path_factory.mktemp("point_room") / "run")
    proc = run_cli("herjax.train", f"env={POINT_ROOM}", "stop_success=0.9", f"run_dir={run_dir}")
    return proc, run_dir


def test_point_room_trains_from_the_command_line_to_its_stated_success(point_room_run):
    """The example's stated success: test success >= 0.9 within its 20k-step budget (seed 0 reached 0.95 after
    7k steps when this test was written)."""
    import csv

    proc, run_dir = point_room_run
    assert proc.returncode == 0, proc.stderr
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert max(float(r["test/success_rate"]) for r in rows) >= 0.9
    assert int(rows[-1]["env_steps"]) <= 20_000
    assert "examples.point_room:point_room (mujoco)" in proc.stdout


def test_point_room_plays_with_video(point_room_run, tmp_path):
    import imageio.v3 as iio

    _, run_dir = point_room_run
    video = str(tmp_path / "point_room.mp4")
    proc = run_cli("herjax.play", f"run={run_dir}", "episodes=2", f"video={video}", "width=160", "height=160")
    assert proc.returncode == 0, proc.stderr
    assert "success rate" in proc.stdout
    frames = iio.imread(video)
    assert frames.shape == (2 * 51, 160, 160, 3)
    moved = [np.abs(frames[t].astype(int) - frames[0].astype(int)).mean() for t in (5, 10, 25)]
    assert min(moved) > 0.05, moved  # the ball moves


def test_mujoco_goal_env_gives_the_same_episode_on_both_engines():
    """MujocoGoalEnv steps the same model on C MuJoCo and MJX: the same actions give the same observations
    (float32 MJX against float64 C, through wall contacts) to 1e-3."""
    spec = envs.spec(POINT_ROOM)
    actions = jax.random.uniform(jax.random.key(3), (30, 2), minval=-1.0, maxval=1.0).at[:15].set(1.0)
    observed = {}
    for backend in ("mujoco", "mjx"):
        env = spec.make(backend=backend)

        def episode(key, actions, env=env):
            step = lambda s, a: (env.step(s, a),) * 2
            return jax.lax.scan(step, env.reset(key), actions)[1].obs["observation"]

        observed[backend] = np.asarray(jax.jit(episode)(jax.random.key(0), actions))
    assert np.isfinite(observed["mjx"]).all()
    np.testing.assert_allclose(observed["mjx"], observed["mujoco"], atol=1e-3)
    x = observed["mujoco"][:, 0]
    # The wall stops the ball (room half-width 0.3, ball radius 0.04): MuJoCo's soft contact lets it in by ~1 cm on
    # impact, then it rests pressed against the wall.
    assert x.max() < 0.3 - 0.04 + 0.015
    np.testing.assert_allclose(x[8:15], 0.3 - 0.04, atol=0.003)


def test_registered_envs_and_their_defaults(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    from examples.point_room import make_point_room

    envs.register("my_room", make_point_room, episode_length=50,
                  defaults={"off_policy": {"n_cycles": 7, "total_env_steps": 1400}})
    assert "my_room" in envs.names()
    cfg = config.load(["env=my_room"])
    assert (cfg.n_cycles, cfg.total_env_steps, cfg.num_envs) == (7, 1400, 2)
    assert config.load(["env=my_room", "alg=ppo"]).total_env_steps == config.FAMILY_DEFAULTS["on_policy"][
        "total_env_steps"]
    env = envs.make("my_room")
    assert (env.obs_dim, env.goal_dim, env.action_dim, env.episode_length) == (4, 2, 2, 50)
    envs.register("my_room", make_point_room, episode_length=50)  # the same factory again: a module re-imported
    with pytest.raises(EnvError, match="already registered"):
        envs.register("my_room", lambda backend="auto": None, episode_length=50)
    with pytest.raises(EnvError, match="bad env name"):
        envs.register("my room", make_point_room, episode_length=50)


def test_an_installed_package_can_name_its_env_by_entry_point(monkeypatch):
    import importlib.metadata

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    point = importlib.metadata.EntryPoint(name="their_room", value=POINT_ROOM, group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group: [point] if group == point.group else [])
    assert envs.spec("their_room").episode_length == 50
    assert config.load(["env=their_room"]).total_env_steps == 20_000


# --- registration errors: one line per broken rule ----------------------------------------------------------------


def _broken(**changes):
    """A PointRoom whose ``changes`` (attribute -> value) break one rule of the contract."""
    from examples.point_room import make_point_room

    env = make_point_room(backend="mujoco")

    class Broken:
        def __getattr__(self, name):
            if name in changes:
                if changes[name] is AttributeError:
                    raise AttributeError(name)
                return changes[name]
            return getattr(env, name)

    return Broken()


def _nonbatched_reward(achieved_goal, desired_goal):
    return -(jnp.linalg.norm(achieved_goal - desired_goal) > 0.05).astype(jnp.float32)  # one norm of everything


def _reset_as_tuple(key):
    from examples.point_room import make_point_room

    state = make_point_room(backend="mujoco").reset(key)
    return state.obs, state.reward


BROKEN = {
    "missing compute_reward": (dict(compute_reward=AttributeError), "no method compute_reward()"),
    "obs_dim not an int": (dict(obs_dim=4.0), "obs_dim must be an int >= 1, got 4.0"),
    "obs_dim wrong": (dict(obs_dim=5), "obs['observation'] has shape (4,), expected (5,)"),
    "goal_dim wrong": (dict(goal_dim=3), "obs['achieved_goal'] has shape (2,), expected (3,)"),
    "action_dim wrong": (dict(action_dim=3), "step(state, action [3]) failed"),
    "episode_length differs": (dict(episode_length=100), "episode_length 100 differs from the registered 50"),
    "reward not batched": (dict(compute_reward=_nonbatched_reward), "compute_reward must be batched"),
    "reset returns a tuple": (dict(reset=_reset_as_tuple), "reset(key) returned a tuple, not a herjax.envs.State"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_each_broken_rule_gets_one_line_naming_it(case, monkeypatch):
    changes, message = BROKEN[case]
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    envs.register("broken_room", lambda backend="auto": _broken(**changes), episode_length=50)
    with pytest.raises(EnvError) as error:
        envs.make("broken_room")
    text = str(error.value)
    assert "\n" not in text and text.startswith("env 'broken_room' breaks the env contract: ")
    assert message in text, text


@pytest.mark.parametrize("name, message", [
    ("no_such_module_xyz:env", "cannot import module 'no_such_module_xyz' (ModuleNotFoundError"),
    ("examples.point_room:nothing", "has no attribute 'nothing'; its EnvSpecs: point_room"),
    ("examples.point_room:make_point_room", "is a function, not an EnvSpec"),
    ("fetch_pussh", "unknown env 'fetch_pussh' (did you mean 'fetch_push'?)"),
])
def test_a_bad_env_name_gets_one_line(name, message):
    with pytest.raises(EnvError) as error:
        config.load([f"env={name}"])
    assert "\n" not in str(error.value) and message in str(error.value), str(error.value)


def test_a_broken_env_on_the_command_line_exits_2_with_one_line(tmp_path):
    (tmp_path / "broken_env_mod.py").write_text(
        "import jax.numpy as jnp\n"
        "import herjax.envs\n"
        "from examples.point_room import make_point_room\n"
        "class Env(herjax.envs.MujocoGoalEnv):\n"
        "    def compute_reward(self, achieved_goal, desired_goal):\n"
        "        return -(jnp.linalg.norm(achieved_goal - desired_goal) > 0.05).astype(jnp.float32)\n"
        "def make(backend='auto'):\n"
        "    base = make_point_room(backend)\n"
        "    return Env(base.mj_model, base.task, backend=backend, n_substeps=5)\n"
        "broken = herjax.envs.EnvSpec(make=make, episode_length=50)\n"
    )
    run_dir = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}")
    proc = subprocess.run([sys.executable, "-m", "herjax.train", "env=broken_env_mod:broken", f"run_dir={run_dir}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "compute_reward must be batched" in lines[0], proc.stderr
    assert not run_dir.exists()
