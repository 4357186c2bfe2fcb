"""Tests of the SAC+HER losses, squashed-Gaussian policy, config and agent plumbing."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from herjax.agents.common import optim
from herjax.agents.common.networks import DoubleCritic
from herjax.agents.sac import (
    SACConfig,
    SquashedGaussianActor,
    actor_loss,
    alpha_loss,
    critic_loss,
    make_sac,
    resolve_target_entropy,
    sample_policy,
    squashed_gaussian_sample,
    update_step,
)
from herjax.agents.sac.agent import METRIC_NAMES
from herjax.checks import ConfigError
from herjax.types import Transitions

OBS_DIM, GOAL_DIM, ACT_DIM, T = 5, 3, 2, 50
SMALL = SACConfig(hidden=(16,), max_u=2.0)


def random_transitions(seed, n):
    """``n`` random transitions with rewards in ``{-1, 0}`` (drawn by numpy: no JAX compilation)."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, OBS_DIM))
    goal = rng.normal(size=(n, GOAL_DIM))
    fields = dict(
        obs=obs,
        next_obs=obs + 0.1 * rng.normal(size=(n, OBS_DIM)),
        achieved_goal=goal,
        next_achieved_goal=goal,
        desired_goal=rng.normal(size=(n, GOAL_DIM)),
        action=rng.uniform(-SMALL.max_u, SMALL.max_u, size=(n, ACT_DIM)),
        reward=-(rng.uniform(size=n) < 0.5).astype(np.float64),
    )
    return Transitions(**{name: jnp.asarray(x, jnp.float32) for name, x in fields.items()})


def test_config_defaults():
    cfg = SACConfig()
    assert (cfg.alpha_lr, cfg.init_alpha, cfg.target_entropy) == (1e-3, 1.0, None)
    assert (cfg.log_std_min, cfg.log_std_max) == (-20.0, 2.0)
    # Inherited from baselines HER.
    assert (cfg.pi_lr, cfg.q_lr, cfg.polyak, cfg.n_batches, cfg.batch_size) == (1e-3, 1e-3, 0.95, 40, 256)
    assert tuple(cfg.hidden) == (256, 256, 256)
    assert resolve_target_entropy(cfg, 4) == -4.0
    assert resolve_target_entropy(dataclasses.replace(cfg, target_entropy=-1.5), 4) == -1.5
    cfg.validate("sac.", num_envs=2, horizon=50)


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(alpha_lr=0), "sac.alpha_lr"),
        (dict(init_alpha=-1.0), "sac.init_alpha"),
        (dict(log_std_min=2.0, log_std_max=2.0), "sac.log_std_min"),
        (dict(q_lr=0.0), "sac.q_lr"),  # the inherited checks still run
    ],
)
def test_bad_config_is_one_line_error_naming_key(overrides, name):
    with pytest.raises(ConfigError) as err:
        SACConfig(**overrides).validate("sac.", num_envs=2, horizon=50)
    message = str(err.value)
    assert "\n" not in message
    assert f"for {name}:" in message


def _normal_cdf(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(x / math.sqrt(2.0)))


