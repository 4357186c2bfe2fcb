#!/usr/bin/env bash
# Downloads into .whl/ the wheels that the lent GPU machine's image lacks (Python 3.12, x86-64), for
# `python3 benchmarks/gpu_check.py --wheels .whl` there (carry=[".whl"]). Versions are those the tests here run
# with, where pinned (tests/test_gpu_check.py checks that every dependency of herjax is in the image or here).
# mujoco-studio (the viewer, 13 MB) is left out: importing mujoco does not need it. About 40 MB in all.
# Run here, in the repo root:  bash benchmarks/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
exclude="$(git rev-parse --git-path info/exclude)"; mkdir -p "$(dirname "$exclude")"
grep -qx "/.whl/" "$exclude" 2>/dev/null || echo "/.whl/" >> "$exclude"
mkdir -p .whl
platforms=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# flashbax: the image lacks it, and herjax.replay needs it (a rehearsal in Python 3.12 with only the image's
# packages found it missing; hydra and imageio-ffmpeg are not needed by the check).
for pkg in mujoco==4.0.1 mujoco-core==4.0.1 glfw pyopengl mujoco-mjx==3.17.0 trimesh gymnasium-robotics==1.4.2 \
           gymnasium==1.4.0 farama-notifications pettingzoo omegaconf==2.4.0 tensorboardX flashbax==0.1.3; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${platforms[@]}" -d .whl "$pkg"
done
du -sh .whl
