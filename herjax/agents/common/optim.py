"""The optimiser step every agent takes."""

from __future__ import annotations

import chex
import optax


def apply(
    optimizer: optax.GradientTransformation, params: chex.ArrayTree, grads: chex.ArrayTree, opt_state: optax.OptState
) -> tuple[chex.ArrayTree, optax.OptState]:
    """One step of ``optimizer``: ``(params, opt_state)`` after applying ``grads``."""
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
