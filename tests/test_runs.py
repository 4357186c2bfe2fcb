"""Runs as a user handles them: bad input, checkpoints, exact resume, signals, play with video, plot, export.

Two runs are shared by the whole file:

* ``small_reference``: an uninterrupted run of a tiny config (``SMALL``, 10 epochs of 200 env steps) that the
  resumed runs must equal row for row. Its compiled trainer is reused by the in-process runs of the same config.
* ``reach_run``: a FetchReach run that learns (test success 1.0 within a few thousand env steps), for play,
  plot and the export into the original gymnasium-robotics env.
"""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from herjax.runs import checkpoint as ckpt_lib
from herjax import plot as plot_lib
from herjax import policy as policy_lib
from herjax import train as train_mod
from herjax.train import train
from runtools import TINY_DDPG, progress_rows

pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # subprocesses of a process running JAX
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = TINY_DDPG + ["seed=3"]
SMALL_EPOCHS = 10
SMALL_STEPS = SMALL_EPOCHS * 2 * 2 * 50


def cli(module, *args, cwd=REPO, env=None):
    env = {**(os.environ if env is None else env), "PYTHONPATH": REPO}  # also where herjax is not installed
    return subprocess.Popen([sys.executable, "-m", module, *args], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


@pytest.fixture(scope="session")
def small_reference(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("small") / "reference")
    result = train(SMALL + [f"total_env_steps={SMALL_STEPS}", f"run_dir={run_dir}"], log=None)
    assert len(result.history) == SMALL_EPOCHS
    return result


@pytest.fixture(scope="session")
def reach_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("reach") / "run")
    result = train(["ddpg.hidden=[64,64]", "total_env_steps=10000", "keep_every=4", f"run_dir={run_dir}"], log=None)
    assert max(row["test/success_rate"] for row in result.history) == 1.0, result.history
    return result


# --- bad input: one line on stderr, exit status 2 ------------------------------------------------------------


def _corrupt_steps(run_dir, kind, steps):
    for step in steps:
        for root, _, files in os.walk(os.path.join(run_dir, "checkpoints", kind, str(step), "state")):
            for name in files:
                if os.path.basename(root) == "d":  # the array data files
                    open(os.path.join(root, name), "wb").close()


@pytest.fixture(scope="module")
def bad_runs(small_reference, tmp_path_factory):
    """Run directories that cannot be resumed, each for one reason."""
    root = tmp_path_factory.mktemp("bad")
    no_checkpoint = root / "no_checkpoint"
    no_checkpoint.mkdir()
    shutil.copy(os.path.join(small_reference.run_dir, "config.yaml"), no_checkpoint)
    bad_config = root / "bad_config"
    shutil.copytree(small_reference.run_dir, bad_config)
    (bad_config / "config.yaml").write_text("env: [unclosed\n")
    corrupt = root / "corrupt"
    shutil.copytree(small_reference.run_dir, corrupt)
    for kind in ckpt_lib.KINDS:
        _corrupt_steps(str(corrupt), kind, ckpt_lib.steps(str(corrupt), kind))
    return {"missing": str(root / "missing"), "no_checkpoint": str(no_checkpoint), "bad_config": str(bad_config),
            "corrupt": str(corrupt), "good": small_reference.run_dir}


BAD_CONFIG = {
    "unknown env": (["env=fetch_pusj"], ["unknown env", "'fetch_push'", "fetch_reach, "]),
    "unknown alg": (["alg=ddpg"], ["alg", "ddpg_her"]),
    "unknown key": (["save_evry=2"], ["unknown key", "save_every"]),
    "wrong type": (["keep_every=often"], ["keep_every", "integer"]),
    "negative steps": (["total_env_steps=-1000"], ["total_env_steps", "> 0"]),
    "num_envs=0": (["num_envs=0"], ["num_envs", "> 0"]),
    "save_every=0": (["save_every=0"], ["save_every", "> 0"]),
    "empty resume": (["resume="], ["resume= needs a run directory"]),
}


@pytest.mark.parametrize("name", list(BAD_CONFIG))
def test_bad_config_one_line_exit_2(name, capsys):
    """In process (``tests/test_train.py`` runs such cases as subprocesses too): nothing is built for them."""
    args, words = BAD_CONFIG[name]
    assert train_mod.main(args) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("herjax.train: error: "), err
    for word in words:
        assert word in err, err


