"""Grids (``python -m herjax.train -m ...``, ``herjax.runs.grid``): a 2x2 grid through Hydra's basic launcher, named
run directories and the plot's groups; a 1x2 grid through submitit's local executor (the Slurm launcher's code
path); and bad input anywhere in a grid: one line, exit 2, nothing created."""

import csv
import os
import subprocess
import sys

import pytest

from herjax import plot as plot_lib
from herjax.config import ConfigError
from herjax.runs import grid as grid_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# FetchReach, 2 epochs of 2 cycles x 2 envs x 50 steps, a small network and batch: the compile dominates.
TINY = ["env=fetch_reach", "total_env_steps=400", "n_cycles=2", "n_test_episodes=2", "ddpg.n_batches=2",
        "ddpg.batch_size=32", "ddpg.hidden=[16]"]


def run_cli(*args, cwd=REPO, timeout=300):
    return subprocess.run([sys.executable, "-m", "herjax.train", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)


def _rows(run_dir):
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def grid_2x2(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("grid") / "replay_k")
    proc = run_cli("-m", "ddpg.replay_k=0,4", "seed=0,1", *TINY, f"run_dir={root}")
    return root, proc


def test_grid_runs_every_job_in_a_directory_named_by_the_swept_keys(grid_2x2):
    root, proc = grid_2x2
    assert proc.returncode == 0, proc.stderr[-3000:]
    names = ["ddpg.replay_k=0,seed=0", "ddpg.replay_k=0,seed=1", "ddpg.replay_k=4,seed=0", "ddpg.replay_k=4,seed=1"]
    # Hydra's multirun.yaml records the grid; no .hydra/ or Hydra log files beside herjax's own.
    assert sorted(os.listdir(root)) == sorted(names + ["multirun.yaml"])
    for name in names:
        run_dir = os.path.join(root, name)
        assert {"config.yaml", "progress.csv", "checkpoints"} <= set(os.listdir(run_dir)), os.listdir(run_dir)
        assert not [f for f in os.listdir(run_dir) if f.startswith(".hydra") or f.endswith(".log")]
        config = plot_lib.read_run(run_dir).config
        replay_k, seed = (int(part.split("=")[1]) for part in name.split(","))
        assert (config["ddpg.replay_k"], config["seed"], config["ddpg.hidden"]) == (replay_k, seed, [16])
        assert config["run_dir"] == run_dir
        assert [int(r["env_steps"]) for r in _rows(run_dir)] == [200, 400]
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("herjax.train: grid of 4 jobs over ddpg.replay_k (2) x seed (2) in "), lines[0]
    assert lines[-1].startswith(f"herjax.train: grid done: 4 jobs in {root}, 4 finished, 0 failed"), lines[-1]
    assert sum(line.startswith("herjax.train: grid job ") for line in lines) == 4
    assert "Traceback" not in proc.stderr


def test_plot_of_a_grid_draws_one_curve_per_swept_value(grid_2x2, tmp_path):
    root, proc = grid_2x2
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [plot_lib.read_run(d) for d in plot_lib.find_runs([root])]
    groups = plot_lib.group_runs(runs)
    assert [len(members) for members in groups.values()] == [2, 2]  # the seeds of each ddpg.replay_k
    assert plot_lib._labels(list(groups)) == ["fetch_reach ddpg_her ddpg.replay_k=0",
                                              "fetch_reach ddpg_her ddpg.replay_k=4"]
    out = str(tmp_path / "grid.png")
    assert plot_lib.main([root, "--out", out]) == 0
    assert os.path.getsize(out) > 0


def test_a_second_run_of_the_grid_resumes_its_runs(grid_2x2):
    """The grid again on the same root (a part of it: the same swept keys name the same directories): every run
    already has its epochs, so nothing is trained twice."""
    root, proc = grid_2x2
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = run_cli("-m", "ddpg.replay_k=choice(0)", "seed=0,1", *TINY, f"run_dir={root}")
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("nothing to do") == 2, again.stdout
    assert [int(r["env_steps"]) for r in _rows(os.path.join(root, "ddpg.replay_k=0,seed=1"))] == [200, 400]


def test_submitit_local_launcher_runs_a_grid(tmp_path):
    """The Slurm launcher's code path (hydra-submitit-launcher, the task function pickled into other processes),
    through submitit's local executor."""
    root = str(tmp_path / "submitit")
    proc = run_cli("-m", "seed=0,1", *TINY, "total_env_steps=200", f"run_dir={root}",
                   "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1].startswith(
        f"herjax.train: grid done: 2 jobs in {root}, 2 finished, 0 failed"), proc.stdout
    for seed in (0, 1):
        run_dir = os.path.join(root, f"seed={seed}")
        assert [int(r["env_steps"]) for r in _rows(run_dir)] == [200]
        assert os.listdir(os.path.join(run_dir, "checkpoints"))
    assert os.path.isdir(os.path.join(root, ".submitit"))  # the jobs' logs


BAD_GRIDS = [
    (["ddpg.replay_kk=0,4"], ["unknown key 'ddpg.replay_kk'", "did you mean 'ddpg.replay_k'"]),
    (["ddpg.replay_k=4,-1"], ["bad value -1 for ddpg.replay_k", "grid job 2 of 2"]),
    (["alg=ddpg_her,ppo", "ddpg.replay_k=4"], ["'ddpg.replay_k' belongs to alg=ddpg_her", "alg=ppo",
                                               "grid job 2 of 2"]),
    (["seed=0,"], ["bad sweep 'seed=0,'", "range("]),
    (["hydra/launcher=no_such_launcher", "seed=0,1"], ["hydra/launcher", "no_such_launcher", "submitit_slurm"]),
]


@pytest.mark.parametrize("args, words", BAD_GRIDS, ids=["key", "value", "alg", "sweep", "launcher"])
def test_bad_input_anywhere_in_a_grid_is_one_line_and_creates_nothing(args, words, tmp_path):
    proc = run_cli("-m", *args, *TINY, cwd=tmp_path, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("herjax.train: error: "), proc.stderr
    assert proc.stdout == ""
    for word in words:
        assert word in lines[0], lines[0]
    assert os.listdir(tmp_path) == []  # no runs/grid/<timestamp>, no run directory


@pytest.mark.parametrize("args, words", [
    (["seed=interval(0,1)"], ["bad sweep", "INTERVAL_SWEEP"]),
    (["run_dir=a,b"], ["run_dir", "root"]),
    (["run_dir=a", "hydra.sweep.dir=b"], ["give one"]),
    (["resume=runs/x"], ["resume="]),
    (["seed"], ["key=value"]),
    (["hydra.job.chdir=true,false"], ["cannot be swept"]),
    (["distributed=true", "num_processes=2", "process_id=0,1", "coordinator_address=localhost:1", "num_devices=2"],
     ["bad sweep over process_id", "one value in a grid"]),
])
def test_malformed_grids_are_one_line(args, words):
    with pytest.raises(ConfigError) as err:
        grid_lib.plan(args)
    assert "\n" not in str(err.value)
    for word in words:
        assert word in str(err.value)


def test_grid_jobs_get_herjax_values_not_hydra_escapes():
    """Hydra escapes ':' and quotes in the strings it hands a job; the job's overrides are the values themselves."""
    grid = grid_lib.plan(["env=examples.point_room:point_room,fetch_reach", "+seed='1'", "total_env_steps=1e3"])
    assert grid.jobs == [["env=examples.point_room:point_room", "seed=1", "total_env_steps=1000.0"],
                         ["env=fetch_reach", "seed=1", "total_env_steps=1000.0"]]
    assert grid.varied == ["env"]
    assert grid_lib.herjax_args(["env=examples.point_room\\:point_room"]) == ["env=examples.point_room:point_room"]


def test_a_swept_path_names_one_directory_not_a_nest():
    """``demos=a/x.npz,b/x.npz`` must not put runs in ``demos=a/`` and ``demos=b/`` folders (nor two values in one)."""
    from omegaconf import OmegaConf

    subdir = grid_lib._primary_config()["hydra"]["sweep"]["subdir"]
    names = []
    for dirname in ("demos=runs/a/x.npz,seed=1", "demos=runs%2Fa/x.npz,seed=1", "seed=1"):
        cfg = OmegaConf.create({"hydra": {"job": {"override_dirname": dirname}, "sweep": {"subdir": subdir}}})
        names.append(cfg.hydra.sweep.subdir)
    assert names == ["demos=runs%2Fa%2Fx.npz,seed=1", "demos=runs%252Fa%2Fx.npz,seed=1", "seed=1"]


def test_summary_counts_jobs_and_a_stopped_grid_says_how_to_resume():
    grid = grid_lib.plan(["seed=0,1,2", "run_dir=runs/g"])
    done = grid_lib.JobResult(["seed=0"], "runs/g/seed=0", "finished", best_success=1.0)
    failed = grid_lib.JobResult(["seed=1"], "runs/g/seed=1", "failed", "epoch 1 left non-finite numbers")
    text, code = grid_lib.summary(grid, [done, failed, done])
    assert code == 1 and text.startswith("herjax.train: grid done: 3 jobs in runs/g, 2 finished, 1 failed. Plot: ")
    stopped = grid_lib.JobResult(["seed=1"], "runs/g/seed=1", "stopped", "SIGINT")
    skipped = grid_lib.JobResult(["seed=2"], "runs/g/seed=2", "skipped", "SIGINT")
    text, code = grid_lib.summary(grid, [done, stopped, skipped])
    assert code == 130 and "1 stopped by SIGINT, 1 not started" in text
    assert text.endswith("Resume with: python -m herjax.train -m seed=0,1,2 run_dir=runs/g")