@pytest.mark.parametrize("max_u", [1.0, 2.5])
def test_squashed_gaussian_log_prob_matches_numerical_density(max_u):
    # 1-d: u ~ N(0.3, 0.7^2), a = max_u * tanh(u). The normalised action y = a / max_u has CDF
    # F(y) = Phi((atanh(y) - 0.3) / 0.7); its derivative, by central differences in float64, must equal
    # exp(log_prob). The env-unit density of a is that over max_u.
    n = 64
    mean = jnp.full((n, 1), 0.3)
    log_std = jnp.full((n, 1), math.log(0.7))
    key = jax.random.PRNGKey(3)
    action, log_prob = squashed_gaussian_sample(mean, log_std, key, max_u=max_u)
    assert action.shape == (n, 1) and log_prob.shape == (n,)

    # Reparameterisation: the same key's standard normal, shifted, scaled and squashed.
    eps = jax.random.normal(key, (n, 1))
    np.testing.assert_allclose(action, max_u * np.tanh(0.3 + 0.7 * np.asarray(eps)), rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(action) <= max_u)

    y = np.asarray(action[:, 0], np.float64) / max_u
    keep = np.abs(y) < 0.98  # away from the ends, where finite differences lose precision
    assert keep.sum() > n // 2
    y, log_prob = y[keep], np.asarray(log_prob, np.float64)[keep]
    h = 1e-5
    cdf = lambda v: _normal_cdf((np.arctanh(v) - 0.3) / 0.7)  # noqa: E731
    density = (cdf(y + h) - cdf(y - h)) / (2 * h)
    np.testing.assert_allclose(np.exp(log_prob), density, rtol=2e-3)
    env_density = (cdf((max_u * y + h) / max_u) - cdf((max_u * y - h) / max_u)) / (2 * h)
    np.testing.assert_allclose(log_prob - math.log(max_u), np.log(env_density), atol=2e-3)


def test_squashed_gaussian_log_prob_by_hand():
    # A near-deterministic sample u = sigma * eps ~ 0 (sigma = e^-10): per dimension
    # log N(u; 0, sigma) - log(1 - tanh(u)^2) = -eps^2 / 2 + 10 - log(2 pi) / 2 - O(u^2) = -eps^2 / 2 + 9.0810615,
    # whatever max_u is (the log-probability is that of a / max_u).
    key = jax.random.PRNGKey(0)
    eps = np.asarray(jax.random.normal(key, (1, 2)), np.float64)
    expected = float(np.sum(-0.5 * eps**2 + 9.0810615))
    for max_u in (1.0, 3.0):
        action, log_prob = squashed_gaussian_sample(jnp.zeros((1, 2)), jnp.full((1, 2), -10.0), key, max_u=max_u)
        np.testing.assert_allclose(action, max_u * np.exp(-10.0) * eps, rtol=1e-4)
        assert float(log_prob[0]) == pytest.approx(expected, abs=1e-4)


# Stub twin critics with known outputs: Q_i = b_i + w_i * sum(a), stacked to [2, N].
def stub_critics(params, obs, goal, action):
    return params["b"][:, None] + params["w"][:, None] * jnp.sum(action, axis=-1)[None, :]


# Stub policy: every row's action is the parameter "a", with the given per-row log-probabilities.
def stub_policy(params, obs, goal, key):
    return params["a"] * jnp.ones((obs.shape[0], 1)), params["logp"]