# Subprocesses: these reach orbax, tensorstore, MuJoCo or matplotlib, whose stray output only a real process shows.
BAD_INPUT = {
    "resume missing": ("herjax.train", ["resume={missing}"], ["does not exist"]),
    "resume no checkpoint": ("herjax.train", ["resume={no_checkpoint}"], ["no finished checkpoint"]),
    "resume bad config": ("herjax.train", ["resume={bad_config}"], ["cannot read", "config.yaml"]),
    "resume corrupt": ("herjax.train", ["resume={corrupt}"], ["no readable checkpoint", f"latest/{SMALL_EPOCHS}"]),
    "resume changes the run": ("herjax.train", ["resume={good}", "ddpg.batch_size=64"],
                               ["cannot change ddpg.batch_size", "total_env_steps"]),
    "resume bad override": ("herjax.train", ["resume={good}", "total_env_steps=0"], ["total_env_steps", "> 0"]),
    "play missing run": ("herjax.play", ["run={missing}"], ["does not exist"]),
    "play no run key": ("herjax.play", ["episodes=3"], ["missing run="]),
    "play unknown key": ("herjax.play", ["run={good}", "episode=3"], ["unknown key", "'episodes'"]),
    "play bad checkpoint": ("herjax.play", ["run={good}", "checkpoint=worst"], ["checkpoint", "best or latest"]),
    "plot missing": ("herjax.plot", ["{missing}"], ["not a directory"]),
    "plot no runs": ("herjax.plot", ["{no_checkpoint}"], ["no run"]),
}


@pytest.fixture(scope="module")
def bad_input_results(bad_runs):
    """Every case of ``BAD_INPUT`` as a subprocess, two at a time (each mostly waits for imports)."""
    results, pending = {}, list(BAD_INPUT.items())
    running = []
    while pending or running:
        while pending and len(running) < 2:
            name, (module, args, _) = pending.pop(0)
            running.append((name, cli(module, *[a.format(**bad_runs) for a in args])))
        name, proc = running.pop(0)
        out, err = proc.communicate(timeout=180)
        results[name] = (proc.returncode, out, err)
    return results


@pytest.mark.parametrize("name", list(BAD_INPUT))
def test_bad_input_one_line_exit_2(name, bad_input_results):
    code, out, err = bad_input_results[name]
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in BAD_INPUT[name][2]:
        assert word in lines[0], lines[0]


def test_help_lists_groups_and_keys():
    proc = cli("herjax.train", "--help")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    for word in ["config groups", "env=NAME", "fetch_pick_and_place_dense", "alg=ddpg_her", "ddpg.*", "save_every=1",
                 "keep_every=null", "ddpg.replay_k=4", "resume=RUN_DIR"]:
        assert word in out, word


# --- checkpoints and resume ------------------------------------------------------------------------------------


def test_best_and_periodic_checkpoints(reach_run):
    run_dir, history = reach_run.run_dir, reach_run.history
    successes = [row["test/success_rate"] for row in history]
    last_best = len(successes) - int(np.argmax(successes[::-1]))  # ties: the latest epoch of the best success
    assert ckpt_lib.steps(run_dir, "best") == [last_best]
    assert ckpt_lib.steps(run_dir, "periodic") == [4, 8]  # keep_every=4
    assert ckpt_lib.steps(run_dir, "latest") == [9, 10]


def test_run_dir_holds_config_progress_events_and_checkpoints(small_reference):
    run_dir = small_reference.run_dir
    names = os.listdir(run_dir)
    assert {"config.yaml", "progress.csv", "checkpoints"} <= set(names)
    assert any(n.startswith("events.out.tfevents") for n in names)
    # latest every epoch (save_every=1), the two newest kept.
    assert ckpt_lib.steps(run_dir, "latest") == [SMALL_EPOCHS - 1, SMALL_EPOCHS]
    assert len(ckpt_lib.steps(run_dir, "best")) == 1
    assert ckpt_lib.steps(run_dir, "periodic") == []


def test_checkpoint_holds_the_whole_state(small_reference):
    state, meta, where = ckpt_lib.restore(small_reference.run_dir, ckpt_lib.abstract_state(small_reference.trainer),
                                          kinds=("latest",))
    assert where == f"latest/{SMALL_EPOCHS}"
    final = small_reference.state
    for path_and_leaf, leaf in zip(jax.tree_util.tree_leaves_with_path(final), jax.tree.leaves(state)):
        path, expected = path_and_leaf
        if jax.dtypes.issubdtype(expected.dtype, jax.dtypes.prng_key):
            expected, leaf = jax.random.key_data(expected), jax.random.key_data(leaf)
        np.testing.assert_array_equal(np.asarray(leaf), np.asarray(expected), err_msg=jax.tree_util.keystr(path))
    assert int(state.buffer.size.sum()) > 0 and int(state.agent.step) == SMALL_EPOCHS * 2 * 2
    assert meta["epoch"] == SMALL_EPOCHS and len(meta["history"]) == SMALL_EPOCHS
    assert meta["history"][-1]["test/mean_Q"] == small_reference.history[-1]["test/mean_Q"]


