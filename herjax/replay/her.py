"""Hindsight Experience Replay: episode storage and goal relabelling.

Semantics follow openai/baselines ``her/her_sampler.py`` and
``her/replay_buffer.py``. An episode of horizon ``T`` stores ``T + 1``
observations and achieved goals (the state before the first action and after
every action) and ``T`` actions and desired goals.

Everything here is a pure function of arrays; sizes (horizon, dims, capacity,
batch size) are static.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Union

import chex
import flax.struct
import jax
import jax.numpy as jnp

from herjax.types import Episodes, RewardFn, Transitions

STRATEGIES = ("future", "final", "episode", "none")


@flax.struct.dataclass
class BufferState:
    """Ring buffer of whole episodes.

    Attributes:
        episodes: ``Episodes`` whose leading axis is the ring, ``[E, ...]`` with
            ``E = capacity // horizon``. Slots ``[0, size)`` hold valid data.
        insert_pos: ``[]`` int32, the slot the next episode is written to.
        size: ``[]`` int32, number of valid episodes, ``<= E``.
    """

    episodes: Episodes
    insert_pos: jax.Array
    size: jax.Array


class HerBuffer(NamedTuple):
    """Pure functions of a HER replay buffer (see ``make_her_buffer``).

    Attributes:
        init: ``() -> BufferState``, an empty buffer.
        add: ``(state, episodes, n_new=None) -> state``, writes ``B <= E`` episodes (or the first ``n_new``) into
            the ring.
        sample: ``(state, key, batch_size) -> Transitions``; ``batch_size`` is static.
    """

    init: Callable[[], BufferState]
    add: Callable[..., BufferState]
    sample: Callable[[BufferState, jax.Array, int], Transitions]


def validate_strategy(strategy: str) -> str:
    """Returns ``strategy`` if it is a known relabelling strategy.

    Raises:
        ValueError: naming the bad value and the valid choices.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown replay strategy {strategy!r}; valid choices are {list(STRATEGIES)}"
        )
    return strategy


def future_p_from_replay_k(replay_k: float) -> float:
    """Fraction of relabelled transitions for a given ``replay_k`` (baselines).

    ``replay_k`` relabelled goals per original one gives ``1 - 1 / (1 + replay_k)``,
    e.g. 0.8 for ``replay_k = 4``.
    """
    if replay_k < 0:
        raise ValueError(f"replay_k must be >= 0, got {replay_k}")
    return 1.0 - 1.0 / (1.0 + replay_k)


def episode_capacity(capacity: int, horizon: int) -> int:
    """Number of whole episodes a buffer of ``capacity`` transitions holds."""
    return capacity // horizon


