"""Faults that must lose nothing, counted: ``kill -9`` at random moments with resumes, the CLI fuzz, NaN envs, and
real full disks.

    python benchmarks/faults.py                       # all four, into benchmarks/results/faults.json
    python benchmarks/faults.py --kills 5 --nan-seeds 1 --no-fuzz --disks 4 --out /tmp/faults.json

* **Kills.** One uninterrupted run of a small FetchReach config, then the same run killed with SIGKILL at
  ``--kills`` random moments of its processes (uniform in 2-16 s after a process starts; a process that ends
  first is not counted as a kill), each followed by ``resume=`` (a fresh start when the kill came before the
  first checkpoint), then resumed to the end. Survived: the resumed run's ``progress.csv`` is contiguous
  and its metrics, and the final checkpoint's every array, equal the uninterrupted run's bit for bit.
* **Fuzz.** ``tests/test_cli_fuzz.py`` (500 random argument lists for each of train, play, plot and the env demo);
  each of its tests passes only if all its 500 inputs end in exit code 0 or 2 with one line and no traceback.
* **NaN envs.** FetchReach with ``herjax.envs.faults.NanEvery`` (each env faulty with probability 1/2 at a reset,
  NaN every 10th step) for ``--nan-seeds`` seeds: NaN envs injected (the resets counted by
  ``train/env_resets_nonfinite``), runs poisoned (a non-finite number anywhere in the buffer or the agent's state)
  and the test success reached.
* **Full disks.** ``--disks`` runs of a small FetchReach config (``tests/test_faults.py``'s) on a real tmpfs of a
  random size (100-1200 KB, in a user namespace: ``unshare -rm``; skipped, and said so, where that is not allowed).
  Each counts where the disk filled (a checkpoint save, a progress row, another file), whether the run stopped with
  one line and no traceback, whether an unfinished save was left behind, and whether ``resume=`` on a copy of the
  run directory (on a disk with room) trains on to the end with every epoch in ``progress.csv`` once.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)

DEFAULT_OUT = os.path.join(HERE, "results", "faults.json")
# A FetchReach run whose epochs take a fraction of a second on 2 CPU cores, so that kills land in every phase:
# start-up, compilation, epochs and saves; 800 epochs, so that 20 kills come before it ends (100 epochs did on the
# Intel Xeons here; on 2026-12-06's AMD EPYC they took 21 s, and the run ended after 3 kills).
KILL_ARGS = ["env=fetch_reach", "seed=0", "n_cycles=2", "ddpg.n_batches=10", "ddpg.hidden=[64]",
             "ddpg.buffer_size=20000", "n_test_episodes=4", "total_env_steps=160000"]
TIMING_COLUMNS = ("wall_s", "epoch_s", "steps_per_s")


def _train(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "herjax.train", *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _rows(run_dir: str) -> list[dict]:
    with open(os.path.join(run_dir, "progress.csv"), newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def _final_arrays(run_dir: str) -> dict:
    import jax
    import numpy as np

    from herjax.runs import checkpoint as ckpt_lib

    run = ckpt_lib.load_run(run_dir, "latest")
    leaves = jax.tree_util.tree_flatten_with_path(ckpt_lib._to_saveable(run.state))[0]
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in leaves}


def kills(n_kills: int, seed: int, workdir: str, log=print) -> dict:
    """``n_kills`` SIGKILLs at random moments of a run, each followed by a resume; see the module docstring."""
    import numpy as np

    from herjax.runs import checkpoint as ckpt_lib

    reference, killed = os.path.join(workdir, "reference"), os.path.join(workdir, "killed")
    proc = _train(KILL_ARGS + [f"run_dir={reference}"])
    if proc.wait() != 0:
        raise RuntimeError(f"the uninterrupted run failed: {proc.stderr.read()[-2000:]}")
    rng = random.Random(seed)
    moments, restarts, ended_first = [], 0, 0
    while len(moments) < n_kills:
        fresh = not os.path.isdir(killed) or not ckpt_lib.has_checkpoint(killed)
        if fresh:  # killed before its first checkpoint: nothing to resume, start again
            restarts += os.path.isdir(killed)
            shutil.rmtree(killed, ignore_errors=True)
        proc = _train(KILL_ARGS + [f"run_dir={killed}"] if fresh else [f"resume={killed}"])
        moment = rng.uniform(2.0, 16.0)
        try:
            proc.wait(timeout=moment)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            moments.append(round(moment, 2))
        else:  # the process ended before its kill: no kill was delivered
            if proc.returncode != 0:
                raise RuntimeError(f"a killed run's resume failed: {proc.stderr.read()[-2000:]}")
            ended_first += 1
            if len(_rows(killed)) == len(_rows(reference)):
                raise RuntimeError(f"the run ended after {len(moments)} kills; make KILL_ARGS longer")
            continue
        epochs = len(_rows(killed)) if os.path.isfile(os.path.join(killed, "progress.csv")) else 0
        log(f"kill {len(moments)}/{n_kills} at {moment:.1f} s: {epochs} epochs in progress.csv")
    if not os.path.isdir(killed) or not ckpt_lib.has_checkpoint(killed):
        shutil.rmtree(killed, ignore_errors=True)
        proc = _train(KILL_ARGS + [f"run_dir={killed}"])
    else:
        proc = _train([f"resume={killed}"])
    if proc.wait() != 0:
        raise RuntimeError(f"the last resume failed: {proc.stderr.read()[-2000:]}")
    want, got = _rows(reference), _rows(killed)
    contiguous = [int(row["epoch"]) for row in got] == list(range(1, len(want) + 1))
    same_rows = got == want
    a, b = _final_arrays(reference), _final_arrays(killed)
    same_state = a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    survived = contiguous and same_rows and same_state
    return {
        "config": KILL_ARGS, "kills_tried": n_kills, "kills_survived": n_kills if survived else 0,
        "processes_ended_before_their_kill": ended_first, "fresh_restarts_before_a_first_checkpoint": restarts,
        "kill_moments_s": moments, "epochs": len(want), "progress_contiguous": contiguous,
        "progress_bit_identical": same_rows, "final_state_bit_identical": same_state,
    }


def fuzz() -> dict:
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0",
                           "tests/test_cli_fuzz.py"], cwd=REPO, capture_output=True, text=True)
    from tests.test_cli_fuzz import N_CASES

    tail = proc.stdout.strip().splitlines()[-1]
    passed = int(tail.split(" passed")[0].split()[-1]) if " passed" in tail else 0
    failed = int(tail.split(" failed")[0].split()[-1]) if " failed" in tail else 0
    return {"commands": passed + failed, "inputs": (passed + failed) * N_CASES, "clean_errors_or_exits":
            passed * N_CASES, "pytest": tail}


def nan_envs(seeds: list[int], workdir: str) -> dict:
    import jax
    import numpy as np

    from herjax import config, envs, loops
    from herjax.envs.faults import NanEvery
    from herjax.train import reached, train

    def finite(tree):
        return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree)
                   if np.issubdtype(np.asarray(x).dtype, np.floating))

    runs, trainer = [], None
    for seed in seeds:
        args = ["env=fetch_reach", f"seed={seed}", "total_env_steps=20000", "stop_success=0.9",
                f"run_dir={os.path.join(workdir, f'nan{seed}')}"]
        cfg = config.load(args)
        if trainer is None:
            trainer = loops.make_train(cfg, NanEvery(envs.make(cfg.env), every=10, fraction=0.5))
        result = train(args, trainer=trainer, log=None)
        runs.append({
            "seed": seed, "injected": int(sum(row["train/env_resets_nonfinite"] for row in result.history)),
            "env_steps": int(result.history[-1]["env_steps"]),
            "test_success": result.history[-1]["test/success_rate"],
            "poisoned": not (finite(result.state.buffer) and finite(result.state.agent)),
        })
    return {"wrapper": "NanEvery(every=10, fraction=0.5)", "runs": runs,
            "nan_envs_injected": sum(r["injected"] for r in runs), "poisoned_runs": sum(r["poisoned"] for r in runs),
            "runs_reaching_0.9": sum(reached(r["test_success"], 0.9) for r in runs)}


DISK_ENV_STEPS = 3000
DISK_ARGS = ["env=fetch_reach", "n_cycles=2", "ddpg.n_batches=2", "ddpg.batch_size=32", "ddpg.hidden=[16]",
             "ddpg.buffer_size=5000", "n_test_episodes=2", "save_every=1", f"total_env_steps={DISK_ENV_STEPS}"]


def can_mount_tmpfs(probe: str) -> bool:
    """Whether this user may mount a tmpfs (at ``probe``, made here) in a user namespace of its own."""
    os.makedirs(probe, exist_ok=True)
    try:
        return subprocess.run(["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=64k tmpfs {probe}"],
                              capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def fill_disk(args: list[str], size_kb: int, mount: str, copy: str) -> subprocess.CompletedProcess:
    """``python -m herjax.train *args run_dir=<mount>/run`` on a fresh tmpfs of ``size_kb`` mounted at ``mount`` (an
    existing folder) in a user namespace; then the run directory is copied to ``copy``, since the tmpfs goes with
    the namespace. Returns the run's process: its exit code and stderr (stdout is dropped)."""
    train = " ".join([sys.executable, "-m", "herjax.train", *args, f"run_dir={mount}/run"])
    script = (f"mount -t tmpfs -o size={size_kb}k tmpfs {mount} && {train} > /dev/null; rc=$?; "
              f"cp -r {mount}/run {copy} 2>/dev/null; exit $rc")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=600)