def test_resume_equals_uninterrupted_run(small_reference, tmp_path):
    run_dir = str(tmp_path / "run")
    first = train(SMALL + [f"total_env_steps={3 * 200}", f"run_dir={run_dir}"], log=None,
                  trainer=small_reference.trainer)
    assert len(first.history) == 3
    lines = []
    resumed = train([f"total_env_steps={SMALL_STEPS}"], resume=run_dir, log=lines.append,
                    trainer=small_reference.trainer)
    assert resumed.resumed_from == "latest/3" and resumed.run_dir == run_dir
    assert "resuming" in lines[0]
    assert progress_rows(run_dir) == progress_rows(small_reference.run_dir)
    walls = [row["wall_s"] for row in resumed.history]
    assert walls == sorted(walls)
    assert len([n for n in os.listdir(run_dir) if n.startswith("events.out.tfevents")]) == 2
    # Resuming a finished run is not an error: it has nothing to do.
    again = train([], resume=run_dir, log=None, trainer=small_reference.trainer)
    assert len(again.history) == SMALL_EPOCHS


def test_a_resume_in_the_same_second_keeps_the_runs_tensorboard_events(tmp_path, monkeypatch):
    """tensorboardX names an event file by the second and the host and truncates it: a resume that starts within
    the second of the run before it must still write a file of its own (the likely cause of one failure of
    test_resume_equals_uninterrupted_run, which counts 2 event files)."""
    import tensorboardX.event_file_writer as event_file_writer
    from herjax.runs import logs

    monkeypatch.setattr(event_file_writer.time, "time", lambda: 1_800_000_000.25)
    first = logs.tensorboard(str(tmp_path), "cfg", None)
    first.add_scalar("x", 1.0, 1)
    first.close()
    (name,) = os.listdir(tmp_path)
    written = (tmp_path / name).read_bytes()
    logs.tensorboard(str(tmp_path), "cfg", 2).close()
    assert len(os.listdir(tmp_path)) == 2 and (tmp_path / name).read_bytes() == written


def test_resume_does_not_reapply_the_scale_preset():
    from herjax import config as config_lib

    saved = config_lib.load(["scale=paper", "ddpg.batch_size=512", "run_dir=r"])
    cfg = config_lib.parse_overrides(["total_env_steps=5000"], base=saved, apply_scale=False)
    assert (cfg.num_envs, cfg.ddpg.batch_size, cfg.total_env_steps) == (38, 512, 5000)


def test_scale_presets_workers_and_their_errors():
    """``workersN`` scales one worker's envs, batch and buffer by N (``paper`` is ``workers19``), for every
    off-policy algorithm; overrides win; PPO takes none."""
    from herjax import config as config_lib
    from herjax.checks import ConfigError

    sizes = lambda cfg: (cfg.num_envs, cfg.section.batch_size, cfg.section.buffer_size)
    load = lambda *args: config_lib.load([*args, "run_dir=r"])
    assert sizes(load("env=fetch_push", "scale=single")) == (2, 256, 1_000_000)
    assert sizes(load("env=fetch_slide", "scale=workers8")) == (16, 2048, 8_000_000)
    assert sizes(load("alg=td3_her", "scale=workers2")) == (4, 512, 2_000_000)
    assert sizes(load("scale=workers19")) == sizes(load("scale=paper")) == (38, 4864, 19_000_000)
    assert sizes(load("scale=workers8", "ddpg.buffer_size=1000000")) == (16, 2048, 1_000_000)
    with pytest.raises(ConfigError, match="alg=ppo has no scale presets"):
        load("alg=ppo", "scale=workers2")
    for bad in ("workers0", "workers08", "workers", "workers257", "huge"):
        with pytest.raises(ConfigError, match=f"bad value '{bad}' for scale: valid: fast, single, paper, workers1"):
            load(f"scale={bad}")


