"""herjax PPO against Brax's PPO trainer, side by side, on the same herjax env and machine.

Both trainers step the very same herjax env (C MuJoCo on the CPU): herjax through ``herjax.envs.vec``, Brax through
``herjax.interop.brax.BraxGoalEnv`` with ``wrap_for_training`` (fresh goals on every reset, like ``vec``; Brax's
default auto-reset would replay each env slot's first goal forever). Hyper-parameters are matched where Brax has
them (see ``brax_kwargs``): envs, steps per update batch, minibatch size, passes, learning rate, discount, GAE
lambda, clip, gradient clip, observation normalisation, network sizes and activation, initial action noise. What
stays different is each trainer's own design: Brax computes GAE on 10-step unrolls and drops the time-limit step
from the loss instead of bootstrapping it, normalises observations before the update, learns a constant learning
rate, and its value loss is unclipped; herjax unrolls whole episodes, bootstraps at truncation and decays the
learning rate linearly.

Both are evaluated identically, every ``eval_every`` env steps: ``n_test`` fresh episodes of the deterministic
policy through ``herjax.rollout.collect_episodes``, success = ``is_success`` at the last step. Wall-clock counts
everything from the trainer call (construction, compilation, the evaluations). Steady throughput (env steps/s,
learning included, evaluation excluded) is, for herjax, the median over 5 epochs of the same config with the
evaluation made negligible (``herjax_throughput``), and for Brax its own ``training/sps``, the median over its
epochs after the first two (Brax compiles its epoch twice). Both are bound by the C MuJoCo physics on these two
cores, which other jobs share: compare them with the load average recorded alongside.

    python benchmarks/ppo_vs_brax.py                     # FetchReach_dense (3 seeds) and FetchPush_dense (1 seed)
    python benchmarks/ppo_vs_brax.py --tasks reach --seeds 0

Results go to ``benchmarks/results/ppo_vs_brax_cpu.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import herjax  # noqa: E402,F401  (the XLA flag, before JAX starts)
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.machine import describe  # noqa: E402
from herjax import config, envs, loops  # noqa: E402
from herjax.agents.ppo import PPOConfig  # noqa: E402
from herjax.config import TrainConfig  # noqa: E402
from herjax.rollout import collect_episodes  # noqa: E402
from herjax.train import reached, train  # noqa: E402

DEFAULT_OUT = os.path.join(HERE, "results", "ppo_vs_brax_cpu.json")
N_TEST = 50
# Per task: env, herjax run config, the env-step budget, the success threshold to time (None: best within budget).
TASKS = {
    "reach": dict(env="fetch_reach_dense", num_envs=32, n_iterations=2, budget=100_000, threshold=0.9),
    "push": dict(env="fetch_push_dense", num_envs=64, n_iterations=5, budget=400_000, threshold=None),
}


class _Reached(Exception):
    """Stops Brax's trainer once the threshold is reached (it has no early stop of its own)."""


def make_eval(env, n_test: int):
    """``(policy_fn_params, key) -> success`` for a deterministic policy ``(params, obs, goal) -> action``."""

    def build(policy):
        @jax.jit
        def run(params, key):
            _, info = collect_episodes(env, lambda o, g, k: policy(params, o, g), key, n_test)
            return jnp.mean(info.is_success)

        return run

    return build


def herjax_config(task: dict, ppo: PPOConfig, **overrides) -> TrainConfig:
    """The herjax run of ``task``: PPO with the task's envs, iterations (cycles) and budget."""
    fields = dict(env=task["env"], alg="ppo", total_env_steps=task["budget"], num_envs=task["num_envs"],
                  n_cycles=task["n_iterations"], n_test_episodes=N_TEST, run_dir="unused", ppo=ppo)
    return config.load(TrainConfig(**{**fields, **overrides}))


def run_herjax(task: dict, seed: int, ppo: PPOConfig) -> dict:
    cfg = herjax_config(task, ppo, seed=seed, stop_success=task["threshold"])
    start = time.perf_counter()
    trainer = loops.make_train(cfg, envs.make(cfg.env))
    build_s = time.perf_counter() - start  # train's clock starts after this
    log = lambda line: print(f"  herjax {task['env']} seed {seed}: {line}", flush=True)
    with tempfile.TemporaryDirectory() as run_dir:
        result = train(dataclasses.replace(cfg, run_dir=run_dir), log=log, trainer=trainer, handle_signals=False)
    total_s = time.perf_counter() - start
    history = result.history
    curve = [(r["env_steps"], round(build_s + r["wall_s"], 2), round(r["test/success_rate"], 3)) for r in history]
    rates = herjax_throughput(task, ppo)
    return _summary(curve, task["threshold"], total_s, sps=statistics.median(rates),
                    extra={"env_steps_per_s_by_epoch": rates, "first_epoch_s": round(history[0]["epoch_s"], 2),
                           "steps_per_epoch": trainer.steps_per_epoch})


