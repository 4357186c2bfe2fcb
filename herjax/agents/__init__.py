"""Agents: networks, input normalisation and DDPG."""

from herjax.agents import normalizer
from herjax.agents.ddpg import (
    DDPGAgent,
    DDPGConfig,
    DDPGState,
    OnlineAndTarget,
    actor_loss,
    critic_loss,
    make_ddpg,
    td_target,
)
from herjax.agents.networks import MLP, Actor, Critic

__all__ = [
    "normalizer",
    "DDPGAgent",
    "DDPGConfig",
    "DDPGState",
    "OnlineAndTarget",
    "actor_loss",
    "critic_loss",
    "make_ddpg",
    "td_target",
    "MLP",
    "Actor",
    "Critic",
]
