"""The plain weights of a deterministic policy, as every agent's ``export`` returns them (``herjax.export`` writes
them to an ``.npz`` and holds the NumPy forward pass that reads them back).

The policy they describe, for raw ``o [..., obs_dim]`` and ``g [..., goal_dim]``::

    o_n = clip((clip(o, -clip_obs, clip_obs) - obs_mean) / obs_std, -norm_clip, norm_clip)    # g_n likewise
    x = [o_n, g_n]
    x = act(LN_i(x @ layer{i}_kernel + layer{i}_bias))      for i < n_layers - 1 (LN_i only if layer{i}_ln_*)
    action = max_u * tanh(x @ layer{n-1}_kernel + layer{n-1}_bias)

Keys (NumPy arrays; strings as 0-d unicode arrays, numbers float32):

* ``format``: ``FORMAT``; ``activation``: a name of ``herjax.agents.common.networks.ACTIVATIONS``.
* ``obs_mean``, ``obs_std`` ``[obs_dim]``, ``goal_mean``, ``goal_std`` ``[goal_dim]``: the normaliser's statistics,
  the std already floored at ``norm_eps`` (``normalizer.mean_std``, compiled as ``greedy`` computes it);
  ``clip_obs``, ``norm_clip`` ``[]``.
* ``n_layers`` ``[]`` int32; ``layer{i}_kernel`` ``[in, out]``, ``layer{i}_bias`` ``[out]``; with layer norm,
  ``layer{i}_ln_scale``, ``layer{i}_ln_bias`` ``[out]`` for every hidden layer and ``layer_norm_eps`` ``[]``
  (``LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * scale + bias`` over the last axis).
* ``max_u`` ``[]``: the action bound of the ``tanh`` head.

Host side: the functions here read arrays out of a state; they are not meant to be jitted.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import jax
import numpy as np

from herjax.agents.common import normalizer
from herjax.agents.common.networks import ExportError, Torso

FORMAT = "herjax-policy-v1"
LAYER_NORM_EPS = 1e-6  # flax.linen.LayerNorm's default, which networks.MLP uses


def mlp_layers(params: Mapping[str, Any], n_hidden: int, torso: Torso, *, name: str = "MLP_0",
               output: bool = True) -> list[dict]:
    """The layers of a ``networks.MLP``'s parameters, in order: ``[{kernel, bias[, ln_scale, ln_bias]}]``.

    Args:
        params: the parameter dict holding the MLP under ``name``.
        n_hidden: its number of hidden layers.
        torso: the network keys it was built with; a custom ``network`` raises ``ExportError`` (one line).
        name: the MLP's name in ``params`` (``MLP_0`` as a compact submodule).
        output: whether it has an output layer (``out_dim`` not ``None``).
    """
    check_exportable(torso)
    params, layer_norm = params[name], torso.layer_norm
    layers = []
    for i in range(n_hidden + int(output)):
        dense = params[f"Dense_{i}"]
        layer = {"kernel": dense["kernel"], "bias": dense["bias"]}
        if layer_norm and i < n_hidden:
            layer.update(ln_scale=params[f"LayerNorm_{i}"]["scale"], ln_bias=params[f"LayerNorm_{i}"]["bias"])
        layers.append(layer)
    return layers


def check_exportable(torso: Torso) -> None:
    """Raises ``ExportError`` (one line) when the networks are a custom ``network=`` module."""
    if torso.network is not None:
        raise ExportError(
            f"cannot export a policy built with network={torso.network!r}: the weights format holds herjax's MLP "
            "only; read your module's parameters from the agent state instead"
        )


def policy_weights(
    obs_stats: normalizer.NormalizerState,
    goal_stats: normalizer.NormalizerState,
    layers: Sequence[Mapping[str, Any]],
    *,
    torso: Torso,
    max_u: float,
    clip_obs: float,
    norm_eps: float,
    norm_clip: float,
    out_columns: Optional[int] = None,
) -> dict[str, np.ndarray]:
    """The weights dict of the module docstring.

    Args:
        obs_stats: observation statistics, size ``obs_dim``.
        goal_stats: goal statistics, size ``goal_dim``.
        layers: ``mlp_layers``' list (which refuses a custom ``network``), the last one linear.
        torso: the network keys (``activation``).
        max_u: the action bound of the ``tanh`` head.
        clip_obs: raw input clip.
        norm_eps: the normaliser's std floor.
        norm_clip: normalised input clip.
        out_columns: keep only the first this many outputs of the last layer (SAC: the mean of ``[mean,
            log_std]``); ``None`` keeps all.
    """
    f32 = lambda x: np.asarray(x, np.float32)
    # Compiled, as greedy computes them: XLA fuses ``sumsq / count - mean^2`` (an FMA), and where the variance
    # cancels (a coordinate that barely moves) op-by-op arithmetic gives a std up to ~1e-5 relative away from it.
    mean_std = jax.jit(normalizer.mean_std, static_argnums=1)
    o_mean, o_std = mean_std(obs_stats, norm_eps)
    g_mean, g_std = mean_std(goal_stats, norm_eps)
    out = {
        "format": np.asarray(FORMAT), "activation": np.asarray(torso.activation),
        "obs_mean": f32(o_mean), "obs_std": f32(o_std), "goal_mean": f32(g_mean), "goal_std": f32(g_std),
        "clip_obs": f32(clip_obs), "norm_clip": f32(norm_clip), "max_u": f32(max_u),
        "n_layers": np.asarray(len(layers), np.int32),
    }
    for i, layer in enumerate(layers):
        kernel, bias = f32(layer["kernel"]), f32(layer["bias"])
        if i == len(layers) - 1 and out_columns is not None:
            kernel, bias = kernel[:, :out_columns], bias[:out_columns]
        out[f"layer{i}_kernel"], out[f"layer{i}_bias"] = kernel, bias
        if "ln_scale" in layer:
            out[f"layer{i}_ln_scale"], out[f"layer{i}_ln_bias"] = f32(layer["ln_scale"]), f32(layer["ln_bias"])
            out["layer_norm_eps"] = f32(LAYER_NORM_EPS)
    return out
