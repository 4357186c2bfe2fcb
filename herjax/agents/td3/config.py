"""TD3+HER hyper-parameters: the ``td3.*`` config section (``alg=td3_her``)."""

from __future__ import annotations

import dataclasses

from herjax import checks
from herjax.agents.ddpg.config import DDPGConfig


@dataclasses.dataclass(frozen=True)
class TD3Config(DDPGConfig):
    """DDPG+HER's hyper-parameters (``DDPGConfig``) plus TD3's three (Fujimoto et al. 2018).

    From the TD3 paper (and its reference code; SB3's TD3 has the same defaults): ``policy_delay`` 2,
    ``target_noise`` 0.2 and ``target_noise_clip`` 0.5, both in units of ``max_u`` as the reference code scales
    them by ``max_action``; Adam with learning rate 1e-3 for actor and critic, which is also baselines HER's.

    From baselines HER (``OffPolicyConfig``, ``DDPGConfig``), where the TD3 paper's MuJoCo settings would not suit
    sparse goal-conditioned tasks: 3x256 networks (the paper: 400-300), batch 256 and 40 updates per cycle, Polyak
    0.95 once per cycle in ``end_of_cycle`` (the paper: ``tau = 0.005`` after every actor step), ``gamma = 1 - 1/T``
    and returns clipped to ``[-1 / (1 - gamma), 0]`` (the paper: 0.99, no clip), the actor's ``action_l2`` penalty
    1.0 (the paper: none), exploration by Gaussian noise 0.2 plus random actions with probability 0.3 (the paper:
    Gaussian 0.1 only), and HER ``future`` relabelling with ``replay_k`` 4 (also SB3 HER's ``n_sampled_goal``).

    Attributes:
        policy_delay: the actor takes a step on every ``policy_delay``-th update (the first at update
            ``policy_delay``, as Fujimoto's code and SB3 count).
        target_noise: std of the Gaussian noise added to the target action, in units of ``max_u``.
        target_noise_clip: that noise is clipped to ``±target_noise_clip * max_u``.
    """

    policy_delay: int = 2
    target_noise: float = 0.2
    target_noise_clip: float = 0.5

    def validate(self, prefix: str, *, num_envs: int, horizon: int) -> None:
        super().validate(prefix, num_envs=num_envs, horizon=horizon)
        delay = self.policy_delay
        checks.check(isinstance(delay, int) and not isinstance(delay, bool) and delay >= 1,
                     f"{prefix}policy_delay", delay, "an integer >= 1")
        for name in ("target_noise", "target_noise_clip"):
            checks.check(getattr(self, name) >= 0, f"{prefix}{name}", getattr(self, name), ">= 0")
