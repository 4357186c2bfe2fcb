"""Run a trained policy: success rate, and optionally a video.

    python -m herjax.play run=runs/fetch_reach/ddpg_her/20250101-120000
    python -m herjax.play run=<run_dir> episodes=20 checkpoint=latest video=reach.mp4

Keys: ``run`` (required), ``episodes`` (10), ``checkpoint`` (``best`` or ``latest``; ``best`` falls back to
``latest``), ``video`` (an ``.mp4`` or ``.gif`` path; none by default), ``seed`` (0: the resets' key), ``width``
and ``height`` (480 x 480, gymnasium-robotics' default), ``backend`` (the run's own by default).

The episodes are those of training's evaluation: ``herjax.rollout.collect_episodes`` with the algorithm's
deterministic policy (``Trainer.policy``) on the run's env. The video renders them afterwards from the recorded
physical states with MuJoCo's offscreen renderer: each frame writes qpos, qvel and the mocap pose into an
``MjData`` of the env's own ``MjModel`` (``env.mj_model``), moves the goal marker (site ``target0``) to the
episode's goal as gymnasium-robotics does (``env.goal_position(goal)`` where the env has one, for goals that are
not 3-D points), and calls ``mj_forward``; the camera is ``env.render_camera`` where the env has one. Without a
display, importing this module sets
``MUJOCO_GL=egl`` (or ``osmesa`` when only OSMesa is installed) unless ``MUJOCO_GL`` is already set; if
``mujoco`` was imported earlier (and so chose GLFW, which needs a display), the renderer makes its own EGL or
OSMesa context.
"""

from __future__ import annotations

import ctypes.util
import os
import sys


def _choose_gl() -> None:
    if "MUJOCO_GL" in os.environ or sys.platform != "linux":
        return
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    if ctypes.util.find_library("EGL"):
        os.environ["MUJOCO_GL"] = "egl"
    elif ctypes.util.find_library("OSMesa"):
        os.environ["MUJOCO_GL"] = "osmesa"


_choose_gl()

import copy  # noqa: E402 -- the GL choice above must come before anything imports mujoco
import dataclasses  # noqa: E402
import warnings  # noqa: E402
from typing import Any, Callable, Optional, Sequence  # noqa: E402

import numpy as np  # noqa: E402

from herjax.checks import help_requested  # noqa: E402
from herjax.runs.checkpoint import CheckpointError  # noqa: E402

# gymnasium-robotics' Fetch camera (``fetch_env.DEFAULT_CAMERA_CONFIG``).
CAMERA = {"distance": 2.5, "azimuth": 132.0, "elevation": -14.0, "lookat": (1.3, 0.75, 0.55)}
GOAL_SITE = "target0"


class PlayError(ValueError):
    """A bad argument of ``play``; the message is one line."""


@dataclasses.dataclass
class PlayResult:
    """What ``play`` returns.

    Attributes:
        success_rate: fraction of episodes whose last step is a success.
        episode_return: mean undiscounted return.
        is_success: ``[episodes]`` per-episode success.
        checkpoint: which checkpoint played, ``kind/epoch``.
        frames: ``[N, H, W, 3]`` uint8 video frames (``None`` without ``video``/``render``).
        video: the path written, or ``None``.
    """

    success_rate: float
    episode_return: float
    is_success: np.ndarray
    checkpoint: str
    frames: Optional[np.ndarray] = None
    video: Optional[str] = None


def _offscreen_renderer(model: Any, width: int, height: int) -> Any:
    """``mujoco.Renderer``, also in a process without a display that imported mujoco before this module (a
    notebook that trained first): mujoco then chose GLFW, which needs a display, so this renderer's context is
    made with EGL (or OSMesa) instead."""
    import importlib

    import mujoco

    try:
        from mujoco.rendering.classic import gl_context
    except ImportError:  # another mujoco layout: leave the choice to mujoco
        gl_context = None
    default = getattr(gl_context, "GLContext", None)
    headless = sys.platform == "linux" and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    errors = []
    if headless and default is not None and "glfw" in getattr(default, "__module__", ""):
        for backend in ("egl", "osmesa"):
            try:
                gl_context.GLContext = importlib.import_module(f"mujoco.{backend}").GLContext
                return mujoco.Renderer(model, height=height, width=width)
            except Exception as e:  # noqa: BLE001 -- try the next backend, report all if none works
                errors.append(f"{backend}: {' '.join(str(e).split())}")
            finally:
                gl_context.GLContext = default
    else:
        try:
            return mujoco.Renderer(model, height=height, width=width)
        except Exception as e:  # noqa: BLE001 -- whatever the GL backend raises, say what to do about it
            errors.append(" ".join(str(e).split()))
    raise RuntimeError(
        f"cannot open an offscreen OpenGL context ({'; '.join(errors)}); without a display set MUJOCO_GL=egl "
        "(needs libEGL and Mesa) or MUJOCO_GL=osmesa (needs libOSMesa) before mujoco is imported"
    )