def sample_her_transitions(
    episodes: Episodes,
    key: jax.Array,
    batch_size: int,
    *,
    compute_reward: RewardFn,
    strategy: str = "future",
    future_p: float = 0.8,
    n_valid: Optional[Union[int, jax.Array]] = None,
    n_step: int = 1,
    gamma: float = 1.0,
) -> Transitions:
    """Samples transitions uniformly from episodes and relabels goals.

    Each sample draws an episode ``i ~ U{0..n_valid-1}`` and a step
    ``t ~ U{0..T-1}``. With probability ``future_p`` its goal is replaced by an
    achieved goal of the same episode, chosen by ``strategy``:

    * ``"future"``: ``ag[i, f]`` with ``f ~ U{t+1..T}`` (baselines), i.e. a goal
      achieved later in the episode, at or after the next observation.
    * ``"final"``: ``ag[i, T]``, the goal achieved at the end of the episode.
    * ``"episode"``: ``ag[i, k]`` with ``k ~ U{1..T}``, independent of ``t``. Index 0
      is excluded because it is achieved before any action; ``{1..T}`` are the
      goals achieved by the episode's transitions (the HER paper's "random
      states from the same episode"), matching the range ``future`` draws from.
    * ``"none"``: no relabelling; ``future_p`` is ignored.

    The reward is recomputed as ``compute_reward(next_achieved_goal, goal)``
    for every sample (relabelled or not), as baselines does with ``ag_2``.

    Args:
        episodes: ``Episodes`` with ``obs [E, T+1, obs_dim]``, ``achieved_goal
            [E, T+1, goal_dim]``, ``desired_goal [E, T, goal_dim]``, ``action [E, T, act_dim]``.
        key: PRNG key.
        batch_size: static number of transitions ``N`` to return.
        compute_reward: pure ``(ag [..., goal_dim], g [..., goal_dim]) -> [...]``.
        strategy: one of ``"future"``, ``"final"``, ``"episode"``, ``"none"``.
        future_p: probability of relabelling a sample.
        n_valid: only episodes ``[0, n_valid)`` are sampled (int or ``[]`` int
            array; must be >= 1). ``None`` means all ``E``.
        n_step: static; above 1, ``k = min(n_step, T - t)`` steps: ``reward`` is
            ``sum_j gamma**j * compute_reward(ag[t + 1 + j], goal)`` for ``j < k``
            (the relabelled goal throughout), ``next_obs`` and ``next_achieved_goal``
            are those of ``t + k``, and ``discount`` is ``gamma**k``. 1: one step
            and ``discount`` ``None`` (the agent's gamma), as baselines.
        gamma: the discount of an n-step return.

    Returns:
        ``Transitions`` with leading dimension ``N = batch_size``.
    """
    validate_strategy(strategy)
    n_episodes, horizon = _check_episodes(episodes)
    if n_valid is None:
        n_valid = n_episodes
    # An empty buffer would make randint's range empty; sampling it is a caller
    # error, but keep the indices in bounds rather than reading garbage slots.
    n_valid = jnp.maximum(jnp.asarray(n_valid, jnp.int32), 1)

    episode_key, t_key, her_key, goal_key = jax.random.split(key, 4)
    episode_idx = jax.random.randint(episode_key, (batch_size,), 0, n_valid)
    t = jax.random.randint(t_key, (batch_size,), 0, horizon)
    return relabel_transitions(
        episodes, episode_idx, t, her_key, goal_key, compute_reward=compute_reward, strategy=strategy,
        future_p=future_p, n_step=n_step, gamma=gamma,
    )


def _check_episodes(episodes: Episodes) -> tuple[int, int]:
    """``(E, T)`` of a batch of episodes whose fields are shaped alike, or a chex error."""
    chex.assert_rank(
        [episodes.obs, episodes.achieved_goal, episodes.desired_goal, episodes.action], 3
    )
    n_episodes, horizon = episodes.action.shape[:2]
    chex.assert_equal_shape_prefix([episodes.desired_goal, episodes.action], 2)
    chex.assert_shape(
        [episodes.obs, episodes.achieved_goal], (n_episodes, horizon + 1, None)
    )
    return n_episodes, horizon


