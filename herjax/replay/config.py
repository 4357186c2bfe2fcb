"""Prioritised replay's knobs: the ``replay.*`` config section (off-policy algorithms)."""

from __future__ import annotations

import dataclasses
from typing import Optional

from herjax import checks


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    """Proportional prioritised replay (Schaul et al. 2016) of the off-policy loop (``herjax.replay.prioritized``).

    Defaults are Schaul et al.'s proportional variant as openai/baselines' ``deepq`` sets it (``alpha`` 0.6,
    ``beta0`` 0.4 annealed to 1, ``eps`` 1e-6).

    Attributes:
        prioritized: sample stored transitions in proportion to ``(|TD error| + eps)^alpha`` and weight their
            critic loss by importance weights; ``false``: uniform (baselines HER).
        alpha: priority exponent; 0 is uniform sampling.
        beta0: importance-weight exponent at the first update; it grows linearly to 1.
        eps: added to every ``|TD error|``, so that every stored transition keeps a chance to be sampled.
        beta_updates: updates over which ``beta`` reaches 1; ``null``: the run's updates (epochs x ``n_cycles``
            x ``<alg>.n_batches``), resolved when the config loads, so a resumed run keeps its schedule.
    """

    prioritized: bool = False
    alpha: float = 0.6
    beta0: float = 0.4
    eps: float = 1e-6
    beta_updates: Optional[int] = None

    def validate(self, prefix: str) -> None:
        """Raises ``herjax.checks.ConfigError`` naming the first bad value (``prefix``: ``replay.``)."""
        checks.check(self.alpha >= 0, f"{prefix}alpha", self.alpha, ">= 0")
        checks.unit_interval(prefix, self, ("beta0",))
        checks.positive(prefix, self, ("eps",))
        if self.beta_updates is not None:
            checks.check(self.beta_updates > 0, f"{prefix}beta_updates", self.beta_updates, "> 0 or null")
