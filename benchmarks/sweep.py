"""Sweeps of throughput and time to success, and vmapped seeds against sequential runs.

    python -m benchmarks.sweep seeds                      # N=8 seeds in one program vs 8 runs one after another
    python -m benchmarks.sweep grid                       # env steps/s and time to 0.9 over num_envs x batch x devices
    python -m benchmarks.sweep grid --env fetch_push --num-envs 256 1024 4096 --batch-size 1024 8192 --devices 1
                                                          # (a GPU's sizes)

``seeds``: the same config (default FetchReach, baselines' defaults) trained for ``--epochs`` epochs as
``num_seeds=N`` (one compiled program, ``jax.vmap`` over the seeds) and as N ``train`` calls one after another
in the same process (compiled once, the trainer reused: the sequential runs' best case). Env steps/s over all
seeds, first epoch (compilation) included and excluded, and their ratio.

``grid``: for every combination of ``--num-envs``, ``--batch-size`` (``<section>.batch_size``) and ``--devices``
(``num_devices``; on a CPU, ``XLA_FLAGS=--xla_force_host_platform_device_count`` is set to the largest), one run
with ``stop_success=--threshold`` and a budget: env steps/s of its epochs after the first (steady state), and the
env steps and wall seconds to the first epoch at the threshold (``null`` if the budget ran out).

Results (with the machine) go to ``benchmarks/results/sweep_<mode>_<backend>.json``, with a PNG beside them.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def _steady_rate(history: list[dict]) -> float:
    """Env steps/s of the epochs after the first (which includes compilation)."""
    if len(history) == 1:
        return history[0]["env_steps"] / history[0]["epoch_s"]
    return (history[-1]["env_steps"] - history[0]["env_steps"]) / sum(r["epoch_s"] for r in history[1:])


def seeds_ab(args) -> dict:
    from herjax.train import train

    base = [f"env={args.env}", f"alg={args.alg}", *args.set]
    out = {"env": args.env, "alg": args.alg, "set": args.set, "num_seeds": args.num_seeds, "epochs": args.epochs}
    with tempfile.TemporaryDirectory() as tmp:
        probe = train(base + ["total_env_steps=1", f"run_dir={tmp}/probe"], log=None)
        per_epoch = probe.trainer.steps_per_epoch
        budget = f"total_env_steps={per_epoch * args.epochs}"

        t0 = time.perf_counter()
        vm = train(base + [budget, f"num_seeds={args.num_seeds}", f"run_dir={tmp}/vmapped"], log=print)
        vm_wall = time.perf_counter() - t0
        vm_steps = args.num_seeds * per_epoch * args.epochs
        first_epoch = vm.histories[0][0]["epoch_s"]

        t0 = time.perf_counter()
        seq_rates, trainer = [], probe.trainer
        for seed in range(args.num_seeds):
            run = train(base + [budget, f"seed={seed}", f"run_dir={tmp}/seq{seed}"], log=None, trainer=trainer)
            seq_rates.append(_steady_rate(run.history))
        seq_wall = time.perf_counter() - t0
        vm_steady = args.num_seeds * _steady_rate(vm.histories[0])
        seq_steady = 1.0 / statistics.mean(1.0 / r for r in seq_rates)  # one run after another: harmonic mean
    out.update({
        "env_steps_per_seed": per_epoch * args.epochs,
        "vmapped": {"wall_s": round(vm_wall, 1), "first_epoch_s": round(first_epoch, 1),
                    "env_steps_per_s": round(vm_steps / vm_wall, 1), "steady_env_steps_per_s": round(vm_steady, 1)},
        "sequential": {"wall_s": round(seq_wall, 1), "env_steps_per_s": round(vm_steps / seq_wall, 1),
                       "steady_env_steps_per_s": round(seq_steady, 1),
                       "note": "one process, compiled once (the trainer reused): the sequential runs' best case"},
    })
    out["ratio_vmapped_over_sequential"] = round(out["vmapped"]["env_steps_per_s"] /
                                                 out["sequential"]["env_steps_per_s"], 2)
    out["ratio_steady"] = round(vm_steady / seq_steady, 2)
    return out


def grid(args) -> dict:
    from herjax import algs, config
    from herjax.train import reached as reaches, train

    section = algs.get(args.alg).section
    rows = []
    for num_envs, batch, devices in itertools.product(args.num_envs, args.batch_size, args.devices):
        keys = [f"env={args.env}", f"alg={args.alg}", f"num_envs={num_envs}", f"{section}.batch_size={batch}",
                f"num_devices={devices}", f"stop_success={args.threshold}", f"total_env_steps={args.max_steps}",
                *args.set]
        try:
            config.load(keys + ["run_dir=unused"])
        except config.ConfigError as e:
            print(f"skip num_envs={num_envs} batch={batch} devices={devices}: {e}")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            run = train(keys + [f"run_dir={tmp}/run"], log=None)
            wall = time.perf_counter() - t0
        reached = [r for r in run.history if reaches(r["test/success_rate"], args.threshold)]
        row = {"num_envs": num_envs, "batch_size": batch, "num_devices": devices,
               "steady_env_steps_per_s": round(_steady_rate(run.history), 1),
               "env_steps_to_threshold": reached[0]["env_steps"] if reached else None,
               "wall_s_to_threshold": round(reached[0]["wall_s"], 1) if reached else None,
               "run_wall_s": round(wall, 1), "epochs": len(run.history)}
        print(json.dumps(row))
        rows.append(row)
    return {"env": args.env, "alg": args.alg, "set": args.set, "threshold": args.threshold,
            "max_steps": args.max_steps, "rows": rows}


def _plot(mode: str, result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if mode == "seeds":
        fig, ax = plt.subplots(figsize=(4.5, 3))
        names = ["vmapped", "sequential"]
        ax.bar(names, [result[n]["env_steps_per_s"] for n in names], color=["tab:blue", "tab:gray"])
        ax.set_ylabel("env steps/s (all seeds, compile incl.)")
        ax.set_title(f"{result['num_seeds']} seeds, {result['env']}: x{result['ratio_vmapped_over_sequential']}")
    else:
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
        for (devices, batch), rows in itertools.groupby(
                sorted(result["rows"], key=lambda r: (r["num_devices"], r["batch_size"], r["num_envs"])),
                key=lambda r: (r["num_devices"], r["batch_size"])):
            rows = list(rows)
            label = f"batch {batch}, {devices} dev"
            axes[0].plot([r["num_envs"] for r in rows], [r["steady_env_steps_per_s"] for r in rows], "o-", label=label)
            axes[1].plot([r["num_envs"] for r in rows], [r["wall_s_to_threshold"] or float("nan") for r in rows], "o-",
                         label=label)
        for ax, name in zip(axes, ["env steps/s", f"wall s to {result['threshold']}"]):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("num_envs")
            ax.set_ylabel(name)
        axes[0].legend(fontsize=7)
        fig.suptitle(f"{result['env']} {result['alg']}")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("seeds", "grid"))
    parser.add_argument("--env", default="fetch_reach")
    parser.add_argument("--alg", default="ddpg_her")
    parser.add_argument("--set", nargs="*", default=[], help="more key=value overrides")
    parser.add_argument("--num-seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-envs", type=int, nargs="+", default=[2, 8, 32])
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--devices", type=int, nargs="+", default=[1])
    parser.add_argument("--threshold", type=float, default=0.9)
    parser.add_argument("--max-steps", type=int, default=20_000)
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if max(args.devices) > 1 and "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   f" --xla_force_host_platform_device_count={max(args.devices)}").strip()
    import jax

    from benchmarks.machine import describe

    result = seeds_ab(args) if args.mode == "seeds" else grid(args)
    result["machine"] = describe()
    out = args.out or os.path.join(HERE, "results", f"sweep_{args.mode}_{jax.default_backend()}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(result, f, indent=1)
    _plot(args.mode, result, os.path.splitext(out)[0] + ".png")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
