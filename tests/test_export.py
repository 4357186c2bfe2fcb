"""Tests of ``herjax.export``: the NumPy forward pass of an exported policy equals the run's own deterministic
policy (``herjax.policy.load``) for every algorithm, normaliser clipping included; the CLI's errors are one line
and exit code 2."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import herjax.policy
from herjax import export as export_lib
from herjax.agents.common.networks import ExportError
from herjax.agents.ddpg import DDPGConfig, make_ddpg
from herjax.train import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # ``examples`` is imported by path, as ``python -m`` from the repository would find it
    sys.path.insert(0, REPO)
# Two short epochs each: enough for the weights and the normaliser's statistics to be far from their start.
OFF_POLICY = ["total_env_steps=200", "n_cycles=1", "n_test_episodes=2"]
RUNS = {
    "ddpg_her": ["alg=ddpg_her"] + OFF_POLICY,
    "td3_her": ["alg=td3_her"] + OFF_POLICY,
    "sac_her": ["alg=sac_her"] + OFF_POLICY,
    "ppo": ["alg=ppo", "total_env_steps=400", "num_envs=4", "n_cycles=1", "n_test_episodes=4"],
    "ddpg_layer_norm_tanh": ["alg=ddpg_her", "ddpg.layer_norm=true", "ddpg.activation=tanh"] + OFF_POLICY,
    "ppo_shared_layer_norm": ["alg=ppo", "ppo.shared_torso=true", "ppo.layer_norm=true", "ppo.activation=gelu",
                              "total_env_steps=400", "num_envs=4", "n_cycles=1", "n_test_episodes=4"],
}


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    """Every tiny FetchReach run of ``RUNS``, trained once: ``{name: run_dir}``."""
    out = {}
    for name, args in RUNS.items():
        run_dir = str(tmp_path_factory.mktemp(name) / "run")
        train(["env=fetch_reach", "seed=0", f"run_dir={run_dir}"] + args, log=None)
        out[name] = run_dir
    return out


def random_inputs(weights, n, seed):
    """``n`` observations and goals around the normaliser's statistics, some far enough out to be clipped to
    ``±norm_clip`` after normalising and some beyond ``±clip_obs`` before."""
    rng = np.random.default_rng(seed)
    out = []
    for prefix in ("obs", "goal"):
        mean, std = weights[f"{prefix}_mean"], weights[f"{prefix}_std"]
        x = mean + std * rng.normal(size=(n, mean.shape[0])) * rng.choice([0.5, 2.0, 8.0], size=(n, 1))
        far = rng.random(x.shape) < 0.05
        x = np.where(far, rng.choice([-1.0, 1.0], size=x.shape) * 3.0 * weights["clip_obs"], x)
        out.append(x.astype(np.float32))
    return out


@pytest.mark.parametrize("name", list(RUNS))
def test_numpy_forward_equals_the_runs_policy(run_dirs, name, tmp_path):
    run_dir = run_dirs[name]
    path = str(tmp_path / "policy.npz")
    written = export_lib.export(run_dir, path)
    weights = dict(np.load(path))  # plain arrays: no pickle needed
    assert set(weights) == set(written)
    assert str(weights["format"]) == "herjax-policy-v1" and str(weights["alg"]) == RUNS[name][0].split("=")[1]
    obs, goal = random_inputs(weights, 1000, seed=len(name))
    normed = (np.clip(obs, -weights["clip_obs"], weights["clip_obs"]) - weights["obs_mean"]) / weights["obs_std"]
    assert (np.abs(normed) > weights["norm_clip"]).mean() > 0.05 and (np.abs(obs) > weights["clip_obs"]).any()
    got = export_lib.forward(weights, obs, goal)
    want = herjax.policy.load(run_dir)({"observation": obs, "desired_goal": goal})
    assert got.dtype == np.float32 and got.shape == want.shape == (1000, 4)
    assert np.max(np.abs(got - want)) <= 1e-5
    # Not a trivial policy: the actions vary and the statistics have moved from their start (mean 0, std 1).
    assert np.std(want, axis=0).min() > 1e-3
    assert np.abs(weights["obs_mean"]).max() > 0.1
    # One observation without a batch axis, straight from the file.
    with np.load(path) as npz:
        np.testing.assert_allclose(export_lib.forward(npz, obs[0], goal[0]), want[0], atol=1e-5)
    if "layer_norm" in name:
        assert "layer0_ln_scale" in weights and "layer_norm_eps" in weights
        assert str(weights["activation"]) in ("tanh", "gelu")


def test_export_cli_writes_one_line(run_dirs, tmp_path, capsys):
    out = str(tmp_path / "sub" / "reach.npz")
    assert export_lib.main([run_dirs["ddpg_her"], f"out={out}", "checkpoint=latest"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"herjax.export: wrote {out}: ddpg_her on fetch_reach"), lines
    assert os.path.isfile(out)


@pytest.mark.parametrize("argv, fragment", [
    (["{run}", "output=x.npz"], "unknown key 'output' (did you mean 'out'?)"),
    (["{run}", "checkpoint=first"], "bad value 'first' for checkpoint"),
    (["out=x.npz"], "missing RUN_DIR"),
    (["{run}", "{run}"], "one run directory only"),
    (["{run}", "out=/proc/herjax/x.npz"], "for out: cannot write there"),
])
def test_export_cli_bad_input_is_one_line(run_dirs, argv, fragment, capsys):
    argv = [a.format(run=run_dirs["ddpg_her"]) for a in argv]
    assert export_lib.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("herjax.export: error: ") and fragment in err, err


def test_export_cli_missing_run_exits_2_without_traceback(tmp_path):
    missing = str(tmp_path / "no_such_run")
    proc = subprocess.run([sys.executable, "-m", "herjax.export", missing], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not exist" in lines[0] and missing in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""


def test_a_custom_network_cannot_be_exported():
    agent = make_ddpg(DDPGConfig(hidden=(8,), network="examples.networks:ResidualMLP"), obs_dim=10, goal_dim=3,
                      act_dim=4, horizon=50)
    with pytest.raises(ExportError, match="network='examples.networks:ResidualMLP'") as info:
        agent.export(agent.init(jax.random.key(0)))
    assert "\n" not in str(info.value)
