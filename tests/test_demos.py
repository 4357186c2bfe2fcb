"""Learning from demonstrations (Nair et al. 2018): the demos file and its loader, the exact demo share of a batch,
the behaviour-cloning loss and Q-filter by hand, the ``herjax.demos`` command, and runs with demos (and prioritised
replay) through ``herjax.train``: DDPG and TD3, one-line errors, and an exact resume that keeps its own demos."""

import functools
import os
import shutil
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from herjax import config as config_lib
from herjax import demos as demos_lib
from agenttools import random_transitions
from herjax import train as train_mod
from herjax.agents.common.config import BCConfig
from herjax.agents.ddpg import DDPGConfig, make_ddpg
from herjax.agents.ddpg.losses import cloning_mask, demo_actor_loss
from herjax.agents.td3 import TD3Config, make_td3
from herjax import loops
from herjax.loops import off_policy
from herjax.replay import make_her_buffer, make_replay
from herjax.runs import checkpoint as ckpt_lib
from herjax.train import train
from herjax.types import Episodes
from runtools import TINY_DDPG, progress_rows

pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # subprocesses of a process running JAX
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
T = 4
ENV = types.SimpleNamespace(obs_dim=3, goal_dim=2, action_dim=2, episode_length=T)  # what load reads of an env


def encoded_episodes(n, first_id, obs_dim=3, goal_dim=2, act_dim=2, horizon=T):
    """``n`` episodes whose ``obs[..., 0]`` is the episode id and ``obs[..., 1]`` the step."""
    rng = np.random.default_rng(first_id)
    ids = np.arange(first_id, first_id + n, dtype=np.float32)[:, None]
    steps = np.arange(horizon + 1, dtype=np.float32)[None, :]
    obs = np.concatenate([np.stack(np.broadcast_arrays(ids, steps), -1),
                          rng.normal(size=(n, horizon + 1, obs_dim - 2))], -1).astype(np.float32)
    return Episodes(obs=obs, achieved_goal=rng.normal(size=(n, horizon + 1, goal_dim)).astype(np.float32),
                    desired_goal=rng.normal(size=(n, horizon, goal_dim)).astype(np.float32),
                    action=rng.uniform(-1, 1, size=(n, horizon, act_dim)).astype(np.float32))


@pytest.fixture(scope="module")
def reach_demos(tmp_path_factory):
    """Four successful scripted FetchReach episodes in a demos file, and another four (seed 1) in a second."""
    folder = tmp_path_factory.mktemp("demos")
    paths = []
    for seed in (0, 1):
        cfg = demos_lib.DemoConfig(env="fetch_reach", episodes=4, num_envs=4, seed=seed, backend="mujoco")
        episodes, attempts = demos_lib.record(cfg, log=None)
        path = str(folder / f"reach_{seed}.npz")
        demos_lib.save(path, episodes, "fetch_reach", noise=0.0, seed=seed, attempts=attempts)
        paths.append(path)
    return paths


# --- the batch ---------------------------------------------------------------------------------------------------


def reward(ag, g):
    return -(jnp.linalg.norm(ag - g, axis=-1) > 0.05).astype(jnp.float32)


@pytest.mark.parametrize("prioritized", [False, True])
def test_demo_share_of_a_batch_is_exact(prioritized):
    """Every batch ends with exactly demo_batch_size demo transitions (and only there): is_demo says so, and the
    samples themselves come from the demo episodes (ids >= 1000) there and from the ring elsewhere."""
    cfg = config_lib.load(["demos=x.npz", "ddpg.batch_size=48", "bc.demo_batch_size=12", "num_devices=2",
                           "ddpg.buffer_size=400", f"replay.prioritized={str(prioritized).lower()}", "run_dir=x"])
    env = types.SimpleNamespace(obs_dim=3, goal_dim=2, action_dim=2, episode_length=T, compute_reward=reward)
    replay = off_policy.make_run_replay(cfg, cfg.ddpg, env, encoded_episodes(3, 1000))
    state = replay.add(replay.init(), jax.tree.map(jnp.asarray, encoded_episodes(5, 0)), jnp.asarray(5))
    per_device = cfg.ddpg.batch_size // cfg.num_devices  # 24, of which 12 / 2 = 6 from the demos
    sample = jax.jit(lambda key: replay.sample(state, key, per_device)[0])
    for key in jax.random.split(jax.random.key(0), 5):
        batch = sample(key)
        np.testing.assert_array_equal(batch.is_demo, [False] * 18 + [True] * 6)
        ids = np.asarray(batch.obs[:, 0])
        assert np.all(ids[18:] >= 1000) and np.all(ids[:18] < 5)
        assert (batch.weight is not None) == prioritized
        if prioritized:
            np.testing.assert_array_equal(batch.weight[18:], 1.0)


