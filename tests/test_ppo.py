"""Tests of PPO: GAE against a plain loop, the loss by hand, the squashed policy's density against scipy, the
one-vs-two-device update, the truncation wiring of the unroll, and a real FetchReach (dense) run that must learn
without recompiling."""

import json
import os
import subprocess
import sys

import golden
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

import herjax  # noqa: F401  (XLA flag before any JAX computation)
from herjax import config, envs, loops, rollout
from herjax.agents import ppo
from herjax.agents.ppo import LossInputs, PPOConfig, PPOParams
from herjax.train import reached

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def gae_loop(reward, value, next_value, terminated, episode_end, gamma, lam):
    """The textbook recursion, one env and one step at a time, in float64."""
    horizon, n_envs = reward.shape
    adv = np.zeros((horizon, n_envs))
    for n in range(n_envs):
        running = 0.0
        for t in reversed(range(horizon)):
            if episode_end[t, n]:
                running = 0.0  # nothing flows back from the next episode
            bootstrap = 0.0 if terminated[t, n] else gamma * next_value[t, n]
            delta = reward[t, n] + bootstrap - value[t, n]
            running = delta + gamma * lam * running
            adv[t, n] = running
    return adv


def test_gae_scan_equals_python_loop_with_truncation_and_termination():
    rng = np.random.default_rng(0)
    horizon, n_envs = 23, 5
    reward = rng.normal(size=(horizon, n_envs)).astype(np.float32)
    value = rng.normal(size=(horizon, n_envs)).astype(np.float32)
    next_value = rng.normal(size=(horizon, n_envs)).astype(np.float32)
    truncated = rng.random((horizon, n_envs)) < 0.15
    terminated = (rng.random((horizon, n_envs)) < 0.1) & ~truncated
    episode_end = truncated | terminated
    assert truncated.any() and terminated.any()
    got = ppo.gae(jnp.asarray(reward), jnp.asarray(value), jnp.asarray(next_value), jnp.asarray(terminated),
                  jnp.asarray(episode_end), gamma=0.97, gae_lambda=0.9)
    want = gae_loop(reward, value, next_value, terminated, episode_end, 0.97, 0.9)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_gae_bootstraps_a_truncated_episode_by_hand():
    # One env, 3 steps, the episode ends by time limit after step 1; gamma 0.5, lambda 1.
    reward = jnp.array([[1.0], [2.0], [4.0]])
    value = jnp.array([[0.0], [0.0], [0.0]])
    next_value = jnp.array([[10.0], [8.0], [6.0]])  # step 1's successor is the episode's final obs, V = 8
    ended = jnp.array([[0.0], [1.0], [0.0]])
    adv = ppo.gae(reward, value, next_value, jnp.zeros_like(reward), ended, gamma=0.5, gae_lambda=1.0)
    # A2 = 4 + 0.5 * 6 = 7 (the last step bootstraps too)
    # A1 = 2 + 0.5 * 8 = 6 (truncated: bootstrapped from the final obs, and nothing of A2 flows back)
    # A0 = (1 + 0.5 * 10 - 0) + 0.5 * 1 * A1 = 6 + 3 = 9
    np.testing.assert_allclose(np.asarray(adv)[:, 0], [9.0, 6.0, 7.0], rtol=1e-6)
    # As a terminal step instead, step 1 would not bootstrap: A1 = 2, A0 = 6 + 0.5 * 2 = 7.
    adv = ppo.gae(reward, value, next_value, ended, ended, gamma=0.5, gae_lambda=1.0)
    np.testing.assert_allclose(np.asarray(adv)[:, 0], [7.0, 2.0, 7.0], rtol=1e-6)


