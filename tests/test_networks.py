"""Tests of the network keys every agent shares (``activation``, ``layer_norm``, ``network``; PPO's
``shared_torso``): what each puts in the parameter tree and the forward pass, the one-line config errors, and two
real FetchReach runs (layer norm; the example residual MLP) that must learn."""

import os
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import herjax.policy
from agenttools import random_transitions
from runtools import finishes
from herjax import config, export
from herjax.agents.common import networks
from herjax.agents.ddpg import DDPGConfig, make_ddpg
from herjax.agents.ppo import PPOBatch, PPOConfig, make_ppo
from herjax.agents.sac import SACConfig, make_sac
from herjax.agents.td3 import TD3Config, make_td3
from herjax.train import reached, train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # ``examples`` is imported by path, as ``python -m`` from the repository would find it
    sys.path.insert(0, REPO)

RESIDUAL = "examples.networks:ResidualMLP"
SIZES = dict(obs_dim=10, goal_dim=3, act_dim=4)
SMALL = (32, 32)


def off_policy(make, cfg):
    return make(cfg, horizon=50, **SIZES)


def inputs(key, n=16, scale=1.0):
    obs_key, goal_key = jax.random.split(key)
    return scale * jax.random.normal(obs_key, (n, SIZES["obs_dim"])), jax.random.normal(goal_key, (n, 3))


def names(tree):
    """The nested keys of a parameter dict, without the leaves: ``{name: {...}}``."""
    return {k: names(v) for k, v in tree.items()} if isinstance(tree, dict) else None


def test_default_parameter_trees_keep_their_names():
    """Old checkpoints must still load: with the defaults no module is added or renamed."""
    mlp = {f"Dense_{i}": {"bias": None, "kernel": None} for i in range(4)}
    ddpg = off_policy(make_ddpg, DDPGConfig()).init(jax.random.key(0))
    assert names(ddpg.actor.online["params"]) == {"MLP_0": mlp}
    assert names(ddpg.critic.online["params"]) == {"MLP_0": mlp}
    sac = off_policy(make_sac, SACConfig()).init(jax.random.key(0))
    assert names(sac.actor["params"]) == {"MLP_0": mlp}
    assert names(sac.critic.online["params"]) == {"VmapCritic_0": {"MLP_0": mlp}}
    ppo = make_ppo(PPOConfig(), total_updates=10, **SIZES).init(jax.random.key(0))
    mlp3 = {f"Dense_{i}": {"bias": None, "kernel": None} for i in range(3)}
    assert names(ppo.params.policy["params"]) == {"MLP_0": mlp3, "log_std": None}
    assert names(ppo.params.value["params"]) == mlp3


def test_layer_norm_sits_between_each_hidden_dense_and_its_activation():
    plain = off_policy(make_ddpg, DDPGConfig(hidden=SMALL))
    normed = off_policy(make_ddpg, DDPGConfig(hidden=SMALL, layer_norm=True))
    plain_state, state = plain.init(jax.random.key(0)), normed.init(jax.random.key(0))
    for pair in ("actor", "critic"):
        got = names(getattr(state, pair).online["params"]["MLP_0"])
        assert set(got) == {"Dense_0", "Dense_1", "Dense_2", "LayerNorm_0", "LayerNorm_1"}, got
        assert got["LayerNorm_0"] == {"scale": None, "bias": None}
    obs, goal = inputs(jax.random.key(1), scale=3.0)
    # The Dense layers are initialised alike (same names, same key), so only the layer norm tells them apart.
    params = state.actor.online["params"]["MLP_0"]
    for i in range(3):
        np.testing.assert_array_equal(params[f"Dense_{i}"]["kernel"],
                                      plain_state.actor.online["params"]["MLP_0"][f"Dense_{i}"]["kernel"])
    greedy, plain_greedy = normed.greedy(state, obs, goal), plain.greedy(plain_state, obs, goal)
    assert not np.allclose(greedy, plain_greedy, atol=1e-3)
    # By hand: relu(LN(Dense(x))) twice, then the linear output under max_u * tanh (no statistics yet: the
    # normaliser only clips, to +-5).
    x = jnp.clip(jnp.concatenate([obs, goal], axis=-1), -5.0, 5.0)
    for i in range(2):
        x = x @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"]
        x = (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + 1e-6)
        x = jax.nn.relu(x * params[f"LayerNorm_{i}"]["scale"] + params[f"LayerNorm_{i}"]["bias"])
    want = jnp.tanh(x @ params["Dense_2"]["kernel"] + params["Dense_2"]["bias"])
    np.testing.assert_allclose(greedy, want, atol=1e-5)
    q = normed.value(state, obs, goal, greedy)
    assert q.shape == (16,) and np.all(np.isfinite(q))


