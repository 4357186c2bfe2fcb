"""MLP actor and critic modules (baselines ``her/actor_critic.py``), and the network keys every agent shares.

Dense layers use Xavier-uniform kernels and zero biases, like baselines'
``tf.layers.dense(kernel_initializer=xavier_initializer())``.

**The network keys** (``<section>.activation``, ``.layer_norm``, ``.network``; one ``Torso`` per agent):

* ``activation``: the hidden nonlinearity, a name of ``ACTIVATIONS`` (the one table every agent uses).
* ``layer_norm``: a ``LayerNorm`` after each hidden ``Dense`` and before its activation (``Dense -> LayerNorm ->
  activation``, the order of FastTD3's and DroQ's layer-normalised critics). The output layer has none. With
  ``False`` (the default) no ``LayerNorm`` module exists, so the parameter tree is the one it always was.
* ``network``: your own module in place of herjax's MLP, by import path ``"package.module:ClassName"``.

**Your own network** (``network=``). The class must be a ``flax.linen.Module`` subclass, importable from
``sys.path`` (``python -m`` puts the working directory there), constructible as ``cls(hidden=..., out_dim=...)``
and mapping ``x [..., in_dim] -> [..., out_dim]`` (no nonlinearity on the output: herjax applies its heads after
it). ``hidden`` is the section's ``hidden`` (a tuple of ints; use it or not); ``out_dim`` is what the head needs.
If the class declares a field ``activation`` it is passed the callable of the section's ``activation`` (e.g.
``flax.linen.relu``), and a field ``layer_norm`` the section's ``layer_norm``; other fields keep their defaults.
It replaces the MLP inside every network of the agent: the actor (``max_u * tanh(net([o, g]))``, out_dim
``act_dim``), each critic (``net([o, g, u / max_u])``, out_dim 1), SAC's policy (out_dim ``2 * act_dim``: mean and
log-std) and PPO's policy mean and value (out_dim ``act_dim`` and 1; with ``ppo.shared_torso`` one instance with
``out_dim = hidden[-1]`` whose output both heads read). Its parameters sit under its class name
(``ResidualMLP_0``) where the MLP's sit under ``MLP_0``. ``examples/networks.py`` has one (``ResidualMLP``)::

    python -m herjax.train env=fetch_reach ddpg.network=examples.networks:ResidualMLP

A run with a custom network trains, resumes and plays like any other; ``herjax.export`` writes herjax's MLP only.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from herjax import _lapack, checks

DEFAULT_HIDDEN = (256, 256, 256)

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu,
    "tanh": nn.tanh,
    "elu": nn.elu,  # alpha 1
    "gelu": nn.gelu,  # the tanh approximation (flax's default)
    "silu": nn.silu,
    "swish": nn.swish,  # the same function as silu
    "leaky_relu": nn.leaky_relu,  # negative slope 0.01
}
"""Every hidden nonlinearity an agent can use, by its config name (``<section>.activation``)."""

ACTIVATION_NAMES = tuple(ACTIVATIONS)


def orthogonal(scale: float) -> Callable[..., jax.Array]:
    """``flax.linen.initializers.orthogonal(scale)``, with the same values, whose QR runs one matrix at a time
    under ``jax.vmap`` (``num_seeds``): a vmapped one is one batched LAPACK QR per layer, and two of those at once
    can deadlock a 2-core CPU (``herjax._lapack``; seen: ``num_seeds=2`` PPO on FetchReach hung in 3 of 6 runs)."""
    plain = nn.initializers.orthogonal(scale)

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return _lapack.one_at_a_time(lambda k: plain(k, shape, dtype))(key)

    return init


class ExportError(ValueError):
    """A policy that the plain weights format cannot hold (a custom ``network=``); the message is one line."""


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
    """The nonlinearity called ``name`` in ``ACTIVATIONS``; ``ValueError`` naming the valid ones otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; valid: {', '.join(ACTIVATION_NAMES)}")
    return ACTIVATIONS[name]


