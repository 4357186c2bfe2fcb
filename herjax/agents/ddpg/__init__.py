"""DDPG+HER (``alg=ddpg_her``), faithful to openai/baselines ``her``."""

from herjax.agents.common.config import resolve_clip_return, resolve_gamma
from herjax.agents.common.targets import OnlineAndTarget, polyak_update
from herjax.agents.ddpg.agent import DDPGState, explore, make_ddpg, update_step
from herjax.agents.ddpg.config import DDPGConfig
from herjax.agents.ddpg.losses import CriticAux, actor_loss, critic_loss, td_target

__all__ = [
    "CriticAux", "DDPGConfig", "DDPGState", "OnlineAndTarget", "actor_loss", "critic_loss", "explore", "make_ddpg",
    "polyak_update", "resolve_clip_return", "resolve_gamma", "td_target", "update_step",
]
