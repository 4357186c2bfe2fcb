"""Episode replay with hindsight goal relabelling."""

from herjax.replay.her import (
    STRATEGIES,
    BufferState,
    Episodes,
    HerBuffer,
    Transitions,
    buffer_add,
    episode_capacity,
    future_p_from_replay_k,
    make_her_buffer,
    sample_her_transitions,
    validate_strategy,
)

__all__ = [
    "STRATEGIES",
    "BufferState",
    "Episodes",
    "HerBuffer",
    "Transitions",
    "buffer_add",
    "episode_capacity",
    "future_p_from_replay_k",
    "make_her_buffer",
    "sample_her_transitions",
    "validate_strategy",
]
