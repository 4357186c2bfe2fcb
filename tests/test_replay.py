"""Tests of HER sampling and the episode ring buffer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from herjax.replay import (
    STRATEGIES,
    Episodes,
    future_p_from_replay_k,
    make_her_buffer,
    sample_her_transitions,
)

T = 10
OBS_DIM, GOAL_DIM, ACT_DIM = 2, 3, 2
# Goal coordinate 0 encodes where a goal came from: achieved goals hold
# ID_STRIDE * episode_id + t (>= 0), original desired goals hold -(that) - 1.
ID_STRIDE = 100


def compute_reward(ag, g):
    return -(jnp.linalg.norm(ag - g, axis=-1) > 0.05).astype(jnp.float32)


def make_episodes(n_episodes, first_id=0, seed=0):
    """Episodes whose entries decode to (episode id, time index)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(first_id, first_id + n_episodes, dtype=np.float32)[:, None]
    steps = np.arange(T + 1, dtype=np.float32)[None, :]
    code = ID_STRIDE * ids + steps  # [B, T+1]
    obs = np.stack([np.broadcast_to(ids, code.shape), np.broadcast_to(steps, code.shape)], -1)
    ag = np.concatenate([code[..., None], rng.normal(size=code.shape + (GOAL_DIM - 1,))], -1)
    dg = np.concatenate(
        [-code[:, :T, None] - 1.0, rng.normal(size=(n_episodes, T, GOAL_DIM - 1))], -1
    )
    action = np.stack([code[:, :T], -code[:, :T]], -1)
    return Episodes(
        obs=jnp.asarray(obs, jnp.float32),
        achieved_goal=jnp.asarray(ag, jnp.float32),
        desired_goal=jnp.asarray(dg, jnp.float32),
        action=jnp.asarray(action, jnp.float32),
    )


def decode(tr):
    """(episode id, t, relabelled mask, goal time index or -1) as numpy arrays."""
    ep = np.asarray(tr.obs[:, 0]).astype(int)
    t = np.asarray(tr.obs[:, 1]).astype(int)
    g0 = np.asarray(tr.desired_goal[:, 0])
    relabelled = g0 >= 0
    goal_t = np.where(relabelled, np.round(g0).astype(int) - ID_STRIDE * ep, -1)
    return ep, t, relabelled, goal_t


def sample(strategy, n=4000, key=0, future_p=0.8, episodes=None, **kw):
    episodes = make_episodes(8) if episodes is None else episodes
    return sample_her_transitions(
        episodes,
        jax.random.key(key),
        n,
        compute_reward=compute_reward,
        strategy=strategy,
        future_p=future_p,
        **kw,
    )


def assert_fraction(mask, p):
    n = mask.size
    se = np.sqrt(p * (1 - p) / n)
    assert abs(mask.mean() - p) < 3 * se, (mask.mean(), p, se)


def test_future_p_from_replay_k():
    assert future_p_from_replay_k(4) == pytest.approx(0.8)
    assert future_p_from_replay_k(1) == pytest.approx(0.5)
    assert future_p_from_replay_k(0) == 0.0


@pytest.mark.parametrize("replay_k", [4, 1])
def test_future_relabelled_fraction(replay_k):
    tr = sample("future", future_p=future_p_from_replay_k(replay_k))
    _, _, relabelled, _ = decode(tr)
    assert_fraction(relabelled, replay_k / (replay_k + 1))


def test_future_goals_come_from_later_steps():
    tr = sample("future")
    _, t, relabelled, goal_t = decode(tr)
    assert np.all(goal_t[relabelled] > t[relabelled])
    assert np.all(goal_t[relabelled] <= T)
    # From t = 0 every later index 1..T must be reachable.
    from_start = goal_t[relabelled & (t == 0)]
    assert set(from_start.tolist()) == set(range(1, T + 1))
    # Offsets t+1 (the very next achieved goal) and T both occur.
    assert np.any(goal_t[relabelled] == t[relabelled] + 1)
    assert np.any((goal_t[relabelled] == T) & (t[relabelled] < T - 1))


