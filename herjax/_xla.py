"""Applies the CPU XLA flag MJX needs, before JAX starts its CPU backend, where the installed jaxlib knows it.

XLA's CPU fusion emitters (jaxlib >= 0.7.1) make MJX kinematics on the Fetch model ~8x slower unbatched and far
slower under vmap; ``--xla_cpu_use_fusion_emitters=false`` restores the older emitters (see
``benchmarks/xla_flag.py``). XLA reads ``XLA_FLAGS`` once, when a backend starts, so herjax sets it on import.
It changes nothing on GPU or TPU. Opt out with ``HERJAX_NO_XLA_FLAG=1``.

jaxlib 0.11 and later no longer know the flag, and XLA aborts the whole process on a flag it does not know
(``Unknown flag in XLA_FLAGS``), on a GPU too: so the flag goes in only for the jaxlib versions that take it
(``FLAG_JAXLIB``, read from the installed package's metadata without importing JAX).
"""

import importlib.metadata
import os
import re
import sys

CPU_FLAG = "--xla_cpu_use_fusion_emitters=false"
# The jaxlib versions [from, to) whose XLA has the flag: it came with the fusion emitters (0.7.1) and is unknown,
# fatally, to 0.11.2 and 0.12.1 (seen); no jaxlib from 0.11 takes it.
FLAG_JAXLIB = ((0, 7, 1), (0, 11, 0))


def backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge._backends)
    except (ImportError, AttributeError):
        return True


def jaxlib_version() -> tuple[int, ...] | None:
    """The installed jaxlib's version as ``(major, minor, patch)``, or None if it cannot be read."""
    try:
        text = importlib.metadata.version("jaxlib")
    except importlib.metadata.PackageNotFoundError:
        return None
    match = re.match(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in match.groups()) if match else None


def flag_known(version: tuple[int, ...] | None) -> bool:
    """Whether jaxlib ``version``'s XLA takes ``CPU_FLAG`` (an unknown version: no)."""
    return version is not None and FLAG_JAXLIB[0] <= version[:3] < FLAG_JAXLIB[1]


def apply_cpu_flag() -> bool:
    """Adds the flag to ``XLA_FLAGS`` if no JAX backend has started and the installed jaxlib takes it. Returns
    whether it is in force."""
    flags = os.environ.get("XLA_FLAGS", "")
    if CPU_FLAG in flags:
        return True
    if os.environ.get("HERJAX_NO_XLA_FLAG") == "1" or backends_started() or not flag_known(jaxlib_version()):
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_FLAG}".strip()
    return True
