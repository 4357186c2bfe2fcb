"""Tests of the training loop, its config and its CLI: a real FetchReach run must learn, without recompiling."""

import csv
import dataclasses
import os
import subprocess
import sys

import golden
import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from herjax import config as config_lib
from herjax import envs, loops
from herjax.loops import off_policy
from herjax.config import ConfigError, TrainConfig
from herjax.train import PROGRESS_COLUMNS, reached

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REACH_BUDGET = 10_000  # the ddpg_reach_run fixture (conftest.py)


def test_fetch_reach_learns_within_10k_env_steps(ddpg_reach_run):
    result, _, _ = ddpg_reach_run
    history = result.history
    assert result.config.backend == "auto" and result.trainer.env.backend == envs.default_backend()
    best = max(row["test/success_rate"] for row in history)
    assert reached(best, 0.9), f"test success {[row['test/success_rate'] for row in history]}"
    assert history[-1]["env_steps"] <= REACH_BUDGET
    # It learned rather than started there: the first epoch's training episodes (noisy, mostly untrained) fail
    # more often, and the critic's values are finite and within baselines' clip range.
    assert history[0]["train/success_rate"] < 0.9
    for row in history:
        assert all(np.isfinite(v) for v in row.values()), row
        assert -50.0 <= row["test/mean_Q"] <= 0.5


def test_progress_is_bit_identical_to_the_pre_redesign_run(ddpg_reach_run):
    """The one-house redesign changed nothing this run computes (see tests/golden.py)."""
    golden.assert_bit_identical("ddpg", ddpg_reach_run[0].run_dir)


def test_no_recompilation_after_first_epoch(ddpg_reach_run):
    result, before, after = ddpg_reach_run
    assert after - before == 1, "run_epoch traced more than once during the run"
    traced = loops.TRACE_COUNTS["run_epoch"]
    state, metrics = result.trainer.run_epoch(result.state)
    jax.block_until_ready(metrics)
    assert loops.TRACE_COUNTS["run_epoch"] == traced
    assert int(state.epoch) == len(result.history) + 1
    assert int(state.env_steps) == (len(result.history) + 1) * result.trainer.steps_per_epoch


def test_progress_csv_and_config_yaml(ddpg_reach_run):
    result, _, _ = ddpg_reach_run
    with open(os.path.join(result.run_dir, "progress.csv")) as f:
        rows = list(csv.DictReader(f))
    required = {"epoch", "env_steps", "wall_s", "test/success_rate", "test/mean_Q", "train/success_rate",
                "train/critic_loss", "train/actor_loss", "stats/o_mean", "stats/o_std", "stats/g_mean",
                "stats/g_std"}
    assert tuple(rows[0]) == PROGRESS_COLUMNS + result.trainer.epoch_metrics
    assert required <= set(rows[0])
    assert len(rows) == len(result.history) >= 1
    per_epoch = result.trainer.steps_per_epoch
    assert per_epoch == 10 * 2 * 50  # baselines FetchReach: 10 cycles x 2 episodes x 50 steps
    for i, row in enumerate(rows):
        assert int(row["epoch"]) == i + 1
        assert int(row["env_steps"]) == (i + 1) * per_epoch
        assert float(row["test/success_rate"]) == pytest.approx(result.history[i]["test/success_rate"])
    walls = [float(r["wall_s"]) for r in rows]
    assert walls == sorted(walls)
    saved = OmegaConf.to_container(OmegaConf.load(os.path.join(result.run_dir, "config.yaml")))
    assert saved == config_lib._to_container(result.config)
    assert saved["n_cycles"] == 10 and saved["ddpg"]["batch_size"] == 256 and saved["run_dir"] == result.run_dir


