"""Describes the machine a benchmark ran on, for ``benchmarks/results/``."""

import datetime
import os
import platform


def describe() -> dict:
    import jax
    import mujoco

    devices = jax.devices()
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "jax_backend": jax.default_backend(),
        "devices": [d.device_kind for d in devices],
        "python": platform.python_version(),
        "jax": jax.__version__,
        "mujoco": mujoco.__version__,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
