"""One run over several processes (``distributed=true``, ``herjax.runs.hosts``), on the CPU: two local processes of
one device each, joined by ``jax.distributed`` (gloo collectives), train exactly what one process trains on two
devices; only process 0 writes the run directory's files; both processes resume; bad keys are one line."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from herjax import train as train_mod
from runtools import TINY_DDPG, progress_rows

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["env=fetch_reach", *TINY_DDPG, "num_devices=2", "compile_cache=false"]
EPOCH_STEPS = 2 * 2 * 50  # n_cycles x num_envs x horizon

# Each of the two processes: a new run of two epochs, then a resume of it to three, reusing the compiled trainer
# (one compilation per process keeps this file fast). Process 1 records every file it writes, renames or deletes
# outside orbax (Python's audit hooks; orbax's array shards are written by tensorstore, below Python).
TWO_PROCESS_SCRIPT = r"""
import json, os, sys
process_id, port, args = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
root, writes = os.getcwd(), []

def audit(event, a):
    if event == "open":
        path, mode, flags = a
        writing = (any(c in mode for c in "wax+") if isinstance(mode, str)
                   else bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)))
        paths = [path] if writing else []
    elif event in ("os.rename", "os.remove", "os.rmdir", "os.mkdir", "shutil.rmtree", "os.truncate"):
        paths = [a[0]] + ([a[1]] if event == "os.rename" else [])
    else:
        return
    for path in paths:
        if isinstance(path, (str, bytes)) and os.path.abspath(os.fsdecode(path)).startswith(root + os.sep):
            writes.append(f"{event} {os.path.relpath(os.fsdecode(path), root)}")

if process_id == 1:
    sys.addaudithook(audit)