def herjax_throughput(task: dict, ppo: PPOConfig, epochs: int = 5) -> list:
    """Training env steps/s, learning included, of each of ``epochs`` epochs after the compiling one, on the same
    run config with the evaluation made negligible (2 test episodes per 5x longer epoch)."""
    cfg = herjax_config(task, ppo, n_cycles=5 * task["n_iterations"], n_test_episodes=2)
    trainer = loops.make_train(cfg, envs.make(cfg.env))
    state, metrics = trainer.run_epoch(trainer.init(jax.random.key(0)))
    jax.block_until_ready(metrics)
    rates = []
    for _ in range(epochs):
        tick = time.perf_counter()
        state, metrics = trainer.run_epoch(state)
        jax.block_until_ready(metrics)
        rates.append(round(trainer.steps_per_epoch / (time.perf_counter() - tick), 1))
    return rates


def initial_success(task: dict, seed: int) -> float:
    """Test success of herjax's untrained policy (the chance level of the task for a near-still arm)."""
    cfg = herjax_config(task, PPOConfig(), total_env_steps=1)
    trainer = loops.make_train(cfg, envs.make(cfg.env))
    return float(trainer.evaluate(trainer.init(jax.random.key(seed)).agent, jax.random.key(seed + 7)).success_rate)


def brax_kwargs(task: dict, ppo: PPOConfig, budget: int, eval_every: int) -> dict:
    """Brax ``ppo.train`` arguments matched to herjax's PPO run (``herjax_config``)."""
    from brax.training.agents.ppo import networks as ppo_networks
    from flax import linen

    num_envs = task["num_envs"]
    unroll = 10
    # herjax: an iteration is num_envs x 50 steps cut into n_minibatches. Brax: a training step collects
    # batch_size * num_minibatches sequences of `unroll` steps; batch_size = num_envs makes it num_envs x 50 too.
    num_minibatches = 50 // unroll
    assert num_minibatches == ppo.n_minibatches
    per_training_step = num_envs * unroll * num_minibatches
    init_std_param = math.log(math.expm1(math.exp(ppo.log_std_init)))  # Brax: std = softplus(param) + 0.001
    return dict(
        num_timesteps=budget,
        episode_length=50,
        num_envs=num_envs,
        unroll_length=unroll,
        batch_size=num_envs,
        num_minibatches=num_minibatches,
        num_updates_per_batch=ppo.n_epochs,
        learning_rate=ppo.learning_rate,
        entropy_cost=ppo.ent_coef,
        discounting=ppo.gamma,
        gae_lambda=ppo.gae_lambda,
        clipping_epsilon=ppo.clip_range,
        max_grad_norm=ppo.max_grad_norm,
        vf_loss_coefficient=ppo.vf_coef,
        normalize_observations=True,
        reward_scaling=ppo.reward_scale,
        num_evals=budget // eval_every + 1,
        run_evals=False,
        network_factory=functools.partial(
            ppo_networks.make_ppo_networks, policy_hidden_layer_sizes=tuple(ppo.hidden),
            value_hidden_layer_sizes=tuple(ppo.hidden), activation=linen.tanh, init_noise_std=init_std_param,
        ),
        _per_training_step=per_training_step,
    )


def run_brax(task: dict, seed: int, ppo: PPOConfig, eval_every: int) -> dict:
    from brax.training.agents.ppo import train as brax_ppo

    from herjax.interop.brax import BraxGoalEnv, wrap_for_training

    start = time.perf_counter()
    env = envs.make(task["env"])
    kwargs = brax_kwargs(task, ppo, _aligned(task["budget"], eval_every), eval_every)
    kwargs.pop("_per_training_step")
    kwargs["seed"] = seed
    evaluate = None
    curve, sps, eval_times = [], [], []

    def policy_params_fn(step, make_policy, params):
        nonlocal evaluate
        if step == 0:
            return  # Brax's call with the initial parameters; herjax does not evaluate those either
        tick = time.perf_counter()
        if evaluate is None:

            def policy(p, obs, goal):
                action, _ = make_policy(p, deterministic=True)(jnp.concatenate([obs, goal], -1), jax.random.key(0))
                return action

            evaluate = make_eval(env, N_TEST)(policy)
        success = float(evaluate(params, jax.random.key(seed + 1000 + step)))
        now = time.perf_counter()
        eval_times.append(now - tick)
        curve.append((int(step), round(now - start, 2), round(success, 3)))
        print(f"  brax   {task['env']} seed {seed}: {step:>7} steps  success {success:.2f}  {now - start:.1f}s",
              flush=True)
        if task["threshold"] is not None and success >= task["threshold"]:
            raise _Reached

    def progress_fn(step, metrics):
        if "training/sps" in metrics:
            sps.append(float(metrics["training/sps"]))

    benv = BraxGoalEnv(env)
    try:
        brax_ppo.train(benv, wrap_env_fn=wrap_for_training, policy_params_fn=policy_params_fn,
                       progress_fn=progress_fn, **kwargs)
    except _Reached:
        pass
    total_s = time.perf_counter() - start
    steady = sps[2:] or sps[1:] or sps
    return _summary(curve, task["threshold"], total_s, sps=statistics.median(steady) if steady else None,
                    extra={"env_steps_per_s_by_epoch": [round(x, 1) for x in sps],
                           "eval_s_per_epoch": round(statistics.median(eval_times), 3) if eval_times else None,
                           "steps_per_epoch": eval_every})


