"""PPO hyper-parameters: the ``ppo.*`` config section (``alg=ppo``)."""

from __future__ import annotations

import dataclasses
from typing import Optional, Sequence

from herjax import checks
from herjax.agents.common import networks

LR_SCHEDULES = ("constant", "linear")


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    """PPO hyper-parameters. Names follow ``ppo2`` where it has them.

    The defaults are ``ppo2``'s MuJoCo settings (``baselines/ppo2/defaults.py`` and its ``mlp``: two tanh layers of
    64, ``lam 0.95``, ``cliprange 0.2``, ``vf_coef 0.5``, ``ent_coef 0``, ``max_grad_norm 0.5``, Adam decaying
    linearly) except for a faster, small-batch setting tuned on FetchReach-dense: ``gamma 0.97`` (50-step episodes;
    ``ppo2``: 0.99), ``learning_rate 1e-3`` (3e-4), ``n_epochs 4`` (10), ``n_minibatches 5`` (32; it must divide the
    unroll) and ``log_std_init -0.5`` (0). With the loop's defaults (``num_envs`` 32 x 50 steps a cycle),
    eight seeds reached test success >= 0.9 within 9.6k-19.2k env steps; ``ppo2``'s lr, gamma, epochs and log-std
    needed 12.8k and 25.6k on two seeds, at 2.5x the gradient steps.

    Attributes:
        hidden: hidden layer sizes of the policy and of the value MLP.
        activation: hidden nonlinearity, a name of ``herjax.agents.common.networks.ACTIVATIONS`` (``ppo2``: tanh).
        layer_norm: ``Dense -> LayerNorm -> activation`` in every hidden layer of the policy and value networks.
        network: ``"package.module:ClassName"`` of a flax module used instead of the MLP in the policy and value
            networks (``herjax.agents.common.networks`` has the contract); ``None``: herjax's MLP.
        shared_torso: one torso (the hidden layers) with a policy head and a value head, trained by the summed
            loss (``ppo2``'s ``value_network='shared'``); ``False``: two separate networks (``ppo2``'s default
            ``value_network='copy'``).
        learning_rate: Adam learning rate (at the start, under ``linear``).
        lr_schedule: ``constant`` or ``linear`` (to 0 at the last update of the run).
        adam_eps: Adam epsilon (``ppo2``: 1e-5).
        max_grad_norm: the global gradient norm is clipped to this; ``None`` turns clipping off.
        clip_range: PPO ratio clip ``eps``.
        clip_value: clip the value prediction around the rollout's value, as ``ppo2``.
        value_clip_range: ``eps_v`` of the value clip; ``None`` uses ``clip_range`` (``ppo2``).
        vf_coef: weight of the value loss.
        ent_coef: weight of the entropy bonus.
        gamma: discount.
        gae_lambda: GAE lambda.
        n_epochs: passes over each iteration's batch (``ppo2`` ``noptepochs``).
        n_minibatches: minibatches per pass (``ppo2`` ``nminibatches``); must divide the unroll length.
        normalize_advantage: standardise advantages over each minibatch (over all devices).
        log_std_init: initial log-std of the pre-tanh Gaussian.
        reward_scale: rewards are multiplied by this before GAE.
        clip_obs: raw observations and goals are clipped to ``±clip_obs``.
        norm_eps: std floor of the normalisers.
        norm_clip: normalised inputs are clipped to ``±norm_clip``.
        unroll_length: steps per env per cycle (``ppo2`` ``nsteps``); a multiple of ``n_minibatches``.
    """

    hidden: Sequence[int] = (64, 64)
    activation: str = "tanh"
    layer_norm: bool = False
    network: Optional[str] = None
    shared_torso: bool = False
    learning_rate: float = 1e-3
    lr_schedule: str = "linear"
    adam_eps: float = 1e-5
    max_grad_norm: Optional[float] = 0.5
    clip_range: float = 0.2
    clip_value: bool = True
    value_clip_range: Optional[float] = None
    vf_coef: float = 0.5
    ent_coef: float = 0.0
    gamma: float = 0.97
    gae_lambda: float = 0.95
    n_epochs: int = 4
    n_minibatches: int = 5
    normalize_advantage: bool = True
    log_std_init: float = -0.5
    reward_scale: float = 1.0
    clip_obs: float = 200.0
    norm_eps: float = 0.01
    norm_clip: float = 5.0
    unroll_length: int = 50

    def steps_per_cycle(self, horizon: int) -> int:
        """Env steps one env takes in a cycle (a PPO iteration): ``unroll_length``."""
        return self.unroll_length

    def validate(self, prefix: str, *, num_envs: int, horizon: int) -> None:
        """Raises ``herjax.checks.ConfigError`` naming the first bad value (``prefix``: ``ppo.``)."""
        for name in ("unroll_length", "n_epochs", "n_minibatches"):
            checks.check(getattr(self, name) >= 1, f"{prefix}{name}", getattr(self, name), ">= 1")
        checks.check(self.unroll_length % self.n_minibatches == 0, f"{prefix}unroll_length", self.unroll_length,
                     f"a multiple of {prefix}n_minibatches={self.n_minibatches}")
        checks.choice(f"{prefix}lr_schedule", self.lr_schedule, LR_SCHEDULES)
        networks.validate_network_keys(prefix, self)
        checks.positive(prefix, self, ("learning_rate", "clip_range", "clip_obs", "norm_eps", "norm_clip"))
        checks.check(0.0 < self.gamma <= 1.0, f"{prefix}gamma", self.gamma, "in (0, 1]")
        checks.unit_interval(prefix, self, ("gae_lambda",))
        checks.check(len(self.hidden) > 0 and all(h >= 1 for h in self.hidden), f"{prefix}hidden",
                     list(self.hidden), "a non-empty list of positive sizes")
