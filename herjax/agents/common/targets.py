"""Online networks and their slowly moving target copies."""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax


class OnlineAndTarget(NamedTuple):
    """Parameters of a network and of its slowly moving target copy."""

    online: chex.ArrayTree
    target: chex.ArrayTree


def polyak_update(target: chex.ArrayTree, online: chex.ArrayTree, polyak: float) -> chex.ArrayTree:
    """``polyak * target + (1 - polyak) * online``, leaf by leaf (baselines' ``polyak``; ``tau = 1 - polyak``)."""
    return jax.tree.map(lambda t, o: polyak * t + (1.0 - polyak) * o, target, online)


def soft_update(pair: OnlineAndTarget, polyak: float) -> OnlineAndTarget:
    """The pair with its target moved one Polyak step toward the online parameters."""
    return pair._replace(target=polyak_update(pair.target, pair.online, polyak))