def test_transition_fields_are_aligned():
    episodes = make_episodes(8)
    tr = sample("future", episodes=episodes)
    ep, t, _, _ = decode(tr)
    np.testing.assert_array_equal(tr.obs, episodes.obs[ep, t])
    np.testing.assert_array_equal(tr.next_obs, episodes.obs[ep, t + 1])
    np.testing.assert_array_equal(tr.achieved_goal, episodes.achieved_goal[ep, t])
    np.testing.assert_array_equal(tr.next_achieved_goal, episodes.achieved_goal[ep, t + 1])
    np.testing.assert_array_equal(tr.action, episodes.action[ep, t])
    assert set(np.unique(ep).tolist()) == set(range(8))
    assert set(np.unique(t).tolist()) == set(range(T))


def test_rewards_use_next_achieved_goal_and_relabelled_goal():
    tr = sample("future")
    expected = compute_reward(tr.next_achieved_goal, tr.desired_goal)
    assert tr.reward.dtype == jnp.float32
    assert tr.reward.shape == (4000,)
    np.testing.assert_array_equal(tr.reward, expected)
    _, t, relabelled, goal_t = decode(tr)
    hit = relabelled & (goal_t == t + 1)
    # Exactly the goals relabelled to the next achieved goal are reached.
    np.testing.assert_array_equal(np.asarray(tr.reward) == 0.0, hit)
    assert hit.any() and (~hit).any()


def test_final_strategy():
    tr = sample("final")
    _, _, relabelled, goal_t = decode(tr)
    assert_fraction(relabelled, 0.8)
    assert np.all(goal_t[relabelled] == T)


def test_episode_strategy():
    tr = sample("episode")
    _, t, relabelled, goal_t = decode(tr)
    assert_fraction(relabelled, 0.8)
    assert set(goal_t[relabelled].tolist()) == set(range(1, T + 1))
    # Not restricted to the future: past and current-step goals occur.
    assert np.any(goal_t[relabelled] <= t[relabelled])


def test_none_strategy_keeps_goals():
    episodes = make_episodes(8)
    tr = sample("none", episodes=episodes, future_p=1.0)
    ep, t, relabelled, _ = decode(tr)
    assert not relabelled.any()
    np.testing.assert_array_equal(tr.desired_goal, episodes.desired_goal[ep, t])
    np.testing.assert_array_equal(tr.reward, -np.ones(4000, np.float32))


def test_bad_strategy_raises():
    with pytest.raises(ValueError, match="bogus") as info:
        sample("bogus", n=4)
    for name in STRATEGIES:
        assert name in str(info.value)
    with pytest.raises(ValueError, match="'bogus'.*future.*final.*episode.*none"):
        make_her_buffer(
            capacity=100, horizon=T, obs_dim=OBS_DIM, goal_dim=GOAL_DIM,
            act_dim=ACT_DIM, compute_reward=compute_reward, strategy="bogus",
        )


def test_keys_determine_batches():
    a = sample("future", n=256, key=1)
    b = sample("future", n=256, key=1)
    c = sample("future", n=256, key=2)
    jax.tree.map(np.testing.assert_array_equal, a, b)
    assert not np.array_equal(a.obs, c.obs)
    assert not np.array_equal(a.desired_goal, c.desired_goal)


def test_n_valid_limits_episodes_and_jits():
    episodes = make_episodes(8)
    fn = jax.jit(
        lambda key, n_valid: sample_her_transitions(
            episodes, key, 1000, compute_reward=compute_reward, n_valid=n_valid
        )
    )
    ep, _, _, _ = decode(fn(jax.random.key(0), jnp.int32(3)))
    assert set(np.unique(ep).tolist()) == {0, 1, 2}


def make_buffer(n_slots=5, **kw):
    return make_her_buffer(
        capacity=n_slots * T + T // 2,  # a partial episode's worth is dropped
        horizon=T,
        obs_dim=OBS_DIM,
        goal_dim=GOAL_DIM,
        act_dim=ACT_DIM,
        compute_reward=compute_reward,
        **kw,
    )