def test_layer_norm_reaches_every_agent():
    for make, cfg in ((make_td3, TD3Config), (make_sac, SACConfig)):
        state = off_policy(make, cfg(hidden=SMALL, layer_norm=True)).init(jax.random.key(0))
        actor = state.actor["params"] if make is make_sac else state.actor.online["params"]
        assert "LayerNorm_1" in actor["MLP_0"]
        assert "LayerNorm_1" in state.critic.online["params"]["VmapCritic_0"]["MLP_0"]
    ppo = make_ppo(PPOConfig(hidden=SMALL, layer_norm=True), total_updates=10, **SIZES).init(jax.random.key(0))
    assert "LayerNorm_1" in ppo.params.policy["params"]["MLP_0"] and "LayerNorm_1" in ppo.params.value["params"]


@pytest.mark.parametrize("name", networks.ACTIVATION_NAMES)
def test_every_activation_name_works(name):
    fn = networks.ACTIVATIONS[name]
    agent = off_policy(make_ddpg, DDPGConfig(hidden=(16,), activation=name))
    state = agent.init(jax.random.key(0))
    obs, goal = inputs(jax.random.key(1))
    params = state.actor.online["params"]["MLP_0"]
    x = jnp.clip(jnp.concatenate([obs, goal], -1), -5.0, 5.0)  # no statistics yet: the normaliser only clips
    x = fn(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    want = jnp.tanh(x @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"])
    np.testing.assert_allclose(agent.greedy(state, obs, goal), want, atol=1e-6)
    assert config.load([f"ddpg.activation={name}"]).ddpg.activation == name
    assert config.load(["alg=ppo", f"ppo.activation={name}"]).ppo.activation == name
    # herjax.export's NumPy twin of the table computes the same function.
    z = np.linspace(-6.0, 6.0, 241, dtype=np.float32)
    np.testing.assert_allclose(export.ACTIVATIONS[name](z), np.asarray(fn(jnp.asarray(z))), atol=1e-6)


def test_activation_tables_agree():
    assert set(export.ACTIVATIONS) == set(networks.ACTIVATION_NAMES)
    assert {"relu", "tanh", "elu", "gelu", "silu", "swish", "leaky_relu"} <= set(networks.ACTIVATION_NAMES)


def test_defaults_stay_each_algorithms_own():
    cfg = config.load([])
    assert (cfg.ddpg.activation, cfg.td3.activation, cfg.sac.activation, cfg.ppo.activation) == (
        "relu", "relu", "relu", "tanh")
    for section in (cfg.ddpg, cfg.td3, cfg.sac, cfg.ppo):
        assert section.layer_norm is False and section.network is None
    assert cfg.ppo.shared_torso is False


def test_custom_network_replaces_the_mlp_in_actor_and_critics():
    obs, goal = inputs(jax.random.key(1))
    for make, cfg in ((make_ddpg, DDPGConfig), (make_td3, TD3Config), (make_sac, SACConfig)):
        agent = off_policy(make, cfg(hidden=SMALL, network=RESIDUAL))
        state = agent.init(jax.random.key(0))
        actor = state.actor["params"] if make is make_sac else state.actor.online["params"]
        assert set(actor) == {"ResidualMLP_0"}
        critic = state.critic.online["params"]
        critic = critic if make is make_ddpg else critic["VmapCritic_0"]
        assert set(critic) == {"ResidualMLP_0"}
        assert set(actor["ResidualMLP_0"]) == {"Dense_0", "Dense_1", "Dense_2"}
        action = agent.greedy(state, obs, goal)
        assert action.shape == (16, 4) and np.all(np.abs(action) <= 1.0)
        assert np.all(np.isfinite(agent.value(state, obs, goal, action)))
    ppo = make_ppo(PPOConfig(hidden=SMALL, network=RESIDUAL), total_updates=10, **SIZES).init(jax.random.key(0))
    assert set(ppo.params.policy["params"]) == {"ResidualMLP_0", "log_std"}
    assert set(ppo.params.value["params"]) == {"Dense_0", "Dense_1", "Dense_2"}  # the module itself, at the top


def test_custom_network_gets_activation_and_layer_norm_only_if_it_declares_them(tmp_path, monkeypatch):
    (tmp_path / "my_nets.py").write_text(textwrap.dedent("""
        from typing import Any, Sequence
        import flax.linen as nn

        SEEN = []

        class Declares(nn.Module):
            hidden: Sequence[int]
            out_dim: int
            activation: Any = None
            layer_norm: Any = None

            @nn.compact
            def __call__(self, x):
                SEEN.append((self.hidden, self.out_dim, self.activation, self.layer_norm))
                return nn.Dense(self.out_dim)(x)

        class Minimal(nn.Module):
            hidden: Sequence[int]
            out_dim: int

            @nn.compact
            def __call__(self, x):
                return nn.Dense(self.out_dim)(self.hidden[0] * x)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    import my_nets

    agent = off_policy(make_ddpg, DDPGConfig(hidden=SMALL, activation="elu", layer_norm=True,
                                             network="my_nets:Declares"))
    agent.init(jax.random.key(0))
    assert (SMALL, 4, networks.ACTIVATIONS["elu"], True) in my_nets.SEEN  # the actor
    assert (SMALL, 1, networks.ACTIVATIONS["elu"], True) in my_nets.SEEN  # the critic
    state = off_policy(make_ddpg, DDPGConfig(hidden=SMALL, layer_norm=True, network="my_nets:Minimal")).init(
        jax.random.key(0))
    assert set(state.actor.online["params"]) == {"Minimal_0"}
    assert config.load(["ddpg.network=my_nets:Minimal"]).ddpg.network == "my_nets:Minimal"


def test_ppo_shared_torso_is_one_torso_with_two_heads():
    cfg = PPOConfig(hidden=SMALL, shared_torso=True, n_minibatches=1, n_epochs=1)
    agent = make_ppo(cfg, total_updates=10, **SIZES)
    state = agent.init(jax.random.key(0))
    assert state.params.value is None
    params = state.params.policy["params"]
    assert set(params) == {"trunk", "policy_head", "value_head", "log_std"}
    assert set(params["trunk"]) == {"Dense_0", "Dense_1"}  # the hidden layers only: the heads are the outputs
    obs, goal = inputs(jax.random.key(1))
    # Both heads read the same torso features.
    x = jnp.clip(jnp.concatenate([obs, goal], -1), -5.0, 5.0)
    for i in range(2):
        x = jnp.tanh(x @ params["trunk"][f"Dense_{i}"]["kernel"] + params["trunk"][f"Dense_{i}"]["bias"])
    head = lambda name: x @ params[name]["kernel"] + params[name]["bias"]
    np.testing.assert_allclose(agent.greedy(state, obs, goal), jnp.tanh(head("policy_head")), atol=1e-6)
    np.testing.assert_allclose(agent.value(state, obs, goal), head("value_head")[:, 0], atol=1e-6)
    # An update moves the torso and both heads (the torso's gradient has the policy's and the value's parts).
    horizon, n_envs = 5, 2
    keys = jax.random.split(jax.random.key(2), 4)
    t = random_transitions(keys[0], horizon * n_envs, **SIZES)
    shape = lambda leaf: leaf.reshape((horizon, n_envs) + leaf.shape[1:])
    batch = PPOBatch(
        obs=shape(t.obs), goal=shape(t.desired_goal), raw_action=shape(t.action),
        log_prob=jax.random.normal(keys[1], (horizon, n_envs)), value=jnp.zeros((horizon, n_envs)),
        advantage=jax.random.normal(keys[2], (horizon, n_envs)),
        target_return=jax.random.normal(keys[3], (horizon, n_envs)),
    )
    new, metrics = agent.update(state, batch, jax.random.key(3))
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), new.params.policy["params"], params)
    assert all(jax.tree.leaves(moved)), moved
    assert np.isfinite(float(metrics["critic_loss"]))
    # The value loss alone moves the torso.
    value_grad = jax.grad(lambda p: jnp.sum(agent.value(state.replace(params=state.params._replace(policy=p)),
                                                        obs, goal)))(state.params.policy)
    assert float(jnp.abs(value_grad["params"]["trunk"]["Dense_0"]["kernel"]).sum()) > 0


@pytest.mark.parametrize("args, fragments", [
    (["ddpg.activation=sigmoid"], ["'sigmoid'", "ddpg.activation", "valid: relu, tanh"]),
    (["alg=ppo", "ppo.activation=swsh"], ["'swsh'", "ppo.activation", "did you mean 'swish'"]),
    (["ddpg.network=no_such_pkg.nets:Net"], ["'no_such_pkg.nets:Net'", "ddpg.network", "not found"]),
    (["alg=sac_her", "sac.network=examples.networks:Nope"], ["sac.network", "has no attribute 'Nope'"]),
    (["alg=td3_her", "td3.network=flax.linen:relu"], ["td3.network", "not a flax.linen.Module subclass"]),
    (["alg=ppo", "ppo.network=flax.linen:Dense"], ["ppo.network", "no field hidden or out_dim"]),
    (["ddpg.network=examples.networks.ResidualMLP"], ["ddpg.network", "expected 'package.module:ClassName'"]),
])
def test_bad_network_keys_give_one_line_config_errors(args, fragments):
    with pytest.raises(config.ConfigError) as info:
        config.load(args)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message


def fetch_reach(extra, tmp_path_factory, name):
    run_dir = str(tmp_path_factory.mktemp(name) / "run")
    return train(["env=fetch_reach", "seed=0", "total_env_steps=10000", "stop_success=0.9", f"run_dir={run_dir}"]
                 + extra, log=None)


def test_fetch_reach_learns_with_layer_norm(tmp_path_factory):
    result = fetch_reach(["ddpg.layer_norm=true"], tmp_path_factory, "layer_norm")
    successes = [row["test/success_rate"] for row in result.history]
    assert reached(max(successes), 0.9), successes
    assert "LayerNorm_2" in result.state.agent.critic.online["params"]["MLP_0"]


def test_fetch_reach_learns_with_a_residual_mlp(tmp_path_factory):
    result = fetch_reach([f"ddpg.network={RESIDUAL}"], tmp_path_factory, "residual")
    successes = [row["test/success_rate"] for row in result.history]
    assert reached(max(successes), 0.9), successes
    assert set(result.state.agent.actor.online["params"]) == {"ResidualMLP_0"}
    # The run plays back from its checkpoint like any other.
    policy = herjax.policy.load(result.run_dir)
    obs, goal = inputs(jax.random.key(0), n=3)
    action = policy({"observation": np.asarray(obs), "desired_goal": np.asarray(goal)})
    np.testing.assert_allclose(action, jax.jit(result.trainer.policy)(result.state, obs, goal), atol=1e-6)


def test_orthogonal_init_equals_flax_and_never_deadlocks_under_vmap():
    """PPO's orthogonal initialiser gives flax's values, alone and under (nested) ``jax.vmap``; and a vmapped init
    of six orthogonal layers, run 300 times, finishes. With flax's own initialiser that program hangs on 2 CPU
    cores within seconds (two batched LAPACK QRs each block a thread of XLA's pool while waiting on the pool), so
    it runs in a subprocess with a deadline."""
    import flax.linen as nn

    keys = jax.random.split(jax.random.key(0), 6)
    for shape, scale in [((10, 64), 1.4), ((64, 64), 0.01), ((256, 4), 1.0)]:
        ours, theirs = networks.orthogonal(scale), nn.initializers.orthogonal(scale)
        np.testing.assert_array_equal(ours(keys[0], shape), theirs(keys[0], shape))
        np.testing.assert_array_equal(jax.jit(jax.vmap(lambda k: ours(k, shape)))(keys),
                                      jax.jit(jax.vmap(lambda k: theirs(k, shape)))(keys))
        np.testing.assert_array_equal(jax.vmap(jax.vmap(lambda k: ours(k, shape)))(keys.reshape(2, 3)),
                                      jax.vmap(jax.vmap(lambda k: theirs(k, shape)))(keys.reshape(2, 3)))
    finishes("""
        import jax
        from herjax.agents.common.networks import orthogonal
        init = orthogonal(1.4)
        layers = jax.jit(jax.vmap(lambda k: [init(s, (16 + 8 * i, 64)) for i, s in enumerate(jax.random.split(k, 6))]))
        for i in range(300):
            jax.block_until_ready(layers(jax.random.split(jax.random.key(i), 2)))
        print("finished")
    """, 120, "a vmapped orthogonal init, the batched-QR deadlock")