def test_critic_loss_by_hand():
    obs = jnp.zeros((2, 1))
    goal = jnp.zeros((2, 1))
    action = jnp.array([[0.5], [-0.5]])
    reward = jnp.array([-1.0, 0.0])
    online = {"b": jnp.array([-2.0, -3.0]), "w": jnp.array([1.0, 0.0])}
    policy = {"a": jnp.array(0.3), "logp": jnp.array([-2.0, 1.0])}

    def loss_fn(critic, policy, target_critic):
        return critic_loss(critic, policy, target_critic, jnp.array(0.5), obs, goal, action, reward, obs,
                           jax.random.PRNGKey(0), policy_sample=stub_policy, critic_apply=stub_critics,
                           gamma=0.98, clip_return=50.0)

    # Target critics at a2 = 0.3: Q'_1 = -10, Q'_2 = -12 + 0.3 = -11.7; min = -11.7.
    # Soft value: -11.7 - 0.5 * [-2, 1] = [-10.7, -12.2].
    # y = [-1 + 0.98 * -10.7, 0 + 0.98 * -12.2] = [-11.486, -11.956].
    # q_1 = -2 + [0.5, -0.5] = [-1.5, -2.5]; y - q_1 = [-9.986, -9.456] -> mean sq (99.720196 + 89.415936) / 2
    # q_2 = [-3, -3];                        y - q_2 = [-8.486, -8.956] -> mean sq (72.012196 + 80.209936) / 2
    # loss = 94.568066 + 76.111066 = 170.679132
    # d/db_1 = -2 * mean(y - q_1) = 19.442; d/db_2 = -2 * mean(y - q_2) = 17.442
    # d/dw_i = -2 * mean((y - q_i) * sum(a)): w_1: -(0.5 * -9.986 - 0.5 * -9.456) = 0.265,
    #                                         w_2: -(0.5 * -8.486 - 0.5 * -8.956) = -0.235
    target = {"b": jnp.array([-10.0, -12.0]), "w": jnp.array([0.0, 1.0])}
    (loss, aux), (critic_grads, policy_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(
        online, policy, target
    )
    assert float(loss) == pytest.approx(170.679132, rel=1e-5)
    np.testing.assert_allclose(aux.target_q, [-11.486, -11.956], rtol=1e-6)
    np.testing.assert_allclose(aux.q, [-1.5, -2.5], rtol=1e-6)
    np.testing.assert_allclose(critic_grads["b"], [19.442, 17.442], rtol=1e-5)
    np.testing.assert_allclose(critic_grads["w"], [0.265, -0.235], rtol=1e-4)
    # The target is held fixed: no gradient reaches the policy.
    np.testing.assert_allclose(policy_grads["a"], 0.0)
    np.testing.assert_allclose(policy_grads["logp"], 0.0)

    # Upper clip: Q' = min(5, 6) = 5, soft [6, 4.5]; y = clip([-1 + 5.88, 4.41], -50, 0) = [0, 0].
    # loss = (1.5^2 + 2.5^2) / 2 + (9 + 9) / 2 = 4.25 + 9 = 13.25
    loss, aux = loss_fn(online, policy, {"b": jnp.array([5.0, 6.0]), "w": jnp.zeros(2)})
    np.testing.assert_allclose(aux.target_q, [0.0, 0.0])
    assert float(loss) == pytest.approx(13.25, rel=1e-6)

    # Lower clip: Q' = -70, soft [-69, -70.5]; y = clip([-1 - 67.62, -69.09], -50, 0) = [-50, -50].
    # loss = (48.5^2 + 47.5^2) / 2 + 47^2 = 2304.25 + 2209 = 4513.25
    loss, aux = loss_fn(online, policy, {"b": jnp.array([-60.0, -70.0]), "w": jnp.zeros(2)})
    np.testing.assert_allclose(aux.target_q, [-50.0, -50.0])
    assert float(loss) == pytest.approx(4513.25, rel=1e-6)


def test_actor_loss_by_hand():
    obs = jnp.zeros((2, 1))
    goal = jnp.zeros((2, 1))
    critic = {"b": jnp.array([-2.0, -3.0]), "w": jnp.array([1.0, 0.0])}
    policy = {"a": jnp.array([[0.5], [-1.5]]), "logp": jnp.array([-1.0, 2.0])}

    def loss_fn(policy):
        return actor_loss(policy, critic, jnp.array(0.5), obs, goal, jax.random.PRNGKey(0),
                          policy_sample=lambda p, o, g, k: (p["a"], p["logp"]), critic_apply=stub_critics)

    # q_1 = -2 + [0.5, -1.5] = [-1.5, -3.5], q_2 = [-3, -3]; min = [-3, -3.5].
    # loss = mean(0.5 * [-1, 2] - [-3, -3.5]) = mean([2.5, 4.5]) = 3.5
    # d/da: row 0's min is q_2 (flat) -> 0; row 1's is q_1 -> -1 / 2. d/dlogp = 0.5 / 2 = 0.25.
    (loss, log_prob), grads = jax.value_and_grad(loss_fn, has_aux=True)(policy)
    assert float(loss) == pytest.approx(3.5, rel=1e-6)
    np.testing.assert_allclose(log_prob, [-1.0, 2.0])
    np.testing.assert_allclose(grads["a"], [[0.0], [-0.5]])
    np.testing.assert_allclose(grads["logp"], [0.25, 0.25])


@pytest.mark.parametrize("log_prob, direction", [(-1.0, -1), (3.0, +1)])
def test_alpha_loss_moves_alpha_toward_target_entropy(log_prob, direction):
    # target_entropy = -2. log pi = -1 (entropy 1 > -2): gradient -mean(log pi + target) = 3 > 0, alpha falls.
    # log pi = 3 (entropy -3 < -2): gradient -(3 - 2) = -1 < 0, alpha rises.
    log_prob = jnp.full((8,), log_prob)
    log_alpha = jnp.array(0.5)
    loss, (grad_alpha, grad_logp) = jax.value_and_grad(alpha_loss, argnums=(0, 1))(
        log_alpha, log_prob, target_entropy=-2.0
    )
    expected_grad = -(float(log_prob[0]) - 2.0)
    assert float(loss) == pytest.approx(0.5 * expected_grad, rel=1e-6)
    assert float(grad_alpha) == pytest.approx(expected_grad, rel=1e-6)
    np.testing.assert_allclose(grad_logp, 0.0)  # log pi is held fixed
    opt = optax.adam(1e-2)
    new_log_alpha, _ = optim.apply(opt, log_alpha, grad_alpha, opt.init(log_alpha))
    assert np.sign(float(new_log_alpha - log_alpha)) == direction


@pytest.fixture(scope="module")
def agent():
    return make_sac(SMALL, obs_dim=OBS_DIM, goal_dim=GOAL_DIM, act_dim=ACT_DIM, horizon=T)


@pytest.fixture(scope="module")
def state(agent):
    return jax.jit(agent.init)(jax.random.PRNGKey(0))


@pytest.fixture(scope="module")
def one_update(agent, state):
    """``(jitted update, transitions, key, new state, metrics)`` of one update from ``state``."""
    update = jax.jit(agent.update)
    transitions = random_transitions(1, 64)
    key = jax.random.PRNGKey(2)
    return (update, transitions, key, *update(state, transitions, key))


def _max_abs_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y)))) for x, y in zip(jax.tree.leaves(a),
                                                                                    jax.tree.leaves(b)))


