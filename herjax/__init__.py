"""herjax: goal-conditioned robot learning (DDPG+HER, PPO) on the Fetch tasks, in JAX."""

from herjax import _xla

_xla.apply_cpu_flag()

__version__ = "0.1.0"
