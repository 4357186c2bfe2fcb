"""The shared off-policy loop: DDPG over two devices gives the same update as over one, the paper-scale buffer
is per worker, and TD3+HER and SAC+HER (agents only, no loop of their own) learn FetchReach through it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from herjax import algs, config, loops
from herjax.config import ConfigError
from herjax.train import reached, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TWO_DEVICE_SCRIPT = r"""
import json
import jax, jax.numpy as jnp, numpy as np
import herjax
from herjax import config, envs, loops
from herjax.replay.her import sample_her_transitions
from herjax.rollout import collect_episodes

assert jax.local_device_count() == 2, jax.devices()
args = ["env=fetch_reach", "num_envs=4", "n_cycles=2", "n_test_episodes=4", "ddpg.batch_size=64", "ddpg.n_batches=3",
        "ddpg.hidden=[32,32]", "ddpg.buffer_size=2000", "ddpg.pi_lr=0.01", "ddpg.q_lr=0.01", "run_dir=unused"]
env = envs.make("fetch_reach")
one = loops.make_train(config.load(args + ["num_devices=1"]), env)
two = loops.make_train(config.load(args + ["num_devices=2"]), env)
agent = one.agent

@jax.jit
def real_batch(agent_state, key):
    # Real HER transitions of exploring episodes, from a normaliser that has seen some data.
    collect_key, norm_key, sample_key = jax.random.split(key, 3)
    episodes, _ = collect_episodes(env, lambda o, g, k: agent.act(agent_state, o, g, k), collect_key, 4)
    seen = sample_her_transitions(episodes, norm_key, 200, compute_reward=env.compute_reward)
    agent_state = agent.update_normalizer(agent_state, seen.obs, seen.desired_goal)
    return agent_state, sample_her_transitions(episodes, sample_key, 64, compute_reward=env.compute_reward)

agent_state, batch = real_batch(one.init(jax.random.key(0)).agent, jax.random.key(1))
a1, m1 = one.learn(agent_state, batch, jax.random.key(2))
a2, m2 = two.learn(agent_state, batch, jax.random.key(2))
for _ in range(2):  # a few steps, so that Adam's state and the targets are exercised
    a1, m1 = one.learn(agent.end_of_cycle(a1), batch, jax.random.key(2))
    a2, m2 = two.learn(agent.end_of_cycle(a2), batch, jax.random.key(2))
leaves = lambda t: [np.asarray(x, np.float64) for x in jax.tree.leaves(t)]
diff = lambda a, b: max(float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(leaves(a), leaves(b)))
out = {
    "param_diff": diff((a1.actor, a1.critic), (a2.actor, a2.critic)),
    "opt_diff": diff((a1.actor_opt_state, a1.critic_opt_state), (a2.actor_opt_state, a2.critic_opt_state)),
    "stats_diff": diff((a1.obs_stats, a1.goal_stats), (a2.obs_stats, a2.goal_stats)),
    "metric_diff": max(abs(float(m1[k]) - float(m2[k])) for k in m1),
    "moved": diff(a1.actor.online, agent_state.actor.online),
    "count_one": float(a1.obs_stats.count), "count_two": float(a2.obs_stats.count),
    "count_before": float(agent_state.obs_stats.count),
}
# The whole compiled epoch on two devices: per-device buffers, global counters and statistics.
state = two.init(jax.random.key(3))
out["buffer_shape"] = list(state.buffer.episodes.obs.shape)
state, metrics = two.run_epoch(state)
out["epoch_env_steps"] = int(state.env_steps)
out["epoch_episodes"] = int(state.episodes)
out["buffer_sizes"] = np.asarray(state.buffer.size).tolist()
out["epoch_count"] = float(state.agent.obs_stats.count)
out["epoch_steps"] = int(state.agent.step)
out["epoch_finite"] = all(bool(np.isfinite(v)) for v in metrics.values())
out["same_on_devices"] = all(
    np.array_equal(np.asarray(s.data), np.asarray(state.agent.actor.online["params"]["MLP_0"]["Dense_0"]["kernel"]))
    for s in state.agent.actor.online["params"]["MLP_0"]["Dense_0"]["kernel"].addressable_shards)
