"""Env demo: ``python -m herjax.envs env=fetch_push [num_envs=256] [episodes=2] [backend=auto]``.

Steps a batch of envs with the scripted policy of the task and prints throughput and success rate.
"""

from __future__ import annotations

import sys
import time


def _parse(argv: list[str]) -> dict[str, str]:
    opts = {"env": "fetch_push", "num_envs": "256", "episodes": "2", "backend": "auto", "seed": "0"}
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or key not in opts:
            raise ValueError(f"bad argument {arg!r}; use key=value with keys: {', '.join(opts)}")
        opts[key] = value
    return opts


def main(argv: list[str] | None = None) -> int:
    try:
        opts = _parse(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    import herjax  # noqa: F401  (applies the CPU XLA flag first)
    import jax
    import jax.numpy as jnp

    from herjax import envs
    from herjax.envs import scripted

    try:
        num_envs, episodes, seed = int(opts["num_envs"]), int(opts["episodes"]), int(opts["seed"])
        if num_envs < 1 or episodes < 1:
            raise ValueError(f"num_envs and episodes must be >= 1, got {num_envs} and {episodes}")
        env = envs.make(opts["env"], backend=opts["backend"])
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    # Slide has no scripted policy of its own; the push policy shows its throughput.
    policy = {"reach": scripted.reach_policy, "push": scripted.push_policy, "slide": scripted.push_policy,
              "pick_and_place": scripted.pick_and_place_policy}[env.config.task]
    venv = envs.vec(env, num_envs)

    def run_episode(vstate):
        def body(vstate, _):
            vstate = venv.step(vstate, policy(vstate.env.obs))
            return vstate, vstate.final_info["is_success"]

        vstate, success = jax.lax.scan(body, vstate, None, length=env.episode_length)
        return vstate, success[-1]

    run_episode = jax.jit(run_episode)
    print(f"{opts['env']}: {num_envs} envs on the {env.backend} engine ({jax.default_backend()}); compiling...")
    t0 = time.perf_counter()
    vstate, success = run_episode(jax.jit(venv.reset)(jax.random.key(seed)))
    jax.block_until_ready(success)
    print(f"compiled and ran one episode in {time.perf_counter() - t0:.1f} s")
    rates = [float(jnp.mean(success))]
    t0 = time.perf_counter()
    for i in range(episodes):
        vstate, success = run_episode(vstate)
        rates.append(float(jnp.mean(success)))
        print(f"  episode {i + 1}/{episodes}: success rate {rates[-1]:.2f}")
    elapsed = time.perf_counter() - t0
    steps = episodes * num_envs * env.episode_length
    print(f"{steps} env steps in {elapsed:.2f} s: {steps / elapsed:,.0f} env steps/s; "
          f"scripted success rate {sum(rates) / len(rates):.2f} over {len(rates) * num_envs} episodes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