def test_one_cycle_moves_every_counter():
    """A cycle collects num_envs episodes, stores them, feeds num_envs*T samples to the normaliser, runs
    n_batches updates and moves the targets once."""
    cfg = config_lib.load(["num_envs=3", "n_cycles=1", "ddpg.n_batches=2", "ddpg.batch_size=8",
                           "ddpg.hidden=[16]", "ddpg.buffer_size=500", "run_dir=unused"])
    env = envs.make(cfg.env)
    trainer = loops.make_train(cfg, env)
    ts = trainer.init(jax.random.key(1))
    assert jax.tree.leaves(ts.buffer)[0].shape[0] == 1  # one device's ring
    ts = ts.replace(buffer=jax.tree.map(lambda x: x[0], ts.buffer))
    cycle = jax.jit(lambda ts: off_policy.train_cycle(
        ts, env=env, agent=trainer.agent, buffer=trainer.buffer, num_envs=3, n_batches=2, batch_size=8,
        replay_strategy="future", future_p=0.8))
    ts1, metrics = cycle(ts)
    assert int(ts1.env_steps) == 150 and int(ts1.episodes) == 3
    assert int(ts1.buffer.size) == 3 and int(ts1.buffer.insert_pos) == 3
    assert int(ts1.agent.step) == 2
    assert float(ts1.agent.obs_stats.count) == 150 and float(ts1.agent.goal_stats.count) == 150
    online = jax.tree.leaves(ts1.agent.critic.online)[0]
    target, target0 = jax.tree.leaves(ts1.agent.critic.target)[0], jax.tree.leaves(ts.agent.critic.target)[0]
    np.testing.assert_allclose(target, 0.95 * target0 + 0.05 * online, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(ts1.key, ts.key)
    stored = ts1.buffer.episodes
    # Stored episodes are whole: each keeps one desired goal for all its steps.
    assert np.allclose(stored.desired_goal[:3], stored.desired_goal[:3, :1])
    assert np.all(np.isfinite(np.asarray(metrics["critic_loss"])))
    # The buffer wraps: ten slots, so four cycles of three write 12 episodes and size saturates.
    for _ in range(3):
        ts1, _ = cycle(ts1)
    assert int(ts1.buffer.size) == 10 and int(ts1.buffer.insert_pos) == 2


class TestConfig:
    def test_typed_config_is_checked_too(self):
        with pytest.raises(ConfigError, match="num_envs"):
            config_lib.load(TrainConfig(num_envs="2"))
        with pytest.raises(ConfigError, match="ddpg.hidden"):
            config_lib.load(TrainConfig(ddpg=dataclasses.replace(TrainConfig().ddpg, hidden=(64, "x"))))

    def test_defaults_resolve_like_baselines(self):
        reach = config_lib.load([])
        assert (reach.env, reach.alg, reach.num_envs, reach.n_cycles, reach.n_test_episodes, reach.num_devices) == (
            "fetch_reach", "ddpg_her", 2, 10, 20, 1)
        assert reach.total_env_steps == 10_000 and reach.backend == "auto"
        assert reach.run_dir.startswith(os.path.join("runs", "fetch_reach", "ddpg_her"))
        assert config_lib.load(["env=fetch_push", "scale=single"]).n_cycles == 50
        assert config_lib.load(["env=fetch_push"]).n_cycles == 25  # scale=fast, the CPU recipe
        assert config_lib.load(["env=fetch_reach_dense"]).n_cycles == 10

    def test_overrides_and_paper_scale(self):
        cfg = config_lib.load(["env=fetch_push", "scale=paper", "ddpg.hidden=[64,64]", "ddpg.clip_return=false",
                               "total_env_steps=1e5", "run_dir=x"])
        assert (cfg.num_envs, cfg.ddpg.batch_size) == (38, 4864)
        assert config_lib.steps_per_epoch(cfg) == 95_000  # the paper's epoch
        assert cfg.ddpg.hidden == (64, 64) and cfg.ddpg.clip_return is False and cfg.total_env_steps == 100_000
        # Explicit overrides win over the preset, wherever they stand.
        assert config_lib.load(["ddpg.batch_size=512", "scale=paper"]).ddpg.batch_size == 512
        # A dict of dotted overrides, a list of key=value strings and a TrainConfig give the same config.
        from_dict = config_lib.load({"seed": 3, "ddpg.gamma": 0.9, "run_dir": "r"})
        assert from_dict == config_lib.load(["seed=3", "ddpg.gamma=0.9", "run_dir=r"])
        assert from_dict == config_lib.load(
            TrainConfig(seed=3, run_dir="r", ddpg=dataclasses.replace(TrainConfig().ddpg, gamma=0.9)))

    @pytest.mark.parametrize("args, words", [
        (["env=fetch_rech"], ["fetch_rech", "fetch_reach"]),
        (["batch_size=3"], ["batch_size", "ddpg.batch_size"]),
        (["num_envs=two"], ["num_envs", "integer"]),
        (["ddpg.replay_strategy=futur"], ["replay_strategy", "future"]),
        (["ddpg.polyak=1.5"], ["polyak"]),
        (["scale=huge"], ["scale", "paper"]),
    ])
    def test_bad_input_names_key_and_choices(self, args, words):
        """Each bad override is reported in one line naming the key or value and what would be valid."""
        with pytest.raises(ConfigError) as err:
            config_lib.load(args)
        message = str(err.value)
        assert "\n" not in message
        for word in words:
            assert word in message


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "herjax.train", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)


