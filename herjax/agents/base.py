"""The two agent interfaces. A loop calls an agent only through these: never a network, never a parameter by name.

An agent is a NamedTuple of pure functions, built by a factory that binds every static size (``make_ddpg(cfg,
obs_dim=..., goal_dim=..., act_dim=..., horizon=...)``). Its state is one pytree, whatever the agent keeps in it.

**Off-policy** (``OffPolicyAgent``; DDPG, TD3, SAC, run by ``herjax.loops.off_policy``)::

    state = agent.init(key)
    action = agent.act(state, obs, goal, key)             # exploring
    action = agent.greedy(state, obs, goal)               # deterministic: evaluation, play, export
    q = agent.value(state, obs, goal, action)             # the critic, for test/mean_Q
    state = agent.update_normalizer(state, obs, goal, axis_name)
    state, metrics = agent.update(state, transitions, key, axis_name)   # one gradient step
    state = agent.end_of_cycle(state)                     # e.g. the Polyak step of the targets
    agent.summary(state)                                  # per-epoch scalars (normaliser statistics ...)
    agent.export(state)                                   # the greedy policy's plain weights (herjax.export)

**On-policy** (``OnPolicyAgent``; PPO, run by ``herjax.loops.on_policy``): ``init``, ``act`` (a ``PolicyStep``),
``greedy``, ``value(state, obs, goal)``, ``update_normalizer``, ``prepare(state, unroll) -> batch`` (values and
advantages of an unroll) and ``update(state, batch, key, axis_name)`` (all the passes over one batch), ``summary``,
``export``.

``axis_name``: inside ``shard_map`` over devices, the name of the device axis; the agent averages its gradients
and pools its normaliser statistics over it (``herjax.agents.common.collectives``). ``None`` on one device.
``metric_names``: the keys of ``update``'s metrics, each ``[]``; the loop averages them over an epoch and logs them
as ``train/<name>``.

**Optional batch fields** (``herjax.types.Transitions``), which an off-policy agent honours when they are set:
``weight [N]`` scales each sample's critic loss (prioritised replay's importance weights), and then ``update``'s
metrics also hold ``TD_ERROR``: ``[N]`` this device's per-sample ``|TD error|``, not averaged over devices, which
the loop turns into new priorities and does not log. ``is_demo [N]`` marks demonstration samples, which an agent
built with a ``bc`` config (``BCConfig``) clones with its actor (Nair et al. 2018).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax

from herjax.types import TD_ERROR, PolicyStep, Transitions, Unroll  # noqa: F401 (TD_ERROR: part of the interface)

State = Any


class OffPolicyAgent(NamedTuple):
    """Pure functions of an off-policy agent (see the module docstring).

    Attributes:
        init: ``(key) -> state``.
        act: ``(state, obs [N, o], goal [N, g], key) -> action [N, A]``, the exploring policy.
        greedy: ``(state, obs [N, o], goal [N, g]) -> action [N, A]``, the deterministic policy.
        value: ``(state, obs [N, o], goal [N, g], action [N, A]) -> [N]``, the critic on raw inputs.
        update: ``(state, transitions [N], key, axis_name) -> (state, metrics)``: one update on a batch.
        end_of_cycle: ``(state) -> state``, after a cycle's updates (the target networks' step).
        update_normalizer: ``(state, obs [..., o], goal [..., g], axis_name, mask=None) -> state``; ``mask [...]``
            (bool) leaves samples out.
        summary: ``(state) -> {name: []}``, per-epoch scalars, logged under their own names.
        metric_names: the keys of ``update``'s metrics.
        export: ``(state) -> {name: array}``, host side: ``greedy``'s weights in the plain format of
            ``herjax.agents.common.export`` (raises ``ExportError`` where that cannot hold them); ``None``: the
            agent has no export.
    """

    init: Callable[[jax.Array], State]
    act: Callable[[State, jax.Array, jax.Array, jax.Array], jax.Array]
    greedy: Callable[[State, jax.Array, jax.Array], jax.Array]
    value: Callable[[State, jax.Array, jax.Array, jax.Array], jax.Array]
    update: Callable[[State, Transitions, jax.Array, Optional[str]], tuple[State, dict]]
    end_of_cycle: Callable[[State], State]
    update_normalizer: Callable[[State, jax.Array, jax.Array, Optional[str]], State]
    summary: Callable[[State], dict]
    metric_names: tuple[str, ...]
    export: Optional[Callable[[State], dict]] = None


class OnPolicyAgent(NamedTuple):
    """Pure functions of an on-policy agent (see the module docstring).

    Attributes:
        init: ``(key) -> state``.
        act: ``(state, obs [N, o], goal [N, g], key) -> PolicyStep``, a sample of the stochastic policy.
        greedy: ``(state, obs [N, o], goal [N, g]) -> action [N, A]``, the deterministic policy.
        value: ``(state, obs [..., o], goal [..., g]) -> [...]``, the state value.
        prepare: ``(state, unroll [T, N]) -> batch``: what ``update`` learns from (values, advantages ...).
        update: ``(state, batch, key, axis_name) -> (state, metrics)``: every pass over one batch.
        update_normalizer: ``(state, obs [..., o], goal [..., g], axis_name, mask=None) -> state``; ``mask [...]``
            (bool) leaves samples out.
        summary: ``(state) -> {name: []}``, per-epoch scalars, logged under their own names.
        metric_names: the keys of ``update``'s metrics.
        export: as ``OffPolicyAgent.export``.
    """

    init: Callable[[jax.Array], State]
    act: Callable[[State, jax.Array, jax.Array, jax.Array], PolicyStep]
    greedy: Callable[[State, jax.Array, jax.Array], jax.Array]
    value: Callable[[State, jax.Array, jax.Array], jax.Array]
    prepare: Callable[[State, Unroll], Any]
    update: Callable[[State, Any, jax.Array, Optional[str]], tuple[State, dict]]
    update_normalizer: Callable[[State, jax.Array, jax.Array, Optional[str]], State]
    summary: Callable[[State], dict]
    metric_names: tuple[str, ...]
    export: Optional[Callable[[State], dict]] = None