def test_fast_is_the_default_and_takes_the_env_recipe():
    """``scale=fast`` (the default) applies the env's recipe for the device (the CPU here); overrides win; Reach,
    which has none, and PPO train with their own defaults; ``single`` is baselines' one worker."""
    from herjax import config as config_lib
    from herjax import envs
    from herjax.envs.registry import EnvError

    load = lambda *args: config_lib.load([*args, "run_dir=r"])
    assert config_lib.device_kind() == "cpu"
    for alg in ("ddpg_her", "td3_her"):
        push = load("env=fetch_push", f"alg={alg}")
        assert push.scale == "fast" and (push.num_envs, push.n_cycles, push.n_test_episodes) == (16, 25, 100)
        assert (push.section.batch_size, tuple(push.section.hidden), push.section.n_step) == (1024, (128,) * 3, 3)
        assert push.replay.prioritized
    assert load("env=fetch_push", "ddpg.n_step=1", "num_envs=8").ddpg.n_step == 1
    single = load("env=fetch_push", "scale=single")
    assert (single.num_envs, single.ddpg.batch_size, single.ddpg.hidden, single.ddpg.n_step) == (2, 256, (256,) * 3, 1)
    assert not single.replay.prioritized and not load("env=fetch_push", "replay.prioritized=false").replay.prioritized
    assert load("env=fetch_reach") == dataclasses.replace(load("env=fetch_reach", "scale=single"), scale="fast")
    assert load("env=fetch_push", "alg=ppo").num_envs == load("env=fetch_push", "alg=ppo", "scale=single").num_envs
    with pytest.raises(EnvError, match="unknown device kind 'gpu'; valid: cpu, accelerator"):
        envs.EnvSpec(make=lambda backend="auto": None, episode_length=5, recipes={"gpu": {}})


def test_resume_skips_an_unfinished_and_a_corrupt_checkpoint(small_reference, tmp_path):
    """A kill during a save leaves a temporary folder, which is never a step; a damaged newest step is skipped
    with a warning and the run goes on from the one before it, with the same rows in the end."""
    run_dir = str(tmp_path / "run")
    shutil.copytree(small_reference.run_dir, run_dir)
    partial = os.path.join(run_dir, "checkpoints", "latest", f"{SMALL_EPOCHS + 1}.orbax-checkpoint-tmp-1234567")
    os.makedirs(os.path.join(partial, "state"))
    with open(os.path.join(partial, "state", "manifest.ocdbt"), "wb") as f:
        f.write(b"\0" * 10)
    assert ckpt_lib.steps(run_dir, "latest") == [SMALL_EPOCHS - 1, SMALL_EPOCHS]
    # Success stays 0 in this tiny run, so best (ties: the latest) is the last epoch too: damage both.
    assert ckpt_lib.steps(run_dir, "best") == [SMALL_EPOCHS]
    _corrupt_steps(run_dir, "latest", [SMALL_EPOCHS])
    _corrupt_steps(run_dir, "best", [SMALL_EPOCHS])
    warnings = []
    _, meta, where = ckpt_lib.restore(run_dir, ckpt_lib.abstract_state(small_reference.trainer),
                                      warn=warnings.append)
    assert where == f"latest/{SMALL_EPOCHS - 1}" and meta["epoch"] == SMALL_EPOCHS - 1
    assert len(warnings) == 2 and f"latest/{SMALL_EPOCHS}" in warnings[0] and f"best/{SMALL_EPOCHS}" in warnings[1]

    lines = []
    result = train([], resume=run_dir, log=lines.append, trainer=small_reference.trainer)
    assert result.resumed_from == f"latest/{SMALL_EPOCHS - 1}"
    assert any("unreadable" in line for line in lines)
    assert progress_rows(run_dir) == progress_rows(small_reference.run_dir)
    assert ckpt_lib.steps(run_dir, "latest") == [SMALL_EPOCHS - 1, SMALL_EPOCHS]
    assert ckpt_lib.steps(run_dir, "best") == [SMALL_EPOCHS]
    assert not os.path.exists(partial)  # removed when the run was opened again
    _, meta, where = ckpt_lib.restore(run_dir, ckpt_lib.abstract_state(small_reference.trainer))
    assert where == f"latest/{SMALL_EPOCHS}"