def render_episodes(
    mj_model: Any, physics: Any, goals: np.ndarray, *, width: int = 480, height: int = 480,
    camera: Optional[dict] = None,
) -> np.ndarray:
    """Renders recorded episodes with MuJoCo's offscreen renderer.

    Args:
        mj_model: the env's ``MjModel`` (``env.mj_model``); a copy is rendered, it is not changed.
        physics: a ``PhysState`` with leaves ``[B, T+1, ...]`` (``collect_episodes(..., record_physics=True)``).
        goals: ``[B, 3]`` where each episode's desired goal is drawn (site ``target0``, if the model has one).
        width: frame width in pixels.
        height: frame height in pixels.
        camera: a free camera ``{distance, azimuth, elevation, lookat}``; ``None``: gymnasium-robotics' Fetch one.

    Returns:
        ``[B * (T+1), height, width, 3]`` uint8 frames, episode after episode.
    """
    import mujoco

    model = copy.deepcopy(mj_model)
    model.vis.global_.offwidth = max(model.vis.global_.offwidth, width)
    model.vis.global_.offheight = max(model.vis.global_.offheight, height)
    data = mujoco.MjData(model)
    renderer = _offscreen_renderer(model, width, height)
    view = CAMERA if camera is None else camera
    camera = mujoco.MjvCamera()
    camera.type = mujoco.mjtCamera.mjCAMERA_FREE
    camera.distance, camera.azimuth, camera.elevation = view["distance"], view["azimuth"], view["elevation"]
    camera.lookat[:] = view["lookat"]
    site = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_SITE, GOAL_SITE)
    mujoco.mj_forward(model, data)
    site_offset = data.site_xpos[site] - model.site_pos[site] if site >= 0 else None

    qpos, qvel = np.asarray(physics.qpos), np.asarray(physics.qvel)
    mocap_pos, mocap_quat = np.asarray(physics.mocap_pos), np.asarray(physics.mocap_quat)
    frames = []
    try:
        for b in range(qpos.shape[0]):
            if site_offset is not None:  # gymnasium-robotics ``_render_callback``
                model.site_pos[site] = goals[b] - site_offset
            for t in range(qpos.shape[1]):
                data.qpos[:] = qpos[b, t]
                data.qvel[:] = qvel[b, t]
                data.mocap_pos[:] = mocap_pos[b, t].reshape(data.mocap_pos.shape)
                data.mocap_quat[:] = mocap_quat[b, t].reshape(data.mocap_quat.shape)
                mujoco.mj_forward(model, data)
                renderer.update_scene(data, camera=camera)
                frames.append(renderer.render())
    finally:
        renderer.close()
    return np.stack(frames)


def write_video(path: str, frames: np.ndarray, fps: float) -> None:
    """Writes ``frames [N, H, W, 3]`` uint8 as ``.mp4`` (H.264, via imageio-ffmpeg) or ``.gif``."""
    import imageio.v3 as iio

    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with warnings.catch_warnings():
        # imageio-ffmpeg starts ffmpeg with subprocess, and Python warns about any fork in a threaded process;
        # the child execs ffmpeg at once, so the warning does not apply.
        warnings.filterwarnings("ignore", message=".*fork.*", category=RuntimeWarning)
        if path.lower().endswith(".gif"):
            iio.imwrite(path, frames, duration=1000.0 / fps, loop=0)
        else:
            iio.imwrite(path, frames, fps=fps, codec="libx264", macro_block_size=1)


