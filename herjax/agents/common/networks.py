"""MLP actor and critic modules (baselines ``her/actor_critic.py``).

Dense layers use Xavier-uniform kernels and zero biases, like baselines'
``tf.layers.dense(kernel_initializer=xavier_initializer())``.
"""

from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

DEFAULT_HIDDEN = (256, 256, 256)


class MLP(nn.Module):
    """Fully connected network: ``hidden`` activated layers, then a linear output.

    Attributes:
        hidden: sizes of the hidden layers.
        out_dim: size of the (linear) output layer.
        activation: hidden-layer nonlinearity.
        kernel_init: initialiser of every kernel.
        out_kernel_init: initialiser of the output kernel; ``None`` uses ``kernel_init``.
    """

    hidden: Sequence[int]
    out_dim: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    kernel_init: Callable = nn.initializers.xavier_uniform()
    out_kernel_init: Callable | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[..., in_dim]`` to ``[..., out_dim]``."""
        for size in self.hidden:
            x = self.activation(nn.Dense(size, kernel_init=self.kernel_init)(x))
        out_init = self.out_kernel_init or self.kernel_init
        return nn.Dense(self.out_dim, kernel_init=out_init)(x)


class Actor(nn.Module):
    """Deterministic goal-conditioned policy ``max_u * tanh(MLP([o, g]))``.

    Attributes:
        act_dim: action size.
        max_u: action bound.
        hidden: hidden layer sizes.
    """

    act_dim: int
    max_u: float = 1.0
    hidden: Sequence[int] = DEFAULT_HIDDEN

    @nn.compact
    def __call__(self, obs: jax.Array, goal: jax.Array) -> jax.Array:
        """Actions for normalised inputs.

        Args:
            obs: ``[N, obs_dim]`` normalised observations.
            goal: ``[N, goal_dim]`` normalised goals.

        Returns:
            ``[N, act_dim]`` actions in ``[-max_u, max_u]``.
        """
        x = jnp.concatenate([obs, goal], axis=-1)
        return self.max_u * jnp.tanh(MLP(self.hidden, self.act_dim)(x))


class Critic(nn.Module):
    """Goal-conditioned action value ``MLP([o, g, u / max_u])``.

    Attributes:
        max_u: action bound; actions are rescaled to ``[-1, 1]`` on input.
        hidden: hidden layer sizes.
    """

    max_u: float = 1.0
    hidden: Sequence[int] = DEFAULT_HIDDEN

    @nn.compact
    def __call__(self, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        """Q-values for normalised inputs.

        Args:
            obs: ``[N, obs_dim]`` normalised observations.
            goal: ``[N, goal_dim]`` normalised goals.
            action: ``[N, act_dim]`` actions in environment units.

        Returns:
            ``[N]`` Q-values.
        """
        x = jnp.concatenate([obs, goal, action / self.max_u], axis=-1)
        return MLP(self.hidden, 1)(x)[..., 0]


class DoubleCritic(nn.Module):
    """Two independent ``Critic``s (clipped double Q: TD3, SAC), evaluated together.

    Attributes:
        max_u: action bound; actions are rescaled to ``[-1, 1]`` on input.
        hidden: hidden layer sizes of each critic.
        n_critics: how many critics (2 for clipped double Q).
    """

    max_u: float = 1.0
    hidden: Sequence[int] = DEFAULT_HIDDEN
    n_critics: int = 2

    @nn.compact
    def __call__(self, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        """``[N, obs_dim]``, ``[N, goal_dim]``, ``[N, act_dim]`` -> ``[n_critics, N]`` Q-values."""
        ensemble = nn.vmap(
            Critic, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0,
            axis_size=self.n_critics,
        )
        return ensemble(max_u=self.max_u, hidden=self.hidden)(obs, goal, action)
