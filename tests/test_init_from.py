"""``init_from=RUN_DIR``: a new run that starts from the networks and normaliser of another run's checkpoint, with a
fresh buffer, fresh optimisers and fresh counters; and the one-line refusals of a source that does not fit.

One FetchReach DDPG run that learns (``source``) is shared by the file; the run started from it (``init_run``)
reuses its compiled trainer (``init_from`` does not change what the trainer computes).
"""

import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import optax
import pytest

from herjax import algs as algs_lib
from herjax import config as config_lib
from herjax import envs, loops
from herjax.runs import checkpoint as ckpt_lib
from herjax.runs import init_from as init_from_lib
from herjax.train import reached, train

pytestmark = pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # subprocesses of a process running JAX
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """FetchReach DDPG+HER with baselines defaults, stopped at the first epoch with test success >= 0.95."""
    run_dir = str(tmp_path_factory.mktemp("source") / "run")
    result = train(["env=fetch_reach", "stop_success=0.95", f"run_dir={run_dir}"], log=None)
    assert reached(max(row["test/success_rate"] for row in result.history), 0.95), result.history
    return result


@pytest.fixture(scope="module")
def init_run(source, tmp_path_factory):
    """One epoch of a new run started from ``source``'s best checkpoint; returns (result, its console lines)."""
    lines = []
    run_dir = str(tmp_path_factory.mktemp("init") / "run")
    result = train(["env=fetch_reach", "total_env_steps=1000", f"init_from={source.run_dir}", f"run_dir={run_dir}"],
                   log=lines.append, trainer=source.trainer)
    return result, lines


def adam_counts(agent_state):
    """The step counts of every Adam state in an agent's state."""
    is_adam = lambda x: isinstance(x, optax.ScaleByAdamState)
    return [int(s.count) for s in jax.tree.leaves(agent_state, is_leaf=is_adam) if is_adam(s)]


def best_epoch(result):
    rates = [row["test/success_rate"] for row in result.history]
    return max(i + 1 for i, r in enumerate(rates) if r == max(rates))  # ties: the latest


def test_the_start_state_has_the_source_weights_and_fresh_optimisers_and_counters(source):
    """Before the first update: every carried leaf is the source checkpoint's, every other leaf a fresh init's."""
    cfg = config_lib.load(["env=fetch_reach", f"init_from={source.run_dir}", "run_dir=unused"])
    trainer = source.trainer
    loaded = init_from_lib.load(cfg, ckpt_lib.abstract_state(trainer).agent)
    epoch = best_epoch(source)
    assert loaded.where == f"best/{epoch}"
    assert loaded.test_success == source.history[epoch - 1]["test/success_rate"]
    assert reached(loaded.test_success, 0.95)
    saved = ckpt_lib.load_run(source.run_dir, "best").state.agent  # the whole state, read the ordinary way
    fresh = trainer.init(jax.random.key(cfg.seed)).agent
    start = init_from_lib.merge(fresh, loaded.agent)
    keep = jax.tree.leaves(init_from_lib.carried(start))
    n_carried = 0
    for k, got, want_saved, want_fresh in zip(keep, *(jax.tree.leaves(t) for t in (start, saved, fresh))):
        np.testing.assert_array_equal(got, want_saved if k else want_fresh)
        n_carried += k
    # Actor and critic, online and target: 4 dense layers (hidden 256, 256, 256), a kernel and a bias each; obs and
    # goal statistics: sum, sumsq and count each.
    assert n_carried == 4 * 4 * 2 + 2 * 3
    assert adam_counts(start) == [0, 0] and min(adam_counts(saved)) > 0
    assert int(start.step) == 0 and int(saved.step) > 0
    assert float(start.obs_stats.count) == float(saved.obs_stats.count) > 0


def test_at_latest_picks_the_latest_checkpoint(source):
    assert init_from_lib.parse("runs/a@latest") == ("runs/a", "latest")
    assert init_from_lib.parse("runs/a@best") == ("runs/a", "best")
    assert init_from_lib.parse("runs/a@b") == ("runs/a@b", "best")
    cfg = config_lib.load(["env=fetch_reach", f"init_from={source.run_dir}@latest", "run_dir=unused"])
    loaded = init_from_lib.load(cfg, ckpt_lib.abstract_state(source.trainer).agent)
    assert loaded.where == f"latest/{len(source.history)}"


def test_a_damaged_best_checkpoint_falls_back_to_latest_with_a_warning(source, tmp_path):
    run_dir = str(tmp_path / "run")
    shutil.copytree(source.run_dir, run_dir)
    best = ckpt_lib.steps(run_dir, "best")[-1]
    for root, _, files in os.walk(os.path.join(run_dir, "checkpoints", "best", str(best), "state")):
        for name in files:
            if os.path.basename(root) == "d":  # orbax's array data files
                open(os.path.join(root, name), "wb").close()
    cfg = config_lib.load(["env=fetch_reach", f"init_from={run_dir}", "run_dir=unused"])
    warnings = []
    loaded = init_from_lib.load(cfg, ckpt_lib.abstract_state(source.trainer).agent, warn=warnings.append)
    assert loaded.where == f"latest/{len(source.history)}"
    assert len(warnings) == 1 and f"best/{best}" in warnings[0] and "unreadable" in warnings[0], warnings