def test_update_moves_every_learned_part(agent, state, one_update):
    assert agent.metric_names == METRIC_NAMES == ("critic_loss", "actor_loss", "mean_Q", "alpha", "entropy")
    assert not set(agent.summary(state)) & set(agent.metric_names)
    update, transitions, _, new, metrics = one_update
    assert set(metrics) == set(METRIC_NAMES)
    for name, value in metrics.items():
        assert value.shape == () and np.isfinite(float(value)), name
    assert float(metrics["alpha"]) == pytest.approx(1.0)  # the temperature the losses used: init_alpha
    assert int(new.step) == 1
    assert _max_abs_diff(new.actor, state.actor) > 0
    assert _max_abs_diff(new.critic.online, state.critic.online) > 0
    assert _max_abs_diff(new.critic.target, state.critic.target) == 0  # only end_of_cycle moves it
    # A fresh tanh-Gaussian of std ~1 has entropy far above -act_dim = -2, so alpha falls; Adam's first step
    # is exactly alpha_lr.
    assert float(metrics["entropy"]) > -2.0
    assert float(new.log_alpha) == pytest.approx(-SMALL.alpha_lr, rel=1e-3)

    # The key draws the policy samples: another key, another update.
    other, _ = update(state, transitions, jax.random.PRNGKey(3))
    assert _max_abs_diff(other.actor, new.actor) > 0

    stats = agent.update_normalizer(new, transitions.obs, transitions.desired_goal)
    assert (float(stats.obs_stats.count), float(stats.goal_stats.count)) == (64.0, 64.0)
    np.testing.assert_allclose(stats.obs_stats.sum, jnp.sum(transitions.obs, axis=0), rtol=1e-5)

    moved = agent.end_of_cycle(new)
    expected = jax.tree.map(lambda t, o: 0.95 * np.asarray(t) + 0.05 * np.asarray(o), new.critic.target,
                            new.critic.online)
    assert _max_abs_diff(moved.critic.target, expected) < 1e-6
    assert _max_abs_diff(moved.actor, new.actor) == 0


