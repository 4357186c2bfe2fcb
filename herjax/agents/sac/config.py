"""SAC+HER hyper-parameters: the ``sac.*`` config section (``alg=sac_her``)."""

from __future__ import annotations

import dataclasses
from typing import ClassVar, Optional

from herjax import checks
from herjax.agents.common.config import OffPolicyConfig


@dataclasses.dataclass(frozen=True)
class SACConfig(OffPolicyConfig):
    """Hyper-parameters of SAC with automatic entropy tuning (Haarnoja et al. 2018, "Soft Actor-Critic
    Algorithms and Applications") inside baselines' HER loop.

    From baselines ``her`` (inherited from ``OffPolicyConfig``): 3x256 ReLU networks, Adam 1e-3 for actor and
    critics, batch 256, 40 updates per cycle, ``polyak = 0.95`` applied once per cycle by ``end_of_cycle``
    (SAC's paper steps ``tau = 0.005`` after every update instead), ``gamma = 1 - 1/T``, input normalisation and
    ``clip_return``: the critic target is clipped to ``[-clip_return, 0]`` like DDPG+HER's. That clip is a HER
    habit, exact for the plain return when rewards are in ``{-1, 0}``; the soft value can exceed 0 only through
    the entropy bonus ``-alpha * log pi``, which the upper clip therefore caps.

    From the SAC paper and Stable-Baselines3's HER settings (``ent_coef="auto"``, rl-zoo's FetchReach
    ``learning_rate = 1e-3``): a learned temperature started at ``alpha = 1`` (SB3's and softlearning's
    ``log_alpha = 0``) and trained by Adam at ``alpha_lr = 1e-3``; ``target_entropy = -act_dim`` (the paper's
    heuristic); the state-dependent ``log_std`` clipped to ``[-20, 2]`` (SB3, softlearning).

    Why ``init_alpha = 1`` although a -1 per step reward makes the entropy bonus dominate at first: it is the
    value both reference implementations learn FetchReach from, and Adam moves ``log_alpha`` by about
    ``alpha_lr`` per update whatever the loss scale, so while the entropy exceeds its target ``alpha`` falls
    tenfold in about ``ln 10 / alpha_lr ~ 2300`` updates (about one epoch of 50 cycles x 40 updates). Set
    ``init_alpha=0.1`` to skip that warm-up. Measured on FetchReach (2-core CPU, 3 seeds, one sitting): test
    success >= 0.9 at a median of 7,000 env steps with ``init_alpha`` 1 and 2,000 with 0.1
    (``benchmarks/results/time_to_success_reach_*``); 1 stays the default, as SB3 has it.

    Entropies and log-probabilities (``target_entropy``, the ``entropy`` metric) are those of the normalised
    action ``a / max_u`` in ``[-1, 1]``, as in SB3, so no setting depends on ``max_u``.

    Attributes:
        alpha_lr: Adam learning rate of ``log_alpha``.
        init_alpha: initial temperature ``alpha`` (``log_alpha = log(init_alpha)``).
        target_entropy: entropy the temperature steers the policy to; ``None`` means ``-act_dim``.
        log_std_min: lower clip of the policy's pre-tanh log-std.
        log_std_max: upper clip of the policy's pre-tanh log-std.
    """

    # Nair et al.'s behaviour cloning is defined for a deterministic actor (DDPG's); SAC's stochastic one would
    # need its own (e.g. cloning the mean action with the entropy term kept), which herjax does not offer.
    BC_LOSS: ClassVar[bool] = False

    alpha_lr: float = 1e-3
    init_alpha: float = 1.0
    target_entropy: Optional[float] = None
    log_std_min: float = -20.0
    log_std_max: float = 2.0

    def validate(self, prefix: str, *, num_envs: int, horizon: int) -> None:
        super().validate(prefix, num_envs=num_envs, horizon=horizon)
        checks.positive(prefix, self, ("alpha_lr", "init_alpha"))
        checks.check(self.log_std_min < self.log_std_max, f"{prefix}log_std_min", self.log_std_min,
                     f"< {prefix}log_std_max ({self.log_std_max!r})")


def resolve_target_entropy(cfg: SACConfig, act_dim: int) -> float:
    """``cfg.target_entropy``, or ``-act_dim`` when it is ``None`` (the SAC paper's heuristic)."""
    return -float(act_dim) if cfg.target_entropy is None else float(cfg.target_entropy)