def _hand_loss_inputs():
    # Two samples, one action dimension; policy mu = w * x with w = 1 and log_std = 0 (sigma = 1), value V = 2 * x.
    x = jnp.array([[0.5], [-0.2]])
    params = PPOParams(policy={"w": jnp.array(1.0), "log_std": jnp.array(0.0)}, value={"v": jnp.array(2.0)})
    policy_apply = lambda p, x: (p["w"] * x, jnp.broadcast_to(p["log_std"], x.shape))
    value_apply = lambda p, x: p["v"] * x[:, 0]
    # The actions taken are u = mu, so the new log-density is log N(0; 0, 1) - log(1 - tanh(mu)^2):
    #   -0.9189385 - (-0.2402290) = -0.6787095   and   -0.9189385 - (-0.0397361) = -0.8792024.
    log_prob = np.array([-0.9189385332 + 0.2402290139, -0.9189385332 + 0.0397361437])
    # Old log-probabilities chosen so that the ratios are exp(new - old) = 1.5 and 0.5.
    old_log_prob = log_prob - np.log([1.5, 0.5])
    inputs = LossInputs(
        x=x, raw_action=jnp.array([[0.5], [-0.2]]), old_log_prob=jnp.asarray(old_log_prob, jnp.float32),
        old_value=jnp.array([0.8, 0.0]), advantage=jnp.array([2.0, -1.0]), target_return=jnp.array([2.0, -1.0]),
        noise=jnp.zeros((2, 1)),
    )
    return params, inputs, policy_apply, value_apply


def test_ppo_loss_by_hand():
    params, inputs, policy_apply, value_apply = _hand_loss_inputs()
    loss, m = ppo.ppo_loss(params, inputs, policy_apply=policy_apply, value_apply=value_apply, clip_range=0.2,
                           value_clip_range=0.2, vf_coef=0.5, ent_coef=0.01)
    # Surrogate, eps 0.2:  r = 1.5, A = 2:  max(-2 * 1.5, -2 * clip(1.5) = -2 * 1.2) = max(-3.0, -2.4) = -2.4
    #                      r = 0.5, A = -1: max(1 * 0.5, 1 * clip(0.5) = 0.8)         = 0.8
    #                      pg_loss = (-2.4 + 0.8) / 2 = -0.8
    assert float(m["actor_loss"]) == pytest.approx(-0.8, abs=1e-5)
    # Value: V = 2x = (1.0, -0.4), V_old = (0.8, 0.0), R = (2.0, -1.0), clip 0.2:
    #   sample 1: (1.0 - 2.0)^2 = 1.0;   V_clip = 0.8 + clip(0.2) = 1.0 -> (1.0 - 2.0)^2 = 1.0;   max = 1.0
    #   sample 2: (-0.4 + 1.0)^2 = 0.36; V_clip = 0.0 + clip(-0.4) = -0.2 -> (-0.2 + 1.0)^2 = 0.64; max = 0.64
    #   vf_loss = 0.5 * (1.0 + 0.64) / 2 = 0.41
    assert float(m["critic_loss"]) == pytest.approx(0.41, abs=1e-5)
    # Entropy at noise 0 (u = mu): 0.5 * (log 2 pi + 1) + log sigma + log(1 - tanh(mu)^2)
    #   = 1.4189385 + mean(-0.2402290, -0.0397361) = 1.4189385 - 0.1399826 = 1.2789560
    assert float(m["entropy"]) == pytest.approx(1.2789560, abs=1e-5)
    # loss = -0.8 + 0.5 * 0.41 - 0.01 * 1.2789560 = -0.8 + 0.205 - 0.0127896 = -0.6077896
    assert float(loss) == pytest.approx(-0.6077896, abs=1e-5)
    # approx_kl = 0.5 * mean(log(1.5)^2, log(0.5)^2) = 0.5 * (0.1644019 + 0.4804530) / 2 = 0.1612137; both clipped.
    assert float(m["approx_kl"]) == pytest.approx(0.1612137, abs=1e-5)
    assert float(m["clip_frac"]) == pytest.approx(1.0)
    # Without the value clip: vf_loss = 0.5 * (1.0 + 0.36) / 2 = 0.34.
    _, m = ppo.ppo_loss(params, inputs, policy_apply=policy_apply, value_apply=value_apply, clip_range=0.2,
                        value_clip_range=None, vf_coef=0.5, ent_coef=0.01)
    assert float(m["critic_loss"]) == pytest.approx(0.34, abs=1e-5)