def _struck(line: str) -> str:
    if re.search(r"while saving checkpoint \w+/\d+", line):
        return "checkpoint"
    if "while writing the row of epoch" in line:
        return "progress_row"
    return "other"


def full_disks(n_disks: int, seed: int, workdir: str, log=print) -> dict:
    """``n_disks`` runs on real tmpfs disks that fill up; see the module docstring."""
    from herjax.runs import checkpoint as ckpt_lib

    if not can_mount_tmpfs(os.path.join(workdir, "probe")):
        return {"skipped": "no unprivileged tmpfs here (unshare -rm mount was refused)"}
    rng = random.Random(seed)
    runs = []
    for i in range(n_disks):
        size_kb = rng.randint(100, 1200)
        mount, copy = os.path.join(workdir, f"disk{i}"), os.path.join(workdir, f"copy{i}")
        os.makedirs(mount)
        proc = fill_disk(DISK_ARGS, size_kb, mount, copy)
        lines = proc.stderr.strip().splitlines()
        run = {"size_kb": size_kb, "exit_code": proc.returncode}
        if proc.returncode == 0:
            run["filled"] = False
        else:
            run["filled"] = True
            run["one_line"] = len(lines) == 1 and "Traceback" not in proc.stderr and "no space left" in lines[0]
            run["struck"] = _struck(lines[-1]) if lines else "nothing said"
            run["unfinished_saves_left"] = len(glob.glob(os.path.join(copy, "checkpoints", "*", "*tmp*")))
            if os.path.isdir(copy) and ckpt_lib.has_checkpoint(copy):
                resumed = subprocess.run([sys.executable, "-m", "herjax.train", f"resume={copy}"], cwd=REPO,
                                         capture_output=True, text=True, timeout=600)
                rows = _rows(copy) if resumed.returncode == 0 else []
                run["resumed_to_the_end"] = bool(rows) and int(rows[-1]["env_steps"]) == DISK_ENV_STEPS and \
                    [int(row["epoch"]) for row in rows] == list(range(1, len(rows) + 1))
            else:
                run["resumed_to_the_end"] = None  # filled before a first checkpoint: there is nothing to resume
            if not run["one_line"]:
                run["stderr_tail"] = proc.stderr[-1500:]
        runs.append(run)
        log(f"disk {i + 1}/{n_disks}: {json.dumps(run)}")
    filled = [r for r in runs if r["filled"]]
    return {
        "config": DISK_ARGS, "disks": n_disks, "filled": len(filled),
        "struck": {k: sum(r["struck"] == k for r in filled) for k in sorted({r["struck"] for r in filled})},
        "one_line": sum(r["one_line"] for r in filled),
        "unfinished_saves_left": sum(r["unfinished_saves_left"] for r in filled),
        "resumable": sum(r["resumed_to_the_end"] is not None for r in filled),
        "resumed_to_the_end": sum(bool(r["resumed_to_the_end"]) for r in filled),
        "runs": runs,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="of the kill moments")
    parser.add_argument("--nan-seeds", type=int, default=3)
    parser.add_argument("--no-fuzz", action="store_true")
    parser.add_argument("--disks", type=int, default=40, help="real full disks (0: none)")
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    from benchmarks.machine import describe

    began = time.time()
    with tempfile.TemporaryDirectory() as workdir:
        result = {"machine": describe(), "kills": kills(args.kills, args.seed, workdir)}
        if not args.no_fuzz:
            result["fuzz"] = fuzz()
        result["nan_envs"] = nan_envs(list(range(args.nan_seeds)), workdir)
        if args.disks:
            result["full_disks"] = full_disks(args.disks, args.seed, workdir)
    result["wall_s"] = round(time.time() - began, 1)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
