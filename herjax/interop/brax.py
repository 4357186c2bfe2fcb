"""A herjax env as a ``brax.envs.Env``, so Brax's trainers (e.g. ``brax.training.agents.ppo.train``) run on it.

Needs the optional dependency ``brax`` (imported when this module is). The mapping of Brax's ``State`` fields:

* ``pipeline_state``: the whole herjax ``State`` (physics, goal-dict observation, ...); Brax's wrappers only
  select between such pytrees (``AutoResetWrapper``), never look inside.
* ``obs``: ``[obs_dim + goal_dim]``, ``observation`` followed by ``desired_goal`` (the flat input a
  goal-conditioned policy needs; ``achieved_goal`` is part of ``observation`` on Fetch).
* ``reward``: the herjax reward (sparse or dense, as the env was built).
* ``done``: the herjax ``done``, 0 on Fetch: episodes end by time limit, which Brax's ``EpisodeWrapper`` sets
  (``info['truncation']``).
* ``metrics``: ``is_success`` and ``distance`` (achieved to desired goal) after the step; Brax's episode
  wrappers sum metrics over an episode.
* ``info``: left to Brax's wrappers (the env itself keeps nothing there).

    from brax.training.agents.ppo import train as ppo
    benv = BraxGoalEnv(herjax.envs.make("fetch_reach_dense"))
    make_policy, params, _ = ppo.train(benv, num_timesteps=..., episode_length=benv.episode_length,
                                       wrap_env_fn=wrap_for_training)

**Resets.** Brax's default ``AutoResetWrapper`` returns an ended env to the *first* state that env slot ever had,
so each slot replays one goal forever. ``wrap_for_training`` (pass it as ``wrap_env_fn``) keeps Brax's
``VmapWrapper`` and ``EpisodeWrapper`` but resets ended envs with a fresh key, hence a fresh goal, as
``herjax.envs.vec`` does.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
from brax.envs import base as brax_base
from brax.envs.wrappers import training as brax_training

from herjax.envs.fetch import FetchEnv, goal_distance


def _restore_device_put_replicated() -> None:
    """Brax 0.14.2 (the newest) calls ``jax.device_put_replicated``, which jax 0.10 dropped from its public
    namespace (the function itself is still ``jax._src.api.device_put_replicated``). Put it back, unchanged, if
    it is missing, so that Brax's trainers run on this jax."""
    try:
        jax.device_put_replicated  # noqa: B018
    except AttributeError:
        from jax._src import api

        jax.device_put_replicated = api.device_put_replicated


_restore_device_put_replicated()


class BraxGoalEnv(brax_base.Env):
    """``env`` (any herjax env: ``reset``, ``step``, ``obs_dim``, ``goal_dim``, ``action_dim``) as a Brax env.

    Attributes:
        env: the wrapped herjax env.
        episode_length: the herjax episode length, for Brax's ``episode_length`` argument.
    """

    def __init__(self, env: FetchEnv):
        self.env = env
        self.episode_length = env.episode_length

    def _to_brax(self, s: Any, info: dict) -> brax_base.State:
        obs = s.obs
        metrics = {
            "is_success": jnp.asarray(s.info["is_success"], s.reward.dtype),
            "distance": goal_distance(obs["achieved_goal"], obs["desired_goal"]),
        }
        return brax_base.State(
            pipeline_state=s,
            obs=jnp.concatenate([obs["observation"], obs["desired_goal"]], axis=-1),
            reward=s.reward,
            done=s.done,
            metrics=metrics,
            info=info,
        )

    def reset(self, rng: jax.Array) -> brax_base.State:
        """``rng``: one PRNG key (raw ``uint32[2]`` or typed)."""
        return self._to_brax(self.env.reset(rng), {})

    def step(self, state: brax_base.State, action: jax.Array) -> brax_base.State:
        """``action``: ``[action_dim]`` in ``[-1, 1]``."""
        return self._to_brax(self.env.step(state.pipeline_state, action), state.info)

    @property
    def observation_size(self) -> int:
        return self.env.obs_dim + self.env.goal_dim

    @property
    def action_size(self) -> int:
        return self.env.action_dim

    @property
    def backend(self) -> str:
        return self.env.backend


class FreshAutoResetWrapper(brax_base.Wrapper):
    """Like Brax's ``AutoResetWrapper``, but an ended env restarts from a fresh reset (new key, new goal).

    The reset keys travel in ``info['reset_rng']``; the (batched) reset runs only on steps where some env ended.
    """

    def reset(self, rng: jax.Array) -> brax_base.State:
        keys = jax.vmap(jax.random.split)(rng)  # [N, 2, ...]
        state = self.env.reset(keys[:, 0])
        state.info["reset_rng"] = keys[:, 1]
        return state

    def step(self, state: brax_base.State, action: jax.Array) -> brax_base.State:
        if "steps" in state.info:
            state.info.update(steps=jnp.where(state.done, jnp.zeros_like(state.info["steps"]), state.info["steps"]))
        state = state.replace(done=jnp.zeros_like(state.done))
        state = self.env.step(state, action)
        keys = jax.vmap(jax.random.split)(state.info["reset_rng"])
        done = state.done

        def fresh(_):
            new = self.env.reset(keys[:, 0])
            return new.pipeline_state, new.obs

        def pick(new, old):
            return jnp.where(jnp.reshape(done, done.shape + (1,) * (old.ndim - done.ndim)) > 0, new, old)

        new_pipeline, new_obs = jax.lax.cond(
            jnp.any(done > 0), fresh, lambda _: (state.pipeline_state, state.obs), None
        )
        state.info["reset_rng"] = keys[:, 1]
        return state.replace(
            pipeline_state=jax.tree.map(pick, new_pipeline, state.pipeline_state),
            obs=jax.tree.map(pick, new_obs, state.obs),
        )


def wrap_for_training(
    env: brax_base.Env,
    episode_length: int = 50,
    action_repeat: int = 1,
    randomization_fn: Optional[Callable] = None,
) -> brax_base.Wrapper:
    """Brax's ``training.wrap`` with ``FreshAutoResetWrapper`` in place of ``AutoResetWrapper``; pass it to Brax
    trainers as ``wrap_env_fn``. ``randomization_fn`` is not supported (herjax envs have no Brax ``System``)."""
    if randomization_fn is not None:
        raise ValueError("domain randomisation needs a Brax System; herjax envs have none")
    env = brax_training.VmapWrapper(env)
    env = brax_training.EpisodeWrapper(env, episode_length, action_repeat)
    return FreshAutoResetWrapper(env)