def test_tanh_gaussian_log_prob_matches_scipy_change_of_variables():
    rng = np.random.default_rng(1)
    mean = rng.normal(size=(500, 4)) * 1.5
    log_std = rng.uniform(-1.5, 0.7, size=(500, 4))
    u = mean + np.exp(log_std) * rng.normal(size=(500, 4))
    a = np.tanh(u)
    keep = np.all(np.abs(a) < 1 - 1e-6, axis=1)  # atanh must be exact in float64 for the reference
    # Reference, independently: density of a = tanh(u) is N(atanh(a); mu, sigma) / prod(1 - a^2).
    want = np.sum(stats.norm.logpdf(np.arctanh(a), mean, np.exp(log_std)) - np.log1p(-a * a), axis=1)
    got = np.asarray(ppo.tanh_gaussian_log_prob(jnp.asarray(u, jnp.float32), jnp.asarray(mean, jnp.float32),
                                                jnp.asarray(log_std, jnp.float32)), np.float64)
    np.testing.assert_allclose(got[keep], want[keep], rtol=2e-4, atol=2e-3)
    assert keep.mean() > 0.9


@pytest.mark.parametrize("mu, log_std", [(0.3, -0.5), (-1.2, 0.4)])
def test_tanh_gaussian_density_integrates_to_one_and_matches_its_cdf(mu, log_std):
    # Integrate in action space a in (-1, 1), on a grid that is fine near the bounds (a = tanh of a uniform grid:
    # the density can pile up against +-1), with the trapezoid rule in the coordinate a itself.
    a = np.tanh(np.linspace(-9.0, 9.0, 400_001))
    log_p = ppo.tanh_gaussian_log_prob(jnp.asarray(np.arctanh(a)[:, None], jnp.float32), jnp.full((1, 1), mu),
                                       jnp.full((1, 1), log_std))
    p = np.exp(np.asarray(log_p, np.float64))
    assert integrate.trapezoid(p, a) == pytest.approx(1.0, abs=1e-3)
    # P(a < 0.3) = P(u < atanh 0.3) = Phi((atanh 0.3 - mu) / sigma), independently of the density code.
    cdf = integrate.cumulative_trapezoid(p, a, initial=0.0)
    assert np.interp(0.3, a, cdf) == pytest.approx(stats.norm.cdf((np.arctanh(0.3) - mu) / np.exp(log_std)), abs=1e-3)
    # The one-sample entropy estimate is unbiased: its mean over many noises is -E[log p(a)].
    noise = jax.random.normal(jax.random.key(0), (200_000, 1))
    estimate = float(jnp.mean(ppo.tanh_gaussian_entropy(jnp.full((1, 1), mu), jnp.full((1, 1), log_std), noise)))
    exact = integrate.trapezoid(-p * np.asarray(log_p, np.float64), a)
    assert estimate == pytest.approx(exact, abs=1e-2)


def test_act_samples_the_density_it_reports():
    agent = ppo.make_ppo(PPOConfig(hidden=(8,), lr_schedule="constant"), obs_dim=3, goal_dim=2, act_dim=2)
    state = agent.init(jax.random.key(0))
    obs, goal = jnp.ones((4, 3)), -jnp.ones((4, 2))
    step = agent.act(state, obs, goal, jax.random.key(1))
    np.testing.assert_allclose(step.action, jnp.tanh(step.raw_action))
    # The density at the sampled u under the policy's own mean (greedy = tanh(mu)) and log-std.
    greedy = agent.greedy(state, obs, goal)
    log_std = jnp.broadcast_to(state.params.policy["params"]["log_std"], greedy.shape)
    np.testing.assert_allclose(step.log_prob, ppo.tanh_gaussian_log_prob(step.raw_action, jnp.arctanh(greedy), log_std),
                               rtol=1e-5)
    assert greedy.shape == (4, 2) and np.all(np.abs(greedy) < 1)
    assert not np.allclose(step.action, greedy)


