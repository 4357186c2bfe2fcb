"""Cross-device reductions that are the identity outside ``shard_map`` (``axis_name=None``), so an agent's
update is one function whether it runs on one device or on many."""

from __future__ import annotations

from typing import Optional

import chex
import jax


def pmean(x: chex.ArrayTree, axis_name: Optional[str]) -> chex.ArrayTree:
    """The mean of ``x`` over the devices of ``axis_name``; ``x`` itself when ``axis_name`` is ``None``."""
    return x if axis_name is None else jax.lax.pmean(x, axis_name)


def psum(x: chex.ArrayTree, axis_name: Optional[str]) -> chex.ArrayTree:
    """The sum of ``x`` over the devices of ``axis_name``; ``x`` itself when ``axis_name`` is ``None``."""
    return x if axis_name is None else jax.lax.psum(x, axis_name)
