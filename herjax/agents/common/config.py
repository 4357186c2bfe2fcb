"""The config base every off-policy HER agent shares: its networks (size, activation, layer norm or your own
module), the input normaliser, the return clipping, and the replay and update knobs the off-policy loop reads.
Defaults are baselines' ``her`` defaults."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional, Sequence, Union

from herjax import checks
from herjax.agents.common import networks
from herjax.replay.her import STRATEGIES


@dataclasses.dataclass(frozen=True)
class OffPolicyConfig:
    """Hyper-parameters shared by the off-policy agents (DDPG, TD3, SAC) and read by the off-policy loop.

    The network keys (``activation``, ``layer_norm``, ``network``) apply to the actor and to every critic alike;
    ``herjax.agents.common.networks`` describes them and the contract of a custom module. Actor and critic never
    share a torso here (PPO's ``shared_torso`` has no counterpart): the critic reads the action as an input, so its
    first layer sees ``[o, g, u]`` where the actor's sees ``[o, g]``, and the actor is trained through the critic.

    Attributes:
        hidden: hidden layer sizes of actor and critic.
        activation: hidden nonlinearity of actor and critic, a name of ``networks.ACTIVATIONS`` (baselines: relu).
        layer_norm: ``Dense -> LayerNorm -> activation`` in every hidden layer of actor and critic.
        network: ``"package.module:ClassName"`` of a flax module used instead of the MLP in actor and critic;
            ``None``: herjax's MLP.
        pi_lr: actor Adam learning rate.
        q_lr: critic Adam learning rate.
        polyak: target ``= polyak * target + (1 - polyak) * online``, once per cycle (baselines; ``tau = 0.05``).
        batch_size: transitions per update, over all devices.
        n_batches: updates per cycle.
        gamma: discount; ``None`` means ``1 - 1 / horizon``.
        clip_return: ``True`` clips targets to ``[-1 / (1 - gamma), 0]``; ``False`` to ``[-inf, 0]``; a float ``c``
            to ``[-c, 0]``.
        clip_obs: observations and goals are clipped to ``±clip_obs``.
        norm_eps: std floor of the normalisers.
        norm_clip: normalised inputs are clipped to ``±norm_clip``.
        max_u: action bound.
        replay_strategy: HER strategy, one of ``STRATEGIES``.
        replay_k: relabelled goals per original goal (``future_p = 1 - 1 / (1 + replay_k)``).
        n_step: the critic learns from ``n_step``-step returns: a sample at ``t`` adds the rewards of steps ``t ..
            t + k - 1`` under its (relabelled) goal, discounted, and bootstraps from ``obs[t + k]`` with ``gamma ** k``,
            ``k = min(n_step, T - t)``; no off-policy correction (as in n-step HER, Yang et al. 2021). 1: baselines.
        buffer_size: replay capacity in transitions, over all devices (each device keeps ``buffer_size / D`` of
            its own episodes, as each baselines worker keeps its own buffer).
        huber: the critic regresses its targets with the Huber loss (``0.5 * d^2`` for ``|d| <= 1``, ``|d| - 0.5``
            beyond; ``optax.losses.huber_loss``) instead of the squared error ``d^2`` (baselines). Its gradient is
            bounded, which tempers the large errors prioritised replay seeks out.
        BC_LOSS: whether the agent's factory takes ``bc=`` (a ``BCConfig``) for the behaviour-cloning actor loss of
            ``demos=``; a class constant, not a key (``DDPGConfig`` and so ``TD3Config`` set it).
    """

    BC_LOSS: ClassVar[bool] = False

    hidden: Sequence[int] = (256, 256, 256)
    activation: str = "relu"
    layer_norm: bool = False
    network: Optional[str] = None
    pi_lr: float = 1e-3
    q_lr: float = 1e-3
    polyak: float = 0.95
    batch_size: int = 256
    n_batches: int = 40
    gamma: Optional[float] = None
    clip_return: Union[bool, float] = True
    clip_obs: float = 200.0
    norm_eps: float = 0.01
    norm_clip: float = 5.0
    max_u: float = 1.0
    replay_strategy: str = "future"
    replay_k: int = 4
    buffer_size: int = 1_000_000
    huber: bool = False
    n_step: int = 1

    def steps_per_cycle(self, horizon: int) -> int:
        """Env steps one env takes in a cycle: one whole episode."""
        return horizon

    def validate(self, prefix: str, *, num_envs: int, horizon: int) -> None:
        """Raises ``herjax.checks.ConfigError`` naming the first bad value (``prefix``: ``ddpg.`` ...)."""
        checks.choice(f"{prefix}replay_strategy", self.replay_strategy, STRATEGIES)
        checks.positive(prefix, self, ("batch_size", "buffer_size", "pi_lr", "q_lr", "max_u", "clip_obs",
                                       "norm_eps", "norm_clip"))
        checks.check(self.n_batches >= 0, f"{prefix}n_batches", self.n_batches, ">= 0")
        checks.check(len(self.hidden) > 0 and all(h > 0 for h in self.hidden), f"{prefix}hidden",
                     list(self.hidden), "a non-empty list of positive sizes")
        networks.validate_network_keys(prefix, self)
        checks.unit_interval(prefix, self, ("polyak",))
        checks.check(1 <= self.n_step <= horizon, f"{prefix}n_step", self.n_step, f"in [1, T={horizon}]")
        checks.check(self.replay_k >= 0, f"{prefix}replay_k", self.replay_k, ">= 0")
        if self.gamma is not None:
            checks.check(0.0 < self.gamma <= 1.0, f"{prefix}gamma", self.gamma, "in (0, 1] or null (1 - 1/T)")
        if not isinstance(self.clip_return, bool):
            checks.check(self.clip_return > 0, f"{prefix}clip_return", self.clip_return,
                         "true, false or a float > 0")
        if self.buffer_size // horizon < num_envs:
            raise checks.ConfigError(
                f"bad value {self.buffer_size!r} for {prefix}buffer_size: must hold at least num_envs={num_envs} "
                f"episodes of {horizon} steps (>= {num_envs * horizon})"
            )


def resolve_gamma(cfg: OffPolicyConfig, horizon: int) -> float:
    """``cfg.gamma``, or ``1 - 1 / horizon`` when it is ``None`` (baselines)."""
    return 1.0 - 1.0 / horizon if cfg.gamma is None else float(cfg.gamma)


def discount_of(transitions, gamma: float):
    """What a critic target multiplies the next value by: ``transitions.discount`` (``[N]``, ``gamma ** k`` of an
    n-step return) when the sampler set it, else ``gamma``."""
    return gamma if transitions.discount is None else transitions.discount


def resolve_clip_return(cfg: OffPolicyConfig, gamma: float) -> float:
    """Magnitude of the lower target clip (baselines: ``1 / (1 - gamma)`` or inf)."""
    if isinstance(cfg.clip_return, bool):
        return 1.0 / (1.0 - gamma) if cfg.clip_return else float("inf")
    return float(cfg.clip_return)


@dataclasses.dataclass(frozen=True)
class BCConfig:
    """Learning from demonstrations (Nair et al. 2018): the ``bc.*`` section, read only when ``demos=`` is set.

    Each batch of ``<alg>.batch_size`` takes ``demo_batch_size`` transitions from the demos; the actor loss is
    ``prm_loss_weight * (-mean Q(s, pi(s)) + action_l2 * mean (pi(s) / max_u)^2) + aux_loss_weight * sum over the
    demo samples of ||pi(s) - a_demo||^2``, and with ``q_filter`` only demo samples whose action the critic rates
    above the policy's, ``Q(s, a_demo) > Q(s, pi(s))``, are cloned. Defaults are Nair et al.'s (their batch: 128
    demo transitions of 1024).

    Attributes:
        demo_batch_size: demo transitions per batch, over all devices; fewer than the batch size.
        prm_loss_weight: weight of the usual DDPG actor loss.
        aux_loss_weight: weight of the summed behaviour-cloning error.
        q_filter: clone a demo action only where the critic prefers it to the policy's.
    """

    demo_batch_size: int = 128
    prm_loss_weight: float = 0.001
    aux_loss_weight: float = 0.0078
    q_filter: bool = True

    def validate(self, prefix: str, *, batch_size: int, batch_key: str, num_devices: int) -> None:
        """Raises ``herjax.checks.ConfigError`` naming the first bad value (``prefix``: ``bc.``)."""
        checks.positive(prefix, self, ("demo_batch_size",))
        checks.check(self.demo_batch_size < batch_size, f"{prefix}demo_batch_size", self.demo_batch_size,
                     f"< {batch_key} ({batch_size}): the rest of each batch comes from the replay buffer")
        checks.check(self.demo_batch_size % num_devices == 0, f"{prefix}demo_batch_size", self.demo_batch_size,
                     f"a multiple of num_devices={num_devices} (each device takes an equal share)")
        for name in ("prm_loss_weight", "aux_loss_weight"):
            checks.check(getattr(self, name) >= 0, f"{prefix}{name}", getattr(self, name), ">= 0")
