"""Applies the CPU XLA flag MJX needs, before JAX starts its CPU backend.

XLA's CPU fusion emitters (jax >= 0.7.1) make MJX kinematics on the Fetch model ~8x slower unbatched and far
slower under vmap; ``--xla_cpu_use_fusion_emitters=false`` restores the older emitters (see
``benchmarks/xla_flag.py``). XLA reads ``XLA_FLAGS`` once, when a backend starts, so herjax sets it on import.
It changes nothing on GPU or TPU. Opt out with ``HERJAX_NO_XLA_FLAG=1``.
"""

import os
import sys

CPU_FLAG = "--xla_cpu_use_fusion_emitters=false"


def backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):
        return True


def apply_cpu_flag() -> bool:
    """Adds the flag to ``XLA_FLAGS`` if no JAX backend has started. Returns whether it is in force."""
    flags = os.environ.get("XLA_FLAGS", "")
    if CPU_FLAG in flags:
        return True
    if os.environ.get("HERJAX_NO_XLA_FLAG") == "1" or backends_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_FLAG}".strip()
    return True

