"""Running mean/std normaliser with the semantics of baselines ``her/normalizer.py``, and the input
preprocessing every agent shares (``preprocess``: clip, then normalise observation and goal separately).

The state keeps raw sums rather than a running mean so that states from several
devices combine exactly by summing (or averaging, which rescales sum, sumsq
and count alike and leaves mean/std unchanged).

Before any update the statistics are mean 0 and std 1, like baselines' initial
variables; afterwards ``mean = sum / count`` and
``std = sqrt(max(eps^2, sumsq / count - mean^2))``.
"""

from __future__ import annotations

from typing import Optional

import chex
import flax.struct
import jax
import jax.numpy as jnp

from herjax.agents.common.collectives import psum

DEFAULT_EPS = 0.01
DEFAULT_CLIP_RANGE = 5.0


@flax.struct.dataclass
class NormalizerState:
    """Accumulated statistics of a ``size``-dimensional quantity.

    Attributes:
        sum: ``[size]`` sum of all samples.
        sumsq: ``[size]`` sum of squared samples.
        count: ``[]`` float32 number of samples.
    """

    sum: jax.Array
    sumsq: jax.Array
    count: jax.Array


def init(size: int, dtype: jnp.dtype = jnp.float32) -> NormalizerState:
    """Empty statistics for a ``size``-dimensional quantity."""
    return NormalizerState(
        sum=jnp.zeros((size,), dtype),
        sumsq=jnp.zeros((size,), dtype),
        count=jnp.zeros((), dtype),
    )


def update(
    state: NormalizerState, x: chex.Array, axis_name: Optional[str] = None, mask: Optional[chex.Array] = None
) -> NormalizerState:
    """Adds samples to the statistics.

    Args:
        state: statistics of size ``D``.
        x: ``[..., D]`` samples; all leading dimensions are flattened, like
            baselines' ``v.reshape(-1, size)``.
        axis_name: inside ``shard_map`` over devices, the samples of every
            device along this axis are added (their sums are summed), so the
            statistics equal those of one device holding all of them
            (baselines pools its workers' statistics the same way).
        mask: optional ``[...]`` bool over the samples (``x``'s leading dimensions): only samples where it is
            True are added, e.g. to leave out those of dropped episodes. ``None`` adds every sample.

    Returns:
        Updated statistics.
    """
    size = state.sum.shape[-1]
    chex.assert_axis_dimension(x, -1, size)
    x = jnp.reshape(x, (-1, size)).astype(state.sum.dtype)
    if mask is None:
        count = psum(x.shape[0], axis_name)
    else:
        mask = jnp.reshape(mask, (-1,))
        x = jnp.where(mask[:, None], x, 0.0)  # a select, so a masked-out NaN cannot leak in as 0 * NaN would
        count = psum(jnp.sum(mask, dtype=state.count.dtype), axis_name)
    added = psum((jnp.sum(x, axis=0), jnp.sum(jnp.square(x), axis=0)), axis_name)
    return NormalizerState(
        sum=state.sum + added[0],
        sumsq=state.sumsq + added[1],
        count=state.count + count,
    )


def mean_std(
    state: NormalizerState, eps: float = DEFAULT_EPS
) -> tuple[jax.Array, jax.Array]:
    """Current mean and std, each ``[D]``; ``(0, 1)`` before any update."""
    seen = state.count > 0
    safe_count = jnp.where(seen, state.count, 1.0)
    mean = state.sum / safe_count
    # sumsq/count - mean^2 can dip below zero through cancellation; the eps^2
    # floor absorbs that as well as constant dimensions.
    var = jnp.maximum(eps**2, state.sumsq / safe_count - jnp.square(mean))
    std = jnp.where(seen, jnp.sqrt(var), 1.0)
    return mean, std


def normalize(
    state: NormalizerState,
    x: chex.Array,
    clip_range: float = DEFAULT_CLIP_RANGE,
    eps: float = DEFAULT_EPS,
) -> jax.Array:
    """Standardises and clips ``x``.

    Args:
        state: statistics of size ``D``.
        x: ``[..., D]`` values.
        clip_range: output is clipped to ``[-clip_range, clip_range]``.
        eps: floor on the std.

    Returns:
        ``[..., D]`` ``clip((x - mean) / std, -clip_range, clip_range)``.
    """
    chex.assert_axis_dimension(x, -1, state.sum.shape[-1])
    mean, std = mean_std(state, eps)
    return jnp.clip((x - mean) / std, -clip_range, clip_range)


SUMMARY_KEYS = ("stats/o_mean", "stats/o_std", "stats/g_mean", "stats/g_std")


def summary(obs_stats: NormalizerState, goal_stats: NormalizerState, eps: float) -> dict[str, chex.Array]:
    """The per-epoch normaliser metrics every trainer logs: mean over dims of each input's mean and std."""
    o_mean, o_std = mean_std(obs_stats, eps)
    g_mean, g_std = mean_std(goal_stats, eps)
    return dict(zip(SUMMARY_KEYS, (jnp.mean(o_mean), jnp.mean(o_std), jnp.mean(g_mean), jnp.mean(g_std))))


def preprocess(
    obs_stats: NormalizerState,
    goal_stats: NormalizerState,
    obs: jax.Array,
    goal: jax.Array,
    *,
    clip_obs: float,
    norm_eps: float,
    norm_clip: float,
) -> tuple[jax.Array, jax.Array]:
    """Clips raw ``obs [..., obs_dim]``, ``goal [..., goal_dim]`` to ``±clip_obs`` and normalises each by its own
    statistics (clipped to ``±norm_clip``): the network inputs of every agent."""
    obs = jnp.clip(obs, -clip_obs, clip_obs)
    goal = jnp.clip(goal, -clip_obs, clip_obs)
    return normalize(obs_stats, obs, norm_clip, norm_eps), normalize(goal_stats, goal, norm_clip, norm_eps)


def update_inputs(
    obs_stats: NormalizerState,
    goal_stats: NormalizerState,
    obs: jax.Array,
    goal: jax.Array,
    *,
    clip_obs: float,
    axis_name: Optional[str] = None,
    mask: Optional[jax.Array] = None,
) -> tuple[NormalizerState, NormalizerState]:
    """Adds clipped raw ``obs [..., obs_dim]`` and ``goal [..., goal_dim]`` to their statistics (of every device
    along ``axis_name``; only the samples where ``mask [...]`` is True, if given): the normaliser step of every
    agent."""
    obs = jnp.clip(obs, -clip_obs, clip_obs)
    goal = jnp.clip(goal, -clip_obs, clip_obs)
    return update(obs_stats, obs, axis_name, mask), update(goal_stats, goal, axis_name, mask)
