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
    assert proc.returncode != 0 and "mujoco or mujoco.mjx is missing" in proc.stderr
    assert "Traceback" not in proc.stderr
