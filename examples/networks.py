"""Your own network in place of herjax's MLP: a residual MLP, as an example of the ``network=`` key.

    python -m herjax.train env=fetch_reach ddpg.network=examples.networks:ResidualMLP
    python -m herjax.train env=fetch_reach_dense alg=ppo ppo.network=examples.networks:ResidualMLP

The contract (``herjax.agents.common.networks``): a ``flax.linen.Module`` constructible as ``cls(hidden=...,
out_dim=...)`` that maps ``[..., in_dim]`` to ``[..., out_dim]`` with a linear output; herjax keeps its own heads
(``max_u * tanh`` for an actor, the critic's scalar). A field ``activation`` receives the section's activation
(``<section>.activation``) and a field ``layer_norm`` the section's ``layer_norm``; this class declares the first
only, so ``layer_norm`` does not reach it.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax


class ResidualMLP(nn.Module):
    """``Dense(hidden[0])``, then a pre-activation residual block per further hidden size, then a linear output.

    A block is ``x + Dense(activation(x))`` (``Dense(activation(x))`` alone where the width changes), so the
    default ``(256, 256, 256)`` is one input layer and two residual blocks. Kernels are Xavier-uniform, as in
    herjax's MLP.

    Attributes:
        hidden: widths of the input layer and of each block.
        out_dim: size of the (linear) output.
        activation: the nonlinearity inside the blocks and before the output.
    """

    hidden: Sequence[int]
    out_dim: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``[..., in_dim] -> [..., out_dim]``."""
        init = nn.initializers.xavier_uniform()
        x = nn.Dense(self.hidden[0], kernel_init=init)(x)
        for size in self.hidden[1:]:
            y = nn.Dense(size, kernel_init=init)(self.activation(x))
            x = x + y if size == x.shape[-1] else y
        return nn.Dense(self.out_dim, kernel_init=init)(self.activation(x))