def _aligned(budget: int, eval_every: int) -> int:
    """The budget rounded up to whole epochs, as herjax's ``n_epochs`` does; Brax then evaluates every
    ``eval_every`` steps exactly."""
    return -(-budget // eval_every) * eval_every


def _summary(curve: list, threshold, total_s: float, sps, extra: dict) -> dict:
    hit = next((c for c in curve if threshold is not None and reached(c[2], threshold)), None)
    best = max(curve, key=lambda c: c[2])
    return {
        "reached": hit is not None if threshold is not None else None,
        "env_steps_to_threshold": hit[0] if hit else None,
        "wall_s_to_threshold": hit[1] if hit else None,
        "best_test_success": best[2],
        "best_at_env_steps": best[0],
        "final_test_success": curve[-1][2],
        "env_steps_run": curve[-1][0],
        "wall_s_run": round(total_s, 2),
        "steady_env_steps_per_s": round(sps, 1) if sps else None,
        "curve_env_steps_wall_s_success": curve,
        **extra,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--seeds", nargs="+", type=int, default=None,
                        help="seeds (default: 0 1 2 for reach, 0 for push)")
    parser.add_argument("--reach-budget", type=int, default=TASKS["reach"]["budget"])
    parser.add_argument("--push-budget", type=int, default=TASKS["push"]["budget"])
    parser.add_argument("--out", default=DEFAULT_OUT)
    args = parser.parse_args(argv)

    ppo = PPOConfig()
    load_start = round(os.getloadavg()[0], 2)
    results = {}
    if os.path.exists(args.out):
        with open(args.out) as f:
            results = json.load(f).get("tasks", {})
    for name in args.tasks:
        task = dict(TASKS[name], budget=getattr(args, f"{name}_budget"))
        seeds = args.seeds if args.seeds is not None else ([0, 1, 2] if name == "reach" else [0])
        eval_every = task["num_envs"] * 50 * task["n_iterations"]
        rows = {"herjax": [], "brax": []}
        for seed in seeds:
            print(f"{task['env']} seed {seed}", flush=True)
            rows["herjax"].append(dict(seed=seed, **run_herjax(task, seed, ppo)))
            rows["brax"].append(dict(seed=seed, **run_brax(task, seed, ppo, eval_every)))
        bk = brax_kwargs(task, ppo, _aligned(task["budget"], eval_every), eval_every)
        bk.pop("network_factory")
        results[task["env"]] = {
            "budget_env_steps": _aligned(task["budget"], eval_every),
            "threshold": task["threshold"],
            "n_test_episodes": N_TEST,
            "untrained_test_success": round(initial_success(task, seeds[0]), 3),
            "eval_every_env_steps": eval_every,
            "herjax_config": {k: v for k, v in config.flat_dict(herjax_config(task, ppo)).items()
                              if k.split(".")[0] not in ("ddpg", "td3", "sac", "run_dir")},
            "brax_kwargs": {k: v for k, v in bk.items() if not k.startswith("_")},
            "brax_network": {"policy_hidden": list(ppo.hidden), "value_hidden": list(ppo.hidden),
                             "activation": "tanh", "distribution": "tanh_normal",
                             "init_std": "softplus(param) + 0.001 = exp(log_std_init) + 0.001"},
            "runs": rows,
            "median": {fw: _medians(rs) for fw, rs in rows.items()},
        }
    import brax

    out = {
        "benchmark": "herjax PPO vs Brax PPO (brax.training.agents.ppo.train) on the same herjax env",
        "machine": dict(describe(), brax=brax.__version__, load_avg_1m_at_start=load_start,
                        load_avg_1m_at_end=round(os.getloadavg()[0], 2)),
        "notes": __doc__,
        "tasks": results,
    }
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({env: r["median"] for env, r in results.items()}, indent=1))
    return 0


def _medians(runs: list) -> dict:
    def med(key):
        values = [r[key] for r in runs if r[key] is not None]
        return round(statistics.median(values), 2) if len(values) == len(runs) and values else None

    return {
        "reached": sum(bool(r["reached"]) for r in runs) if runs[0]["reached"] is not None else None,
        "seeds": len(runs),
        "env_steps_to_threshold": med("env_steps_to_threshold"),
        "wall_s_to_threshold": med("wall_s_to_threshold"),
        "best_test_success": med("best_test_success"),
        "steady_env_steps_per_s": med("steady_env_steps_per_s"),
    }


if __name__ == "__main__":
    sys.exit(main())
