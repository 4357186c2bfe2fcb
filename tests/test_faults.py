"""Faults that must lose nothing: one writer per run directory, and run directories that cannot be used get one
line and exit code 2, before anything is built."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

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
