"""Export a trained policy as plain NumPy weights, to run it where herjax is not installed (a robot's stack).

    python -m herjax.export runs/fetch_reach/ddpg_her/20250101-120000                 # writes policy.npz
    python -m herjax.export <run_dir> out=reach.npz checkpoint=latest

Keys: ``out`` (the ``.npz`` to write; ``policy.npz``), ``checkpoint`` (``best`` or ``latest``; ``best`` falls back
to ``latest``). Bad input gets one line on stderr and exit code 2.

The file holds the deterministic policy every algorithm evaluates with (``agent.greedy``: DDPG's and TD3's actor,
SAC's squashed mean, PPO's ``tanh`` of its mean) as named arrays, the format of
``herjax.agents.common.export``: the normaliser (``obs_mean``, ``obs_std``, ``goal_mean``, ``goal_std``, with
``clip_obs`` and ``norm_clip``), the layers in order (``layer{i}_kernel [in, out]``, ``layer{i}_bias``, and
``layer{i}_ln_scale``, ``layer{i}_ln_bias`` with ``layer_norm_eps`` where the run used ``layer_norm``), the hidden
``activation`` and the head ``max_u * tanh``. Plus ``alg``, ``env``, ``checkpoint`` and ``env_steps``, for the
record. A run with its own ``network=`` module cannot be exported this way (one-line error).

The forward pass needs only NumPy; copy ``forward`` (and ``ACTIVATIONS``) into the robot's code::

    weights = dict(np.load("policy.npz"))
    action = forward(weights, obs["observation"], obs["desired_goal"])     # [obs_dim], [goal_dim] -> [act_dim]

It equals ``herjax.policy.load(run_dir)(obs)`` to float32 rounding (``tests/test_export.py`` checks 1e-5 on
1,000 observations of every algorithm).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Optional, Sequence

import numpy as np

ACTIVATIONS = {
    "relu": lambda x: np.maximum(x, 0.0),
    "tanh": np.tanh,
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "gelu": lambda x: 0.5 * x * (1.0 + np.tanh(0.7978845608028654 * (x + 0.044715 * x**3))),  # sqrt(2 / pi)
    "silu": lambda x: x * 0.5 * (1.0 + np.tanh(0.5 * x)),  # x * sigmoid(x), without overflow
    "swish": lambda x: x * 0.5 * (1.0 + np.tanh(0.5 * x)),
    "leaky_relu": lambda x: np.where(x >= 0, x, 0.01 * x),
}


def forward(weights: Any, observation: Any, desired_goal: Any) -> np.ndarray:
    """The exported policy: ``observation [..., obs_dim]``, ``desired_goal [..., goal_dim]`` -> ``[..., act_dim]``.

    ``weights``: the ``.npz``'s arrays (``np.load(path)`` or a dict of them). Only NumPy is needed.
    """
    w = weights
    act = ACTIVATIONS[str(w["activation"])]
    clip_obs, norm_clip = w["clip_obs"], w["norm_clip"]
    o = np.clip(np.asarray(observation, np.float32), -clip_obs, clip_obs)
    g = np.clip(np.asarray(desired_goal, np.float32), -clip_obs, clip_obs)
    o = np.clip((o - w["obs_mean"]) / w["obs_std"], -norm_clip, norm_clip)
    g = np.clip((g - w["goal_mean"]) / w["goal_std"], -norm_clip, norm_clip)
    x = np.concatenate([o, g], axis=-1)
    n_layers = int(w["n_layers"])
    for i in range(n_layers):
        x = x @ w[f"layer{i}_kernel"] + w[f"layer{i}_bias"]
        if i == n_layers - 1:
            break
        if f"layer{i}_ln_scale" in w:
            mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
            x = (x - mean) / np.sqrt(var + w["layer_norm_eps"]) * w[f"layer{i}_ln_scale"] + w[f"layer{i}_ln_bias"]
        x = act(x)
    return w["max_u"] * np.tanh(x)


class ExportUsageError(ValueError):
    """A bad argument (of the CLI, or an ``out`` path that cannot be written); the message is one line."""


def export(run_dir: str, out_path: str = "policy.npz", checkpoint: str = "best") -> dict[str, np.ndarray]:
    """Writes the deterministic policy of a run's ``checkpoint`` to ``out_path`` (host side: reads and writes files).

    Args:
        run_dir: the run directory.
        out_path: the ``.npz`` file to write (its folder is made if missing); written as named, no suffix added.
        checkpoint: ``best`` or ``latest``.

    Returns:
        The arrays written.

    Raises:
        herjax.runs.checkpoint.CheckpointError: a missing run or no readable checkpoint (one line).
        herjax.agents.common.networks.ExportError: a policy the format cannot hold (one line).
        ExportUsageError: ``out_path`` cannot be written (one line).
    """
    from herjax.agents.common.networks import ExportError
    from herjax.loops.common import TrainState
    from herjax.runs import checkpoint as ckpt_lib

    run = ckpt_lib.load_run(run_dir, checkpoint)
    if run.trainer.agent.export is None:
        raise ExportError(f"alg={run.config.alg} has no export")
    agent_state = run.state.agent if isinstance(run.state, TrainState) else run.state
    weights = dict(run.trainer.agent.export(agent_state))
    weights.update(alg=np.asarray(run.config.alg), env=np.asarray(run.config.env), checkpoint=np.asarray(run.where),
                   env_steps=np.asarray(int(run.meta["env_steps"]), np.int64))
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
        with open(out_path, "wb") as f:
            np.savez(f, **weights)
    except (OSError, ValueError) as e:  # ValueError: a path the OS cannot take (an embedded NUL)
        reason = getattr(e, "strerror", None) or " ".join(str(e).split())
        raise ExportUsageError(f"bad value {out_path!r} for out: cannot write there ({reason})") from None
    return weights


def describe(weights: dict[str, np.ndarray], out_path: str) -> str:
    """One line about an export: where, what policy, which sizes."""
    n_layers = int(weights["n_layers"])
    obs_dim, goal_dim = weights["obs_mean"].shape[0], weights["goal_mean"].shape[0]
    act_dim = weights[f"layer{n_layers - 1}_bias"].shape[0]
    widths = [weights[f"layer{i}_bias"].shape[0] for i in range(n_layers - 1)]
    norm = " + layer norm" if "layer_norm_eps" in weights else ""
    return (f"herjax.export: wrote {out_path}: {weights['alg']} on {weights['env']}, checkpoint "
            f"{weights['checkpoint']} ({int(weights['env_steps']):,} env steps); obs [{obs_dim}] + goal [{goal_dim}] "
            f"-> {widths} {weights['activation']}{norm} -> {float(weights['max_u']):g} * tanh [{act_dim}]")


def _parse(argv: Sequence[str]) -> tuple[str, dict[str, str]]:
    from herjax.checks import suggest

    run_dir, options = None, {}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep:
            if run_dir is not None:
                raise ExportUsageError(f"bad argument {arg!r}: one run directory only (already {run_dir!r})")
            run_dir = arg
            continue
        if key not in ("out", "checkpoint"):
            raise ExportUsageError(f"unknown key {key!r}{suggest(key, ['out', 'checkpoint'])}; valid keys: out, "
                                   "checkpoint")
        if not value:
            raise ExportUsageError(f"bad value '' for {key}")
        options[key] = value
    if run_dir is None:
        raise ExportUsageError("missing RUN_DIR, e.g. python -m herjax.export runs/fetch_reach/ddpg_her/<time>")
    if options.get("checkpoint", "best") not in ("best", "latest"):
        raise ExportUsageError(f"bad value {options['checkpoint']!r} for checkpoint: expected best or latest")
    return run_dir, options


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The CLI; returns the exit status (2 for bad input)."""
    from herjax.agents.common.networks import ExportError
    from herjax.checks import help_requested
    from herjax.runs.checkpoint import CheckpointError

    argv = list(sys.argv[1:] if argv is None else argv)
    if help_requested(argv, __doc__):
        return 0
    try:
        run_dir, options = _parse(argv)
        out_path = options.get("out", "policy.npz")
        weights = export(run_dir, out_path, options.get("checkpoint", "best"))
    except (ExportUsageError, ExportError, CheckpointError) as e:
        print(f"herjax.export: error: {e}", file=sys.stderr)
        return 2
    print(describe(weights, out_path))
    return 0


if __name__ == "__main__":
    sys.exit(main())
