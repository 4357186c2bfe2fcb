"""``num_seeds=N``: N seeds of one config trained by one compiled program (``jax.vmap`` over the run's state), each
seed an ordinary run directory of its own."""

import os

import jax
import numpy as np
import pytest

from herjax import loops, plot
from herjax.runs import checkpoint as ckpt_lib
from herjax.train import seed_state, train
from runtools import TINY_DDPG, progress_rows

SMALL = ["env=fetch_reach", *TINY_DDPG]
EPOCHS = 3
STEPS = EPOCHS * 2 * 2 * 50


@pytest.fixture(scope="module")
def vmapped(tmp_path_factory):
    """Seeds 4, 5, 6 of the small config in one program; returns (result, trace count of its run_epoch)."""
    run_dir = str(tmp_path_factory.mktemp("seeds") / "run")
    before = loops.TRACE_COUNTS["run_epoch"]
    result = train(SMALL + ["seed=4", "num_seeds=3", f"total_env_steps={STEPS}", f"run_dir={run_dir}"], log=None)
    return result, loops.TRACE_COUNTS["run_epoch"] - before


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    """Seed 5 of the same config, alone."""
    run_dir = str(tmp_path_factory.mktemp("solo") / "run")
    return train(SMALL + ["seed=5", f"total_env_steps={STEPS}", f"run_dir={run_dir}"], log=None)


def test_each_seed_is_an_ordinary_run_directory(vmapped):
    from herjax.runs.checkpoint import read_config

    result, traces = vmapped
    assert traces == 1  # one compiled epoch for every seed and every epoch
    assert result.seeds == [4, 5, 6]
    assert result.run_dirs == [os.path.join(result.run_dir, f"seed_{s}") for s in (4, 5, 6)]
    assert read_config(result.run_dir).num_seeds == 3
    for seed, run_dir, history in zip(result.seeds, result.run_dirs, result.histories):
        cfg = read_config(run_dir)
        assert (cfg.seed, cfg.num_seeds, cfg.run_dir) == (seed, 1, run_dir)
        assert len(progress_rows(run_dir)) == len(history) == EPOCHS
        assert ckpt_lib.steps(run_dir, "latest")[-1] == EPOCHS and ckpt_lib.steps(run_dir, "best")
        assert any(name.startswith("events.out.tfevents") for name in os.listdir(run_dir))
    # Different seeds learn differently.
    assert len({tuple(r["test/mean_Q"] for r in progress_rows(d)) for d in result.run_dirs}) == 3


def test_seed_i_of_a_vmapped_run_equals_a_solo_run_of_seed_i(vmapped, solo):
    """Equal within float32 rounding, not bit-exact, on the CPU. Each seed sees the same inputs and the same
    operations (the same keys; the C engine steps all seeds' envs in one call, each env on its own, so the episodes
    are the same), but XLA compiles a reduction or a matmul with an extra batch axis into another loop order, so
    sums round differently in the last bits (relative ~1e-6 after one epoch). The episodes' outcomes (success,
    return) stay identical over these epochs; the floats agree to 1e-4."""
    result, _ = vmapped
    mine, theirs = progress_rows(result.run_dirs[1]), progress_rows(solo.run_dir)
    exact = ("epoch", "env_steps", "test/success_rate", "test/return", "train/success_rate")
    assert [[r[k] for k in exact] for r in mine] == [[r[k] for k in exact] for r in theirs]
    for a, b in zip(mine, theirs):
        np.testing.assert_allclose([float(a[k]) for k in a], [float(b[k]) for k in a], rtol=1e-4, atol=1e-6)
    for a, b in zip(jax.tree.leaves(seed_state(result.state, 1).agent), jax.tree.leaves(solo.state.agent)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-3, atol=1e-4)


def test_a_seed_plays_exports_and_resumes_alone_and_the_parent_names_its_seeds(vmapped):
    import herjax.policy

    result, _ = vmapped
    policy = herjax.policy.load(result.run_dirs[0])
    obs = {"observation": np.zeros(10, np.float32), "desired_goal": np.ones(3, np.float32)}
    assert policy(obs).shape == (4,)
    with pytest.raises(ckpt_lib.CheckpointError, match="holds 3 seeds, each a run of its own: name one"):
        herjax.policy.load(result.run_dir)


def test_plot_draws_the_seeds_as_one_curve(vmapped, tmp_path):
    result, _ = vmapped
    runs = [plot.read_run(d) for d in plot.find_runs([result.run_dir])]
    assert sorted(r.run_dir for r in runs) == sorted(result.run_dirs)
    assert [len(group) for group in plot.group_runs(runs).values()] == [3]
    out = str(tmp_path / "seeds.png")
    assert plot.main([result.run_dir, "--out", out]) == 0 and os.path.getsize(out) > 0


def test_a_vmapped_run_resumes_exactly(vmapped, tmp_path):
    """Two epochs, then a resume to three: every seed's rows equal those of the uninterrupted run."""
    result, _ = vmapped
    run_dir = str(tmp_path / "run")
    first = train(SMALL + ["seed=4", "num_seeds=3", f"total_env_steps={2 * STEPS // EPOCHS}", f"run_dir={run_dir}"],
                  log=None, trainer=result.trainer)
    assert [len(h) for h in first.histories] == [2, 2, 2]
    lines = []
    resumed = train([f"total_env_steps={STEPS}"], resume=run_dir, log=lines.append, trainer=result.trainer)
    assert "(3 seeds) from checkpoint latest/2" in lines[0]
    for mine, theirs in zip(resumed.run_dirs, result.run_dirs):
        assert progress_rows(mine) == progress_rows(theirs)


def test_ppo_trains_seeds_in_one_program(tmp_path):
    run_dir = str(tmp_path / "ppo")
    result = train(["env=fetch_reach_dense", "alg=ppo", "num_envs=4", "ppo.unroll_length=10", "ppo.n_minibatches=2",
                    "n_test_episodes=2", "num_seeds=2", "total_env_steps=160", f"run_dir={run_dir}"], log=None)
    assert [len(h) for h in result.histories] == [2, 2]
    assert all(np.isfinite(v) for h in result.histories for k, v in h[-1].items() if k.endswith("_loss"))
    assert progress_rows(result.run_dirs[0]) != progress_rows(result.run_dirs[1])


def test_the_reset_pass_stays_a_branch_under_vmap():
    """The rollouts reset envs under ``lax.cond`` (a C-engine callback). Under ``jax.vmap`` a predicate that varies
    per seed would turn it into a select that runs the reset pass on every step; the predicate is shared across the
    seeds (``wrappers.any_env``), so the vmapped epoch keeps as many real branches as a solo one."""
    import re

    from herjax import config, envs

    counts = []
    for n in (1, 2):
        cfg = config.load(SMALL + ["n_cycles=1", f"num_seeds={n}", "run_dir=unused"])
        trainer = loops.make_train(cfg, envs.make(cfg.env))
        keys = jax.random.key(0) if n == 1 else jax.random.split(jax.random.key(0), n)
        text = str(jax.make_jaxpr(trainer.run_epoch)(jax.eval_shape(trainer.init, keys)))
        counts.append(len(re.findall(r"\bcond\[", text)))
    assert counts[0] >= 2 and counts[1] == counts[0], counts