# A state restored onto one device (as a checkpoint restore does) goes back onto both, without a retrace.
state, metrics = two.run_epoch(jax.device_put(state, jax.devices()[0]))
out["restored_epoch"] = int(state.epoch)
out["traces"] = loops.TRACE_COUNTS["run_epoch"]
print("RESULT " + json.dumps(out))
"""


def test_ddpg_one_and_two_devices_give_the_same_update():
    """The same total batch on one device and split over two forced host devices gives the same update: gradients
    averaged and normaliser statistics pooled across devices, as baselines averages its MPI workers'."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    proc = subprocess.run([sys.executable, "-c", TWO_DEVICE_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))[len("RESULT "):])
    assert out["moved"] > 1e-3, "the update did not move the parameters"
    # Float32 summation order differs (pmean of two halves vs one mean of the whole batch); a missing gradient
    # pmean or unpooled statistics differ by orders of magnitude more.
    assert out["param_diff"] < 1e-4 and out["opt_diff"] < 1e-5, out
    assert out["metric_diff"] < 1e-4 and out["stats_diff"] < 1e-3, out
    assert out["count_one"] == out["count_two"] == out["count_before"] + 3 * 64
    # Per-device rings (2000 / 2 / 50 = 20 episodes each), two episodes a cycle each.
    assert out["buffer_shape"] == [2, 20, 51, 10]
    assert out["epoch_env_steps"] == 2 * 4 * 50 and out["epoch_episodes"] == 8 and out["buffer_sizes"] == [4, 4]
    assert out["epoch_count"] == 2 * 4 * 50 and out["epoch_steps"] == 2 * 3
    assert out["epoch_finite"] and out["same_on_devices"]
    assert out["restored_epoch"] == 2 and out["traces"] == 1


def test_paper_scale_keeps_a_buffer_per_worker():
    """baselines' 19 MPI workers each keep their own 1e6 transitions: scale=paper holds 19e6 (it held 1e6 before
    the one-house redesign, so paper-scale runs forgot ~19x sooner than the paper's)."""
    cfg = config.load(["env=fetch_push", "scale=paper", "run_dir=x"])
    assert (cfg.num_envs, cfg.ddpg.batch_size, cfg.ddpg.buffer_size) == (38, 4864, 19_000_000)
    assert config.steps_per_epoch(cfg) == 95_000
    # About 200 paper epochs of data, as REFERENCE section 2 reads the baselines code.
    assert cfg.ddpg.buffer_size // config.steps_per_epoch(cfg) == 200
    # The preset applies to the active off-policy algorithm's section, and explicit keys still win.
    td3 = config.load(["alg=td3_her", "scale=paper", "td3.buffer_size=2000000", "run_dir=x"])
    assert (td3.num_envs, td3.td3.batch_size, td3.td3.buffer_size) == (38, 4864, 2_000_000)
    # On two devices each holds half: 9.5e6 transitions of its own episodes.
    trainer_buffer = 19_000_000 // 2 // 50
    assert trainer_buffer == 190_000


def test_every_registered_algorithm_has_a_section_and_a_factory():
    sections = config.sections()
    for name, alg in algs.REGISTRY.items():
        assert alg.section in sections and alg.family in algs.FAMILIES
        assert callable(algs.factory(name))
        cfg = config.load([f"alg={name}", "run_dir=x"])
        assert cfg.section is getattr(cfg, alg.section)
    with pytest.raises(ConfigError, match="td3.policy_delay"):
        config.load(["alg=td3_her", "td3.policy_delay=0"])
    with pytest.raises(ConfigError, match="key 'td3.policy_delay' belongs to alg=td3_her"):
        config.load(["alg=sac_her", "td3.policy_delay=3"])


@pytest.mark.parametrize("alg", ["td3_her", "sac_her"])
def test_agent_learns_fetch_reach_within_10k_env_steps(alg, tmp_path):
    """TD3+HER and SAC+HER, with their documented defaults, on the shared off-policy loop (the HER buffer,
    normaliser, evaluation, checkpoints of every algorithm), reach test success >= 0.9 on FetchReach."""
    before = loops.TRACE_COUNTS["run_epoch"]
    result = train([f"alg={alg}", "env=fetch_reach", "seed=0", "total_env_steps=10000", "stop_success=0.9",
                    f"run_dir={tmp_path / alg}"], log=None)
    successes = [row["test/success_rate"] for row in result.history]
    assert reached(max(successes), 0.9), f"{alg} test success by epoch: {successes}"
    assert result.history[-1]["env_steps"] <= 10_000
    assert result.history[0]["train/success_rate"] < 0.9  # it learned rather than started there
    assert loops.TRACE_COUNTS["run_epoch"] - before == 1
    for row in result.history:
        assert all(np.isfinite(v) for v in row.values()), row
    assert os.path.isdir(os.path.join(result.run_dir, "checkpoints", "best"))