def test_checksums_catch_a_flipped_bit(small_reference, tmp_path):
    """Damage that keeps every file's size (a flipped bit) is caught by the recorded CRC-32, before orbax."""
    run_dir = str(tmp_path / "run")
    shutil.copytree(small_reference.run_dir, run_dir)
    step_dir = os.path.join(run_dir, "checkpoints", "latest", str(SMALL_EPOCHS))
    ckpt_lib.verify(step_dir)
    data = [os.path.join(root, n) for root, _, files in os.walk(step_dir) for n in files
            if os.path.basename(root) == "d"]
    with open(data[0], "r+b") as f:
        f.seek(os.path.getsize(data[0]) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(ckpt_lib.CheckpointError, match="CRC-32"):
        ckpt_lib.verify(step_dir)
    warnings = []
    _, _, where = ckpt_lib.restore(run_dir, ckpt_lib.abstract_state(small_reference.trainer), kinds=("latest",),
                                   warn=warnings.append)
    assert where == f"latest/{SMALL_EPOCHS - 1}" and "CRC-32" in warnings[0]


def test_sigint_saves_latest_and_resume_finishes_the_run(small_reference, tmp_path):
    """Ctrl-C after the first epoch: the run ends cleanly (status 130) with a readable latest checkpoint and the
    resume command; its rows so far equal the uninterrupted run's (another process), and so do all of them once
    resumed."""
    # A relative run_dir, as the default one is.
    proc = cli("herjax.train", *SMALL, f"total_env_steps={SMALL_STEPS}", "run_dir=run", cwd=str(tmp_path),
               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.startswith("epoch   1/"):
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=120)
    out = "".join(out) + rest
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    assert "Resume with: python -m herjax.train resume=run\n" in out
    run_dir = str(tmp_path / "run")
    rows = progress_rows(run_dir)
    assert 1 <= len(rows) < SMALL_EPOCHS, "the signal came too late to test anything"
    assert rows == progress_rows(small_reference.run_dir)[: len(rows)]
    _, meta, where = ckpt_lib.restore(run_dir, ckpt_lib.abstract_state(small_reference.trainer), kinds=("latest",))
    assert where == f"latest/{len(rows)}" and meta["epoch"] == len(rows)

    lines = []
    result = train([], resume=run_dir, log=lines.append, trainer=small_reference.trainer)
    assert result.exit_code == 0 and len(result.history) == SMALL_EPOCHS
    assert f"resuming {run_dir} from checkpoint latest/{len(rows)}" in lines[0]
    assert progress_rows(run_dir) == progress_rows(small_reference.run_dir)


def test_sigterm_stops_after_the_epoch_with_status_143(small_reference, tmp_path):
    run_dir = str(tmp_path / "run")

    def send_sigterm_once(row):
        if row["epoch"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return False

    lines = []
    previous = signal.getsignal(signal.SIGTERM)
    result = train(SMALL + [f"total_env_steps={SMALL_STEPS}", f"run_dir={run_dir}", "save_every=10"],
                   log=lines.append, should_stop=send_sigterm_once, trainer=small_reference.trainer)
    assert signal.getsignal(signal.SIGTERM) is previous
    assert result.stopped_by == "SIGTERM" and result.exit_code == 143
    assert len(result.history) == 3  # the signal arrived during epoch 2's bookkeeping: epoch 3 is the last
    assert ckpt_lib.steps(run_dir, "latest") == [3]  # saved on the signal although save_every=10
    assert any(f"resume={run_dir}" in line for line in lines)


# --- play, plot, export ------------------------------------------------------------------------------------------


def test_play_writes_a_video_of_the_policy(reach_run, tmp_path):
    import imageio.v3 as iio

    video = str(tmp_path / "reach.mp4")
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "DISPLAY", "PYOPENGL_PLATFORM")}
    proc = cli("herjax.play", f"run={reach_run.run_dir}", "episodes=2", f"video={video}", "width=192", "height=144",
               env=env)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (out, err)
    assert "success rate" in out and f"wrote {video}" in out
    frames = iio.imread(video)
    assert frames.shape == (2 * 51, 144, 192, 3)  # two episodes: the reset and 50 steps each
    assert frames.std() > 10  # not a blank image
    moved = [np.abs(frames[t].astype(int) - frames[0].astype(int)).mean() for t in (5, 10, 25)]
    assert min(moved) > 0.2, moved  # the arm moves


def test_play_renders_in_a_process_that_imported_mujoco_first(reach_run):
    """As in a notebook that trained first: mujoco chose its GL backend before herjax.play was imported."""
    from herjax import play as play_lib

    result = play_lib.play(reach_run.run_dir, episodes=1, render=True, width=64, height=48, log=None)
    assert result.checkpoint.startswith("best/") and result.frames.shape == (51, 48, 64, 3)
    assert result.frames.std() > 10 and np.abs(result.frames[25].astype(int) - result.frames[0]).mean() > 0.2


