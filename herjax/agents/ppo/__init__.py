"""PPO (``alg=ppo``), with the semantics of openai/baselines ``ppo2`` on a squashed Gaussian."""

from herjax.agents.ppo.agent import (
    ACTIVATIONS,
    METRIC_NAMES,
    PPOBatch,
    PPOState,
    SharedTorsoActorCritic,
    TanhGaussianPolicy,
    make_optimizer,
    make_ppo,
    make_value_net,
)
from herjax.agents.ppo.config import LR_SCHEDULES, PPOConfig
from herjax.agents.ppo.losses import (
    LossInputs,
    PPOParams,
    gae,
    gaussian_log_prob,
    minibatch_indices,
    ppo_loss,
    standardize,
    tanh_gaussian_entropy,
    tanh_gaussian_log_prob,
    tanh_log_det_jacobian,
)

__all__ = [
    "ACTIVATIONS", "LR_SCHEDULES", "METRIC_NAMES", "LossInputs", "PPOBatch", "PPOConfig", "PPOParams", "PPOState",
    "SharedTorsoActorCritic", "TanhGaussianPolicy", "gae", "gaussian_log_prob", "make_optimizer", "make_ppo",
    "make_value_net", "minibatch_indices", "ppo_loss", "standardize", "tanh_gaussian_entropy",
    "tanh_gaussian_log_prob", "tanh_log_det_jacobian",
]
