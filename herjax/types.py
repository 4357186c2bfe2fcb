"""The types that cross an arrow of the house (envs -> rollout -> replay -> agents -> loops -> host side).

They live here, below every module that uses them, so that no module imports one above it to name a type.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax

PolicyFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]
"""``(obs [B, obs_dim], desired_goal [B, goal_dim], key) -> action [B, act_dim]``, batched and pure."""

RewardFn = Callable[[jax.Array, jax.Array], jax.Array]
"""``(achieved_goal [..., goal_dim], desired_goal [..., goal_dim]) -> reward [...]``, pure."""

TD_ERROR = "td_error"
"""The key of an off-policy agent's update metrics holding ``[N]`` per-sample ``|TD error|`` for a batch with
``Transitions.weight`` (prioritised replay's new priorities; ``herjax.agents.base``)."""


class Episodes(NamedTuple):
    """A batch of ``B`` complete episodes of horizon ``T`` (what ``rollout.collect_episodes`` makes and the HER
    buffer stores).

    Attributes:
        obs: ``[B, T+1, obs_dim]`` observations, ``obs[:, t]`` is seen before action ``t``.
        achieved_goal: ``[B, T+1, goal_dim]`` achieved goals aligned with ``obs``.
        desired_goal: ``[B, T, goal_dim]`` the goal that was pursued at step ``t``.
        action: ``[B, T, act_dim]`` actions.
    """

    obs: jax.Array
    achieved_goal: jax.Array
    desired_goal: jax.Array
    action: jax.Array


class Transitions(NamedTuple):
    """A batch of ``N`` (possibly relabelled) transitions: what an off-policy agent learns from.

    Attributes:
        obs: ``[N, obs_dim]`` observation at ``t``.
        next_obs: ``[N, obs_dim]`` observation at ``t + 1``.
        achieved_goal: ``[N, goal_dim]`` achieved goal at ``t``.
        next_achieved_goal: ``[N, goal_dim]`` achieved goal at ``t + 1``.
        desired_goal: ``[N, goal_dim]`` the (possibly relabelled) goal.
        action: ``[N, act_dim]`` action taken at ``t``.
        reward: ``[N]`` float32, ``compute_reward(next_achieved_goal, desired_goal)``; with n-step returns, the
            discounted sum of the ``k`` rewards up to ``next_obs``.
        is_demo: ``[N]`` bool, which samples come from demonstrations (``demos=``; the behaviour-cloning loss
            reads it); ``None``: none do.
        weight: ``[N]`` float32 importance weights of prioritised replay (``replay.prioritized``), which scale each
            sample's critic loss; ``None``: all 1 (uniform replay).
        discount: ``[N]`` what the critic's target multiplies the next value by, ``gamma ** k`` for a ``k``-step
            return; ``None``: one step, the agent's ``gamma``.
    """

    obs: jax.Array
    next_obs: jax.Array
    achieved_goal: jax.Array
    next_achieved_goal: jax.Array
    desired_goal: jax.Array
    action: jax.Array
    reward: jax.Array
    is_demo: Optional[jax.Array] = None
    weight: Optional[jax.Array] = None
    discount: Optional[jax.Array] = None


class PolicyStep(NamedTuple):
    """A sampled action of a stochastic policy, ``[N, ...]``.

    Attributes:
        action: ``[N, A]`` what the env receives.
        raw_action: ``[N, A]`` the pre-squashing sample (``action = tanh(raw_action)``).
        log_prob: ``[N]`` ``log pi(action | obs, goal)``.
    """

    action: jax.Array
    raw_action: jax.Array
    log_prob: jax.Array


class Unroll(NamedTuple):
    """What ``rollout.unroll`` records in auto-resetting envs; every leaf is ``[T, N, ...]``.

    Attributes:
        obs: observation acted on.
        goal: desired goal acted on.
        step: the policy's ``PolicyStep`` (action and what the learner needs of it).
        reward: the step's reward.
        terminated: 1 where the step reached a terminal state (never, on Fetch).
        truncated: 1 where the step ended the episode by the time limit (the env was then reset).
        next_obs: the observation the step led to (the episode's final one where it was truncated).
        next_goal: the desired goal there.
        final_success: ``is_success`` after the step, of the episode it belongs to.
        nonfinite: 1 where the step left the env non-finite: it was reset at once, and the step is recorded as
            a truncation at its last finite observation (``next_obs`` is the observation acted on).
    """

    obs: jax.Array
    goal: jax.Array
    step: PolicyStep
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    next_obs: jax.Array
    next_goal: jax.Array
    final_success: jax.Array
    nonfinite: Any = None


class EvalMetrics(NamedTuple):
    """Deterministic-policy summaries, each ``[]``; one type for every loop.

    Attributes:
        success_rate: fraction of episodes whose last step is a success.
        mean_q: mean over all steps of all episodes of the agent's value: ``Q(o, g, pi(o, g))`` for an
            off-policy agent (baselines' ``test/mean_Q``), the state value ``V(o, g)`` for an on-policy one.
        episode_return: mean undiscounted return.
    """

    success_rate: jax.Array
    mean_q: jax.Array
    episode_return: jax.Array