BAD_CLI_ARGS = [
    (["env=fetch_rech"], ["unknown env", "fetch_rech", "fetch_reach", "fetch_push"]),
    (["env=fetch_reach", "learning_rate=1"], ["unknown key", "learning_rate", "ddpg.pi_lr"]),
    (["num_envs=abc"], ["num_envs", "abc", "integer"]),
    (["total_env_steps=0"], ["total_env_steps", "> 0"]),
    (["total_env_steps=-5"], ["total_env_steps", "> 0"]),
    (["num_envs=0"], ["num_envs", "> 0"]),
    (["env"], ["key=value"]),
    (["num_devices=2", "num_envs=3"], ["num_envs", "3", "multiple of num_devices=2"]),
    (["num_devices=2", "num_envs=4", "ddpg.batch_size=255"], ["ddpg.batch_size", "multiple of num_devices=2"]),
]


@pytest.mark.parametrize("args, words", BAD_CLI_ARGS)
def test_cli_bad_input_exits_2_with_one_line(args, words):
    proc = run_cli(*args)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_more_devices_than_the_machine_has_exits_2_with_one_line():
    proc = run_cli("num_devices=64", "num_envs=64", "n_test_episodes=64", "ddpg.batch_size=256")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "num_devices" in lines[0] and "64" in lines[0] and "local cpu device" in lines[0]


@pytest.mark.parametrize("args, words", BAD_CLI_ARGS)
def test_cli_bad_input_fails_before_building_anything(args, words, monkeypatch, capsys):
    """The CLI rejects bad input before it builds an env or traces any training function."""
    from herjax import train as train_mod

    def forbidden(*args, **kwargs):
        raise AssertionError("built an env or a trainer for a bad argument")

    monkeypatch.setattr(envs, "make", forbidden)
    monkeypatch.setattr(loops, "make_train", forbidden)
    traces = dict(loops.TRACE_COUNTS)
    assert train_mod.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("herjax.train: error: ")
    assert dict(loops.TRACE_COUNTS) == traces


def test_a_float32_success_rate_of_90_in_100_reaches_0_9():
    """Test success rates are float32 means: 90 of 100 episodes is 0.89999998, and it reaches stop_success=0.9."""
    from herjax.train import reached

    rate = float(np.mean(np.arange(100) < 90, dtype=np.float32))
    assert rate < 0.9 and reached(rate, 0.9)
    assert not reached(float(np.mean(np.arange(100) < 89, dtype=np.float32)), 0.9)