def test_minibatches_cover_every_step_once_per_pass():
    idx = np.asarray(ppo.minibatch_indices(jax.random.key(3), jnp.arange(6), 10, 5))
    assert idx.shape == (5, 2, 6)
    for n in range(6):
        assert sorted(idx[:, :, n].ravel()) == list(range(10))
    # An env's choice depends on its global index only: envs 3..5 alone pick what they picked among all six.
    np.testing.assert_array_equal(np.asarray(ppo.minibatch_indices(jax.random.key(3), jnp.arange(3, 6), 10, 5)),
                                  idx[:, :, 3:])


def test_fetch_reach_dense_learns(ppo_reach_run):
    result, initial, _, _ = ppo_reach_run
    history, trainer = result.history, result.trainer
    assert trainer.env.backend == envs.default_backend()
    successes = [row["test/success_rate"] for row in history]
    assert reached(max(successes), 0.9), f"test success by epoch: {successes}"
    assert initial < 0.3, "the untrained policy already succeeds"
    for row in history:
        assert all(np.isfinite(v) for k, v in row.items() if k != "train/success_rate"), row
        assert set(trainer.epoch_metrics) <= set(row)
        # Dense rewards are -distance per step, so values are negative and above -1/(1-gamma) * 0.5 m.
        assert -20.0 < row["test/mean_Q"] < 0.5
    assert history[-1]["env_steps"] == len(history) * trainer.steps_per_epoch


def test_progress_is_bit_identical_to_the_pre_redesign_run(ppo_reach_run):
    """The one-house redesign changed nothing this run computes (see tests/golden.py)."""
    golden.assert_bit_identical("ppo", ppo_reach_run[0].run_dir)


def test_no_recompilation_and_counters(ppo_reach_run):
    result, _, before, after = ppo_reach_run
    trainer = result.trainer
    assert after - before == 1, "run_epoch traced more than once during the run"
    epochs = len(result.history)
    traced = loops.TRACE_COUNTS["run_epoch"]
    state, metrics = trainer.run_epoch(result.state)
    jax.block_until_ready(metrics)
    assert loops.TRACE_COUNTS["run_epoch"] == traced
    assert int(state.epoch) == epochs + 1
    assert int(state.env_steps) == (epochs + 1) * trainer.steps_per_epoch == (epochs + 1) * 2 * 32 * 50
    # Each iteration ends one 50-step episode per env (unroll 50): 64 episodes an epoch.
    assert int(state.episodes) == (epochs + 1) * 64
    # The normaliser saw every training step once.
    assert float(state.agent.obs_stats.count) == int(state.env_steps)
    # Linear decay: the update count drives the learning rate.
    assert int(state.agent.step) == (epochs + 1) * 2 * 4 * 5
    # The policy for play/export: deterministic, the same for the train state and the agent state.
    obs = jnp.zeros((3, trainer.env.obs_dim)) + state.env.env.obs["observation"][0, :3]
    goal = state.env.env.obs["desired_goal"][0, :3]
    a = trainer.policy(state, obs, goal)
    np.testing.assert_array_equal(a, trainer.policy(state.agent, obs, goal))
    assert a.shape == (3, 4) and np.all(np.abs(np.asarray(a)) <= 1.0)


def test_unroll_bootstraps_from_the_final_observation(ppo_reach_run):
    """Across an auto-reset, next_obs is the ended episode's last observation, not the new episode's first."""
    trainer = ppo_reach_run[0].trainer
    agent, env = trainer.agent, trainer.env
    venv = envs.vec(env, 2)
    agent_state = trainer.init(jax.random.key(5)).agent  # (the run's final state was donated by another test)

    @jax.jit
    def unroll(key):
        policy = lambda obs, goal, key: agent.act(agent_state, obs, goal, key)
        _, record = rollout.unroll(venv, policy, venv.reset(key), key, 55)
        return record, agent.prepare(agent_state, record)

    rollout_, batch = unroll(jax.random.key(4))
    truncated = np.asarray(rollout_.truncated)
    assert truncated[49].all() and truncated.sum() == 2
    np.testing.assert_array_equal(rollout_.next_obs[:49], rollout_.obs[1:50])
    np.testing.assert_array_equal(rollout_.next_obs[50:54], rollout_.obs[51:55])
    assert not np.allclose(rollout_.next_obs[49], rollout_.obs[50])  # the reset moved the arm back
    assert not np.allclose(rollout_.goal[49], rollout_.goal[50])  # and drew a fresh goal
    np.testing.assert_array_equal(rollout_.next_goal[49], rollout_.goal[49])
    # The truncated step's reward is the ended episode's (-distance to its own goal).
    d = np.linalg.norm(np.asarray(rollout_.next_obs[49, :, :3] - rollout_.goal[49]), axis=-1)
    np.testing.assert_allclose(rollout_.reward[49], -d, rtol=1e-5)
    # Its advantage bootstraps V(final obs): A = r + gamma * V(final) - V(s) (the recursion stops there).
    v_final = agent.value(agent_state, rollout_.next_obs[49], rollout_.next_goal[49])
    np.testing.assert_allclose(batch.advantage[49], rollout_.reward[49] + 0.97 * v_final - batch.value[49],
                               rtol=1e-4, atol=1e-5)


