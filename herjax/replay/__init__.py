"""Episode replay with hindsight goal relabelling (``her``), prioritised sampling (``prioritized``), and the loop's
replay that combines them with a ring of demonstrations (``mixed``)."""

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
    relabel_transitions,
    sample_her_transitions,
    validate_strategy,
)
from herjax.replay.mixed import Replay, ReplayState, make_replay
from herjax.replay.prioritized import Prioritized, PriorityState, make_prioritized

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
    "make_prioritized",
    "make_replay",
    "Prioritized",
    "PriorityState",
    "relabel_transitions",
    "Replay",
    "ReplayState",
    "sample_her_transitions",
    "validate_strategy",
]
