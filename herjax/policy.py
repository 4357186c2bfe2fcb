"""Export a trained policy as a plain function of gymnasium-robotics observations.

    policy = herjax.policy.load("runs/fetch_reach/ddpg_her/20250101-120000")     # checkpoint="best"
    env = gymnasium.make("FetchReach-v4")
    obs, _ = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(policy(obs))

``policy(obs)`` takes the goal-env observation dict of NumPy arrays (``observation``, ``desired_goal``; other
keys are ignored), one observation (``[obs_dim]``) or a batch (``[B, obs_dim]``), and returns the deterministic
action as ``float32`` NumPy, ``[4]`` or ``[B, 4]``. It is the trainer's ``policy`` (the deterministic policy the
training's evaluation runs), jitted; the first call of each batch size compiles it.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np


class Policy:
    """A saved run's deterministic policy: ``Policy(obs_dict) -> action`` (see the module docstring).

    Attributes:
        config: the run's ``TrainConfig``.
        checkpoint: which checkpoint it is, ``kind/epoch``.
        env_steps: training env steps behind it.
        obs_dim, goal_dim, action_dim: the sizes it expects and returns.
    """

    def __init__(self, run: Any):
        import jax

        self.config = run.config
        self.checkpoint = run.where
        self.env_steps = int(run.meta["env_steps"])
        self.obs_dim, self.goal_dim, self.action_dim = run.env.obs_dim, run.env.goal_dim, run.env.action_dim
        self._state = run.state
        self._act = jax.jit(run.trainer.policy)

    def __call__(self, obs: Mapping[str, Any]) -> np.ndarray:
        dtype = np.float32
        o = np.asarray(obs["observation"], dtype)
        g = np.asarray(obs["desired_goal"], dtype)
        single = o.ndim == 1
        if single:
            o, g = o[None], g[None]
        if o.ndim != 2 or g.ndim != 2 or o.shape[0] != g.shape[0]:
            raise ValueError(f"expected observation [B, {self.obs_dim}] and desired_goal [B, {self.goal_dim}] (or "
                             f"one of each without B), got {o.shape} and {g.shape}")
        if o.shape[1] != self.obs_dim or g.shape[1] != self.goal_dim:
            raise ValueError(f"this policy takes observation [{self.obs_dim}] and desired_goal [{self.goal_dim}], "
                             f"got {o.shape[1:]} and {g.shape[1:]} (an env other than {self.config.env}?)")
        action = np.asarray(self._act(self._state, o, g), dtype)
        return action[0] if single else action


def load(run_dir: str, checkpoint: str = "best", *, backend: Optional[str] = None) -> Policy:
    """The deterministic policy of a run's ``checkpoint`` (``best`` or ``latest``) as a ``Policy``.

    Raises ``herjax.runs.checkpoint.CheckpointError`` (one line) for a missing run or no readable checkpoint.
    """
    from herjax.runs import checkpoint as ckpt_lib

    return Policy(ckpt_lib.load_run(run_dir, checkpoint, backend=backend))