TWO_DEVICE_SCRIPT = r"""
import dataclasses, json
import jax, jax.numpy as jnp, numpy as np
import herjax
from herjax import config, envs, loops, rollout
from herjax.agents.ppo import PPOConfig
from herjax.config import TrainConfig

assert jax.local_device_count() == 2, jax.devices()
# Everything that can differ between layouts is on: minibatches, several epochs, advantage normalisation, the value
# clip, an active gradient clip and the entropy noise.
cfg = TrainConfig(env="fetch_reach_dense", alg="ppo", total_env_steps=400, num_envs=4, n_cycles=1,
                  n_test_episodes=2, run_dir="unused", ppo=PPOConfig(
    unroll_length=10, hidden=(16,), n_minibatches=2, n_epochs=3, ent_coef=0.01, max_grad_norm=0.1,
    learning_rate=1e-2))
env = envs.make("fetch_reach_dense")
one = loops.make_train(config.load(dataclasses.replace(cfg, num_devices=1)), env)
two = loops.make_train(config.load(dataclasses.replace(cfg, num_devices=2)), env)
agent = one.agent
venv = envs.vec(env, 4)

@jax.jit
def real_batch(agent_state, key):
    policy = lambda obs, goal, key: agent.act(agent_state, obs, goal, key)
    _, record = rollout.unroll(venv, policy, venv.reset(key), key, 10)
    return agent.update_normalizer(agent_state, record.obs, record.goal), record

start = one.init(jax.random.key(0)).agent
agent_state, batch = real_batch(start, jax.random.key(1))
key = jax.random.key(2)
a1, m1 = one.learn(agent_state, batch, key)
a2, m2 = two.learn(agent_state, batch, key)
leaves = lambda t: [np.asarray(x, np.float64) for x in jax.tree.leaves(t)]
diff = lambda a, b: max(float(np.max(np.abs(x - y))) if x.size else 0.0 for x, y in zip(leaves(a), leaves(b)))
moved = diff(a1.params, agent_state.params)
out = {
    "param_diff": diff(a1.params, a2.params),
    "opt_diff": diff(a1.opt_state, a2.opt_state),
    "stats_diff": diff((a1.obs_stats, a1.goal_stats), (a2.obs_stats, a2.goal_stats)),
    "metric_diff": max(abs(float(m1[k]) - float(m2[k])) for k in m1),
    "moved": moved,
    "count_one": float(a1.obs_stats.count), "count_two": float(a2.obs_stats.count),
    "count_before": float(agent_state.obs_stats.count),
}
# The whole compiled epoch on two devices: per-device envs, global counters and statistics.
state = two.init(jax.random.key(3))
out["env_shape"] = list(state.env.t.shape)
state, metrics = two.run_epoch(state)
out["epoch_env_steps"] = int(state.env_steps)
out["epoch_count"] = float(state.agent.obs_stats.count)
out["epoch_finite"] = all(bool(np.isfinite(v)) for k, v in metrics.items() if k != "train/success_rate")
# A state restored onto one device (as a checkpoint restore does) goes back onto both, without a retrace.
state, metrics = two.run_epoch(jax.device_put(state, jax.devices()[0]))
out["restored_epoch"] = int(state.epoch)
out["traces"] = loops.TRACE_COUNTS["run_epoch"]
print("RESULT " + json.dumps(out))
"""


