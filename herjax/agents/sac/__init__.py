"""SAC+HER (``alg=sac_her``): soft actor-critic with automatic entropy tuning in baselines' HER loop."""

from herjax.agents.sac.agent import (
    SACState,
    SquashedGaussianActor,
    make_sac,
    sample_policy,
    squashed_gaussian_sample,
    update_step,
)
from herjax.agents.sac.config import SACConfig, resolve_target_entropy
from herjax.agents.sac.losses import actor_loss, alpha_loss, critic_loss

__all__ = [
    "SACConfig", "SACState", "SquashedGaussianActor", "actor_loss", "alpha_loss", "critic_loss", "make_sac",
    "resolve_target_entropy", "sample_policy", "squashed_gaussian_sample", "update_step",
]