def test_a_run_from_saved_weights_succeeds_at_once_and_starts_fresh(init_run, source):
    result, lines = init_run
    row = result.history[0]
    assert len(result.history) == 1
    assert reached(row["test/success_rate"], 0.9), row
    # Fresh counters and buffer: the run's own env steps and episodes only, not the source's.
    per_epoch = result.trainer.steps_per_epoch
    assert row["env_steps"] == per_epoch and int(result.state.env_steps) == per_epoch
    assert int(result.state.epoch) == 1
    assert int(np.sum(result.state.buffer.size)) == result.config.n_cycles * result.config.num_envs  # [devices]
    # Fresh optimisers: one epoch's updates, not the source's plus one epoch's.
    updates = result.config.n_cycles * result.config.ddpg.n_batches
    assert adam_counts(result.state.agent) == [updates, updates]
    assert int(result.state.agent.step) == updates
    assert result.trainer is source.trainer  # init_from changes the start, not the computation
    said = [line for line in lines if line.startswith("herjax.train: init_from ")]
    assert len(said) == 1, lines
    epoch = best_epoch(source)
    assert source.run_dir in said[0] and f"best/{epoch}" in said[0]
    assert f"test success {source.history[epoch - 1]['test/success_rate']:.3f}" in said[0]
    assert ckpt_lib.read_config(result.run_dir).init_from == source.run_dir  # part of config.yaml


def test_resume_restores_its_own_checkpoint_not_init_from(init_run, source, tmp_path, monkeypatch):
    first, _ = init_run
    run_dir = str(tmp_path / "run")
    shutil.copytree(first.run_dir, run_dir)

    def forbidden(*args, **kwargs):
        raise AssertionError("a resumed run read its init_from run")

    monkeypatch.setattr(init_from_lib, "check_source", forbidden)
    monkeypatch.setattr(init_from_lib, "load", forbidden)
    resumed = train(["total_env_steps=2000"], resume=run_dir, log=None, trainer=source.trainer)
    assert resumed.resumed_from == "latest/1" and resumed.config.init_from == source.run_dir
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert resumed.history[0] == first.history[0]
    updates = 2 * first.config.n_cycles * first.config.ddpg.n_batches
    assert adam_counts(resumed.state.agent) == [updates, updates]  # its own optimisers, continued


@pytest.mark.parametrize("alg", algs_lib.names())
def test_optimiser_states_and_counters_are_never_carried(alg):
    """The type-based choice (``carried``), checked against each agent's field names."""
    cfg = config_lib.load([f"alg={alg}", "env=fetch_reach", "run_dir=unused"])
    trainer = loops.make_train(cfg, envs.make(cfg.env, backend=cfg.backend))
    agent = ckpt_lib.abstract_state(trainer).agent
    for (name, _), keep in zip(ckpt_lib.array_specs(agent).items(), jax.tree.leaves(init_from_lib.carried(agent))):
        field = name.split(".")[0]
        if "opt_state" in field or field == "step":
            assert not keep, name
        else:
            assert keep, name  # parameters, targets, normaliser statistics, SAC's temperature


# Subprocesses: the refusals reach orbax and tensorstore, whose stray output only a real process shows.
BAD_SOURCES = {
    "other hidden sizes": (["ddpg.hidden=[64,64]"], "new/deeper/run",
                           ["init_from=", "does not fit", "agent.actor.online.params", "float32[256]", "float32[64]"]),
    "other alg": (["alg=td3_her"], "run", ["init_from=", "alg=ddpg_her", "alg=td3_her"]),
    "missing run": (["init_from={tmp}/missing"], "run", ["init_from=", "does not exist"]),
}


@pytest.fixture(scope="module")
def bad_source_results(source, tmp_path_factory):
    """Every case of ``BAD_SOURCES`` as ``python -m herjax.train``, two at a time (each mostly waits for imports)."""
    results, pending, running = {}, list(BAD_SOURCES.items()), []
    env = {**os.environ, "PYTHONPATH": REPO}
    while pending or running:
        while pending and len(running) < 2:
            name, (args, run_dir, _) = pending.pop(0)
            tmp = str(tmp_path_factory.mktemp("bad"))
            args = [a.format(tmp=tmp) for a in args]
            if not any(a.startswith("init_from=") for a in args):
                args.append(f"init_from={source.run_dir}")
            argv = [sys.executable, "-m", "herjax.train", "env=fetch_reach", *args, f"run_dir={tmp}/{run_dir}"]
            proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                    env=env)
            running.append((name, tmp, proc))
        name, tmp, proc = running.pop(0)
        out, err = proc.communicate(timeout=300)
        results[name] = (proc.returncode, out, err, sorted(os.listdir(tmp)))
    return results


@pytest.mark.parametrize("name", list(BAD_SOURCES))
def test_a_source_that_does_not_fit_is_refused_in_one_line(name, bad_source_results):
    code, out, err, left = bad_source_results[name]
    lines = err.strip().splitlines()
    assert code == 2, (out, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("herjax.train: error: init_from="), lines[0]
    for word in BAD_SOURCES[name][2]:
        assert word in lines[0], lines[0]
    assert left == [], f"left behind: {left}"  # no run directory (nor the parents it would have made)