def test_one_and_two_devices_give_the_same_update():
    """The same total batch on one device and split over two forced host devices gives the same update."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=2").strip()
    proc = subprocess.run([sys.executable, "-c", TWO_DEVICE_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    assert out["moved"] > 1e-3, "the update did not move the parameters"
    # Float32 summation order differs (pmean of halves vs one mean), and Adam magnifies it for tiny gradients: the
    # correct update agrees to ~3e-5 after six steps at lr 1e-2; a layout-dependent shuffle or a missing gradient
    # pmean differs by 0.07-0.1.
    assert out["param_diff"] < 3e-4 and out["opt_diff"] < 3e-5, out
    assert out["metric_diff"] < 1e-4, out
    assert out["stats_diff"] < 1e-3, out
    assert out["count_one"] == out["count_two"] == out["count_before"] + 4 * 10
    assert out["env_shape"] == [2, 2]
    assert out["epoch_env_steps"] == 40 and out["epoch_count"] == 40
    assert out["epoch_finite"]
    assert out["restored_epoch"] == 2 and out["traces"] == 1


def test_config_errors_name_the_field():
    from herjax.config import ConfigError

    with pytest.raises(ConfigError, match="ppo.unroll_length"):
        config.load(["alg=ppo", "ppo.unroll_length=12"])
    with pytest.raises(ConfigError, match="ppo.gamma"):
        config.load(["alg=ppo", "ppo.gamma=1.5"])
    with pytest.raises(ConfigError, match="scale"):
        config.load(["alg=ppo", "scale=paper"])
    with pytest.raises(ConfigError, match="ddpg.batch_size.*alg=ddpg_her.*alg=ppo"):
        config.load(["alg=ppo", "ddpg.batch_size=64"])
    with pytest.raises(ValueError, match="num_devices"):
        loops.make_train(config.load(["alg=ppo", "num_devices=64", "run_dir=x"]), envs.make("fetch_reach_dense"))
    with pytest.raises(ValueError, match="lr_schedule"):
        ppo.make_ppo(PPOConfig(lr_schedule="cosine"), obs_dim=1, goal_dim=1, act_dim=1)
    # The loop knobs are shared: num_envs means envs stepped in parallel for PPO as for DDPG.
    cfg = config.load(["alg=ppo", "env=fetch_reach_dense", "num_envs=8", "run_dir=x"])
    assert (cfg.num_envs, cfg.n_cycles, cfg.n_test_episodes, cfg.num_devices) == (8, 2, 50, 1)
    assert config.steps_per_epoch(cfg) == 2 * 8 * 50


def test_brax_env_wrapper_steps_and_resets_with_fresh_goals():
    """The Brax view of a herjax env: flat obs, State fields, and fresh goals after an auto-reset."""
    import brax  # noqa: F401  (in the test extra: a missing brax must fail, not skip)
    from herjax.interop.brax import BraxGoalEnv, wrap_for_training

    env = envs.make("fetch_reach_dense")
    benv = BraxGoalEnv(env)
    assert (benv.observation_size, benv.action_size) == (13, 4)
    wrapped = wrap_for_training(benv, episode_length=3)
    state = jax.jit(wrapped.reset)(jax.random.split(jax.random.PRNGKey(0), 2))
    assert state.obs.shape == (2, 13) and set(state.metrics) == {"is_success", "distance"}
    np.testing.assert_array_equal(state.obs[:, 10:], state.pipeline_state.obs["desired_goal"])
    step = jax.jit(wrapped.step)
    goals = [np.asarray(state.obs[:, 10:])]
    for _ in range(3):
        state = step(state, jnp.ones((2, 4)))
        goals.append(np.asarray(state.obs[:, 10:]))
    assert np.asarray(state.done).tolist() == [1.0, 1.0]
    assert np.asarray(state.info["truncation"]).tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(goals[0], goals[2])  # one goal within an episode
    assert not np.allclose(goals[0], goals[3])  # a fresh one after the reset
    np.testing.assert_allclose(state.reward, -np.asarray(state.metrics["distance"]), rtol=1e-6)
