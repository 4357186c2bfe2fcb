"""``benchmarks/gpu_check.py`` runs end to end on the CPU with a tiny budget (the same code a lent GPU runs)."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gpu_check_runs_on_the_cpu_with_a_tiny_budget(tmp_path):
    out = tmp_path / "gpu_check.json"
    proc = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny", "--budget-s", "120", "--out",
                           str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["tiny"] and result["machine"]["device_name"]
    assert [row["num_envs"] for row in result["throughput"]] == [4, 8]
    assert all(row["env_steps_per_s"] > 0 for row in result["throughput"])
    (push,) = result["time_to_success"]
    assert push["env"] == "fetch_push" and push["epochs_run"] >= 1 and push["threshold"] == 0.9
    assert push["original_env_episodes"] == 2 and 0.0 <= push["original_env_success"] <= 1.0, push
    assert set(result["step_s"]) == {"throughput", "time_to_success"}


def test_gpu_check_without_mujoco_and_without_wheels_says_so_in_one_line():
    """A GPU image without mujoco and no --wheels: one line naming what is missing, before any work."""
    code = ("import importlib.util, sys; sys.argv = ['gpu_check', '--out', 'x.json'];"
            "importlib.util.find_spec = lambda name, *a: None;"
            "sys.path.insert(0, 'benchmarks'); import gpu_check; gpu_check.main(sys.argv[1:])")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "mujoco, mujoco.mjx, flashbax" in proc.stderr and "missing" in proc.stderr
    assert "gpu_wheels.sh" in proc.stderr and "Traceback" not in proc.stderr


# The lent GPU machine's image (device tool, KINDS.md, "Python packages already there", read 2026-11-17): the ones
# of them that herjax depends on. Python 3.12, jax 0.11.2, numpy 2.5.2.
IMAGE = {"jax", "flax", "optax", "chex", "orbax-checkpoint", "numpy", "matplotlib", "imageio"}
# herjax's dependencies that the check never imports: grids (hydra, its submitit launcher) and video (ffmpeg).
NOT_NEEDED_BY_THE_CHECK = {"hydra-core", "hydra-submitit-launcher", "imageio-ffmpeg"}


def _carried() -> set:
    """The packages ``benchmarks/gpu_wheels.sh`` fetches, by their normalised names."""
    import re

    with open(os.path.join(REPO, "benchmarks", "gpu_wheels.sh")) as f:
        text = f.read()
    packages = re.search(r"for pkg in (.*?); do", text, re.S).group(1).replace("\\\n", " ").split()
    return {re.split("[=<>]", p)[0].lower().replace("_", "-") for p in packages}


def test_every_dependency_of_herjax_is_in_the_gpu_image_or_carried():
    """A dependency that is neither in the device image nor among the carried wheels would fail the one GPU call
    (as flashbax would have, seen in a Python 3.12 rehearsal with only the image's packages)."""
    import re
    import tomllib

    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    names = {re.split("[=<>\\[ ]", d)[0].lower().replace("_", "-") for d in deps}
    carried = _carried()
    assert "mujoco" in carried and "flashbax" in carried, carried
    assert names - IMAGE - carried - NOT_NEEDED_BY_THE_CHECK == set()


def test_the_checks_needed_modules_are_the_carried_wheels():
    import importlib.util

    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(REPO, "benchmarks", "gpu_check.py"))
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    packages = {name.replace(".mjx", "-mjx").replace("_", "-").lower() for name in gpu_check.NEEDED}
    assert packages <= _carried(), packages - _carried()