def play(
    run_dir: str,
    *,
    episodes: int = 10,
    checkpoint: str = "best",
    video: Optional[str] = None,
    render: bool = False,
    seed: int = 0,
    width: int = 480,
    height: int = 480,
    backend: Optional[str] = None,
    log: Optional[Callable[[str], None]] = print,
) -> PlayResult:
    """Runs ``episodes`` deterministic episodes of a saved run's policy (host side: reads files, may write a video).

    Args:
        run_dir: the run directory.
        episodes: how many episodes, all run as one batch.
        checkpoint: ``best`` or ``latest``.
        video: write the episodes to this ``.mp4`` / ``.gif``.
        render: return the frames even without ``video``.
        seed: PRNG seed of the resets (goals and object positions).
        width: video width.
        height: video height.
        backend: physics engine; ``None``: the run's own.
        log: called with the summary lines; ``None`` silences it.

    Raises ``PlayError`` or ``herjax.runs.checkpoint.CheckpointError`` (one line) for bad input.
    """
    if episodes < 1:
        raise PlayError(f"bad value {episodes!r} for episodes: must be > 0")
    if width < 16 or height < 16:
        raise PlayError(f"bad video size {width}x{height}: width and height must be >= 16")
    if video is not None and not video.lower().endswith((".mp4", ".gif")):
        raise PlayError(f"bad value {video!r} for video: expected a path ending in .mp4 or .gif")
    if video is not None:
        _check_writable(video)
    import jax

    from herjax.runs import checkpoint as ckpt_lib
    from herjax.rollout import collect_episodes

    run = ckpt_lib.load_run(run_dir, checkpoint, backend=backend)
    env, trainer = run.env, run.trainer
    want_frames = render or video is not None
    mj_model = getattr(env, "mj_model", None)
    if want_frames and mj_model is None:
        raise PlayError(f"env {run.config.env!r} has no MuJoCo model to render (no mj_model attribute); play it "
                        "without video")

    @jax.jit
    def rollout(state: Any, key: jax.Array):
        policy = lambda obs, goal, key: trainer.policy(state, obs, goal)
        episodes_, info = collect_episodes(env, policy, key, episodes, record_physics=want_frames)
        return episodes_.desired_goal[:, 0], info

    goals, info = jax.device_get(rollout(run.state, jax.random.key(seed)))
    is_success = np.asarray(info.is_success)
    result = PlayResult(
        success_rate=float(np.mean(is_success)),
        episode_return=float(np.mean(info.episode_return)),
        is_success=is_success,
        checkpoint=run.where,
    )
    if log:
        log(f"herjax.play: {run.config.env} ({env.backend}), {run.config.alg}, checkpoint {run.where} "
            f"({int(run.meta['env_steps']):,} env steps): success rate {result.success_rate:.3f} over {episodes} "
            f"episodes, mean return {result.episode_return:.2f}")
    if want_frames:
        goal_position = getattr(env, "goal_position", None)
        where = np.asarray(goal_position(goals)) if goal_position is not None else np.asarray(goals)
        result.frames = render_episodes(mj_model, info.physics, where, width=width, height=height,
                                        camera=getattr(env, "render_camera", None))
    if video is not None:
        try:
            write_video(video, result.frames, fps=1.0 / getattr(env, "dt", 0.04))
        except Exception as e:  # noqa: BLE001 -- ffmpeg's and imageio's failures all mean: this video was not written
            raise PlayError(f"cannot write video {video!r}: {' '.join(str(e).split())[:160]}") from None
        result.video = video
        if log:
            log(f"herjax.play: wrote {video} ({len(result.frames)} frames, {width}x{height}, "
                f"{1.0 / getattr(env, 'dt', 0.04):.0f} fps)")
    return result


def _check_writable(video: str) -> None:
    """Raises ``PlayError`` (one line) unless a file can be written at ``video`` (its folder is made if missing):
    checked before anything runs, so a bad path costs no rollout and no rendering."""
    directory = os.path.dirname(os.path.abspath(video))
    try:
        os.makedirs(directory, exist_ok=True)
        probe = os.path.join(directory, f".herjax-play-{os.getpid()}")
        with open(probe, "w"):
            pass
        os.remove(probe)
    except OSError as e:
        raise PlayError(f"bad value {video!r} for video: cannot write there ({e.strerror}); give a writable path "
                        "ending in .mp4 or .gif") from None


_KEYS = {"run": str, "episodes": int, "checkpoint": str, "video": str, "seed": int, "width": int, "height": int,
         "backend": str}


def _parse(argv: Sequence[str]) -> dict[str, Any]:
    import difflib

    out: dict[str, Any] = {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or not key:
            raise PlayError(f"bad argument {arg!r}: expected key=value, e.g. run=runs/fetch_reach/ddpg_her/<time>")
        if key not in _KEYS:
            close = difflib.get_close_matches(key, list(_KEYS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise PlayError(f"unknown key {key!r}{hint}; valid keys: {', '.join(_KEYS)}")
        try:
            out[key] = _KEYS[key](value)
        except ValueError:
            raise PlayError(f"bad value {value!r} for {key}: expected an integer") from None
    if "run" not in out:
        raise PlayError("missing run=<run_dir>, e.g. python -m herjax.play run=runs/fetch_reach/ddpg_her/<time>")
    if out.get("checkpoint", "best") not in ("best", "latest"):
        raise PlayError(f"bad value {out['checkpoint']!r} for checkpoint: expected best or latest")
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI; returns the exit status (2 for bad input)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if help_requested(argv, __doc__):
        return 0
    try:
        kwargs = _parse(argv)
        run_dir = kwargs.pop("run")
        play(run_dir, **kwargs)
    except (PlayError, CheckpointError) as e:
        print(f"herjax.play: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
