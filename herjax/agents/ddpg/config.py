"""DDPG+HER hyper-parameters: the ``ddpg.*`` config section (``alg=ddpg_her``)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from herjax import checks
from herjax.agents.common.config import OffPolicyConfig


@dataclasses.dataclass(frozen=True)
class DDPGConfig(OffPolicyConfig):
    """Hyper-parameters; defaults are baselines' ``her`` defaults (``OffPolicyConfig`` holds the shared ones).

    Attributes:
        action_l2: weight of the squared-action penalty in the actor loss.
        noise_eps: std of Gaussian exploration noise, in units of ``max_u``.
        random_eps: probability of a uniformly random action.
    """

    BC_LOSS: ClassVar[bool] = True  # make_ddpg (and make_td3) take bc= (Nair et al.'s deterministic-actor loss)

    action_l2: float = 1.0
    noise_eps: float = 0.2
    random_eps: float = 0.3

    def validate(self, prefix: str, *, num_envs: int, horizon: int) -> None:
        super().validate(prefix, num_envs=num_envs, horizon=horizon)
        checks.unit_interval(prefix, self, ("random_eps",))
        checks.check(self.noise_eps >= 0, f"{prefix}noise_eps", self.noise_eps, ">= 0")
        checks.check(self.action_l2 >= 0, f"{prefix}action_l2", self.action_l2, ">= 0")
