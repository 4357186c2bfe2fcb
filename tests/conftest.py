"""Session fixtures shared by several test modules: the real training runs, each trained once per session."""

import os
import tempfile

import jax
import pytest

# The compile cache (on by default) is off in the tests, so that no test reads a program another session compiled
# and no MJX program is written to disk. Subprocesses inherit both settings; the test of the cache turns it back
# on for its own runs.
os.environ.setdefault("JAX_ENABLE_COMPILATION_CACHE", "false")
os.environ.setdefault("HERJAX_CACHE_DIR", tempfile.mkdtemp(prefix="herjax-test-cache-"))

import herjax  # noqa: F401  (XLA flag before any JAX computation)
from herjax import config, envs, loops
from herjax.train import train

# The golden commands: their progress.csv rows were recorded before the one-house redesign
# (tests/data/golden_*.csv) and must stay bit-identical (tests/golden.py).
DDPG_REACH_ARGS = ["env=fetch_reach", "seed=0", "total_env_steps=10000", "stop_success=0.9"]
PPO_REACH_ARGS = ["env=fetch_reach_dense", "alg=ppo", "seed=0", "total_env_steps=32000"]


@pytest.fixture(scope="session")
def ddpg_reach_run(tmp_path_factory):
    """One real FetchReach run on the CPU default backend, baselines defaults, stopped at the first epoch whose
    test success is >= 0.9 or after 10k env steps. Returns (result, trace count before it, trace count after)."""
    run_dir = str(tmp_path_factory.mktemp("reach") / "run")
    before = loops.TRACE_COUNTS["run_epoch"]
    result = train(DDPG_REACH_ARGS + [f"run_dir={run_dir}"], log=None)
    after = loops.TRACE_COUNTS["run_epoch"]
    return result, before, after


@pytest.fixture(scope="session")
def ppo_reach_run(tmp_path_factory):
    """The FetchReach (dense) PPO run, 10 epochs x 2 iterations x 32 envs x 50 steps. Returns (result, the
    untrained policy's test success, trace count before it, trace count after it)."""
    cfg = config.load(PPO_REACH_ARGS + ["run_dir=unused"])
    trainer = loops.make_train(cfg, envs.make(cfg.env, backend=cfg.backend))
    initial = trainer.evaluate(trainer.init(jax.random.key(0)).agent, jax.random.key(1))
    before = loops.TRACE_COUNTS["run_epoch"]
    result = train(PPO_REACH_ARGS + [f"run_dir={tmp_path_factory.mktemp('ppo') / 'run'}"], log=None, trainer=trainer)
    return result, float(initial.success_rate), before, loops.TRACE_COUNTS["run_epoch"]
