"""The off-policy loop's replay: the HER episode ring, optionally prioritised (``herjax.replay.prioritized``) and
optionally mixed with a second HER ring of demonstrations (Nair et al. 2018, "Overcoming Exploration in
Reinforcement Learning with Demonstrations").

With neither, the state is the ring's ``BufferState`` itself and a batch is ``buffer.sample``'s, exactly as
before either existed. With either, the state is a ``ReplayState`` and a batch of ``N`` is:

* ``N - demo_batch_size`` transitions of the ring, drawn uniformly or by priority (``weight`` set: the importance
  weights), then
* ``demo_batch_size`` transitions of the demos, drawn uniformly and relabelled the same way (``is_demo`` True
  there; their ``weight`` is 1).

After an update, ``learned`` sets the priorities of the ring's sampled transitions from their TD errors.

    replay = make_replay(buffer, prioritized=prio, demo_buffer=demo_buffer, demos=episodes, demo_batch_size=128)
    state = replay.add(replay.init(), episodes, n_new)
    batch, where = replay.sample(state, key, 1024)
    state = replay.learned(state, where, td_error)       # td_error [1024], or None without priorities
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from herjax.replay.her import BufferState, HerBuffer, relabel_transitions, written_slots
from herjax.replay.prioritized import PriorityState, Prioritized
from herjax.types import TD_ERROR, Episodes, Transitions


@flax.struct.dataclass
class ReplayState:
    """One device's replay when it has priorities or demos.

    Attributes:
        buffer: the HER ring of collected episodes.
        priorities: its transitions' priorities (``replay.prioritized``), else ``None``.
        demos: the HER ring of demonstrations, full from the start and never written again (``demos=``), else
            ``None``.
    """

    buffer: BufferState
    priorities: Optional[PriorityState] = None
    demos: Optional[BufferState] = None


class Replay(NamedTuple):
    """Pure functions of the off-policy loop's replay (``make_replay``).

    Attributes:
        init: ``() -> state``: an empty ring (and the demos, stored).
        add: ``(state, episodes [B], n_new) -> state``: the first ``n_new`` episodes into the ring.
        sample: ``(state, key, batch_size) -> (Transitions [batch_size], where)``; ``where`` is what ``learned``
            needs of the draw (``None`` without priorities). ``batch_size`` is static.
        learned: ``(state, where, td_error [batch_size] or None) -> state``: the sampled transitions' new
            priorities (the identity without priorities).
        demos: the demonstration episodes (numpy, ``[E_demo, ...]``) the demo ring holds, else ``None``.
    """

    init: Callable[[], Any]
    add: Callable[..., Any]
    sample: Callable[[Any, jax.Array, int], tuple[Transitions, Any]]
    learned: Callable[[Any, Any, Optional[jax.Array]], Any]
    demos: Optional[Episodes] = None


def with_demos(main: Transitions, demo: Transitions) -> Transitions:
    """``main`` then ``demo`` as one batch, ``is_demo`` marking the demo part; ``weight`` (when ``main`` has one)
    is 1 on the demo part, which was drawn uniformly."""
    fields = [name for name in Transitions._fields if name not in ("is_demo", "weight")]
    # Optional fields (``discount`` of one-step returns) are ``None`` in both halves, or arrays in both.
    joined = {name: jnp.concatenate([getattr(main, name), getattr(demo, name)]) for name in fields
              if getattr(main, name) is not None}
    n_main, n_demo = main.reward.shape[0], demo.reward.shape[0]
    is_demo = jnp.concatenate([jnp.zeros((n_main,), bool), jnp.ones((n_demo,), bool)])
    weight = None if main.weight is None else jnp.concatenate([main.weight, jnp.ones((n_demo,), jnp.float32)])
    return Transitions(**joined, is_demo=is_demo, weight=weight)


def make_replay(
    buffer: HerBuffer,
    *,
    compute_reward: Callable[[jax.Array, jax.Array], jax.Array],
    strategy: str,
    future_p: float,
    prioritized: Optional[Prioritized] = None,
    demo_buffer: Optional[HerBuffer] = None,
    demos: Optional[Episodes] = None,
    demo_batch_size: int = 0,
    n_step: int = 1,
    gamma: float = 1.0,
) -> Replay:
    """The loop's replay over ``buffer``.

    Args:
        buffer: the HER ring of collected episodes.
        compute_reward: the env's reward, for relabelling prioritised draws.
        strategy: HER strategy of the prioritised draws (``buffer`` and ``demo_buffer`` have theirs bound).
        future_p: relabelled fraction of the prioritised draws.
        prioritized: priorities over ``buffer``'s transitions, or ``None`` (uniform).
        demo_buffer: a HER ring holding exactly the demo episodes, or ``None``.
        demos: the demo episodes (``[E_demo, ...]``, numpy or JAX), with ``demo_buffer``.
        demo_batch_size: static, demo transitions per batch, with ``demo_buffer``.
        n_step: static, steps of the prioritised draws' returns (``herjax.replay.her.sample_her_transitions``).
        gamma: their discount.

    Returns:
        ``Replay``.
    """
    if (demo_buffer is None) != (demos is None):
        raise ValueError("demo_buffer and demos go together")
    if prioritized is None and demos is None:
        uniform = lambda state, key, batch_size: (buffer.sample(state, key, batch_size), None)
        return Replay(init=buffer.init, add=buffer.add, sample=uniform, learned=lambda state, where, td: state)
    demos = None if demos is None else jax.tree.map(np.asarray, demos)

    def init() -> ReplayState:
        stored = None
        if demos is not None:
            stored = demo_buffer.add(demo_buffer.init(), jax.tree.map(jnp.asarray, demos))
        return ReplayState(buffer=buffer.init(), priorities=None if prioritized is None else prioritized.init(),
                           demos=stored)

    def add(state: ReplayState, episodes: Episodes, n_new: Optional[jax.Array] = None) -> ReplayState:
        slots = written_slots(state.buffer, episodes.obs.shape[0])
        new = state.replace(buffer=buffer.add(state.buffer, episodes, n_new))
        if prioritized is not None:
            n_new = slots.shape[0] if n_new is None else n_new
            new = new.replace(priorities=prioritized.add(state.priorities, slots, n_new))
        return new

    def sample_main(state: ReplayState, key: jax.Array, batch_size: int) -> tuple[Transitions, Any]:
        if prioritized is None:
            return buffer.sample(state.buffer, key, batch_size), None
        index_key, her_key, goal_key = jax.random.split(key, 3)
        episode_idx, t, weight = prioritized.sample(state.priorities, index_key, batch_size, state.buffer.size)
        transitions = relabel_transitions(state.buffer.episodes, episode_idx, t, her_key, goal_key,
                                          compute_reward=compute_reward, strategy=strategy, future_p=future_p,
                                          n_step=n_step, gamma=gamma)
        return transitions._replace(weight=weight), (episode_idx, t)

    def sample(state: ReplayState, key: jax.Array, batch_size: int) -> tuple[Transitions, Any]:
        if demos is None:
            return sample_main(state, key, batch_size)
        main_key, demo_key = jax.random.split(key)
        main, where = sample_main(state, main_key, batch_size - demo_batch_size)
        return with_demos(main, demo_buffer.sample(state.demos, demo_key, demo_batch_size)), where

    def learned(state: ReplayState, where: Any, td_error: Optional[jax.Array]) -> ReplayState:
        if prioritized is None:
            return state
        if td_error is None:
            raise ValueError(f"prioritised replay needs the agent's update to return {TD_ERROR!r} for a batch with "
                             "weights (herjax.agents.base)")
        episode_idx, t = where
        # The ring's samples come first in the batch; the demos' have no priorities.
        priorities = prioritized.update(state.priorities, episode_idx, t, td_error[: episode_idx.shape[0]])
        return state.replace(priorities=priorities)

    return Replay(init=init, add=add, sample=sample, learned=learned, demos=demos)
