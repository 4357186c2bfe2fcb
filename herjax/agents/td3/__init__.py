"""TD3+HER (``alg=td3_her``): DDPG+HER with clipped double Q, target policy smoothing and a delayed actor."""

from herjax.agents.ddpg.losses import actor_loss
from herjax.agents.td3.agent import TD3State, make_td3, update_step
from herjax.agents.td3.config import TD3Config
from herjax.agents.td3.losses import TwinCriticAux, first_critic, smoothed_target_action, twin_critic_loss

__all__ = [
    "TD3Config", "TD3State", "TwinCriticAux", "actor_loss", "first_critic", "make_td3", "smoothed_target_action",
    "twin_critic_loss", "update_step",
]
