"""Faults that must lose nothing (issue 13): one writer per run directory; run directories, progress files and video
paths that cannot be used get one line and exit code 2, before anything is built; a diverged epoch is never
saved; NaN physics never reaches the buffer, the normaliser or an update; a full disk keeps the earlier
checkpoints; a checkpoint that does not fit its config is one line; and (slow) kill -9 at 20 random moments with
resumes equals an uninterrupted run bit for bit."""

import os
import signal
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from benchmarks.faults import can_mount_tmpfs, fill_disk, kills
from herjax.runs.lock import LOCK_NAME, RunDirError, RunLock

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = ("import sys, time; from herjax.runs.lock import RunLock; RunLock(sys.argv[1]).__enter__(); "
        "print('locked', flush=True); time.sleep(120)")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "herjax.train", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


def one_line_error(proc):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_a_second_run_on_a_locked_directory_is_refused_and_a_killed_holder_is_taken_over(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        line = one_line_error(run_cli(f"run_dir={run_dir}", "total_env_steps=100"))
        assert "in use by process" in line and str(holder.pid) in line and str(run_dir) in line
        # The same in-process: a second lock on the directory fails while the first is held.
        with pytest.raises(RunDirError, match=str(holder.pid)):
            RunLock(str(run_dir)).__enter__()
    finally:
        holder.send_signal(signal.SIGKILL)  # kill -9: no cleanup, its record stays in the lock file
        holder.wait()
    assert str(holder.pid) in (run_dir / LOCK_NAME).read_text()
    with RunLock(str(run_dir)) as lock:
        assert lock.stale is not None and lock.stale["pid"] == holder.pid
        assert f'"pid": {os.getpid()}' in (run_dir / LOCK_NAME).read_text()
    # Released cleanly: the next taker finds no stale holder.
    with RunLock(str(run_dir)) as lock:
        assert lock.stale is None


@pytest.mark.parametrize("bad", ["/proc/herjax-run", "a-file"])
def test_a_run_directory_that_cannot_be_made_gets_one_line(bad, tmp_path):
    if bad == "a-file":
        bad = str(tmp_path / "a-file")
        with open(bad, "w") as f:
            f.write("not a directory")
    line = one_line_error(run_cli(f"run_dir={bad}", "total_env_steps=100"))
    assert "run_dir" in line and bad in line


@pytest.mark.parametrize("content", ["epoch,env_steps,test/success_rate\n1,abc,0.5\n", "\x00\xff\xfe garbage",
                                     "epoch,env_steps\n1,2,3,4\n"])
def test_plot_of_a_garbled_progress_csv_gets_one_line(content, tmp_path, capsys):
    from herjax import config as config_lib
    from herjax import plot as plot_lib

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(config_lib.to_yaml(config_lib.load([f"run_dir={run_dir}"])))
    (run_dir / "progress.csv").write_bytes(content.encode("latin-1"))
    assert plot_lib.main([str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "progress.csv" in err and "Traceback" not in err


@pytest.mark.parametrize("video", ["/proc/herjax/x.mp4", "/dev/null/x.gif"])
def test_play_to_an_unwritable_video_path_gets_one_line_before_any_work(video, tmp_path, capsys, monkeypatch):
    from herjax import play as play_lib
    from herjax.runs import checkpoint as ckpt_lib

    def forbidden(*args, **kwargs):
        raise AssertionError("loaded a run for an unwritable video path")

    monkeypatch.setattr(ckpt_lib, "load_run", forbidden)
    assert play_lib.main([f"run={tmp_path}", f"video={video}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and video in err and "cannot write there" in err and "Traceback" not in err


def test_a_diverged_epoch_stops_the_run_and_is_never_saved(tmp_path, capsys, monkeypatch):
    """A non-finite parameter, however it arises (here injected into one critic weight after epoch 3), stops the
    run with one line; the checkpoints keep the last good epoch, and the run resumes from it."""
    import jax
    import jax.numpy as jnp

    from herjax import config, envs, loops
    from herjax import train as train_mod
    from herjax.runs import checkpoint as ckpt_lib

    run_dir = str(tmp_path / "run")
    args = ["n_cycles=1", "ddpg.n_batches=2", "ddpg.batch_size=32", "ddpg.hidden=[16]", "ddpg.buffer_size=5000",
            "n_test_episodes=2", "total_env_steps=500", f"run_dir={run_dir}"]
    cfg = config.load(args)
    trainer = loops.make_train(cfg, envs.make(cfg.env))
    epochs = []

    def diverging(state):
        state, metrics = trainer.run_epoch(state)
        epochs.append(int(state.epoch))
        if len(epochs) == 3:
            leaves, tree = jax.tree.flatten(state.agent.critic.online)
            leaves[0] = leaves[0].at[0].set(jnp.nan)
            state = state.replace(agent=state.agent.replace(critic=state.agent.critic._replace(
                online=jax.tree.unflatten(tree, leaves))))
        return state, metrics

    with pytest.raises(train_mod.NonFiniteError, match=r"^epoch 3 left non-finite .* last good checkpoint is "
                                                       r"latest/2"):
        train_mod.train(args, trainer=trainer._replace(run_epoch=diverging), log=None)
    assert ckpt_lib.steps(run_dir, "latest") == [1, 2] and max(ckpt_lib.steps(run_dir, "best")) <= 2
    resumed = train_mod.train([], resume=run_dir, log=None, trainer=trainer)
    assert resumed.resumed_from == "latest/2" and [r["epoch"] for r in resumed.history] == [1, 2, 3, 4, 5]
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(resumed.state.agent))
    # The CLI: one line, exit status 1.
    monkeypatch.setattr(train_mod, "train", lambda *a, **k: (_ for _ in ()).throw(train_mod.NonFiniteError("x")))
    assert train_mod.main(["env=fetch_reach"]) == 1
    assert capsys.readouterr().err == "herjax.train: error: x\n"


def _all_finite(tree):
    import jax

    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree)
               if np.issubdtype(np.asarray(x).dtype, np.floating))


def test_nan_physics_in_one_env_of_the_batch_never_poisons_ddpg_and_reach_is_still_learned(tmp_path):
    """Each env turns faulty at a reset with probability 1/2 and then goes NaN every 10th step: about one env of
    the two. Those envs are reset at once (and may turn faulty again) and their episodes dropped; the buffer and
    normaliser stay finite, the resets are counted and shown, and FetchReach is learned to >= 0.9 all the same."""
    from herjax import config, envs, loops
    from herjax.envs.faults import NanEvery
    from herjax.train import reached, train

    args = ["env=fetch_reach", "seed=0", "total_env_steps=10000", "stop_success=0.9", f"run_dir={tmp_path / 'run'}"]
    cfg = config.load(args)
    trainer = loops.make_train(cfg, NanEvery(envs.make(cfg.env), every=10, fraction=0.5))
    lines = []
    result = train(args, trainer=trainer, log=lines.append)
    resets = [row["train/env_resets_nonfinite"] for row in result.history]
    assert reached(result.history[-1]["test/success_rate"], 0.9), result.history
    # Of an epoch's 2 * 10 episodes, about half start faulty and are reset at step 10, half of those again at 20...
    # (expected 19.4 resets); at least one reset drops each broken episode.
    assert all(5 <= n <= 45 for n in resets), resets
    assert any(f"non-finite env resets {int(resets[0])}" in line for line in lines), lines
    buffer = result.state.buffer
    size = int(buffer.size[0])
    episodes = result.history[-1]["env_steps"] // 50
    assert episodes - sum(resets) <= size < episodes and size <= buffer.episodes.obs.shape[1]
    assert _all_finite(buffer.episodes) and _all_finite(result.state.agent)


def test_nan_physics_in_auto_resetting_envs_ends_the_episode_at_its_last_finite_step():
    """PPO's auto-resetting envs: a broken step is recorded as a truncation at the last finite observation, the env
    restarts, and nothing recorded is non-finite."""
    import jax
    import jax.numpy as jnp

    from herjax import envs, rollout
    from herjax.envs.faults import NanEvery
    from herjax.types import PolicyStep

    env = NanEvery(envs.make("fetch_reach"), every=7, fraction=1.0)
    venv = envs.vec(env, 3)
    def policy(obs, goal, key):
        action = jax.random.uniform(key, (3, 4), minval=-1, maxval=1)
        return PolicyStep(action=action, raw_action=action, log_prob=jnp.zeros(3))

    state, record = jax.jit(lambda k: rollout.unroll(venv, policy, venv.reset(k), jax.random.key(1), 30))(
        jax.random.key(0))
    broken = np.asarray(record.nonfinite, bool)
    # Every env is faulty: NaN at steps 7, 14, 21, 28 of each (the counter restarts with each reset).
    assert broken.sum(axis=0).tolist() == [4, 4, 4] and broken[6].all() and broken[13].all()
    assert np.asarray(record.truncated)[broken].all()
    np.testing.assert_array_equal(np.asarray(record.next_obs)[broken], np.asarray(record.obs)[broken])
    assert _all_finite(record) and _all_finite(state.env)
    assert int(jnp.max(state.t)) < 7



def test_a_state_that_c_mujocos_own_guard_resets_is_reset_and_counted_like_a_nan_one():
    """C MuJoCo resets a blown-up ``mjData`` to ``qpos0`` inside its step and goes on, which hands back a finite
    state. The C engine hands it back as NaN instead, so the rollouts reset it to a fresh Fetch reset and count it,
    as on MJX; the other envs of the batch step as before."""
    import jax
    import jax.numpy as jnp

    from herjax import envs

    venv = envs.vec(envs.make("fetch_reach", backend="mujoco"), 3)
    state = venv.reset(jax.random.key(0))
    huge = state.env.physics.qvel.at[1, 0].set(1e12)  # past MuJoCo's mjMAXVAL: mj_step warns and resets env 1
    blown = state.replace(env=state.env.replace(physics=state.env.physics._replace(qvel=huge)))
    action = jnp.zeros((3, 4))
    step = jax.jit(venv.step)
    after, clean = step(blown, action), step(state, action)
    assert np.asarray(after.nonfinite).tolist() == [False, True, False]
    assert np.asarray(after.truncated).tolist() == [False, True, False] and int(after.t[1]) == 0
    assert _all_finite(after.env) and not np.asarray(clean.nonfinite).any()
    for k in (0, 2):  # the others are untouched by their neighbour's fault
        np.testing.assert_array_equal(np.asarray(after.env.obs["observation"][k]),
                                      np.asarray(clean.env.obs["observation"][k]))


SMALL_DDPG = ["n_cycles=2", "ddpg.n_batches=2", "ddpg.batch_size=32", "ddpg.hidden=[16]", "ddpg.buffer_size=5000",
              "n_test_episodes=2", "save_every=1"]


@pytest.mark.skipif(not can_mount_tmpfs(os.path.join(tempfile.gettempdir(), "herjax-probe")), reason="no unprivileged tmpfs here (user namespaces off); the injected "
                                                  "failure below covers the same path")
@pytest.mark.parametrize("size_kb", [182, 450])
def test_a_real_full_disk_stops_with_one_line_and_the_run_resumes_from_what_was_saved(tmp_path, size_kb):
    """A 450 KB tmpfs holds the first checkpoints of a small run (about 190 KB each), then fills up mid-save. A
    182 KB one fills up in the first save of ``latest``, after ``best/1``: orbax abandons the save's other writes,
    whose errors and never-awaited coroutines reach stderr at exit unless herjax drops them (it did not, before
    ``benchmarks/faults.py``'s full disks found it)."""
    mount, copy = tmp_path / "disk", tmp_path / "copy"
    mount.mkdir()
    proc = fill_disk([*SMALL_DDPG, "total_env_steps=3000"], size_kb, str(mount), str(copy))
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "no space left on the device" in lines[0] and "it needs about" in lines[0] and "free" in lines[0]
    # Nothing half-written is left, and the newest finished checkpoint reads back: the run goes on from it.
    assert not list(copy.glob("checkpoints/*/*tmp*"))
    from herjax.runs import checkpoint as ckpt_lib
    from herjax.train import train as train_fn

    newest = ckpt_lib.candidates(str(copy))[0]
    assert f"{newest[0]}/{newest[1]}" in lines[0]
    result = train_fn(["total_env_steps=800"], resume=str(copy), log=None)
    assert result.resumed_from.endswith(f"/{newest[1]}")
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]


def test_a_disk_filling_up_mid_save_keeps_the_earlier_checkpoints_and_says_what_was_needed(tmp_path, monkeypatch):
    """The writer fails mid-save (after orbax renamed the step into place, before its checksums are written) with
    ENOSPC at epoch 3: one line, the unfinished step removed, every earlier step readable and resumed from."""
    import errno

    from herjax.runs import checkpoint as ckpt_lib
    from herjax import train as train_mod

    write_checksums = ckpt_lib._write_checksums

    def failing(step_dir):
        if step_dir.endswith(os.path.join("latest", "3")):
            raise OSError(errno.ENOSPC, "No space left on device")
        write_checksums(step_dir)

    monkeypatch.setattr(ckpt_lib, "_write_checksums", failing)
    run_dir = str(tmp_path / "run")
    with pytest.raises(ckpt_lib.DiskFullError) as raised:
        train_mod.train([*SMALL_DDPG, "total_env_steps=1000", f"run_dir={run_dir}"], log=None)
    message = str(raised.value)
    assert "\n" not in message and "checkpoint latest/3" in message and "it needs about" in message
    assert f"resume={run_dir}" in message
    assert ckpt_lib.steps(run_dir, "latest") == [2]  # latest/3 removed (orbax had already let latest/1 go)
    monkeypatch.setattr(ckpt_lib, "_write_checksums", write_checksums)
    result = train_mod.train([], resume=run_dir, log=None)
    assert result.resumed_from in ("latest/2", "best/3") and [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]


def test_an_unfinished_save_is_removed_even_while_late_writes_recreate_its_folder(tmp_path):
    """A save that fails on a full disk raises while tensorstore's other writes are still in flight; they recreate
    the folder being removed (CI's real full disk once left ``best/3.orbax-checkpoint-tmp`` so). A writer that keeps
    adding files for 0.3 s after the removal starts: the folder is gone once the removal returns."""
    import threading
    import time

    from herjax.runs import checkpoint as ckpt_lib

    folder = tmp_path / "3.orbax-checkpoint-tmp"
    (folder / "state").mkdir(parents=True)
    done = threading.Event()

    def late_writes():
        end, n = time.monotonic() + 0.3, 0
        while time.monotonic() < end:
            (folder / "state" / "d").mkdir(parents=True, exist_ok=True)
            (folder / "state" / "d" / f"{n}").write_bytes(b"x" * 100)
            n += 1
            time.sleep(0.01)
        done.set()

    writer = threading.Thread(target=late_writes)
    writer.start()
    ckpt_lib._remove_until_gone(str(folder))
    assert done.is_set() and not folder.exists()
    writer.join()


def test_a_disk_filling_up_while_writing_the_progress_row_stops_with_one_line_and_resumes(tmp_path, monkeypatch):
    """The disk fills up in TensorBoard's flush of epoch 3's row (where CI's real full disk once struck), and stays
    full at close: one line naming the row, the space and the checkpoints kept; the run resumes from them."""
    import errno

    from herjax import train as train_mod
    from herjax.runs import checkpoint as ckpt_lib
    from herjax.runs import logs

    class FillingWriter:
        def __init__(self):
            self.flushes = 0

        def add_scalar(self, *args):
            pass

        def flush(self):
            self.flushes += 1
            if self.flushes >= 3:
                raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.flush()

    monkeypatch.setattr(logs, "tensorboard", lambda *args, **kwargs: FillingWriter())
    run_dir = str(tmp_path / "run")
    with pytest.raises(ckpt_lib.DiskFullError) as raised:
        train_mod.train([*SMALL_DDPG, "total_env_steps=1000", f"run_dir={run_dir}"], log=None)
    message = str(raised.value)
    assert "\n" not in message and "progress.csv while writing the row of epoch 3" in message
    assert "it needs about" in message and "is free" in message and f"resume={run_dir}" in message
    newest = ckpt_lib.candidates(run_dir)[0]
    assert newest[1] == 2 and f"{newest[0]}/{newest[1]}" in message  # epoch 3 was never saved
    monkeypatch.undo()
    result = train_mod.train([], resume=run_dir, log=None)
    assert result.resumed_from.endswith("/2") and [r["epoch"] for r in result.history] == [1, 2, 3, 4, 5]
    with open(os.path.join(run_dir, "progress.csv")) as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["1", "2", "3", "4", "5"]


def test_a_checkpoint_that_does_not_fit_the_config_gets_one_line_naming_the_difference(tmp_path):
    """An edited config.yaml (here a smaller critic) no longer builds the saved state: resume and play say so in one
    line with exit code 2, instead of reporting every checkpoint as unreadable."""
    from herjax.train import train

    run_dir = tmp_path / "run"
    train([*SMALL_DDPG, "total_env_steps=200", f"run_dir={run_dir}"], log=None)
    config_yaml = run_dir / "config.yaml"
    text = config_yaml.read_text()
    ddpg = text.index("ddpg:")
    config_yaml.write_text(text[:ddpg] + text[ddpg:].replace("  hidden:\n  - 16\n", "  hidden:\n  - 8\n", 1))
    line = one_line_error(run_cli(f"resume={run_dir}", "total_env_steps=400"))
    assert "does not fit" in line and "float32[16" in line and "float32[8" in line, line
    proc = subprocess.run([sys.executable, "-m", "herjax.play", f"run={run_dir}", "episodes=1"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not fit" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.slow
def test_kill_9_at_20_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    """``kill -9`` at 20 random moments (start-up, compilation, epochs, saves), each followed by ``resume=``: the
    run ends with a contiguous progress.csv and a final state bit-identical to an uninterrupted run's (CPU).
    ``benchmarks/faults.py`` runs the same and records the counts."""
    result = kills(20, seed=0, workdir=str(tmp_path), log=lambda line: None)
    assert result["progress_contiguous"] and result["progress_bit_identical"], result
    assert result["final_state_bit_identical"] and result["kills_survived"] == 20, result