def relabel_transitions(
    episodes: Episodes,
    episode_idx: jax.Array,
    t: jax.Array,
    her_key: jax.Array,
    goal_key: jax.Array,
    *,
    compute_reward: RewardFn,
    strategy: str = "future",
    future_p: float = 0.8,
    n_step: int = 1,
    gamma: float = 1.0,
) -> Transitions:
    """The transitions ``(episode_idx, t)`` of ``episodes``, their goals relabelled as ``sample_her_transitions``
    describes; how the indices were drawn (uniformly, or by priority) is the caller's.

    Args:
        episodes: ``Episodes`` ``[E, ...]``.
        episode_idx: ``[N]`` int, episodes.
        t: ``[N]`` int in ``[0, T)``, steps.
        her_key: PRNG key of the coin that picks the samples to relabel.
        goal_key: PRNG key of the relabelled goals' steps.
        compute_reward: pure ``(ag [..., goal_dim], g [..., goal_dim]) -> [...]``.
        strategy: one of ``STRATEGIES``.
        future_p: probability of relabelling a sample.
        n_step: static, steps of the returns (``sample_her_transitions``).
        gamma: their discount.

    Returns:
        ``Transitions`` ``[N]``.
    """
    _, horizon = _check_episodes(episodes)
    batch_size = episode_idx.shape[0]
    goal = episodes.desired_goal[episode_idx, t]
    if strategy != "none":
        relabel = jax.random.uniform(her_key, (batch_size,)) < future_p
        if strategy == "future":
            # Same distribution as baselines' t + 1 + floor(U * (T - t)), but
            # exact: no float rounding can push the index past T.
            goal_t = jax.random.randint(goal_key, (batch_size,), t + 1, horizon + 1)
        elif strategy == "final":
            goal_t = jnp.full((batch_size,), horizon, jnp.int32)
        else:
            goal_t = jax.random.randint(goal_key, (batch_size,), 1, horizon + 1)
        relabelled_goal = episodes.achieved_goal[episode_idx, goal_t]
        goal = jnp.where(relabel[:, None], relabelled_goal, goal)

    if n_step == 1:
        next_t, discount = t + 1, None
        reward = jnp.asarray(compute_reward(episodes.achieved_goal[episode_idx, next_t], goal), jnp.float32)
    else:
        next_t, reward, discount = _n_step_return(episodes.achieved_goal, episode_idx, t, goal, horizon,
                                                  compute_reward=compute_reward, n_step=n_step, gamma=gamma)
    chex.assert_shape(reward, (batch_size,))
    return Transitions(
        obs=episodes.obs[episode_idx, t],
        next_obs=episodes.obs[episode_idx, next_t],
        achieved_goal=episodes.achieved_goal[episode_idx, t],
        next_achieved_goal=episodes.achieved_goal[episode_idx, next_t],
        desired_goal=goal,
        action=episodes.action[episode_idx, t],
        reward=reward,
        discount=discount,
    )


def written_slots(state: BufferState, batch: int) -> jax.Array:
    """``[batch]`` int32: the ring slots ``buffer_add`` writes a batch of ``batch`` episodes into, oldest first."""
    n_slots = state.episodes.obs.shape[0]
    return (state.insert_pos + jnp.arange(batch, dtype=jnp.int32)) % n_slots