def test_plot_writes_a_png(reach_run, small_reference, tmp_path):
    out = str(tmp_path / "curves.png")
    assert plot_lib.main([reach_run.run_dir, small_reference.run_dir, "--out", out]) == 0
    with open(out, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert image.shape[0] > 300 and image.shape[1] > 600 and image.std() > 0.01
    # One run: the PNG goes into the run directory.
    assert plot_lib.main([small_reference.run_dir]) == 0
    assert os.path.isfile(os.path.join(small_reference.run_dir, "success.png"))


def test_plot_groups_runs_by_config_without_seed():
    def run(seed, run_dir, **changes):
        config = {"env": "fetch_reach", "alg": "ddpg_her", "seed": seed, "run_dir": run_dir,
                  "total_env_steps": 1000, "ddpg.replay_k": 4, **changes}
        steps = np.array([100.0, 200.0, 300.0])
        return plot_lib.Run(run_dir, config, {"env_steps": steps, "wall_s": steps / 10,
                                              "test/success_rate": np.array([0.0, 0.5, 1.0]) * (seed + 1) / 3})

    runs = [run(0, "a"), run(1, "b", total_env_steps=5000), run(2, "c"), run(0, "d", **{"ddpg.replay_k": 8})]
    groups = list(plot_lib.group_runs(runs).values())
    assert [[r.run_dir for r in g] for g in groups] == [["a", "b", "c"], ["d"]]
    med, lo, hi = plot_lib.median_iqr(groups[0], "env_steps", "test/success_rate", np.array([50.0, 200.0, 300.0]))
    assert np.isnan(med[0])
    np.testing.assert_allclose(med[1:], [1 / 3, 2 / 3])
    np.testing.assert_allclose(hi[1:] - lo[1:], [0.5 * 1 / 3, 1 / 3])
    assert plot_lib._labels(list(plot_lib.group_runs(runs))) == ["fetch_reach ddpg_her ddpg.replay_k=4",
                                                                "fetch_reach ddpg_her ddpg.replay_k=8"]


def test_exported_policy_succeeds_in_the_original_env(reach_run):
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import reference

    policy = policy_lib.load(reach_run.run_dir)
    assert policy.checkpoint.startswith("best/")
    obs = {"observation": np.zeros((3, 10)), "desired_goal": np.zeros((3, 3)), "achieved_goal": np.zeros((3, 3))}
    assert policy(obs).shape == (3, 4) and policy(obs).dtype == np.float32
    single = {k: v[0] for k, v in obs.items()}
    np.testing.assert_allclose(policy(single), policy(obs)[0], rtol=1e-5, atol=1e-6)
    out = reference.rollout_original("reach", policy, n_episodes=50, seed=1000)  # FetchReach-v4, 50 steps each
    assert out["is_success"].mean() >= 0.9, out["is_success"]


def test_compile_cache_is_on_by_default_in_its_own_folder_and_can_be_turned_off(tmp_path):
    """A run keeps JAX's compiled programs in HERJAX_CACHE_DIR (the C engine's epoch, with its host callback, is
    not cacheable by JAX; smaller programs are); ``compile_cache=false`` writes nothing there; and it is a
    run-control key, so a resume may change it."""
    from herjax import config as config_lib
    from herjax.train import compile_cache_dir

    args = [sys.executable, "-m", "herjax.train", "n_cycles=1", "ddpg.n_batches=1", "ddpg.batch_size=32",
            "ddpg.hidden=[16]", "ddpg.buffer_size=5000", "n_test_episodes=2", "total_env_steps=100"]
    for flag, cache in (("compile_cache=true", tmp_path / "on"), ("compile_cache=false", tmp_path / "off")):
        # JAX writes only programs that took >= 1 s to compile by default; 0 makes the check independent of speed.
        env = dict(os.environ, HERJAX_CACHE_DIR=str(cache), JAX_ENABLE_COMPILATION_CACHE="true",
                   JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0")
        proc = subprocess.run([*args, flag, f"run_dir={tmp_path / flag}"], env=env, capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert os.listdir(tmp_path / "on") and not (tmp_path / "off").exists()
    assert "compile_cache" in config_lib.RUN_CONTROL_KEYS
    assert compile_cache_dir() == os.path.abspath(os.environ["HERJAX_CACHE_DIR"])
