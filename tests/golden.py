"""Golden runs: nothing a run computes changed in the one-house redesign: the same commands give the same progress.csv.

The rows in ``tests/data/golden_{ddpg,ppo}.csv`` were written by the pre-redesign code (commit 71debf3, its
``loops.py`` and ``ppo_loops.py``) for the commands of ``conftest.DDPG_REACH_ARGS`` and ``PPO_REACH_ARGS``.
The PPO rows were rewritten once since, by the commit that resets non-finite envs in ``herjax.envs.vec``
(issue 13): reading every env's state for the finiteness check changes how XLA fuses the step, which moved
epoch 1 by float32 rounding (``test/return`` by 4.8e-7, ``train/actor_loss`` by 9.3e-10), and PPO's updates
carry such differences forward (by epoch 10 test success is 1.0 in both). The DDPG rows are still the
pre-redesign ones.
Every metric (test success, test Q, losses, normaliser statistics ...) must be bit-identical, as the CSV
writes it (Python's shortest float repr, which round-trips float32 exactly). This is a CPU check on the machine
class CI runs on: XLA's CPU code generation is deterministic for one program on one instruction set, and one
XLA: the rows are jaxlib 0.10.2's (``GOLDEN_JAXLIB``, the version CI installs on Python 3.11). Another jaxlib
rounds differently (jaxlib 0.12.1 on Python 3.13: PPO's epoch 1 moved by up to 9e-6 relative, and DDPG's stop
epoch moved), so there the comparison does not apply and the two tests say so as they skip.

The instruction set counts too. ``golden_{alg}.csv`` holds the rows of the Intel Xeons these machines and CI ran on
until 2026-12-06. That day a session and CI's clone ran on an AMD EPYC (family 26, model 2, AVX-512), where PPO's
epoch 1 came out 1.1e-5 relative apart (``train/actor_loss``) and later epochs further (test success equal at every
epoch); DDPG's rows were equal there. A CPU class (``cpu_class()``: vendor, family, model, from which LLVM picks
the code XLA emits) with rows of its own has ``golden_{alg}.{cpu_class}.csv``: those were written by the code of the
commit that added them, whose rows on the Intel Xeons are the golden ones above, so they carry the same guarantee.
"""

import csv
import os

import pytest

from herjax import _xla

GOLDEN_JAXLIB = (0, 10, 2)

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def assert_bit_identical(alg: str, run_dir: str) -> None:
    """The ``progress.csv`` of ``run_dir`` has exactly the golden rows of ``alg`` (``ddpg`` or ``ppo``)."""
    version, flag = _xla.jaxlib_version(), _xla.CPU_FLAG in os.environ.get("XLA_FLAGS", "")
    if version != GOLDEN_JAXLIB or not flag:
        pytest.skip(f"the golden rows are bit for bit those of jaxlib {'.'.join(map(str, GOLDEN_JAXLIB))} with "
                    f"herjax's XLA flag; this is jaxlib {'.'.join(map(str, version or ()))}"
                    f"{'' if flag else ' without the flag'}")
    path = golden_path(alg)
    golden = _rows(path)
    rows = _rows(os.path.join(run_dir, "progress.csv"))
    assert len(rows) == len(golden)
    for i, (want, got) in enumerate(zip(golden, rows)):
        for key, value in want.items():
            assert got[key] == value, (f"epoch {i + 1} {key}: {got[key]} != {value} (golden, "
                                       f"{os.path.basename(path)}; this CPU is {cpu_class()})")


def cpu_class() -> str:
    """``vendor-family-model`` of this CPU (``AuthenticAMD-26-2`` here), as ``/proc/cpuinfo`` gives them."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key in ("vendor_id", "cpu family", "model") and key not in fields:
                    fields[key] = value.strip()
    except OSError:
        pass
    return "-".join(fields.get(k, "unknown").replace(" ", "_") for k in ("vendor_id", "cpu family", "model"))


def golden_path(alg: str) -> str:
    """This CPU class's rows of ``alg`` where it has its own, else those of the Intel Xeons."""
    own = os.path.join(DATA, f"golden_{alg}.{cpu_class()}.csv")
    return own if os.path.exists(own) else os.path.join(DATA, f"golden_{alg}.csv")