def test_ring_wraparound_keeps_newest():
    n_slots, batch = 5, 2
    buffer = make_buffer(n_slots)
    state = buffer.init()
    assert state.episodes.obs.shape == (n_slots, T + 1, OBS_DIM)
    add = jax.jit(buffer.add)
    total = 0
    for i in range(7):
        new = make_episodes(batch, first_id=total, seed=i)
        state = add(state, new)
        total += batch
        assert int(state.size) == min(total, n_slots)
        assert int(state.insert_pos) == total % n_slots
        assert state.insert_pos.dtype == jnp.int32 and state.size.dtype == jnp.int32
        jax.tree.map(lambda x: np.testing.assert_equal(x.dtype, np.float32), state.episodes)
        stored_ids = np.asarray(state.episodes.obs[: int(state.size), 0, 0]).astype(int)
        # Episode id k lives in slot k mod n_slots; the newest ones survive.
        newest = list(range(max(0, total - n_slots), total))
        assert sorted(stored_ids.tolist()) == newest
        for k in newest:
            assert stored_ids[k % n_slots] == k
        np.testing.assert_array_equal(
            state.episodes.desired_goal[(total - 1) % n_slots], new.desired_goal[-1]
        )


def test_add_whole_ring_and_reject_oversized_batch():
    buffer = make_buffer(4)
    state = buffer.add(buffer.init(), make_episodes(3))
    state = buffer.add(state, make_episodes(4, first_id=3))
    assert int(state.size) == 4 and int(state.insert_pos) == 3
    ids = np.asarray(state.episodes.obs[:, 0, 0]).astype(int)
    np.testing.assert_array_equal(ids, [4, 5, 6, 3])
    with pytest.raises(ValueError, match="5 episodes"):
        buffer.add(state, make_episodes(5))


def test_add_casts_to_storage_dtype():
    buffer = make_buffer(3)
    episodes = jax.tree.map(lambda x: np.asarray(x, np.float64), make_episodes(2))
    state = buffer.add(buffer.init(), episodes)
    jax.tree.map(lambda x: np.testing.assert_equal(x.dtype, np.float32), state.episodes)


def test_buffer_samples_only_valid_episodes():
    buffer = make_buffer(5, replay_k=1)
    state = buffer.add(buffer.init(), make_episodes(2, first_id=7))
    sample_fn = jax.jit(buffer.sample, static_argnums=2)
    tr = sample_fn(state, jax.random.key(3), 4000)
    ep, t, relabelled, goal_t = decode(tr)
    assert set(np.unique(ep).tolist()) == {7, 8}
    assert_fraction(relabelled, 0.5)
    assert np.all((goal_t[relabelled] > t[relabelled]) & (goal_t[relabelled] <= T))
    np.testing.assert_array_equal(
        tr.reward, compute_reward(tr.next_achieved_goal, tr.desired_goal)
    )


def test_one_step_keeps_baselines_transitions():
    tr = sample("future")
    assert tr.discount is None  # the agent's gamma: the targets of n_step=1 are unchanged


@pytest.mark.parametrize("n_step", [2, 3, T])
def test_n_step_returns_sum_discounted_rewards_to_the_episode_end(n_step):
    gamma = 0.9
    episodes = make_episodes(8)
    tr = sample("future", episodes=episodes, n_step=n_step, gamma=gamma)
    ep, t, _, _ = decode(tr)
    k = np.minimum(n_step, T - t)
    ag = np.asarray(episodes.achieved_goal)
    expected = np.zeros(len(t))
    for i in range(len(t)):  # by hand: the relabelled goal held for k steps, cut at T
        for j in range(k[i]):
            expected[i] += gamma**j * float(compute_reward(ag[ep[i], t[i] + 1 + j], tr.desired_goal[i]))
    np.testing.assert_allclose(tr.reward, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(tr.discount, gamma**k, rtol=1e-6)
    np.testing.assert_array_equal(tr.next_obs, episodes.obs[ep, t + k])
    np.testing.assert_array_equal(tr.next_achieved_goal, episodes.achieved_goal[ep, t + k])
    assert (k < n_step).any() and (tr.reward < -1).any()  # some returns were cut, some summed several rewards
