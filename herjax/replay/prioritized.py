"""Proportional prioritised replay (Schaul et al. 2016, "Prioritized Experience Replay") over the transitions of a
HER episode ring, on the device.

Every stored transition, episode slot ``i`` and step ``t``, is one leaf ``i * T + t`` of a sum tree
(``flashbax.buffers.sum_tree``) holding ``p^alpha``. A sample draws leaves with probability ``P(j) = p_j^alpha /
sum_k p_k^alpha`` (stratified, as Schaul et al.: one draw in each of ``N`` equal slices of the total), then the
HER buffer relabels them as it relabels uniform draws (``herjax.replay.her.relabel_transitions``). Newly stored
transitions get the largest priority recorded so far, so each is seen at least about once; after an update the
sampled transitions' priorities become ``p = |TD error| + eps`` of their relabelled samples (the critic's error on
the goal it was trained with; HER's several goals per transition share the one leaf, whose priority is that of
the goal sampled last). Importance weights ``w_j = (N * P(j))^-beta``, with ``N`` the stored transitions, are
divided by the batch's largest, so they only ever scale a sample's loss down (Schaul et al. divide by the
buffer's largest weight, which needs a min-tree as well; dividing by the batch's, as Dopamine and Acme do, keeps
to one tree). ``beta`` grows linearly from ``beta0`` to 1 over ``beta_updates`` priority updates.

The tree's sums are float32 (JAX's default): a leaf drawn past the stored transitions, which float rounding of
the sums could make possible, is clamped back to the last stored one.

    prio = make_prioritized(n_slots=E, horizon=T, alpha=0.6, beta0=0.4, beta_updates=10_000, eps=1e-6)
    state = prio.add(prio.init(), slots, n_new)               # after buffer_add wrote ``slots``
    episode_idx, t, weight = prio.sample(state, key, batch_size, n_valid)
    state = prio.update(state, episode_idx, t, td_error)
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import chex
import flax.struct
import jax
import jax.numpy as jnp
from flashbax.buffers import sum_tree


@flax.struct.dataclass
class PriorityState:
    """The priorities of one HER ring.

    Attributes:
        tree: ``flashbax`` sum tree whose leaf ``i * T + t`` holds ``p^alpha`` of slot ``i``, step ``t`` (0 for slots
            never written); ``tree.max_recorded_priority`` is the largest ``p^alpha`` so far (1 at first).
        updates: ``[]`` int32, priority updates so far (``beta``'s schedule).
    """

    tree: sum_tree.SumTreeState
    updates: jax.Array


class Prioritized(NamedTuple):
    """Pure functions of the priorities of a HER ring of ``E`` episodes of ``T`` steps (``make_prioritized``).

    Attributes:
        init: ``() -> PriorityState``, all leaves 0.
        add: ``(state, slots [B], n_new) -> state``: the first ``n_new`` of the ring slots ``slots`` were just
            (over)written; their ``T`` transitions each get the largest priority so far.
        sample: ``(state, key, batch_size, n_valid) -> (episode_idx [N], t [N], weight [N])`` from the first
            ``n_valid`` slots; ``batch_size`` is static.
        update: ``(state, episode_idx [N], t [N], td_error [N]) -> state``: ``p = |td_error| + eps``.
        beta: ``(state) -> []`` the importance exponent of the next sample.
    """

    init: Callable[[], PriorityState]
    add: Callable[[PriorityState, jax.Array, jax.Array], PriorityState]
    sample: Callable[..., tuple[jax.Array, jax.Array, jax.Array]]
    update: Callable[[PriorityState, jax.Array, jax.Array, jax.Array], PriorityState]
    beta: Callable[[PriorityState], jax.Array]


def annealed_beta(updates: jax.Array, *, beta0: float, beta_updates: int) -> jax.Array:
    """``beta0 + (1 - beta0) * min(1, updates / beta_updates)``: linear from ``beta0`` to 1, then 1."""
    progress = jnp.minimum(jnp.asarray(updates, jnp.float32) / beta_updates, 1.0)
    return beta0 + (1.0 - beta0) * progress


def importance_weights(probability: jax.Array, n_stored: jax.Array, beta: jax.Array) -> jax.Array:
    """``w = (N * P)^-beta / max w`` over the batch.

    Args:
        probability: ``[B]`` sampling probabilities ``P(j)`` of the drawn transitions (``> 0``).
        n_stored: ``[]`` ``N``, transitions stored.
        beta: ``[]`` exponent; 0 gives all-ones weights, 1 fully corrects the non-uniform sampling.

    Returns:
        ``[B]`` float32 weights in ``(0, 1]``.
    """
    weight = jnp.power(jnp.asarray(n_stored, jnp.float32) * probability, -beta)
    return weight / jnp.max(weight)


def default_set_batch() -> Callable:
    """flashbax's choice of batched leaf update for this backend: a scan of single updates on the CPU (0.2 ms for
    256 leaves of a million-leaf tree here), a bincount over all leaves on accelerators."""
    return sum_tree.set_batch_scan if jax.default_backend() == "cpu" else sum_tree.set_batch_bincount


def make_prioritized(
    *, n_slots: int, horizon: int, alpha: float, beta0: float, beta_updates: int, eps: float,
    set_batch: Callable | None = None,
) -> Prioritized:
    """Builds the priorities of a HER ring of ``n_slots`` episodes of ``horizon`` steps.

    Args:
        n_slots: episodes the ring holds ``E``.
        horizon: steps per episode ``T``.
        alpha: priority exponent (0: uniform).
        beta0: importance exponent at the first update.
        beta_updates: updates over which ``beta`` grows to 1.
        eps: added to ``|TD error|`` so that no stored transition has probability 0.
        set_batch: the sum tree's batched leaf update; ``None``: ``default_set_batch()``.

    Returns:
        ``Prioritized(init, add, sample, update, beta)``.
    """
    capacity = n_slots * horizon
    set_batch = default_set_batch() if set_batch is None else set_batch
    beta_of = lambda state: annealed_beta(state.updates, beta0=beta0, beta_updates=beta_updates)

    def init() -> PriorityState:
        return PriorityState(tree=sum_tree.init(capacity), updates=jnp.zeros((), jnp.int32))

    def add(state: PriorityState, slots: jax.Array, n_new: jax.Array) -> PriorityState:
        leaves = (slots[:, None] * horizon + jnp.arange(horizon)).reshape(-1)
        stored = jnp.repeat(jnp.arange(slots.shape[0]) < n_new, horizon)
        values = jnp.where(stored, state.tree.max_recorded_priority, sum_tree.get_batch(state.tree, leaves))
        # set_batch raises the recorded maximum to its values', which here are at most that maximum already.
        return state.replace(tree=set_batch(state.tree, leaves, values))

    def sample(
        state: PriorityState, key: jax.Array, batch_size: int, n_valid: jax.Array
    ) -> tuple[jax.Array, jax.Array, jax.Array]:
        n_stored = jnp.maximum(jnp.asarray(n_valid, jnp.int32), 1) * horizon
        leaves = jnp.minimum(sum_tree.stratified_sample(state.tree, batch_size, key), n_stored - 1)
        total = state.tree.nodes[0]
        probability = sum_tree.get_batch(state.tree, leaves) / total
        # An empty tree (no episode stored yet) has no distribution: uniform weights then.
        probability = jnp.where(total > 0, jnp.maximum(probability, jnp.finfo(jnp.float32).tiny), 1.0 / n_stored)
        weight = importance_weights(probability, n_stored, beta_of(state))
        return leaves // horizon, leaves % horizon, weight

    def update(state: PriorityState, episode_idx: jax.Array, t: jax.Array, td_error: jax.Array) -> PriorityState:
        chex.assert_equal_shape([episode_idx, t, td_error])
        priority = jnp.power(jnp.abs(td_error) + eps, alpha)
        tree = set_batch(state.tree, episode_idx * horizon + t, priority)
        return PriorityState(tree=tree, updates=state.updates + 1)

    return Prioritized(init=init, add=add, sample=sample, update=update, beta=beta_of)