def test_plain_replay_is_the_her_buffer():
    """Without demos and priorities the loop's replay is the HER buffer itself: same state, same batch."""
    her = dict(horizon=T, obs_dim=3, goal_dim=2, act_dim=2, compute_reward=reward)
    buffer = make_her_buffer(capacity=40, **her)
    replay = make_replay(buffer, compute_reward=reward, strategy="future", future_p=0.8)
    episodes = jax.tree.map(jnp.asarray, encoded_episodes(4, 0))
    state = replay.add(replay.init(), episodes, jnp.asarray(4))
    batch, where = replay.sample(state, jax.random.key(1), 16)
    assert where is None and batch.is_demo is None and batch.weight is None
    same = buffer.sample(buffer.add(buffer.init(), episodes, jnp.asarray(4)), jax.random.key(1), 16)
    for a, b in zip(batch, same):
        np.testing.assert_array_equal(a, b)


# --- the losses ---------------------------------------------------------------------------------------------------


def test_bc_loss_and_q_filter_by_hand():
    """A linear actor pi = w * obs and critic Q = a . c, four samples of which the last two are demos:

    pi = [[.5, 0], [0, .5], [.25, .25], [.5, -.5]] (w = 0.5), Q(s, pi) = pi . [1, 2] = [.5, 1, .75, -.5];
    demo actions [1, 1] (Q = 3 > .75: kept) and [-1, -1] (Q = -3 < -.5: filtered out).
    DDPG part: -mean Q(s, pi) + mean pi^2 = -0.4375 + 0.140625 = -0.296875.
    Cloning: kept row (.25 - 1)^2 * 2 = 1.125; without the filter also (.5 + 1)^2 + (-.5 + 1)^2 = 2.5.
    d/dw: DDPG part -mean(obs . c) + mean(2 w obs^2) = -0.875 + 0.5625; cloning 2 (w o - a) . o = -1.5 (kept row).
    """
    obs = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5], [1.0, -1.0]])
    action = jnp.array([[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [-1.0, -1.0]])
    is_demo = jnp.array([False, False, True, True])
    loss = functools.partial(
        demo_actor_loss, critic_params={"c": jnp.array([1.0, 2.0])}, obs=obs, goal=jnp.zeros((4, 1)), action=action,
        is_demo=is_demo, actor_apply=lambda p, o, g: p["w"] * o,
        critic_apply=lambda p, o, g, a: jnp.sum(a * p["c"], axis=-1), action_l2=1.0, max_u=1.0,
        prm_loss_weight=0.001, aux_loss_weight=0.0078,
    )
    (value, aux), grad = jax.value_and_grad(lambda p: loss(p, q_filter=True), has_aux=True)({"w": jnp.array(0.5)})
    assert float(value) == pytest.approx(0.001 * -0.296875 + 0.0078 * 1.125, rel=1e-6)
    assert (float(aux.bc_loss), float(aux.bc_kept)) == pytest.approx((1.125, 0.5))
    assert float(grad["w"]) == pytest.approx(0.001 * (-0.875 + 0.5625) + 0.0078 * -1.5, rel=1e-5)
    unfiltered, aux = loss({"w": jnp.array(0.5)}, q_filter=False)
    assert float(unfiltered) == pytest.approx(0.001 * -0.296875 + 0.0078 * 3.625, rel=1e-6)
    assert (float(aux.bc_loss), float(aux.bc_kept)) == pytest.approx((3.625, 1.0))
    q_demo, q_pi = jnp.array([3.0, 3.0, 3.0, -3.0]), jnp.array([0.5, 1.0, 0.75, -0.5])
    np.testing.assert_array_equal(cloning_mask(is_demo, q_demo, q_pi, q_filter=True), [False, False, True, False])
    np.testing.assert_array_equal(cloning_mask(is_demo, q_demo, q_pi, q_filter=False), is_demo)


AGENTS = {"ddpg": (make_ddpg, DDPGConfig(hidden=(8,))), "td3": (make_td3, TD3Config(hidden=(8,)))}


@pytest.mark.parametrize("name", sorted(AGENTS))
def test_agents_clone_demos_only_with_a_bc_config(name):
    """With ``bc`` the agent logs the cloning error and the Q-filter's pass rate; with weights (1, 0) Nair's actor
    loss is DDPG's, so the update equals that of the agent without ``bc`` (which ignores ``is_demo``)."""
    make, cfg = AGENTS[name]
    sizes = dict(obs_dim=3, goal_dim=2, act_dim=2, horizon=10)
    batch = random_transitions(jax.random.key(1), 16, obs_dim=3, goal_dim=2, act_dim=2)
    batch = batch._replace(is_demo=jnp.arange(16) >= 12)
    plain = make(cfg, **sizes)
    state = plain.init(jax.random.key(0))
    plain_state, plain_metrics = jax.jit(plain.update)(state, batch, jax.random.key(2))
    as_ddpg = make(cfg, **sizes, bc=BCConfig(prm_loss_weight=1.0, aux_loss_weight=0.0))
    same_state, same = jax.jit(as_ddpg.update)(state, batch, jax.random.key(2))
    assert float(same["actor_loss"]) == pytest.approx(float(plain_metrics["actor_loss"]), rel=1e-6)
    for a, b in zip(jax.tree.leaves(same_state.actor), jax.tree.leaves(plain_state.actor)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    nair = make(cfg, **sizes, bc=BCConfig())
    assert nair.metric_names[-2:] == ("bc_loss", "bc_kept")
    _, metrics = jax.jit(nair.update)(state, batch, jax.random.key(2))
    assert float(metrics["bc_loss"]) >= 0 and 0 <= float(metrics["bc_kept"]) <= 1


# --- the file -----------------------------------------------------------------------------------------------------


def write(path, episodes=None, **overrides):
    arrays = {**encoded_episodes(2, 0)._asdict(), "env": np.asarray("fetch_toy"), "format_version": np.asarray(1)}
    if episodes is not None:
        arrays.update(episodes._asdict())
    arrays.update(overrides)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return str(path)


def test_loader_reads_a_good_file(tmp_path):
    path = write(tmp_path / "good.npz")
    loaded = demos_lib.load(path, ENV, name="fetch_toy")
    for got, want in zip(loaded, encoded_episodes(2, 0)):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)


BAD_FILES = {
    "missing key": (dict(action=None), "lacks action"),
    "version": (dict(format_version=np.asarray(2)), "format_version 2, but this herjax reads version 1"),
    "other env": (dict(env=np.asarray("fetch_push")), "recorded in env 'fetch_push', but this run's env is"),
    "obs size": (dict(obs=np.zeros((2, T + 1, 4), np.float32)), "obs has shape [2, 5, 4], but the env needs"),
    "horizon": (dict(action=np.zeros((2, T + 2, 2), np.float32)), "action has shape [2, 6, 2]"),
    "episode count": (dict(desired_goal=np.zeros((3, T, 2), np.float32)), "E=2 as action has"),
    "dtype": (dict(obs=np.zeros((2, T + 1, 3), np.int32)), "obs has dtype int32, expected floating point"),
    "nan": (dict(achieved_goal=np.full((2, T + 1, 2), np.nan, np.float32)), "achieved_goal holds non-finite"),
    "action bound": (dict(action=np.full((2, T, 2), 1.5, np.float32)), "outside the env's action bound"),
    "no episode": (dict(obs=np.zeros((0, T + 1, 3), np.float32), achieved_goal=np.zeros((0, T + 1, 2), np.float32),
                        desired_goal=np.zeros((0, T, 2), np.float32), action=np.zeros((0, T, 2), np.float32)),
                   "holds no episode"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_loader_refuses_a_bad_file_in_one_line(case, tmp_path):
    overrides, message = BAD_FILES[case]
    path = write(tmp_path / "bad.npz", **overrides)
    with pytest.raises(demos_lib.DemoError) as error:
        demos_lib.load(path, ENV, name="fetch_toy")
    text = str(error.value)
    assert "\n" not in text and text.startswith(f"bad demos file {path}: ") and message in text, text


def test_loader_refuses_what_is_not_a_demos_file(tmp_path):
    with pytest.raises(demos_lib.DemoError, match="does not exist"):
        demos_lib.load(str(tmp_path / "missing.npz"), ENV)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(demos_lib.DemoError, match="not a readable .npz"):
        demos_lib.load(str(tmp_path / "text.npz"), ENV)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(demos_lib.DemoError, match="not a readable .npz"):
        demos_lib.load(str(tmp_path / "one.npy"), ENV)


# --- the commands -------------------------------------------------------------------------------------------------


def cli(module, *args):
    env = {**os.environ, "PYTHONPATH": REPO}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, capture_output=True, text=True, env=env,
                          timeout=600)


def test_demos_command_records_successful_push_episodes(tmp_path):
    out = tmp_path / "push.npz"
    proc = cli("herjax.demos", "env=fetch_push", "episodes=3", "num_envs=3", f"out={out}", "backend=mujoco")
    assert proc.returncode == 0, proc.stderr
    assert "3/3 successful episodes" in proc.stdout and f"wrote {out}" in proc.stdout
    with np.load(out) as data:
        assert str(data["env"]) == "fetch_push" and int(data["format_version"]) == 1
        assert data["obs"].shape == (3, 51, 25) and data["action"].shape == (3, 50, 4)
        distance = np.linalg.norm(data["achieved_goal"][:, -1] - data["desired_goal"][:, -1], axis=-1)
    assert np.all(distance < 0.05), distance  # FetchPush's success: the block within 5 cm of the goal at the end


@pytest.mark.parametrize("args, message", [
    (["episode=3"], "unknown key 'episode' (did you mean 'episodes'?)"),
    (["episodes=many"], "bad value 'many' for episodes: expected an integer"),
    (["env=fetch_slide"], "bad value 'fetch_slide' for env"),
    (["noise=-1"], "bad value -1.0 for noise: must be >= 0"),
    (["out=/no/such/folder/d.npz"], "folder /no/such/folder does not exist"),
    (["episodes"], "bad argument 'episodes': expected key=value"),
])
def test_demos_command_bad_input_is_one_line(args, message, capsys):
    assert demos_lib.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("herjax.demos: error: ") and message in err, err


def test_demos_command_bad_key_exits_2():
    proc = cli("herjax.demos", "episodez=3")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "unknown key 'episodez'" in proc.stderr


def test_train_refuses_bad_demos_in_one_line(tmp_path, capsys, reach_demos):
    bad = write(tmp_path / "bad.npz")  # recorded in another env, with other sizes
    share = "bc.demo_batch_size=8"
    cases = [
        (TINY_DDPG + [f"demos={bad}", share], f"bad demos file {bad}: its episodes were recorded in env 'fetch_toy'"),
        (TINY_DDPG + [f"demos={tmp_path / 'none.npz'}", share], "does not exist"),
        ([f"demos={reach_demos[0]}", "alg=sac_her"], "alg=sac_her has no behaviour-cloning loss"),
        (TINY_DDPG + [f"demos={reach_demos[0]}"], "bad value 128 for bc.demo_batch_size: must be < ddpg.batch_size"),
    ]
    run_dir = tmp_path / "run"
    for args, message in cases:
        assert train_mod.main(args + [f"run_dir={run_dir}"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
        assert not run_dir.exists()  # nothing left behind


ENV_REACH = types.SimpleNamespace(obs_dim=10, goal_dim=3, action_dim=4, episode_length=50)


# --- runs ---------------------------------------------------------------------------------------------------------


def demo_args(alg, path):
    section = {"ddpg_her": "ddpg", "td3_her": "td3"}[alg]
    tiny = [arg.replace("ddpg.", f"{section}.") for arg in TINY_DDPG]
    return tiny + [f"alg={alg}", f"demos={path}", "bc.demo_batch_size=8", "replay.prioritized=true"]


# Slow (34 s and 45 s): the default suite keeps the same path in-process (the resume test, demos + priorities).
@pytest.mark.slow
@pytest.mark.parametrize("alg", ["ddpg_her", "td3_her"])
def test_train_command_with_demos_and_priorities(alg, reach_demos, tmp_path):
    """``python -m herjax.train`` (its ``main``) with demos and prioritised replay: it runs, logs the cloning
    metrics, records the resolved beta schedule and keeps a copy of its demos. TD3's run (compiled for about 50 s
    on 2 cores) is under -m slow; test_agents_clone_demos_only_with_a_bc_config covers its loss by default."""
    run_dir = tmp_path / "run"
    assert train_mod.main(demo_args(alg, reach_demos[0]) + ["total_env_steps=400", f"run_dir={run_dir}"]) == 0
    rows = progress_rows(run_dir)
    assert len(rows) == 2
    for row in rows:
        assert np.isfinite(float(row["train/bc_loss"])) and 0 <= float(row["train/bc_kept"]) <= 1
        assert np.isfinite(float(row["train/critic_loss"]))
    saved = ckpt_lib.read_config(str(run_dir))
    assert saved.demos == reach_demos[0] and saved.replay.prioritized and saved.replay.beta_updates == 2 * 2 * 2
    copy = demos_lib.load(demos_lib.run_copy(str(run_dir)), ENV_REACH, name="fetch_reach")
    for got, want in zip(copy, demos_lib.load(reach_demos[0], ENV_REACH, name="fetch_reach")):
        np.testing.assert_array_equal(got, want)


def test_resume_with_demos_is_exact_and_keeps_its_own_demos(reach_demos, tmp_path):
    """A run with demos and priorities, stopped after one epoch and resumed, equals an uninterrupted run row for row
    and in its final state (networks, replay ring, priorities, demo ring, key), on the CPU; it resumes with the demos
    it started with although the file it named has changed (it says so), and play's loader reads its copy. The epoch
    compiles once for all three runs: a fresh state's priorities, a later epoch's and a restored one's have the same
    types (a weakly typed leaf of a fresh state compiled the epoch twice)."""
    demos_path = str(tmp_path / "demos.npz")
    shutil.copyfile(reach_demos[0], demos_path)
    args = demo_args("ddpg_her", demos_path) + ["seed=1", "replay.beta_updates=12"]
    traced = loops.TRACE_COUNTS["run_epoch"]
    reference = train(args + ["total_env_steps=600", f"run_dir={tmp_path / 'reference'}"], log=None)
    run_dir = str(tmp_path / "run")
    train(args + ["total_env_steps=200", f"run_dir={run_dir}"], log=None, trainer=reference.trainer)
    shutil.copyfile(reach_demos[1], demos_path)  # other demos under the same name
    lines = []
    resumed = train(["total_env_steps=600"], resume=run_dir, log=lines.append, trainer=reference.trainer)
    assert loops.TRACE_COUNTS["run_epoch"] - traced == 1
    assert resumed.resumed_from == "latest/1"
    assert any("has changed since the run started" in line for line in lines), lines
    assert progress_rows(run_dir) == progress_rows(reference.run_dir)
    for (path, want), got in zip(jax.tree_util.tree_leaves_with_path(reference.state),
                                 jax.tree_util.tree_leaves(resumed.state)):
        if jax.dtypes.issubdtype(want.dtype, jax.dtypes.prng_key):
            want, got = jax.random.key_data(want), jax.random.key_data(got)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want), err_msg=jax.tree_util.keystr(path))
    first = demos_lib.load(reach_demos[0], ENV_REACH)
    np.testing.assert_array_equal(resumed.state.buffer.demos.episodes.obs[0], first.obs)
    assert int(resumed.state.buffer.priorities.updates[0]) == 12
    loaded = ckpt_lib.load_run(run_dir, "latest")  # what play and export build
    np.testing.assert_array_equal(loaded.state.buffer.demos.episodes.obs[0], first.obs)
    os.remove(demos_lib.run_copy(run_dir))
    with pytest.raises(ckpt_lib.CheckpointError, match="its copy of the demos .* is missing"):
        train([], resume=run_dir, log=None, trainer=reference.trainer)