def _n_step_return(
    achieved_goal: jax.Array, episode_idx: jax.Array, t: jax.Array, goal: jax.Array, horizon: int, *,
    compute_reward: RewardFn, n_step: int, gamma: float,
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(t + k, sum_{j<k} gamma**j r_{t+j}, gamma**k)`` with ``k = min(n_step, T - t)``, each ``[N]``: the rewards
    of the ``k`` steps after ``t`` under ``goal``, cut at the episode's end."""
    k = jnp.minimum(n_step, horizon - t)
    offsets = jnp.arange(n_step)
    reached = jnp.minimum(t[:, None] + 1 + offsets, horizon)  # [N, n]; clipped steps are masked below
    rewards = compute_reward(achieved_goal[episode_idx[:, None], reached], goal[:, None, :])
    weights = jnp.where(offsets < k[:, None], gamma ** offsets.astype(jnp.float32), 0.0)
    reward = jnp.sum(weights * rewards, axis=1).astype(jnp.float32)
    return t + k, reward, jnp.asarray(gamma, jnp.float32) ** k.astype(jnp.float32)


def buffer_add(state: BufferState, episodes: Episodes, n_new: Optional[jax.Array] = None) -> BufferState:
    """Writes a batch of episodes into the ring, overwriting the oldest.

    Args:
        state: buffer with ring size ``E``.
        episodes: ``B`` episodes shaped like the ring's, ``[B, ...]``; ``B <= E``
            so the written slots are distinct.
        n_new: only the first ``n_new`` episodes are stored (``[]`` int, ``0 <= n_new
            <= B``; e.g. those left after dropping broken ones); ``None`` stores all.

    Returns:
        The new state; ``insert_pos`` advances by ``n_new`` mod ``E`` and ``size``
        saturates at ``E``. The slots past the stored episodes keep what they held.
    """
    ring = state.episodes
    n_slots = ring.obs.shape[0]
    batch = episodes.obs.shape[0]
    chex.assert_trees_all_equal_shapes(
        jax.tree.map(lambda x: x[0], ring), jax.tree.map(lambda x: x[0], episodes)
    )
    chex.assert_tree_shape_prefix(episodes, (batch,))
    if batch > n_slots:
        raise ValueError(
            f"cannot add {batch} episodes at once to a ring of {n_slots} episodes"
        )
    slots = written_slots(state, batch)
    if n_new is None:
        n_new, write = batch, lambda stored, new: new
    else:
        n_new = jnp.asarray(n_new, jnp.int32)
        stored_here = jnp.arange(batch) < n_new
        keep = lambda x: stored_here.reshape((-1,) + (1,) * (x.ndim - 1))
        write = lambda stored, new: jnp.where(keep(new), new, stored[slots])
    new_ring = jax.tree.map(
        lambda stored, new: stored.at[slots].set(write(stored, new.astype(stored.dtype))), ring, episodes
    )
    return BufferState(
        episodes=new_ring,
        insert_pos=(state.insert_pos + n_new) % n_slots,
        size=jnp.minimum(state.size + n_new, n_slots),
    )


def make_her_buffer(
    *,
    capacity: int = 1_000_000,
    horizon: int,
    obs_dim: int,
    goal_dim: int,
    act_dim: int,
    compute_reward: RewardFn,
    strategy: str = "future",
    replay_k: float = 4,
    dtype: jnp.dtype = jnp.float32,
    n_step: int = 1,
    gamma: float = 1.0,
) -> HerBuffer:
    """Builds a HER replay buffer holding ``capacity // horizon`` whole episodes.

    Args:
        capacity: size in transitions, like baselines' ``buffer_size``.
        horizon: episode length ``T``.
        obs_dim: observation size.
        goal_dim: goal size.
        act_dim: action size.
        compute_reward: pure ``(ag [..., goal_dim], g [..., goal_dim]) -> [...]`` float32.
        strategy: relabelling strategy, see ``sample_her_transitions``.
        replay_k: relabelled goals per original goal; ``future_p = 1 - 1/(1+replay_k)``.
        dtype: storage dtype of all arrays.
        n_step: steps of the sampled returns, see ``sample_her_transitions``.
        gamma: their discount.

    Returns:
        ``HerBuffer(init, add, sample)``.

    Raises:
        ValueError: for an unknown strategy or a capacity below one episode.
    """
    validate_strategy(strategy)
    n_slots = episode_capacity(capacity, horizon)
    if n_slots < 1:
        raise ValueError(f"capacity {capacity} holds no episode of horizon {horizon}")
    future_p = future_p_from_replay_k(replay_k)

    def init() -> BufferState:
        return BufferState(
            episodes=Episodes(
                obs=jnp.zeros((n_slots, horizon + 1, obs_dim), dtype),
                achieved_goal=jnp.zeros((n_slots, horizon + 1, goal_dim), dtype),
                desired_goal=jnp.zeros((n_slots, horizon, goal_dim), dtype),
                action=jnp.zeros((n_slots, horizon, act_dim), dtype),
            ),
            insert_pos=jnp.zeros((), jnp.int32),
            size=jnp.zeros((), jnp.int32),
        )

    def sample(state: BufferState, key: jax.Array, batch_size: int) -> Transitions:
        """Samples ``batch_size`` HER transitions from the valid episodes (size >= 1)."""
        return sample_her_transitions(
            state.episodes,
            key,
            batch_size,
            compute_reward=compute_reward,
            strategy=strategy,
            future_p=future_p,
            n_valid=state.size,
            n_step=n_step,
            gamma=gamma,
        )

    return HerBuffer(init=init, add=buffer_add, sample=sample)