def test_update_averages_over_axis_name(agent, state, one_update):
    # Two devices with different batches average their gradients and metrics: both take the same step, and
    # each metric is the mean of the two single-device ones (taken at the same pre-update parameters).
    update, batch_a, key, single_a, metrics_a = one_update
    batch_b = random_transitions(2, 64)
    _, metrics_b = update(state, batch_b, key)
    stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), batch_a, batch_b)
    both, both_metrics = jax.jit(jax.vmap(lambda t: agent.update(state, t, key, "d"), axis_name="d"))(stacked)
    device = lambda i: jax.tree.map(lambda x: x[i], both)  # noqa: E731
    assert _max_abs_diff(device(0), device(1)) < 1e-6
    assert _max_abs_diff(device(0).actor, single_a.actor) > 1e-6
    for name in METRIC_NAMES:
        np.testing.assert_allclose(both_metrics[name], 0.5 * (metrics_a[name] + metrics_b[name]), rtol=1e-5)


def test_update_draws_fresh_keys(state):
    # The update's two policy samples use two keys split from its key, none of them the key itself (traced only:
    # each key seen is a distinct tracer).
    policy_net = SquashedGaussianActor(act_dim=ACT_DIM, hidden=SMALL.hidden)
    critic_net = DoubleCritic(max_u=SMALL.max_u, hidden=SMALL.hidden)
    seen = []

    def recording_sample(params, obs, goal, key):
        seen.append(key)
        return sample_policy(params, obs, goal, key, policy_apply=policy_net.apply, max_u=SMALL.max_u)

    adam = optax.adam(1e-3)
    step = functools.partial(
        update_step, policy_sample=recording_sample, critic_apply=critic_net.apply, actor_optimizer=adam,
        critic_optimizer=adam, alpha_optimizer=adam, gamma=0.98, clip_return=50.0, target_entropy=-2.0,
        clip_obs=200.0, norm_eps=0.01, norm_clip=5.0,
    )

    def traced(state, transitions, key):
        seen.append(key)
        return step(state, transitions, key)

    jax.make_jaxpr(traced)(state, random_transitions(1, 8), jax.random.PRNGKey(0))
    assert len(seen) == 3
    assert len({id(k) for k in seen}) == 3


def test_greedy_act_and_value(agent, state):
    batch = random_transitions(6, 16)
    obs, goal = 50.0 * batch.obs, batch.desired_goal  # large inputs push tanh to the bounds
    greedy = jax.jit(agent.greedy)
    a1, a2 = greedy(state, obs, goal), greedy(state, obs, goal)
    assert a1.shape == (16, ACT_DIM)
    np.testing.assert_array_equal(a1, a2)
    assert float(jnp.max(jnp.abs(a1))) <= SMALL.max_u
    # The squashed mean in env units: with fresh statistics (mean 0, std 1) the network sees the inputs clipped
    # to +-norm_clip = 5.
    mean, _ = SquashedGaussianActor(act_dim=ACT_DIM, hidden=SMALL.hidden).apply(state.actor, jnp.clip(obs, -5, 5),
                                                                                  goal)
    np.testing.assert_allclose(a1, SMALL.max_u * np.tanh(mean), rtol=1e-5, atol=1e-6)

    act = jax.jit(agent.act)
    s1 = act(state, obs, goal, jax.random.PRNGKey(8))
    s2 = act(state, obs, goal, jax.random.PRNGKey(9))
    np.testing.assert_array_equal(s1, act(state, obs, goal, jax.random.PRNGKey(8)))
    assert s1.shape == (16, ACT_DIM)
    assert float(jnp.max(jnp.abs(s1 - s2))) > 1e-3
    assert float(jnp.max(jnp.abs(s1))) <= SMALL.max_u
    assert float(jnp.max(jnp.abs(s1 - a1))) > 1e-3  # a sample, not the mean

    q = agent.value(state, obs, goal, a1)
    assert q.shape == (16,) and bool(jnp.all(jnp.isfinite(q)))