from herjax.train import train
keys = ["distributed=true", f"coordinator_address=localhost:{port}", "num_processes=2", f"process_id={process_id}"]
first = train(args + keys + ["total_env_steps=400"])  # no run_dir: process 0's timestamped one
second = train(keys + ["total_env_steps=600"], resume=first.run_dir, trainer=first.trainer)
timing = {"wall_s", "epoch_s", "steps_per_s"}
print("RESULT " + json.dumps({
    "run_dirs": [first.run_dir, second.run_dir], "resumed_from": second.resumed_from,
    "same_trainer": second.trainer is first.trainer,
    "history": [{k: v for k, v in row.items() if k not in timing} for row in second.history],
    "writes": writes, "exit_codes": [first.exit_code, second.exit_code],
}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def subprocess_env(devices: int) -> dict:
    """This environment, with ``devices`` forced CPU devices, a short timeout for a lost peer, and herjax importable
    from any working directory."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={devices}").strip()
    env["HERJAX_DISTRIBUTED_TIMEOUT_S"] = "60"  # a process whose peer died gives up in a minute, not five
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO, env.get("PYTHONPATH")) if p)
    return env


def run_two_processes(cwd: str, args: list) -> list[subprocess.CompletedProcess]:
    """``TWO_PROCESS_SCRIPT`` as processes 0 and 1 of one run (one CPU device each), in ``cwd``; both killed if
    either outlives the timeout."""
    port, env = free_port(), subprocess_env(1)
    procs = [subprocess.Popen([sys.executable, "-c", TWO_PROCESS_SCRIPT, str(i), str(port), json.dumps(args)], cwd=cwd,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (0, 1)]
    done, deadline = [], time.monotonic() + 400
    try:
        for proc in procs:
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    return done


def result_of(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])


def saved_state(step_dir: str) -> list:
    """Every array of a checkpoint step's ``state``, as numpy, with its path: read without a device layout, so that
    steps written by one process or by two compare directly."""
    import orbax.checkpoint as ocp

    from herjax.runs.checkpoint import _absl_level

    path = os.path.join(step_dir, "state")
    with _absl_level(logging.ERROR), ocp.PyTreeCheckpointer() as checkpointer:
        tree = checkpointer.metadata(path).item_metadata.tree
        restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        state = checkpointer.restore(path, args=ocp.args.PyTreeRestore(restore_args=restore_args))
    return [(jax.tree_util.keystr(p), x) for p, x in jax.tree_util.tree_flatten_with_path(state)[0]]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same three epochs of a small DDPG run: one process on two (forced) devices, straight through, from the
    command line; and two processes of one device each, two epochs then a resume to three."""
    one_dir = str(tmp_path_factory.mktemp("one") / "run")
    one = subprocess.run([sys.executable, "-m", "herjax.train", *SMALL, f"total_env_steps={3 * EPOCH_STEPS}",
                          f"run_dir={one_dir}"], cwd=REPO, env=subprocess_env(2), capture_output=True, text=True,
                         timeout=400)
    assert one.returncode == 0, one.stderr[-3000:]
    cwd = str(tmp_path_factory.mktemp("two"))
    procs = run_two_processes(cwd, SMALL)
    results = [result_of(p) for p in procs]
    return one_dir, os.path.join(cwd, results[0]["run_dirs"][0]), procs, results


def assert_same_step(one_dir: str, two_dir: str, step: str) -> None:
    """Checkpoint ``step`` (``latest/2``) of the two runs holds the same arrays, bit for bit."""
    one, two = (saved_state(os.path.join(d, "checkpoints", step)) for d in (one_dir, two_dir))
    assert [name for name, _ in two] == [name for name, _ in one]
    different = [name for (name, a), (_, b) in zip(one, two) if a.dtype != b.dtype or not np.array_equal(a, b)]
    assert not different, f"{step}: {different}"


def test_two_processes_train_exactly_what_one_process_on_two_devices_trains(runs):
    """Bit for bit: the mesh of two processes' devices is the mesh of one process's two, and each collective (gloo
    between processes, XLA's own within one) adds two values, which floats do alike in either order. So the first
    two epochs' progress.csv values and every array saved after them (networks, optimisers, normaliser, both
    devices' buffers, the key) agree exactly."""
    one_dir, two_dir, _, results = runs
    assert len(progress_rows(one_dir)) == 3
    assert progress_rows(two_dir)[:2] == progress_rows(one_dir)[:2]
    assert_same_step(one_dir, two_dir, "latest/2")
    # Every process computed the same rows (process 1's are never written).
    assert results[0]["history"] == results[1]["history"]


def test_both_processes_resume_and_go_on_as_if_uninterrupted(runs):
    """Both processes restore their shards of ``latest/2`` and train epoch 3 exactly as the uninterrupted run did."""
    one_dir, two_dir, _, results = runs
    for result in results:
        assert result["resumed_from"] == "latest/2" and result["same_trainer"] and result["exit_codes"] == [0, 0]
        assert [r["env_steps"] for r in result["history"]] == [EPOCH_STEPS, 2 * EPOCH_STEPS, 3 * EPOCH_STEPS]
    assert progress_rows(two_dir) == progress_rows(one_dir)
    assert_same_step(one_dir, two_dir, "latest/3")


def test_only_process_0_writes_the_run_directory(runs):
    one_dir, two_dir, procs, results = runs
    # Process 0 chose the timestamped run directory; process 1 took it.
    assert results[0]["run_dirs"] == results[1]["run_dirs"] and os.path.isdir(two_dir)
    assert results[0]["run_dirs"][0].startswith(os.path.join("runs", "fetch_reach", "ddpg_her", ""))
    # Process 1 wrote, renamed or deleted nothing in it but its part of each step inside orbax's temporary folder
    # (its array metadata; its shards are tensorstore's), and printed nothing.
    outside_orbax = [w for w in results[1]["writes"] if ".orbax-checkpoint-tmp" not in w]
    assert outside_orbax == [] and results[1]["writes"], results[1]["writes"]
    assert "herjax.train" not in procs[1].stdout and "herjax.train: resuming" in procs[0].stdout
    names = sorted(os.listdir(two_dir))
    assert [n for n in names if not n.startswith("events.out.tfevents")] == [".herjax.lock", "checkpoints",
                                                                            "config.yaml", "progress.csv"]
    assert len(names) == 6  # TensorBoard: one file per session of process 0 (the run, then its resume)
    steps = [os.path.join(two_dir, "checkpoints", kind, step)
             for kind in os.listdir(os.path.join(two_dir, "checkpoints"))
             for step in os.listdir(os.path.join(two_dir, "checkpoints", kind))]
    assert steps and all(os.path.isfile(os.path.join(step, "herjax_checksums.json")) for step in steps)
    # config.yaml records the run, not how it was launched: a resume names its own processes.
    with open(os.path.join(two_dir, "config.yaml")) as f:
        text = f.read()
    assert "distributed: false" in text and "process_id: null" in text and "num_devices: 2" in text


def test_a_distributed_grid_without_run_dir_shares_process_0s_root(tmp_path):
    """The same grid started on two processes, process 1 two seconds later (a later timestamp): both run both jobs in
    process 0's default root, and only process 0 prints the grid's lines. Before the processes joined ahead of the
    root, process 1 made a second, empty root and announced the grid there."""
    port, env = free_port(), subprocess_env(1)
    keys = ["distributed=true", f"coordinator_address=localhost:{port}", "num_processes=2"]
    procs = []
    for i in (0, 1):
        procs.append(subprocess.Popen([sys.executable, "-m", "herjax.train", "-m", "seed=0,1", *SMALL,
                                       "total_env_steps=200", *keys, f"process_id={i}"], cwd=tmp_path, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        time.sleep(2.0 if i == 0 else 0.0)
    try:
        outs = [proc.communicate(timeout=400) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    assert [proc.returncode for proc in procs] == [0, 0], [err[-3000:] for _, err in outs]
    roots = os.listdir(tmp_path / "runs" / "grid")
    assert len(roots) == 1, roots
    root = tmp_path / "runs" / "grid" / roots[0]
    for seed in (0, 1):
        assert [int(r["env_steps"]) for r in progress_rows(str(root / f"seed={seed}"))] == [200]
    assert "herjax.train: grid done: 2 jobs in" in outs[0][0] and "herjax.train" not in outs[1][0], outs[1][0]


BAD_DISTRIBUTED_ARGS = [
    (["distributed=true", "num_processes=2", "process_id=2"], ["process_id", "2", "num_processes=2"]),
    (["coordinator_address=localhost:1234"], ["coordinator_address", "distributed=true"]),
    (["distributed=true", "coordinator_address=localhost"], ["coordinator_address", "HOST:PORT"]),
    (["distributed=true", "num_processes=0"], ["num_processes", "> 0"]),
    (["distributed=true", "num_processes=2", "num_devices=3", "num_envs=6", "n_test_episodes=6",
      "ddpg.batch_size=6"], ["num_devices", "multiple of num_processes=2"]),
    (["distributed=true", "num_seeds=2"], ["num_seeds", "one run per seed"]),
    (["distributed=yes please"], ["distributed", "boolean"]),
]


@pytest.mark.parametrize("args, words", BAD_DISTRIBUTED_ARGS)
def test_bad_distributed_key_is_one_line_and_exit_2(args, words, capsys, tmp_path):
    assert train_mod.main(args + [f"run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("herjax.train: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    assert not os.path.exists(tmp_path / "run")


def test_unreachable_coordinator_is_one_line_and_exit_2(tmp_path):
    """Process 1 given an address where no coordinator ever answers: one line naming it once
    ``$HERJAX_DISTRIBUTED_TIMEOUT_S`` runs out, exit status 2 (XLA alone aborts with a stack trace, status 134)."""
    env = subprocess_env(1)
    env["HERJAX_DISTRIBUTED_TIMEOUT_S"] = "2"
    address = f"127.0.0.1:{free_port()}"
    proc = subprocess.run([sys.executable, "-m", "herjax.train", "distributed=true", f"coordinator_address={address}",
                           "num_processes=2", "process_id=1", "num_devices=2", "num_envs=2",
                           f"run_dir={tmp_path / 'run'}"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"bad value '{address}' for coordinator_address" in lines[0], lines
    assert "within 2 s" in lines[0] and "HERJAX_DISTRIBUTED_TIMEOUT_S" in lines[0], lines
    assert not os.path.exists(tmp_path / "run")


def test_no_coordinator_is_one_line_and_exit_2(tmp_path):
    """``distributed=true`` outside Slurm or Open MPI and without an address: one line from the command line."""
    env = {k: v for k, v in subprocess_env(1).items()
           if not k.startswith(("SLURM_", "OMPI_", "PMI_", "PMIX_", "JAX_COORDINATOR"))}
    proc = subprocess.run([sys.executable, "-m", "herjax.train", "distributed=true", f"run_dir={tmp_path / 'run'}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == "" and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "coordinator_address=HOST:PORT" in lines[0] and "srun" in lines[0], lines
    assert not os.path.exists(tmp_path / "run")
