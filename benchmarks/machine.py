"""Describes the machine a benchmark ran on, for ``benchmarks/results/``; runs one variant of a benchmark in a
process of its own (settings such as ``jax_enable_x64`` are fixed once JAX starts)."""

import datetime
import json
import os
import platform
import subprocess
import sys

RESULT = "RESULT "
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def report(result: dict) -> None:
    """What a child process prints for ``in_child`` to read: one line, ``RESULT <json>``."""
    print(RESULT + json.dumps(result), flush=True)


def in_child(module: str, *args: str) -> dict:
    """``python -m module *args`` from the repository root; returns the dict its ``report`` printed. Raises
    ``RuntimeError`` with the end of its stderr when it fails or reports nothing."""
    proc = subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)]
    if proc.returncode or not lines:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len(RESULT):])


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


def save(path: str, result: dict) -> None:
    """Writes a benchmark's ``result`` (JSON, indented) to ``path`` and says so."""
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")