def import_network(path: str) -> type:
    """The module class of ``"package.module:ClassName"``.

    Raises:
        ValueError: one line saying why it is not usable: a malformed path, a module that is not found or fails
            to import, no such attribute, not a ``flax.linen.Module`` subclass, or no ``hidden``/``out_dim`` field.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError("expected 'package.module:ClassName'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        missing = f" ({e.name!r} is missing)" if e.name and e.name != module_name else ""
        raise ValueError(f"module {module_name!r} not found{missing}") from None
    except Exception as e:  # noqa: BLE001 -- any failure of the user's module body means the same: not usable
        raise ValueError(f"importing {module_name!r} failed: {type(e).__name__}: {' '.join(str(e).split())}") from None
    cls = module
    for part in attr.split("."):
        if not hasattr(cls, part):
            raise ValueError(f"module {module_name!r} has no attribute {attr!r}")
        cls = getattr(cls, part)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{attr!r} is not a flax.linen.Module subclass (it is {type(cls).__name__})")
    fields = {f.name for f in dataclasses.fields(cls)}
    missing_fields = [name for name in ("hidden", "out_dim") if name not in fields]
    if missing_fields:
        raise ValueError(f"{attr!r} has no field {' or '.join(missing_fields)}: it must be constructible as "
                         "cls(hidden=..., out_dim=...)")
    return cls


def validate_network_keys(prefix: str, section: Any) -> None:
    """Raises ``herjax.checks.ConfigError`` (one line) for a bad ``activation`` or ``network`` of ``section``."""
    checks.choice(f"{prefix}activation", section.activation, ACTIVATION_NAMES)
    if section.network is not None:
        try:
            import_network(section.network)
        except ValueError as e:
            raise checks.ConfigError(f"bad value {section.network!r} for {prefix}network: {e}") from None


class MLP(nn.Module):
    """Fully connected network: ``hidden`` activated layers, then a linear output.

    Each hidden layer is ``activation(Dense(x))``, or ``activation(LayerNorm(Dense(x)))`` with ``layer_norm``.

    Attributes:
        hidden: sizes of the hidden layers.
        out_dim: size of the (linear) output layer; ``None``: no output layer, the last hidden layer's
            activations are the output (a torso for several heads).
        activation: hidden-layer nonlinearity.
        kernel_init: initialiser of every kernel.
        out_kernel_init: initialiser of the output kernel; ``None`` uses ``kernel_init``.
        layer_norm: a ``LayerNorm`` (flax's, epsilon 1e-6) between each hidden ``Dense`` and its activation.
    """

    hidden: Sequence[int]
    out_dim: Optional[int]
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    kernel_init: Callable = nn.initializers.xavier_uniform()
    out_kernel_init: Callable | None = None
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Maps ``[..., in_dim]`` to ``[..., out_dim]`` (``[..., hidden[-1]]`` without an output layer)."""
        for size in self.hidden:
            x = nn.Dense(size, kernel_init=self.kernel_init)(x)
            if self.layer_norm:
                x = nn.LayerNorm()(x)
            x = self.activation(x)
        if self.out_dim is None:
            return x
        out_init = self.out_kernel_init or self.kernel_init
        return nn.Dense(self.out_dim, kernel_init=out_init)(x)


@dataclasses.dataclass(frozen=True)
class Torso:
    """How an agent's networks are built between its inputs and its heads: the section's network keys.

    Attributes:
        activation: a name of ``ACTIVATIONS``.
        layer_norm: ``LayerNorm`` before each hidden activation (``MLP``).
        network: ``"package.module:ClassName"`` of a module used instead of ``MLP`` (module docstring).
    """

    activation: str = "relu"
    layer_norm: bool = False
    network: Optional[str] = None

    @classmethod
    def of(cls, section: Any) -> "Torso":
        """The ``Torso`` of a config section with fields ``activation``, ``layer_norm`` and ``network``."""
        return cls(activation=section.activation, layer_norm=section.layer_norm, network=section.network)

    def build(
        self,
        hidden: Sequence[int],
        out_dim: Optional[int],
        *,
        kernel_init: Callable = nn.initializers.xavier_uniform(),
        out_kernel_init: Callable | None = None,
    ) -> nn.Module:
        """A new ``[..., in_dim] -> [..., out_dim]`` module: an ``MLP``, or the ``network`` class (which gets no
        initialisers; ``out_dim=None`` asks it for ``hidden[-1]`` outputs). Call it inside a compact method, so
        it is named after its class (``MLP_0``)."""
        act = activation_fn(self.activation)
        if self.network is None:
            return MLP(tuple(hidden), out_dim, activation=act, kernel_init=kernel_init,
                       out_kernel_init=out_kernel_init, layer_norm=self.layer_norm)
        cls = import_network(self.network)
        fields = {f.name for f in dataclasses.fields(cls)}
        extra = {"activation": act, "layer_norm": self.layer_norm}
        kwargs = {name: value for name, value in extra.items() if name in fields}
        return cls(hidden=tuple(hidden), out_dim=hidden[-1] if out_dim is None else out_dim, **kwargs)


class Actor(nn.Module):
    """Deterministic goal-conditioned policy ``max_u * tanh(MLP([o, g]))``.

    Attributes:
        act_dim: action size.
        max_u: action bound.
        hidden: hidden layer sizes.
        torso: the network keys (activation, layer norm, or a custom module in place of the MLP).
    """

    act_dim: int
    max_u: float = 1.0
    hidden: Sequence[int] = DEFAULT_HIDDEN
    torso: Torso = Torso()

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
        return self.max_u * jnp.tanh(self.torso.build(self.hidden, self.act_dim)(x))


class Critic(nn.Module):
    """Goal-conditioned action value ``MLP([o, g, u / max_u])``.

    Attributes:
        max_u: action bound; actions are rescaled to ``[-1, 1]`` on input.
        hidden: hidden layer sizes.
        torso: the network keys (activation, layer norm, or a custom module in place of the MLP).
    """

    max_u: float = 1.0
    hidden: Sequence[int] = DEFAULT_HIDDEN
    torso: Torso = Torso()

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
        return self.torso.build(self.hidden, 1)(x)[..., 0]


class DoubleCritic(nn.Module):
    """Two independent ``Critic``s (clipped double Q: TD3, SAC), evaluated together.

    Attributes:
        max_u: action bound; actions are rescaled to ``[-1, 1]`` on input.
        hidden: hidden layer sizes of each critic.
        n_critics: how many critics (2 for clipped double Q).
        torso: the network keys of each critic.
    """

    max_u: float = 1.0
    hidden: Sequence[int] = DEFAULT_HIDDEN
    n_critics: int = 2
    torso: Torso = Torso()

    @nn.compact
    def __call__(self, obs: jax.Array, goal: jax.Array, action: jax.Array) -> jax.Array:
        """``[N, obs_dim]``, ``[N, goal_dim]``, ``[N, act_dim]`` -> ``[n_critics, N]`` Q-values."""
        ensemble = nn.vmap(
            Critic, variable_axes={"params": 0}, split_rngs={"params": True}, in_axes=None, out_axes=0,
            axis_size=self.n_critics,
        )
        return ensemble(max_u=self.max_u, hidden=self.hidden, torso=self.torso)(obs, goal, action)
